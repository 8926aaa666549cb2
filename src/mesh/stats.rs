//! Counters of one flow, the stats line they make, and the board where each flow
//! posts them for the node's metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Upper bounds (seconds) of the lag histogram's buckets; one more counts the rest.
pub const LAG_BUCKETS: [f64; 9] = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Counters of one flow.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub messages: u64,
    pub downloads: u64,
    pub inline_writes: u64,
    /// Files stored from the same bytes here under another name.
    pub copies: u64,
    pub duplicates: u64,
    pub failures: u64,
    pub mismatches: u64,
    pub rejected: u64,
    pub lag_dropped: u64,
    pub removes: u64,
    pub published: u64,
    pub lag_sum: f64,
    pub lag_count: u64,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Messages put in the retry queue.
    pub queued: u64,
    /// Downloads tried again from the retry queue.
    pub retried: u64,
    /// Messages dropped from the retry queue unfinished (past --retry-ttl, or pushed
    /// out by --retry-max).
    pub expired: u64,
    /// Messages in the retry queue, and servers marked down, when the line is made.
    pub retry_depth: usize,
    pub servers_down: usize,
    /// Downloads running or waiting for a worker, when the line is made (a level, not a
    /// count).
    pub downloading: usize,
    /// Lags seen per bucket of `LAG_BUCKETS` (not cumulative), the last for the rest.
    pub lag_buckets: [u64; LAG_BUCKETS.len() + 1],
    /// Largest lag since the flow's status window last rolled.
    pub lag_peak: f64,
}

/// One download server as a flow sees it.
#[derive(Debug, Clone)]
pub struct ServerReport {
    /// scheme://host:port, without credentials.
    pub origin: String,
    pub up: bool,
    /// Unix seconds of its last download, if any.
    pub last_success: Option<u64>,
}

/// What a flow posts on the board.
#[derive(Debug, Clone, Default)]
pub struct FlowReport {
    pub stats: Stats,
    /// Over the last status window (one to two minutes): messages/s, mean and largest
    /// lag.
    pub rate: f64,
    pub lag_mean: f64,
    pub lag_max: f64,
    /// Unix seconds of the last message, if any.
    pub last_message: Option<f64>,
    /// The flow's lag-warn: beyond it, the flow is lagging.
    pub lag_warn: f64,
    /// Per upstream broker (URL without credentials): connected, connections made.
    pub brokers: Vec<(String, bool, u64)>,
    pub servers: Vec<ServerReport>,
    /// When the flow's loop posted this (the watchdog: a loop that stops posting hangs).
    pub at: Option<std::time::Instant>,
}

impl FlowReport {
    /// The flow's state as `meshnode status` and the status page say it.
    pub fn state(&self) -> &'static str {
        if self.brokers.iter().any(|(_, connected, _)| !connected) {
            "disconnected"
        } else if self.lag_mean > self.lag_warn {
            "lagging"
        } else if self.stats.retry_depth > 0 {
            "retrying"
        } else if self.rate > 0.0 || self.stats.downloading > 0 {
            "running"
        } else {
            "idle"
        }
    }
}

/// The status window of a flow: counters at its start, rolled every `WINDOW`.
#[derive(Debug, Clone)]
pub struct Window {
    start: std::time::Instant,
    base: Stats,
    /// The largest lag of the window before.
    peak_before: f64,
}

/// A status window spans one to two of these.
pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

impl Window {
    pub fn new(stats: &Stats) -> Window {
        Window {
            start: std::time::Instant::now(),
            base: stats.clone(),
            peak_before: 0.0,
        }
    }

    /// Fills the report's window figures from `stats` (rolling the window when due,
    /// which resets `stats.lag_peak`).
    pub fn fill(&mut self, stats: &mut Stats, r: &mut FlowReport) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let lags = stats.lag_count - self.base.lag_count;
        r.rate = (stats.messages - self.base.messages) as f64 / secs;
        r.lag_mean = if lags > 0 {
            (stats.lag_sum - self.base.lag_sum) / lags as f64
        } else {
            0.0
        };
        r.lag_max = stats.lag_peak.max(self.peak_before);
        if self.start.elapsed() >= WINDOW {
            self.peak_before = stats.lag_peak;
            stats.lag_peak = 0.0;
            self.base = stats.clone();
            self.start = std::time::Instant::now();
        }
    }
}

/// Where the flows of a node post their reports (about once a second), by flow name.
pub type Board = Arc<Mutex<BTreeMap<String, FlowReport>>>;

/// Flow `name`'s loop is alive though busy (waiting for its post broker): its report's
/// time is renewed, so the watchdog does not take it as hung.
pub fn still_alive(board: Option<&Board>, name: &str) {
    if let Some(b) = board {
        let mut b = b.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = b.get_mut(name) {
            r.at = Some(std::time::Instant::now());
        }
    }
}

impl Stats {
    pub fn record_lag(&mut self, lag: f64) {
        self.lag_sum += lag;
        self.lag_count += 1;
        self.lag_peak = self.lag_peak.max(lag);
        let i = LAG_BUCKETS.partition_point(|b| *b < lag);
        self.lag_buckets[i] += 1;
    }

    pub fn line(&self, since: &Stats, secs: f64) -> String {
        let n = self.messages - since.messages;
        let lag_n = self.lag_count - since.lag_count;
        let mean_lag = if lag_n > 0 {
            (self.lag_sum - since.lag_sum) / lag_n as f64
        } else {
            0.0
        };
        format!(
            "stats: {n} messages ({:.1}/s), mean lag {mean_lag:.2}s, downloads {}, inline {}, copied {}, duplicates {}, failures {} (checksum mismatches {}), rejected {}, lag-dropped {}, removes {}, published {}, downloading {}, bytes {}, retry queue {} (queued {}, retried {}, expired {}), servers down {}",
            n as f64 / secs.max(1e-3),
            self.downloads - since.downloads,
            self.inline_writes - since.inline_writes,
            self.copies - since.copies,
            self.duplicates - since.duplicates,
            self.failures - since.failures,
            self.mismatches - since.mismatches,
            self.rejected - since.rejected,
            self.lag_dropped - since.lag_dropped,
            self.removes - since.removes,
            self.published - since.published,
            self.downloading,
            self.bytes - since.bytes,
            self.retry_depth,
            self.queued - since.queued,
            self.retried - since.retried,
            self.expired - since.expired,
            self.servers_down,
        )
    }
}
