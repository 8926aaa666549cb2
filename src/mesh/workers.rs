//! The flow's downloaders: a fixed pool of threads (`--concurrency`), each taking one
//! job at a time: GET, verify while writing, rename into the tree. A slow or dead
//! server holds only the worker that is fetching from it; the flow meanwhile judges,
//! stores inline content and announces what is finished.
//!
//! Threads rather than an event loop: a download is a blocking copy from a socket into
//! a file with a hash on the way, and a handful of threads with small stacks cost less
//! on a Pi than the machinery to interleave them.

use super::engine::download::{Done, Job, PIPELINE_SMALL};
use super::fetch::{can_pipeline, connect_error, split_url, FetchError, Fetcher, Timeouts};
use super::mqtt::Inbound;
use super::pipeline::{Conn, Framing, Head};
use crate::store::{is_local_trouble, CommitError, Store};
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest pause between two attempts of a download.
pub const MAX_DOWNLOAD_BACKOFF: Duration = Duration::from_secs(30);
/// Stack of a worker: a download needs a read buffer (on the heap) and a hash.
const WORKER_STACK: usize = 256 * 1024;

/// What became of one pipelined answer.
enum Received {
    /// Finished; and whether the connection can still be read (its body read whole).
    Done(Done, bool),
    /// Failed its pipelined try (a status, a mismatch: with the mismatches so far): the
    /// one-by-one path tries it again.
    Again(Job, u64),
    /// The connection broke while it was read: tried again one by one, and the
    /// connection is not used further.
    Broken(Job),
}

/// How the workers download.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub xattr: &'static str,
    pub file_max: u64,
    pub retries: u32,
    /// The short budget of attempts while the server fails, before the retry queue.
    pub retry_time: Duration,
    pub timeouts: Timeouts,
    /// Idle keep-alive connections kept per origin.
    pub host_connections: usize,
}

/// Every download thread ended (they end only when the flow does, or on a panic).
#[derive(Debug)]
pub struct WorkersGone;

pub struct Workers {
    jobs: Option<flume::Sender<Vec<Job>>>,
    done: Receiver<Done>,
    /// A wake-up is on its way to the flow (or it is looking anyway): the workers send
    /// no other. One per finished file woke the flow thread once per file.
    notified: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` workers; each finished job is sent on `done` and the flow woken through
    /// `wake`. They abandon a transfer when `stop` is set.
    pub fn spawn(
        n: usize,
        s: &Settings,
        wake: flume::Sender<Inbound>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Workers> {
        // never more jobs handed over than workers: the flow keeps the rest
        // many receivers: a batch wakes one waiting worker (a receiver behind a mutex
        // woke one for the batch and another for the lock)
        let (jobs_tx, jobs_rx) = flume::bounded::<Vec<Job>>(n);
        let (done_tx, done_rx) = mpsc::channel();
        let notified = Arc::new(AtomicBool::new(false));
        // one agent: one pool of keep-alive connections for all workers
        let fetcher = Fetcher::with_stop(s.timeouts, s.host_connections, stop.clone());
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let store = Store::open(&s.dir, s.xattr)?;
            let mut w = Worker {
                store,
                fetcher: fetcher.share(),
                settings: s.clone(),
                stop: stop.clone(),
            };
            let (rx, done, wake) = (jobs_rx.clone(), done_tx.clone(), wake.clone());
            let notified = notified.clone();
            let flow = crate::sys::flows::current();
            threads.push(
                thread::Builder::new()
                    .name(format!("download-{i}"))
                    .stack_size(WORKER_STACK)
                    .spawn(move || {
                        let _counted = crate::sys::flows::join(flow);
                        loop {
                            let Ok(batch) = rx.recv() else {
                                return;
                            };
                            let mut gone = false;
                            w.download_batch(batch, &mut |d| {
                                gone |= done.send(d).is_err();
                                if notified.swap(true, Ordering::SeqCst) {
                                    return; // the flow has yet to look: it sees this too
                                }
                                match wake.try_send(Inbound::Wake) {
                                    // the flow is busy and looks anyway
                                    Err(flume::TrySendError::Full(_)) => {
                                        notified.store(false, Ordering::SeqCst)
                                    }
                                    Err(flume::TrySendError::Disconnected(_)) => gone = true,
                                    Ok(()) => {}
                                }
                            });
                            if gone {
                                return;
                            }
                        }
                    })?,
            );
        }
        Ok(Workers {
            jobs: Some(jobs_tx),
            done: done_rx,
            notified,
            threads,
        })
    }

    /// The downloads finished so far. Clears the wake-up flag first: a download
    /// finishing after that wakes the flow again.
    pub fn finished(&self) -> impl Iterator<Item = Done> + '_ {
        self.notified.store(false, Ordering::SeqCst);
        self.done.try_iter()
    }

    /// Waits at most `limit` for a download to finish: Ok(None) if none did, Err if the
    /// workers are gone.
    pub fn wait_finished(&self, limit: Duration) -> Result<Option<Done>, WorkersGone> {
        self.notified.store(false, Ordering::SeqCst);
        match self.done.recv_timeout(limit) {
            Ok(d) => Ok(Some(d)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(WorkersGone),
        }
    }

    /// Hands a batch (one server, one connection) to a free worker. The flow hands over
    /// no more batches than there are workers, so this never waits.
    pub fn submit(&self, batch: Vec<Job>) {
        if let Some(tx) = &self.jobs {
            // cannot fail while the workers live: they end only when `jobs` is dropped
            let _ = tx.send(batch);
        }
    }

    /// Waits for every worker to finish its job (abandoned if stopping) and end.
    pub fn join(mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Worker {
    store: Store,
    fetcher: Fetcher,
    settings: Settings,
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// Downloads a batch of one server's files: pipelined on one connection when our
    /// own client speaks its URL (`http://`, `https://`: see `pipeline`), else one by one. A file that fails its pipelined try
    /// takes the one-by-one path, with its budgets; when the server answers none of the
    /// batch (refused, silent), the first file takes that path and the rest share its
    /// fate, so a dead server costs one budget, not one per file.
    fn download_batch(&mut self, jobs: Vec<Job>, out: &mut dyn FnMut(Done)) {
        if jobs.len() == 1 || !can_pipeline(&jobs[0].url) {
            for job in jobs {
                out(self.download(job, 0));
            }
            return;
        }
        let origin = split_url(&jobs[0].url).0.to_string();
        let host = origin[origin.find("://").map_or(0, |i| i + 3)..].to_string();
        let mut pending: VecDeque<Job> = jobs.into();
        // failed their pipelined try: (job, checksum mismatches so far)
        let mut again: Vec<(Job, u64)> = Vec::new();
        // a kept connection failed before answering (closed meanwhile): a new one
        let mut fresh = false;
        let mut unanswered = None;
        while !pending.is_empty() && !self.stop.load(Ordering::Relaxed) {
            let mut conn = match self.fetcher.pool().take(&origin, fresh) {
                Ok(c) => c,
                Err(e) => {
                    unanswered = Some(connect_error(&e).to_string());
                    break;
                }
            };
            let paths: Vec<&str> = pending.iter().map(|j| split_url(&j.url).1).collect();
            if let Err(e) = conn.send_gets(&host, &paths, None) {
                if conn.went_stale() {
                    fresh = true;
                    continue;
                }
                unanswered = Some(format!("io: {e}"));
                break;
            }
            let mut answered = 0;
            let mut keep = true;
            // the batch's last file is reported once its connection is back in the
            // pool: its report frees the server's turn for the next batch, which
            // would otherwise open one connection too many
            let mut last = None;
            while let Some(job) = pending.pop_front() {
                let head = match conn.read_head(self.fetcher.timeouts().response) {
                    Ok(h) => h,
                    Err(e) => {
                        pending.push_front(job);
                        keep = false;
                        if conn.went_stale() {
                            fresh = true;
                        } else if conn.answered == 0 {
                            unanswered = Some(e.to_string());
                        }
                        // else: the server closed after some answers (a keep-alive
                        // request limit): the rest go again on a new connection
                        break;
                    }
                };
                answered += 1;
                let close = head.close;
                // a server that ends even a new connection after one answer
                let after_one = close && !conn.reused && answered == 1;
                // the answers behind this one would wait for its body (large, or up to
                // the close) or never come (the server closes after it): given back at
                // once, to be asked for on another connection. In reverse: each goes
                // first in its server's queue, so they keep their order there.
                let holds = close
                    || match head.framing {
                        Framing::Length(n) => n > PIPELINE_SMALL,
                        Framing::UntilClose => true,
                        Framing::Chunked => false,
                    };
                if holds && !pending.is_empty() {
                    log::debug!(
                        "{origin}: {} requests behind {} go to another connection",
                        pending.len(),
                        job.rel
                    );
                    for j in pending.drain(..).rev() {
                        let mut d = Done::returned(j);
                        d.closes_after_one = after_one;
                        out(d);
                    }
                    // their requests went out on this one: what it says later is not
                    // to be read as anybody's answer
                    keep = false;
                }
                match self.receive(&mut conn, &head, job) {
                    Received::Done(d, readable) => {
                        keep &= readable;
                        if pending.is_empty() {
                            last = Some(d);
                        } else {
                            out(d);
                        }
                    }
                    Received::Again(job, mismatches) => again.push((job, mismatches)),
                    Received::Broken(job) => {
                        again.push((job, 0));
                        keep = false;
                    }
                }
                if close || !keep {
                    keep = false;
                    break;
                }
            }
            if keep {
                self.fetcher.pool().give(&origin, conn);
            } else {
                drop(conn);
            }
            if let Some(d) = last {
                out(d);
            }
            if unanswered.is_some() {
                break;
            }
        }
        // the server answered none of these: the first tries with its budget
        if let Some(why) = unanswered {
            log::debug!("{origin}: no answer to a batch ({why}): one file tries for all");
            if let Some(first) = pending.pop_front() {
                let d = self.download(first, 0);
                let dead = d.transient.clone();
                out(d);
                for job in pending.drain(..) {
                    match &dead {
                        Some(why) => out(Done::transient(job, why.clone())),
                        None => out(self.download(job, 0)),
                    }
                }
            }
        }
        for (job, mismatches) in again {
            out(self.download(job, mismatches));
        }
        // stopping: what is left is abandoned, its messages come again
        for job in pending {
            out(Done::given_up(job));
        }
    }

    /// Reads one pipelined answer into the store.
    fn receive(&mut self, conn: &mut Conn, head: &Head, job: Job) -> Received {
        let (rel, s) = (&job.rel, &self.settings);
        let (t, stop) = (*self.fetcher.timeouts(), self.fetcher.stop());
        if head.status != 200 {
            // read past its body; the one-by-one path judges the status
            return match conn.read_body(head, &mut io::sink(), &t, stop) {
                Ok(_) => Received::Again(job, 0),
                Err(_) => Received::Broken(job),
            };
        }
        let mut tmp = match self.store.begin(rel, job.method, s.file_max) {
            Ok(mut tmp) => {
                tmp.set_modified(job.pub_time);
                tmp
            }
            Err(e) => {
                let readable = conn.read_body(head, &mut io::sink(), &t, stop).is_ok();
                let d = if is_local_trouble(&e) {
                    Done::trouble(job, e.to_string())
                } else {
                    log::error!("{rel}: cannot write in the data tree: {e}");
                    Done::given_up(job)
                };
                return Received::Done(d, readable);
            }
        };
        let d = match conn.read_body(head, &mut tmp, &t, stop) {
            Ok(size) => match self.store.commit(tmp, rel, job.expected.as_ref()) {
                Ok((m, d)) => Done::stored(job, (m, d, size)),
                Err(CommitError::Mismatch {
                    announced,
                    computed,
                }) => {
                    log::error!(
                        "{rel}: checksum mismatch from {} (attempt 1 of {}): announced {announced:?}, computed {computed:?}; not stored",
                        job.url,
                        s.retries.max(1)
                    );
                    if s.retries > 1 {
                        return Received::Again(job, 1);
                    }
                    Done {
                        mismatches: 1,
                        ..Done::given_up(job)
                    }
                }
                Err(CommitError::Io(e)) if is_local_trouble(&e) => {
                    Done::trouble(job, e.to_string())
                }
                Err(CommitError::Io(e)) => {
                    log::error!("{rel}: cannot store: {e}");
                    Done::given_up(job)
                }
            },
            Err(FetchError::Write(e)) if is_local_trouble(&e) => Done::trouble(job, e.to_string()),
            Err(FetchError::Write(e)) => {
                log::error!("{rel}: giving up on {}: writing the download: {e}", job.url);
                Done::given_up(job)
            }
            Err(FetchError::Stopped) => return Received::Done(Done::given_up(job), false),
            Err(e) => {
                log::warn!("{rel}: GET {} failed (pipelined): {e}", job.url);
                return Received::Broken(job);
            }
        };
        Received::Done(d, true)
    }

    /// Downloads, with three budgets: a wrong checksum is tried `retries` times; a
    /// server failing (refused, reset, timeout, 5xx, 429, too slow) is tried again for
    /// up to `retry_time` (seconds), then the message goes to the retry queue; a 4xx is
    /// checked once more after a pause (a file announced a moment before its server
    /// shows it), then given up.
    fn download(&mut self, job: Job, mismatches_before: u64) -> Done {
        let (rel, url, s) = (&job.rel, &job.url, &self.settings);
        let started = Instant::now();
        let mut backoff = Duration::from_secs(1);
        let mut mismatches = mismatches_before;
        let mut attempt = 0;
        let mut trouble = None;
        let mut transient = None;
        let mut rechecked = false;
        let stored = loop {
            attempt += 1;
            if self.stop.load(Ordering::Relaxed) {
                break None;
            }
            let mut tmp = match self.store.begin(rel, job.method, s.file_max) {
                Ok(mut t) => {
                    t.set_modified(job.pub_time);
                    t
                }
                Err(e) if is_local_trouble(&e) => {
                    trouble = Some(e.to_string());
                    break None;
                }
                Err(e) => {
                    log::error!("{rel}: cannot write in the data tree: {e}");
                    break None;
                }
            };
            let give_up = match self.fetcher.get_into(url, &mut tmp) {
                Ok(size) => match self.store.commit(tmp, rel, job.expected.as_ref()) {
                    Ok((m, d)) => break Some((m, d, size)),
                    Err(CommitError::Mismatch {
                        announced,
                        computed,
                    }) => {
                        mismatches += 1;
                        log::error!(
                            "{rel}: checksum mismatch from {url} (attempt {mismatches} of {}): announced {announced:?}, computed {computed:?}; not stored",
                            s.retries.max(1)
                        );
                        mismatches >= u64::from(s.retries.max(1))
                    }
                    Err(CommitError::Io(e)) if is_local_trouble(&e) => {
                        trouble = Some(e.to_string());
                        break None;
                    }
                    Err(CommitError::Io(e)) => {
                        log::error!("{rel}: cannot store: {e}");
                        true
                    }
                },
                Err(FetchError::Stopped) => break None,
                Err(FetchError::Write(e)) if is_local_trouble(&e) => {
                    trouble = Some(e.to_string());
                    break None;
                }
                Err(e) if e.is_permanent() => {
                    log::warn!("{rel}: GET {url} failed (attempt {attempt}): {e}");
                    let again = !rechecked && matches!(e, FetchError::Status(_));
                    rechecked = true;
                    !again
                }
                Err(e) => {
                    log::warn!("{rel}: GET {url} failed (attempt {attempt}): {e}");
                    // nobody listens: asking again in a second rarely helps, and the
                    // worker is wanted for the servers that answer
                    if matches!(e, FetchError::Refused)
                        || started.elapsed() + backoff > s.retry_time
                    {
                        transient = Some(e.to_string());
                        break None;
                    }
                    false
                }
            };
            if give_up {
                log::error!("{rel}: giving up on {url} after {attempt} attempts");
                break None;
            }
            crate::sys::sleep_unless(&self.stop, backoff);
            backoff = (backoff * 2).min(MAX_DOWNLOAD_BACKOFF);
        };
        Done {
            stored,
            mismatches,
            trouble,
            transient,
            ..Done::given_up(job)
        }
    }
}

/// `scheme://host[:port]` of a URL: what a connection is made to.
pub fn origin(url: &str) -> &str {
    super::fetch::split_url(url).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(origin("http://a:8000/data/x.txt"), "http://a:8000");
        assert_eq!(origin("https://b/c"), "https://b");
        assert_eq!(origin("http://c"), "http://c");
    }
}
