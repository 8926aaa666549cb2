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
    /// Per upstream broker (URL without credentials): connected, connections made.
    pub brokers: Vec<(String, bool, u64)>,
    pub servers: Vec<ServerReport>,
}

/// Where the flows of a node post their reports (about once a second), by flow name.
pub type Board = Arc<Mutex<BTreeMap<String, FlowReport>>>;

impl Stats {
    pub fn record_lag(&mut self, lag: f64) {
        self.lag_sum += lag;
        self.lag_count += 1;
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
            "stats: {n} messages ({:.1}/s), mean lag {mean_lag:.2}s, downloads {}, inline {}, duplicates {}, failures {} (checksum mismatches {}), rejected {}, lag-dropped {}, removes {}, published {}, downloading {}, bytes {}, retry queue {} (queued {}, retried {}, expired {}), servers down {}",
            n as f64 / secs.max(1e-3),
            self.downloads - since.downloads,
            self.inline_writes - since.inline_writes,
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
