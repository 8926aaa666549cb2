//! The node's configuration file: one `option value` per line, the option names of the
//! command line, `#` comments, and `flow NAME` sections for several subscriptions.
//!
//! Options before the first `flow` line are the node's: `dir`, `listen`, `retention`,
//! `verbose`, the server's limits, and any flow option, which then applies to every
//! flow (each flow may set it again). Without a `flow` line the file describes one flow.
//! Everything is checked before anything starts; an error names file:line and why.

use crate::app::args::PeerArgs;
use crate::app::options::{self, is_flag, normalize, Scope};
use crate::channels::{self, ChannelDef};
use crate::http::server::ServeConfig;
use crate::http::tls::TlsFiles;
use crate::http::Handler;
use crate::mesh::peer::PeerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct NodeConfig {
    pub dir: PathBuf,
    /// The HTTP server (`listen none` and no TLS: no server).
    pub http: HttpOptions,
    /// Hour directories older than this are removed every hour; 0: never.
    pub retention_hours: u32,
    pub verbose: u8,
    pub flows: Vec<PeerConfig>,
    /// Metcast channels taken on the HTTP server (`channel CID` sections).
    pub channels: Vec<ChannelDef>,
    /// The taker's users (`meshnode passwd`); without it only open channels take.
    pub password_file: Option<PathBuf>,
    /// Largest product a taker accepts.
    pub product_max: u64,
    /// In OIDs: unique across the mesh.
    pub node_id: String,
    /// Where /metrics and /status are served; `None`: on the node's server.
    pub metrics_listen: Option<SocketAddr>,
    /// Where and how channel products are announced: the options before the first
    /// section (post-broker, post-exchange, format, inline...). `None`: not announced.
    pub channel_post: Option<PeerConfig>,
}

/// Default largest product: a big satellite image, not a disk's worth.
pub const DEFAULT_PRODUCT_MAX: u64 = 100 << 20;

/// This host's name as an OID part: letters, digits and '-'.
pub fn default_node_id() -> String {
    let h: String = crate::sys::hostname()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    if h.is_empty() {
        "node".into()
    } else {
        h
    }
}

/// One `option value` line, remembered with its line number.
/// The HTTP server's options, the same for `serve` and `run`.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Plain HTTP; `None`: none.
    pub listen: Option<SocketAddr>,
    /// HTTPS; `None` with a certificate: on `listen`'s address, instead of plain HTTP.
    pub listen_tls: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub allow_plain_credentials: bool,
    pub max_connections: usize,
    pub max_per_address: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        let d = ServeConfig::new(SocketAddr::from(([0, 0, 0, 0], 0)), Vec::new());
        HttpOptions {
            listen: None,
            listen_tls: None,
            tls_cert: None,
            tls_key: None,
            allow_plain_credentials: d.allow_plain_credentials,
            max_connections: d.max_connections,
            max_per_address: d.max_per_address,
            header_timeout: d.header_timeout,
            idle_timeout: d.idle_timeout,
        }
    }
}

impl HttpOptions {
    const NAMES: [&'static str; 9] = [
        "listen",
        "listen-tls",
        "tls-cert",
        "tls-key",
        "allow-plain-credentials",
        "max-connections",
        "max-per-address",
        "header-timeout",
        "idle-timeout",
    ];

    pub fn has(name: &str) -> bool {
        Self::NAMES.contains(&name)
    }

    pub fn apply(&mut self, name: &str, value: &str) -> Result<(), String> {
        let addr = |v: &str| -> Result<Option<SocketAddr>, String> {
            match v {
                "none" => Ok(None),
                v => v
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}: {v:?} is not ADDR:PORT or none")),
            }
        };
        let count = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name}: {v:?} is not a positive number"))
        };
        match name {
            "listen" => self.listen = addr(value)?,
            "listen-tls" => self.listen_tls = addr(value)?,
            "tls-cert" => self.tls_cert = Some(PathBuf::from(value)),
            "tls-key" => self.tls_key = Some(PathBuf::from(value)),
            "allow-plain-credentials" => {
                self.allow_plain_credentials = crate::app::args::boolean(name, value)?
            }
            "max-connections" => self.max_connections = count(value)?,
            "max-per-address" => self.max_per_address = count(value)?,
            "header-timeout" => {
                self.header_timeout = secs(value).map_err(|e| format!("{name}: {e}"))?
            }
            "idle-timeout" => {
                self.idle_timeout = secs(value).map_err(|e| format!("{name}: {e}"))?
            }
            _ => return Err(format!("{name}: not an option of the HTTP server")),
        }
        Ok(())
    }

    /// Where HTTPS is served, with its files; an error for half a TLS setup.
    fn tls(&self) -> Result<Option<(SocketAddr, TlsFiles)>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) if self.listen_tls.is_some() => {
                Err("listen-tls needs tls-cert and tls-key".into())
            }
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                let at = self
                    .listen_tls
                    .or(self.listen)
                    .ok_or("tls-cert: give listen-tls ADDR:PORT")?;
                let files = TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                Ok(Some((at, files)))
            }
            (Some(_), None) => Err("tls-cert needs tls-key".into()),
            (None, Some(_)) => Err("tls-key needs tls-cert".into()),
        }
    }

    /// Whether a server is asked for.
    pub fn serves(&self) -> bool {
        self.listen.is_some() || self.listen_tls.is_some() || self.tls_cert.is_some()
    }

    /// The server's configuration, checked.
    pub fn server(&self, handlers: Vec<Arc<dyn Handler>>) -> Result<ServeConfig, String> {
        let tls = self.tls()?;
        // TLS without listen-tls takes the listen address: plain HTTP is then off
        let plain = match (&tls, self.listen_tls) {
            (Some(_), None) => None,
            _ => self.listen,
        };
        let mut s = ServeConfig::new(SocketAddr::from(([0, 0, 0, 0], 0)), handlers);
        s.listen = plain;
        s.tls = tls;
        s.allow_plain_credentials = self.allow_plain_credentials;
        s.max_connections = self.max_connections;
        s.max_per_address = self.max_per_address;
        s.header_timeout = self.header_timeout;
        s.idle_timeout = self.idle_timeout;
        Ok(s)
    }

    /// The base URL peers download from: plain HTTP when there is one, else HTTPS.
    pub fn base_url(&self) -> Option<String> {
        let host = crate::sys::hostname();
        let plain = match (&self.tls_cert, self.listen_tls) {
            (Some(_), None) => None,
            _ => self.listen,
        };
        match (plain, self.listen_tls.or(self.listen)) {
            (Some(a), _) => Some(format!("http://{host}:{}", a.port())),
            (None, Some(a)) if self.tls_cert.is_some() => {
                Some(format!("https://{host}:{}", a.port()))
            }
            _ => None,
        }
    }
}

struct Line {
    no: usize,
    name: String,
    value: String,
}

fn secs(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{v:?} is not a number of seconds"))
}

/// Parses the text of a configuration file called `file` (for messages).
pub fn parse(text: &str, file: &str) -> Result<NodeConfig, String> {
    let mut node = NodeConfig {
        dir: PathBuf::from("data"),
        http: HttpOptions::default(),
        retention_hours: 0,
        verbose: 1,
        flows: Vec::new(),
        channels: Vec::new(),
        password_file: None,
        product_max: DEFAULT_PRODUCT_MAX,
        node_id: default_node_id(),
        metrics_listen: None,
        channel_post: None,
    };
    // the section lines are in: none yet (node), a flow's, or a channel's
    let mut in_channel = false;
    let mut shared: Vec<Line> = Vec::new();
    let mut flows: Vec<(usize, String, Vec<Line>)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let at = |e: String| format!("{file}:{no}: {e}");
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once(char::is_whitespace) {
            Some((n, v)) => (normalize(n), v.trim().to_string()),
            None => (normalize(line), String::new()),
        };
        let value = if value.is_empty() && is_flag(&name, Scope::FLOW) {
            "yes".to_string()
        } else {
            value
        };
        if value.is_empty() {
            return Err(at(format!("option {name} needs a value")));
        }
        if name == "flow" {
            if !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(at(format!(
                    "flow name {value:?}: use letters, digits, - and _"
                )));
            }
            if flows.iter().any(|(_, n, _)| *n == value) {
                return Err(at(format!("flow {value} is defined twice")));
            }
            flows.push((no, value, Vec::new()));
            in_channel = false;
            continue;
        }
        if name == "channel" {
            if node.channels.iter().any(|c| c.id == value) {
                return Err(at(format!("channel {value} is defined twice")));
            }
            node.channels.push(ChannelDef::new(&value).map_err(at)?);
            in_channel = true;
            continue;
        }
        if in_channel {
            let c = node.channels.last_mut().expect("in a channel section");
            c.apply(&name, &value)
                .map_err(|e| at(format!("channel {}: {e}", c.id)))?;
            continue;
        }
        // the node's alone: not a flow's too (dir and verbose are both)
        let node_option = options::find(&name, Scope::NODE).is_some()
            && options::find(&name, Scope::FLOW).is_none();
        if !node_option && options::find(&name, Scope::FLOW).is_none() {
            return Err(at(options::unknown(&name, Scope::NODE.or(Scope::FLOW))));
        }
        if node_option && (!flows.is_empty() || !node.channels.is_empty()) {
            return Err(at(format!(
                "{name} is a node option: put it before the first flow or channel"
            )));
        }
        match name.as_str() {
            "retention" => {
                node.retention_hours = value
                    .parse()
                    .map_err(|_| at(format!("retention: {value:?} is not a number of hours")))?
            }
            n if HttpOptions::has(n) => node.http.apply(n, &value).map_err(at)?,
            "password-file" => node.password_file = Some(PathBuf::from(&value)),
            "product-max" => {
                node.product_max =
                    channels::parse_size(&value).map_err(|e| at(format!("product-max: {e}")))?
            }
            "metrics-listen" => {
                node.metrics_listen = match value.as_str() {
                    "none" => None,
                    v => Some(v.parse().map_err(|_| {
                        at(format!("metrics-listen: {v:?} is not ADDR:PORT or none"))
                    })?),
                }
            }
            "node-id" => {
                if !crate::store::sidecar::valid_id(&value) || value.contains('.') {
                    return Err(at(format!(
                        "node-id {value:?}: use letters, digits, '-' and '_'"
                    )));
                }
                node.node_id = value
            }
            _ => {
                if name == "dir" && flows.is_empty() {
                    node.dir = PathBuf::from(&value);
                }
                if name == "verbose" && flows.is_empty() {
                    node.verbose = value
                        .parse()
                        .map_err(|_| at(format!("verbose: {value:?} is not a number")))?;
                }
                // check it now, against a scratch flow, so the error has its line
                let mut probe = PeerArgs::new();
                probe.apply(&name, &value).map_err(at)?;
                let l = Line { no, name, value };
                match flows.last_mut() {
                    Some((_, _, lines)) => lines.push(l),
                    None => shared.push(l),
                }
            }
        }
    }
    for c in &node.channels {
        c.finish().map_err(|e| format!("{file}: {e}"))?;
    }
    // the options before the first section also say how channel products are announced
    let mut shared_args = PeerArgs::new();
    shared_args.cfg.name = "channels".into();
    shared_args.cfg.dir = node.dir.clone();
    if let Some(url) = node.http.base_url() {
        shared_args.cfg.post_base_url = url;
    }
    for l in &shared {
        shared_args
            .apply(&l.name, &l.value)
            .map_err(|e| format!("{file}:{}: {e}", l.no))?;
    }
    if shared_args.cfg.post_broker.is_some() && !node.channels.is_empty() {
        node.channel_post = Some(shared_args.cfg.clone());
    }
    // no flow and no broker: a node that only serves and takes
    if flows.is_empty() && !shared.iter().any(|l| l.name == "broker") {
        return Ok(node);
    }
    if flows.is_empty() {
        flows.push((0, "main".into(), Vec::new()));
    }
    for (no, name, lines) in flows {
        let mut a = PeerArgs::new();
        a.cfg.name = name.clone();
        a.cfg.dir = node.dir.clone();
        if let Some(url) = node.http.base_url() {
            // peers download from this node's own server unless told otherwise
            a.cfg.post_base_url = url;
            a.post_base_url_given = true;
        }
        for l in shared.iter().chain(&lines) {
            a.apply(&l.name, &l.value)
                .map_err(|e| format!("{file}:{}: {e}", l.no))?;
        }
        let (cfg, _) = a.finish().map_err(|e| match no {
            0 => format!("{file}: {e}"),
            n => format!("{file}:{n}: flow {name}: {e}"),
        })?;
        node.flows.push(cfg);
    }
    Ok(node)
}

#[cfg(test)]
mod tests;
