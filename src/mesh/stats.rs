//! Counters of one flow, and the stats line they make.

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
}

impl Stats {
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
