//! The window's rules, without a broker, a worker or a clock: acks leave in arrival
//! order, only for finished messages whose announcement the post broker took; batches
//! respect the pipeline, the workers and each server's connections; a download given
//! back goes first. Then a seeded simulation of random schedules checks the ack rules
//! after every step.

use super::*;
use crate::core::integrity::Method;
use crate::mesh::engine::simulation::model::Rng;

fn job(slot: u64, origin: &str, rel: &str, size: Option<u64>) -> Job {
    Job {
        slot,
        rel: rel.into(),
        url: format!("{origin}/{rel}"),
        origin: origin.into(),
        method: Method::Md5,
        expected: None,
        size,
        batch: 0,
        pub_time: None,
    }
}

fn push(w: &mut Window, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| w.push(i % 2, 1, i as u16 + 1, QoS::AtLeastOnce))
        .collect()
}

/// Acks due at `acked`, sent all: their packet ids.
fn release_all(w: &mut Window, acked: u64) -> Vec<u16> {
    let due: Vec<u16> = w.releasable(acked).map(|a| a.pkid).collect();
    w.released(due.len());
    due
}

#[test]
fn acks_leave_in_arrival_order_once_finished_and_announced() {
    let mut w = Window::new(16, 4, 2, 4);
    let slots = push(&mut w, 5);
    assert!(release_all(&mut w, u64::MAX).is_empty(), "nothing finished");
    w.done(slots[2], 1);
    w.done(slots[1], 0);
    assert!(
        release_all(&mut w, u64::MAX).is_empty(),
        "the head is not finished"
    );
    w.done(slots[0], 2);
    assert!(
        release_all(&mut w, 1).is_empty(),
        "the head's announcement not taken"
    );
    assert_eq!(release_all(&mut w, 2), [1, 2, 3]);
    assert_eq!(w.len(), 2);
    assert_eq!(w.of_broker(0), 1, "slot 4 (broker 0) is left");
    assert_eq!(w.of_broker(1), 1, "slot 3 (broker 1) is left");
    w.done(slots[4], 3);
    assert!(
        release_all(&mut w, 3).is_empty(),
        "slot 3 holds slot 4 back"
    );
    w.done(slots[3], 0);
    assert_eq!(release_all(&mut w, 3), [4, 5]);
    assert!(w.is_empty());
}

#[test]
fn acks_not_sent_stay_due() {
    let mut w = Window::new(16, 4, 2, 4);
    for s in push(&mut w, 3) {
        w.done(s, 0);
    }
    // the connection's queue took one: the others are due again next turn
    assert_eq!(w.releasable(0).count(), 3);
    w.released(1);
    let again: Vec<u16> = w.releasable(0).map(|a| a.pkid).collect();
    assert_eq!(again, [2, 3]);
    assert_eq!(w.working(), 0);
}

#[test]
fn batches_respect_the_pipeline_the_workers_and_the_servers_connections() {
    let mut w = Window::new(64, 3, 2, 4);
    let slots = push(&mut w, 12);
    for (i, &s) in slots.iter().take(10).enumerate() {
        w.fetch(
            job(s, "http://a", &format!("f{i}"), None),
            Bytes::new(),
            Bytes::new(),
            Instant::now(),
        );
    }
    w.fetch(
        job(slots[10], "http://b", "g0", None),
        Bytes::new(),
        Bytes::new(),
        Instant::now(),
    );
    w.fetch(
        job(slots[11], "http://a", "big", Some(PIPELINE_SMALL + 1)),
        Bytes::new(),
        Bytes::new(),
        Instant::now(),
    );
    let d = w.dispatch(|_| false);
    let sizes: Vec<(String, usize)> = d
        .batches
        .iter()
        .map(|b| (b[0].origin.to_string(), b.len()))
        .collect();
    // server a: two connections of four; server b takes the third worker
    assert_eq!(
        sizes,
        [
            ("http://a".to_string(), 4),
            ("http://b".to_string(), 1),
            ("http://a".to_string(), 4)
        ]
    );
    assert!(!w.worker_free());
    assert_eq!(w.queued(), 3, "f8, f9 and the large file wait");
    assert!(w.dispatch(|_| false).batches.is_empty(), "no worker free");
    // the first batch of a ends: its connection goes to the rest of a
    for j in &d.batches[0] {
        w.ended(j);
    }
    let next = w.dispatch(|_| false).batches;
    let rels: Vec<&str> = next[0].iter().map(|j| &*j.rel).collect();
    assert_eq!(
        rels,
        ["f8", "f9"],
        "the large file is not pipelined with them"
    );
    for j in &next[0] {
        w.ended(j);
    }
    let last = w.dispatch(|_| false).batches;
    assert_eq!(last[0].len(), 1);
    assert_eq!(&*last[0][0].rel, "big");
}

#[test]
fn a_failing_server_gets_one_connection_then_one_more_per_success() {
    let mut w = Window::new(64, 8, 4, 2);
    w.server_failed("http://a");
    let slots = push(&mut w, 8);
    for (i, &s) in slots.iter().enumerate() {
        w.fetch(
            job(s, "http://a", &format!("f{i}"), None),
            Bytes::new(),
            Bytes::new(),
            Instant::now(),
        );
    }
    let d = w.dispatch(|_| false);
    assert_eq!(d.batches.len(), 1, "one connection after a failure");
    w.server_ok("http://a");
    assert_eq!(w.dispatch(|_| false).batches.len(), 1, "a second one");
    w.server_ok("http://a");
    w.server_ok("http://a");
    assert_eq!(w.dispatch(|_| false).batches.len(), 2, "all four");
}

#[test]
fn a_download_given_back_goes_first_on_another_connection() {
    let mut w = Window::new(64, 4, 2, 4);
    let slots = push(&mut w, 6);
    for (i, &s) in slots.iter().enumerate() {
        w.fetch(
            job(s, "http://a", &format!("f{i}"), None),
            Bytes::new(),
            Bytes::new(),
            Instant::now(),
        );
    }
    let mut d = w.dispatch(|_| false);
    assert_eq!(d.batches.len(), 2);
    // f0's answer holds the first connection: f1..f3 come back
    let first = d.batches.remove(0);
    let mut back = first.into_iter();
    let holder = back.next().unwrap();
    for j in back.rev() {
        w.requeue(j);
    }
    // the second connection ends; the given-back ones take it, in their order
    for j in &d.batches[0] {
        w.ended(j);
    }
    let again = w.dispatch(|_| false).batches;
    let rels: Vec<&str> = again[0].iter().map(|j| &*j.rel).collect();
    assert_eq!(rels, ["f1", "f2", "f3"]);
    assert!(
        w.dispatch(|_| false).batches.is_empty(),
        "f0 holds the other"
    );
    w.ended(&holder);
    assert_eq!(w.downloads(), 3);
}

#[test]
fn downloads_of_a_server_marked_down_are_diverted_not_started() {
    let mut w = Window::new(64, 4, 2, 4);
    let slots = push(&mut w, 3);
    for (i, &s) in slots.iter().enumerate() {
        let origin = if i == 1 { "http://up" } else { "http://down" };
        w.fetch(
            job(s, origin, &format!("f{i}"), None),
            Bytes::new(),
            Bytes::new(),
            Instant::now(),
        );
    }
    let d = w.dispatch(|o| o == "http://down");
    assert_eq!(d.diverted.len(), 2);
    assert_eq!(d.batches.len(), 1);
    assert_eq!(&*d.batches[0][0].origin, "http://up");
}

/// A download ended with its file stored: its message finished, its announcement
/// published as number `seq + 1`.
#[test]
fn a_server_that_closes_after_one_answer_gets_batches_of_one_for_a_while() {
    let mut w = Window::new(512, 1, 1, 4);
    let n = 4 * ONE_BY_ONE_BATCHES as usize + 8;
    let slots = push(&mut w, n);
    for (i, &s) in slots.iter().enumerate() {
        w.fetch(
            job(s, "http://old", &format!("f{i}"), None),
            Bytes::new(),
            Bytes::new(),
            Instant::now(),
        );
    }
    let mut sizes = Vec::new();
    fn next(w: &mut Window) -> usize {
        let d = w.dispatch(|_| false);
        let b = d.batches.into_iter().next().expect("a batch");
        for j in &b {
            w.ended(j);
        }
        b.len()
    }
    sizes.push(next(&mut w));
    w.closes_after_one("http://old");
    for _ in 0..=ONE_BY_ONE_BATCHES {
        sizes.push(next(&mut w));
    }
    let ones = sizes[1..=ONE_BY_ONE_BATCHES as usize]
        .iter()
        .all(|&k| k == 1);
    assert_eq!(sizes[0], 4, "pipelined until known");
    assert!(ones, "one request per connection: {sizes:?}");
    assert_eq!(sizes.last(), Some(&4), "then pipelining is tried again");
}

fn end_download(w: &mut Window, j: &Job, seq: &mut u64, finished: &mut HashMap<u64, u64>) {
    w.ended(j);
    *seq += 1;
    w.done(j.slot, *seq);
    finished.insert(j.slot, *seq);
}

/// Random schedules of arrivals, downloads started, given back and ended, messages
/// finished, announcements acknowledged and acks sent (all or some): after every step,
/// every ack sent is of a finished message whose announcement was acknowledged, acks
/// go in arrival order, none twice, and nothing is left behind at the end.
#[test]
fn seeded_simulation_of_random_schedules_keeps_the_ack_rules() {
    for seed in 1..=300u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut w = Window::new(
            64,
            1 + r.below(4) as usize,
            1 + r.below(3) as usize,
            1 + r.below(5) as usize,
        );
        // slot -> (post seq once finished); the post broker acknowledges up to `acked`
        let mut finished: HashMap<u64, u64> = HashMap::new();
        let mut arrived: Vec<u64> = Vec::new();
        let mut acks_sent: Vec<u16> = Vec::new();
        let mut running: Vec<Job> = Vec::new();
        let (mut seq, mut acked) = (0u64, 0u64);
        for step in 0..400 {
            match r.below(8) {
                0 | 1 if arrived.len() < 200 => {
                    let pkid = arrived.len() as u16 + 1;
                    let slot = w.push(0, 1, pkid, QoS::AtLeastOnce);
                    arrived.push(slot);
                    if r.below(2) == 0 {
                        // inline: finished at once, its announcement published
                        seq += 1;
                        w.done(slot, seq);
                        finished.insert(slot, seq);
                    } else {
                        let origin = ["http://a", "http://b"][r.below(2) as usize];
                        let size = (r.below(4) == 0).then_some(PIPELINE_SMALL * 2);
                        w.fetch(
                            job(slot, origin, &format!("r{slot}"), size),
                            Bytes::new(),
                            Bytes::new(),
                            Instant::now(),
                        );
                    }
                }
                2 => {
                    let d = w.dispatch(|_| false);
                    for b in d.batches {
                        assert!(!b.is_empty() && b.len() <= w.pipeline, "seed {seed}");
                        running.extend(b);
                    }
                }
                3 | 4 if !running.is_empty() => {
                    let i = r.below(running.len() as u64) as usize;
                    let j = running.swap_remove(i);
                    if r.below(5) == 0 {
                        w.requeue(j); // given back unanswered
                    } else {
                        end_download(&mut w, &j, &mut seq, &mut finished);
                    }
                }
                5 => acked = seq.min(acked + 1 + r.below(3)),
                _ => {
                    let due: Vec<Ack> = w.releasable(acked).collect();
                    let n = if due.is_empty() {
                        0
                    } else {
                        r.below(due.len() as u64 + 1) as usize
                    };
                    for a in &due[..n] {
                        let slot = arrived[usize::from(a.pkid) - 1];
                        let post = finished.get(&slot).copied();
                        assert!(
                            post.is_some_and(|p| p <= acked),
                            "seed {seed} step {step}: ack of an unfinished or unannounced message"
                        );
                        assert_eq!(
                            usize::from(a.pkid),
                            acks_sent.len() + 1,
                            "seed {seed} step {step}: out of order or twice"
                        );
                        acks_sent.push(a.pkid);
                    }
                    w.released(n);
                }
            }
            assert!(w.running_jobs + w.queued == w.downloads(), "seed {seed}");
            assert!(
                w.running <= w.concurrency,
                "seed {seed}: more batches than workers"
            );
        }
        // drain: everything started, ended, announced and acknowledged
        for _ in 0..1000 {
            for b in w.dispatch(|_| false).batches {
                running.extend(b);
            }
            for j in running.drain(..) {
                end_download(&mut w, &j, &mut seq, &mut finished);
            }
            if w.downloads() == 0 {
                break;
            }
        }
        let n = w.releasable(seq).count();
        for a in w.releasable(seq) {
            assert_eq!(
                usize::from(a.pkid),
                acks_sent.len() + 1,
                "seed {seed}: the rest in order"
            );
            acks_sent.push(a.pkid);
        }
        w.released(n);
        assert!(w.is_empty(), "seed {seed}: {} left", w.len());
        assert_eq!(
            acks_sent.len(),
            arrived.len(),
            "seed {seed}: each acked once"
        );
    }
}

#[test]
fn the_download_holding_acks_back_says_since_when() {
    let mut w = Window::new(8, 2, 2, 4);
    let a = w.push(0, 1, 1, QoS::AtLeastOnce);
    let before = Instant::now();
    w.fetch(
        job(a, "http://a", "ra", None),
        Bytes::new(),
        Bytes::new(),
        Instant::now(),
    );
    assert_eq!(w.blocking_since(), None, "nothing behind it");
    let b = w.push(0, 1, 2, QoS::AtLeastOnce);
    w.done(b, 1);
    let since = w.blocking_since().expect("a's download holds b's ack back");
    assert!(since >= before);
    // the deadline the flow waits for is the one the spill takes it at
    assert!(
        w.take_blocking_fetch(since).is_none(),
        "not before its time"
    );
    let (slot, _) = w
        .take_blocking_fetch(since + std::time::Duration::from_millis(1))
        .expect("taken once its time has come");
    assert_eq!(slot, a);
    w.done(a, 2);
    assert_eq!(w.blocking_since(), None);
}

#[test]
fn downloads_behind_a_download_hold_nothing_back_until_one_is_finished() {
    // a node slower than its feed: every message a download, queued or running in
    // arrival order; none of them holds another's ack back
    let mut w = Window::new(8, 1, 1, 1);
    let t0 = Instant::now();
    let slots: Vec<u64> = (0..3u16)
        .map(|i| {
            let s = w.push(0, 1, i + 1, QoS::AtLeastOnce);
            w.fetch(
                job(s, "http://a", &format!("r{i}"), None),
                Bytes::new(),
                Bytes::new(),
                t0,
            );
            s
        })
        .collect();
    let later = t0 + std::time::Duration::from_secs(3600);
    assert_eq!(w.blocking_since(), None);
    assert!(w.take_blocking_fetch(later).is_none(), "nothing to spill");
    // one behind finishes (another server's, say): now the first holds its ack back
    w.ended(&job(slots[2], "http://a", "r2", None));
    w.done(slots[2], 1);
    assert_eq!(w.blocking_since(), Some(t0));
    let (slot, _) = w.take_blocking_fetch(later).expect("spilled");
    assert_eq!(slot, slots[0]);
}

#[test]
fn servers_remembered_for_their_connections_are_bounded() {
    let mut w = Window::new(16, 4, 2, 4);
    for i in 0..3 * MAX_KNOWN_SERVERS {
        let origin = format!("http://s{i}:80");
        w.closes_after_one(&origin);
        w.server_failed(&origin);
        assert!(w.one_by_one.len() <= MAX_KNOWN_SERVERS, "one by one");
        assert!(w.allowed.len() <= MAX_KNOWN_SERVERS, "allowed");
    }
}
