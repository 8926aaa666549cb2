//! The WIS2 message ids seen lately, kept at least 24 h and across restarts, as the WIS2
//! guide asks of every consumer: the same message reaches a node through several global
//! brokers, and it is worked on once.
//!
//! An append-only file of 12-byte records (fingerprint of the id, seconds since the
//! epoch); in memory a table of the same (`Slots`: 12 bytes a slot, grown as ids come,
//! 3.6 MB when full at the default 256 Ki). Records older than `KEEP` are dropped when the
//! map is swept (every `SWEEP` or when full); the file is rewritten when it holds twice
//! the live records. No sync: the page cache survives a killed process, and after a
//! power cut a message worked on again costs a duplicate, never a loss.

use super::recent::{fingerprint, Slots};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How long an id is remembered (the standard: ids are unique over at least 24 h).
pub const KEEP: u32 = 24 * 3600;
/// Ids remembered at most (3.6 MB of table when full); when full before `KEEP`,
/// the oldest quarter of the time span gives way, with a warning.
pub const DEFAULT_MAX: usize = 256 * 1024;
/// How often expired ids are swept out of memory (seconds).
const SWEEP: u32 = 600;
const RECORD: usize = 12;

pub struct SeenIds {
    path: PathBuf,
    file: File,
    ids: Slots<u32>,
    in_file: usize,
    max: usize,
    swept: u32,
    pending: Vec<u8>,
}

impl SeenIds {
    /// Opens (creating) `dir/ids.log`; ids older than `KEEP` at `now` are not loaded.
    pub fn open(dir: &Path, max: usize, now: u32) -> io::Result<SeenIds> {
        let (path, file, bytes) = super::announced::open_records(dir, "ids.log", RECORD)?;
        let max = max.max(16);
        let mut s = SeenIds {
            file,
            path,
            ids: Slots::growing(max),
            in_file: bytes.len() / RECORD,
            max,
            swept: now,
            pending: Vec::new(),
        };
        for r in bytes.chunks_exact(RECORD) {
            let k = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
            let t = u32::from_le_bytes(r[8..].try_into().expect("4 bytes"));
            if now.saturating_sub(t) < KEEP {
                // a file kept with a larger bound than this one's
                if s.ids.len() >= s.max && s.ids.get(k).is_none() {
                    s.forget_oldest(now);
                }
                s.ids.insert(k, t);
            }
        }
        if s.in_file > 2 * s.ids.len() + 1024 {
            s.rewrite()?;
        }
        Ok(s)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `id` was seen within `KEEP` of `now`; records it when not.
    pub fn seen(&mut self, id: &str, now: u32) -> bool {
        let k = fingerprint(id.as_bytes());
        if let Some(t) = self.ids.get(k) {
            if now.saturating_sub(t) < KEEP {
                return true;
            }
        }
        if now.saturating_sub(self.swept) >= SWEEP || self.ids.len() >= self.max {
            self.sweep(now);
        }
        self.ids.insert(k, now);
        self.pending.extend_from_slice(&k.to_le_bytes());
        self.pending.extend_from_slice(&now.to_le_bytes());
        self.in_file += 1;
        if self.pending.len() >= 64 * RECORD {
            self.flush();
        }
        false
    }

    /// Writes the ids recorded since the last flush (called by the flow at each turn).
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(&self.pending) {
            log::warn!("{}: WIS2 ids not kept: {e}", self.path.display());
        }
        self.pending.clear();
    }

    fn sweep(&mut self, now: u32) {
        self.swept = now;
        self.ids.retain(|_, t| now.saturating_sub(t) < KEEP);
        if self.ids.len() >= self.max {
            self.forget_oldest(now);
        }
        if self.in_file > 2 * self.ids.len() + 1024 {
            self.flush();
            if let Err(e) = self.rewrite() {
                log::warn!("{}: cannot compact: {e}", self.path.display());
            }
        }
    }

    /// Forgets the ids of the oldest quarter of the time span kept.
    fn forget_oldest(&mut self, now: u32) {
        let oldest = self.ids.iter().map(|(_, t)| t).min().unwrap_or(now);
        let cut = oldest + (now.saturating_sub(oldest)) / 4;
        self.ids.retain(|_, t| t > cut);
        log::warn!(
            "WIS2 message ids: {} kept, the most this node keeps: ids seen before {}s ago are forgotten before 24 h",
            self.max,
            now.saturating_sub(cut)
        );
    }

    /// Rewrites the file with the ids in memory (temp file, then rename).
    fn rewrite(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut bytes = Vec::with_capacity(self.ids.len() * RECORD);
        for (k, t) in self.ids.iter() {
            bytes.extend_from_slice(&k.to_le_bytes());
            bytes.extend_from_slice(&t.to_le_bytes());
        }
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.in_file = self.ids.len();
        Ok(())
    }
}

impl Drop for SeenIds {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The WIS2 ids of a flow: not opened yet (no WIS2 message so far), open, or not
/// available (its file could not be opened: every id counts as new).
pub enum SeenState {
    Unopened,
    Open(SeenIds),
    Failed,
}

impl SeenState {
    /// Whether `id` was seen lately; records it. Opens the file at the first call.
    /// `place`: where the ids are kept and how many at most (asked at the first call).
    pub fn seen(&mut self, place: impl FnOnce() -> (std::path::PathBuf, usize), id: &str) -> bool {
        let now = crate::sys::unix_now() as u32;
        if let SeenState::Unopened = self {
            let (dir, max) = place();
            *self = match SeenIds::open(&dir, max, now) {
                Ok(s) => SeenState::Open(s),
                Err(e) => {
                    log::error!(
                        "{}: cannot keep WIS2 message ids ({e}): duplicates by id are not caught",
                        dir.display()
                    );
                    SeenState::Failed
                }
            };
        }
        match self {
            SeenState::Open(s) => s.seen(id, now),
            _ => false,
        }
    }

    pub fn flush(&mut self) {
        if let SeenState::Open(s) = self {
            s.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meshnode-seen-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn an_id_is_seen_once_and_across_a_restart() {
        let d = dir("restart");
        let mut s = SeenIds::open(&d, 1000, 1_000_000).unwrap();
        assert!(!s.seen("a", 1_000_000));
        assert!(s.seen("a", 1_000_010));
        assert!(!s.seen("b", 1_000_020));
        drop(s);
        let mut s = SeenIds::open(&d, 1000, 1_000_100).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.seen("a", 1_000_100));
        assert!(!s.seen("c", 1_000_100));
        // a day later they are forgotten, as the standard allows
        let later = 1_000_000 + KEEP + 1;
        assert!(!s.seen("a", later));
        drop(s);
        let s = SeenIds::open(&d, 1000, later + 200).unwrap();
        assert_eq!(
            s.len(),
            1,
            "only the id seen again within the day is loaded"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_record_is_cut_and_the_file_is_compacted() {
        let d = dir("torn");
        let mut s = SeenIds::open(&d, 1000, 10).unwrap();
        for i in 0..2000 {
            s.seen(&format!("id-{i}"), 10);
        }
        drop(s);
        let log = d.join("ids.log");
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 2000 * RECORD as u64);
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        drop(f);
        let mut s = SeenIds::open(&d, 5000, 20).unwrap();
        assert_eq!(s.len(), 2000);
        assert!(s.seen("id-42", 20));
        assert!(!s.seen("new", 20));
        drop(s);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 2001 * RECORD as u64);
        // all expired: the file is rewritten empty at the next open
        let s = SeenIds::open(&d, 5000, 20 + KEEP).unwrap();
        assert!(s.is_empty());
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn when_full_the_oldest_give_way() {
        let d = dir("full");
        let mut s = SeenIds::open(&d, 100, 0).unwrap();
        for i in 0..100u32 {
            assert!(!s.seen(&format!("id-{i}"), i * 10));
        }
        assert!(!s.seen("one more", 1000));
        assert!(s.len() <= 100);
        assert!(!s.seen("id-0", 1001), "the oldest was forgotten");
        assert!(s.seen("id-99", 1001), "a recent one is kept");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_kept_with_a_larger_max_is_loaded_within_this_max() {
        let d = dir("smaller");
        let mut s = SeenIds::open(&d, 1000, 0).unwrap();
        for i in 0..1000u32 {
            s.seen(&format!("id-{i}"), i);
        }
        drop(s);
        let mut s = SeenIds::open(&d, 100, 1000).unwrap();
        assert!(s.len() <= 100, "{} ids loaded", s.len());
        assert!(s.seen("id-999", 1001), "the newest are kept");
        assert!(!s.seen("id-0", 1001), "the oldest gave way");
        let _ = std::fs::remove_dir_all(&d);
    }
}
