//! The retry queue's side of the flow, without I/O: when the queue is looked at (a
//! tick for what has no wake-up of its own: entries coming due, time to live, a
//! download to spill; at once when a server is back), and what becomes of an entry
//! whose download ended. `requeue.rs` carries it out on the queue, the servers and the
//! log.

use std::time::{Duration, Instant};

/// How often the retry queue is looked at when nothing wakes it sooner.
pub const RETRY_TICK: Duration = Duration::from_millis(100);
/// A download waiting or running longer than this while messages behind it wait for
/// its ack is moved to the retry queue, and its message acknowledged: MQTT acks go in
/// order, so one hung download would otherwise stop the flow once the broker's
/// receive maximum is reached (measured: 2% dead links made a 20 ms drain 3x slower).
pub const SPILL_AFTER: Duration = Duration::from_secs(2);
/// Pause of an entry that could not be tried for local reasons (disk, a download of
/// the same relPath in progress).
pub const RETRY_PAUSE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct RetryPace {
    /// The next tick.
    next: Instant,
    /// Whether due entries may be waiting: a scan that found none waits for the next
    /// tick (the queue may hold thousands).
    scan: bool,
}

impl RetryPace {
    pub fn new(now: Instant) -> RetryPace {
        RetryPace {
            next: now,
            scan: true,
        }
    }

    /// Whether the tick is due at `now` (then: drop what outlived its time to live,
    /// spill). Due entries are looked for after it.
    pub fn tick(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + RETRY_TICK;
        self.scan = true;
        true
    }

    /// Whether to look for due entries now.
    pub fn scanning(&self) -> bool {
        self.scan
    }

    /// A scan found nothing due: the next tick looks again.
    pub fn found_none(&mut self) {
        self.scan = false;
    }

    /// A server is back (its entries made due): looked at on the next turn, not the
    /// next tick.
    pub fn woken(&mut self) {
        self.scan = true;
    }

    /// The deadline the flow's loop waits for, at most: the next tick while entries
    /// wait for free workers (`waiting`); for a download holding acks back since
    /// `blocking_since`, the tick that spills it.
    pub fn poll_at(&self, waiting: bool, blocking_since: Option<Instant>) -> Option<Instant> {
        let retry = waiting.then_some(self.next);
        let spill = blocking_since.map(|since| (since + SPILL_AFTER).max(self.next));
        retry.into_iter().chain(spill).min()
    }
}

/// How a retried download ended, as the worker says.
#[derive(Debug, Clone, Copy)]
pub struct Ended<'a> {
    pub stored: bool,
    /// The node is stopping (the download abandoned).
    pub stopping: bool,
    /// The local disk failed it.
    pub disk_trouble: bool,
    /// The server failed it, worth trying again: why. `None` (and not stored): given up.
    pub transient: Option<&'a str>,
    /// Not tried at all: its server is marked down.
    pub diverted: bool,
    /// The entry has outlived `--retry-ttl`.
    pub expired: bool,
}

/// What becomes of the entry.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryEnd<'a> {
    /// Announced; removed from the queue once the announcement is acknowledged. Its
    /// server counts as up.
    Stored,
    /// Due again at once: at the next start, the node is stopping.
    Again,
    /// Paused (`RETRY_PAUSE`), its server not blamed: the disk failed.
    Paused,
    /// Removed: a 4xx, a checksum that never matches (logged already).
    GivenUp,
    /// The server failed again: a failure of the server's (unless diverted, when it
    /// was not tried); dropped when past its time to live, else backed off.
    Failed {
        why: &'a str,
        blame: bool,
        expired: bool,
    },
}

/// The rules, in order: a stored file is stored whatever else happened; a stop abandons
/// without blame; the disk is not the server's fault; then the server's failure.
pub fn ended(e: Ended<'_>) -> RetryEnd<'_> {
    if e.stored {
        return RetryEnd::Stored;
    }
    if e.stopping {
        return RetryEnd::Again;
    }
    if e.disk_trouble {
        return RetryEnd::Paused;
    }
    match e.transient {
        None => RetryEnd::GivenUp,
        Some(why) => RetryEnd::Failed {
            why,
            blame: !e.diverted,
            expired: e.expired,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_queue_is_looked_at_every_tick_and_at_once_when_a_server_is_back() {
        let t0 = Instant::now();
        let mut p = RetryPace::new(t0);
        assert!(p.tick(t0), "the first tick at start");
        assert!(p.scanning());
        p.found_none();
        assert!(!p.tick(t0 + 99 * MS));
        assert!(!p.scanning(), "nothing due: no scan before the next tick");
        p.woken();
        assert!(p.scanning(), "a server back: its entries at once");
        p.found_none();
        assert!(p.tick(t0 + RETRY_TICK));
        assert!(p.scanning());
        // a loop held up for long ticks once, then a full tick later
        assert!(p.tick(t0 + 10 * RETRY_TICK));
        assert!(!p.tick(t0 + 10 * RETRY_TICK + 99 * MS));
    }

    #[test]
    fn the_loop_waits_for_the_tick_that_has_work_and_never_for_a_past_one() {
        let t0 = Instant::now();
        let mut p = RetryPace::new(t0);
        p.tick(t0);
        assert_eq!(p.poll_at(false, None), None, "nothing waits: no deadline");
        assert_eq!(p.poll_at(true, None), Some(t0 + RETRY_TICK));
        // a download holding acks back since t0: spilled at the first tick past 2 s
        assert_eq!(p.poll_at(false, Some(t0)), Some(t0 + SPILL_AFTER));
        // its time long past (a spill that could not be written): the next tick, not
        // a loop spinning on a deadline gone by
        let later = t0 + 10 * SPILL_AFTER;
        p.tick(later);
        assert_eq!(p.poll_at(false, Some(t0)), Some(later + RETRY_TICK));
    }

    fn end<'a>() -> Ended<'a> {
        Ended {
            stored: false,
            stopping: false,
            disk_trouble: false,
            transient: None,
            diverted: false,
            expired: false,
        }
    }

    #[test]
    fn a_retried_download_ends_by_the_rules_in_order() {
        let all = Ended {
            stored: true,
            stopping: true,
            disk_trouble: true,
            transient: Some("refused"),
            diverted: true,
            expired: true,
        };
        assert_eq!(ended(all), RetryEnd::Stored, "stored is stored");
        let stopping = Ended {
            stored: false,
            ..all
        };
        assert_eq!(ended(stopping), RetryEnd::Again, "a stop blames nobody");
        let disk = Ended {
            stopping: false,
            ..stopping
        };
        assert_eq!(ended(disk), RetryEnd::Paused, "the disk is not the server");
        assert_eq!(ended(end()), RetryEnd::GivenUp, "a 4xx: removed");
        let failed = Ended {
            transient: Some("503"),
            ..end()
        };
        assert_eq!(
            ended(failed),
            RetryEnd::Failed {
                why: "503",
                blame: true,
                expired: false
            }
        );
        // not tried (its server down): no failure of the server's counted again
        let diverted = Ended {
            diverted: true,
            expired: true,
            ..failed
        };
        assert_eq!(
            ended(diverted),
            RetryEnd::Failed {
                why: "503",
                blame: false,
                expired: true
            }
        );
    }
}
