//! Option values into validated configurations, before anything runs: the names come
//! from the table in `options`, the values are checked here.

use super::options::{unknown, Scope, OPTIONS};
use crate::core::announce::Encoding;
use crate::core::integrity::Method;
use crate::core::message::Format;
use crate::core::topic;
use crate::mesh::fetch::Timeouts;
use crate::mesh::mqtt::BrokerUrl;
use crate::mesh::peer::PeerConfig;
use crate::mesh::post::PostConfig;
use std::path::PathBuf;
use std::time::Duration;

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("--{name}: {v:?} is not a valid number"))
}

fn positive(name: &str, v: &str) -> Result<usize, String> {
    match num(name, v)? {
        0 => Err(format!("--{name} must be at least 1")),
        n => Ok(n),
    }
}

fn secs(name: &str, v: &str) -> Result<f64, String> {
    let s: f64 = num(name, v)?;
    if s.is_finite() && s >= 0.0 {
        Ok(s)
    } else {
        Err(format!("--{name}: {v:?} is not a duration in seconds"))
    }
}

pub fn boolean(name: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("--{name}: {v:?} is not yes or no")),
    }
}

pub fn encoding(v: &str) -> Result<Encoding, String> {
    Encoding::parse(v).ok_or_else(|| format!("--encoding: {v:?} is not text, binary or guess"))
}

pub fn format(v: &str) -> Result<Format, String> {
    Format::parse(v).ok_or_else(|| format!("--format: {v:?} is not wmo_mesh, sr3 or wis2"))
}

/// Raw peer options, collected before validation.
#[derive(Debug, Default)]
pub struct PeerArgs {
    pub cfg: PeerConfig,
    pub post_broker_given: bool,
    pub verbose: u8,
    pub post_base_url_given: bool,
}

impl PeerArgs {
    /// A peer's (or a flow's) options at their defaults: the option table's, each
    /// applied as a given value would be, so the table is where they come from
    /// (`PeerConfig::default()`, the library's, is checked equal by a test).
    pub fn new() -> PeerArgs {
        let mut a = PeerArgs::default();
        for o in OPTIONS.iter().filter(|o| o.scope.has(Scope::PEER)) {
            if let Some(v) = o.default_value() {
                a.apply(o.name, v)
                    .unwrap_or_else(|e| panic!("the table's default of --{}: {e}", o.name));
            }
        }
        a
    }

    /// Applies one option (canonical name) with its value.
    pub fn apply(&mut self, name: &str, v: &str) -> Result<(), String> {
        let c = &mut self.cfg;
        match name {
            "broker" => c.brokers.push(BrokerUrl::parse(v)?),
            "subtopic" => {
                topic::check_filter(v).map_err(|e| format!("--subtopic: {e}"))?;
                c.subtopics.push(v.to_string());
            }
            "exchange" => c.exchange = v.to_string(),
            "topic-prefix" => c.topic_prefix = v.trim_matches('/').to_string(),
            "clientid" | "client-id" => c.client_id = Some(v.to_string()),
            "clean-session" => c.clean_session = boolean(name, v)?,
            "session-expiry" => c.session_expiry = num(name, v)?,
            "dir" => c.dir = PathBuf::from(v),
            "download" => c.download = boolean(name, v)?,
            "exactly-once" => c.exactly_once = boolean(name, v)?,
            "select" => c.select.push(v).map_err(|e| e.to_string())?,
            "accept" => c
                .select
                .push(&format!("accept {v}"))
                .map_err(|e| e.to_string())?,
            "reject" => c
                .select
                .push(&format!("reject {v}"))
                .map_err(|e| e.to_string())?,
            "lag-warn" => c.lag_warn = secs(name, v)?,
            "lag-drop" => c.lag_drop = secs(name, v)?,
            "post-broker" => {
                self.post_broker_given = true;
                c.post_broker = if v == "none" {
                    None
                } else {
                    Some(BrokerUrl::parse(v)?)
                };
            }
            "post-exchange" => c.post_exchange = v.to_string(),
            "post-topic-prefix" => c.post_topic_prefix = Some(v.trim_matches('/').to_string()),
            "post-baseurl" | "post-base-url" => {
                self.post_base_url_given = true;
                c.post_base_url = v.to_string();
            }
            "post-exchange-split" => c.post_exchange_split = num(name, v)?,
            "inline" => c.inline = boolean(name, v)?,
            "inline-max" => c.inline_max = num(name, v)?,
            "encoding" => c.encoding = encoding(v)?,
            "format" => c.format = format(v)?,
            "message-max" => c.message_max = num(name, v)?,
            "file-max" => c.file_max = num(name, v)?,
            "inflight" => {
                c.inflight = num(name, v)?;
                if c.inflight == 0 {
                    return Err("--inflight must be at least 1".into());
                }
            }
            "concurrency" => c.concurrency = positive(name, v)?,
            "share" => {
                topic::check_group(v).map_err(|e| format!("--share: {e}"))?;
                c.share = Some(v.to_string());
            }
            "host-connections" => c.host_connections = positive(name, v)?,
            "pipeline" => c.pipeline = positive(name, v)?,
            // rumqttc refuses keepalives under 5 s
            "keepalive" => c.keepalive = Duration::from_secs_f64(secs(name, v)?.max(5.0)),
            "retries" => c.retries = num(name, v)?,
            "retry-time" => c.retry_time = Duration::from_secs_f64(secs(name, v)?),
            "retry-ttl" => c.retry_ttl = Duration::from_secs_f64(secs(name, v)?),
            "retry-max" => c.retry_max = positive(name, v)?,
            "state-dir" => c.state_dir = Some(PathBuf::from(v)),
            "timeout" => {
                let d = Duration::from_secs_f64(secs(name, v)?);
                c.timeouts = Timeouts {
                    connect: d,
                    response: d,
                    per_read: d,
                    ..c.timeouts
                };
            }
            "min-rate" => c.timeouts.min_rate = num(name, v)?,
            "min-rate-time" => {
                c.timeouts.rate_window = Duration::from_secs_f64(secs(name, v)?.max(1.0))
            }
            "stats-interval" => c.stats_interval = Duration::from_secs_f64(secs(name, v)?.max(1.0)),
            "verbose" => self.verbose = num(name, v)?,
            _ => return Err(unknown(name, Scope::PEER)),
        }
        Ok(())
    }

    /// Checks the whole and fills defaults that depend on other options.
    pub fn finish(mut self) -> Result<(PeerConfig, u8), String> {
        let c = &mut self.cfg;
        if c.brokers.is_empty() {
            return Err(
                "give at least one --broker mqtt://user:password@host to subscribe to".into(),
            );
        }
        if !self.post_broker_given {
            return Err("give --post-broker mqtt://user:password@host (this node's broker) or --post-broker none".into());
        }
        if c.subtopics.is_empty() {
            c.subtopics.push("#".into());
        }
        if !self.post_base_url_given {
            c.post_base_url = format!("http://{}:8000/data", crate::sys::hostname());
        }
        if c.lag_drop < c.lag_warn {
            return Err(format!(
                "--lag-drop {} is below --lag-warn {}",
                c.lag_drop, c.lag_warn
            ));
        }
        Ok((self.cfg, self.verbose))
    }
}

/// One option of `meshnode post` (canonical name) with its value.
pub fn post_option(a: &mut PostConfig, name: &str, v: &str) -> Result<(), String> {
    {
        match name {
            "post-broker" => a.post_broker = Some(BrokerUrl::parse(v)?),
            "post-baseurl" | "post-base-url" => a.base_url = v.to_string(),
            "post-basedir" | "post-base-dir" => a.base_dir = PathBuf::from(v),
            "post-exchange" => a.exchange = v.to_string(),
            "post-topic-prefix" => a.topic_prefix = Some(v.trim_matches('/').to_string()),
            "inline" => a.inline = boolean(name, v)?,
            "inline-max" => a.inline_max = num(name, v)?,
            "encoding" => a.encoding = encoding(v)?,
            "header" => {
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--header {v:?}: expected name=value"))?;
                a.headers.push((k.to_string(), val.to_string()));
            }
            "integrity" => {
                a.integrity = match Method::from_name(v).filter(|m| m.verifies_content()) {
                    Some(m) => Some(m),
                    None => return Err(format!(
                        "--integrity: {v:?} is not md5, sha256, sha384, sha512, sha3-256, sha3-384 or sha3-512"
                    )),
                }
            }
            "format" => a.format = format(v)?,
            "clientid" | "client-id" => a.client_id = Some(v.to_string()),
            "verbose" => a.verbose = num(name, v)?,
            _ => return Err(unknown(name, Scope::POST)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(args: &[&str]) -> Result<(PeerConfig, u8), String> {
        let mut a = PeerArgs::new();
        super::super::options::parse_args(
            args.iter().map(Into::into),
            Scope::PEER,
            |n, v| a.apply(n, v),
            |v| Err(format!("unexpected {v:?}")),
        )?;
        a.finish()
    }

    #[test]
    fn accepts_demo_spellings() {
        let (c, v) = peer(&[
            "--broker",
            "mqtt://guest:guestpw@peer1",
            "--post_broker",
            "mqtt://owner:ownerpw@localhost",
            "--post_baseUrl",
            "http://me:8000/data",
            "--clean_session",
            "--inline",
            "--inline_max=2000",
            "--lag_warn",
            "60",
            "--verbose=2",
            "--subtopic",
            "+/GTS/+/IU/#",
            "--post_exchange_split",
            "5",
        ])
        .unwrap();
        assert_eq!(v, 2);
        assert!(c.clean_session && c.inline);
        assert_eq!(c.inline_max, 2000);
        assert_eq!(c.post_base_url, "http://me:8000/data");
        assert_eq!(c.subtopics, ["+/GTS/+/IU/#"]);
        assert_eq!(c.post_exchange_split, 5);
        assert_eq!(c.lag_warn, 60.0);
        assert_eq!(c.post_broker.unwrap().user.as_deref(), Some("owner"));
    }

    #[test]
    fn defaults_and_errors() {
        let (c, _) = peer(&["--broker", "mqtt://h", "--post-broker", "none"]).unwrap();
        assert_eq!(c.subtopics, ["#"]);
        assert!(c.post_broker.is_none());
        assert_eq!(
            (c.lag_warn, c.lag_drop, c.inline_max, c.message_max),
            (120.0, 7200.0, 1024, 500_000)
        );
        assert!(peer(&["--post-broker", "none"])
            .unwrap_err()
            .contains("--broker"));
        assert!(peer(&["--broker", "mqtt://h"])
            .unwrap_err()
            .contains("--post-broker"));
        assert!(peer(&[
            "--broker",
            "mqtt://h",
            "--post-broker",
            "none",
            "--frobnicate",
            "1"
        ])
        .unwrap_err()
        .contains("unknown option --frobnicate"));
        assert!(peer(&[
            "--broker",
            "mqtt://h",
            "--post-broker",
            "none",
            "--lag-warn",
            "x"
        ])
        .unwrap_err()
        .contains("not a valid number"));
        assert!(peer(&[
            "--broker",
            "mqtt://h",
            "--post-broker",
            "none",
            "--download",
            "maybe"
        ])
        .unwrap_err()
        .contains("yes or no"));
        assert!(peer(&[
            "--broker",
            "mqtt://h",
            "--post-broker",
            "none",
            "--subtopic",
            "a/#/b"
        ])
        .is_err());
        assert!(peer(&[
            "--broker",
            "mqtt://h",
            "--post-broker",
            "none",
            "--select",
            "take .*"
        ])
        .is_err());
    }
}
