//! The downloaders' kept-alive connections, idle, by origin (`http://host:port`,
//! `https://host:port`): bounded in number and in age. A node fed from hundreds of
//! servers (a WIS2 feed names one per centre) kept every connection it ever made, each
//! with its socket, its 16 KB read buffer and, over https, its TLS state, and after the
//! server's own keep-alive timeout a socket in CLOSE_WAIT that only a failed reuse
//! would close.

use super::pipeline::Conn;
use super::transfer::Timeouts;
use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an idle connection is kept (as ureq's `max_idle_age`): servers close theirs
/// after 5 s (Apache) to 75 s (nginx), and a batch coming later pays one connect.
pub const IDLE_AGE: Duration = Duration::from_secs(15);
/// Idle connections kept at most, all servers together (the downloaders use 8 at once by
/// default): the oldest gives way.
pub const IDLE_MAX: usize = 16;

pub struct Pool {
    idle: Mutex<Idle<Conn>>,
    pub timeouts: Timeouts,
}

impl Pool {
    pub fn new(timeouts: Timeouts, per_host: usize) -> Pool {
        Pool {
            idle: Mutex::new(Idle::new(per_host, IDLE_MAX, IDLE_AGE)),
            timeouts,
        }
    }

    /// An idle connection to `origin`, else a new one. `fresh`: never an idle one (after
    /// a stale one failed).
    pub fn take(&self, origin: &str, fresh: bool) -> io::Result<Conn> {
        if !fresh {
            let kept = self.lock().take(origin, Instant::now());
            if let Some(mut c) = kept {
                c.reused();
                return Ok(c);
            }
        }
        Conn::connect(origin, self.timeouts.connect)
    }

    /// Keeps a connection whose last answer was read whole, for the next batch.
    pub fn give(&self, origin: &str, conn: Conn) {
        if conn.holds_unread() {
            return; // bytes nobody asked for: not to be trusted
        }
        // what gives way is closed after the lock is released
        let _closed = self.lock().give(origin, conn, Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle<Conn>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The bookkeeping, without sockets or clocks (`now` is an argument).
struct Idle<T> {
    by_origin: HashMap<String, Vec<(Instant, T)>>,
    per_host: usize,
    max: usize,
    age: Duration,
}

impl<T> Idle<T> {
    fn new(per_host: usize, max: usize, age: Duration) -> Idle<T> {
        Idle {
            by_origin: HashMap::new(),
            per_host: per_host.max(1),
            max: max.max(1),
            age,
        }
    }

    /// The connection to `origin` given back last (the least likely to be stale).
    fn take(&mut self, origin: &str, now: Instant) -> Option<T> {
        drop(self.expire(now));
        let list = self.by_origin.get_mut(origin)?;
        let (_, item) = list.pop()?;
        if list.is_empty() {
            self.by_origin.remove(origin);
        }
        Some(item)
    }

    /// Keeps `item` for `origin`; returns what gave way (expired, over the server's
    /// share or the pool's, or `item` itself), for the caller to close.
    fn give(&mut self, origin: &str, item: T, now: Instant) -> Vec<T> {
        let mut gone = self.expire(now);
        if self
            .by_origin
            .get(origin)
            .is_some_and(|l| l.len() >= self.per_host)
        {
            gone.push(item);
            return gone;
        }
        if self.len() >= self.max {
            gone.extend(self.remove_oldest());
        }
        self.by_origin
            .entry(origin.to_string())
            .or_default()
            .push((now, item));
        gone
    }

    /// Drops the entries idle for `age` or more (and the servers left with none).
    fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut gone = Vec::new();
        let age = self.age;
        self.by_origin.retain(|_, list| {
            // oldest first: given back in order
            let keep_from = list
                .iter()
                .position(|(t, _)| now.saturating_duration_since(*t) < age)
                .unwrap_or(list.len());
            gone.extend(list.drain(..keep_from).map(|(_, c)| c));
            !list.is_empty()
        });
        gone
    }

    fn remove_oldest(&mut self) -> Option<T> {
        let origin = self
            .by_origin
            .iter()
            .filter_map(|(o, l)| l.first().map(|(t, _)| (*t, o)))
            .min()
            .map(|(_, o)| o.clone())?;
        let list = self.by_origin.get_mut(&origin)?;
        let (_, item) = list.remove(0);
        if list.is_empty() {
            self.by_origin.remove(&origin);
        }
        Some(item)
    }

    /// Connections kept (a few: `max` at most).
    fn len(&self) -> usize {
        self.by_origin.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn an_idle_connection_is_kept_for_its_age_and_no_longer() {
        let t0 = Instant::now();
        let mut idle = Idle::new(4, 16, 15 * S);
        assert!(idle.give("http://a:80", 1, t0).is_empty());
        assert_eq!(idle.take("http://a:80", t0 + 14 * S), Some(1));
        assert!(idle.give("http://a:80", 2, t0 + 14 * S).is_empty());
        assert_eq!(idle.take("http://a:80", t0 + 29 * S), None, "idle 15 s");
        assert_eq!(idle.len(), 0);
        assert!(idle.by_origin.is_empty(), "no entry left for the server");
    }

    #[test]
    fn the_latest_given_back_is_taken_first() {
        let t0 = Instant::now();
        let mut idle = Idle::new(4, 16, 15 * S);
        idle.give("http://a:80", 1, t0);
        idle.give("http://a:80", 2, t0 + S);
        assert_eq!(idle.take("http://a:80", t0 + 2 * S), Some(2));
        assert_eq!(
            idle.take("http://b:80", t0 + 2 * S),
            None,
            "another server's"
        );
    }

    #[test]
    fn a_server_keeps_its_share_and_the_pool_its_bound() {
        let t0 = Instant::now();
        let mut idle = Idle::new(2, 3, 15 * S);
        idle.give("http://a:80", 1, t0);
        idle.give("http://a:80", 2, t0);
        assert_eq!(idle.give("http://a:80", 3, t0), vec![3], "over a's share");
        idle.give("http://b:80", 4, t0 + S);
        // the pool is full: the oldest (a's first) gives way
        assert_eq!(idle.give("http://c:80", 5, t0 + 2 * S), vec![1]);
        assert_eq!(idle.len(), 3);
        assert_eq!(idle.take("http://a:80", t0 + 2 * S), Some(2));
        assert_eq!(idle.take("http://a:80", t0 + 2 * S), None);
    }

    #[test]
    fn connections_to_many_servers_stay_within_the_bound() {
        let t0 = Instant::now();
        let mut idle = Idle::new(4, IDLE_MAX, IDLE_AGE);
        let mut closed = 0;
        for i in 0..1_000u32 {
            let now = t0 + Duration::from_millis(10 * u64::from(i));
            closed += idle.give(&format!("https://centre{i}:443"), i, now).len();
        }
        assert_eq!(idle.len(), IDLE_MAX);
        assert_eq!(closed, 1_000 - IDLE_MAX);
        assert_eq!(idle.by_origin.len(), IDLE_MAX);
        // and a quiet minute later, the next look closes them all
        assert_eq!(idle.expire(t0 + 70 * S).len(), IDLE_MAX);
        assert!(idle.by_origin.is_empty());
    }
}
