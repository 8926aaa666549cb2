//! `meshnode post FILE...`: announce local files (the demo's mesh_pub.py).

use super::Error;
use crate::core::announce::{Encoding, Held, Voice};
use crate::core::integrity::{Hasher, Method};
use crate::core::message::{Format, Message};
use crate::core::{relpath, topic};
use crate::mesh::mqtt::{BrokerUrl, Inbound, Poster, SessionOptions};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `meshnode post` is told.
#[derive(Debug)]
pub struct PostConfig {
    pub post_broker: Option<BrokerUrl>,
    pub base_url: String,
    pub base_dir: PathBuf,
    pub exchange: String,
    pub topic_prefix: Option<String>,
    pub inline: bool,
    pub inline_max: usize,
    pub encoding: Encoding,
    pub headers: Vec<(String, String)>,
    pub integrity: Option<Method>,
    pub format: Format,
    pub client_id: Option<String>,
    pub verbose: u8,
    pub files: Vec<PathBuf>,
}

impl Default for PostConfig {
    fn default() -> Self {
        PostConfig {
            post_broker: None,
            base_url: String::new(),
            base_dir: PathBuf::from("data"),
            exchange: "xpublic".into(),
            topic_prefix: None,
            inline: false,
            inline_max: 1024,
            encoding: Encoding::Guess,
            headers: Vec::new(),
            integrity: None,
            format: Format::WmoMesh,
            client_id: None,
            verbose: 1,
            files: Vec::new(),
        }
    }
}

/// How long to wait for the broker to acknowledge every announcement.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

struct Prepared {
    rel: String,
    topic: String,
    payload: Vec<u8>,
}

fn prepare(
    a: &PostConfig,
    file: &std::path::Path,
    headers: &[(String, Box<RawValue>)],
) -> Result<Prepared, String> {
    let base = a
        .base_dir
        .canonicalize()
        .map_err(|e| format!("--post-baseDir {}: {e}", a.base_dir.display()))?;
    let path = file
        .canonicalize()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let rel = path
        .strip_prefix(&base)
        .map_err(|_| {
            format!(
                "{}: not under --post-baseDir {}",
                file.display(),
                base.display()
            )
        })?
        .to_str()
        .ok_or_else(|| format!("{}: name is not UTF-8", file.display()))?
        .to_string();
    relpath::validate(&rel).map_err(|e| format!("{}: {e}", file.display()))?;
    let method = a.integrity.unwrap_or(a.format.default_method());
    if !a.format.announces(method) {
        return Err(format!(
            "--integrity {}: not a method this format may name (WIS2 forbids md5)",
            method.name()
        ));
    }
    let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", file.display()))?;
    if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(format!("{}: not a regular file", file.display()));
    }
    let mut h = Hasher::new(method).expect("md5 or sha512");
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    let mut small = Vec::new();
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if a.inline && size as usize + n <= a.inline_max {
            small.extend_from_slice(&buf[..n]);
        }
        size += n as u64;
    }
    let digest = h.finish().to_base64();
    let now = crate::sys::unix_now();
    let mut pub_time = String::new();
    crate::core::time::format_time(&mut pub_time, now);
    let extra = headers
        .iter()
        .map(|(k, v)| (Cow::Borrowed(k.as_str()), v.as_ref()))
        .collect();
    let id = crate::sys::uuid_v4();
    let voice = Voice {
        format: a.format,
        base_url: &a.base_url,
        encoding: a.encoding,
        id: &id,
    };
    let held = Held {
        rel: &rel,
        pub_time: &pub_time,
        method,
        value: &digest,
        size,
        inline: (a.inline && size as usize <= a.inline_max).then_some(&small[..]),
    };
    let mut payload = Vec::with_capacity(512);
    voice
        .file(&mut payload, &held, Some(&Message::fresh(extra)))
        .map_err(|why| format!("{rel}: {why}"))?;
    let mut t = String::new();
    let prefix = a
        .topic_prefix
        .as_deref()
        .unwrap_or(a.format.default_topic_prefix());
    topic::announce_topic(&mut t, &a.exchange, prefix, relpath::dirname(&rel));
    Ok(Prepared {
        rel,
        topic: t,
        payload,
    })
}

/// A progress line on a terminal (standard error), redrawn at most five times a second:
/// posting thousands of files (each read for its checksum) shows how far it is.
struct Progress {
    on: bool,
    total: usize,
    last: Option<Instant>,
}

impl Progress {
    /// Shown for this many files or more, on a terminal only (never in a log).
    const FROM: usize = 50;

    fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        Progress {
            on: total >= Self::FROM && std::io::stderr().is_terminal(),
            total,
            last: None,
        }
    }

    fn show(&mut self, what: &str, n: usize) {
        if !self.on
            || (n < self.total
                && self
                    .last
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(200)))
        {
            return;
        }
        self.last = Some(Instant::now());
        eprint!("\r{what} {n}/{}", self.total);
        if n == self.total {
            eprintln!();
        }
    }
}

/// Announces every file; returns how many could not be announced.
pub fn run(a: &PostConfig) -> Result<usize, Error> {
    let Some(url) = &a.post_broker else {
        return Err(Error::Missing("--post-broker mqtt://user:password@host"));
    };
    if a.base_url.is_empty() {
        return Err(Error::Missing(
            "--post-baseUrl (where peers download the files, e.g. http://thishost:8000/data)",
        ));
    }
    if a.files.is_empty() {
        return Err(Error::Missing("FILE... to announce"));
    }
    let mut headers = Vec::new();
    for (k, v) in &a.headers {
        let raw = serde_json::to_string(v).expect("a string serializes");
        headers.push((k.clone(), RawValue::from_string(raw).expect("valid JSON")));
    }
    let mut failed = 0;
    let mut ready = Vec::new();
    let mut progress = Progress::new(a.files.len());
    for (i, f) in a.files.iter().enumerate() {
        progress.show("read", i + 1);
        match prepare(a, f, &headers) {
            Ok(p) => ready.push(p),
            Err(e) => {
                log::error!("not announced: {e}");
                failed += 1;
            }
        }
    }
    if ready.is_empty() {
        return Ok(failed);
    }
    let (tx, rx) = flume::bounded(16);
    let session = SessionOptions {
        client_id: a
            .client_id
            .clone()
            .unwrap_or_else(|| format!("meshnode-post-{}", std::process::id())),
        clean_start: true,
        session_expiry: 0,
        receive_maximum: 100,
        max_packet: 1 << 20,
        keepalive: Duration::from_secs(30),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let links = super::links::Links::start("post");
    let mut poster = Poster::spawn(&links, url, &session, tx, stop.clone());
    let deadline = Instant::now() + ACK_TIMEOUT;
    let mut progress = Progress::new(ready.len());
    for (i, p) in ready.iter().enumerate() {
        progress.show("sent", i + 1);
        let published =
            poster.publish_waiting(&p.topic, p.payload.clone(), || Instant::now() >= deadline);
        if let Err(e) = published {
            return Err(Error::NotAnnounced {
                rel: p.rel.clone(),
                why: e.to_string(),
            });
        }
        log::debug!("{}: announced on {}", p.rel, p.topic);
    }
    while poster.acked() < poster.issued() && Instant::now() < deadline {
        if let Ok(Inbound::PostSessionLost) = rx.recv_timeout(Duration::from_millis(50)) {
            break;
        }
    }
    let acked = poster.acked() as usize;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    poster.disconnect();
    poster.task.join();
    if acked < ready.len() {
        log::error!(
            "{} of {} announcements not acknowledged by {} within {}s",
            ready.len() - acked,
            ready.len(),
            url.redacted(),
            ACK_TIMEOUT.as_secs()
        );
        failed += ready.len() - acked;
    } else {
        log::info!("{} files announced to {}", ready.len(), url.redacted());
    }
    Ok(failed)
}
