//! An MQTT watcher of what a broker announces, and raw publication of messages.

use super::*;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Event, MqttOptions};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One received MQTT message.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: String,
    pub content_type: Option<String>,
    /// When it came: a repeat can be told apart from a broker restart's resend.
    pub at: Instant,
}

/// Records everything published on a broker under a filter.
pub struct Watcher {
    pub messages: Arc<Mutex<Vec<Received>>>,
    client: Client,
}

impl Watcher {
    pub fn start(broker: &Broker, filter: &str) -> Watcher {
        let id = format!("watch-{}-{}", broker.port, free_port());
        let mut o = MqttOptions::new(id, "127.0.0.1", broker.port);
        o.set_max_packet_size(Some(2_000_000));
        // persistent, so a broker restart loses nothing of what the test watches
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(600));
        let (client, mut conn) = Client::new(o, 100);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (m, c, f) = (messages.clone(), client.clone(), filter.to_string());
        thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c.subscribe(f.clone(), QoS::AtLeastOnce).unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => m.lock().unwrap().push(Received {
                        topic: String::from_utf8_lossy(&p.topic).into(),
                        payload: String::from_utf8_lossy(&p.payload).into(),
                        content_type: p.properties.and_then(|p| p.content_type),
                        at: Instant::now(),
                    }),
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("watcher subscribed");
        Watcher { messages, client }
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Messages whose relPath is `rel`.
    pub fn for_rel(&self, rel: &str) -> Vec<serde_json::Value> {
        self.snapshot()
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok())
            .filter(|v| v["relPath"] == rel)
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// Publishes raw payloads (QoS 1) and waits until the broker acknowledged them all.
pub fn publish_raw(broker: &Broker, items: &[(String, Vec<u8>)]) {
    publish_to(broker.port, items)
}

/// `publish_raw` to a broker's (plain, anonymous) listener on `port`.
pub fn publish_to(port: u16, items: &[(String, Vec<u8>)]) {
    let id = format!("pub-{port}-{}", free_port());
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(Some(2_000_000));
    let (client, mut conn) = Client::new(o, items.len() + 10);
    for (t, p) in items {
        client
            .publish(t.clone(), QoS::AtLeastOnce, false, p.clone())
            .unwrap();
    }
    let mut acked = 0;
    let end = Instant::now() + Duration::from_secs(60);
    while acked < items.len() && Instant::now() < end {
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            conn.recv_timeout(Duration::from_secs(1))
        {
            acked += 1;
        }
    }
    assert_eq!(
        acked,
        items.len(),
        "broker acknowledged every test publication"
    );
    let _ = client.disconnect();
    let _ = conn.recv_timeout(Duration::from_millis(200));
}
