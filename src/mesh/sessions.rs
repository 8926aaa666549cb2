//! A flow's MQTT sessions for one run: the post session, the audit session and the
//! upstream subscriptions, all polled by one thread (`Links`), and the queue by which
//! they hand the flow its messages. Opened in that order (the audit session's backlog
//! is journaled before the first redelivery is judged); closed together: the acks
//! queued first, then the disconnects, then the joins.

use super::announced::Announced;
use super::audit::{self, Auditor};
use super::links::Links;
use super::mqtt::{self, Inbound, Poster, SessionOptions, Subscriber};
use super::peer::PeerConfig;
use super::workers::Workers;
use crate::core::topic;
use flume::{Receiver, Sender};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;

/// Room in the queue beyond the messages: the wake-ups of the post connection and the
/// workers.
pub const QUEUE_CAPACITY: usize = 64;
/// Messages the queue holds at most, whatever the receive maximums: beyond it the
/// connection waits and TCP holds the rest at the broker. So the node's memory does
/// not grow with `--inflight` (the drain benchmark's inline messages of 3 KB at
/// `--inflight 500`: 8.5 MB peak RSS with the receive maximum queued, 7.2 MB with 64).
pub const QUEUE_MESSAGES: usize = 64;
/// Receive maximum of the audit session: it may lag a little behind the post
/// session; fewer in flight, smaller bursts in memory.
pub const AUDIT_INFLIGHT: u16 = 64;

pub(super) struct Sessions {
    pub rx: Receiver<Inbound>,
    pub poster: Option<Poster>,
    pub auditor: Option<Auditor>,
    pub subs: Vec<Subscriber>,
    /// Subscription filters, one per `--subtopic`.
    pub filters: Vec<String>,
    links: Links,
}

impl Sessions {
    /// Opens the sessions of `cfg`'s flow; also returns a sender for wake-ups (the
    /// workers'). The audit session journals into `announced`.
    pub fn open(
        cfg: &PeerConfig,
        announced: &mut Announced,
        stop: &Arc<AtomicBool>,
    ) -> (Sessions, Sender<Inbound>) {
        let n = cfg.brokers.len();
        // the flow takes messages into its window as they come: the queue only smooths
        // the hand-over (and carries the wake-ups of the post connection and workers).
        // Up to `QUEUE_MESSAGES` it has room for every message the brokers may send
        // unacknowledged; a connection finding it full waits for room (TCP holds the
        // rest back at the broker), a while, then leaves the excess to the broker (see
        // `mqtt::subscriber_loop`): mosquitto 2.0.11 sends beyond the receive maximum
        // (a resumed session: its whole queue)
        let (tx, rx) = flume::bounded(queue_capacity(cfg.inflight, n));
        let filters: Vec<String> = cfg
            .subtopics
            .iter()
            .map(|s| {
                let f = topic::subscription(&cfg.exchange, &cfg.topic_prefix, s);
                match &cfg.share {
                    Some(group) => topic::shared(group, &f),
                    None => f,
                }
            })
            .collect();
        let links = Links::start("mqtt");
        let poster = cfg.post_broker.clone().map(|url| {
            let mut s = session_options(cfg, "-post");
            // rumqttc re-sends unacknowledged publications on a resumed session
            s.clean_start = false;
            Poster::spawn(&links, &url, &s, tx.clone(), stop.clone())
        });
        let auditor = start_audit(cfg, &links, announced, stop);
        let subs = cfg
            .brokers
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let suffix = if n > 1 {
                    format!("-{i}")
                } else {
                    String::new()
                };
                mqtt::spawn_subscriber(
                    &links,
                    i,
                    url,
                    &session_options(cfg, &suffix),
                    filters.clone(),
                    tx.clone(),
                    stop.clone(),
                )
            })
            .collect();
        let s = Sessions {
            rx,
            poster,
            auditor,
            subs,
            filters,
            links,
        };
        (s, tx)
    }

    /// Disconnects every session (rumqttc handles requests in order: the acks queued
    /// before leave first) and waits for their tasks and for `workers`. The node's stop
    /// flag must be set: downloads in progress are abandoned, their messages come again.
    pub fn close(self, workers: Workers) {
        for s in &self.subs {
            let _ = s.client.try_disconnect();
        }
        if let Some(p) = &self.poster {
            p.disconnect();
        }
        if let Some(a) = &self.auditor {
            a.disconnect();
        }
        // drain so no connection task stays blocked on a full queue
        let rx = self.rx;
        let drain = thread::spawn(move || while rx.recv().is_ok() {});
        for s in self.subs {
            s.task.join();
        }
        if let Some(p) = self.poster {
            p.task.join();
        }
        if let Some(a) = self.auditor {
            a.task.join();
        }
        workers.join();
        let _ = drain.join();
        drop(self.links);
    }
}

/// The capacity of a flow's queue for `n` upstream sessions of receive maximum
/// `inflight`.
pub fn queue_capacity(inflight: u16, n: usize) -> usize {
    (usize::from(inflight) * n).min(QUEUE_MESSAGES) + QUEUE_CAPACITY
}

/// The options of the flow's session named by `suffix` ("-post", "-audit", "-1"...).
pub fn session_options(cfg: &PeerConfig, suffix: &str) -> SessionOptions {
    let id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| cfg.default_client_id());
    SessionOptions {
        client_id: format!("{id}{suffix}"),
        clean_start: cfg.clean_session,
        session_expiry: cfg.session_expiry,
        receive_maximum: cfg.inflight,
        // room for the MQTT header and topic beside the message itself
        max_packet: cfg.message_max.saturating_add(64 * 1024),
        keepalive: cfg.keepalive,
    }
}

/// Starts the audit session on the post broker (`exactly-once`), its backlog
/// journaled before the upstream subscriptions, whose redeliveries the journal then
/// judges.
fn start_audit(
    cfg: &PeerConfig,
    links: &Links,
    announced: &mut Announced,
    stop: &Arc<AtomicBool>,
) -> Option<Auditor> {
    let url = cfg.post_broker.clone().filter(|_| cfg.exactly_once)?;
    let mut s = session_options(cfg, "-audit");
    s.clean_start = false;
    s.receive_maximum = s.receive_maximum.min(AUDIT_INFLIGHT);
    let exchanges: Vec<String> = match cfg.post_exchange_split {
        n if n > 1 => (0..n)
            .map(|k| format!("{}{k:02}", cfg.post_exchange))
            .collect(),
        _ => vec![cfg.post_exchange.clone()],
    };
    let filters = audit::filters(&exchanges, cfg.post_prefix(), "");
    Some(audit::start(
        links,
        &url,
        &s,
        filters,
        announced,
        stop.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_holds_every_unacknowledged_message_up_to_a_bound() {
        // small receive maximums: all of them, so a full queue means a broker sent
        // beyond its receive maximum
        assert_eq!(queue_capacity(5, 1), 5 + QUEUE_CAPACITY);
        assert_eq!(queue_capacity(30, 2), 60 + QUEUE_CAPACITY);
        // large ones: the node's memory does not grow with them (TCP holds the rest)
        assert_eq!(queue_capacity(500, 1), QUEUE_MESSAGES + QUEUE_CAPACITY);
        assert_eq!(queue_capacity(500, 3), QUEUE_MESSAGES + QUEUE_CAPACITY);
        // the node's default (100) minus the wake-ups' room is never full in practice
        assert!(queue_capacity(100, 1) >= 100);
    }
}
