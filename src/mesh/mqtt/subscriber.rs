//! Upstream sessions: subscribe on every connect, hand the messages to the flow.

use super::{back_off, mqtt_options, BrokerUrl, Inbound, SessionOptions, REQUEST_CAPACITY};
use crate::mesh::links::{Links, Task};
use flume::{Sender, TrySendError};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An upstream session: subscribes on every connect, forwards messages to the flow.
pub struct Subscriber {
    pub client: AsyncClient,
    /// Bumped on every (re)connect: acks for messages of an older connection are not
    /// sent, the broker redelivers those messages instead.
    pub epoch: Arc<AtomicU32>,
    /// Messages left unacknowledged since the flow's queue had no room for them within
    /// the patience (the broker sent beyond the receive maximum, or the flow was held
    /// up): a new connection has the broker deliver them again.
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
    /// Reconnects, so that the broker delivers again what this node could not take:
    /// called once nothing of the connection waits for an ack.
    pub fn reconnect(&self) {
        let n = self.overflowed.swap(0, Ordering::SeqCst);
        log::info!(
            "upstream {}: reconnecting so the broker delivers again the {n} messages left to it",
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
        let Some(event) = next_event!(connection) else {
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
                // The queue holds the receive maximum (up to `QUEUE_MESSAGES`): full
                // means the flow is busy, or the broker sent beyond it (mosquitto 2.0.11
                // does, a resumed session's whole queue at once). Waiting for room holds
                // the rest back in TCP at the broker, which is cheap; but a wait longer than half the keepalive would cost the
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
                            log::info!("upstream {name}: no room in the flow's queue for {:.1} s (the flow held up, or the broker sending beyond the receive maximum): messages left for the broker to deliver again", patience.as_secs_f64());
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
