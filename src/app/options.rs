//! The one table of options (in the manner of ripgrep's `flags/defs.rs`): each option's
//! name, value, default, one line of help and the places that accept it. The
//! command-line parser, every command's `--help`, the config-file parser and the check
//! that `deploy/meshnode.conf` documents every option are derived from it.
//!
//! Names are kebab-case; the demo's spellings (`--post_baseUrl`, `--clean_session`...)
//! are accepted too: names are compared lowercased with `_` read as `-`.

/// Where an option is accepted: commands, and sections of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope(u16);

impl Scope {
    pub const PEER: Scope = Scope(1);
    pub const POST: Scope = Scope(2);
    pub const SERVE: Scope = Scope(4);
    pub const RUN: Scope = Scope(8);
    pub const DEMO: Scope = Scope(16);
    /// Config file, before the first section: the node's own options.
    pub const NODE: Scope = Scope(32);
    /// Config file: a flow's options (before the first section they apply to every flow).
    pub const FLOW: Scope = Scope(64);
    /// Config file: a `channel` section.
    pub const CHANNEL: Scope = Scope(128);

    pub const fn or(self, o: Scope) -> Scope {
        Scope(self.0 | o.0)
    }
    pub fn has(self, o: Scope) -> bool {
        self.0 & o.0 != 0
    }
}

/// Options of `peer` that the config file takes for a flow too.
const PF: Scope = Scope::PEER.or(Scope::FLOW);
/// ... and `post` as well.
const PPF: Scope = PF.or(Scope::POST);

pub struct Opt {
    /// Canonical name (lowercase, `-`).
    pub name: &'static str,
    /// Other accepted spellings (already canonical).
    pub aliases: &'static [&'static str],
    /// What the value looks like; empty: a flag (no value on the command line, `yes`
    /// implied; `--flag=no` allowed).
    pub value: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    pub scope: Scope,
}

const fn opt(
    name: &'static str,
    value: &'static str,
    default: &'static str,
    scope: Scope,
    help: &'static str,
) -> Opt {
    Opt {
        name,
        aliases: &[],
        value,
        default,
        help,
        scope,
    }
}

const fn alias(mut o: Opt, aliases: &'static [&'static str]) -> Opt {
    o.aliases = aliases;
    o
}

/// Options whose default the table describes rather than gives: it depends on other
/// options (the format, the listen port, the data tree), or is no value at all.
pub const DESCRIBED: &[&str] = &[
    "post-topic-prefix",
    "post-baseurl",
    "share",
    "state-dir",
    "timeout",
    "tls-cert",
    "tls-key",
    "password-file",
    "node-id",
];

impl Opt {
    /// The default as a value the option's parser takes (`16`, `yes`, `data`, the `0`
    /// of "0 (off)": one word, perhaps with a remark in brackets); None for a default
    /// in words ("required", "the listen address"), one that depends on other options
    /// (`DESCRIBED`), or a repeatable option's (a value given adds to it rather than
    /// replacing it).
    pub fn default_value(&self) -> Option<&'static str> {
        if DESCRIBED.contains(&self.name) || self.default.contains("repeatable") {
            return None;
        }
        let (value, remark) = self.default.split_once(' ').unwrap_or((self.default, ""));
        let bracketed = remark.is_empty() || (remark.starts_with('(') && remark.ends_with(')'));
        (!value.is_empty() && value != "required" && bracketed).then_some(value)
    }
}

const NODE: Scope = Scope::NODE;
const SERVE_NODE: Scope = Scope::SERVE.or(Scope::NODE);
const CH: Scope = Scope::CHANNEL;

/// Every option of every command and config section.
#[rustfmt::skip]
pub static OPTIONS: &[Opt] = &[
    // peer: where to listen
    opt("broker", "URL", "required, repeatable", PF,
        "mqtt:// or mqtts://user:password@host[:port] to subscribe to"),
    opt("subtopic", "FILTER", "#, repeatable", PF,
        "topic filter below <exchange>/<topic-prefix>/"),
    opt("exchange", "NAME", "xpublic", PF,
        "root of the subscribed topics"),
    opt("topic-prefix", "PREFIX", "v03/post", PF,
        "sr3 peers use v03"),
    alias(opt("clientid", "ID", "derived from host, dir and brokers", PF.or(Scope::POST),
        "MQTT client id, stable across restarts so the persistent session is found again"), &["client-id"]),
    opt("clean-session", "", "no", PF,
        "start with a fresh session (after changing subtopics)"),
    opt("session-expiry", "SECONDS", "86400", PF,
        "how long the broker keeps the session while the node is away"),
    // the data tree
    opt("dir", "DIR", "data", PF.or(SERVE_NODE),
        "the data tree"),
    opt("download", "yes|no", "yes", PF,
        "no: forward announcements unchanged (a dispatcher)"),
    opt("exactly-once", "yes|no", "yes", PF,
        "an audit session on the post broker: an announcement the broker took is not made again after a crash (no: at most one batch may be)"),
    opt("select", "'accept RE'|'reject RE'", "none, repeatable", PF,
        "on the relPath; first match wins; unmatched accepted"),
    opt("accept", "RE", "none, repeatable", PF,
        "same as --select 'accept RE'"),
    opt("reject", "RE", "none, repeatable", PF,
        "same as --select 'reject RE'"),
    opt("lag-warn", "SECONDS", "120", PF,
        "lag from pubTime over which a warning is logged"),
    opt("lag-drop", "SECONDS", "7200", PF,
        "lag from pubTime over which a message is acknowledged without processing"),
    // announcing
    opt("post-broker", "URL|none", "required", PPF,
        "this node's broker"),
    opt("post-exchange", "NAME", "xpublic", PPF,
        "root of the announcement topics"),
    opt("post-topic-prefix", "PREFIX", "v03/post (sr3: v03, wis2: a/wis2)", PPF,
        "below the post exchange"),
    alias(opt("post-baseurl", "URL", "http://<hostname>:8000/data (run: this node's listen port)", PPF,
        "where peers download from this node (post: required)"), &["post-base-url"]),
    alias(opt("post-basedir", "DIR", "data", Scope::POST,
        "relPath is the file's path below this directory"), &["post-base-dir"]),
    opt("post-exchange-split", "N", "0 (off)", PF,
        "publish to <post-exchange>NN, NN = first char of the integrity value mod N"),
    opt("inline", "", "no", PPF,
        "include small files in the announcement"),
    opt("inline-max", "BYTES", "1024", PPF,
        "largest file included inline"),
    opt("encoding", "text|binary|guess", "guess", PPF,
        "inline as utf-8 when the bytes are UTF-8, else base64 (binary: always base64)"),
    opt("format", "wmo_mesh|sr3|wis2", "wmo_mesh", PPF,
        "dialect written: v03 with integrity or identity, or WIS2 notification messages"),
    opt("header", "NAME=VALUE", "none, repeatable", Scope::POST,
        "an extra message field"),
    opt("integrity", "md5|sha512|sha256|...", "md5 (sha512 with --format sr3 or wis2)", Scope::POST,
        "checksum announced"),
    // limits
    opt("message-max", "BYTES", "500000", PF,
        "larger messages are refused"),
    opt("file-max", "BYTES", "1073741824", PF,
        "larger downloads are refused"),
    opt("inflight", "N", "100", PF,
        "unacknowledged messages per upstream session (MQTT v5 receive maximum)"),
    opt("concurrency", "N", "8", PF,
        "downloads at once in a flow (connections, each carrying up to --pipeline files)"),
    opt("share", "GROUP", "none", PF,
        "subscribe as MQTT v5 shared subscription GROUP: nodes of one group split the messages"),
    opt("host-connections", "N", "4", PF,
        "connections at once to one server (and keep-alive connections kept to it)"),
    opt("pipeline", "N", "16", PF,
        "small http:// and https:// files asked for at once on one connection (HTTP/1.1 pipelining); 1: off"),
    opt("keepalive", "SECONDS", "30", PF,
        "MQTT keepalive (at least 5)"),
    opt("retries", "N", "3", PF,
        "attempts when a download does not match the announced checksum"),
    opt("retry-time", "SECONDS", "10", PF,
        "how long a download is tried again while its server fails, before the retry queue"),
    opt("retry-ttl", "SECONDS", "7200", PF,
        "how long a message stays in the retry queue (never beyond --lag-drop)"),
    opt("retry-max", "N", "10000", PF,
        "messages kept in the retry queue at most; the oldest gives way"),
    opt("state-dir", "DIR", "DIR.state", PF,
        "where the node keeps its state (the retry queues), beside the data tree by default"),
    opt("timeout", "SECONDS", "10 / 30 / 30", PF,
        "connect / response / per-read timeout of downloads (one value sets all three)"),
    opt("min-rate", "BYTES", "1024", PF,
        "a download slower than this many bytes/s over --min-rate-time is abandoned and retried; 0: off"),
    opt("min-rate-time", "SECONDS", "30", PF,
        "the span over which --min-rate is measured"),
    opt("stats-interval", "SECONDS", "60", PF,
        "period of the stats line"),
    opt("verbose", "N", "1", PPF.or(SERVE_NODE),
        "0 warnings, 1 + info and stats, 2 + each file, 3 + each decision"),
    // the HTTP server
    opt("listen", "ADDR:PORT", "0.0.0.0:8000 (serve), none (run)", SERVE_NODE,
        "where the HTTP server listens (run: none, no server)"),
    opt("listen-tls", "ADDR:PORT", "the listen address", SERVE_NODE,
        "where HTTPS is served when tls-cert is given (plain HTTP stays on listen)"),
    opt("tls-cert", "FILE", "none (no TLS)", SERVE_NODE,
        "PEM certificate chain for HTTPS; read again on SIGHUP"),
    opt("tls-key", "FILE", "none", SERVE_NODE,
        "PEM private key of tls-cert"),
    opt("allow-plain-credentials", "", "no", SERVE_NODE,
        "with TLS on, still take credentials sent over plain HTTP"),
    opt("max-connections", "N", "4096", SERVE_NODE,
        "connections at once; one more gets a 503"),
    opt("max-per-address", "N", "64", SERVE_NODE,
        "connections at once from one client address; one more gets a 503"),
    opt("header-timeout", "SECONDS", "10", SERVE_NODE,
        "a request head must arrive within this time of its first byte"),
    opt("idle-timeout", "SECONDS", "30", SERVE_NODE,
        "a keep-alive connection waiting for a next request is closed after this"),
    // the node (run)
    opt("config", "FILE", "required", Scope::RUN,
        "the node's configuration file (see deploy/meshnode.conf)"),
    opt("retention", "HOURS", "0 (never)", NODE,
        "hour directories older than this are removed every hour"),
    opt("password-file", "FILE", "none (only open channels take)", NODE,
        "the taker's users (meshnode passwd)"),
    opt("product-max", "SIZE", "100M", NODE,
        "largest product a taker accepts"),
    opt("node-id", "ID", "the host name", NODE,
        "in OIDs: unique across the mesh"),
    opt("metrics-listen", "ADDR:PORT", "none (on the node's server)", NODE,
        "serve /metrics, /status and /status.json here instead of on listen (e.g. loopback only)"),
    // a channel section
    opt("title", "TEXT", "the channel id", CH,
        "the channel's description"),
    opt("capacity", "N", "10", CH,
        "products kept; the oldest are evicted (1: latest only)"),
    opt("access", "open|restricted", "restricted", CH,
        "open: anyone may publish and read through /taker"),
    opt("writers", "USERS", "all users", CH,
        "who may publish (names, space separated)"),
    opt("readers", "USERS", "all users", CH,
        "who may read"),
    opt("deleters", "USERS", "the writers", CH,
        "who may DELETE a product"),
    opt("kind", "stored|feed", "stored", CH,
        "feed: products are deposited into feed-dir, not kept in the tree"),
    opt("feed-dir", "DIR", "none", CH,
        "where a feed channel deposits its products"),
    opt("incoming", "DIR", "beside feed-dir: .<name>.incoming", CH,
        "where a feed's uploads are written before they are linked into feed-dir"),
    opt("min-free", "SIZE", "0", CH,
        "free space a feed keeps on its disk (507 below)"),
    // the demo
    opt("keep", "", "no", Scope::DEMO,
        "keep the demo's temporary directory"),
];

/// The canonical spelling of an option name.
pub fn normalize(name: &str) -> String {
    name.trim_start_matches('-')
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// The option `name` (canonical) accepted in `scope`, by name or alias.
pub fn find(name: &str, scope: Scope) -> Option<&'static Opt> {
    OPTIONS
        .iter()
        .find(|o| o.scope.has(scope) && (o.name == name || o.aliases.contains(&name)))
}

/// Whether `name` takes no value.
pub fn is_flag(name: &str, scope: Scope) -> bool {
    find(name, scope).is_some_and(|o| o.value.is_empty())
}

/// "unknown option --frobnicate" and, when one is close, "(did you mean --X?)".
pub fn unknown(name: &str, scope: Scope) -> String {
    let near = OPTIONS
        .iter()
        .filter(|o| o.scope.has(scope))
        .map(|o| (distance(name, o.name), o.name))
        .min();
    match near {
        Some((d, n)) if d <= 2.max(name.len() / 3) => {
            format!("unknown option --{name} (did you mean --{n}?)")
        }
        _ => format!("unknown option --{name}"),
    }
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Walks command-line arguments of a command accepting `scope`: `f(name, value)` for
/// each option (canonical name), `positional` for the rest. Unknown options are refused
/// here, with the nearest known name.
pub fn parse_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    scope: Scope,
    mut f: impl FnMut(&str, &str) -> Result<(), String>,
    mut positional: impl FnMut(std::ffi::OsString) -> Result<(), String>,
) -> Result<(), String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let text = |v: std::ffi::OsString| v.string().map_err(|e| e.to_string());
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long(name) => {
                let name = normalize(name);
                let Some(o) = find(&name, scope) else {
                    return Err(unknown(&name, scope));
                };
                let value = if o.value.is_empty() {
                    match p.optional_value() {
                        Some(v) => text(v)?,
                        None => "yes".into(),
                    }
                } else {
                    text(p.value().map_err(|e| format!("--{name}: {e}"))?)?
                };
                f(o.name, &value)?;
            }
            Short('v') if find("verbose", scope).is_some() => {
                f("verbose", &text(p.value().map_err(|e| e.to_string())?)?)?
            }
            Value(v) => positional(v)?,
            Short(c) => return Err(format!("unknown option -{c}")),
        }
    }
    Ok(())
}

/// A command: its usage line, what it does, and the scope of its options.
pub struct Command {
    pub name: &'static str,
    pub usage: &'static str,
    pub about: &'static str,
    pub scope: Option<Scope>,
}

pub static COMMANDS: &[Command] = &[
    Command {
        name: "peer",
        usage: "meshnode peer --broker URL [--broker URL...] --post-broker URL|none [options]",
        about: "subscribe to announcements of peers, download what is missing, verify, store \
                under --dir, re-announce on this node's broker",
        scope: Some(Scope::PEER),
    },
    Command {
        name: "post",
        usage: "meshnode post --post-broker URL --post-baseUrl URL [options] FILE...",
        about: "announce local files (under --post-baseDir) on a broker",
        scope: Some(Scope::POST),
    },
    Command {
        name: "run",
        usage: "meshnode run --config FILE",
        about: "a whole node in one process: flows, HTTP server, channels and retention from \
                a config file (every option of it: deploy/meshnode.conf)",
        scope: Some(Scope::RUN),
    },
    Command {
        name: "status",
        usage: "meshnode status [--config FILE]   (default /etc/meshnode/meshnode.conf)",
        about: "ask the node running with this config how it is: one line per flow (state, \
                msgs/s, lag, retry queue, last message); exit 1 when a flow is disconnected \
                or lagging beyond its lag-warn",
        scope: Some(Scope::RUN),
    },
    Command {
        name: "serve",
        usage: "meshnode serve --dir DIR --listen ADDR:PORT [options]",
        about: "the data tree over HTTP/1.1 for peers (GET, HEAD, Range, If-Modified-Since)",
        scope: Some(Scope::SERVE),
    },
    Command {
        name: "demo",
        usage: "meshnode demo [--keep]",
        about: "three brokers and three nodes in a ring with a chord on loopback; bulletins \
                posted on node 1 spread to all; exit 0 when every node holds them all",
        scope: Some(Scope::DEMO),
    },
    Command {
        name: "clean",
        usage: "meshnode clean HOURS DIR",
        about: "remove hour directories (YYYYMMDDHH, YYYYMMDDTHH) directly under DIR older \
                than HOURS (UTC), printing each one removed",
        scope: None,
    },
    Command {
        name: "passwd",
        usage: "meshnode passwd FILE USER   (password read from standard input)",
        about: "add or replace USER in a taker password file (PBKDF2-SHA256, no plaintext)",
        scope: None,
    },
    Command {
        name: "shove",
        usage: "meshnode shove CONFIG 'CONTENT-TYPE; cid=CHANNEL[; attr=value...]' FILE...",
        about: "publish files into a channel of a node's taker (the w-shove client); CONFIG \
                has SERVER_URL, PROXY_ENABLE, PROXY_NAME, PROXY_PORT, AUTH_ENABLE, \
                AUTH_CREDENTIAL",
        scope: None,
    },
];

pub fn command(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// `meshnode --help`: every command, one paragraph each.
pub fn usage() -> String {
    let mut s = String::from("usage:");
    for (i, c) in COMMANDS.iter().enumerate() {
        s.push_str(if i == 0 { " " } else { "       " });
        s.push_str(c.usage);
        s.push('\n');
    }
    s.push_str("       meshnode help [COMMAND] | meshnode COMMAND --help | meshnode --version\n\n");
    for c in COMMANDS {
        s.push_str(&format!("{}: {}\n", c.name, c.about));
    }
    s
}

/// `meshnode COMMAND --help`: usage, what it does, every option with its default.
pub fn help(c: &Command) -> String {
    let mut s = format!("usage: {}\n\n{}.\n", c.usage, c.about);
    let Some(scope) = c.scope else { return s };
    s.push_str("\noptions (name, value, default: meaning):\n");
    for o in OPTIONS.iter().filter(|o| o.scope.has(scope)) {
        let mut head = format!("  --{}", o.name);
        if !o.value.is_empty() {
            head.push(' ');
            head.push_str(o.value);
        }
        s.push_str(&format!(
            "{head}\n      default {}: {}\n",
            o.default, o.help
        ));
    }
    if scope.has(Scope::PEER) || scope.has(Scope::POST) || scope.has(Scope::SERVE) {
        s.push_str("  -v N\n      same as --verbose N\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical_and_unique_per_scope() {
        for o in OPTIONS {
            assert_eq!(normalize(o.name), o.name);
            for other in OPTIONS {
                if !std::ptr::eq(o, other) && o.scope.0 & other.scope.0 != 0 {
                    assert_ne!(o.name, other.name, "{} twice in one scope", o.name);
                }
            }
        }
    }

    #[test]
    fn suggests_the_nearest_name() {
        assert_eq!(
            unknown("post-baseul", Scope::PEER),
            "unknown option --post-baseul (did you mean --post-baseurl?)"
        );
        assert_eq!(
            unknown("brokr", Scope::PEER),
            "unknown option --brokr (did you mean --broker?)"
        );
        assert_eq!(
            unknown("frobnicate", Scope::PEER),
            "unknown option --frobnicate"
        );
        // an option of another command is unknown here
        assert!(find("listen", Scope::PEER).is_none());
        assert!(find("client-id", Scope::POST).is_some());
    }

    #[test]
    fn every_command_help_lists_its_options_with_defaults() {
        let h = help(command("peer").unwrap());
        assert!(h.contains("--broker URL") && h.contains("default 7200: "));
        assert!(!h.contains("--listen"));
        let s = help(command("serve").unwrap());
        assert!(s.contains("--listen ADDR:PORT") && s.contains("--max-connections N"));
        assert!(usage().contains("meshnode shove CONFIG"));
    }
}
