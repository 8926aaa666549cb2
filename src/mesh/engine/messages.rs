//! What happens to each message between its arrival and its upstream ack, without I/O:
//! the window (in order acks, downloads by server), the post ledger, the disk stall,
//! the retry queue's pace, the servers' standing (down, probed, up), and the rules that join them: what a judged message, an
//! ended download, a retried one or a spilled one means for the messages waiting on it.
//! The driver (`flow.rs`, `apply.rs`, `requeue.rs`) judges messages (reading and
//! writing the data tree), keeps the retry queue and the journal on disk, talks to the
//! brokers and the workers, and tells the engine what happened; the engine says what is
//! to be done next. The whole of it runs in a seeded simulation (`simulation.rs`).

use super::download::{Done, Job};
use super::ledger::{Key, Ledger, Settled};
use super::retries::{RetryPace, RETRY_PAUSE, SPILL_AFTER};
use super::stall::Stall;
use crate::mesh::servers::Servers;
use crate::mesh::window::{retry_id, Ack, Arrival, Dispatch, Fetching, Window, RETRY_SLOTS};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What the driver's judging made of one message.
pub enum Outcome {
    /// Finished; publication `seq` (0: none) must be acknowledged before the upstream ack.
    Done(u64),
    /// Its file is to be downloaded: announced (and then acknowledged) once stored.
    Fetch(Job),
    /// Its relPath is being downloaded for another message: judged again after.
    Busy(String),
    /// Not stored for trouble of the local disk (relPath, why): not acknowledged, judged
    /// again when the disk is tried again.
    Stalled(String, String),
    /// Not finished (stopping): no ack, the broker delivers it again.
    Abandoned,
}

/// What became of a judged message in the window.
#[derive(Debug, PartialEq, Eq)]
pub enum Judged {
    Taken,
    /// The disk refused its file (relPath, why); `warn`: the pause to warn about (one
    /// warning a minute).
    Stalled {
        rel: String,
        why: String,
        warn: Option<Duration>,
    },
    /// Stopping left it unfinished.
    Abandoned,
}

/// What an ended download asks of the driver.
#[derive(Debug)]
pub enum AfterDownload {
    /// The download of retry-queue entry `id` (`retries::ended` says what becomes of
    /// it), with its message when known.
    Retry {
        id: u64,
        message: Option<(Bytes, Bytes)>,
    },
    /// The disk failed it: its message and those held for its relPath wait for the
    /// disk (done); `warn` as in `Judged::Stalled`.
    Stalled { warn: Option<Duration> },
    /// Stored: the driver announces it with its message, then says `finished`.
    Stored {
        slot: u64,
        message: Option<(Bytes, Bytes)>,
    },
    /// Stopping: abandoned, not acknowledged (the broker delivers it again).
    Abandoned,
    /// The server failed it: the driver keeps the message in the retry queue, then
    /// says `queued`.
    Queue {
        slot: u64,
        topic: Bytes,
        payload: Bytes,
    },
    /// Given up (a 4xx, a checksum that never matches): finished, acknowledged.
    GivenUp,
}

/// The messages held for a relPath whose download ended, judged again in arrival
/// order until one of them downloads it again (the rest then wait for that download).
#[derive(Debug, Default)]
pub struct Rejudge {
    rel: std::sync::Arc<str>,
    held: VecDeque<Arrival>,
}

impl Rejudge {
    /// The next message to judge again; `None` when none is left or the relPath is
    /// being downloaded again (the rest are held for it).
    pub fn next(&mut self, e: &mut Engine) -> Option<Arrival> {
        if self.held.is_empty() {
            return None;
        }
        if e.window.is_fetching(&self.rel) {
            for h in self.held.drain(..) {
                e.window.hold(&self.rel, h);
            }
            return None;
        }
        self.held.pop_front()
    }
}

/// What becomes of a retry-queue entry judged again.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryJudged {
    /// Its download is queued.
    Fetching,
    /// Here already, or refused now: removed from the queue once the announcement
    /// (if any) is acknowledged.
    Finished,
    /// Tried again after this pause (stopping: at once; the disk or another download
    /// of its relPath in the way: `RETRY_PAUSE`).
    Later(Duration),
}

pub struct Engine {
    pub window: Window,
    /// Announcements waiting for the post broker's acks, and what waits with them.
    pub ledger: Ledger,
    /// While the local disk refuses files.
    pub stall: Stall,
    /// When the retry queue is looked at.
    pub retry_pace: RetryPace,
    /// The servers downloaded from: marked down, probed, back up.
    pub servers: Servers,
    /// Retry-queue entries being downloaded: their messages, to announce the files.
    retrying: HashMap<u64, (Bytes, Bytes)>,
    /// Downloads moved to the retry queue while running (their message acknowledged):
    /// window slot -> retry-queue entry.
    spilled: HashMap<u64, u64>,
}

impl Engine {
    pub fn new(window: Window, now: Instant) -> Engine {
        Engine {
            window,
            ledger: Ledger::default(),
            stall: Stall::default(),
            retry_pace: RetryPace::new(now),
            servers: Servers::default(),
            retrying: HashMap::new(),
            spilled: HashMap::new(),
        }
    }

    /// The flow starts again (a new post session, new connections, an empty window):
    /// returns the retry-queue entries to judge again as redeliveries (their
    /// announcement went to the old session, not known acknowledged), and those whose
    /// downloads were abandoned (due again at once).
    pub fn restart(&mut self, window: Window) -> (Vec<u64>, Vec<u64>) {
        let again = self.ledger.new_session();
        let abandoned = self.retrying.drain().map(|(id, _)| id).collect();
        self.spilled.clear();
        self.window = window;
        (again, abandoned)
    }

    /// A message from upstream broker `broker` enters the window.
    #[allow(clippy::too_many_arguments)]
    pub fn arrive(
        &mut self,
        broker: usize,
        epoch: u32,
        pkid: u16,
        qos: QoS,
        dup: bool,
        topic: Bytes,
        payload: Bytes,
    ) -> Arrival {
        let slot = self.window.push(broker, epoch, pkid, qos);
        Arrival {
            slot,
            topic,
            payload,
            dup,
        }
    }

    /// What judging message `a` came to, recorded in the window.
    pub fn judged(&mut self, a: Arrival, o: Outcome, now: Instant) -> Judged {
        match o {
            Outcome::Done(seq) => self.window.done(a.slot, seq),
            Outcome::Fetch(mut job) => {
                job.slot = a.slot;
                self.window.fetch(job, a.topic, a.payload, now);
            }
            Outcome::Busy(rel) => self.window.hold(&rel, a),
            Outcome::Stalled(rel, why) => {
                let warn = self.stall.refused(now);
                self.window.stall(a);
                return Judged::Stalled { rel, why, warn };
            }
            Outcome::Abandoned => return Judged::Abandoned,
        }
        Judged::Taken
    }

    /// Announcement `seq` of the post session carries journal key `key`.
    pub fn announced(&mut self, seq: u64, key: Key) {
        self.ledger.announced(seq, key);
    }

    /// Message `slot` is finished; publication `seq` (0: none) is acknowledged first.
    pub fn finished(&mut self, slot: u64, seq: u64) {
        self.window.done(slot, seq);
    }

    /// A download was given back unanswered (the connection it was pipelined on is
    /// held by a large answer, or ends after one): it waits again, first, for another
    /// connection; a server that closes after one answer is not pipelined to a while.
    pub fn returned(&mut self, job: Job, closes_after_one: bool) {
        if closes_after_one {
            self.window.closes_after_one(&job.origin);
        }
        self.window.requeue(job);
    }

    /// A download ended at `now` (`stopping`: the node is stopping). Its server counts
    /// as up when it stored the file, as failing when it failed it (unless not tried).
    pub fn download_ended(
        &mut self,
        d: &Done,
        stopping: bool,
        now: Instant,
    ) -> (AfterDownload, Rejudge) {
        debug_assert!(!d.returned, "a download given back is `returned`");
        let (message, held) = self.window.ended(&d.job);
        let rel = d.job.rel.clone();
        if d.stored.is_some() {
            self.window.server_ok(&d.job.origin);
        } else if d.transient.is_some() && !d.diverted {
            self.window.server_failed(&d.job.origin);
        }
        let slot = d.job.slot;
        let mut rejudge = Rejudge { rel, held };
        if stopping {
            // what is held is not judged: unacknowledged, it comes again
            rejudge.held.clear();
        }
        if let Some(id) = retry_id(slot).or_else(|| self.spilled.remove(&slot)) {
            let message = self.retrying.remove(&id).or(message);
            return (AfterDownload::Retry { id, message }, rejudge);
        }
        let after = match (&d.stored, &d.trouble, message) {
            (Some(_), _, message) => AfterDownload::Stored { slot, message },
            (None, Some(_), Some((topic, payload))) => {
                // judged again when the disk takes files, with those that waited for it
                let warn = self.stall.refused(now);
                self.stall_message(slot, topic, payload, &mut rejudge);
                AfterDownload::Stalled { warn }
            }
            _ if stopping => AfterDownload::Abandoned,
            (None, None, Some((topic, payload))) if d.transient.is_some() => AfterDownload::Queue {
                slot,
                topic,
                payload,
            },
            _ => {
                self.window.done(slot, 0);
                AfterDownload::GivenUp
            }
        };
        (after, rejudge)
    }

    /// The message of an ended download (`AfterDownload::Queue`) is kept in the retry
    /// queue (`kept`): finished, acknowledged once the queue is synced. Not kept (the
    /// queue cannot be written): it waits like a file the disk refused, with the
    /// messages held for it. Returns the pause to warn about, if due.
    pub fn queued(
        &mut self,
        slot: u64,
        topic: Bytes,
        payload: Bytes,
        kept: bool,
        rejudge: &mut Rejudge,
        now: Instant,
    ) -> Option<Duration> {
        if kept {
            self.window.done(slot, 0);
            return None;
        }
        let warn = self.stall.refused(now);
        self.stall_message(slot, topic, payload, rejudge);
        warn
    }

    fn stall_message(&mut self, slot: u64, topic: Bytes, payload: Bytes, rejudge: &mut Rejudge) {
        self.window.stall(Arrival {
            slot,
            topic,
            payload,
            dup: false,
        });
        for h in rejudge.held.drain(..) {
            self.window.stall(h);
        }
    }

    /// A round of judging again the messages the disk refused, when due at `now`:
    /// them, in order (`None`: not due).
    pub fn stall_round(&mut self, now: Instant) -> Option<VecDeque<Arrival>> {
        if !self.window.is_stalled() || !self.stall.due(now) {
            return None;
        }
        self.stall.retrying();
        Some(self.window.take_stalled())
    }

    /// The round is over: true when the disk took them all (the stall is over).
    pub fn stall_round_ended(&mut self) -> bool {
        if self.window.is_stalled() {
            return false;
        }
        self.stall.cleared();
        true
    }

    /// What judging retry-queue entry `id` again came to (its message `topic`,
    /// `payload`).
    pub fn retry_judged(
        &mut self,
        id: u64,
        topic: Bytes,
        payload: Bytes,
        o: Outcome,
        now: Instant,
    ) -> RetryJudged {
        match o {
            Outcome::Fetch(mut job) => {
                job.slot = RETRY_SLOTS + id;
                self.retrying.insert(id, (topic.clone(), payload.clone()));
                self.window.fetch(job, topic, payload, now);
                RetryJudged::Fetching
            }
            Outcome::Done(seq) => {
                self.ledger.retry_finished(seq, id);
                RetryJudged::Finished
            }
            Outcome::Abandoned => RetryJudged::Later(Duration::ZERO),
            Outcome::Busy(_) | Outcome::Stalled(..) => RetryJudged::Later(RETRY_PAUSE),
        }
    }

    /// Retry-queue entry `id` was stored and announced (publication `seq`, 0: none):
    /// removed from the queue once that is acknowledged.
    pub fn retry_stored(&mut self, id: u64, seq: u64) {
        self.ledger.retry_finished(seq, id);
    }

    /// The download holding acks back for longer than `SPILL_AFTER` at `now`, taken to
    /// be moved to the retry queue (`spilled`), or given back (`not_spilled`).
    pub fn blocking(&mut self, now: Instant) -> Option<(u64, Box<Fetching>)> {
        let before = now.checked_sub(SPILL_AFTER)?;
        self.window.take_blocking_fetch(before)
    }

    /// The download of message `slot` goes on as retry-queue entry `id`: the message
    /// is finished (acknowledged once the queue is synced).
    pub fn spilled(&mut self, slot: u64, id: u64, f: Fetching) {
        self.spilled.insert(slot, id);
        self.retrying.insert(id, (f.topic, f.payload));
        self.window.done(slot, 0);
    }

    /// The download could not be moved (the queue cannot be written).
    pub fn not_spilled(&mut self, slot: u64, f: Box<Fetching>) {
        self.window.restore_fetch(slot, f);
    }

    /// The post broker acknowledged everything up to `acked`: what that settles (the
    /// upstream acks it releases are then `window.releasable(acked)`).
    pub fn post_acked(&mut self, acked: u64) -> Settled {
        self.ledger.acked(acked)
    }

    /// The batches to hand to the downloaders now, and the downloads of servers marked
    /// down, not started (each to end through `download_ended` as `Done::diverted`).
    pub fn dispatch(&mut self, now: Instant) -> Dispatch {
        let servers = &self.servers;
        self.window.dispatch(|o| servers.is_down(o, now))
    }

    /// The upstream acks due, in arrival order, once the post broker has acknowledged
    /// `acked` publications; the driver sends what it can and says how many
    /// (`acks_sent`): the rest come again on the next turn.
    pub fn acks_due(&self, acked: u64) -> impl Iterator<Item = Ack> + '_ {
        self.window.releasable(acked)
    }

    /// The first `n` acks `acks_due` gave were sent (or were not to be sent).
    pub fn acks_sent(&mut self, n: usize) {
        self.window.released(n);
    }

    /// The earliest deadline of the work that has no wake-up of its own: the retry
    /// queue's next look while entries (`retry_waiting`) wait for free workers; a
    /// download holding acks back, to be spilled; the disk to be tried again. The
    /// driver waits for events until then (`Pace::poll_at`).
    pub fn poll_at(&self, retry_waiting: bool) -> Option<Instant> {
        let waiting = retry_waiting && self.window.worker_free();
        let retry = self
            .retry_pace
            .poll_at(waiting, self.window.blocking_since());
        retry.into_iter().chain(self.stall.poll_at()).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::integrity::{Digest, Method};

    fn job(rel: &str) -> Job {
        Job {
            slot: 0,
            rel: rel.into(),
            url: format!("http://a/{rel}"),
            origin: "http://a".into(),
            method: Method::Sha256,
            expected: None,
            size: None,
            batch: 0,
            pub_time: None,
        }
    }

    fn arrive(e: &mut Engine, pkid: u16) -> Arrival {
        let payload = Bytes::from(format!("m{pkid}"));
        e.arrive(0, 0, pkid, QoS::AtLeastOnce, false, Bytes::new(), payload)
    }

    /// Two messages for one relPath: the first downloads it, the second is held.
    fn two_for_one(now: Instant) -> (Engine, Job) {
        let mut e = Engine::new(Window::new(8, 2, 2, 4), now);
        let a = arrive(&mut e, 1);
        assert_eq!(e.judged(a, Outcome::Fetch(job("f")), now), Judged::Taken);
        let b = arrive(&mut e, 2);
        assert_eq!(e.judged(b, Outcome::Busy("f".into()), now), Judged::Taken);
        let mut d = e.window.dispatch(|_| false);
        let started = d.batches.pop().and_then(|b| b.into_iter().next());
        (e, started.expect("one download"))
    }

    #[test]
    fn a_stored_file_is_announced_then_its_held_messages_are_judged_in_order() {
        let now = Instant::now();
        let (mut e, j) = two_for_one(now);
        let d = Done {
            stored: Some((Method::Sha256, Digest::from_slice(&[1; 32]).unwrap(), 3)),
            ..Done::given_up(j)
        };
        let (after, mut rejudge) = e.download_ended(&d, false, now);
        let AfterDownload::Stored { slot, message } = after else {
            panic!("stored: {after:?}");
        };
        assert_eq!(message.map(|(_, p)| p), Some(Bytes::from("m1")));
        e.finished(slot, 1);
        let held = rejudge.next(&mut e).expect("the held message");
        assert_eq!(held.payload, Bytes::from("m2"));
        assert!(rejudge.next(&mut e).is_none());
        // acked in order once the announcement is
        e.judged(held, Outcome::Done(0), now);
        assert_eq!(e.window.releasable(0).count(), 0);
        assert_eq!(e.window.releasable(1).count(), 2);
    }

    #[test]
    fn dispatch_diverts_the_downloads_of_a_server_marked_down_until_its_time_is_up() {
        let now = Instant::now();
        let mut e = Engine::new(Window::new(8, 4, 2, 4), now);
        for _ in 0..crate::mesh::servers::DOWN_AFTER {
            e.servers.failed("http://a", now);
        }
        let a = arrive(&mut e, 1);
        assert_eq!(e.judged(a, Outcome::Fetch(job("f")), now), Judged::Taken);
        let b = arrive(&mut e, 2);
        let other = Job {
            origin: "http://b".into(),
            url: "http://b/g".into(),
            ..job("g")
        };
        assert_eq!(e.judged(b, Outcome::Fetch(other), now), Judged::Taken);
        let d = e.dispatch(now);
        let rels = |js: &[Job]| js.iter().map(|j| j.rel.to_string()).collect::<Vec<_>>();
        assert_eq!(rels(&d.diverted), ["f"], "the down server's file, untried");
        let started: Vec<_> = d.batches.iter().flat_map(|b| rels(b)).collect();
        assert_eq!(started, ["g"], "the other server's file goes on");
        // once its down time is over, its next file is started, not diverted
        let c = arrive(&mut e, 3);
        assert_eq!(e.judged(c, Outcome::Fetch(job("h")), now), Judged::Taken);
        let later = now + crate::mesh::servers::MAX_DOWN;
        let d = e.dispatch(later);
        assert!(d.diverted.is_empty());
        let started: Vec<_> = d.batches.iter().flat_map(|b| rels(b)).collect();
        assert_eq!(started, ["h"]);
    }

    #[test]
    fn a_message_the_retry_queue_cannot_keep_waits_with_those_held_for_its_file() {
        let now = Instant::now();
        let (mut e, j) = two_for_one(now);
        let d = Done {
            transient: Some("connection refused".into()),
            ..Done::given_up(j)
        };
        let (after, mut rejudge) = e.download_ended(&d, false, now);
        let AfterDownload::Queue {
            slot,
            topic,
            payload,
        } = after
        else {
            panic!("to the retry queue: {after:?}");
        };
        let warn = e.queued(slot, topic, payload, false, &mut rejudge, now);
        assert!(warn.is_some(), "the first refusal is warned about");
        // not judged now (it would overtake its elder), nor forgotten: both wait
        assert!(rejudge.next(&mut e).is_none());
        let waiting: Vec<_> = e
            .window
            .take_stalled()
            .into_iter()
            .map(|a| a.payload)
            .collect();
        assert_eq!(waiting, [Bytes::from("m1"), Bytes::from("m2")]);
        assert_eq!(e.window.working(), 2, "neither is finished");
    }

    #[test]
    fn a_spilled_download_ends_as_its_retry_entry_with_its_message() {
        let now = Instant::now();
        let (mut e, j) = two_for_one(now);
        assert!(
            e.blocking(now + SPILL_AFTER * 2).is_none(),
            "the message held for the same file waits for the download, not its ack"
        );
        // a finished message behind: its ack waits for the download's message
        let c = arrive(&mut e, 3);
        e.judged(c, Outcome::Done(0), now);
        assert!(e.blocking(now + SPILL_AFTER / 2).is_none(), "not yet");
        let (slot, f) = e.blocking(now + SPILL_AFTER * 2).expect("spilled");
        assert_eq!(slot, j.slot);
        e.spilled(slot, 7, *f);
        let d = Done {
            transient: Some("timed out".into()),
            ..Done::given_up(j)
        };
        let (after, _) = e.download_ended(&d, false, now + SPILL_AFTER * 3);
        let AfterDownload::Retry { id, message } = after else {
            panic!("the retry entry's: {after:?}");
        };
        assert_eq!((id, message.map(|(_, p)| p)), (7, Some(Bytes::from("m1"))));
    }
}
