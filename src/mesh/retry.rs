//! The flow's retry queue: messages whose download failed for their server's sake
//! (refused, reset, timeout, 5xx, 429, too slow, server down), kept on disk so that the
//! upstream message can be acknowledged and the flow move on. Tried again in the
//! background with capped exponential backoff, the freshest first, until `ttl`.
//!
//! One append-only log (`queue.log`) rather than a file per entry: an entry costs one
//! write, and a batch of them one fsync (made before the upstream acks), which an SD
//! card can afford when a whole server goes away. Records:
//!
//! ```text
//! A <id> <queued unix secs> <topic len> <payload len> <origin> <relPath>\n<topic><payload>\n
//! D <id>\n
//! ```
//!
//! A record torn by a crash ends the log (it is cut there): its message was not
//! acknowledged, so the broker delivers it again. The log is rewritten with only the
//! live entries when the dead ones outnumber them. Memory holds the index, not the
//! messages: they are read back from the log when tried.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// First pause before an entry is tried again; doubled at each failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// Longest pause between two tries of an entry.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Default `--retry-max`: entries kept at most (an entry costs ~150 bytes of memory).
pub const DEFAULT_MAX: usize = 10_000;
/// Dead records tolerated in the log before it is rewritten, beyond the live ones.
const COMPACT_SLACK: usize = 1_000;
const LOG: &str = "queue.log";

/// One message waiting to be tried again.
#[derive(Debug)]
struct Entry {
    /// When it first failed (unix seconds): `ttl` counts from there.
    queued: u64,
    /// Where its download points (`scheme://host:port`).
    origin: String,
    /// Its file (for the log lines).
    rel: String,
    /// Where its topic starts in the log; the payload follows it.
    offset: u64,
    topic_len: usize,
    payload_len: usize,
    attempts: u32,
    due: Instant,
    /// Being tried now.
    busy: bool,
    /// Loaded at start: the node may have stored it before a crash without announcing.
    reloaded: bool,
}

/// A message taken from the queue to be tried.
#[derive(Debug)]
pub struct Taken {
    pub id: u64,
    pub topic: Bytes,
    pub payload: Bytes,
    pub reloaded: bool,
}

/// An entry that left the queue unfinished (expired or pushed out by `max`).
#[derive(Debug, PartialEq)]
pub struct Dropped {
    pub rel: String,
    pub origin: String,
    /// Seconds it spent in the queue.
    pub age: u64,
}

pub struct RetryQueue {
    dir: PathBuf,
    log: File,
    /// The log's length: where the next record goes.
    end: u64,
    entries: BTreeMap<u64, Entry>,
    next_id: u64,
    dead: usize,
    /// Entries written since the last sync.
    unsynced: bool,
    max: usize,
    ttl: u64,
}

impl RetryQueue {
    /// Opens (or creates) the queue in `dir`, taking up the entries left by the last run.
    pub fn open(dir: &Path, max: usize, ttl: Duration) -> io::Result<RetryQueue> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOG);
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let (entries, next_id, end) = replay(&mut log)?;
        let len = log.metadata()?.len();
        if end < len {
            log::warn!(
                "retry queue {}: {} bytes of a torn record cut off (their message was not acknowledged: the broker delivers it again)",
                path.display(),
                len - end
            );
            log.set_len(end)?;
        }
        let mut q = RetryQueue {
            dir: dir.to_path_buf(),
            log,
            end,
            dead: 0,
            entries,
            next_id,
            unsynced: false,
            max: max.max(1),
            ttl: ttl.as_secs(),
        };
        // start from a log of live entries only
        q.compact()?;
        if !q.entries.is_empty() {
            log::info!(
                "retry queue {}: {} messages taken up from the last run",
                dir.display(),
                q.entries.len()
            );
        }
        Ok(q)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues a message (written, not yet synced: `sync` before acknowledging it).
    /// Returns its id, and the entry pushed out to keep within `max`, if one was.
    pub fn push(
        &mut self,
        topic: &[u8],
        payload: &[u8],
        origin: &str,
        rel: &str,
        now: u64,
    ) -> io::Result<(u64, Option<Dropped>)> {
        let id = self.next_id;
        let head = format!(
            "A {id} {now} {} {} {} {rel}\n",
            topic.len(),
            payload.len(),
            clean_origin(origin)
        );
        let mut rec = Vec::with_capacity(head.len() + topic.len() + payload.len() + 1);
        rec.extend_from_slice(head.as_bytes());
        rec.extend_from_slice(topic);
        rec.extend_from_slice(payload);
        rec.push(b'\n');
        if let Err(e) = self.log.write_all(&rec) {
            // a partial record would end the log at the next start: cut it now
            let _ = self.log.set_len(self.end);
            return Err(e);
        }
        self.entries.insert(
            id,
            Entry {
                queued: now,
                origin: clean_origin(origin).to_string(),
                rel: rel.to_string(),
                offset: self.end + head.len() as u64,
                topic_len: topic.len(),
                payload_len: payload.len(),
                attempts: 0,
                due: Instant::now() + FIRST_BACKOFF,
                busy: false,
                reloaded: false,
            },
        );
        self.end += rec.len() as u64;
        self.next_id += 1;
        self.unsynced = true;
        let mut pushed_out = None;
        if self.entries.len() > self.max {
            // the oldest idle entry gives way
            if let Some(old) = self
                .entries
                .iter()
                .find(|(_, e)| !e.busy)
                .map(|(id, _)| *id)
            {
                pushed_out = self.drop_entry(old, now);
            }
        }
        Ok((id, pushed_out))
    }

    /// The entry is being tried (its download goes on from before it was queued).
    pub fn set_busy(&mut self, id: u64) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.busy = true;
            e.attempts += 1;
        }
    }

    /// Makes what was pushed durable: called before the upstream acks of those messages.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.log.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Takes the freshest entry that is due and whose server `may_try`, marking it busy.
    pub fn take_due(
        &mut self,
        now: Instant,
        mut may_try: impl FnMut(&str) -> bool,
    ) -> io::Result<Option<Taken>> {
        let Some((&id, e)) = self
            .entries
            .iter_mut()
            .rev()
            .find(|(_, e)| !e.busy && e.due <= now && may_try(&e.origin))
        else {
            return Ok(None);
        };
        let mut buf = vec![0; e.topic_len + e.payload_len];
        self.log.read_exact_at(&mut buf, e.offset)?;
        e.busy = true;
        e.attempts += 1;
        let mut payload = Bytes::from(buf);
        let topic = payload.split_to(e.topic_len);
        Ok(Some(Taken {
            id,
            topic,
            payload,
            reloaded: e.reloaded,
        }))
    }

    /// The entry's try failed (or could not be made now): tried again after a pause,
    /// doubled at each attempt (`backoff`), or after `pause` when given.
    pub fn later(&mut self, id: u64, pause: Option<Duration>) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.busy = false;
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << e.attempts.saturating_sub(1).min(16))
                .min(MAX_BACKOFF);
            e.due = Instant::now() + pause.unwrap_or(backoff);
        }
    }

    /// The entry is to be judged again now as a redelivery: its file was stored and
    /// announced on a post session that was lost before acknowledging it (the journal
    /// then says whether the broker took the announcement).
    pub fn again(&mut self, id: u64) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.busy = false;
            e.reloaded = true;
            e.due = Instant::now();
        }
    }

    /// The entries of `origin` become due now (their server is back).
    pub fn wake(&mut self, origin: &str) {
        let now = Instant::now();
        for e in self.entries.values_mut().filter(|e| e.origin == origin) {
            e.due = e.due.min(now);
        }
    }

    /// The entry's server.
    pub fn origin(&self, id: u64) -> Option<&str> {
        self.entries.get(&id).map(|e| e.origin.as_str())
    }

    /// Whether the entry is past its time to live.
    pub fn is_expired(&self, id: u64, now: u64) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| now.saturating_sub(e.queued) >= self.ttl)
    }

    /// The entry is finished (stored, or found not to be needed).
    pub fn remove(&mut self, id: u64) {
        if self.entries.remove(&id).is_some() {
            self.forget(id);
        }
    }

    /// Drops the entry unfinished; returns what it was.
    pub fn drop_entry(&mut self, id: u64, now: u64) -> Option<Dropped> {
        let e = self.entries.remove(&id)?;
        self.forget(id);
        Some(Dropped {
            rel: e.rel,
            origin: e.origin,
            age: now.saturating_sub(e.queued),
        })
    }

    /// A removal of `rel` was applied: the entries waiting to download it are done with
    /// (tried later, one would bring back a file the mesh removed, from a server that
    /// has not heard of the removal yet). One being tried is not: its download holds
    /// the removal back until it ends (`Window::hold`). Returns how many went. A scan
    /// of the queue, as removals are few.
    pub fn supersede(&mut self, rel: &str) -> usize {
        let gone: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.busy && e.rel == rel)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.remove(*id);
        }
        gone.len()
    }

    /// Drops the idle entries past their time to live.
    pub fn expire(&mut self, now: u64) -> Vec<Dropped> {
        let old: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.busy && now.saturating_sub(e.queued) >= self.ttl)
            .map(|(id, _)| *id)
            .collect();
        old.into_iter()
            .filter_map(|id| self.drop_entry(id, now))
            .collect()
    }

    /// Records a removal; rewrites the log when mostly dead. A removal need not be
    /// synced: an entry that comes back after a crash is judged again, and found stored.
    fn forget(&mut self, id: u64) {
        let rec = format!("D {id}\n");
        if self.log.write_all(rec.as_bytes()).is_ok() {
            self.end += rec.len() as u64;
        } else {
            let _ = self.log.set_len(self.end);
        }
        self.dead += 1;
        if self.dead > self.entries.len() + COMPACT_SLACK {
            if let Err(e) = self.compact() {
                log::warn!("retry queue {}: cannot rewrite: {e}", self.dir.display());
            }
        }
    }

    /// Rewrites the log with the live entries only (written aside, synced, renamed).
    fn compact(&mut self) -> io::Result<()> {
        if self.dead == 0 && self.entries.is_empty() && self.end == 0 {
            return Ok(());
        }
        let path = self.dir.join(LOG);
        let tmp = self.dir.join(".queue.log.tmp");
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        let mut end = 0u64;
        let mut offsets = Vec::with_capacity(self.entries.len());
        for (id, e) in &self.entries {
            let mut buf = vec![0; e.topic_len + e.payload_len];
            self.log.read_exact_at(&mut buf, e.offset)?;
            let head = format!(
                "A {id} {} {} {} {} {}\n",
                e.queued, e.topic_len, e.payload_len, e.origin, e.rel
            );
            out.write_all(head.as_bytes())?;
            out.write_all(&buf)?;
            out.write_all(b"\n")?;
            offsets.push(end + head.len() as u64);
            end += (head.len() + buf.len() + 1) as u64;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        self.log = OpenOptions::new().read(true).append(true).open(&path)?;
        for (e, off) in self.entries.values_mut().zip(offsets) {
            e.offset = off;
        }
        self.end = end;
        self.dead = 0;
        self.unsynced = false;
        Ok(())
    }
}

/// An origin as written in a record: one word.
fn clean_origin(origin: &str) -> &str {
    if origin.is_empty() || origin.bytes().any(|b| b <= b' ') {
        "-"
    } else {
        origin
    }
}

/// Reads the log: the live entries, the next id, and where the last whole record ends.
fn replay(log: &mut File) -> io::Result<(BTreeMap<u64, Entry>, u64, u64)> {
    log.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::new(&*log);
    let mut entries = BTreeMap::new();
    let (mut next_id, mut pos) = (0u64, 0u64);
    let mut line = Vec::new();
    let now = Instant::now();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let text = String::from_utf8_lossy(&line[..n - 1]).into_owned();
        let f: Vec<&str> = text.splitn(7, ' ').collect();
        match f.as_slice() {
            ["A", id, queued, tl, pl, origin, rel] => {
                let (Ok(id), Ok(queued), Ok(tl), Ok(pl)) = (
                    id.parse::<u64>(),
                    queued.parse::<u64>(),
                    tl.parse::<usize>(),
                    pl.parse::<usize>(),
                ) else {
                    break;
                };
                let mut body = vec![0; tl + pl + 1];
                if r.read_exact(&mut body).is_err() || body[tl + pl] != b'\n' {
                    break;
                }
                entries.insert(
                    id,
                    Entry {
                        queued,
                        origin: (*origin).to_string(),
                        rel: (*rel).to_string(),
                        offset: pos + n as u64,
                        topic_len: tl,
                        payload_len: pl,
                        attempts: 0,
                        // taken up at once: the node was away for a while
                        due: now,
                        busy: false,
                        reloaded: true,
                    },
                );
                next_id = next_id.max(id + 1);
                pos += (n + tl + pl + 1) as u64;
            }
            ["D", id] => {
                let Ok(id) = id.parse::<u64>() else { break };
                entries.remove(&id);
                next_id = next_id.max(id + 1);
                pos += n as u64;
            }
            _ => break,
        }
    }
    Ok((entries, next_id, pos))
}

#[cfg(test)]
mod tests;
