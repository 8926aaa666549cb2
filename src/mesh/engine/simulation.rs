//! The whole engine in a seeded simulation: thousands of random schedules of
//! arrivals from two upstream brokers (redeliveries too), downloads ending in every way
//! (stored, the server failing, the disk full, given up, given back for another
//! connection, held past the spill time), inline files, post acks coming late, servers
//! marked down and probed, the disk stall, the retry queue, post sessions lost and
//! crashes (the node's memory lost; the data tree, the journal and the retry queue
//! kept). A small driver of its own does here what `flow.rs`, `apply.rs` and
//! `requeue.rs` do, with a model of the tree, the journal, the retry queue and the
//! brokers. After every step:
//!
//! - nothing is lost: every file version announced to the node (and not given up) is
//!   journaled as announced, or in the retry queue, or its message is still
//!   unacknowledged at an upstream broker (which delivers it again);
//! - acks go in arrival order, each once, only for a message the broker holds;
//! - no relPath is downloaded twice at once;
//!
//! and once the faults stop, everything is stored, announced, acknowledged, the window
//! and the retry queue empty.

pub(crate) mod model;

use super::messages::{AfterDownload, Engine, Judged, Outcome, RetryJudged};
use super::retries::{self, Ended, RetryEnd, RETRY_PAUSE};
use crate::core::integrity::Method;
use crate::mesh::engine::download::{Done, Job};
use crate::mesh::window::{Arrival, Window};
use bytes::Bytes;
use model::{digest, rel_name, Broker, Msg, Queue, Rng};
use rumqttc::v5::mqttbytes::QoS;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

const WINDOW_MAX: usize = 12;
const RELS: u64 = 10;
/// The relPath whose server always answers 404: given up.
const GONE: u64 = 9;
const ORIGINS: [&str; 2] = ["http://s0", "http://s1"];
struct Sim {
    rng: Rng,
    now: Instant,
    engine: Engine,
    brokers: Vec<Broker>,
    /// The data tree: relPath -> version stored.
    tree: HashMap<u64, u64>,
    /// Announcements the post broker acknowledged (the journal): file versions.
    journal: HashSet<(u64, u64)>,
    /// The post session: publications handed to it (seq -> file), and acked up to.
    published: BTreeMap<u64, (u64, u64)>,
    issued: u64,
    acked: u64,
    queue: Queue,
    /// Batches being downloaded (by the workers), answers in order.
    batches: Vec<VecDeque<Job>>,
    disk_full: bool,
    server_up: [bool; 2],
    /// File versions sent to the node (not given up: `GONE` is).
    sent: HashSet<(u64, u64)>,
    faults: bool,
    steps: u64,
    seed: u64,
}

fn new_window() -> Window {
    Window::new(WINDOW_MAX, 3, 2, 4)
}

impl Sim {
    fn new(seed: u64, messages: u64) -> Sim {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut brokers: Vec<Broker> = (0..2).map(|_| Broker::default()).collect();
        for id in 0..messages {
            let rel = rng.below(RELS);
            let m = Msg {
                id,
                rel,
                version: 1 + rng.below(2),
                origin: rng.below(2) as usize,
                inline: rng.one_in(5),
            };
            // the same file announced by both peers, now and then
            brokers[rng.below(2) as usize].fresh.push_back(m);
            if rng.one_in(4) {
                brokers[rng.below(2) as usize].fresh.push_back(Msg {
                    id: id + 10_000,
                    ..m
                });
            }
        }
        let now = Instant::now();
        Sim {
            rng,
            now,
            engine: Engine::new(new_window(), now),
            brokers,
            tree: HashMap::new(),
            journal: HashSet::new(),
            published: BTreeMap::new(),
            issued: 0,
            acked: 0,
            queue: Queue::default(),
            batches: Vec::new(),
            disk_full: false,
            server_up: [true; 2],
            sent: HashSet::new(),
            faults: true,
            steps: 0,
            seed,
        }
    }

    /// Publishes the announcement of a file version: its sequence number.
    fn announce(&mut self, file: (u64, u64)) -> u64 {
        self.issued += 1;
        self.published.insert(self.issued, file);
        self.engine.announced(self.issued, file);
        self.issued
    }

    /// What `Flow::handle` does, on the model: the file here already (announced again
    /// when redelivered and not known announced), busy, stored inline, or to download.
    fn judge(&mut self, payload: &[u8], redelivered: bool) -> Outcome {
        let m = Msg::parse(payload);
        let file = m.file();
        if self.tree.get(&m.rel) == Some(&m.version) {
            if redelivered && !self.journal.contains(&file) && !self.engine.ledger.holds(file) {
                return Outcome::Done(self.announce(file));
            }
            return Outcome::Done(0);
        }
        let rel = rel_name(m.rel);
        if self.engine.window.is_fetching(&rel) {
            return Outcome::Busy(rel);
        }
        if m.inline {
            if self.disk_full {
                return Outcome::Stalled(rel, "disk full".into());
            }
            self.tree.insert(m.rel, m.version);
            return Outcome::Done(self.announce(file));
        }
        let origin = ORIGINS[m.origin].to_string();
        Outcome::Fetch(Job {
            slot: 0,
            url: format!("{origin}/{rel}"),
            rel: rel.into(),
            origin: origin.into(),
            method: Method::Sha256,
            expected: None,
            size: None,
            batch: 0,
            pub_time: None,
        })
    }

    fn process(&mut self, a: Arrival) {
        let o = self.judge(&a.payload, a.dup);
        let now = self.now;
        match self.engine.judged(a, o, now) {
            Judged::Taken | Judged::Stalled { .. } => {}
            Judged::Abandoned => unreachable!("the simulation does not stop"),
        }
    }

    fn deliver(&mut self) {
        let w = &self.engine.window;
        if w.is_stalled() || w.working() >= WINDOW_MAX {
            return;
        }
        let b = self.rng.below(2) as usize;
        let br = &mut self.brokers[b];
        let (pkid, m, dup) = if let Some(pkid) = br.redeliver.pop_front() {
            (pkid, br.unacked[&pkid], true)
        } else if let Some(m) = br.fresh.pop_front() {
            br.next_pkid += 1;
            br.unacked.insert(br.next_pkid, m);
            (br.next_pkid, m, false)
        } else {
            return;
        };
        if m.rel != GONE {
            self.sent.insert(m.file());
        }
        let epoch = br.epoch;
        let a = self.engine.arrive(
            b,
            epoch,
            pkid,
            QoS::AtLeastOnce,
            dup,
            Bytes::new(),
            m.payload(),
        );
        self.process(a);
    }

    fn dispatch(&mut self) {
        let d = self.engine.dispatch(self.now);
        for b in d.batches {
            self.batches.push(b.into());
        }
        for job in d.diverted {
            let d = Done {
                diverted: true,
                transient: Some("server marked down".into()),
                ..Done::given_up(job)
            };
            self.ended(d);
        }
    }

    /// The head of a random batch answers (or the batch is given back).
    fn answer(&mut self) {
        if self.batches.is_empty() {
            return;
        }
        let i = self.rng.below(self.batches.len() as u64) as usize;
        if self.faults && self.batches[i].len() > 1 && self.rng.one_in(8) {
            // the connection is held by a large answer: the rest go again elsewhere
            let batch = self.batches.swap_remove(i);
            let closes = self.rng.one_in(2);
            for job in batch {
                self.engine.returned(job, closes);
            }
            return;
        }
        let job = self.batches[i].pop_front().expect("a batch is never empty");
        if self.batches[i].is_empty() {
            self.batches.swap_remove(i);
        }
        let m_rel: u64 = job.rel[1..].parse().expect("rN");
        let origin = ORIGINS
            .iter()
            .position(|o| *o == &*job.origin)
            .expect("known");
        let d = if m_rel == GONE {
            Done::given_up(job)
        } else if !self.server_up[origin] {
            Done {
                transient: Some("connection refused".into()),
                ..Done::given_up(job)
            }
        } else if self.disk_full {
            Done {
                trouble: Some("no space left on device".into()),
                ..Done::given_up(job)
            }
        } else {
            Done {
                stored: Some((Method::Sha256, digest(), 1)),
                ..Done::given_up(job)
            }
        };
        self.ended(d);
    }

    /// What `Flow::downloaded` does with an ended download.
    fn ended(&mut self, d: Done) {
        let now = self.now;
        if d.stored.is_some() {
            self.engine.servers.note_success(&d.job.origin);
        }
        let (after, mut rejudge) = self.engine.download_ended(&d, false, now);
        let rel: u64 = d.job.rel[1..].parse().expect("rN");
        match after {
            AfterDownload::Retry { id, message } => self.retry_ended(id, &d, message),
            AfterDownload::Stalled { .. } | AfterDownload::Abandoned => {}
            AfterDownload::Stored { slot, message } => {
                let m = Msg::parse(&message.expect("a message waits for its download").1);
                self.tree.insert(rel, m.version);
                let seq = self.announce(m.file());
                self.engine.finished(slot, seq);
            }
            AfterDownload::Queue {
                slot,
                topic,
                payload,
            } => {
                let m = Msg::parse(&payload);
                if !d.diverted {
                    let why = d.transient.as_deref().unwrap_or_default();
                    self.engine.servers.log_failure(&d.job.origin, why, now);
                }
                // now and then the queue cannot be written: the message waits
                let kept = !(self.faults && self.rng.one_in(10));
                if kept {
                    self.queue.push(m, now);
                }
                self.engine
                    .queued(slot, topic, payload, kept, &mut rejudge, now);
            }
            AfterDownload::GivenUp => {}
        }
        while let Some(h) = rejudge.next(&mut self.engine) {
            self.process(h);
        }
    }

    /// What `Flow::retry_ended` does.
    fn retry_ended(&mut self, id: u64, d: &Done, message: Option<(Bytes, Bytes)>) {
        let now = self.now;
        let end = retries::ended(Ended {
            stored: d.stored.is_some(),
            stopping: false,
            disk_trouble: d.trouble.is_some(),
            transient: d.transient.as_deref(),
            diverted: d.diverted,
            expired: false,
        });
        match end {
            RetryEnd::Stored => {
                let m = Msg::parse(&message.expect("a retried download has its message").1);
                self.tree.insert(m.rel, m.version);
                let seq = self.announce(m.file());
                self.engine.retry_stored(id, seq);
                if self.engine.servers.succeeded(&d.job.origin) {
                    let origin = ORIGINS.iter().position(|o| *o == &*d.job.origin);
                    self.queue.wake(origin.expect("known"), now);
                    self.engine.retry_pace.woken();
                }
            }
            RetryEnd::Again => self.queue.later(id, Some(Duration::ZERO), now),
            RetryEnd::Paused => {
                self.engine.servers.unprobe(&d.job.origin);
                self.queue.later(id, Some(RETRY_PAUSE), now);
            }
            RetryEnd::GivenUp => {
                // the server answered: a probe is over
                self.engine.servers.unprobe(&d.job.origin);
                self.queue.entries.remove(&id);
            }
            RetryEnd::Failed { why, blame, .. } => {
                if blame {
                    self.engine.servers.log_failure(&d.job.origin, why, now);
                }
                self.queue.later(id, None, now);
            }
        }
    }

    /// What `Flow::retry_tick` does: spill, then judge due entries again while the
    /// free workers have room.
    fn retry_tick(&mut self) {
        let now = self.now;
        if self.engine.retry_pace.tick(now) {
            while let Some((slot, f)) = self.engine.blocking(now) {
                let m = Msg::parse(&f.payload);
                if self.faults && self.rng.one_in(10) {
                    self.engine.not_spilled(slot, f);
                    break;
                }
                let id = self.queue.push(m, now);
                self.queue.entries.get_mut(&id).expect("pushed").busy = true;
                self.engine.spilled(slot, id, *f);
            }
        }
        if !self.engine.retry_pace.scanning() || self.queue.entries.is_empty() {
            return;
        }
        while self.engine.window.queued() < self.engine.window.room() {
            let servers = &mut self.engine.servers;
            let due = self
                .queue
                .entries
                .iter()
                .rev()
                .find(|(_, e)| {
                    let origin = ORIGINS[e.msg.origin];
                    !e.busy && e.due <= now && servers.may_try(origin, now)
                })
                .map(|(id, _)| *id);
            let Some(id) = due else {
                self.engine.retry_pace.found_none();
                return;
            };
            let e = self.queue.entries.get_mut(&id).expect("found");
            e.busy = true;
            let (payload, reloaded) = (e.msg.payload(), e.reloaded);
            let o = self.judge(&payload, reloaded);
            match self.engine.retry_judged(id, Bytes::new(), payload, o, now) {
                RetryJudged::Fetching => {}
                judged => {
                    let origin = ORIGINS[self.queue.entries[&id].msg.origin];
                    self.engine.servers.unprobe(origin);
                    if let RetryJudged::Later(p) = judged {
                        self.queue.later(id, Some(p), now);
                    }
                }
            }
        }
    }

    /// What `Flow::hand_over` does: the post acks settle the journal and the retry
    /// queue, then the upstream acks go, in order.
    fn hand_over(&mut self) {
        let settled = self.engine.post_acked(self.acked);
        for k in settled.journal {
            self.journal.insert(k);
        }
        // done with (stored and announced, or here already): `check` says whether
        // that lost anything
        for id in settled.retry_remove {
            self.queue.entries.remove(&id);
        }
        let acks: Vec<_> = self.engine.acks_due(self.acked).collect();
        for a in &acks {
            let br = &mut self.brokers[a.broker];
            assert_eq!(a.epoch, br.epoch, "an ack of an older connection");
            assert!(
                br.last_acked.is_none_or(|p| p < a.pkid),
                "acks out of order: {} after {:?}",
                a.pkid,
                br.last_acked
            );
            br.last_acked = Some(a.pkid);
            assert!(
                br.unacked.remove(&a.pkid).is_some(),
                "an ack for a message the broker does not hold"
            );
        }
        self.engine.acks_sent(acks.len());
    }

    /// The node's memory is lost (a crash, or the post session lost: the flow starts
    /// again); the tree, the journal and the retry queue are on disk. Upstream brokers
    /// deliver again what was not acknowledged; what the post broker had not
    /// acknowledged is not known announced.
    fn restart(&mut self, crash: bool) {
        let now = self.now;
        if crash {
            self.engine = Engine::new(new_window(), now);
            for e in self.queue.entries.values_mut() {
                e.busy = false;
                e.reloaded = true;
                e.due = now;
            }
        } else {
            let (again, abandoned) = self.engine.restart(new_window());
            for id in again {
                self.queue.again(id, now);
            }
            for id in abandoned {
                // a probe abandoned: the server's next file probes it
                if let Some(e) = self.queue.entries.get(&id) {
                    self.engine.servers.unprobe(ORIGINS[e.msg.origin]);
                }
                self.queue.later(id, Some(Duration::ZERO), now);
            }
        }
        self.batches.clear();
        self.published.clear();
        self.issued = 0;
        self.acked = 0;
        for br in &mut self.brokers {
            br.epoch += 1;
            br.last_acked = None;
            br.redeliver = br.unacked.keys().copied().collect();
        }
    }

    fn step(&mut self) {
        self.steps += 1;
        let faults = self.faults;
        match self.rng.below(if faults { 14 } else { 8 }) {
            0 | 1 => self.deliver(),
            2 => self.dispatch(),
            3 | 4 => self.answer(),
            5 => self.acked = (self.acked + 1 + self.rng.below(3)).min(self.issued),
            6 => self.hand_over(),
            7 => {
                self.now += Duration::from_millis(self.rng.below(700));
                self.retry_tick();
                if let Some(waiting) = self.engine.stall_round(self.now) {
                    for a in waiting {
                        self.process(a);
                    }
                    self.engine.stall_round_ended();
                }
            }
            8 | 9 => self.disk_full = self.rng.one_in(3),
            10 | 11 => {
                let s = self.rng.below(2) as usize;
                self.server_up[s] = !self.rng.one_in(3);
            }
            12 => {
                let crash = self.rng.one_in(2);
                self.restart(crash);
            }
            _ => self.now += Duration::from_secs(3), // a slow body: spilled
        }
        self.check();
    }

    /// Nothing lost; no relPath downloaded twice at once.
    fn check(&self) {
        for &file in &self.sent {
            let waiting = self
                .brokers
                .iter()
                .any(|b| b.unacked.values().any(|m| m.file() == file));
            assert!(
                self.journal.contains(&file) || self.queue.holds(file) || waiting,
                "file {file:?} lost: not announced, not in the retry queue, acknowledged upstream (step {})",
                self.steps
            );
        }
        let mut rels = HashSet::new();
        for j in self.batches.iter().flatten() {
            assert!(rels.insert(&j.rel), "{} downloaded twice at once", j.rel);
        }
    }

    /// The faults stop: everything settles.
    fn settle(&mut self) {
        self.faults = false;
        self.disk_full = false;
        self.server_up = [true; 2];
        for _ in 0..20_000 {
            self.step();
            let idle = self.engine.window.is_empty()
                && self.queue.entries.is_empty()
                && self.batches.is_empty()
                && self
                    .brokers
                    .iter()
                    .all(|b| b.unacked.is_empty() && b.fresh.is_empty());
            if idle {
                break;
            }
            // the post broker answers in the end
            if self.rng.one_in(4) {
                self.acked = self.issued;
            }
        }
        assert!(self.engine.window.is_empty(), "the window never emptied");
        assert!(
            self.queue.entries.is_empty(),
            "seed {}: the retry queue never emptied: {:?}; window {} working, {} queued; {:?} at {:?}",
            self.seed,
            self.queue
                .entries
                .iter()
                .map(|(id, e)| (id, e.msg, e.busy, e.due.saturating_duration_since(self.now), e.reloaded))
                .collect::<Vec<_>>(),
            self.engine.window.working(),
            self.engine.window.queued(),
            self.engine.servers,
            self.now,
        );
        for b in &self.brokers {
            assert!(b.unacked.is_empty(), "messages never acknowledged");
        }
        for &file in &self.sent {
            assert!(self.journal.contains(&file), "{file:?} never announced");
        }
    }
}

#[test]
fn seeded_simulation_of_the_whole_engine_loses_nothing_and_settles() {
    let seeds: u64 = std::env::var("MESHNODE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let mut steps = 0;
    for seed in 1..=seeds {
        let mut sim = Sim::new(seed, 40);
        for _ in 0..400 {
            sim.step();
        }
        sim.settle();
        steps += sim.steps;
    }
    assert!(steps > seeds * 400);
}
