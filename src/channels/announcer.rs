//! Announces channel products (and their removals) on the node's own broker, from a
//! thread of its own: a taker answers its publisher when the product is stored, never
//! waiting on the broker. Publications are kept until the broker acknowledges them and
//! published again if it lost the session. Across a restart or a crash of the node: at
//! start it announces again the products it still holds whose announcement the broker
//! did not take (an announcement journal and an audit session, as the flows keep:
//! docs/operations.md, "Announced once"), and the removals in its journal (`removals.log`: each
//! appended and synced before it is queued, the file emptied once every announcement is
//! acknowledged; those the audit session saw the broker take are not announced again).

use crate::channels::Published;
use crate::core::announce::Held;
use crate::core::message::{self, Message};
use crate::core::{relpath, topic};
use crate::mesh::announced::{self, Announced};
use crate::mesh::audit::{self, Auditor};
use crate::mesh::links::Links;
use crate::mesh::mqtt::{Inbound, PostError, Poster, SessionOptions};
use crate::mesh::peer::PeerConfig;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::sync::Mutex;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Announcements waiting for the announcer thread.
pub const QUEUE_CAPACITY: usize = 1024;
/// On shutdown, how long unacknowledged announcements are waited for.
const DRAIN_TIME: Duration = Duration::from_secs(2);

struct Job {
    topic: String,
    payload: Vec<u8>,
    /// The journal key of a product's announcement (removals have their own journal).
    key: Option<(u64, u64)>,
}

pub struct Announcer {
    cfg: PeerConfig,
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Removals not yet acknowledged by the broker, on disk.
    journal: Arc<Journal>,
    /// Product announcements the broker took, kept across restarts.
    announced: Option<Arc<Mutex<Announced>>>,
}

/// The removals announced and not yet known acknowledged; appended under the lock, and
/// queued under it too, so the announcer thread can empty it consistently.
struct Journal {
    file: Mutex<Option<File>>,
    path: PathBuf,
}

impl Journal {
    fn open(path: PathBuf) -> Journal {
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(&path)
            });
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                log::error!(
                    "channels: removal journal {}: {e}; removals are announced, but not made good after a crash",
                    path.display()
                );
                None
            }
        };
        Journal {
            file: Mutex::new(file),
            path,
        }
    }

    /// The removals left by the last run: (relPath, pubTime).
    fn pending(&self) -> Vec<(String, String)> {
        let Ok(f) = File::open(&self.path) else {
            return Vec::new();
        };
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| {
                let (rel, t) = l.split_once('\t')?;
                relpath::validate(rel).ok()?;
                Some((rel.to_string(), t.to_string()))
            })
            .collect()
    }
}

impl Announcer {
    /// Starts the thread; it publishes to `cfg.post_broker` with `client_id`. The
    /// removals in `journal` (a file) left by the last run are announced first.
    pub fn start(
        cfg: PeerConfig,
        client_id: String,
        journal: PathBuf,
        stop: Arc<AtomicBool>,
    ) -> Announcer {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let journal = Arc::new(Journal::open(journal));
        let session = SessionOptions {
            client_id,
            clean_start: false,
            session_expiry: cfg.session_expiry,
            receive_maximum: 100,
            max_packet: cfg.message_max,
            keepalive: cfg.keepalive,
        };
        // the announcer's MQTT connections (post, audit): one thread
        let links = Links::start("announcer-mqtt");
        let (announced, auditor) = open_announced(&links, &cfg, &session, &stop);
        // the thread starts with them: the journal is emptied only once they are acked.
        // Those the broker took before the crash (journaled by the audit session just
        // now) are not announced again
        let taken = |rel: &str| {
            announced.as_ref().is_some_and(|a| {
                let a = a.lock().unwrap_or_else(|p| p.into_inner());
                a.contains(rel, REMOVAL_VALUE)
            })
        };
        let pending: VecDeque<Job> = journal
            .pending()
            .iter()
            .filter(|(rel, _)| !taken(rel))
            .map(|(rel, t)| {
                let mut j = job(&cfg, rel, removal_message(&cfg, rel, t));
                j.key = Some(Announced::key(rel, REMOVAL_VALUE));
                j
            })
            .collect();
        if !pending.is_empty() {
            log::info!(
                "channels: {} removals of the last run announced again",
                pending.len()
            );
        }
        let (c, j, a) = (cfg.clone(), journal.clone(), announced.clone());
        let thread = thread::Builder::new()
            .name("announcer".into())
            .spawn(move || {
                let ctx = Context {
                    links: &links,
                    cfg: c,
                    session,
                };
                run(ctx, rx, &j, pending, a, auditor, stop)
            })
            .expect("spawning a thread");
        Announcer {
            cfg,
            tx: Some(tx),
            thread: Some(thread),
            journal,
            announced,
        }
    }

    /// Whether the broker took the announcement of product `p` (journaled).
    pub fn was_announced(&self, p: &Published) -> bool {
        self.announced.as_ref().is_some_and(|a| {
            let a = a.lock().unwrap_or_else(|p| p.into_inner());
            a.contains(&p.rel, &p.digest.to_base64())
        })
    }

    /// Queues one announcement; `wait`: block while the queue is full (a background
    /// task) rather than give up (a taker answering its publisher).
    fn queue(&self, rel: &str, payload: Vec<u8>, key: Option<(u64, u64)>, wait: bool) {
        let Some(tx) = &self.tx else { return };
        let mut job = job(&self.cfg, rel, payload);
        job.key = key;
        let sent = if wait {
            tx.send(job).map_err(|e| TrySendError::Disconnected(e.0))
        } else {
            tx.try_send(job)
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => log::error!(
                "{rel}: stored but not announced: {QUEUE_CAPACITY} announcements already wait for the broker"
            ),
            Err(TrySendError::Disconnected(_)) => {
                log::error!("{rel}: stored but not announced: the announcer has stopped")
            }
        }
    }

    /// Announces a stored product (and the products it evicted). `root`: the data tree.
    pub fn product(&self, root: &Path, p: &Published) {
        self.product_with(root, p, false)
    }

    /// `product`, waiting for room in the queue when `wait`.
    pub fn product_with(&self, root: &Path, p: &Published, wait: bool) {
        let (method, value) = if self.cfg.format.announces(p.method) {
            (p.method, p.digest.to_base64())
        } else {
            // WIS2 forbids md5: the format's own checksum of the stored product
            let m = self.cfg.format.default_method();
            let digest = std::fs::read(root.join(&p.rel))
                .ok()
                .and_then(|data| crate::core::integrity::digest_of(m, &data));
            match digest {
                Some(d) => (m, d.to_base64()),
                None => {
                    log::error!(
                        "{}: cannot read it to compute its {}: not announced",
                        p.rel,
                        m.name()
                    );
                    return;
                }
            }
        };
        let inline = if self.cfg.inline && p.size as usize <= self.cfg.inline_max {
            std::fs::read(root.join(&p.rel)).ok()
        } else {
            None
        };
        let fields = [
            ("contentType", p.meta.content_type.as_str()),
            ("source", p.meta.source.as_str()),
        ];
        let raw: Vec<(&str, Box<RawValue>)> = fields
            .iter()
            .map(|(k, v)| {
                let json = serde_json::to_string(v).expect("a string serializes");
                (*k, RawValue::from_string(json).expect("valid JSON"))
            })
            .collect();
        let msg = Message::fresh(
            raw.iter()
                .map(|(k, v)| (Cow::Borrowed(*k), v.as_ref()))
                .collect(),
        );
        let held = Held {
            rel: &p.rel,
            pub_time: &p.meta.pub_time,
            method,
            value: &value,
            size: p.size,
            inline: inline.as_deref(),
        };
        let mut payload = Vec::with_capacity(512);
        let id = crate::sys::uuid_v4();
        match self.cfg.voice(&id).file(&mut payload, &held, Some(&msg)) {
            Ok(()) => {
                let key = Announced::key(&p.rel, &p.digest.to_base64());
                self.queue(&p.rel, payload, Some(key), wait);
            }
            Err(why) => log::error!("channels: {}: stored, not announced: {why}", p.rel),
        }
        for old in &p.evicted {
            self.removal(old, &p.meta.pub_time);
        }
    }

    /// Announces that `rel` was removed (evicted or deleted), written to the journal
    /// first.
    pub fn removal(&self, rel: &str, pub_time: &str) {
        let payload = removal_message(&self.cfg, rel, pub_time);
        let mut file = self.journal.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = file.as_mut() {
            let line = format!("{rel}\t{pub_time}\n");
            if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
                log::error!("{rel}: removal not journaled ({e}): not made good after a crash");
            }
        }
        // queued under the journal's lock: the thread empties it only when nothing waits;
        // keyed, so that the audit sessions journal what the broker took
        self.queue(
            rel,
            payload,
            Some(Announced::key(rel, REMOVAL_VALUE)),
            false,
        );
    }
}

/// The product announcement journal (`STATE/announced/<client id>`), and the audit
/// session that fills it with what the broker took (`exactly-once`), its backlog
/// journaled now: before the products are announced again at start.
fn open_announced(
    links: &Links,
    cfg: &PeerConfig,
    session: &SessionOptions,
    stop: &Arc<AtomicBool>,
) -> (Option<Arc<Mutex<Announced>>>, Option<Auditor>) {
    let dir = cfg.state_root().join("announced").join(&session.client_id);
    let mut journal = match Announced::open(&dir, announced::PRODUCTS_CAPACITY) {
        Ok(j) => j,
        Err(e) => {
            log::error!(
                "channels: announcement journal {}: {e}; products are announced again at each start",
                dir.display()
            );
            return (None, None);
        }
    };
    let auditor = match &cfg.post_broker {
        Some(url) if cfg.exactly_once => {
            let mut s = session.clone();
            s.client_id.push_str("-audit");
            // products only (metcast/CID/OID): not the flows' traffic
            let exchanges = [cfg.post_exchange.clone()];
            let filters = audit::filters(&exchanges, cfg.post_prefix(), "metcast");
            Some(audit::start(
                links,
                url,
                &s,
                filters,
                &mut journal,
                stop.clone(),
            ))
        }
        _ => None,
    };
    (Some(Arc::new(Mutex::new(journal))), auditor)
}

/// An announcement of `rel` on its topic.
fn job(cfg: &PeerConfig, rel: &str, payload: Vec<u8>) -> Job {
    let mut topic = String::new();
    topic::announce_topic(
        &mut topic,
        &cfg.post_exchange,
        cfg.post_prefix(),
        relpath::dirname(rel),
    );
    Job {
        topic,
        payload,
        key: None,
    }
}

/// A removal's journal key is its relPath with this value, as the flows key theirs
/// (`verdicts.rs`): a flow of this node that gets the removal back from a peer after a
/// restart (its memory of removals gone) then knows the broker has it already, and the
/// announcer, restarted, does not announce again what the broker took.
const REMOVAL_VALUE: &str = "";

fn removal_message(cfg: &PeerConfig, rel: &str, pub_time: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(256);
    let id = crate::sys::uuid_v4();
    cfg.voice(&id)
        .file_op(&mut payload, rel, pub_time, message::FILEOP_REMOVE, None);
    payload
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the announcer's thread publishes with.
struct Context<'l> {
    links: &'l Links,
    cfg: PeerConfig,
    session: SessionOptions,
}

fn spawn_poster(ctx: &Context) -> (Poster, flume::Receiver<Inbound>, Arc<AtomicBool>) {
    let url = ctx.cfg.post_broker.as_ref().expect("checked by the caller");
    let (itx, irx) = flume::bounded(16);
    let stop = Arc::new(AtomicBool::new(false));
    let poster = Poster::spawn(ctx.links, url, &ctx.session, itx, stop.clone());
    (poster, irx, stop)
}

/// Everything announced is acknowledged: the journal's removals are done. Under its
/// lock, a removal queued meanwhile is taken first (and the journal kept).
fn forget_removals(journal: &Journal, rx: &Receiver<Job>, waiting: &mut VecDeque<Job>) {
    let mut file = journal.file.lock().unwrap_or_else(|p| p.into_inner());
    let Some(f) = file.as_mut() else { return };
    if f.metadata().map_or(true, |m| m.len() == 0) {
        return;
    }
    if let Ok(j) = rx.try_recv() {
        waiting.push_back(j);
        return;
    }
    if let Err(e) = f.set_len(0) {
        log::warn!("channels: removal journal {}: {e}", journal.path.display());
    }
}

fn run(
    ctx: Context,
    rx: Receiver<Job>,
    journal: &Journal,
    mut waiting: VecDeque<Job>,
    announced: Option<Arc<Mutex<Announced>>>,
    auditor: Option<Auditor>,
    stop: Arc<AtomicBool>,
) {
    let (mut poster, mut inbound, mut poster_stop) = spawn_poster(&ctx);
    // not yet accepted by rumqttc; then issued, waiting for PUBACK (with its number)
    let mut issued: VecDeque<(u64, Job)> = VecDeque::new();
    let mut closed = false;
    let mut drain_until: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) || closed {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN_TIME);
            if (waiting.is_empty() && issued.is_empty()) || Instant::now() >= until {
                break;
            }
        }
        if waiting.len() < QUEUE_CAPACITY && !closed {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(j) => waiting.push_back(j),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
            }
        } else {
            thread::sleep(Duration::from_millis(20));
        }
        while let Some(j) = waiting.pop_front() {
            let give_up = || true; // never waits: a full queue is tried again later
            match poster.publish_keyed_waiting(&j.topic, j.payload.clone(), j.key, give_up) {
                Ok(n) => issued.push_back((n, j)),
                Err(PostError::Full(_)) => {
                    waiting.push_front(j);
                    break;
                }
                Err(PostError::Other(e)) => {
                    log::error!("announcer: {e}");
                    waiting.push_front(j);
                    break;
                }
            }
        }
        while let Ok(ev) = inbound.try_recv() {
            if let Inbound::PostSessionLost = ev {
                // rumqttc dropped what it had not got acknowledged: start afresh and
                // publish those again, in order
                log::warn!(
                    "announcer: the broker lost the session; announcing {} again",
                    issued.len()
                );
                poster_stop.store(true, Ordering::SeqCst);
                poster.disconnect();
                let (fresh, fresh_inbound, fresh_stop) = spawn_poster(&ctx);
                let old = std::mem::replace(&mut poster, fresh);
                old.task.join();
                (inbound, poster_stop) = (fresh_inbound, fresh_stop);
                for (_, j) in issued.drain(..).rev() {
                    waiting.push_front(j);
                }
                break;
            }
        }
        let acked = poster.acked();
        let mut done = Vec::new();
        while issued.front().is_some_and(|(n, _)| *n <= acked) {
            done.extend(issued.pop_front().and_then(|(_, j)| j.key));
        }
        if let Some(a) = &announced {
            let mut a = a.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = audit::journal(auditor.as_ref(), done, &mut a) {
                log::error!("channels: announcement journal: {e}");
            }
        }
        if waiting.is_empty() && issued.is_empty() {
            forget_removals(journal, &rx, &mut waiting);
        }
    }
    let lost = waiting.len() + issued.len();
    if lost > 0 {
        log::error!("announcer: stopping with {lost} announcements not acknowledged");
    }
    poster_stop.store(true, Ordering::SeqCst);
    poster.disconnect();
    poster.task.join();
    if let Some(a) = auditor {
        a.disconnect();
        a.task.join();
    }
}
