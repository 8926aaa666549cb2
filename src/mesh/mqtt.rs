//! The MQTT edge: broker URLs, session options, the connections' loops.
//!
//! rumqttc's client only moves (pings, acks, reconnects) while its event loop is
//! polled, so the connections of a flow are polled by a thread of their own (`Links`:
//! one runtime, a task per connection), never by the flow's: a download blocking the
//! flow's loop can never starve the keepalive.

use super::links::{Links, Task};
use super::Error;
use bytes::Bytes;
use flume::{Sender, TrySendError};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ClientError, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
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

fn tls_config() -> Arc<rustls::ClientConfig> {
    let roots = super::roots::root_store();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
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
            tls_config(),
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

/// The next event of a connection; None once every client of it is gone.
pub(super) async fn next_event(
    eventloop: &mut EventLoop,
) -> Option<Result<Event, ConnectionError>> {
    match eventloop.poll().await {
        Err(ConnectionError::RequestsDone) => None,
        e => Some(e),
    }
}

/// An upstream session: subscribes on every connect, forwards messages to the flow.
pub struct Subscriber {
    pub client: AsyncClient,
    /// Bumped on every (re)connect: acks for messages of an older connection are not
    /// sent, the broker redelivers those messages instead.
    pub epoch: Arc<AtomicU32>,
    /// Messages the broker sent beyond the receive maximum, left unacknowledged since the
    /// flow's queue was full: a new connection has the broker deliver them again.
    pub overflowed: Arc<AtomicU64>,
    /// The connection's state, for the metrics.
    pub link: Arc<Link>,
    pub task: Task,
    name: String,
}

/// An upstream connection as the metrics show it.
#[derive(Debug, Default)]
pub struct Link {
    pub connected: AtomicBool,
    /// Connections made (CONNACKs), the first included.
    pub connects: AtomicU64,
}

impl Subscriber {
    /// Reconnects, so that the broker delivers again what it sent beyond the receive
    /// maximum (and this node could not take): called once nothing of the connection
    /// waits for an ack.
    pub fn reconnect(&self) {
        let n = self.overflowed.swap(0, Ordering::SeqCst);
        log::info!(
            "upstream {}: reconnecting so the broker delivers again the {n} messages it sent beyond the receive maximum",
            self.name
        );
        let _ = self.client.try_disconnect();
    }
}

pub fn spawn_subscriber(
    links: &Links,
    index: usize,
    url: &BrokerUrl,
    session: &SessionOptions,
    filters: Vec<String>,
    tx: Sender<Inbound>,
    stop: Arc<AtomicBool>,
) -> Subscriber {
    let (client, connection) = AsyncClient::new(mqtt_options(url, session), REQUEST_CAPACITY);
    let epoch = Arc::new(AtomicU32::new(0));
    let overflowed = Arc::new(AtomicU64::new(0));
    let link = Arc::new(Link::default());
    let name = url.redacted();
    let keepalive = session.keepalive;
    let task = {
        let client = client.clone();
        let counters = (epoch.clone(), overflowed.clone(), link.clone());
        links.spawn(subscriber_loop(
            index, name, client, connection, filters, tx, counters, keepalive, stop,
        ))
    };
    Subscriber {
        client,
        epoch,
        overflowed,
        link,
        task,
        name: url.redacted(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn subscriber_loop(
    index: usize,
    name: String,
    client: AsyncClient,
    mut connection: EventLoop,
    filters: Vec<String>,
    tx: Sender<Inbound>,
    (epoch, overflowed, link): (Arc<AtomicU32>, Arc<AtomicU64>, Arc<Link>),
    keepalive: Duration,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut current = 0;
    let patience = keepalive / 2;
    // the flow asked for a new connection: made at once, not after a pause
    let mut reconnecting = false;
    loop {
        let Some(event) = next_event(&mut connection).await else {
            return; // the client side is gone
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                current = epoch.fetch_add(1, Ordering::SeqCst) + 1;
                link.connected.store(true, Ordering::Relaxed);
                link.connects.fetch_add(1, Ordering::Relaxed);
                // a new connection: the broker delivers again what was left
                overflowed.store(0, Ordering::SeqCst);
                log::info!(
                    "upstream {name}: connected (session present: {})",
                    ack.session_present
                );
                backoff = Duration::from_secs(1);
                // a subscription queued while disconnected is lost: subscribe on every
                // connect (idempotent for a resumed session)
                for f in &filters {
                    if let Err(e) = client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                        log::error!("upstream {name}: cannot subscribe to {f}: {e}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                log::info!("upstream {name}: subscribed");
                for code in &ack.return_codes {
                    let ok = matches!(
                        code,
                        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                    );
                    if !ok {
                        log::error!("upstream {name}: subscription refused: {code:?}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let m = Inbound::Message {
                    broker: index,
                    epoch: current,
                    pkid: p.pkid,
                    qos: p.qos,
                    dup: p.dup,
                    topic: p.topic,
                    payload: p.payload,
                };
                // The queue holds the receive maximum: full means the broker sent beyond
                // it (mosquitto 2.0.11 does, a resumed session's whole queue at once).
                // Waiting for room holds the rest back in TCP at the broker, which is
                // cheap; but a wait longer than half the keepalive would cost the
                // session its pings. Then the message is left unacknowledged, and so
                // is every later one without waiting (pings and acks flow), for the
                // broker to deliver again on the new connection the flow asks for once
                // its window is clear. (Dropping at once instead: a 20,000-message drain
                // fell from 11,000 to 6,000/s, each message read again and again.)
                let sent = match tx.try_send(m) {
                    Err(TrySendError::Full(m)) if overflowed.load(Ordering::SeqCst) == 0 => {
                        match tokio::time::timeout(patience, tx.send_async(m)).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(_)) => Err(true),
                            Err(_) => Err(false),
                        }
                    }
                    Err(TrySendError::Full(_)) => Err(false),
                    Err(TrySendError::Disconnected(_)) => Err(true),
                    Ok(()) => Ok(()),
                };
                match sent {
                    Ok(()) => {}
                    // no room within the patience
                    Err(false) => {
                        if overflowed.fetch_add(1, Ordering::SeqCst) == 0 {
                            log::info!("upstream {name}: the broker sends beyond the receive maximum: messages left for it to deliver again");
                        }
                    }
                    Err(true) => return, // the flow is gone
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                reconnecting = true;
            }
            Ok(_) => {}
            Err(_) if reconnecting => {
                link.connected.store(false, Ordering::Relaxed);
                reconnecting = false;
                epoch.fetch_add(1, Ordering::SeqCst);
                overflowed.store(0, Ordering::SeqCst);
            }
            Err(e) => {
                // the connection is gone: from now on the flow acks nothing of it (an
                // ack queued now would go out on the next connection, where its packet
                // id names another message); the broker redelivers those messages, and
                // those it sent beyond the receive maximum
                link.connected.store(false, Ordering::Relaxed);
                epoch.fetch_add(1, Ordering::SeqCst);
                overflowed.store(0, Ordering::SeqCst);
                if !back_off(
                    &format!("upstream {name}"),
                    e.to_string(),
                    &stop,
                    &mut backoff,
                )
                .await
                {
                    return;
                }
            }
        }
    }
}

/// Who published an announcement, as its correlation data says: a fingerprint of the
/// post session's client id, so an audit session journals its own publisher's only
/// (other flows and the channels announcer publish on the same broker).
pub fn publisher_tag(client_id: &str) -> u64 {
    super::recent::fingerprint(client_id.as_bytes())
}

/// An announcement's correlation data: its publisher's tag and its journal key.
pub fn key_bytes(tag: u64, (k, v): (u64, u64)) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&tag.to_le_bytes());
    b[8..16].copy_from_slice(&k.to_le_bytes());
    b[16..].copy_from_slice(&v.to_le_bytes());
    b
}

/// The (publisher tag, journal key) carried by `bytes`, when they are that.
pub fn key_of(bytes: &[u8]) -> Option<(u64, (u64, u64))> {
    let b: &[u8; 24] = bytes.try_into().ok()?;
    let n = |r: std::ops::Range<usize>| u64::from_le_bytes(b[r].try_into().expect("8 bytes"));
    Some((n(0..8), (n(8..16), n(16..24))))
}

/// The post session: publications are numbered in order; the broker's PUBACKs, which
/// come back in order, advance `acked`.
pub struct Poster {
    client: AsyncClient,
    props: PublishProperties,
    /// Its client id's fingerprint, in the correlation data of keyed publications.
    tag: u64,
    issued: u64,
    acked: Arc<AtomicU64>,
    notified: Arc<AtomicBool>,
    /// Set when the broker lost the session with publications unacknowledged, so a
    /// flow that is not reading its queue learns it too.
    lost: Arc<AtomicBool>,
    pub task: Task,
}

#[derive(Debug)]
pub enum PostError {
    /// The request queue is full (broker slow or away): try again later with the
    /// payload given back.
    Full(Vec<u8>),
    Other(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Full(_) => write!(f, "the broker connection's request queue stayed full"),
            PostError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl Poster {
    pub fn spawn(
        links: &Links,
        url: &BrokerUrl,
        session: &SessionOptions,
        tx: Sender<Inbound>,
        stop: Arc<AtomicBool>,
    ) -> Poster {
        let mut opts = mqtt_options(url, session);
        opts.set_manual_acks(false);
        let (client, connection) = AsyncClient::new(opts, REQUEST_CAPACITY);
        let acked = Arc::new(AtomicU64::new(0));
        let notified = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let name = url.redacted();
        let task = {
            let flags = Flags {
                acked: acked.clone(),
                notified: notified.clone(),
                lost: lost.clone(),
            };
            links.spawn(poster_loop(name, connection, tx, flags, stop))
        };
        let props = PublishProperties {
            payload_format_indicator: Some(1),
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        Poster {
            client,
            props,
            tag: publisher_tag(&session.client_id),
            issued: 0,
            acked,
            notified,
            lost,
            task,
        }
    }

    /// Publishes, waiting while the connection's request queue is full, until
    /// `give_up()` (stopping, a deadline): the one publish-and-retry loop of the flow and
    /// `post`. Returns the publication's sequence number.
    pub fn publish_waiting(
        &mut self,
        topic: &str,
        mut payload: Vec<u8>,
        give_up: impl Fn() -> bool,
    ) -> Result<u64, PostError> {
        loop {
            match self.publish_keyed(topic, payload, None) {
                Err(PostError::Full(p)) if !give_up() => {
                    payload = p;
                    std::thread::sleep(Duration::from_millis(5));
                }
                done => return done,
            }
        }
    }

    /// `publish_waiting` of an announcement carrying its journal key (correlation data,
    /// for the flow's audit session).
    pub fn publish_keyed_waiting(
        &mut self,
        topic: &str,
        mut payload: Vec<u8>,
        key: Option<(u64, u64)>,
        give_up: impl Fn() -> bool,
    ) -> Result<u64, PostError> {
        loop {
            match self.publish_keyed(topic, payload, key) {
                Err(PostError::Full(p)) if !give_up() => {
                    payload = p;
                    std::thread::sleep(Duration::from_millis(5));
                }
                done => return done,
            }
        }
    }

    /// Queues one publication; returns its sequence number.
    pub fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<u64, PostError> {
        self.publish_keyed(topic, payload, None)
    }

    fn publish_keyed(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        key: Option<(u64, u64)>,
    ) -> Result<u64, PostError> {
        let mut props = self.props.clone();
        if let Some(k) = key {
            let b = key_bytes(self.tag, k);
            props.correlation_data = Some(bytes::Bytes::copy_from_slice(&b));
        }
        match self.client.try_publish_with_properties(
            topic,
            QoS::AtLeastOnce,
            false,
            payload,
            props,
        ) {
            Ok(()) => {
                self.issued += 1;
                Ok(self.issued)
            }
            Err(ClientError::TryRequest(rumqttc::v5::Request::Publish(p))) => {
                Err(PostError::Full(p.payload.to_vec()))
            }
            Err(ClientError::TryRequest(_)) => {
                Err(PostError::Other("request queue refused".into()))
            }
            Err(e) => Err(PostError::Other(e.to_string())),
        }
    }

    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Publications acknowledged so far. Call after taking a `PostAcked`.
    pub fn acked(&self) -> u64 {
        self.notified.store(false, Ordering::SeqCst);
        self.acked.load(Ordering::SeqCst)
    }

    /// Whether the broker lost the session with publications unacknowledged.
    pub fn session_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}

/// What the post connection's thread shares with its `Poster`.
struct Flags {
    acked: Arc<AtomicU64>,
    notified: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
}

async fn poster_loop(
    name: String,
    mut connection: EventLoop,
    tx: Sender<Inbound>,
    flags: Flags,
    stop: Arc<AtomicBool>,
) {
    let Flags {
        acked,
        notified,
        lost,
    } = flags;
    let mut backoff = Duration::from_secs(1);
    let mut connections = 0u32;
    let mut unacked_at_error = false;
    loop {
        let Some(event) = next_event(&mut connection).await else {
            return;
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connections += 1;
                log::info!(
                    "post {name}: connected (session present: {})",
                    ack.session_present
                );
                backoff = Duration::from_secs(1);
                // rumqttc drops its unacknowledged publications when the broker lost
                // the session: the flow must know, or it would wait for them forever
                if connections > 1 && !ack.session_present && unacked_at_error {
                    lost.store(true, Ordering::SeqCst);
                    let _ = tx.try_send(Inbound::PostSessionLost);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                use rumqttc::v5::mqttbytes::v5::PubAckReason;
                if !matches!(
                    ack.reason,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                ) {
                    log::error!(
                        "post {name}: publication refused by the broker: {:?}",
                        ack.reason
                    );
                }
                acked.fetch_add(1, Ordering::SeqCst);
                if !notified.swap(true, Ordering::SeqCst) {
                    if let Err(TrySendError::Full(_)) = tx.try_send(Inbound::PostAcked) {
                        // the flow polls `acked` on its own while its queue is busy
                        notified.store(false, Ordering::SeqCst);
                    }
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) if stop.load(Ordering::Relaxed) => {
                return;
            }
            Ok(_) => {}
            Err(e) => {
                unacked_at_error = true;
                if !back_off(&format!("post {name}"), e.to_string(), &stop, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

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
