//! The world the engine's simulation runs in: the messages, the upstream brokers and
//! the retry queue, as models.

use crate::core::integrity::Digest;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift): the simulations need no crate.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(super) fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// A message as the brokers hold it: which file version, from which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Msg {
    pub(super) id: u64,
    pub(super) rel: u64,
    pub(super) version: u64,
    pub(super) origin: usize,
    pub(super) inline: bool,
}

impl Msg {
    pub(super) fn payload(&self) -> Bytes {
        let m = self;
        let text = format!(
            "{} {} {} {} {}",
            m.id,
            m.rel,
            m.version,
            m.origin,
            u8::from(m.inline)
        );
        Bytes::from(text)
    }
    pub(super) fn parse(payload: &[u8]) -> Msg {
        let s = std::str::from_utf8(payload).expect("text");
        let f: Vec<u64> = s.split(' ').map(|x| x.parse().expect("a number")).collect();
        Msg {
            id: f[0],
            rel: f[1],
            version: f[2],
            origin: f[3] as usize,
            inline: f[4] == 1,
        }
    }
    pub(super) fn file(&self) -> (u64, u64) {
        (self.rel, self.version)
    }
}

pub(super) fn rel_name(rel: u64) -> String {
    format!("r{rel}")
}

/// An upstream broker: messages to deliver, and those delivered and not acknowledged
/// (by packet id), delivered again on a new connection.
#[derive(Default)]
pub(super) struct Broker {
    pub(super) fresh: VecDeque<Msg>,
    pub(super) unacked: BTreeMap<u16, Msg>,
    pub(super) redeliver: VecDeque<u16>,
    pub(super) next_pkid: u16,
    pub(super) epoch: u32,
    /// The last packet id acknowledged on this connection: acks go in order.
    pub(super) last_acked: Option<u16>,
}

pub(super) struct Entry {
    pub(super) msg: Msg,
    pub(super) busy: bool,
    pub(super) due: Instant,
    pub(super) reloaded: bool,
    pub(super) backoff: Duration,
}

/// The retry queue: kept on disk, so it outlives a crash.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) entries: BTreeMap<u64, Entry>,
    pub(super) next: u64,
}

impl Queue {
    pub(super) fn push(&mut self, msg: Msg, now: Instant) -> u64 {
        self.next += 1;
        self.entries.insert(
            self.next,
            Entry {
                msg,
                busy: false,
                due: now + Duration::from_secs(1),
                reloaded: false,
                backoff: Duration::from_secs(1),
            },
        );
        self.next
    }
    pub(super) fn later(&mut self, id: u64, pause: Option<Duration>, now: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.busy = false;
            let p = pause.unwrap_or_else(|| {
                e.backoff = (e.backoff * 2).min(Duration::from_secs(8));
                e.backoff
            });
            e.due = now + p;
        }
    }
    pub(super) fn again(&mut self, id: u64, now: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.busy = false;
            e.reloaded = true;
            e.due = now;
        }
    }
    pub(super) fn wake(&mut self, origin: usize, now: Instant) {
        for e in self.entries.values_mut() {
            if e.msg.origin == origin && !e.busy {
                e.due = now;
            }
        }
    }
    pub(super) fn holds(&self, file: (u64, u64)) -> bool {
        self.entries.values().any(|e| e.msg.file() == file)
    }
}

pub(super) fn digest() -> Digest {
    Digest::from_slice(&[7; 32]).expect("a digest")
}
