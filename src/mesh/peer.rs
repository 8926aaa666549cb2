//! A flow's configuration: where it listens and posts, how it downloads and announces,
//! where it keeps its state; with the defaults of the option table's numbers.

use super::fetch::Timeouts;
use super::mqtt::BrokerUrl;
use super::recent::RECENT_CAPACITY;
use crate::core::announce::{Encoding, Voice};
use crate::core::message::Format;
use crate::core::select::Selection;
use std::path::PathBuf;
use std::time::Duration;

/// Files downloading at once in one flow, by default: two servers' worth of connections
/// (measured: 16 was no faster from one server, and cost 1 MB more RSS).
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Downloads at once from one server, by default: a polite client (WIS2 global caches
/// may allow a client 5 connections).
pub const DEFAULT_HOST_CONNECTIONS: usize = 4;
/// Requests pipelined on one connection, by default (chosen by measurement: docs/benchmarks.md,
/// "wide area").
pub const DEFAULT_PIPELINE: usize = 16;

#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The flow's name (in logs and in the default client id).
    pub name: String,
    pub brokers: Vec<BrokerUrl>,
    pub subtopics: Vec<String>,
    pub exchange: String,
    pub topic_prefix: String,
    pub client_id: Option<String>,
    pub clean_session: bool,
    pub session_expiry: u32,
    pub dir: PathBuf,
    pub download: bool,
    pub select: Selection,
    pub lag_warn: f64,
    pub lag_drop: f64,
    pub post_broker: Option<BrokerUrl>,
    pub post_exchange: String,
    pub post_topic_prefix: Option<String>,
    pub post_base_url: String,
    pub post_exchange_split: u32,
    pub inline: bool,
    pub inline_max: usize,
    pub encoding: Encoding,
    pub format: Format,
    pub message_max: u32,
    pub file_max: u64,
    pub inflight: u16,
    /// Files downloading at once.
    pub concurrency: usize,
    /// An MQTT v5 shared subscription group: nodes of one group split the messages.
    pub share: Option<String>,
    /// Downloads at once from one server (and keep-alive connections kept to it).
    pub host_connections: usize,
    /// Requests pipelined on one connection at most (small `http://` files).
    pub pipeline: usize,
    pub keepalive: Duration,
    pub retries: u32,
    /// How long a download is tried again while its server fails, before the retry
    /// queue takes it.
    pub retry_time: Duration,
    /// How long a message stays in the retry queue (never beyond `lag_drop`).
    pub retry_ttl: Duration,
    /// Messages kept in the retry queue at most (the oldest gives way).
    pub retry_max: usize,
    /// Where the node keeps its state (the retry queue); `None`: `DIR.state` beside
    /// the data tree.
    pub state_dir: Option<PathBuf>,
    pub timeouts: Timeouts,
    pub stats_interval: Duration,
    pub recent_capacity: usize,
    /// WIS2 message ids remembered at most (at least 24 h each while they fit).
    pub wis2_ids_max: usize,
    /// Keep an audit session on the post broker, so that an announcement the broker took
    /// is never made again after a crash.
    pub exactly_once: bool,
    /// Where the flow posts its counters about once a second (the node's metrics).
    pub board: Option<super::stats::Board>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            name: "peer".into(),
            brokers: Vec::new(),
            subtopics: Vec::new(),
            exchange: "xpublic".into(),
            topic_prefix: "v03/post".into(),
            client_id: None,
            clean_session: false,
            session_expiry: 86_400,
            dir: PathBuf::from("data"),
            download: true,
            select: Selection::default(),
            lag_warn: 120.0,
            lag_drop: 7200.0,
            post_broker: None,
            post_exchange: "xpublic".into(),
            post_topic_prefix: None,
            post_base_url: String::new(),
            post_exchange_split: 0,
            inline: false,
            inline_max: 1024,
            encoding: Encoding::Guess,
            format: Format::WmoMesh,
            message_max: 500_000,
            file_max: 1 << 30,
            inflight: 100,
            concurrency: DEFAULT_CONCURRENCY,
            share: None,
            host_connections: DEFAULT_HOST_CONNECTIONS,
            pipeline: DEFAULT_PIPELINE,
            keepalive: Duration::from_secs(30),
            retries: 3,
            retry_time: Duration::from_secs(10),
            retry_ttl: Duration::from_secs(7200),
            retry_max: super::retry::DEFAULT_MAX,
            state_dir: None,
            timeouts: Timeouts::default(),
            stats_interval: Duration::from_secs(60),
            recent_capacity: RECENT_CAPACITY,
            wis2_ids_max: super::seen::DEFAULT_MAX,
            exactly_once: true,
            board: None,
        }
    }
}

impl PeerConfig {
    /// How this flow speaks in its announcements.
    /// `id`: the new message's id (WIS2; ignored by v03).
    pub fn voice<'v>(&'v self, id: &'v str) -> Voice<'v> {
        Voice {
            format: self.format,
            base_url: &self.post_base_url,
            encoding: self.encoding,
            id,
        }
    }

    /// Where the node keeps its state: `--state-dir`, else `DIR.state` beside the tree.
    pub fn state_root(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            let mut name = self.dir.file_name().unwrap_or_default().to_os_string();
            name.push(".state");
            self.dir.with_file_name(name)
        })
    }

    /// `STATE/<what>/<client id>`: one directory per flow for each kind of state.
    fn state_dir_of(&self, what: &str) -> PathBuf {
        let id = self
            .client_id
            .clone()
            .unwrap_or_else(|| self.default_client_id());
        self.state_root().join(what).join(id)
    }

    /// The flow's retry queue directory: `STATE/retry/CLIENT-ID`.
    pub fn retry_dir(&self) -> PathBuf {
        self.state_dir_of("retry")
    }

    /// Where the flow keeps the announcements its broker acknowledged.
    pub fn announced_dir(&self) -> PathBuf {
        self.state_dir_of("announced")
    }

    /// Where the flow keeps the WIS2 message ids it saw.
    pub fn seen_dir(&self) -> PathBuf {
        self.state_dir_of("wis2-ids")
    }

    pub fn post_prefix(&self) -> &str {
        self.post_topic_prefix
            .as_deref()
            .unwrap_or(self.format.default_topic_prefix())
    }

    /// A client id stable across restarts, so the persistent session is found again.
    pub fn default_client_id(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        crate::sys::hostname().hash(&mut h);
        self.name.hash(&mut h);
        self.dir.hash(&mut h);
        self.exchange.hash(&mut h);
        self.subtopics.hash(&mut h);
        for b in &self.brokers {
            b.redacted().hash(&mut h);
        }
        format!("meshnode-{:012x}", h.finish() & 0xffff_ffff_ffff)
    }
}
