//! One flow: take an announcement, decide, fetch (inline or HTTP GET), verify, store,
//! re-announce, and acknowledge upstream only once the re-announcement is acknowledged.

use crate::core::integrity::{Digest, Method};
use crate::core::mediatype::MediaType;
use crate::core::message::{self, FileOp, Format, Message, Outgoing};
use crate::core::relpath;
use crate::core::select::Selection;
use crate::core::topic;
use crate::mesh::fetch::{FetchError, Fetcher, Timeouts};
use crate::mesh::mqtt::{self, BrokerUrl, Inbound, PostError, Poster, SessionOptions, Subscriber};
use crate::mesh::recent::{Recent, RECENT_CAPACITY};
use crate::store::sidecar;
use crate::store::{CommitError, Store};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest pause between two attempts of a download.
pub const MAX_DOWNLOAD_BACKOFF: Duration = Duration::from_secs(30);

/// How inline content is encoded in this node's announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Text,
    Binary,
    Guess,
}

#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The flow's name (in logs and in the default client id).
    pub name: String,
    pub brokers: Vec<BrokerUrl>,
    pub subtopics: Vec<String>,
    pub exchange: String,
    pub topic_prefix: String,
    pub client_id: Option<String>,
    pub clean_session: bool,
    pub session_expiry: u32,
    pub dir: PathBuf,
    pub download: bool,
    pub select: Selection,
    pub lag_warn: f64,
    pub lag_drop: f64,
    pub post_broker: Option<BrokerUrl>,
    pub post_exchange: String,
    pub post_topic_prefix: Option<String>,
    pub post_base_url: String,
    pub post_exchange_split: u32,
    pub inline: bool,
    pub inline_max: usize,
    pub encoding: Encoding,
    pub format: Format,
    pub message_max: u32,
    pub file_max: u64,
    pub inflight: u16,
    pub keepalive: Duration,
    pub retries: u32,
    /// How long a download is retried while its server is away.
    pub retry_time: Duration,
    pub timeouts: Timeouts,
    pub stats_interval: Duration,
    pub recent_capacity: usize,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            name: "peer".into(),
            brokers: Vec::new(),
            subtopics: Vec::new(),
            exchange: "xpublic".into(),
            topic_prefix: "v03/post".into(),
            client_id: None,
            clean_session: false,
            session_expiry: 86_400,
            dir: PathBuf::from("data"),
            download: true,
            select: Selection::default(),
            lag_warn: 120.0,
            lag_drop: 7200.0,
            post_broker: None,
            post_exchange: "xpublic".into(),
            post_topic_prefix: None,
            post_base_url: String::new(),
            post_exchange_split: 0,
            inline: false,
            inline_max: 1024,
            encoding: Encoding::Guess,
            format: Format::WmoMesh,
            message_max: 500_000,
            file_max: 1 << 30,
            inflight: 100,
            keepalive: Duration::from_secs(30),
            retries: 3,
            retry_time: Duration::from_secs(300),
            timeouts: Timeouts::default(),
            stats_interval: Duration::from_secs(60),
            recent_capacity: RECENT_CAPACITY,
        }
    }
}

impl PeerConfig {
    pub fn post_prefix(&self) -> &str {
        self.post_topic_prefix
            .as_deref()
            .unwrap_or(self.format.default_topic_prefix())
    }

    /// A client id stable across restarts, so the persistent session is found again.
    pub fn default_client_id(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        crate::sys::hostname().hash(&mut h);
        self.name.hash(&mut h);
        self.dir.hash(&mut h);
        self.exchange.hash(&mut h);
        self.subtopics.hash(&mut h);
        for b in &self.brokers {
            b.redacted().hash(&mut h);
        }
        format!("meshnode-{:012x}", h.finish() & 0xffff_ffff_ffff)
    }
}

/// Counters of one flow.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub messages: u64,
    pub downloads: u64,
    pub inline_writes: u64,
    pub duplicates: u64,
    pub failures: u64,
    pub mismatches: u64,
    pub rejected: u64,
    pub lag_dropped: u64,
    pub removes: u64,
    pub published: u64,
    pub lag_sum: f64,
    pub lag_count: u64,
}

impl Stats {
    fn line(&self, since: &Stats, secs: f64) -> String {
        let n = self.messages - since.messages;
        let lag_n = self.lag_count - since.lag_count;
        let mean_lag = if lag_n > 0 {
            (self.lag_sum - since.lag_sum) / lag_n as f64
        } else {
            0.0
        };
        format!(
            "stats: {n} messages ({:.1}/s), mean lag {mean_lag:.2}s, downloads {}, inline {}, duplicates {}, failures {} (checksum mismatches {}), rejected {}, lag-dropped {}, removes {}, published {}",
            n as f64 / secs.max(1e-3),
            self.downloads - since.downloads,
            self.inline_writes - since.inline_writes,
            self.duplicates - since.duplicates,
            self.failures - since.failures,
            self.mismatches - since.mismatches,
            self.rejected - since.rejected,
            self.lag_dropped - since.lag_dropped,
            self.removes - since.removes,
            self.published - since.published,
        )
    }
}

/// An upstream message waiting for its acknowledgement.
struct Pending {
    broker: usize,
    epoch: u32,
    pkid: u16,
    qos: QoS,
    /// Acknowledge once this many publications are acknowledged by the post broker.
    post_seq: u64,
}

/// What became of one message.
enum Outcome {
    /// Finished; publication `seq` (0: none) must be acknowledged before the upstream ack.
    Done(u64),
    /// Not finished (stopping): no ack, the broker delivers it again.
    Abandoned,
}

#[derive(Debug)]
pub enum FlowEnd {
    Stopped,
    /// The post broker lost unacknowledged publications: the flow restarts, and the
    /// upstream broker delivers again what was not acknowledged.
    PostSessionLost,
}

pub struct Flow {
    cfg: PeerConfig,
    store: Store,
    fetcher: Fetcher,
    recent: Recent,
    pub stats: Stats,
    stop: Arc<AtomicBool>,
    url: String,
    topic: String,
    /// The post exchange of the message at hand (split or not).
    exchange: String,
    out: Vec<u8>,
    /// Publications not yet handed to the post connection, at most `BATCH`.
    outbox: Vec<(String, Vec<u8>)>,
}

/// Publications and acks handed over at once while the flow is busy.
pub const BATCH: usize = 32;

/// Runs a flow until `stop` is set, restarting it when the post broker lost the session.
pub fn run(cfg: PeerConfig, stop: Arc<AtomicBool>) -> Result<Stats, String> {
    let store = Store::open(&cfg.dir, cfg.format.xattr_name())
        .map_err(|e| format!("data directory {}: {e}", cfg.dir.display()))?;
    let mut flow = Flow {
        fetcher: Fetcher::with_stop(cfg.timeouts, stop.clone()),
        recent: Recent::new(cfg.recent_capacity),
        cfg,
        store,
        stats: Stats::default(),
        stop,
        url: String::with_capacity(256),
        topic: String::with_capacity(256),
        exchange: String::with_capacity(64),
        out: Vec::with_capacity(1024),
        outbox: Vec::with_capacity(BATCH),
    };
    loop {
        match flow.run_once() {
            FlowEnd::Stopped => return Ok(flow.stats),
            FlowEnd::PostSessionLost => {
                log::warn!("post broker lost its session with unacknowledged announcements: restarting the flow to receive them again");
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

impl Flow {
    fn session(&self, suffix: &str) -> SessionOptions {
        let id = self
            .cfg
            .client_id
            .clone()
            .unwrap_or_else(|| self.cfg.default_client_id());
        SessionOptions {
            client_id: format!("{id}{suffix}"),
            clean_start: self.cfg.clean_session,
            session_expiry: self.cfg.session_expiry,
            receive_maximum: self.cfg.inflight,
            // room for the MQTT header and topic beside the message itself
            max_packet: self.cfg.message_max.saturating_add(64 * 1024),
            keepalive: self.cfg.keepalive,
        }
    }

    fn run_once(&mut self) -> FlowEnd {
        let flow_started = Instant::now();
        let n = self.cfg.brokers.len();
        let (tx, rx) = mpsc::sync_channel(usize::from(self.cfg.inflight) * n + 8);
        let filters: Vec<String> = self
            .cfg
            .subtopics
            .iter()
            .map(|s| topic::subscription(&self.cfg.exchange, &self.cfg.topic_prefix, s))
            .collect();
        let mut poster = self.cfg.post_broker.clone().map(|url| {
            let mut s = self.session("-post");
            // rumqttc re-sends unacknowledged publications on a resumed session
            s.clean_start = false;
            Poster::spawn(&url, &s, tx.clone(), self.stop.clone())
        });
        let subs: Vec<Subscriber> = self
            .cfg
            .brokers
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let suffix = if n > 1 {
                    format!("-{i}")
                } else {
                    String::new()
                };
                mqtt::spawn_subscriber(
                    i,
                    url,
                    &self.session(&suffix),
                    filters.clone(),
                    tx.clone(),
                    self.stop.clone(),
                )
            })
            .collect();
        drop(tx);
        for f in &filters {
            log::info!("subscribing to {f}");
        }

        let mut pending: VecDeque<Pending> =
            VecDeque::with_capacity(usize::from(self.cfg.inflight) * n);
        let mut last_stats = Instant::now();
        let mut stats_base = self.stats.clone();
        let mut end = FlowEnd::Stopped;
        let mut since_release = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            let next = match rx.try_recv() {
                Ok(m) => Ok(m),
                Err(mpsc::TryRecvError::Empty) => {
                    // idle: hand over what is batched before waiting
                    if !self.hand_over(poster.as_mut(), &mut pending, &subs) {
                        break;
                    }
                    since_release = 0;
                    let wait = if pending.is_empty() {
                        Duration::from_millis(500)
                    } else {
                        Duration::from_millis(20)
                    };
                    rx.recv_timeout(wait)
                }
                Err(mpsc::TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(Inbound::Message {
                    broker,
                    epoch,
                    pkid,
                    qos,
                    dup,
                    topic,
                    payload,
                }) => match self.handle(&topic, &payload, dup, poster.as_ref()) {
                    Outcome::Done(post_seq) => pending.push_back(Pending {
                        broker,
                        epoch,
                        pkid,
                        qos,
                        post_seq,
                    }),
                    Outcome::Abandoned => break,
                },
                Ok(Inbound::PostAcked) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Inbound::PostSessionLost) => {
                    end = FlowEnd::PostSessionLost;
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // while busy, publications and acks go out in batches: one wake-up of a
            // connection thread carries many requests
            since_release += 1;
            if since_release >= BATCH || self.outbox.len() >= BATCH {
                if !self.hand_over(poster.as_mut(), &mut pending, &subs) {
                    break;
                }
                since_release = 0;
            }
            if last_stats.elapsed() >= self.cfg.stats_interval {
                log::info!(
                    "{}",
                    self.stats
                        .line(&stats_base, last_stats.elapsed().as_secs_f64())
                );
                stats_base = self.stats.clone();
                last_stats = Instant::now();
            }
        }
        // finish what is finished: wait a little for the last re-announcements
        let deadline = Instant::now() + Duration::from_secs(5);
        if matches!(end, FlowEnd::Stopped) {
            while self.hand_over(poster.as_mut(), &mut pending, &subs)
                && !pending.is_empty()
                && Instant::now() < deadline
            {
                let _ = rx.recv_timeout(Duration::from_millis(20));
            }
        }
        if !pending.is_empty() {
            log::info!(
                "{} messages left unacknowledged: the broker delivers them again",
                pending.len()
            );
        }
        // rumqttc handles requests in order: the acks queued above leave before the
        // disconnect queued below
        let stop_threads = !self.stop.swap(true, Ordering::SeqCst);
        for s in &subs {
            let _ = s.client.try_disconnect();
        }
        if let Some(p) = &poster {
            p.disconnect();
        }
        // drain so no connection thread stays blocked on a full queue
        let drain = thread::spawn(move || while rx.recv().is_ok() {});
        for s in subs {
            let _ = s.thread.join();
        }
        if let Some(p) = poster {
            let t = p.thread;
            let _ = t.join();
        }
        let _ = drain.join();
        if stop_threads && matches!(end, FlowEnd::PostSessionLost) {
            self.stop.store(false, Ordering::SeqCst);
        }
        log::info!(
            "{}",
            self.stats
                .line(&Stats::default(), flow_started.elapsed().as_secs_f64())
                .replacen("stats:", "totals:", 1)
        );
        end
    }

    /// Processes one message; never fails: problems are logged and counted.
    fn handle(
        &mut self,
        topic: &[u8],
        payload: &[u8],
        redelivered: bool,
        poster: Option<&Poster>,
    ) -> Outcome {
        self.stats.messages += 1;
        let topic = String::from_utf8_lossy(topic);
        if payload.len() > self.cfg.message_max as usize {
            log::error!(
                "message on {topic} refused: {} bytes, limit {} (message-max)",
                payload.len(),
                self.cfg.message_max
            );
            self.stats.rejected += 1;
            return Outcome::Done(0);
        }
        let msg = match message::parse(payload) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("malformed message on {topic}: {e}");
                self.stats.rejected += 1;
                return Outcome::Done(0);
            }
        };
        match crate::core::time::parse_time(&msg.pub_time) {
            Some(t) => {
                let lag = crate::sys::unix_now() - t;
                self.stats.lag_sum += lag;
                self.stats.lag_count += 1;
                if lag > self.cfg.lag_drop {
                    log::warn!(
                        "{}: dropped, lag {lag:.0}s over lag-drop {}s",
                        msg.rel_path,
                        self.cfg.lag_drop
                    );
                    self.stats.lag_dropped += 1;
                    return Outcome::Done(0);
                }
                if lag > self.cfg.lag_warn {
                    log::warn!(
                        "{}: lag {lag:.0}s over lag-warn {}s",
                        msg.rel_path,
                        self.cfg.lag_warn
                    );
                }
            }
            None => log::warn!(
                "{}: pubTime {:?} unreadable, lag unknown",
                msg.rel_path,
                msg.pub_time
            ),
        }
        let rel = match relpath::validate(&msg.rel_path) {
            Ok(r) => r,
            Err(e) => {
                log::error!("message on {topic} refused: {e}: {:?}", msg.rel_path);
                self.stats.rejected += 1;
                return Outcome::Done(0);
            }
        };
        if !self.cfg.select.accepts(rel) {
            log::trace!("{rel}: not selected");
            self.stats.rejected += 1;
            return Outcome::Done(0);
        }
        let rel = rel.to_string();
        match &msg.file_op {
            Some(op) => self.file_op(&msg, &rel, op, redelivered, poster),
            None => self.file(&msg, &rel, redelivered, poster),
        }
    }

    fn file_op(
        &mut self,
        msg: &Message<'_>,
        rel: &str,
        op: &FileOp<'_>,
        redelivered: bool,
        poster: Option<&Poster>,
    ) -> Outcome {
        let (result, announce) = match op {
            FileOp::Remove => {
                self.recent.forget(rel);
                let removed = self.store.remove(rel);
                if sidecar::split_product_rel(rel).is_some() {
                    sidecar::remove_meta(&self.store.path(rel));
                }
                (removed, message::FILEOP_REMOVE)
            }
            FileOp::Mkdir => (self.store.mkdir(rel), message::FILEOP_MKDIR),
            FileOp::Rmdir => (self.store.rmdir(rel), message::FILEOP_RMDIR),
            FileOp::Link(target) => {
                log::warn!("{rel}: link to {target:?} refused: links are not applied by this node");
                self.stats.rejected += 1;
                return Outcome::Done(0);
            }
            FileOp::Rename(old) => {
                log::warn!(
                    "{rel}: rename from {old:?} refused: renames are not applied by this node"
                );
                self.stats.rejected += 1;
                return Outcome::Done(0);
            }
        };
        match result {
            // a redelivered message may have been applied before its announcement
            // was acknowledged: announce again rather than lose it
            Ok(changed) if changed || redelivered => {
                self.stats.removes += u64::from(matches!(op, FileOp::Remove) && changed);
                log::debug!("{rel}: applied {announce}");
                let o = Outgoing::file_op(self.cfg.format, &self.cfg.post_base_url, rel, announce);
                self.out.clear();
                message::write_v03(&mut self.out, &msg.pub_time, Some(msg), &o);
                self.announce(rel, "", poster)
            }
            // nothing to do: the mesh already did it here, so the ripple stops here
            Ok(_) => {
                self.stats.duplicates += 1;
                Outcome::Done(0)
            }
            Err(e) => {
                log::error!("{rel}: cannot apply {announce}: {e}");
                self.stats.failures += 1;
                Outcome::Done(0)
            }
        }
    }

    fn file(
        &mut self,
        msg: &Message<'_>,
        rel: &str,
        redelivered: bool,
        poster: Option<&Poster>,
    ) -> Outcome {
        let Some(integrity) = &msg.integrity else {
            self.stats.rejected += 1;
            return Outcome::Done(0);
        };
        let verifiable = integrity.method.verifies_content();
        let expected = if verifiable {
            integrity.digest.as_ref()
        } else {
            None
        };

        if !self.cfg.download {
            // a dispatcher: forward as is, remembering what passed to forward it once
            let key = expected
                .map_or(msg.pub_time.as_bytes(), |d| d.as_bytes())
                .to_vec();
            if self.recent.contains(rel, &key) {
                self.stats.duplicates += 1;
                return Outcome::Done(0);
            }
            self.recent.insert(rel, &key);
            let value = integrity
                .digest
                .as_ref()
                .map(Digest::to_base64)
                .unwrap_or_default();
            let o = Outgoing {
                format: self.cfg.format,
                base_url: &msg.base_url,
                rel_path: rel,
                integrity: Some((integrity.method, &value)),
                size: msg.size,
                content: msg
                    .content
                    .as_ref()
                    .map(|c| (c.encoding.as_ref(), c.value.as_ref())),
                file_op: None,
            };
            self.out.clear();
            message::write_v03(&mut self.out, &msg.pub_time, Some(msg), &o);
            return self.announce(rel, &value, poster);
        }

        // already here? the recent record first, then the disk
        if let Some(want) = expected {
            let present = self.recent.contains(rel, want.as_bytes())
                || match self.store.local_digest(rel, integrity.method) {
                    Ok(Some(have)) => have == *want,
                    Ok(None) => false,
                    Err(e) => {
                        log::warn!("{rel}: cannot read the local copy: {e}");
                        false
                    }
                };
            if present {
                self.stats.duplicates += 1;
                self.recent.insert(rel, want.as_bytes());
                if !redelivered {
                    log::trace!("{rel}: duplicate, already here with the same checksum");
                    return Outcome::Done(0);
                }
                // it may have been stored before a crash, its announcement not yet
                // acknowledged: announce again rather than lose the announcement
                let size = std::fs::metadata(self.store.path(rel)).map_or(0, |m| m.len());
                return self.announce_stored(
                    msg,
                    rel,
                    integrity.method,
                    want.clone(),
                    size,
                    poster,
                );
            }
        } else if self.store.exists(rel) {
            // nothing checkable was announced: a file of that name counts as the same
            self.stats.duplicates += 1;
            return Outcome::Done(0);
        }

        let hash_method = if verifiable {
            integrity.method
        } else {
            match self.cfg.format {
                Format::WmoMesh => Method::Md5,
                Format::Sr3 => Method::Sha512,
            }
        };
        // a channel product: its attributes first, so its body never shows without them
        let product = sidecar::split_product_rel(rel).map(|(_, oid)| oid.to_string());
        if let Some(oid) = &product {
            self.write_product_meta(msg, rel, oid);
        }
        let stored = match &msg.content {
            Some(content) => self.store_inline(rel, content, hash_method, expected),
            None => self.download(msg, rel, hash_method, expected),
        };
        if stored.is_none() && product.is_some() {
            sidecar::remove_meta(&self.store.path(rel));
        }
        let Some((method, digest, size)) = stored else {
            return if self.stop.load(Ordering::Relaxed) {
                Outcome::Abandoned
            } else {
                Outcome::Done(0)
            };
        };
        self.recent.insert(rel, digest.as_bytes());
        log::debug!(
            "{rel}: stored ({size} bytes, {} {})",
            method.name(),
            digest.to_base64()
        );
        self.announce_stored(msg, rel, method, digest, size, poster)
    }

    /// Announces the local copy of `rel` with this node's baseUrl.
    fn announce_stored(
        &mut self,
        msg: &Message<'_>,
        rel: &str,
        method: Method,
        digest: Digest,
        size: u64,
        poster: Option<&Poster>,
    ) -> Outcome {
        let value = digest.to_base64();
        let inline_data = if self.cfg.inline && size as usize <= self.cfg.inline_max {
            std::fs::read(self.store.path(rel)).ok()
        } else {
            None
        };
        let encoded = inline_data.as_deref().map(|d| encode(d, self.cfg.encoding));
        let o = Outgoing {
            format: self.cfg.format,
            base_url: &self.cfg.post_base_url,
            rel_path: rel,
            integrity: Some((method, &value)),
            size: Some(size),
            content: encoded.as_ref().map(|(e, v)| (*e, v.as_str())),
            file_op: None,
        };
        self.out.clear();
        message::write_v03(&mut self.out, &msg.pub_time, Some(msg), &o);
        self.announce(rel, &value, poster)
    }

    /// Writes the sidecar of channel product `rel` from the message's `contentType`,
    /// `source` and pubTime.
    fn write_product_meta(&mut self, msg: &Message<'_>, rel: &str, oid: &str) {
        let field = |name: &str| {
            msg.extra
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok())
        };
        let (cid, _) = sidecar::split_product_rel(rel).expect("checked by the caller");
        // served as a header later: only a well-formed media type (no CR/LF), with the
        // cid and oid of the relPath whatever the message says
        let mt = match field("contentType").map(|c| MediaType::parse(&c)) {
            Some(Ok(mt)) => mt,
            Some(Err(e)) => {
                log::warn!("{rel}: contentType refused ({e}); served as application/octet-stream");
                MediaType::parse("application/octet-stream").expect("a valid media type")
            }
            None => MediaType::parse("application/octet-stream").expect("a valid media type"),
        };
        let meta = sidecar::Meta {
            content_type: sidecar::product_media_type(mt, cid, oid).to_string(),
            source: field("source").unwrap_or_default(),
            pub_time: msg.pub_time.to_string(),
        };
        let dir = self.store.path(relpath::dirname(rel));
        // through the store: its directories are checked for symlinks
        let written = self
            .store
            .mkdir(relpath::dirname(rel))
            .and_then(|_| sidecar::write_meta(&dir, oid, &meta));
        if let Err(e) = written {
            log::warn!("{rel}: product attributes not kept: {e}");
        }
    }

    fn store_inline(
        &mut self,
        rel: &str,
        content: &message::Content<'_>,
        method: Method,
        expected: Option<&Digest>,
    ) -> Option<(Method, Digest, u64)> {
        let data = match content.decode() {
            Ok(d) => d,
            Err(e) => {
                log::error!("{rel}: inline content refused: {e}");
                self.stats.rejected += 1;
                return None;
            }
        };
        let result = self
            .store
            .begin(rel, method, self.cfg.file_max)
            .and_then(|mut t| t.write_all(&data).map(|()| t))
            .map_err(CommitError::Io)
            .and_then(|t| self.store.commit(t, rel, expected));
        match result {
            Ok((m, d)) => {
                self.stats.inline_writes += 1;
                Some((m, d, data.len() as u64))
            }
            Err(e) => {
                if matches!(e, CommitError::Mismatch { .. }) {
                    self.stats.mismatches += 1;
                }
                log::error!("{rel}: inline content not stored: {e}");
                self.stats.failures += 1;
                None
            }
        }
    }

    fn download(
        &mut self,
        msg: &Message<'_>,
        rel: &str,
        method: Method,
        expected: Option<&Digest>,
    ) -> Option<(Method, Digest, u64)> {
        self.url.clear();
        relpath::join_url(
            &mut self.url,
            &msg.base_url,
            msg.ret_path.as_deref().unwrap_or(rel),
        );
        // two budgets: a wrong checksum is retried --retries times; a server that is
        // away (refused, reset, timeout, 5xx) is waited for up to --retry-time, the
        // message meanwhile unacknowledged and so safe in the broker
        let started = Instant::now();
        let mut backoff = Duration::from_secs(1);
        let mut mismatches = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            let mut tmp = match self.store.begin(rel, method, self.cfg.file_max) {
                Ok(t) => t,
                Err(e) => {
                    log::error!("{rel}: cannot write in the data tree: {e}");
                    self.stats.failures += 1;
                    return None;
                }
            };
            let give_up = match self.fetcher.get_into(&self.url, &mut tmp) {
                Ok(size) => match self.store.commit(tmp, rel, expected) {
                    Ok((m, d)) => {
                        self.stats.downloads += 1;
                        return Some((m, d, size));
                    }
                    Err(CommitError::Mismatch {
                        announced,
                        computed,
                    }) => {
                        self.stats.mismatches += 1;
                        mismatches += 1;
                        log::error!(
                            "{rel}: checksum mismatch from {} (attempt {mismatches} of {}): announced {announced:?}, computed {computed:?}; not stored",
                            self.url,
                            self.cfg.retries.max(1)
                        );
                        mismatches >= self.cfg.retries.max(1)
                    }
                    Err(CommitError::Io(e)) => {
                        log::error!("{rel}: cannot store: {e}");
                        true
                    }
                },
                Err(FetchError::Stopped) => return None,
                Err(e) => {
                    log::warn!("{rel}: GET {} failed (attempt {attempt}): {e}", self.url);
                    e.is_permanent() || started.elapsed() + backoff > self.cfg.retry_time
                }
            };
            if give_up {
                break;
            }
            crate::sys::sleep_unless(&self.stop, backoff);
            backoff = (backoff * 2).min(MAX_DOWNLOAD_BACKOFF);
        }
        log::error!("{rel}: giving up on {} after {attempt} attempts", self.url);
        self.stats.failures += 1;
        None
    }

    /// Queues `self.out` for publication on the topic of `rel`; returns the sequence
    /// number the publication will have.
    fn announce(&mut self, rel: &str, integrity_value: &str, poster: Option<&Poster>) -> Outcome {
        let Some(poster) = poster else {
            return Outcome::Done(0);
        };
        self.exchange.clear();
        topic::split_exchange(
            &mut self.exchange,
            &self.cfg.post_exchange,
            self.cfg.post_exchange_split,
            integrity_value,
        );
        self.topic.clear();
        topic::announce_topic(
            &mut self.topic,
            &self.exchange,
            self.cfg.post_prefix(),
            relpath::dirname(rel),
        );
        self.outbox.push((self.topic.clone(), self.out.clone()));
        self.stats.published += 1;
        log::trace!("{rel}: announced on {}", self.topic);
        Outcome::Done(poster.issued() + self.outbox.len() as u64)
    }

    /// Hands batched publications to the post connection, then acknowledges upstream
    /// what is finished. False when stopping left publications behind.
    fn hand_over(
        &mut self,
        mut poster: Option<&mut Poster>,
        pending: &mut VecDeque<Pending>,
        subs: &[Subscriber],
    ) -> bool {
        if !self.flush_outbox(poster.as_deref_mut()) {
            return false;
        }
        release_acks(pending, subs, poster.map_or(0, |p| p.acked()));
        true
    }

    /// Hands the batched publications to the post connection, in order; waits while
    /// its queue is full. False when stopping left some unpublished (their messages
    /// stay unacknowledged and come again).
    fn flush_outbox(&mut self, poster: Option<&mut Poster>) -> bool {
        let Some(poster) = poster else {
            return true;
        };
        let mut batch = std::mem::take(&mut self.outbox).into_iter();
        let mut item = batch.next();
        while let Some((topic, payload)) = item {
            match poster.publish(&topic, payload) {
                Ok(_) => item = batch.next(),
                Err(PostError::Full(payload)) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    thread::sleep(Duration::from_millis(5));
                    item = Some((topic, payload));
                }
                Err(PostError::Other(e)) => {
                    log::error!("cannot announce on {topic}: {e}");
                    return false;
                }
            }
        }
        true
    }
}

/// Acknowledges, in arrival order, every message whose re-announcement is acknowledged.
fn release_acks(pending: &mut VecDeque<Pending>, subs: &[Subscriber], acked: u64) {
    while let Some(p) = pending.front() {
        if p.post_seq > acked {
            break;
        }
        let sub = &subs[p.broker];
        // an ack from an older connection could hit a new message with the same packet
        // id; the broker redelivers the old one instead
        if p.epoch == sub.epoch.load(Ordering::SeqCst) && p.qos != QoS::AtMostOnce {
            let mut ack = Publish::new("", p.qos, Bytes::new(), None);
            ack.pkid = p.pkid;
            if sub.client.try_ack(&ack).is_err() {
                return; // request queue full: retry on the next turn
            }
        }
        pending.pop_front();
    }
}

/// Inline content as (encoding, value).
pub fn encode(data: &[u8], enc: Encoding) -> (&'static str, String) {
    match (enc, std::str::from_utf8(data)) {
        (Encoding::Text | Encoding::Guess, Ok(s)) => ("utf-8", s.to_string()),
        _ => ("base64", B64.encode(data)),
    }
}
