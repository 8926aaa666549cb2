//! `GET /metrics`: the node in the Prometheus / OpenMetrics text format, for a
//! monitoring system that looks every 15 s. Per flow (the counters each flow posts on
//! the board about once a second), per upstream broker and download server (names after
//! the WIS2 global cache's), per channel, and the process. No credentials in labels:
//! brokers and servers are shown without their user and password.

use crate::channels::taker::Taker;
use crate::http::{Handler, Reply, Request};
use crate::mesh::stats::{Board, LAG_BUCKETS};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Metrics {
    pub board: Board,
    pub taker: Option<Arc<Taker>>,
    /// The data tree: its free space.
    pub dir: PathBuf,
}

/// One metric family being written: its HELP and TYPE once, then its samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value as the text format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Handler for Metrics {
    fn name(&self) -> String {
        "metrics".into()
    }
    fn handles(&self, path: &str) -> bool {
        path.split('?').next() == Some("/metrics")
    }
    fn answer(&self, req: &Request, _body: &mut dyn Read, _peer: &str) -> io::Result<Reply> {
        if !req.method_ok {
            return Ok(Reply::new(405).header("allow", "GET, HEAD"));
        }
        Ok(Reply::new(200).bytes("text/plain; version=0.0.4; charset=utf-8", self.render()))
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut o = Out(String::with_capacity(8192));
        self.flows(&mut o);
        self.channels(&mut o);
        self.process(&mut o);
        o.0
    }

    fn flows(&self, o: &mut Out) {
        let board = self.board.lock().unwrap_or_else(|p| p.into_inner()).clone();
        type Get = fn(&crate::mesh::stats::Stats) -> f64;
        // one sample per flow: (kind, name, help, value)
        let per_flow: [(&str, &str, &str, Get); 16] = [
            (
                "counter",
                "meshnode_messages_total",
                "announcements received",
                |s| s.messages as f64,
            ),
            (
                "counter",
                "meshnode_downloaded_total",
                "files downloaded",
                |s| s.downloads as f64,
            ),
            (
                "counter",
                "meshnode_inline_total",
                "files written from inline content",
                |s| s.inline_writes as f64,
            ),
            (
                "counter",
                "meshnode_copied_total",
                "files stored from the same bytes here under another name",
                |s| s.copies as f64,
            ),
            (
                "counter",
                "meshnode_downloaded_bytes_total",
                "bytes downloaded",
                |s| s.bytes as f64,
            ),
            (
                "counter",
                "meshnode_duplicates_total",
                "announcements of files already held",
                |s| s.duplicates as f64,
            ),
            (
                "counter",
                "meshnode_failures_total",
                "files not obtained (after their attempts)",
                |s| s.failures as f64,
            ),
            (
                "counter",
                "meshnode_checksum_mismatches_total",
                "downloads whose bytes did not match their integrity",
                |s| s.mismatches as f64,
            ),
            (
                "counter",
                "meshnode_removes_total",
                "files removed as announced",
                |s| s.removes as f64,
            ),
            (
                "counter",
                "meshnode_published_total",
                "announcements published on the local broker",
                |s| s.published as f64,
            ),
            (
                "counter",
                "meshnode_retry_queued_total",
                "messages put in the retry queue",
                |s| s.queued as f64,
            ),
            (
                "counter",
                "meshnode_retried_total",
                "downloads tried again from the retry queue",
                |s| s.retried as f64,
            ),
            (
                "counter",
                "meshnode_retry_expired_total",
                "messages dropped from the retry queue unfinished",
                |s| s.expired as f64,
            ),
            (
                "gauge",
                "meshnode_retry_queue_depth",
                "messages in the retry queue",
                |s| s.retry_depth as f64,
            ),
            (
                "gauge",
                "meshnode_in_progress",
                "downloads running or waiting for a worker",
                |s| s.downloading as f64,
            ),
            (
                "gauge",
                "meshnode_servers_down",
                "download servers marked down",
                |s| s.servers_down as f64,
            ),
        ];
        for (kind, name, help, get) in per_flow {
            o.family(name, kind, help);
            for (flow, r) in &board {
                o.sample(name, &[("flow", flow)], get(&r.stats));
            }
        }
        o.family(
            "meshnode_flow_cpu_seconds_total",
            "counter",
            "CPU seconds (user and system) of the flow's threads: its own, its connections, its downloaders",
        );
        let cpu = crate::sys::flows::cpu_seconds();
        for flow in board.keys() {
            let spent = cpu.get(flow).copied().unwrap_or(0.0);
            o.sample("meshnode_flow_cpu_seconds_total", &[("flow", flow)], spent);
        }
        o.family(
            "meshnode_refused_total",
            "counter",
            "messages refused, by reason (not selected; lag over lag-drop)",
        );
        for (flow, r) in &board {
            let s = &r.stats;
            o.sample(
                "meshnode_refused_total",
                &[("flow", flow), ("reason", "rejected")],
                s.rejected as f64,
            );
            o.sample(
                "meshnode_refused_total",
                &[("flow", flow), ("reason", "lag")],
                s.lag_dropped as f64,
            );
        }
        let h = "meshnode_lag_seconds";
        o.family(h, "histogram", "age of announcements when received");
        for (flow, r) in &board {
            let s = &r.stats;
            let mut cumulative = 0;
            for (i, le) in LAG_BUCKETS.iter().enumerate() {
                cumulative += s.lag_buckets[i];
                let le = le.to_string();
                o.sample(
                    &format!("{h}_bucket"),
                    &[("flow", flow), ("le", &le)],
                    cumulative as f64,
                );
            }
            o.sample(
                &format!("{h}_bucket"),
                &[("flow", flow), ("le", "+Inf")],
                s.lag_count as f64,
            );
            o.sample(&format!("{h}_sum"), &[("flow", flow)], s.lag_sum);
            o.sample(&format!("{h}_count"), &[("flow", flow)], s.lag_count as f64);
        }
        o.family(
            "meshnode_broker_connected",
            "gauge",
            "1 while connected to the upstream broker",
        );
        for (flow, r) in &board {
            for (b, up, _) in &r.brokers {
                o.sample(
                    "meshnode_broker_connected",
                    &[("flow", flow), ("broker", b)],
                    f64::from(u8::from(*up)),
                );
            }
        }
        o.family(
            "meshnode_broker_connections_total",
            "counter",
            "connections made to the upstream broker (the first included)",
        );
        for (flow, r) in &board {
            for (b, _, n) in &r.brokers {
                o.sample(
                    "meshnode_broker_connections_total",
                    &[("flow", flow), ("broker", b)],
                    *n as f64,
                );
            }
        }
        o.family(
            "meshnode_dataserver_status_flag",
            "gauge",
            "1 while a download server is up, 0 while marked down",
        );
        for (flow, r) in &board {
            for sv in &r.servers {
                o.sample(
                    "meshnode_dataserver_status_flag",
                    &[("flow", flow), ("server", &sv.origin)],
                    f64::from(u8::from(sv.up)),
                );
            }
        }
        o.family(
            "meshnode_dataserver_last_download_timestamp_seconds",
            "gauge",
            "when a file last came from a download server",
        );
        for (flow, r) in &board {
            for sv in &r.servers {
                if let Some(t) = sv.last_success {
                    o.sample(
                        "meshnode_dataserver_last_download_timestamp_seconds",
                        &[("flow", flow), ("server", &sv.origin)],
                        t as f64,
                    );
                }
            }
        }
    }

    fn channels(&self, o: &mut Out) {
        let Some(t) = &self.taker else { return };
        o.family(
            "meshnode_channel_products",
            "gauge",
            "products held by a channel",
        );
        for d in t.channels.defs.iter().filter(|d| !d.is_feed()) {
            if let Ok(list) = t.channels.list(d) {
                o.sample(
                    "meshnode_channel_products",
                    &[("channel", &d.id)],
                    list.len() as f64,
                );
            }
        }
        let tally = t.tally();
        let name = |c: &str| {
            if c.is_empty() {
                "(unknown)".to_string()
            } else {
                c.to_string()
            }
        };
        o.family(
            "meshnode_channel_publications_total",
            "counter",
            "products taken into a channel",
        );
        for (c, taken, _) in &tally {
            o.sample(
                "meshnode_channel_publications_total",
                &[("channel", &name(c))],
                *taken as f64,
            );
        }
        o.family(
            "meshnode_channel_refusals_total",
            "counter",
            "uploads refused, by channel ((unknown): no such channel)",
        );
        for (c, _, refused) in &tally {
            o.sample(
                "meshnode_channel_refusals_total",
                &[("channel", &name(c))],
                *refused as f64,
            );
        }
    }

    fn process(&self, o: &mut Out) {
        o.family(
            "meshnode_process_resident_memory_bytes",
            "gauge",
            "resident memory of the node",
        );
        o.sample(
            "meshnode_process_resident_memory_bytes",
            &[],
            rss_bytes() as f64,
        );
        o.family(
            "meshnode_process_cpu_seconds_total",
            "counter",
            "user and system CPU time of the node",
        );
        o.sample("meshnode_process_cpu_seconds_total", &[], cpu_seconds());
        o.family(
            "meshnode_http_connections",
            "gauge",
            "HTTP connections open",
        );
        o.sample(
            "meshnode_http_connections",
            &[],
            crate::http::server::open_connections() as f64,
        );
        if let Some(free) = free_bytes(&self.dir) {
            o.family(
                "meshnode_tree_free_bytes",
                "gauge",
                "free space of the data tree's file system (for its user)",
            );
            o.sample("meshnode_tree_free_bytes", &[], free as f64);
        }
    }
}

/// Resident memory of this process.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    kb * 1024
}

/// User and system CPU seconds of this process.
pub fn cpu_seconds() -> f64 {
    crate::sys::cpu_seconds_of("/proc/self/stat")
}

/// Free space (for this user) of the file system holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(dir)
        .ok()
        .map(|v| v.f_bavail * v.f_frsize)
}
