//! The pace of a flow's loop: when batched publications and acks are handed over, when
//! the counters are posted and logged, and how long the loop may wait for an event
//! (`poll_at`), from `now` alone.

use std::time::{Duration, Instant};

/// Publications and acks handed over at once while the flow is busy.
pub const BATCH: usize = 32;
/// Longest a stored file's announcement waits for its batch.
pub const ANNOUNCE_DELAY: Duration = Duration::from_millis(20);
/// How often a flow posts its counters on the node's board.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait of a flow: events (a message, a post ack, a finished download) wake
/// it, and what has no wake-up of its own gives its deadline to `poll_at`.
pub const IDLE_POLL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Pace {
    /// Turns of the loop since the last hand-over.
    turns: usize,
    /// When the oldest publication not yet handed over was made.
    outbox_since: Option<Instant>,
    next_report: Instant,
    stats_from: Instant,
    stats_every: Duration,
}

impl Pace {
    /// A loop starting at `now` that logs its counters every `stats_every`.
    pub fn new(now: Instant, stats_every: Duration) -> Pace {
        Pace {
            turns: 0,
            outbox_since: None,
            next_report: now + REPORT_INTERVAL,
            stats_from: now,
            stats_every,
        }
    }

    /// A turn of the busy loop ended with `outbox` publications batched: whether to
    /// hand them over, with the acks, now. One wake-up of a connection thread then
    /// carries many requests; a stored file is announced within `ANNOUNCE_DELAY`
    /// whatever else is going on.
    pub fn turned(&mut self, now: Instant, outbox: usize) -> bool {
        self.turns += 1;
        if outbox > 0 && self.outbox_since.is_none() {
            self.outbox_since = Some(now);
        }
        self.turns >= BATCH
            || outbox >= BATCH
            || self
                .outbox_since
                .is_some_and(|t| now.duration_since(t) >= ANNOUNCE_DELAY)
    }

    /// Everything batched was handed over (after `turned`, or on going idle).
    pub fn handed_over(&mut self) {
        self.turns = 0;
        self.outbox_since = None;
    }

    /// Whether the counters are due on the node's board.
    pub fn report_due(&mut self, now: Instant) -> bool {
        if now < self.next_report {
            return false;
        }
        // on the interval, without drift; a loop held up for long posts once, then a
        // full interval later
        self.next_report += REPORT_INTERVAL;
        if self.next_report <= now {
            self.next_report = now + REPORT_INTERVAL;
        }
        true
    }

    /// Whether the stats line is due: the seconds it covers.
    pub fn stats_due(&mut self, now: Instant) -> Option<f64> {
        let covered = now.duration_since(self.stats_from);
        if covered < self.stats_every {
            return None;
        }
        self.stats_from = now;
        Some(covered.as_secs_f64())
    }

    /// Until when the loop may wait for an event: never past the next report, nor
    /// past `due`, the earliest deadline of work with no wake-up of its own (a
    /// download to spill, the retry queue's next look, the disk to try again). A
    /// deadline, not a fixed tick: a flow waiting for a slow download wakes when
    /// something is due, not 50 times a second.
    pub fn poll_at(&self, now: Instant, due: Option<Instant>) -> Instant {
        let at = (now + IDLE_POLL).min(self.next_report.max(now));
        due.map_or(at, |d| at.min(d.max(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_busy_loop_hands_over_every_batch_of_turns() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, Duration::from_secs(60));
        // acks only (nothing to announce): every BATCH turns, however fast they come
        for i in 1..BATCH {
            assert!(!p.turned(t0, 0), "turn {i}");
        }
        assert!(p.turned(t0, 0));
        p.handed_over();
        assert!(!p.turned(t0, 0));
    }

    #[test]
    fn a_full_outbox_goes_at_once_and_a_stored_file_waits_no_longer_than_the_delay() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, Duration::from_secs(60));
        assert!(p.turned(t0, BATCH), "a full batch of publications");
        p.handed_over();
        // one announcement, then turns without more: due ANNOUNCE_DELAY after it came
        assert!(!p.turned(t0 + MS, 1));
        assert!(!p.turned(t0 + ANNOUNCE_DELAY, 1));
        assert!(p.turned(t0 + MS + ANNOUNCE_DELAY, 1));
        p.handed_over();
        // the clock of the delay starts with the first publication after a hand-over
        assert!(!p.turned(t0 + 2 * ANNOUNCE_DELAY, 0));
        assert!(!p.turned(t0 + 3 * ANNOUNCE_DELAY, 1));
        assert!(p.turned(t0 + 4 * ANNOUNCE_DELAY, 1));
    }

    #[test]
    fn reports_come_on_the_interval_and_a_late_loop_does_not_burst() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, Duration::from_secs(60));
        assert!(!p.report_due(t0 + 999 * MS));
        assert!(p.report_due(t0 + REPORT_INTERVAL));
        assert!(!p.report_due(t0 + REPORT_INTERVAL + MS));
        // held up for 10 s: one report, the next a full interval later
        let late = t0 + Duration::from_secs(11);
        assert!(p.report_due(late));
        assert!(!p.report_due(late + 999 * MS));
        assert!(p.report_due(late + REPORT_INTERVAL));
    }

    #[test]
    fn the_stats_line_covers_the_time_since_the_last() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, Duration::from_secs(60));
        assert_eq!(p.stats_due(t0 + Duration::from_secs(59)), None);
        assert_eq!(p.stats_due(t0 + Duration::from_secs(61)), Some(61.0));
        assert_eq!(p.stats_due(t0 + Duration::from_secs(100)), None);
        assert_eq!(p.stats_due(t0 + Duration::from_secs(121)), Some(60.0));
    }

    #[test]
    fn an_idle_loop_waits_until_the_next_report_at_most() {
        let t0 = Instant::now();
        let p = Pace::new(t0, Duration::from_secs(60));
        assert_eq!(p.poll_at(t0, None), t0 + IDLE_POLL);
        // 100 ms before the report: woken for it
        let t = t0 + REPORT_INTERVAL - 100 * MS;
        assert_eq!(p.poll_at(t, None), t0 + REPORT_INTERVAL);
        // a report overdue: no wait
        let late = t0 + 2 * REPORT_INTERVAL;
        assert_eq!(p.poll_at(late, None), late);
    }

    #[test]
    fn a_loop_with_work_due_waits_until_its_deadline_and_no_longer() {
        let t0 = Instant::now();
        let p = Pace::new(t0, Duration::from_secs(60));
        // due in 70 ms: woken then, not on a fixed tick before
        assert_eq!(p.poll_at(t0, Some(t0 + 70 * MS)), t0 + 70 * MS);
        // due after the longest wait: the longest wait
        assert_eq!(p.poll_at(t0, Some(t0 + 10 * IDLE_POLL)), t0 + IDLE_POLL);
        // overdue: no wait (never a deadline in the past)
        let t = t0 + 300 * MS;
        assert_eq!(p.poll_at(t, Some(t0)), t);
    }
}
