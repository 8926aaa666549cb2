//! The post ledger: which announcements the post broker has yet to acknowledge, and
//! what waits for their acks (journal records, retry-queue entries to remove). The
//! upstream acks themselves wait in the window (`Window::releasable`).

use std::collections::VecDeque;

/// A journal key: (relPath, announced checksum) fingerprints (`Announced::key`).
pub type Key = (u64, u64);

#[derive(Debug, Default)]
pub struct Ledger {
    /// Announcements handed to the post session, not yet acknowledged: (sequence
    /// number in the session, journal key), in sequence order.
    unacked: VecDeque<(u64, Key)>,
    /// Retry-queue entries whose file was stored and announced (sequence number; 0:
    /// nothing announced), removed from the queue once that is acknowledged.
    retry_done: Vec<(u64, u64)>,
}

/// What the acks of the post broker settled.
#[derive(Debug, Default, PartialEq)]
pub struct Settled {
    /// Journal keys of the announcements acknowledged, in order: into the journal
    /// before the upstream acks they allow.
    pub journal: Vec<Key>,
    /// Retry-queue entries done with.
    pub retry_remove: Vec<u64>,
}

impl Ledger {
    /// Announcement `seq` of the post session (numbered from 1) carries `key`.
    pub fn announced(&mut self, seq: u64, key: Key) {
        debug_assert!(self.unacked.back().is_none_or(|(s, _)| *s < seq));
        self.unacked.push_back((seq, key));
    }

    /// Whether an announcement carrying `key` awaits its ack: made, so not to be made
    /// again (a few hundred at most: the post session's in-flight window).
    pub fn holds(&self, key: Key) -> bool {
        self.unacked.iter().any(|(_, k)| *k == key)
    }

    /// Retry-queue entry `id` is finished once announcement `seq` is acknowledged.
    pub fn retry_finished(&mut self, seq: u64, id: u64) {
        self.retry_done.push((seq, id));
    }

    /// The post session has acknowledged everything up to `acked` (acks come in order).
    pub fn acked(&mut self, acked: u64) -> Settled {
        let mut s = Settled::default();
        while self.unacked.front().is_some_and(|(seq, _)| *seq <= acked) {
            s.journal.push(self.unacked.pop_front().expect("a front").1);
        }
        self.retry_done.retain(|&(seq, id)| {
            if seq <= acked {
                s.retry_remove.push(id);
            }
            seq > acked
        });
        s
    }

    /// A new post session numbers its publications from 1 again: what was handed to the
    /// old one is not known acknowledged. Returns the retry-queue entries that waited
    /// for such an ack: they stay in the queue, to be tried again.
    pub fn new_session(&mut self) -> Vec<u64> {
        self.unacked.clear();
        self.retry_done.drain(..).map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_journaled_only_once_acknowledged_and_in_order() {
        let mut l = Ledger::default();
        for seq in 1..=5 {
            l.announced(seq, (seq, 10 * seq));
        }
        assert_eq!(l.acked(0), Settled::default());
        assert!(l.holds((2, 20)) && !l.holds((2, 10)));
        assert_eq!(l.acked(2).journal, [(1, 10), (2, 20)]);
        // the same ack again settles nothing more
        assert_eq!(l.acked(2), Settled::default());
        assert!(!l.holds((2, 20)), "acknowledged: in the journal now");
        assert_eq!(l.acked(5).journal, [(3, 30), (4, 40), (5, 50)]);
        assert_eq!(l.acked(9), Settled::default());
    }

    #[test]
    fn a_retry_entry_leaves_the_queue_only_after_its_announcement_is_acknowledged() {
        let mut l = Ledger::default();
        l.announced(7, (1, 1));
        l.retry_finished(7, 100);
        // nothing announced (no post broker, a duplicate): done at the next look
        l.retry_finished(0, 101);
        assert_eq!(l.acked(6).retry_remove, [101]);
        assert_eq!(l.acked(7).retry_remove, [100]);
    }

    #[test]
    fn a_new_post_session_forgets_the_old_numbers_and_keeps_the_retry_entries() {
        let mut l = Ledger::default();
        l.announced(3, (1, 1));
        l.retry_finished(3, 100);
        assert_eq!(l.new_session(), [100]);
        // seq 3 of the new session is another announcement: it settles nothing old
        l.announced(3, (2, 2));
        let s = l.acked(3);
        assert_eq!(s.journal, [(2, 2)]);
        assert!(s.retry_remove.is_empty());
    }
}
