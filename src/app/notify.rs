//! systemd's notification protocol (`sd_notify`): a datagram of `KEY=value` lines to the
//! socket named by `$NOTIFY_SOCKET`. The node says `READY=1` once every flow runs its
//! loop and the server listens, keeps `STATUS=` to the flows' one-line state, and sends
//! `WATCHDOG=1` only while every flow's loop is making progress, so that systemd
//! restarts a node whose flow hangs (`WatchdogSec=` in the unit).

use crate::mesh::stats::{Board, FlowReport};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the notifications go, and how often the watchdog wants to hear.
pub struct Notifier {
    socket: UnixDatagram,
    to: Target,
    /// The watchdog interval systemd gave (`$WATCHDOG_USEC`), if any: pings go at half
    /// of it, and a flow whose loop has not reported within it counts as hung.
    pub watchdog: Option<Duration>,
}

enum Target {
    Path(PathBuf),
    /// A Linux abstract socket (`@name`).
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service; None outside one.
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = name.as_encoded_bytes();
        let to = match bytes.strip_prefix(b"@") {
            Some(rest) => Target::Abstract(rest.to_vec()),
            None => Target::Path(PathBuf::from(&name)),
        };
        let socket = UnixDatagram::unbound().ok()?;
        // the watchdog is ours only when systemd meant this process
        let for_us = std::env::var("WATCHDOG_PID")
            .map_or(true, |p| p.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&us| us > 0 && for_us)
            .map(Duration::from_micros);
        Some(Notifier {
            socket,
            to,
            watchdog,
        })
    }

    /// Sends `text` (lines of `KEY=value`); a failure is logged once by the caller's
    /// next attempt, never fatal: the node runs without systemd as well.
    pub fn send(&self, text: &str) -> std::io::Result<()> {
        match &self.to {
            Target::Path(p) => self.socket.send_to(text.as_bytes(), p).map(drop),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.socket.send_to_addr(text.as_bytes(), &addr).map(drop)
            }
        }
    }
}

/// What the node tells systemd, from the flows' reports: pure, `now` passed in.
#[derive(Debug)]
pub struct Watch {
    ready: bool,
    last_status: String,
    /// A flow's loop is taken as hung once its report is older than this.
    hung_after: Duration,
}

/// A flow's loop is taken as hung once its report is older than this, without a
/// watchdog interval from systemd (the status says so; nothing else happens).
pub const HUNG_AFTER: Duration = Duration::from_secs(30);

impl Default for Watch {
    fn default() -> Watch {
        Watch::new(HUNG_AFTER)
    }
}

impl Watch {
    pub fn new(hung_after: Duration) -> Watch {
        Watch {
            ready: false,
            last_status: String::new(),
            hung_after,
        }
    }

    /// The message to send now, if any: `READY=1` the first time every flow of
    /// `flows` has reported (the server listens already: the node is started after
    /// it), `STATUS=` when the state line changed, `WATCHDOG=1` when `ping` and every
    /// flow reported within `hung_after`.
    pub fn tick(&mut self, board: &Board, flows: &[String], now: Instant, ping: bool) -> String {
        let b = board.lock().unwrap_or_else(|p| p.into_inner());
        let reports: Vec<(&String, Option<&FlowReport>)> =
            flows.iter().map(|f| (f, b.get(f))).collect();
        let mut out = String::new();
        if !self.ready && reports.iter().all(|(_, r)| r.is_some()) {
            self.ready = true;
            out.push_str("READY=1\n");
        }
        let status = status_line(&reports, now, self.hung_after);
        if status != self.last_status {
            out.push_str(&format!("STATUS={status}\n"));
            self.last_status = status;
        }
        let alive = reports.iter().all(|(_, r)| {
            r.and_then(|r| r.at)
                .is_some_and(|t| now.saturating_duration_since(t) < self.hung_after)
        });
        if ping && self.ready && alive {
            out.push_str("WATCHDOG=1\n");
        }
        out
    }
}

/// `flow a: running, 1 broker of 1 connected, 120 messages; flow b: ...`
fn status_line(
    reports: &[(&String, Option<&FlowReport>)],
    now: Instant,
    hung_after: Duration,
) -> String {
    if reports.is_empty() {
        return "serving; no flow".into();
    }
    let parts: Vec<String> = reports
        .iter()
        .map(|(name, r)| match r {
            None => format!("flow {name}: starting"),
            Some(r) => {
                let up = r.brokers.iter().filter(|(_, c, _)| *c).count();
                let hung =
                    r.at.is_none_or(|t| now.saturating_duration_since(t) >= hung_after);
                let state = if hung { "not progressing" } else { r.state() };
                format!(
                    "flow {name}: {state}, {up} of {} brokers connected, {} messages",
                    r.brokers.len(),
                    r.stats.messages
                )
            }
        })
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(at: Instant, connected: bool, messages: u64) -> FlowReport {
        let mut r = FlowReport {
            at: Some(at),
            brokers: vec![("mqtt://up".into(), connected, 1)],
            ..Default::default()
        };
        r.stats.messages = messages;
        r
    }

    #[test]
    fn ready_once_every_flow_reported_then_pings_only_while_all_progress() {
        let t0 = Instant::now();
        let board = Board::default();
        let flows = vec!["a".to_string(), "b".to_string()];
        let mut w = Watch::default();
        board
            .lock()
            .unwrap()
            .insert("a".into(), report(t0, true, 1));
        let first = w.tick(&board, &flows, t0, true);
        assert!(
            !first.contains("READY") && !first.contains("WATCHDOG"),
            "{first}"
        );
        assert!(first.contains("flow b: starting"), "{first}");
        board
            .lock()
            .unwrap()
            .insert("b".into(), report(t0, false, 0));
        let ready = w.tick(&board, &flows, t0, true);
        assert!(ready.starts_with("READY=1\n"), "{ready}");
        assert!(ready.contains("WATCHDOG=1"), "{ready}");
        assert!(ready.contains("0 of 1 brokers connected"), "{ready}");
        // nothing changed: a ping only, no status again
        assert_eq!(w.tick(&board, &flows, t0, true), "WATCHDOG=1\n");
        assert_eq!(w.tick(&board, &flows, t0, false), "");
        // flow a stops reporting: no more pings, and the status says so
        let later = t0 + HUNG_AFTER;
        board
            .lock()
            .unwrap()
            .insert("b".into(), report(later, false, 0));
        let hung = w.tick(&board, &flows, later, true);
        assert!(!hung.contains("WATCHDOG"), "{hung}");
        assert!(hung.contains("flow a: not progressing"), "{hung}");
        assert!(!hung.contains("READY"), "ready is said once: {hung}");
    }

    #[test]
    fn a_node_without_flows_is_ready_at_once() {
        let mut w = Watch::default();
        let out = w.tick(&Board::default(), &[], Instant::now(), true);
        assert_eq!(out, "READY=1\nSTATUS=serving; no flow\nWATCHDOG=1\n");
    }
}
