//! What a flow does with one message: judge it (`core::decide`) and act on the verdict
//! (storing and announcing: `verdicts`), or forward it; what a finished download, a
//! stalled disk or a retry means for the messages waiting on them.

use super::flow::{Flow, Outcome};
use super::mqtt::Poster;
use super::recent::Recent;
use super::window::{retry_id, Arrival, Window};
use super::workers::Done;
use crate::core::announce;
use crate::core::decide::{decide, LocalCopy, Refusal, Rules, Verdict};
use crate::core::integrity::{Digest, Method};
use crate::core::message;
use crate::store::sidecar;
use crate::store::Store;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::Instant;

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
    /// window what became of it. False: stopping left it unfinished.
    pub(super) fn process(
        &mut self,
        w: &mut Window,
        m: Arrival,
        first: bool,
        poster: Option<&Poster>,
    ) -> bool {
        match self.handle(&m.topic, &m.payload, m.dup, first, poster, w) {
            Outcome::Done(seq) => w.done(m.slot, seq),
            Outcome::Fetch(mut job) => {
                job.slot = m.slot;
                w.fetch(job, m.topic, m.payload);
            }
            Outcome::Busy(rel) => w.hold(&rel, m),
            Outcome::Stalled(rel, why) => {
                self.stalled(&rel, &why);
                w.stall(m);
            }
            Outcome::Abandoned => return false,
        }
        true
    }

    /// The local disk refused a file: the flow pauses (one warning a minute, with the
    /// free space) and tries again with backoff; nothing is acknowledged meanwhile.
    fn stalled(&mut self, rel: &str, why: &str) {
        if let Some(pause) = self.stall.refused(Instant::now()) {
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
    }

    /// Judges again the messages the disk refused. False: stopping.
    pub(super) fn retry_stalled(&mut self, w: &mut Window, poster: Option<&Poster>) -> bool {
        let waiting = w.take_stalled();
        let n = waiting.len();
        self.stall.retrying();
        for m in waiting {
            if !self.process(w, m, false, poster) {
                return false;
            }
        }
        if !w.is_stalled() {
            log::info!("the data tree takes files again: {n} waiting messages taken up");
            self.stall.cleared();
        }
        true
    }

    /// A download ended: the file is announced if stored, or its message kept in the
    /// retry queue if its server failed; then the messages held for its relPath are
    /// judged, in arrival order.
    pub(super) fn downloaded(&mut self, w: &mut Window, d: Done, poster: Option<&Poster>) {
        if d.returned {
            // not ended: asked for again on another connection
            if d.closes_after_one {
                w.closes_after_one(&d.job.origin);
            }
            w.requeue(d.job);
            return;
        }
        self.stats.mismatches += d.mismatches;
        let (message, mut held) = w.ended(&d.job);
        let rel = d.job.rel.clone();
        let stopping = self.stop.load(Ordering::Relaxed);
        if d.stored.is_some() {
            w.server_ok(&d.job.origin);
            self.servers.note_success(&d.job.origin);
        } else if d.transient.is_some() && !d.diverted {
            w.server_failed(&d.job.origin);
        }
        if d.stored.is_none() && sidecar::split_product_rel(&rel).is_some() {
            sidecar::remove_meta(&self.store.path(&rel));
        }
        let retry = retry_id(d.job.slot).or_else(|| self.spilled.remove(&d.job.slot));
        if let Some(id) = retry {
            self.retry_ended(id, d, poster);
        } else if let (Some(why), Some((topic, payload))) = (&d.trouble, message.clone()) {
            self.stalled(&rel, why);
            // judged again when the disk takes files, with those that waited for it
            w.stall(Arrival {
                slot: d.job.slot,
                topic,
                payload,
                dup: false,
            });
            for h in held {
                w.stall(h);
            }
            return;
        } else {
            let slot = d.job.slot;
            match (d.stored, message) {
                (Some((method, digest, size)), message) => {
                    let seq = self.stored(&rel, method, digest, size, message, poster);
                    w.done(slot, seq);
                }
                _ if stopping => return, // abandoned: not acknowledged, it comes again
                (None, Some((topic, payload))) if d.transient.is_some() => {
                    let why = d.transient.as_deref().unwrap_or_default();
                    if !self.requeue(&d.job, why, d.diverted, &topic, &payload) {
                        // not kept: not acknowledged, it waits like a refused file
                        self.stalled(&rel, "the retry queue cannot be written");
                        w.stall(Arrival {
                            slot,
                            topic,
                            payload,
                            dup: false,
                        });
                        return;
                    }
                    w.done(slot, 0);
                }
                (None, _) => {
                    self.stats.failures += 1;
                    w.done(slot, 0);
                }
            }
        }
        while let Some(h) = held.pop_front() {
            if stopping || !self.process(w, h, false, poster) {
                return;
            }
            if w.is_fetching(&rel) {
                // one of them downloads it again: the rest wait for that download
                for h in held.drain(..) {
                    w.hold(&rel, h);
                }
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
        window: &Window,
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
            ledger: &self.ledger,
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
            Verdict::Refuse(r) => return self.refuse(topic, d.rel.as_deref(), &r),
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
        let (Some(msg), Some(rel)) = (d.msg, d.rel) else {
            return Outcome::Done(0); // a verdict to act on always has both
        };
        if window.is_fetching(&rel) {
            return Outcome::Busy(rel);
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
                    announce::forward(&mut self.out, self.cfg.format, &msg, &rel, &value, &id)
                {
                    log::warn!("{rel}: not forwarded: {why}");
                    self.stats.rejected += 1;
                    return Outcome::Done(0);
                }
                let dirs = self.topic_dirs(topic, &rel);
                self.announce(&rel, &dirs, &value, poster)
            }
            Verdict::Reannounce { method, digest } => {
                // stored before a crash, its announcement perhaps never acknowledged:
                // announce again rather than lose the announcement
                self.stats.duplicates += 1;
                let size = std::fs::metadata(self.store.path(&rel)).map_or(0, |m| m.len());
                self.announce_stored(&msg, topic, &rel, method, digest, size, poster)
            }
            Verdict::StoreInline { method, expected } | Verdict::Fetch { method, expected } => {
                self.store_file(&msg, topic, &rel, method, expected.as_ref(), poster)
            }
            Verdict::Copy {
                from,
                method,
                expected,
            } => match self.copy_local(&msg, topic, &rel, &from, method, &expected, poster) {
                Some(outcome) => outcome,
                None => self.store_file(&msg, topic, &rel, method, Some(&expected), poster),
            },
            Verdict::Apply(op) => self.file_op(&msg, topic, &rel, op, redelivered, poster),
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
