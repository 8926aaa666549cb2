//! One flow: take an announcement, decide, fetch (inline or HTTP GET), verify, store,
//! re-announce, and acknowledge upstream only once the re-announcement is acknowledged.

use super::audit;
use super::engine::messages::Engine;
use super::engine::pace::Pace;
use super::mqtt::{Inbound, PostError, Poster, Subscriber};
use super::peer::PeerConfig;
use super::recent::Recent;
use super::retry::RetryQueue;
use super::seen::SeenState;
use super::sessions::Sessions;
use super::stats::Stats;
use super::window::Window;
use super::workers::{Settings, Workers};
use super::Error;

use crate::core::topic;
use crate::store::Store;
use bytes::Bytes;
use flume::{RecvTimeoutError, TryRecvError};
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub(super) use super::engine::messages::Outcome;

#[derive(Debug)]
pub enum FlowEnd {
    Stopped,
    /// The post broker lost unacknowledged publications: the flow restarts, and the
    /// upstream broker delivers again what was not acknowledged.
    PostSessionLost,
}

pub struct Flow {
    pub(super) cfg: PeerConfig,
    pub(super) store: Store,
    /// How the downloaders work (from `cfg`).
    settings: Settings,
    pub(super) recent: Recent,
    pub stats: Stats,
    pub(super) stop: Arc<AtomicBool>,
    topic: String,
    /// The post exchange of the message at hand (split or not).
    exchange: String,
    /// The announcement being made.
    pub(super) out: Vec<u8>,
    /// Publications not yet handed to the post connection, at most `BATCH`.
    /// (topic, payload, journal key).
    outbox: Vec<(String, Vec<u8>, (u64, u64))>,
    /// The state of the flow's messages, without I/O: the window, the post ledger,
    /// the disk stall, the retry queue's pace.
    pub(super) engine: Engine,
    /// Messages whose server failed, kept to be tried again.
    pub(super) retry: RetryQueue,
    /// When the last message came, and the status window: for the board.
    pub(super) last_message: Option<f64>,
    status_window: super::stats::Window,
    /// Announcements acknowledged by the post broker, kept across restarts.
    pub(super) announced: super::announced::Announced,
    /// WIS2 message ids seen, opened at the first WIS2 message.
    pub(super) seen: SeenState,
    /// Files stored lately, by checksum: the same bytes under another name are copied.
    pub(super) same_bytes: super::recent::SameBytes,
    /// Removals applied lately: relPath -> the removal's pubTime (as f64 bits).
    pub(super) removed: Recent,
}

/// Runs a flow until `stop` is set, restarting it when the post broker lost the session.
pub fn run(cfg: PeerConfig, stop: Arc<AtomicBool>) -> Result<Stats, Error> {
    let store =
        Store::open(&cfg.dir, cfg.format.xattr_name()).map_err(|source| Error::DataDir {
            dir: cfg.dir.clone(),
            source,
        })?;
    // what a SIGKILLed process left mid-download, swept in the background
    let root = store.root().to_path_buf();
    let own = crate::store::sweep::this_process();
    let _ = std::thread::Builder::new()
        .name("sweep".into())
        .spawn(move || {
            let n = crate::store::sweep::sweep_temporaries(&root, own);
            if n > 0 {
                log::info!(
                    "{}: removed {n} temporaries left by an interrupted process",
                    root.display()
                );
            }
        });
    let retry_dir = cfg.retry_dir();
    let ttl = cfg
        .retry_ttl
        .min(Duration::from_secs_f64(cfg.lag_drop.max(0.0)));
    let retry =
        RetryQueue::open(&retry_dir, cfg.retry_max, ttl).map_err(|source| Error::StateDir {
            dir: retry_dir.clone(),
            source,
        })?;
    let announced_dir = cfg.announced_dir();
    let announced = super::announced::Announced::open(&announced_dir, super::announced::CAPACITY)
        .map_err(|source| Error::StateDir {
        dir: announced_dir.clone(),
        source,
    })?;
    let settings = Settings {
        dir: cfg.dir.clone(),
        xattr: cfg.format.xattr_name(),
        file_max: cfg.file_max,
        retries: cfg.retries,
        retry_time: cfg.retry_time,
        timeouts: cfg.timeouts,
        host_connections: cfg.host_connections,
    };
    let mut flow = Flow {
        settings,
        recent: Recent::new(cfg.recent_capacity),
        cfg,
        store,
        stats: Stats::default(),
        stop,
        topic: String::with_capacity(256),
        exchange: String::with_capacity(64),
        out: Vec::with_capacity(1024),
        outbox: Vec::with_capacity(super::engine::pace::BATCH),
        engine: Engine::new(Window::new(0, 1, 1, 1), Instant::now()),
        retry,
        last_message: None,
        status_window: super::stats::Window::new(&Stats::default()),
        announced,
        seen: SeenState::Unopened,
        same_bytes: super::recent::SameBytes::new(super::recent::SAME_BYTES_CAPACITY),
        removed: Recent::new(super::recent::REMOVED_CAPACITY),
    };
    loop {
        match flow.run_once() {
            FlowEnd::Stopped => return Ok(flow.stats),
            FlowEnd::PostSessionLost => {
                log::warn!("post broker lost its session with unacknowledged announcements: restarting the flow to receive them again");
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

impl Flow {
    fn run_once(&mut self) -> FlowEnd {
        let flow_started = Instant::now();
        let n = self.cfg.brokers.len();
        // a new post session numbers its publications from the start: what was queued
        // on the old one is not known acknowledged (retry entries announced there are
        // judged again as redeliveries); the old window's downloads were abandoned
        let window = Window::new(
            usize::from(self.cfg.inflight) * n,
            self.cfg.concurrency,
            self.cfg.host_connections,
            self.cfg.pipeline,
        );
        let (again, abandoned) = self.engine.restart(window);
        for id in again {
            self.retry.again(id);
        }
        for id in abandoned {
            // a probe abandoned: the server's next file probes it (else none would:
            // found by the engine's simulation)
            if let Some(origin) = self.retry.origin(id) {
                let origin = origin.to_string();
                self.engine.servers.unprobe(&origin);
            }
            self.retry.later(id, Some(Duration::ZERO));
        }
        // the flow's MQTT sessions, polled by a thread of their own
        let (mut sessions, tx_wake) = Sessions::open(&self.cfg, &mut self.announced, &self.stop);
        for f in &sessions.filters {
            log::info!("subscribing to {f}");
        }
        let workers = match Workers::spawn(
            self.cfg.concurrency,
            &self.settings,
            tx_wake,
            self.stop.clone(),
        ) {
            Ok(w) => w,
            Err(e) => {
                log::error!("cannot start the downloaders: {e}");
                self.stop.store(true, Ordering::SeqCst);
                return FlowEnd::Stopped;
            }
        };
        let mut pace = Pace::new(Instant::now(), self.cfg.stats_interval);
        let hang_at = fault_hang(&self.cfg.name).map(|d| Instant::now() + d);
        let mut stats_base = self.stats.clone();
        let mut end = FlowEnd::Stopped;
        // messages worked on at most (the rest wait in the queue or in TCP at the
        // broker; what a broker sends beyond the receive maximum the connections leave
        // to it after a while). Finished messages waiting for acks do not count: they
        // need only the connection tasks, whose waits for room in the queue yield.
        let window_max = usize::from(self.cfg.inflight) * n;
        while !self.stop.load(Ordering::Relaxed) {
            if hang_at.is_some_and(|t| Instant::now() >= t) {
                log::warn!("hanging on purpose (MESHNODE_FAULT_HANG) until stopped");
                while !self.stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(100));
                }
                break;
            }
            if sessions.poster.as_ref().is_some_and(Poster::session_lost) {
                end = FlowEnd::PostSessionLost;
                break;
            }
            let w = &self.engine.window;
            if w.is_stalled() || w.working() >= window_max {
                // the disk refuses files, or the window is full: take nothing new; only
                // finished downloads (and the stalled messages, when due) make room
                if !self.hand_over(&mut sessions) {
                    break;
                }
                let now = Instant::now();
                if let Some(waiting) = self.engine.stall_round(now) {
                    if !self.retry_stalled(waiting, sessions.poster.as_ref()) {
                        break;
                    }
                } else {
                    // until a download ends, or something is due
                    let until = pace.poll_at(now, self.due_at());
                    match workers.wait_finished(until.saturating_duration_since(now)) {
                        Ok(Some(d)) => self.downloaded(d, sessions.poster.as_ref()),
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
                self.dispatch(&workers, sessions.poster.as_ref());
                continue;
            }
            let next = match sessions.rx.try_recv() {
                Ok(m) => Ok(m),
                Err(TryRecvError::Empty) => {
                    // idle: hand over what is batched before waiting
                    if !self.hand_over(&mut sessions) {
                        break;
                    }
                    pace.handed_over();
                    // what a broker sent beyond the receive maximum comes again on a new
                    // connection, made once nothing of the old one waits for an ack
                    for (i, sub) in sessions.subs.iter().enumerate() {
                        let unacked = self.engine.window.of_broker(i);
                        if sub.overflowed.load(Ordering::SeqCst) > 0 && unacked == 0 {
                            sub.reconnect();
                        }
                    }
                    let now = Instant::now();
                    let until = pace.poll_at(now, self.due_at());
                    sessions
                        .rx
                        .recv_timeout(until.saturating_duration_since(now))
                }
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(Inbound::Message {
                    broker,
                    epoch,
                    pkid,
                    qos,
                    dup,
                    topic,
                    payload,
                }) => {
                    let m = self
                        .engine
                        .arrive(broker, epoch, pkid, qos, dup, topic, payload);
                    if !self.process(m, true, sessions.poster.as_ref()) {
                        break;
                    }
                }
                Ok(Inbound::PostAcked | Inbound::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Inbound::PostSessionLost) => {
                    end = FlowEnd::PostSessionLost;
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            for d in workers.finished() {
                self.downloaded(d, sessions.poster.as_ref());
            }
            self.dispatch(&workers, sessions.poster.as_ref());
            // while busy, publications and acks go out in batches (see `Pace::turned`)
            let now = Instant::now();
            if pace.turned(now, self.outbox.len()) {
                if !self.hand_over(&mut sessions) {
                    break;
                }
                pace.handed_over();
            }
            if pace.report_due(now) {
                self.post_report(&sessions.subs);
            }
            if let Some(secs) = pace.stats_due(now) {
                self.stats.downloading = self.engine.window.downloads();
                self.stats.retry_depth = self.retry.len();
                self.stats.servers_down = self.engine.servers.down(now);
                log::info!("{}", self.stats.line(&stats_base, secs));
                stats_base = self.stats.clone();
            }
        }
        // finish what is finished: wait a little for the last re-announcements
        let deadline = Instant::now() + Duration::from_secs(5);
        if matches!(end, FlowEnd::Stopped) {
            while self.hand_over(&mut sessions)
                && self.engine.window.head_waits_for_post()
                && Instant::now() < deadline
            {
                let _ = sessions.rx.recv_timeout(Duration::from_millis(20));
            }
        }
        let w = &self.engine.window;
        if !w.is_empty() {
            log::info!(
                "{} messages left unacknowledged ({} downloads abandoned): the broker delivers them again",
                w.len(),
                w.downloads()
            );
        }
        let stop_threads = !self.stop.swap(true, Ordering::SeqCst);
        sessions.close(workers);
        if stop_threads && matches!(end, FlowEnd::PostSessionLost) {
            self.stop.store(false, Ordering::SeqCst);
        }
        self.stats.retry_depth = self.retry.len();
        self.stats.servers_down = self.engine.servers.down(Instant::now());
        log::info!(
            "{}",
            self.stats
                .line(&Stats::default(), flow_started.elapsed().as_secs_f64())
                .replacen("stats:", "totals:", 1)
        );
        end
    }

    /// Queues the announcement in `self.out` of `rel` on the topic of `dirs` (see
    /// `topic_dirs`); `integrity_value` (the value announced upstream) splits the
    /// exchange and keys the journal.
    pub(super) fn announce(
        &mut self,
        rel: &str,
        dirs: &str,
        integrity_value: &str,
        poster: Option<&Poster>,
    ) -> Outcome {
        let Some(poster) = poster else {
            return Outcome::Done(0);
        };
        self.exchange.clear();
        topic::split_exchange(
            &mut self.exchange,
            &self.cfg.post_exchange,
            self.cfg.post_exchange_split,
            integrity_value,
        );
        self.topic.clear();
        topic::announce_topic(
            &mut self.topic,
            &self.exchange,
            self.cfg.post_prefix(),
            dirs,
        );
        let key = super::announced::Announced::key(rel, integrity_value);
        self.outbox
            .push((self.topic.clone(), self.out.clone(), key));
        self.stats.published += 1;
        log::trace!("{rel}: announced on {}", self.topic);
        let seq = poster.issued() + self.outbox.len() as u64;
        self.engine.announced(seq, key);
        Outcome::Done(seq)
    }

    /// Posts the flow's counters on the node's board (when there is one).
    fn post_report(&mut self, subs: &[Subscriber]) {
        let Some(board) = &self.cfg.board else {
            return;
        };
        let now = Instant::now();
        self.stats.downloading = self.engine.window.downloads();
        self.stats.retry_depth = self.retry.len();
        self.stats.servers_down = self.engine.servers.down(now);
        let brokers = self
            .cfg
            .brokers
            .iter()
            .zip(subs)
            .map(|(b, s)| {
                let l = &s.link;
                let connects = l.connects.load(Ordering::Relaxed);
                (b.redacted(), l.connected.load(Ordering::Relaxed), connects)
            })
            .collect();
        let mut report = super::stats::FlowReport {
            brokers,
            servers: self.engine.servers.report(now),
            last_message: self.last_message,
            lag_warn: self.cfg.lag_warn,
            at: Some(now),
            ..Default::default()
        };
        self.status_window.fill(&mut self.stats, &mut report);
        report.stats = self.stats.clone();
        let mut b = board.lock().unwrap_or_else(|p| p.into_inner());
        b.insert(self.cfg.name.clone(), report);
    }

    /// Hands batched publications to the post connection, then acknowledges upstream
    /// what is finished. False when stopping left publications behind.
    fn hand_over(&mut self, sessions: &mut Sessions) -> bool {
        if !self.flush_outbox(sessions.poster.as_mut()) {
            return false;
        }
        // what went to the retry queue is on disk before its upstream ack
        if let Err(e) = self.retry.sync() {
            log::error!("retry queue: cannot sync ({e}): acknowledgements held");
            return true;
        }
        let acked = sessions.poster.as_ref().map_or(0, Poster::acked);
        // what the broker acknowledged, and what its audit session says it took, is in
        // the journal before the upstream acks: a redelivery after a crash is then not
        // announced twice
        let settled = self.engine.post_acked(acked);
        // stored and announced: done with, whatever the journal does
        for id in settled.retry_remove {
            self.retry.remove(id);
        }
        if let Err(e) = audit::journal(
            sessions.auditor.as_ref(),
            settled.journal,
            &mut self.announced,
        ) {
            // not settled after all: the keys are journaled with the next acks
            log::error!("announcement journal: cannot sync ({e}): acknowledgements held");
            return true;
        }
        self.seen.flush();
        send_acks(&mut self.engine, &sessions.subs, acked);
        true
    }

    /// Hands the batched publications to the post connection, in order; waits while
    /// its queue is full. False when stopping left some unpublished (their messages
    /// stay unacknowledged and come again).
    fn flush_outbox(&mut self, poster: Option<&mut Poster>) -> bool {
        let Some(poster) = poster else {
            return true;
        };
        let stop = &self.stop;
        // waiting for the post broker is not hanging: the watchdog hears of it
        let beat = std::cell::Cell::new(Instant::now());
        let (board, name) = (self.cfg.board.as_ref(), &self.cfg.name);
        for (topic, payload, key) in std::mem::take(&mut self.outbox) {
            let give_up = || {
                if beat.get().elapsed() >= super::engine::pace::REPORT_INTERVAL {
                    beat.set(Instant::now());
                    super::stats::still_alive(board, name);
                }
                stop.load(Ordering::Relaxed)
            };
            match poster.publish_keyed_waiting(&topic, payload, Some(key), give_up) {
                Ok(_) => {}
                Err(PostError::Full(_)) => return false,
                Err(PostError::Other(e)) => {
                    log::error!("cannot announce on {topic}: {e}");
                    return false;
                }
            }
        }
        true
    }
}

/// A fault for the tests of the watchdog: `MESHNODE_FAULT_HANG="FLOW SECONDS"` makes
/// flow FLOW's loop stop making progress SECONDS after it starts (as a loop stuck in a
/// system call would), until the node stops.
fn fault_hang(flow: &str) -> Option<Duration> {
    let v = std::env::var("MESHNODE_FAULT_HANG").ok()?;
    let (name, secs) = v.split_once(' ')?;
    let secs: f64 = secs.trim().parse().ok()?;
    (name == flow).then(|| Duration::from_secs_f64(secs.max(0.0)))
}

/// Sends the upstream acks the window releases, in arrival order, until a connection's
/// request queue is full (the rest go on the next turn).
fn send_acks(engine: &mut Engine, subs: &[Subscriber], acked: u64) {
    let mut sent = 0;
    for a in engine.acks_due(acked) {
        let sub = &subs[a.broker];
        // an ack from an older connection could hit a new message with the same packet
        // id; the broker redelivers the old one instead
        if a.epoch == sub.epoch.load(Ordering::SeqCst) && a.qos != QoS::AtMostOnce {
            let mut ack = Publish::new("", a.qos, Bytes::new(), None);
            ack.pkid = a.pkid;
            if sub.client.try_ack(&ack).is_err() {
                break; // request queue full: again on the next turn
            }
        }
        sent += 1;
    }
    engine.acks_sent(sent);
}
