//! The MQTT edge: broker URLs and session options here; the upstream sessions
//! (`subscriber`) and the post session (`poster`) beside.
//!
//! rumqttc's client only moves (pings, acks, reconnects) while its event loop is
//! polled, so the connections of a flow are polled by a thread of their own (`Links`:
//! one runtime, a task per connection), never by the flow's: a download blocking the
//! flow's loop can never starve the keepalive.

use super::Error;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Requests rumqttc may hold between the flow and a connection thread.
pub const REQUEST_CAPACITY: usize = 512;
/// Longest pause between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl BrokerUrl {
    /// Parses `mqtt[s]://[user[:password]@]host[:port]`.
    pub fn parse(url: &str) -> Result<BrokerUrl, Error> {
        let bad = |why: String| Error::BrokerUrl {
            url: url.to_string(),
            why,
        };
        let decode = |s: &str| {
            crate::core::relpath::percent_decode(s)
                .ok_or_else(|| bad("bad %-escape in user or password".into()))
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected mqtt://host or mqtts://host".into()))?;
        let tls = match scheme {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            _ => return Err(bad(format!("scheme {scheme:?} is not mqtt or mqtts"))),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (user, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (Some(decode(u)?), Some(decode(p)?)),
                None => (Some(decode(a)?), None),
            },
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                let port = p.parse().map_err(|_| bad(format!("bad port {p:?}")))?;
                (h, port)
            }
            _ => (hostport, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(bad("no host".into()));
        }
        Ok(BrokerUrl {
            tls,
            host: host.to_string(),
            port,
            user,
            password,
        })
    }

    /// The URL without its password, for logs.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        match &self.user {
            Some(u) => format!("{scheme}://{u}@{}:{}", self.host, self.port),
            None => format!("{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// How one session with a broker behaves.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub client_id: String,
    pub clean_start: bool,
    pub session_expiry: u32,
    pub receive_maximum: u16,
    pub max_packet: u32,
    pub keepalive: Duration,
}

pub fn mqtt_options(url: &BrokerUrl, s: &SessionOptions) -> MqttOptions {
    let mut o = MqttOptions::new(s.client_id.clone(), url.host.clone(), url.port);
    o.set_keep_alive(s.keepalive);
    o.set_clean_start(s.clean_start);
    // a persistent session needs an expiry: 0 would end it at disconnect
    o.set_session_expiry_interval(if s.clean_start {
        None
    } else {
        Some(s.session_expiry)
    });
    o.set_receive_maximum(Some(s.receive_maximum));
    // rumqttc's default incoming limit (10 KiB) would turn a large message into a
    // reconnect loop; the broker is told our limit in CONNECT and drops what exceeds it
    o.set_max_packet_size(Some(s.max_packet));
    o.set_manual_acks(true);
    // rumqttc preallocates a slot per possible in-flight publication: the default,
    // 65535 slots, is ~14 MB per connection
    o.set_outgoing_inflight_upper_limit(s.receive_maximum);
    o.set_request_channel_capacity(REQUEST_CAPACITY);
    o.set_connection_timeout(10);
    if let Some(u) = &url.user {
        o.set_credentials(u.clone(), url.password.clone().unwrap_or_default());
    }
    if url.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            super::roots::client_config(),
        )));
    }
    o
}

/// What connection threads tell a flow.
#[derive(Debug)]
pub enum Inbound {
    /// An announcement from upstream broker `broker`, received in connection `epoch`.
    Message {
        broker: usize,
        epoch: u32,
        pkid: u16,
        qos: QoS,
        /// Delivered before (MQTT DUP): its earlier processing may not have finished.
        dup: bool,
        topic: Bytes,
        payload: Bytes,
    },
    /// The post broker acknowledged more publications.
    PostAcked,
    /// The post broker lost the session while publications were unacknowledged.
    PostSessionLost,
    /// Something else of the flow's is ready (a download finished): look at it.
    Wake,
}

/// Logs a connection error and waits `backoff` (doubled for next time; rumqttc has no
/// backoff of its own). False when the node is stopping.
pub(super) async fn back_off(
    what: &str,
    e: String,
    stop: &AtomicBool,
    backoff: &mut Duration,
) -> bool {
    if stop.load(Ordering::Relaxed) {
        return false;
    }
    log::warn!("{what}: {e}; retrying in {}s", backoff.as_secs());
    super::links::sleep_unless(stop, *backoff).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    !stop.load(Ordering::Relaxed)
}

/// The next event of connection `$c` (an `EventLoop`); None once every client of it is
/// gone. A macro: an event already queued (most are) is taken without building
/// rumqttc's `poll` future, which is 2.7 KB and copied at each call (memcpy was ~10%
/// of the static musl build's CPU).
macro_rules! next_event {
    ($c:expr) => {
        match $c.queued() {
            Some(e) => Some(Ok(e)),
            None => $crate::mesh::mqtt::poll_event(&mut $c).await,
        }
    };
}
pub(super) use next_event;

/// `next_event` when nothing is queued.
pub(super) async fn poll_event(
    eventloop: &mut EventLoop,
) -> Option<Result<Event, ConnectionError>> {
    match eventloop.poll().await {
        Err(ConnectionError::RequestsDone) => None,
        e => Some(e),
    }
}

mod poster;
mod subscriber;

pub use poster::*;
pub use subscriber::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let u = BrokerUrl::parse("mqtt://guest:guest%40pw@peer1:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("peer1", 1884, false));
        assert_eq!(u.user.as_deref(), Some("guest"));
        assert_eq!(u.password.as_deref(), Some("guest@pw"));
        assert_eq!(u.redacted(), "mqtt://guest@peer1:1884");
        let u = BrokerUrl::parse("mqtts://owner:x@host").unwrap();
        assert_eq!((u.port, u.tls), (8883, true));
        let u = BrokerUrl::parse("mqtt://127.0.0.1").unwrap();
        assert_eq!(u.port, 1883);
        assert!(BrokerUrl::parse("http://owner:ownerpw@awzz")
            .unwrap_err()
            .to_string()
            .contains("scheme"));
        assert!(BrokerUrl::parse("awzz").is_err());
        assert!(BrokerUrl::parse("mqtt://h:99999")
            .unwrap_err()
            .to_string()
            .contains("port"));
        assert!(BrokerUrl::parse("mqtt://u:p@")
            .unwrap_err()
            .to_string()
            .contains("no host"));
    }
}
