//! The post broker's own account of what it accepted: a persistent session of the flow
//! on its post broker, subscribed to the flow's announcement topics. Every announcement
//! the broker accepted is queued to it, acknowledged (PUBACK) or not; each carries its
//! journal key as MQTT v5 correlation data. The flow journals what the audit session
//! receives before acknowledging it, so after a SIGKILL the broker delivers the rest,
//! and the announcement journal holds every announcement the broker took: a redelivered
//! upstream message is then announced again only when the broker never had it. That
//! closes the window the PUBACKs alone leave (acknowledged by the broker, killed before
//! the journal was synced: one batch announced twice).
//!
//! At start, the session is drained before the upstream subscriptions begin: the flow
//! publishes a marker on a topic of its own after subscribing, and the broker, which
//! delivers a session's messages in order, delivers it after everything queued before.

use super::mqtt::{back_off, mqtt_options, BrokerUrl, SessionOptions};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Connection, Event};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The journal key of an announcement as its correlation data (16 bytes).
pub fn key_bytes((k, v): (u64, u64)) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&k.to_le_bytes());
    b[8..].copy_from_slice(&v.to_le_bytes());
    b
}

/// The journal key carried by `bytes`, when it is one.
pub fn key_of(bytes: &[u8]) -> Option<(u64, u64)> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    let k = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let v = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
    Some((k, v))
}

/// What the audit connection received, waiting for the flow.
#[derive(Default)]
struct Received {
    keys: Vec<(u64, u64)>,
    /// Messages to acknowledge once their keys are journaled: (connection epoch, the
    /// message with its payload dropped).
    acks: Vec<(u32, Publish)>,
    /// The marker of the current connection came back: all that was queued before it
    /// was delivered.
    drained: bool,
}

pub struct Auditor {
    client: Client,
    received: Arc<(Mutex<Received>, Condvar)>,
    epoch: Arc<AtomicU32>,
    pub thread: JoinHandle<()>,
}

/// Keys taken from the audit session, to journal, then `Auditor::ack`.
pub struct Audited {
    pub keys: Vec<(u64, u64)>,
    acks: Vec<(u32, Publish)>,
}

impl Auditor {
    /// Connects the audit session (`session`: persistent) and subscribes to `filters`
    /// and to `marker`, the flow's own topic for the drain marker.
    pub fn spawn(
        url: &BrokerUrl,
        session: &SessionOptions,
        filters: Vec<String>,
        marker: String,
        stop: Arc<AtomicBool>,
    ) -> Auditor {
        let (client, connection) = Client::new(mqtt_options(url, session), 64);
        let received = Arc::new((Mutex::new(Received::default()), Condvar::new()));
        let epoch = Arc::new(AtomicU32::new(0));
        let name = url.redacted();
        let thread = {
            let (client, received, epoch) = (client.clone(), received.clone(), epoch.clone());
            thread::Builder::new()
                .name("audit".into())
                .spawn(move || {
                    audit_loop(
                        name, client, connection, filters, marker, received, epoch, stop,
                    )
                })
                .expect("spawning a thread")
        };
        Auditor {
            client,
            received,
            epoch,
            thread,
        }
    }

    /// Waits until the broker delivered what it held for the session (the marker came
    /// back), at most `limit` or until `stop`. False: not known drained.
    pub fn wait_drained(&self, limit: Duration, stop: &AtomicBool) -> bool {
        let end = Instant::now() + limit;
        let (lock, cv) = &*self.received;
        let mut r = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !r.drained {
            let now = Instant::now();
            if now >= end || stop.load(Ordering::Relaxed) {
                return false;
            }
            let wait = (end - now).min(Duration::from_millis(100));
            r = cv
                .wait_timeout(r, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// The keys received so far, with their acknowledgements (sent by `ack`, once the
    /// keys are journaled).
    pub fn take(&self) -> Audited {
        let (lock, _) = &*self.received;
        let mut r = lock.lock().unwrap_or_else(|p| p.into_inner());
        Audited {
            keys: std::mem::take(&mut r.keys),
            acks: std::mem::take(&mut r.acks),
        }
    }

    /// Acknowledges what `take` gave, once journaled; messages of an older connection are
    /// left to the broker, which delivers them again.
    pub fn ack(&self, audited: Audited) {
        let current = self.epoch.load(Ordering::SeqCst);
        for (epoch, p) in audited.acks {
            if epoch == current {
                let _ = self.client.try_ack(&p);
            }
        }
    }

    pub fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}

#[allow(clippy::too_many_arguments)]
fn audit_loop(
    name: String,
    client: Client,
    mut connection: Connection,
    filters: Vec<String>,
    marker: String,
    received: Arc<(Mutex<Received>, Condvar)>,
    epoch: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut current = 0;
    let mut marker_sent = false;
    let (lock, cv) = &*received;
    loop {
        let event = match connection.recv() {
            Ok(e) => e,
            Err(_) => return,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                current = epoch.fetch_add(1, Ordering::SeqCst) + 1;
                backoff = Duration::from_secs(1);
                marker_sent = false;
                lock.lock().unwrap_or_else(|p| p.into_inner()).drained = false;
                for f in filters.iter().chain([&marker]) {
                    if let Err(e) = client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                        log::error!("audit {name}: cannot subscribe to {f}: {e}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) if !marker_sent => {
                // subscribed (or the session resumed): what the broker held comes before
                marker_sent = true;
                let payload = b"meshnode: end of the audit session's backlog".to_vec();
                if let Err(e) = client.try_publish(marker.clone(), QoS::AtLeastOnce, false, payload)
                {
                    log::error!("audit {name}: cannot publish its marker: {e}");
                }
            }
            Ok(Event::Incoming(Packet::Publish(mut p))) => {
                let key = p
                    .properties
                    .as_ref()
                    .and_then(|pr| pr.correlation_data.as_deref())
                    .and_then(key_of);
                let is_marker = p.topic == marker.as_bytes();
                p.payload = bytes::Bytes::new();
                p.properties = None;
                let mut r = lock.lock().unwrap_or_else(|p| p.into_inner());
                match key {
                    Some(k) => {
                        r.keys.push(k);
                        r.acks.push((current, p));
                    }
                    None => {
                        // the marker, or another publisher's message: nothing to journal
                        let _ = client.try_ack(&p);
                        if is_marker {
                            r.drained = true;
                            cv.notify_all();
                        }
                    }
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) if stop.load(Ordering::Relaxed) => {
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if !back_off(&format!("audit {name}"), &e, &stop, &mut backoff) {
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
    fn keys_travel_as_16_bytes() {
        let k = (0x0123_4567_89ab_cdef, 42);
        assert_eq!(key_of(&key_bytes(k)), Some(k));
        assert_eq!(key_of(b"short"), None);
    }
}
