//! The flow's window: the upstream messages not yet acknowledged, in arrival order,
//! each being worked on or done; acks released from the head, in order, once a done
//! message's re-announcement is acknowledged. Downloads are started within
//! `--concurrency` and `--host-connections`; a message for a relPath being downloaded
//! is held until that download ends, then judged again (so a file announced by two
//! peers at once is fetched once, and a removal never overtakes the file).
//!
//! No I/O here: the window says which acks are due (`releasable`) and which batches
//! to start (`dispatch`); the flow sends and submits them. So its rules are unit-tested
//! below, with a seeded simulation of random schedules.

use super::engine::download::{Job, PIPELINE_SMALL};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Slots of retry-queue entries (id + `RETRY_SLOTS`): never in the window, so never
/// acknowledged upstream (their messages were, when queued).
pub const RETRY_SLOTS: u64 = 1 << 62;

/// The retry-queue entry a slot stands for.
pub fn retry_id(slot: u64) -> Option<u64> {
    slot.checked_sub(RETRY_SLOTS)
}

/// An upstream message waiting for its acknowledgement.
struct Entry {
    broker: usize,
    epoch: u32,
    pkid: u16,
    qos: QoS,
    /// `None` while worked on; then the publication (0: none) to be acknowledged by
    /// the post broker before the upstream ack.
    post_seq: Option<u64>,
    /// While its file downloads: what it is about, to announce the file when stored
    /// or keep the message in the retry queue.
    fetch: Option<Box<Fetching>>,
}

/// A message whose file is being downloaded (queued or running).
pub(super) struct Fetching {
    pub topic: Bytes,
    pub payload: Bytes,
    pub rel: Arc<str>,
    pub origin: Arc<str>,
    pub since: Instant,
}

/// An upstream acknowledgement due: to be sent on connection `broker` unless that
/// connection is not the one the message came on (`epoch`), or its QoS needs none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub broker: usize,
    pub epoch: u32,
    pub pkid: u16,
    pub qos: QoS,
}

/// What `dispatch` starts: batches for the workers, and the downloads of servers
/// marked down, not started (each ends through `ended`).
#[derive(Debug, Default)]
pub struct Dispatch {
    pub batches: Vec<Vec<Job>>,
    pub diverted: Vec<Job>,
}

/// A message as it arrived (held, when its relPath is being downloaded, until that ends).
#[derive(Debug)]
pub(super) struct Arrival {
    pub slot: u64,
    pub topic: Bytes,
    pub payload: Bytes,
    pub dup: bool,
}

pub(super) struct Window {
    entries: VecDeque<Entry>,
    /// The slot of `entries[0]`; slots are arrival numbers.
    first: u64,
    /// relPaths being downloaded, each with the messages held for it.
    fetching: HashMap<Arc<str>, VecDeque<Arrival>>,
    /// Messages waiting for the local disk (full, failing, read-only), in order.
    stalled: VecDeque<Arrival>,
    /// Downloads by server: running, and waiting for a worker or their server's turn.
    origins: HashMap<Arc<str>, Origin>,
    /// Servers with downloads waiting and a connection free, in turn.
    ready: VecDeque<Arc<str>>,
    /// Batches (connections) downloading; their downloads; those waiting.
    running: usize,
    running_jobs: usize,
    queued: usize,
    /// Downloads of each running batch not yet ended, by batch id.
    batches: HashMap<u64, usize>,
    next_batch: u64,
    /// Requests pipelined on one connection at most.
    pipeline: usize,
    /// Messages still worked on (judged, downloading, held).
    working: usize,
    /// Messages not yet acknowledged, by upstream broker.
    per_broker: Vec<usize>,
    concurrency: usize,
    host_connections: usize,
    /// Connections a server may have now, when fewer than `host_connections`: 1 after
    /// a failure, one more per success, so that a dead or hung server holds one worker
    /// rather than its whole share.
    allowed: HashMap<String, usize>,
    /// Servers that close a connection after one answer (HTTP/1.0, or `Connection:
    /// close` on the first): their next batches carry one request each, how many are
    /// left before pipelining is tried again (a server upgraded, a limit lifted).
    one_by_one: HashMap<String, u32>,
}

/// Batches of one request for a server that closes after one answer, before one
/// pipelined batch tries it again (that try costs the requests it gives back).
pub const ONE_BY_ONE_BATCHES: u32 = 64;

#[derive(Default)]
struct Origin {
    running: usize,
    waiting: VecDeque<Job>,
    /// In `ready`.
    ready: bool,
}

impl Window {
    pub fn new(
        capacity: usize,
        concurrency: usize,
        host_connections: usize,
        pipeline: usize,
    ) -> Window {
        Window {
            entries: VecDeque::with_capacity(capacity),
            first: 0,
            fetching: HashMap::new(),
            stalled: VecDeque::new(),
            origins: HashMap::new(),
            one_by_one: HashMap::new(),
            ready: VecDeque::new(),
            running: 0,
            running_jobs: 0,
            queued: 0,
            batches: HashMap::new(),
            next_batch: 0,
            pipeline: pipeline.max(1),
            working: 0,
            per_broker: Vec::new(),
            concurrency: concurrency.max(1),
            host_connections: host_connections.max(1),
            allowed: HashMap::new(),
        }
    }

    /// Takes a new message into the window; returns its slot.
    pub fn push(&mut self, broker: usize, epoch: u32, pkid: u16, qos: QoS) -> u64 {
        self.entries.push_back(Entry {
            broker,
            epoch,
            pkid,
            qos,
            post_seq: None,
            fetch: None,
        });
        self.working += 1;
        if self.per_broker.len() <= broker {
            self.per_broker.resize(broker + 1, 0);
        }
        self.per_broker[broker] += 1;
        self.first + self.entries.len() as u64 - 1
    }

    fn entry(&mut self, slot: u64) -> Option<&mut Entry> {
        let i = slot.checked_sub(self.first)?;
        self.entries.get_mut(usize::try_from(i).ok()?)
    }

    /// Message `slot` is finished; publication `post_seq` (0: none) must be
    /// acknowledged before it is.
    pub fn done(&mut self, slot: u64, post_seq: u64) {
        let Some(e) = self.entry(slot) else { return };
        if e.post_seq.is_none() {
            e.post_seq = Some(post_seq);
            e.fetch = None;
            self.working -= 1;
        }
    }

    /// Messages still worked on: what bounds the messages taken in (a finished one
    /// waits only for acks, which need the connections polled, so it does not count).
    pub fn working(&self) -> usize {
        self.working
    }

    /// Messages of upstream broker `broker` not yet acknowledged.
    pub fn of_broker(&self, broker: usize) -> usize {
        self.per_broker.get(broker).copied().unwrap_or(0)
    }

    /// Messages not yet acknowledged.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the head is done and waits only for the post broker.
    pub fn head_waits_for_post(&self) -> bool {
        self.entries.front().is_some_and(|e| e.post_seq.is_some())
    }

    /// The acks due, in arrival order: every message at the head that is finished and
    /// whose re-announcement the post broker acknowledged (`acked`). They stay due
    /// until `released` says they went.
    pub fn releasable(&self, acked: u64) -> impl Iterator<Item = Ack> + '_ {
        self.entries
            .iter()
            .take_while(move |e| e.post_seq.is_some_and(|seq| seq <= acked))
            .map(|e| Ack {
                broker: e.broker,
                epoch: e.epoch,
                pkid: e.pkid,
                qos: e.qos,
            })
    }

    /// The first `n` acks `releasable` gave were sent (or needed none): their messages
    /// leave the window.
    pub fn released(&mut self, n: usize) {
        for _ in 0..n {
            let Some(e) = self.entries.front() else {
                return;
            };
            debug_assert!(e.post_seq.is_some(), "an unfinished message released");
            if e.post_seq.is_none() {
                return;
            }
            if let Some(c) = self.per_broker.get_mut(e.broker) {
                *c -= 1;
            }
            self.entries.pop_front();
            self.first += 1;
        }
    }

    /// Whether `rel` is being downloaded.
    pub fn is_fetching(&self, rel: &str) -> bool {
        self.fetching.contains_key(rel)
    }

    /// The window's copy of server `origin`'s name while it has downloads here: a new
    /// job of that server shares it rather than copying the name again.
    pub fn origin_name(&self, origin: &str) -> Option<Arc<str>> {
        self.origins.get_key_value(origin).map(|(k, _)| k.clone())
    }

    /// Holds a message until the download of `rel` ends.
    pub fn hold(&mut self, rel: &str, h: Arrival) {
        match self.fetching.get_mut(rel) {
            Some(held) => held.push_back(h),
            None => {
                self.fetching.insert(rel.into(), VecDeque::from([h]));
            }
        }
    }

    /// Queues the download of message `job.slot` at `now`; the message is kept to
    /// announce the file once stored.
    pub fn fetch(&mut self, job: Job, topic: Bytes, payload: Bytes, now: Instant) {
        if let Some(e) = self.entry(job.slot) {
            e.fetch = Some(Box::new(Fetching {
                topic,
                payload,
                rel: job.rel.clone(),
                origin: job.origin.clone(),
                since: now,
            }));
        }
        self.fetching.entry(job.rel.clone()).or_default();
        self.queued += 1;
        let limit = self.limit(&job.origin);
        // the origin is copied only when new: `entry` would take a copy every time
        if !self.origins.contains_key(&job.origin) {
            self.origins.insert(job.origin.clone(), Origin::default());
        }
        let o = self
            .origins
            .get_mut(&job.origin)
            .expect("inserted just above");
        if !o.ready && o.running < limit {
            o.ready = true;
            self.ready.push_back(job.origin.clone());
        }
        o.waiting.push_back(job);
    }

    /// Starts waiting downloads while workers are free: servers take turns, each
    /// server's downloads in arrival order, in batches of up to `pipeline` small files
    /// on one connection, never more connections to a server than its share. The
    /// downloads of servers `is_down` says are down are not started but diverted
    /// (counted as running: each ends through `ended`).
    pub fn dispatch(&mut self, mut is_down: impl FnMut(&str) -> bool) -> Dispatch {
        let mut out = Dispatch::default();
        let diverted = &mut out.diverted;
        // everything waiting for a server marked down goes at once, whatever its turn
        let down: Vec<Arc<str>> = self
            .origins
            .iter()
            .filter(|(name, o)| !o.waiting.is_empty() && is_down(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in down {
            if let Some(o) = self.origins.get_mut(&name) {
                let batch: Vec<Job> = o.waiting.drain(..).collect();
                o.running += 1;
                diverted.extend(self.start(batch));
            }
        }
        while self.running < self.concurrency {
            let Some(name) = self.ready.pop_front() else {
                break;
            };
            let limit = self.limit(&name);
            let Some(o) = self.origins.get_mut(&name) else {
                continue;
            };
            if o.running >= limit {
                o.ready = false;
                continue;
            }
            let Some(first) = o.waiting.pop_front() else {
                o.ready = false;
                continue;
            };
            let mut batch = vec![first];
            let single = match self.one_by_one.get_mut(&*name) {
                Some(left) => {
                    *left -= 1;
                    if *left == 0 {
                        self.one_by_one.remove(&*name);
                    }
                    true
                }
                None => false,
            };
            if !single && pipelinable(&batch[0]) {
                while batch.len() < self.pipeline && o.waiting.front().is_some_and(pipelinable) {
                    batch.extend(o.waiting.pop_front());
                }
            }
            o.running += 1;
            o.ready = !o.waiting.is_empty() && o.running < limit;
            if o.ready {
                self.ready.push_back(name);
            }
            let batch = self.start(batch);
            if is_down(&batch[0].origin) {
                diverted.extend(batch);
            } else {
                out.batches.push(batch);
            }
        }
        out
    }

    /// Counts a batch (its server's connection counted by the caller) as running.
    fn start(&mut self, mut batch: Vec<Job>) -> Vec<Job> {
        let id = self.next_batch;
        self.next_batch += 1;
        for j in &mut batch {
            j.batch = id;
        }
        self.batches.insert(id, batch.len());
        self.running += 1;
        self.running_jobs += batch.len();
        self.queued -= batch.len();
        batch
    }

    /// Connections `origin` may have now.
    fn limit(&self, origin: &str) -> usize {
        self.allowed
            .get(origin)
            .copied()
            .unwrap_or(self.host_connections)
    }

    /// `origin` closed a new connection after its first answer: no pipelining to it
    /// for its next `ONE_BY_ONE_BATCHES` batches (each request behind that answer was
    /// given back, to be asked for again).
    pub fn closes_after_one(&mut self, origin: &str) {
        if self.one_by_one.len() >= MAX_KNOWN_SERVERS && !self.one_by_one.contains_key(origin) {
            self.one_by_one.clear(); // many servers seen once each: start afresh
        }
        self.one_by_one
            .insert(origin.to_string(), ONE_BY_ONE_BATCHES);
    }

    /// A download from `origin` succeeded: one more connection allowed.
    pub fn server_ok(&mut self, origin: &str) {
        let limit = (self.limit(origin) + 1).min(self.host_connections);
        if limit >= self.host_connections {
            self.allowed.remove(origin);
        } else {
            self.allowed.insert(origin.to_string(), limit);
        }
        if let Some(o) = self.origins.get_mut(origin) {
            if !o.ready && !o.waiting.is_empty() && o.running < limit {
                o.ready = true;
                self.ready.push_back(origin.into());
            }
        }
    }

    /// A download from `origin` failed for the server's sake: back to one connection.
    pub fn server_failed(&mut self, origin: &str) {
        if self.allowed.len() >= MAX_KNOWN_SERVERS && !self.allowed.contains_key(origin) {
            self.allowed.clear(); // a flood of one-off failing servers: start afresh
        }
        self.allowed.insert(origin.to_string(), 1);
    }

    /// Whether a worker is free.
    pub fn worker_free(&self) -> bool {
        self.running < self.concurrency
    }

    /// Downloads the free workers could take now, in full batches.
    pub fn room(&self) -> usize {
        self.concurrency.saturating_sub(self.running) * self.pipeline
    }

    /// Downloads waiting for a worker or their server's turn.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// A download its worker gave back unanswered (the connection it was pipelined on
    /// is held by a large answer, or ends after one): first again among its server's,
    /// for another connection, at once.
    pub fn requeue(&mut self, job: Job) {
        self.left_batch(&job);
        self.queued += 1;
        let limit = self.limit(&job.origin);
        let origin = job.origin.clone();
        let o = self.origins.entry(origin.clone()).or_default();
        o.waiting.push_front(job);
        if !o.ready && o.running < limit {
            o.ready = true;
            self.ready.push_back(origin);
        }
    }

    /// A download ended: its message (topic, payload), and the messages held for its
    /// relPath.
    pub fn ended(&mut self, job: &Job) -> (Option<(Bytes, Bytes)>, VecDeque<Arrival>) {
        self.left_batch(job);
        let message = self
            .entry(job.slot)
            .and_then(|e| e.fetch.take())
            .map(|f| (f.topic, f.payload));
        let held = self.fetching.remove(&job.rel).unwrap_or_default();
        (message, held)
    }

    /// `job` is no longer part of its batch; the last one out frees the connection.
    fn left_batch(&mut self, job: &Job) {
        self.running_jobs = self.running_jobs.saturating_sub(1);
        let left = self.batches.get_mut(&job.batch).map(|n| {
            *n -= 1;
            *n
        });
        if left == Some(0) {
            // the batch's connection is free
            self.batches.remove(&job.batch);
            self.running = self.running.saturating_sub(1);
            let limit = self.limit(&job.origin);
            if let Some(o) = self.origins.get_mut(&job.origin) {
                o.running = o.running.saturating_sub(1);
                if o.running == 0 && o.waiting.is_empty() {
                    self.origins.remove(&job.origin);
                } else if !o.ready && !o.waiting.is_empty() && o.running < limit {
                    o.ready = true;
                    self.ready.push_back(job.origin.clone());
                }
            }
        }
    }

    /// Gives back a download taken by `take_blocking_fetch` (it could not be moved).
    pub fn restore_fetch(&mut self, slot: u64, f: Box<Fetching>) {
        if let Some(e) = self.entry(slot) {
            e.fetch = Some(f);
        }
    }

    /// The oldest unfinished message, when a finished one is behind it: its ack waits
    /// for this one's. Unfinished ones behind it only (a node slower than its feed,
    /// downloads queued for workers) wait for nothing it holds: moving it to the retry
    /// queue would cost a write and a log line each and make nothing go sooner.
    fn holding_acks_back(&self) -> Option<usize> {
        let i = self.entries.iter().position(|e| e.post_seq.is_none())?;
        let mut behind = self.entries.iter().skip(i + 1);
        behind.any(|e| e.post_seq.is_some()).then_some(i)
    }

    /// Since when the download that holds acks back has waited or run; `None` when
    /// none does.
    pub fn blocking_since(&self) -> Option<Instant> {
        let i = self.holding_acks_back()?;
        self.entries[i].fetch.as_ref().map(|f| f.since)
    }

    /// The message holding acks back, when it is a download begun (queued or running)
    /// before `before`. Returns its slot and its download, taken (the caller finishes
    /// the message).
    pub fn take_blocking_fetch(&mut self, before: Instant) -> Option<(u64, Box<Fetching>)> {
        let i = self.holding_acks_back()?;
        let e = &mut self.entries[i];
        if e.fetch.as_ref().is_none_or(|f| f.since >= before) {
            return None;
        }
        Some((self.first + i as u64, e.fetch.take()?))
    }

    /// Keeps a message that could not be stored for trouble of the local disk; it is
    /// judged again when the flow retries.
    pub fn stall(&mut self, a: Arrival) {
        self.stalled.push_back(a);
    }

    /// Whether messages wait for the local disk.
    pub fn is_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// The messages waiting for the local disk, to be judged again.
    pub fn take_stalled(&mut self) -> VecDeque<Arrival> {
        std::mem::take(&mut self.stalled)
    }

    /// Downloads running or queued.
    pub fn downloads(&self) -> usize {
        self.running_jobs + self.queued
    }
}

/// Servers whose connection allowance is remembered, at most.
const MAX_KNOWN_SERVERS: usize = 1024;

/// Whether a download may share a pipelined connection.
fn pipelinable(j: &Job) -> bool {
    super::fetch::can_pipeline(&j.url) && j.size.is_none_or(|s| s <= PIPELINE_SMALL)
}

#[cfg(test)]
mod tests;
