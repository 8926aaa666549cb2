//! The flow's pause while the local disk refuses files: nothing is acknowledged, the
//! refused messages are tried again with backoff, and the operator is warned once a
//! minute.

use std::time::{Duration, Instant};

/// Longest pause between two attempts to store while the disk refuses files.
pub const MAX_STALL_BACKOFF: Duration = Duration::from_secs(30);
/// First pause after the disk refused a file.
pub const FIRST_STALL_BACKOFF: Duration = Duration::from_secs(1);
/// One warning per this while the disk refuses files.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Stall {
    retry_at: Option<Instant>,
    backoff: Duration,
    /// When the last warning was logged.
    warned: Option<Instant>,
}

impl Stall {
    /// The disk refused a file at `now`. Returns the pause to warn about when a warning
    /// is due (one a minute). One retry per round, however many messages it refused.
    pub fn refused(&mut self, now: Instant) -> Option<Duration> {
        if self.retry_at.is_none() {
            self.backoff = (self.backoff * 2).clamp(FIRST_STALL_BACKOFF, MAX_STALL_BACKOFF);
            self.retry_at = Some(now + self.backoff);
        }
        if self
            .warned
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            return None;
        }
        self.warned = Some(now);
        Some(self.backoff)
    }

    /// Whether the refused messages are to be judged again now.
    pub fn due(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now >= t)
    }

    /// A round of judging the refused messages again begins.
    pub fn retrying(&mut self) {
        self.retry_at = None;
    }

    /// The disk took them all: the next refusal starts from the first pause again.
    pub fn cleared(&mut self) {
        *self = Stall::default();
    }

    /// When the next round is due, if any.
    pub fn poll_at(&self) -> Option<Instant> {
        self.retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_pause_doubles_per_round_to_its_cap_and_restarts_once_cleared() {
        let t0 = Instant::now();
        let mut st = Stall::default();
        let mut now = t0;
        let mut pauses = Vec::new();
        for _ in 0..7 {
            st.refused(now);
            // more refusals in the same round change nothing
            st.refused(now);
            let at = st.poll_at().unwrap();
            pauses.push(at.duration_since(now).as_secs());
            assert!(!st.due(at - Duration::from_millis(1)) && st.due(at));
            now = at;
            st.retrying();
        }
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
        st.cleared();
        st.refused(now);
        assert_eq!(st.poll_at(), Some(now + S));
    }

    #[test]
    fn one_warning_a_minute() {
        let t0 = Instant::now();
        let mut st = Stall::default();
        assert_eq!(st.refused(t0), Some(S));
        st.retrying();
        assert_eq!(st.refused(t0 + S), None);
        st.retrying();
        assert_eq!(st.refused(t0 + 59 * S), None);
        st.retrying();
        assert!(st.refused(t0 + 60 * S).is_some());
    }
}
