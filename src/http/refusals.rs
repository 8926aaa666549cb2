//! The log of refusals at the HTTP layer (400, 403, 408, 431, 503): one line per client
//! address per second at most, so a flood of bad requests cannot flood the log, yet
//! every attempt accounted for ("all publishing attempts are logged", the Metcast
//! reference): the refusals held back are said in one line, by status, at the client's
//! next logged refusal or within `SUMMARY_AFTER`, whichever comes first. A leaf: the
//! server and the body readers both log through it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A client's refusals are logged one line a second at most.
pub const QUIET: Duration = Duration::from_secs(1);
/// Refusals held back are said at most this late.
pub const SUMMARY_AFTER: Duration = Duration::from_secs(10);
/// Clients remembered at most; beyond, those with nothing held are forgotten first.
const MEMORY: usize = 4096;

#[derive(Debug)]
struct Client {
    /// When its last line was logged.
    logged: Instant,
    /// Refusals not logged since, by status, and when the first of them came.
    held: BTreeMap<u16, u32>,
    held_since: Option<Instant>,
}

/// The refusals seen, by client address; no clock read here (`now` is given).
#[derive(Debug, Default)]
pub struct Refusals {
    clients: HashMap<String, Client>,
}

impl Refusals {
    /// A refusal of `status` from `addr` (an address, no port): the lines to log now.
    pub fn note(&mut self, addr: &str, status: u16, line: String, now: Instant) -> Vec<String> {
        if let Some(c) = self.clients.get_mut(addr) {
            if now.saturating_duration_since(c.logged) < QUIET {
                *c.held.entry(status).or_default() += 1;
                c.held_since.get_or_insert(now);
                return Vec::new();
            }
            let mut lines: Vec<String> = summary(addr, c, now).into_iter().collect();
            lines.push(line);
            c.logged = now;
            return lines;
        }
        let mut lines = Vec::new();
        if self.clients.len() >= MEMORY {
            // those with nothing held go first; what the others held is said now
            self.clients.retain(|_, c| !c.held.is_empty());
            if self.clients.len() >= MEMORY {
                lines.extend(self.flush(now + SUMMARY_AFTER));
                self.clients.clear();
            }
        }
        self.clients.insert(
            addr.to_string(),
            Client {
                logged: now,
                held: BTreeMap::new(),
                held_since: None,
            },
        );
        lines.push(line);
        lines
    }

    /// The summaries of refusals held back for `SUMMARY_AFTER`: to log now.
    pub fn flush(&mut self, now: Instant) -> Vec<String> {
        let mut lines = Vec::new();
        for (addr, c) in &mut self.clients {
            let due = c
                .held_since
                .is_some_and(|t| now.saturating_duration_since(t) >= SUMMARY_AFTER);
            if due {
                lines.extend(summary(addr, c, now));
            }
        }
        // forget those quiet for long: their next refusal is logged anyway
        self.clients.retain(|_, c| {
            !c.held.is_empty() || now.saturating_duration_since(c.logged) < SUMMARY_AFTER
        });
        lines
    }
}

/// `127.0.1.10: 14 more refusals in the last 10 s (431 x 9, 400 x 5)`, and the
/// client's held refusals cleared; `None` when it held none.
fn summary(addr: &str, c: &mut Client, now: Instant) -> Option<String> {
    let since = c.held_since.take()?;
    let total: u32 = c.held.values().sum();
    let mut by_count: Vec<(u16, u32)> = c.held.iter().map(|(s, n)| (*s, *n)).collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let parts: Vec<String> = by_count.iter().map(|(s, n)| format!("{s} x {n}")).collect();
    c.held.clear();
    let secs = now
        .saturating_duration_since(since)
        .as_secs_f64()
        .ceil()
        .max(1.0);
    let plural = if total == 1 { "" } else { "s" };
    Some(format!(
        "{addr}: {total} more refusal{plural} in the last {secs:.0} s ({})",
        parts.join(", ")
    ))
}

static LOG: Mutex<Option<Refusals>> = Mutex::new(None);

fn with_log<T>(f: impl FnOnce(&mut Refusals) -> T) -> T {
    let mut log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    f(log.get_or_insert_with(Refusals::default))
}

/// Logs a refusal with the client's address (`peer`: address and port).
pub fn refused(peer: &str, status: u16, why: &str) {
    let addr = peer.rsplit_once(':').map_or(peer, |(a, _)| a);
    let line = format!("http {peer}: {status} {why}");
    for l in with_log(|r| r.note(addr, status, line, Instant::now())) {
        log::warn!("{l}");
    }
}

/// Logs the refusals held back long enough (the server calls it every second).
pub fn flush_refusals() {
    for l in with_log(|r| r.flush(Instant::now())) {
        log::warn!("{l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_flood_is_one_line_a_second_and_every_refusal_is_counted() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        let first = r.note("127.0.1.10", 400, "http 127.0.1.10:1: 400 a".into(), t0);
        assert_eq!(first, ["http 127.0.1.10:1: 400 a"]);
        for i in 1..=9 {
            assert!(r
                .note("127.0.1.10", 431, "x".into(), at(t0, i * 10))
                .is_empty());
        }
        for i in 10..=14 {
            assert!(r
                .note("127.0.1.10", 400, "x".into(), at(t0, i * 10))
                .is_empty());
        }
        // another client is not held back by this one
        assert_eq!(r.note("127.0.1.11", 403, "y".into(), at(t0, 150)).len(), 1);
        // the next logged refusal says what was held
        let next = r.note(
            "127.0.1.10",
            503,
            "http 127.0.1.10:2: 503 b".into(),
            at(t0, 1500),
        );
        assert_eq!(
            next,
            [
                "127.0.1.10: 14 more refusals in the last 2 s (431 x 9, 400 x 5)",
                "http 127.0.1.10:2: 503 b"
            ]
        );
        assert!(r.flush(at(t0, 60_000)).is_empty(), "nothing held any more");
    }

    #[test]
    fn refusals_held_are_said_within_the_summary_delay_without_another() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        r.note("10.0.0.1", 400, "first".into(), t0);
        r.note("10.0.0.1", 431, "held".into(), at(t0, 100));
        assert!(r.flush(at(t0, 5_000)).is_empty(), "not yet");
        assert_eq!(
            r.flush(at(t0, 10_100)),
            ["10.0.0.1: 1 more refusal in the last 10 s (431 x 1)"]
        );
        assert!(r.flush(at(t0, 20_000)).is_empty(), "said once");
    }

    #[test]
    fn a_full_memory_says_what_it_held_before_forgetting() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        for i in 0..MEMORY {
            let a = format!("10.1.{}.{}", i / 256, i % 256);
            r.note(&a, 400, "x".into(), t0);
            r.note(&a, 400, "x".into(), at(t0, 1));
        }
        let lines = r.note("10.9.9.9", 400, "new".into(), at(t0, 2));
        assert_eq!(
            lines.len(),
            MEMORY + 1,
            "every held refusal said, then the new one"
        );
        assert_eq!(lines.last().map(String::as_str), Some("new"));
    }
}
