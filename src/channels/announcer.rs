//! Announces channel products (and their removals) on the node's own broker, from a
//! thread of its own: a taker answers its publisher when the product is stored, never
//! waiting on the broker. Publications are kept until the broker acknowledges them and
//! published again if it lost the session. Not kept across a crash of the node: at
//! start the node announces again the products it still holds (README, "Channels").

use crate::channels::Published;
use crate::core::announce::Held;
use crate::core::message::{self, Message};
use crate::core::{relpath, topic};
use crate::mesh::flow::PeerConfig;
use crate::mesh::mqtt::{Inbound, PostError, Poster, SessionOptions};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Announcements waiting for the announcer thread.
pub const QUEUE_CAPACITY: usize = 1024;
/// On shutdown, how long unacknowledged announcements are waited for.
const DRAIN_TIME: Duration = Duration::from_secs(2);

struct Job {
    topic: String,
    payload: Vec<u8>,
}

pub struct Announcer {
    cfg: PeerConfig,
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Announcer {
    /// Starts the thread; it publishes to `cfg.post_broker` with `client_id`.
    pub fn start(cfg: PeerConfig, client_id: String, stop: Arc<AtomicBool>) -> Announcer {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let c = cfg.clone();
        let thread = thread::Builder::new()
            .name("announcer".into())
            .spawn(move || run(c, client_id, rx, stop))
            .expect("spawning a thread");
        Announcer {
            cfg,
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Queues one announcement; `wait`: block while the queue is full (a background
    /// task) rather than give up (a taker answering its publisher).
    fn queue(&self, rel: &str, payload: Vec<u8>, wait: bool) {
        let mut t = String::new();
        topic::announce_topic(
            &mut t,
            &self.cfg.post_exchange,
            self.cfg.post_prefix(),
            relpath::dirname(rel),
        );
        let Some(tx) = &self.tx else { return };
        let job = Job { topic: t, payload };
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
        let value = p.digest.to_base64();
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
            method: p.method,
            value: &value,
            size: p.size,
            inline: inline.as_deref(),
        };
        let mut payload = Vec::with_capacity(512);
        self.cfg.voice().file(&mut payload, &held, Some(&msg));
        self.queue(&p.rel, payload, wait);
        for old in &p.evicted {
            self.removal(old, &p.meta.pub_time);
        }
    }

    /// Announces that `rel` was removed (evicted or deleted).
    pub fn removal(&self, rel: &str, pub_time: &str) {
        let mut payload = Vec::with_capacity(256);
        self.cfg
            .voice()
            .file_op(&mut payload, rel, pub_time, message::FILEOP_REMOVE, None);
        self.queue(rel, payload, false);
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn_poster(
    cfg: &PeerConfig,
    session: &SessionOptions,
) -> (Poster, flume::Receiver<Inbound>, Arc<AtomicBool>) {
    let url = cfg.post_broker.as_ref().expect("checked by the caller");
    let (itx, irx) = flume::bounded(16);
    let stop = Arc::new(AtomicBool::new(false));
    (Poster::spawn(url, session, itx, stop.clone()), irx, stop)
}

fn run(cfg: PeerConfig, client_id: String, rx: Receiver<Job>, stop: Arc<AtomicBool>) {
    let session = SessionOptions {
        client_id,
        clean_start: false,
        session_expiry: cfg.session_expiry,
        receive_maximum: 100,
        max_packet: cfg.message_max,
        keepalive: cfg.keepalive,
    };
    let (mut poster, mut inbound, mut poster_stop) = spawn_poster(&cfg, &session);
    // not yet accepted by rumqttc; then issued, waiting for PUBACK (with its number)
    let mut waiting: VecDeque<Job> = VecDeque::new();
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
            match poster.publish(&j.topic, j.payload.clone()) {
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
                let (fresh, fresh_inbound, fresh_stop) = spawn_poster(&cfg, &session);
                let old = std::mem::replace(&mut poster, fresh);
                let _ = old.thread.join();
                (inbound, poster_stop) = (fresh_inbound, fresh_stop);
                for (_, j) in issued.drain(..).rev() {
                    waiting.push_front(j);
                }
                break;
            }
        }
        let acked = poster.acked();
        while issued.front().is_some_and(|(n, _)| *n <= acked) {
            issued.pop_front();
        }
    }
    let lost = waiting.len() + issued.len();
    if lost > 0 {
        log::error!("announcer: stopping with {lost} announcements not acknowledged");
    }
    poster_stop.store(true, Ordering::SeqCst);
    poster.disconnect();
    let _ = poster.thread.join();
}
