//! What a flow knows of the servers it downloads from: one that keeps failing is marked
//! down for a while, so its files go straight to the retry queue instead of tying up a
//! connection each; then one of its files probes it, and success brings it back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures in a row (after each file's own attempts) that mark a server down.
pub const DOWN_AFTER: u32 = 3;
/// How long a server is first left alone; half as long again each time a probe fails,
/// up to `MAX_DOWN`. Short: a web server back from a blip must not stay marked down for
/// minutes (a probe is one GET), so after an outage of 20 s the first probe that finds
/// it up comes within ~7 s (probes at 2, 5, 9.5, 16, 26 s...).
pub const FIRST_DOWN: Duration = Duration::from_secs(2);
pub const MAX_DOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    down_until: Option<Instant>,
    down_for: Duration,
    /// A file of this down server is being tried.
    probing: bool,
}

/// What a failure did to a server's standing.
#[derive(Debug, PartialEq)]
pub enum Standing {
    /// Not down (yet), or down already.
    Unchanged,
    /// Marked down now, after `DOWN_AFTER` failures in a row.
    MarkedDown,
    /// Its probe failed: down again, for longer.
    StillDown,
}

#[derive(Debug, Default)]
pub struct Servers {
    map: HashMap<String, Health>,
    /// Unix seconds of each server's last download, for the metrics.
    last_success: HashMap<String, u64>,
}

/// Servers whose last success is remembered at most: beyond, the oldest is forgotten.
pub const REMEMBERED: usize = 256;
/// Failing servers remembered at most (~100 bytes each): announcements naming ever new
/// dead servers (a feed's typos, or a hostile publisher) grew the map without end.
/// Beyond, the servers not marked down are forgotten (a forgotten row of failures costs
/// at most `DOWN_AFTER` - 1 more tries), then the one marked down longest ago.
pub const FAILING_MAX: usize = 1024;

impl Servers {
    /// A download from `origin` failed after its attempts.
    pub fn failed(&mut self, origin: &str, now: Instant) -> Standing {
        if self.map.len() >= FAILING_MAX && !self.map.contains_key(origin) {
            self.make_room();
        }
        let h = self.map.entry(origin.to_string()).or_default();
        h.failures += 1;
        h.probing = false;
        if h.failures < DOWN_AFTER || h.down_until.is_some_and(|t| now < t) {
            return Standing::Unchanged;
        }
        let again = h.down_until.is_some();
        h.down_for = (h.down_for * 3 / 2).clamp(FIRST_DOWN, MAX_DOWN);
        h.down_until = Some(now + h.down_for);
        if again {
            Standing::StillDown
        } else {
            Standing::MarkedDown
        }
    }

    fn make_room(&mut self) {
        self.map
            .retain(|_, h| h.failures >= DOWN_AFTER || h.probing);
        if self.map.len() < FAILING_MAX {
            return;
        }
        let oldest = self
            .map
            .iter()
            .filter(|(_, h)| !h.probing)
            .min_by_key(|(_, h)| h.down_until)
            .map(|(o, _)| o.clone());
        if let Some(o) = oldest {
            self.map.remove(&o);
        }
    }

    /// Logs what a failure did to a server's standing.
    pub fn log_failure(&mut self, origin: &str, why: &str, now: Instant) {
        match self.failed(origin, now) {
            Standing::Unchanged => {}
            Standing::MarkedDown => log::warn!(
                "{origin}: marked down after {DOWN_AFTER} failures in a row ({why}): its files go to the retry queue"
            ),
            Standing::StillDown => log::warn!("{origin}: still down ({why})"),
        }
    }

    /// A file came from `origin`: its failures are no longer in a row (unless it is
    /// marked down: its probe decides), and when, for the metrics (no allocation once
    /// known).
    pub fn note_success(&mut self, origin: &str) {
        if self.map.get(origin).is_some_and(|h| h.down_until.is_none()) {
            self.map.remove(origin);
        }
        let now = crate::sys::unix_now() as u64;
        match self.last_success.get_mut(origin) {
            Some(t) => *t = now,
            None => {
                if self.last_success.len() >= REMEMBERED {
                    let oldest = self.last_success.iter().min_by_key(|(_, t)| **t);
                    if let Some(o) = oldest.map(|(o, _)| o.clone()) {
                        self.last_success.remove(&o);
                    }
                }
                self.last_success.insert(origin.to_string(), now);
            }
        }
    }

    /// A download of a queued file from `origin` succeeded; true when the server was
    /// down.
    pub fn succeeded(&mut self, origin: &str) -> bool {
        self.note_success(origin);
        self.map
            .remove(origin)
            .is_some_and(|h| h.failures >= DOWN_AFTER)
    }

    /// Whether new files of `origin` are to go straight to the retry queue.
    pub fn is_down(&self, origin: &str, now: Instant) -> bool {
        self.map
            .get(origin)
            .and_then(|h| h.down_until)
            .is_some_and(|t| now < t)
    }

    /// Whether a queued file of `origin` may be tried now (one at a time while the
    /// server is down: a probe); marks the probe.
    pub fn may_try(&mut self, origin: &str, now: Instant) -> bool {
        let Some(h) = self.map.get_mut(origin) else {
            return true;
        };
        if h.failures < DOWN_AFTER {
            return true;
        }
        if h.probing || h.down_until.is_some_and(|t| now < t) {
            return false;
        }
        h.probing = true;
        true
    }

    /// The probe of `origin` ended without a download (its file was not needed).
    pub fn unprobe(&mut self, origin: &str) {
        if let Some(h) = self.map.get_mut(origin) {
            h.probing = false;
        }
    }

    /// Every server known (failing or with a success), for the metrics.
    pub fn report(&self, now: Instant) -> Vec<super::stats::ServerReport> {
        let mut origins: Vec<&String> = self.map.keys().chain(self.last_success.keys()).collect();
        origins.sort();
        origins.dedup();
        let mut r: Vec<_> = origins
            .into_iter()
            .map(|o| super::stats::ServerReport {
                origin: without_credentials(o),
                up: !self.is_down(o, now),
                last_success: self.last_success.get(o).copied(),
            })
            .collect();
        r.sort_by(|a, b| a.origin.cmp(&b.origin));
        r
    }

    /// Servers marked down now.
    pub fn down(&self, now: Instant) -> usize {
        self.map
            .values()
            .filter(|h| h.down_until.is_some_and(|t| now < t))
            .count()
    }
}

/// `scheme://host:port` without a `user:password@`: what may be shown.
pub fn without_credentials(origin: &str) -> String {
    match origin.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        None => origin.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_between_failures_breaks_the_row() {
        let mut s = Servers::default();
        let now = Instant::now();
        for _ in 0..DOWN_AFTER - 1 {
            s.failed("http://a:1", now);
        }
        s.note_success("http://a:1");
        assert_eq!(s.failed("http://a:1", now), Standing::Unchanged);
        assert!(!s.is_down("http://a:1", now), "not three in a row");
        s.failed("http://a:1", now);
        assert_eq!(s.failed("http://a:1", now), Standing::MarkedDown);
        // marked down: a late success of a file under way does not lift it, its probe does
        s.note_success("http://a:1");
        assert!(s.is_down("http://a:1", now));
    }

    #[test]
    fn failing_servers_remembered_are_bounded_and_those_down_kept_first() {
        let mut s = Servers::default();
        let t0 = Instant::now();
        for _ in 0..DOWN_AFTER {
            s.failed("http://down:1", t0);
        }
        for i in 0..3 * FAILING_MAX {
            s.failed(&format!("http://dead{i}:80"), t0);
            assert!(s.map.len() <= FAILING_MAX, "{} remembered", s.map.len());
        }
        assert!(
            s.is_down("http://down:1", t0),
            "a flood of one-off failures"
        );
        // all marked down: the one marked down longest ago gives way
        let mut s = Servers::default();
        for i in 0..FAILING_MAX + 1 {
            let at = t0 + Duration::from_millis(i as u64);
            for _ in 0..DOWN_AFTER {
                s.failed(&format!("http://down{i}:80"), at);
            }
        }
        assert_eq!(s.map.len(), FAILING_MAX);
        assert!(!s.map.contains_key("http://down0:80"));
        assert!(s.is_down(&format!("http://down{FAILING_MAX}:80"), t0));
    }

    #[test]
    fn origins_shown_without_credentials() {
        assert_eq!(
            without_credentials("https://u:p@w@h:8443"),
            "https://h:8443"
        );
        assert_eq!(without_credentials("http://h:80"), "http://h:80");
        let mut s = Servers::default();
        s.succeeded("http://u:secret@a:1");
        let now = Instant::now();
        for _ in 0..DOWN_AFTER {
            s.failed("http://b:2", now);
        }
        let r = s.report(now);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].origin.as_str(), r[0].up), ("http://a:1", true));
        assert!(r[0].last_success.is_some());
        assert_eq!(
            (r[1].origin.as_str(), r[1].up, r[1].last_success),
            ("http://b:2", false, None)
        );
    }

    #[test]
    fn down_after_failures_probed_then_back() {
        let mut s = Servers::default();
        let t0 = Instant::now();
        assert_eq!(s.failed("http://a", t0), Standing::Unchanged);
        assert_eq!(s.failed("http://a", t0), Standing::Unchanged);
        assert!(!s.is_down("http://a", t0));
        assert!(s.may_try("http://a", t0));
        assert_eq!(s.failed("http://a", t0), Standing::MarkedDown);
        assert_eq!(
            s.failed("http://a", t0),
            Standing::Unchanged,
            "down already"
        );
        assert!(s.is_down("http://a", t0));
        assert!(!s.is_down("http://b", t0));
        assert_eq!(s.down(t0), 1);
        assert!(!s.may_try("http://a", t0), "left alone for a while");
        let after = t0 + FIRST_DOWN;
        assert!(s.may_try("http://a", after), "one probe");
        assert!(!s.may_try("http://a", after), "only one at a time");
        // the probe fails: down half as long again
        assert_eq!(s.failed("http://a", after), Standing::StillDown);
        assert!(s.is_down("http://a", after + FIRST_DOWN * 5 / 4));
        assert!(!s.is_down("http://a", after + FIRST_DOWN * 3 / 2));
        // and never longer than MAX_DOWN
        let mut t = after;
        for _ in 0..20 {
            t += MAX_DOWN;
            assert_eq!(s.failed("http://a", t), Standing::StillDown);
        }
        assert!(!s.is_down("http://a", t + MAX_DOWN));
        assert!(s.succeeded("http://a"));
        assert!(!s.is_down("http://a", after));
        assert!(!s.succeeded("http://a"), "no longer down");
    }
}
