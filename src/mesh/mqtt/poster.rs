//! The post session: numbered publications, acks in order, correlation keys.

use super::{back_off, mqtt_options, BrokerUrl, Inbound, SessionOptions, REQUEST_CAPACITY};
use crate::mesh::links::{Links, Task};
use flume::{Sender, TrySendError};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ClientError, Event, EventLoop};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Who published an announcement, as its correlation data says: a fingerprint of the
/// post session's client id, so an audit session journals its own publisher's only
/// (other flows and the channels announcer publish on the same broker).
pub fn publisher_tag(client_id: &str) -> u64 {
    crate::mesh::recent::fingerprint(client_id.as_bytes())
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
        let Some(event) = next_event!(connection) else {
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
