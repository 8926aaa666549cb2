//! What a flow does with one message: judge it (`core::decide`) and act on the verdict
//! (storing and announcing: `verdicts`), or forward it; what a finished download, a
//! stalled disk or a retry means for the messages waiting on them.

use super::engine::download::Done;
use super::engine::messages::{AfterDownload, Judged};
use super::flow::{Flow, Outcome};
use super::mqtt::Poster;
use super::recent::Recent;
use super::window::Arrival;
use crate::core::announce;
use crate::core::decide::{decide, LocalCopy, Refusal, Rules, Verdict};
use crate::core::integrity::{Digest, Method};
use crate::core::message;
use crate::store::sidecar;
use crate::store::Store;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The flow's facts about its copy of a file: the recent record first, then the disk.
struct Local<'f> {
    store: &'f mut Store,
    recent: &'f mut Recent,
    announced: &'f super::announced::Announced,
    /// Announcements made and not yet acknowledged: announced too (a redelivery of a
    /// file just stored from another upstream's copy is not announced twice).
    ledger: &'f super::engine::ledger::Ledger,
    seen: &'f mut super::seen::SeenState,
    cfg: &'f super::peer::PeerConfig,
    same_bytes: &'f super::recent::SameBytes,
    removed: &'f Recent,
}

impl LocalCopy for Local<'_> {
    fn matches(&mut self, rel: &str, method: Method, digest: &Digest) -> bool {
        let present = self.recent.contains(rel, digest.as_bytes())
            || match self.store.local_digest(rel, method) {
                Ok(Some(have)) => have == *digest,
                Ok(None) => false,
                Err(e) => {
                    log::warn!("{rel}: cannot read the local copy: {e}");
                    false
                }
            };
        if present {
            // the same file announced by several peers costs one disk read
            self.recent.insert(rel, digest.as_bytes());
        }
        present
    }
    fn exists(&mut self, rel: &str) -> bool {
        self.store.exists(rel)
    }
    fn forwarded(&mut self, rel: &str, key: &[u8]) -> bool {
        let seen = self.recent.contains(rel, key);
        self.recent.insert(rel, key);
        seen
    }
    fn announced(&mut self, rel: &str, digest: &Digest) -> bool {
        let value = digest.to_base64();
        self.announced.contains(rel, &value)
            || self
                .ledger
                .holds(super::announced::Announced::key(rel, &value))
    }
    fn pub_time(&mut self, rel: &str) -> Option<f64> {
        let m = std::fs::symlink_metadata(self.store.path(rel)).ok()?;
        let t = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(t.as_secs_f64())
    }
    fn seen_id(&mut self, id: &str) -> bool {
        let cfg = self.cfg;
        self.seen.seen(|| (cfg.seen_dir(), cfg.wis2_ids_max), id)
    }
    fn removed_at(&mut self, rel: &str) -> Option<f64> {
        self.removed.value_of(rel).map(f64::from_bits)
    }
    fn same_bytes(&mut self, method: Method, digest: &Digest) -> Option<String> {
        let from = self
            .same_bytes
            .get(method.name(), digest.as_bytes())?
            .to_string();
        self.matches(&from, method, digest).then_some(from)
    }
}

impl Flow {
    /// Judges a message (new, or held while its relPath downloaded) and records in the
    /// engine what became of it. False: stopping left it unfinished.
    pub(super) fn process(&mut self, m: Arrival, first: bool, poster: Option<&Poster>) -> bool {
        let outcome = self.handle(&m.topic, &m.payload, m.dup, first, poster);
        match self.engine.judged(m, outcome, Instant::now()) {
            Judged::Taken => true,
            Judged::Stalled { rel, why, warn } => {
                self.warn_stalled(&rel, &why, warn);
                true
            }
            Judged::Abandoned => false,
        }
    }

    /// The local disk refused a file: the flow pauses and tries again with backoff;
    /// nothing is acknowledged meanwhile. One warning a minute (`warn`: the pause),
    /// with the free space.
    fn warn_stalled(&self, rel: &str, why: &str, warn: Option<Duration>) {
        let Some(pause) = warn else { return };
        let free = self
            .store
            .free_space()
            .map_or("unknown".into(), |b| format!("{b} bytes"));
        log::warn!(
            "{rel}: cannot store ({why}); free in {}: {free}. Not acknowledged: the flow pauses and tries again (next in {}s)",
            self.cfg.dir.display(),
            pause.as_secs()
        );
    }

    /// Judges again the messages the disk refused (`Engine::stall_round`). False:
    /// stopping.
    pub(super) fn retry_stalled(
        &mut self,
        waiting: VecDeque<Arrival>,
        poster: Option<&Poster>,
    ) -> bool {
        let n = waiting.len();
        for m in waiting {
            if !self.process(m, false, poster) {
                return false;
            }
        }
        if self.engine.stall_round_ended() {
            log::info!("the data tree takes files again: {n} waiting messages taken up");
        }
        true
    }

    /// A download ended: the file is announced if stored, or its message kept in the
    /// retry queue if its server failed (what becomes of it is the engine's); then the
    /// messages held for its relPath are judged, in arrival order.
    pub(super) fn downloaded(&mut self, mut d: Done, poster: Option<&Poster>) {
        if d.returned {
            self.engine.returned(d.job, d.closes_after_one);
            return;
        }
        self.stats.mismatches += d.mismatches;
        let stopping = self.stop.load(Ordering::Relaxed);
        let now = Instant::now();
        let (after, mut rejudge) = self.engine.download_ended(&d, stopping, now);
        if d.stored.is_some() {
            self.engine.servers.note_success(&d.job.origin);
        } else if sidecar::split_product_rel(&d.job.rel).is_some() {
            sidecar::remove_meta(&self.store.path(&d.job.rel));
        }
        match after {
            AfterDownload::Retry { id, message } => self.retry_ended(id, d, message, poster),
            AfterDownload::Stalled { warn } => {
                let why = d.trouble.as_deref().unwrap_or_default();
                self.warn_stalled(&d.job.rel, why, warn);
            }
            AfterDownload::Stored { slot, message } => {
                let Some((method, digest, size)) = d.stored.take() else {
                    return;
                };
                let seq = self.stored(&d.job.rel, method, digest, size, message, poster);
                self.engine.finished(slot, seq);
            }
            AfterDownload::Abandoned => {}
            AfterDownload::Queue {
                slot,
                topic,
                payload,
            } => {
                let why = d.transient.as_deref().unwrap_or_default();
                let kept = self.requeue(&d.job, why, d.diverted, &topic, &payload);
                let warn = self
                    .engine
                    .queued(slot, topic, payload, kept, &mut rejudge, now);
                if !kept {
                    // not kept: not acknowledged, it waits like a refused file
                    self.warn_stalled(&d.job.rel, "the retry queue cannot be written", warn);
                }
            }
            AfterDownload::GivenUp => self.stats.failures += 1,
        }
        while let Some(h) = rejudge.next(&mut self.engine) {
            if !self.process(h, false, poster) {
                return;
            }
        }
    }

    /// A downloaded file is stored: counted, remembered, announced with the message
    /// that asked for it. Returns the announcement's publication (0: none).
    pub(super) fn stored(
        &mut self,
        rel: &str,
        method: Method,
        digest: Digest,
        size: u64,
        message: Option<(Bytes, Bytes)>,
        poster: Option<&Poster>,
    ) -> u64 {
        self.stats.downloads += 1;
        self.stats.bytes += size;
        self.remember_stored(rel, method, &digest, size);
        // the message was read once already: it parses again
        let Some((topic, payload)) = &message else {
            return 0;
        };
        let Ok(msg) = message::parse(payload) else {
            return 0;
        };
        match self.announce_stored(&msg, topic, rel, method, digest, size, poster) {
            Outcome::Done(seq) => seq,
            _ => 0,
        }
    }

    /// Judges one message and does what it can at once; never fails: problems are
    /// logged and counted. `first`: not a message judged again after it was held.
    pub(super) fn handle(
        &mut self,
        topic: &[u8],
        payload: &[u8],
        redelivered: bool,
        first: bool,
        poster: Option<&Poster>,
    ) -> Outcome {
        self.stats.messages += u64::from(first);
        if first {
            self.last_message = Some(crate::sys::unix_now());
        }
        let rules = Rules {
            message_max: self.cfg.message_max as usize,
            lag_warn: self.cfg.lag_warn,
            lag_drop: self.cfg.lag_drop,
            select: &self.cfg.select,
            download: self.cfg.download,
            format: self.cfg.format,
        };
        let mut local = Local {
            store: &mut self.store,
            recent: &mut self.recent,
            announced: &self.announced,
            ledger: &self.engine.ledger,
            seen: &mut self.seen,
            cfg: &self.cfg,
            same_bytes: &self.same_bytes,
            removed: &self.removed,
        };
        let d = decide(
            payload,
            redelivered,
            crate::sys::unix_now(),
            &rules,
            &mut local,
        );
        let raw_rel = d.msg.as_ref().map_or("", |m| m.rel_path.as_ref());
        match (d.lag, &d.msg) {
            _ if !first => {}
            (Some(lag), _) => {
                self.stats.record_lag(lag);
                if lag > self.cfg.lag_drop {
                    log::warn!(
                        "{raw_rel}: dropped, lag {lag:.0}s over lag-drop {}s",
                        self.cfg.lag_drop
                    );
                } else if lag > self.cfg.lag_warn {
                    log::warn!(
                        "{raw_rel}: lag {lag:.0}s over lag-warn {}s",
                        self.cfg.lag_warn
                    );
                }
            }
            (None, Some(m)) => log::warn!(
                "{raw_rel}: pubTime {:?} unreadable, lag unknown",
                m.pub_time
            ),
            (None, None) => {}
        }
        let verdict = match d.verdict {
            Verdict::Refuse(ref r) => return self.refuse(topic, d.rel(), r),
            Verdict::LagDrop => {
                self.stats.lag_dropped += 1;
                return Outcome::Done(0);
            }
            Verdict::Duplicate => {
                self.stats.duplicates += 1;
                log::trace!("{raw_rel}: duplicate, already here");
                return Outcome::Done(0);
            }
            v => v,
        };
        let (Some(msg), Some(at)) = (d.msg, d.rel_at) else {
            return Outcome::Done(0); // a verdict to act on always has both
        };
        let rel = &msg.rel_path[at..];
        if self.engine.window.is_fetching(rel) {
            return Outcome::Busy(rel.to_string());
        }
        match verdict {
            Verdict::Forward => {
                let value = msg
                    .integrity
                    .as_ref()
                    .and_then(|i| i.digest.as_ref())
                    .map(Digest::to_base64)
                    .unwrap_or_default();
                self.out.clear();
                let id = self.new_id();
                if let Err(why) =
                    announce::forward(&mut self.out, self.cfg.format, &msg, rel, &value, &id)
                {
                    log::warn!("{rel}: not forwarded: {why}");
                    self.stats.rejected += 1;
                    return Outcome::Done(0);
                }
                let dirs = self.topic_dirs(topic, rel);
                self.announce(rel, &dirs, &value, poster)
            }
            Verdict::Reannounce { method, digest } => {
                // stored before a crash, its announcement perhaps never acknowledged:
                // announce again rather than lose the announcement
                self.stats.duplicates += 1;
                let size = std::fs::metadata(self.store.path(rel)).map_or(0, |m| m.len());
                self.announce_stored(&msg, topic, rel, method, digest, size, poster)
            }
            Verdict::StoreInline { method, expected } | Verdict::Fetch { method, expected } => {
                self.store_file(&msg, topic, rel, method, expected.as_ref(), poster)
            }
            Verdict::Copy {
                from,
                method,
                expected,
            } => match self.copy_local(&msg, topic, rel, &from, method, &expected, poster) {
                Some(outcome) => outcome,
                None => self.store_file(&msg, topic, rel, method, Some(&expected), poster),
            },
            Verdict::Apply(op) => self.file_op(&msg, topic, rel, op, redelivered, poster),
            Verdict::Refuse(_) | Verdict::LagDrop | Verdict::Duplicate => Outcome::Done(0),
        }
    }

    fn refuse(&mut self, topic: &[u8], rel: Option<&str>, r: &Refusal) -> Outcome {
        self.stats.rejected += 1;
        let topic = String::from_utf8_lossy(topic);
        match (r, rel) {
            (Refusal::NotSelected, Some(rel)) => log::trace!("{rel}: not selected"),
            (Refusal::Link(_) | Refusal::Rename(_), Some(rel)) => log::warn!("{rel}: {r}"),
            (Refusal::Malformed(_), _) => {
                log::warn!("message on {topic}: {r}")
            }
            _ => log::error!("message on {topic} {r}"),
        }
        Outcome::Done(0)
    }
}
