//! The post broker's own account of what it accepted: a persistent session of the flow
//! on its post broker, subscribed to the flow's announcement topics. Every announcement
//! the broker accepted is queued to it, acknowledged (PUBACK) or not, whoever made it;
//! the node's own carry their journal key as MQTT v5 correlation data, the key of
//! another program's (`meshnode post`, a demo publisher) is read from the message. The flow journals what the audit session
//! receives before acknowledging it, so after a SIGKILL the broker delivers the rest,
//! and the announcement journal holds every announcement the broker took: a redelivered
//! upstream message is then announced again only when the broker never had it. That
//! closes the window the PUBACKs alone leave (acknowledged by the broker, killed before
//! the journal was synced: one batch announced twice).
//!
//! At start, the session is drained before the upstream subscriptions begin: the flow
//! publishes a marker on a topic of its own after subscribing, and the broker, which
//! delivers a session's messages in order, delivers it after everything queued before.

use super::links::{Links, Task};
use super::mqtt::{back_off, key_of, mqtt_options, next_event, BrokerUrl, SessionOptions};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Longest a start waits for an audit session's backlog.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The audit filters of announcements published under `exchanges` x `prefix`, below
/// `under` (empty: everything).
pub fn filters(exchanges: &[String], prefix: &str, under: &str) -> Vec<String> {
    exchanges
        .iter()
        .map(|e| {
            let mut f = e.clone();
            for level in [prefix, under] {
                if !level.is_empty() {
                    f.push('/');
                    f.push_str(level);
                }
            }
            f.push_str("/#");
            f
        })
        .collect()
}

/// Starts the audit session (`session`) of the announcements made on `url` under
/// `filters` (by anyone: this flow, another flow or the channels of the node, `meshnode
/// post`, another program), and journals in `journal` what the broker held for it from
/// before (those the broker took that this node did not journal before it died).
/// Called before anything is judged against the journal.
pub fn start(
    links: &Links,
    url: &BrokerUrl,
    session: &SessionOptions,
    filters: Vec<String>,
    journal: &mut super::announced::Announced,
    stop: Arc<AtomicBool>,
) -> Auditor {
    // outside the exchanges: no subscriber of the announcements ever sees it
    let marker = format!("meshnode-audit/{}", session.client_id);
    let a = Auditor::spawn(links, url, session, filters, marker, stop.clone());
    let end = Instant::now() + DRAIN;
    let mut n = 0;
    let drained = loop {
        let wait = end.saturating_duration_since(Instant::now());
        let done = a.wait_drained(wait.min(Duration::from_millis(200)), &stop);
        // journaled and acknowledged as it comes: the broker sends no more than the
        // receive maximum unacknowledged, and the marker comes behind the backlog
        let audited = a.take();
        n += audited.keys.len();
        for k in &audited.keys {
            journal.record(*k);
        }
        match journal.sync() {
            Ok(()) => a.ack(audited),
            Err(e) => {
                log::error!("announcement journal: cannot sync ({e})");
                break false;
            }
        }
        if done {
            break true;
        }
        if Instant::now() >= end || stop.load(Ordering::Relaxed) {
            break false;
        }
    };
    if !drained {
        log::warn!(
            "post {}: the audit session did not answer within {} s: announcements the broker took before a crash may be made again",
            url.redacted(),
            DRAIN.as_secs()
        );
    }
    if n > 0 {
        log::info!(
            "post {}: {n} announcements the broker took are journaled",
            url.redacted()
        );
    }
    a
}

/// Journals what the audit session received since the last call, with `more` (keys the
/// broker acknowledged), then acknowledges the audited messages. False: the journal
/// could not be synced (nothing acknowledged).
pub fn journal(
    auditor: Option<&Auditor>,
    more: impl IntoIterator<Item = (u64, u64)>,
    journal: &mut super::announced::Announced,
) -> std::io::Result<()> {
    for k in more {
        journal.record(k);
    }
    let audited = auditor.map(Auditor::take);
    for k in audited.iter().flat_map(|a| &a.keys) {
        journal.record(*k);
    }
    journal.sync()?;
    if let (Some(a), Some(audited)) = (auditor, audited) {
        a.ack(audited);
    }
    Ok(())
}

/// The journal key of an announcement without correlation data: its relPath and the
/// checksum it announces, as the flow keys its own (`Announced::key`). None for what
/// announces no checksum (a removal, a WIS2 message without integrity) or is not
/// readable: nothing to journal.
fn key_of_payload(payload: &[u8]) -> Option<(u64, u64)> {
    let m = crate::core::message::parse(payload).ok()?;
    if m.file_op.is_some() {
        return None;
    }
    let rel = crate::core::relpath::validate(&m.rel_path).ok()?;
    let digest = m.integrity.as_ref()?.digest.as_ref()?;
    Some(super::announced::Announced::key(rel, &digest.to_base64()))
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

/// Longest wait for room in the audit connection's request queue for one ack.
const ACK_WAIT: Duration = Duration::from_secs(2);

pub struct Auditor {
    client: AsyncClient,
    received: Arc<(Mutex<Received>, Condvar)>,
    epoch: Arc<AtomicU32>,
    pub task: Task,
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
        links: &Links,
        url: &BrokerUrl,
        session: &SessionOptions,
        filters: Vec<String>,
        marker: String,
        stop: Arc<AtomicBool>,
    ) -> Auditor {
        let (client, connection) = AsyncClient::new(mqtt_options(url, session), 64);
        let received = Arc::new((Mutex::new(Received::default()), Condvar::new()));
        let epoch = Arc::new(AtomicU32::new(0));
        let name = url.redacted();
        let task = {
            let (client, received, epoch) = (client.clone(), received.clone(), epoch.clone());
            links.spawn(audit_loop(
                name, client, connection, filters, marker, received, epoch, stop,
            ))
        };
        Auditor {
            client,
            received,
            epoch,
            task,
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
            if epoch != current {
                continue;
            }
            // waits a moment while the request queue is full (its thread drains it):
            // an ack lost there would leave the message unacknowledged, and the broker
            // sends no more than the receive maximum of those. Bounded: a connection
            // that is down is not waited for (the broker delivers them again)
            let end = Instant::now() + ACK_WAIT;
            while self.client.try_ack(&p).is_err() {
                if Instant::now() >= end {
                    log::warn!("audit: acknowledgements not sent: the session's queue stays full");
                    return;
                }
                thread::sleep(Duration::from_millis(2));
            }
        }
    }

    pub fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}

#[allow(clippy::too_many_arguments)]
async fn audit_loop(
    name: String,
    client: AsyncClient,
    mut connection: EventLoop,
    filters: Vec<String>,
    marker: String,
    received: Arc<(Mutex<Received>, Condvar)>,
    epoch: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut current = 0;
    let mut marker_sent = false;
    // subscribed, the marker not yet taken by the client's request queue (full of the
    // backlog's acks at start: tried again after each event, as the queue drains)
    let mut marker_due = false;
    let (lock, cv) = &*received;
    loop {
        if marker_due {
            let payload = b"meshnode: end of the audit session's backlog".to_vec();
            match client.try_publish(marker.clone(), QoS::AtLeastOnce, false, payload) {
                Ok(()) => marker_due = false,
                Err(rumqttc::v5::ClientError::TryRequest(_)) => {} // full: again soon
                Err(e) => {
                    log::error!("audit {name}: cannot publish its marker: {e}");
                    marker_due = false;
                }
            }
        }
        let Some(event) = next_event!(connection) else {
            return;
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                current = epoch.fetch_add(1, Ordering::SeqCst) + 1;
                backoff = Duration::from_secs(1);
                marker_sent = false;
                marker_due = false;
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
                marker_due = true;
            }
            Ok(Event::Incoming(Packet::Publish(mut p))) => {
                let is_marker = p.topic == marker.as_bytes();
                // every publisher's announcements count: `meshnode post`, the channels,
                // another flow of the node. What the broker carries from any of them is
                // not to be announced again when its echo comes back redelivered
                let key = match p
                    .properties
                    .as_ref()
                    .and_then(|pr| pr.correlation_data.as_deref())
                    .and_then(key_of)
                {
                    Some((_, k)) => Some(k),
                    None if !is_marker => key_of_payload(&p.payload),
                    None => None,
                };
                // the ack needs only the packet id and QoS: nothing keeps the read buffer
                p.payload = bytes::Bytes::new();
                p.topic = bytes::Bytes::new();
                p.properties = None;
                let mut r = lock.lock().unwrap_or_else(|p| p.into_inner());
                match key {
                    Some(k) => {
                        r.keys.push(k);
                        r.acks.push((current, p));
                    }
                    None => {
                        // the marker, or nothing to journal
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
                if !back_off(&format!("audit {name}"), e.to_string(), &stop, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::mqtt::{key_bytes, publisher_tag};

    #[test]
    fn keys_travel_with_their_publisher() {
        let k = (0x0123_4567_89ab_cdef, 42);
        let tag = publisher_tag("meshnode-x-post");
        assert_eq!(key_of(&key_bytes(tag, k)), Some((tag, k)));
        assert_ne!(tag, publisher_tag("meshnode-y-post"));
        assert_eq!(key_of(b"short"), None);
        assert_eq!(
            filters(&["xpublic00".into(), "xpublic01".into()], "v03/post", ""),
            ["xpublic00/v03/post/#", "xpublic01/v03/post/#"]
        );
        assert_eq!(filters(&["x".into()], "", "metcast"), ["x/metcast/#"]);
    }

    #[test]
    fn another_programs_announcement_is_keyed_as_the_flow_keys_its_own() {
        use crate::mesh::announced::Announced;
        // a sha512 of 64 zero bytes, in base64
        const ZEROS: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
        let v03 = br#"{"pubTime":"20261202T190000","baseUrl":"http://h/","relPath":"a/b.txt","integrity":{"method":"sha512","value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}}"#;
        assert_eq!(key_of_payload(v03), Some(Announced::key("a/b.txt", ZEROS)));
        // the demo's form: a leading slash, the same file
        let demo = br#"{"pubTime":"20261202T190000","baseUrl":"http://h/","relPath":"/a/b.txt","integrity":{"method":"sha512","value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}}"#;
        assert_eq!(key_of_payload(demo), key_of_payload(v03));
        // nothing to journal: a removal, a path leaving the tree, no JSON
        let remove = br#"{"pubTime":"20261202T190000","baseUrl":"http://h/","relPath":"a/b.txt","fileOp":{"remove":""}}"#;
        assert_eq!(key_of_payload(remove), None);
        let escape = br#"{"pubTime":"20261202T190000","baseUrl":"http://h/","relPath":"../b.txt","integrity":{"method":"sha512","value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}}"#;
        assert_eq!(key_of_payload(escape), None);
        assert_eq!(key_of_payload(b"meshnode: end"), None);
    }
}
