//! What a flow does with downloads that failed for their server's sake: it keeps their
//! messages in the retry queue (on disk before the upstream ack) and moves on; tries
//! them again in the background when workers are free (fresh messages first), the
//! freshest first, as many at once as the free workers take in full pipelined batches
//! (one at a time drained a queue of 1,443 at 2 files/s after a 20 s outage); marks a server that keeps failing down, so its files go straight to
//! the queue; drops what outlives `--retry-ttl`.

use super::engine::download::{Done, Job};
use super::engine::messages::RetryJudged;
use super::engine::retries::{self, Ended, RetryEnd, RETRY_PAUSE};
use super::flow::{Flow, Outcome};
use super::mqtt::Poster;
use super::retry::Taken;
use super::workers::Workers;
use bytes::Bytes;
use std::time::{Duration, Instant};

impl Flow {
    /// Starts queued downloads (those of servers marked down go to the retry queue
    /// untried), and tries queued messages when workers are free.
    pub(super) fn dispatch(&mut self, workers: &Workers, poster: Option<&Poster>) {
        self.retry_tick(poster);
        loop {
            let d = self.engine.dispatch(Instant::now());
            for batch in d.batches {
                workers.submit(batch);
            }
            if d.diverted.is_empty() {
                return;
            }
            for job in d.diverted {
                self.downloaded(Done::diverted(job), poster);
            }
        }
    }

    /// The earliest deadline of the flow's work that has no wake-up of its own
    /// (`Engine::poll_at`): the loop waits for events until then (`Pace::poll_at`).
    pub(super) fn due_at(&self) -> Option<Instant> {
        self.engine.poll_at(!self.retry.is_empty())
    }

    /// Keeps the message of a download its server failed in the retry queue (written;
    /// synced before the upstream ack). False: the queue cannot be written.
    pub(super) fn requeue(
        &mut self,
        job: &Job,
        why: &str,
        diverted: bool,
        topic: &[u8],
        payload: &[u8],
    ) -> bool {
        if !diverted {
            self.engine
                .servers
                .log_failure(&job.origin, why, Instant::now());
        }
        let unix = crate::sys::unix_now() as u64;
        match self.retry.push(topic, payload, &job.origin, &job.rel, unix) {
            Ok((_, pushed_out)) => {
                self.stats.queued += 1;
                if diverted {
                    log::debug!("{}: {why}, queued for retry", job.rel);
                } else {
                    log::info!(
                        "{}: {why}; queued for retry ({} in the queue)",
                        job.rel,
                        self.retry.len()
                    );
                }
                if let Some(d) = pushed_out {
                    self.stats.expired += 1;
                    log::warn!(
                        "{}: dropped from the retry queue, full (--retry-max {}): the oldest gives way ({} s old, from {})",
                        d.rel,
                        self.cfg.retry_max,
                        d.age,
                        d.origin
                    );
                }
                true
            }
            Err(e) => {
                log::error!("{}: cannot keep in the retry queue: {e}", job.rel);
                false
            }
        }
    }

    /// A download of a retry-queue entry ended: what becomes of it is
    /// `engine::retries::ended`'s; this carries it out.
    pub(super) fn retry_ended(
        &mut self,
        id: u64,
        d: Done,
        message: Option<(Bytes, Bytes)>,
        poster: Option<&Poster>,
    ) {
        let unix = crate::sys::unix_now() as u64;
        let end = retries::ended(Ended {
            stored: d.stored.is_some(),
            stopping: self.stop.load(std::sync::atomic::Ordering::Relaxed),
            disk_trouble: d.trouble.is_some(),
            transient: d.transient.as_deref(),
            diverted: d.diverted,
            expired: self.retry.is_expired(id, unix),
        });
        let (rel, origin) = (&*d.job.rel, &*d.job.origin);
        match end {
            RetryEnd::Stored => {
                let Some((method, digest, size)) = d.stored else {
                    return;
                };
                log::info!("{rel}: stored from the retry queue");
                let seq = self.stored(rel, method, digest, size, message, poster);
                // removed from the queue once its announcement is acknowledged
                self.engine.retry_stored(id, seq);
                if self.engine.servers.succeeded(origin) {
                    log::info!("{origin}: back up; its queued files are tried now");
                    self.retry.wake(origin);
                    self.engine.retry_pace.woken();
                }
            }
            RetryEnd::Again => self.retry.later(id, Some(Duration::ZERO)),
            RetryEnd::Paused => {
                self.engine.servers.unprobe(origin);
                self.retry.later(id, Some(RETRY_PAUSE));
            }
            RetryEnd::GivenUp => {
                // logged already (a 4xx, a checksum that never matches); the server
                // answered, so a probe is over (else no file of a down server is
                // tried again: found by the engine's simulation)
                self.engine.servers.unprobe(origin);
                self.stats.failures += 1;
                self.retry.remove(id);
            }
            RetryEnd::Failed {
                why,
                blame,
                expired,
            } => {
                if blame {
                    self.engine.servers.log_failure(origin, why, Instant::now());
                }
                if expired {
                    self.expired(id, why, unix);
                } else {
                    self.retry.later(id, None);
                }
            }
        }
    }

    fn expired(&mut self, id: u64, why: &str, unix: u64) {
        if let Some(d) = self.retry.drop_entry(id, unix) {
            self.stats.expired += 1;
            log::warn!(
                "{}: dropped from the retry queue after {} s (--retry-ttl); last trouble: {why}",
                d.rel,
                d.age
            );
        }
    }

    /// Each tick, drops what is past its time to live; at every turn, tries due
    /// entries while the free workers have room (a scan that finds none waits for the
    /// next tick: the queue may hold thousands).
    fn retry_tick(&mut self, poster: Option<&Poster>) {
        let now = Instant::now();
        if self.engine.retry_pace.tick(now) {
            self.spill(now);
            let unix = crate::sys::unix_now() as u64;
            for d in self.retry.expire(unix) {
                self.stats.expired += 1;
                log::warn!(
                    "{}: dropped from the retry queue after {} s (--retry-ttl), its server {} still failing",
                    d.rel,
                    d.age,
                    d.origin
                );
            }
        }
        if !self.engine.retry_pace.scanning() || self.retry.is_empty() {
            return;
        }
        // enough to fill the free workers' pipelines, no more: a fresh message waits
        // behind at most one batch of its server's retries
        while self.engine.window.queued() < self.engine.window.room() {
            let servers = &mut self.engine.servers;
            match self.retry.take_due(now, |o| servers.may_try(o, now)) {
                Ok(Some(t)) => self.retry_one(t, poster),
                Ok(None) => {
                    self.engine.retry_pace.found_none();
                    return;
                }
                Err(e) => {
                    log::error!("retry queue: cannot read: {e}");
                    return;
                }
            }
        }
    }

    /// Moves the downloads that hold acks back for longer than `SPILL_AFTER` to the
    /// retry queue (their downloads go on), so their messages can be acknowledged.
    fn spill(&mut self, now: Instant) {
        while let Some((slot, f)) = self.engine.blocking(now) {
            let unix = crate::sys::unix_now() as u64;
            match self
                .retry
                .push(&f.topic, &f.payload, &f.origin, &f.rel, unix)
            {
                Ok((id, pushed_out)) => {
                    self.retry.set_busy(id);
                    self.stats.queued += 1;
                    log::info!(
                        "{}: downloading for {:.0} s, held other acks back: moved to the retry queue, download going on",
                        f.rel,
                        now.saturating_duration_since(f.since).as_secs_f64()
                    );
                    if let Some(d) = pushed_out {
                        self.stats.expired += 1;
                        log::warn!(
                            "{}: dropped from the retry queue, full (--retry-max {})",
                            d.rel,
                            self.cfg.retry_max
                        );
                    }
                    self.engine.spilled(slot, id, *f);
                }
                Err(e) => {
                    log::error!("{}: cannot keep in the retry queue: {e}", f.rel);
                    self.engine.not_spilled(slot, f);
                    return;
                }
            }
        }
    }

    /// Judges a queued message again: it may have arrived meanwhile from another peer.
    fn retry_one(&mut self, t: Taken, poster: Option<&Poster>) {
        let id = t.id;
        let outcome = self.handle(&t.topic, &t.payload, t.reloaded, false, poster);
        if let (Outcome::Fetch(job), true) = (&outcome, log::log_enabled!(log::Level::Debug)) {
            log::debug!("{}: tried again from the retry queue", job.rel);
        }
        let now = Instant::now();
        match self
            .engine
            .retry_judged(id, t.topic, t.payload, outcome, now)
        {
            RetryJudged::Fetching => {
                self.stats.retried += 1;
            }
            judged => {
                if let Some(origin) = self.retry.origin(id) {
                    let origin = origin.to_string();
                    self.engine.servers.unprobe(&origin);
                }
                if let RetryJudged::Later(pause) = judged {
                    self.retry.later(id, Some(pause));
                }
            }
        }
    }
}
