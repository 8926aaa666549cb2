//! The announcements the post broker acknowledged, kept across restarts: a message
//! redelivered after a crash (or by an upstream broker after its restart) whose file is
//! here and whose announcement is in this journal is acknowledged without announcing it
//! again. One that is not in it is announced again: never lose one.
//!
//! An append-only file of 16-byte records (fingerprints of relPath and of the integrity
//! value), written and synced before the upstream acknowledgements it covers; the last
//! `capacity` records are kept in memory, and the file is rewritten with them when it
//! holds four times as many. A torn last record (a crash mid-write) is ignored.

use super::recent::{fingerprint, Recent};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Announcements remembered per flow (~0.2 MB in memory): what a redelivery can name
/// is the messages not yet acknowledged upstream (the receive maximum, 100 by default)
/// and, after an upstream broker's restart, those it lost the acks of (~1,000 seen).
pub const CAPACITY: usize = 4 * 1024;
/// Products remembered by the channels announcer (~0.7 MB): every product it holds
/// should be there, or it is announced again at start.
pub const PRODUCTS_CAPACITY: usize = 16 * 1024;
const RECORD: usize = 16;

/// Opens (creating) `dir/name`, a file of `record`-byte records appended: its path, a
/// handle appending to it, and its whole records. A record torn by a crash is cut, so
/// the next ones line up.
pub(super) fn open_records(
    dir: &Path,
    name: &str,
    record: usize,
) -> io::Result<(PathBuf, File, Vec<u8>)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(&path) {
        f.read_to_end(&mut bytes)?;
    }
    let whole = bytes.len() / record * record;
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    if whole < bytes.len() {
        file.set_len(whole as u64)?;
        bytes.truncate(whole);
    }
    Ok((path, file, bytes))
}

pub struct Announced {
    path: PathBuf,
    file: File,
    /// The last `capacity` records: what is asked, and what the file is rewritten with.
    recent: Recent,
    in_file: usize,
    buf: Vec<u8>,
    capacity: usize,
}

impl Announced {
    pub fn open(dir: &Path, capacity: usize) -> io::Result<Announced> {
        let (path, file, bytes) = open_records(dir, "announced.log", RECORD)?;
        let whole = bytes.len();
        let mut a = Announced {
            file,
            path,
            recent: Recent::new(capacity),
            in_file: whole / RECORD,
            buf: Vec::new(),
            capacity: capacity.max(1),
        };
        for r in bytes.chunks_exact(RECORD) {
            let k = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
            let v = u64::from_le_bytes(r[8..].try_into().expect("8 bytes"));
            a.remember(k, v);
        }
        Ok(a)
    }

    fn remember(&mut self, k: u64, v: u64) {
        self.recent.insert_fingerprints(k, v);
    }

    /// Whether the announcement of `rel` with integrity value `value` was acknowledged.
    pub fn contains(&self, rel: &str, value: &str) -> bool {
        self.recent.contains(rel, value.as_bytes())
    }

    /// Fingerprints of an announcement, made when it is queued.
    pub fn key(rel: &str, value: &str) -> (u64, u64) {
        (fingerprint(rel.as_bytes()), fingerprint(value.as_bytes()))
    }

    /// Notes an acknowledged announcement; on disk at the next `sync`.
    pub fn record(&mut self, (k, v): (u64, u64)) {
        // the PUBACK and the audit session both say it: one record
        if self.recent.holds(k, v) {
            return;
        }
        self.remember(k, v);
        self.buf.extend_from_slice(&k.to_le_bytes());
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes and syncs what was recorded: before the upstream acknowledgements.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        self.file.sync_data()?;
        self.in_file += self.buf.len() / RECORD;
        self.buf.clear();
        if self.in_file > 4 * self.capacity {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with the records kept in memory (temporary file, rename).
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut out = Vec::with_capacity(self.recent.len() * RECORD);
        for (k, v) in self.recent.entries() {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.in_file = self.recent.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_cuts_a_torn_record_and_compacts() {
        let d = std::env::temp_dir().join(format!("meshnode-announced-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mut a = Announced::open(&d, 4).unwrap();
        a.record(Announced::key("a/x.txt", "AAA"));
        assert!(a.contains("a/x.txt", "AAA"));
        a.sync().unwrap();
        a.record(Announced::key("a/y.txt", "BBB"));
        drop(a); // recorded, never synced: not on disk
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join("announced.log"))
            .unwrap();
        f.write_all(&[1, 2, 3]).unwrap(); // a torn record
        drop(f);
        let mut a = Announced::open(&d, 4).unwrap();
        assert!(a.contains("a/x.txt", "AAA"));
        assert!(!a.contains("a/x.txt", "CCC"), "another version");
        assert!(
            !a.contains("a/y.txt", "BBB"),
            "not synced: not acknowledged upstream"
        );
        for i in 0..40 {
            a.record(Announced::key(&format!("f{i}"), "V"));
            a.sync().unwrap();
        }
        let len = std::fs::metadata(d.join("announced.log")).unwrap().len() as usize;
        assert!(
            len <= 5 * 4 * RECORD && len % RECORD == 0,
            "compacted: {len}"
        );
        let a = Announced::open(&d, 4).unwrap();
        assert!(a.contains("f39", "V") && !a.contains("f0", "V"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
