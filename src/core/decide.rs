//! The decision about one upstream message, pure: the payload, facts about the local
//! copy (asked through `LocalCopy`, only when needed) and `now` in; a verdict out. The
//! flow then does what the verdict says (store, fetch, apply, announce, acknowledge).

use crate::core::integrity::{Digest, Method};
use crate::core::message::{self, FileOp, Format, Message};
use crate::core::relpath::{self, RelPathError};
use crate::core::select::Selection;
use std::fmt;

/// The flow's options that bear on decisions.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'c> {
    pub message_max: usize,
    pub lag_warn: f64,
    pub lag_drop: f64,
    pub select: &'c Selection,
    /// False: a dispatcher, forwarding without downloading.
    pub download: bool,
    /// The dialect written: its checksum is computed when the announced one cannot
    /// verify the bytes.
    pub format: Format,
}

/// What the flow knows of its own copy of a file (the recent record, the xattr, the
/// disk). Implemented by the flow; by fixtures in tests.
pub trait LocalCopy {
    /// Whether the local copy of `rel` has `digest` (by `method`).
    fn matches(&mut self, rel: &str, method: Method, digest: &Digest) -> bool;
    /// Whether a file named `rel` exists.
    fn exists(&mut self, rel: &str) -> bool;
    /// Whether this dispatcher forwarded `rel` with `key` lately.
    fn forwarded(&mut self, rel: &str, key: &[u8]) -> bool;
    /// Whether the announcement of `rel` with `digest` was acknowledged by this node's
    /// broker (the journal kept across restarts).
    fn announced(&mut self, rel: &str, digest: &Digest) -> bool;
    /// The pubtime of the local copy of `rel` (epoch seconds), when known: a file stored
    /// from a WIS2 message keeps its pubtime as its modification time.
    fn pub_time(&mut self, rel: &str) -> Option<f64>;
    /// Whether a WIS2 message `id` was seen lately (at least 24 h); records it.
    fn seen_id(&mut self, id: &str) -> bool;
    /// Another file here whose bytes have `digest` (by `method`), stored lately: the
    /// same bytes are copied, not fetched again.
    fn same_bytes(&mut self, method: Method, digest: &Digest) -> Option<String>;
    /// The pubTime (epoch seconds) of a removal of `rel` applied here lately, if one
    /// was: a file published before it is an old copy come the long way round.
    fn removed_at(&mut self, rel: &str) -> Option<f64>;
}

/// Why a message is refused: acknowledged, counted, logged, nothing else done.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    TooLarge { size: usize, limit: usize },
    Malformed(String),
    RelPath { why: RelPathError, rel: String },
    Link(String),
    Rename(String),
    NotSelected,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { size, limit } => {
                write!(f, "refused: {size} bytes, limit {limit} (message-max)")
            }
            Self::Malformed(e) => write!(f, "malformed message: {e}"),
            Self::RelPath { why, rel } => write!(f, "refused: {why}: {rel:?}"),
            Self::Link(t) => {
                write!(
                    f,
                    "link to {t:?} refused: links are not applied by this node"
                )
            }
            Self::Rename(o) => {
                write!(
                    f,
                    "rename from {o:?} refused: renames are not applied by this node"
                )
            }
            Self::NotSelected => write!(f, "not selected"),
        }
    }
}

/// What to do with a file operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Remove,
    Mkdir,
    Rmdir,
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Refuse(Refusal),
    /// Older than lag-drop: acknowledged unprocessed.
    LagDrop,
    /// Already here with the same checksum: acknowledged, not announced again.
    Duplicate,
    /// Already here, but the message is a redelivery and its announcement is not known
    /// to have been acknowledged (it may have died with the node): announced again.
    Reannounce {
        method: Method,
        digest: Digest,
    },
    /// A dispatcher passes it on unchanged.
    Forward,
    /// Write the inline content, computing `method`, verified against `expected`.
    StoreInline {
        method: Method,
        expected: Option<Digest>,
    },
    /// Download it, computing `method`, verified against `expected`.
    Fetch {
        method: Method,
        expected: Option<Digest>,
    },
    /// The same bytes are here under relPath `from`: copy them, verified against
    /// `expected`.
    Copy {
        from: String,
        method: Method,
        expected: Digest,
    },
    Apply(Op),
}

/// A message read and judged.
#[derive(Debug)]
pub struct Decision<'a> {
    /// The message, when it could be read.
    pub msg: Option<Message<'a>>,
    /// Where its validated relPath (no leading `/`) begins in `msg.rel_path`, when it
    /// got that far: an offset, not a copy (made for every message, duplicates too).
    pub rel_at: Option<usize>,
    /// Seconds since its pubTime, when readable.
    pub lag: Option<f64>,
    pub verdict: Verdict,
}

impl Decision<'_> {
    /// The validated relPath, when it got that far.
    pub fn rel(&self) -> Option<&str> {
        Some(&self.msg.as_ref()?.rel_path[self.rel_at?..])
    }

    fn refuse(r: Refusal) -> Self {
        Decision {
            msg: None,
            rel_at: None,
            lag: None,
            verdict: Verdict::Refuse(r),
        }
    }
}

/// Judges `payload`, received `now` (epoch seconds); `redelivered`: the broker's DUP.
pub fn decide<'a>(
    payload: &'a [u8],
    redelivered: bool,
    now: f64,
    rules: &Rules<'_>,
    local: &mut dyn LocalCopy,
) -> Decision<'a> {
    if payload.len() > rules.message_max {
        return Decision::refuse(Refusal::TooLarge {
            size: payload.len(),
            limit: rules.message_max,
        });
    }
    let msg = match message::parse(payload) {
        Ok(m) => m,
        Err(e) => return Decision::refuse(Refusal::Malformed(e.to_string())),
    };
    let published = crate::core::time::parse_time(&msg.pub_time);
    let lag = published.map(|t| now - t);
    let mut d = Decision {
        msg: None,
        rel_at: None,
        lag,
        verdict: Verdict::LagDrop,
    };
    if lag.is_some_and(|l| l > rules.lag_drop) {
        d.msg = Some(msg);
        return d;
    }
    let rel = match relpath::validate(&msg.rel_path) {
        Ok(r) => r,
        Err(why) => {
            d.verdict = Verdict::Refuse(Refusal::RelPath {
                why,
                rel: msg.rel_path.to_string(),
            });
            d.msg = Some(msg);
            return d;
        }
    };
    // WIS2: the same message id again (from another global broker, say) is done with;
    // not a redelivery, which may be a message whose work died with the node
    let seen = match &msg.wis2 {
        Some(w) if !redelivered => local.seen_id(&w.id),
        _ => false,
    };
    d.verdict = if seen {
        Verdict::Duplicate
    } else if !rules.select.accepts(rel) {
        Verdict::Refuse(Refusal::NotSelected)
    } else if msg.wis2.is_some() && stale(published, rel, redelivered, local) {
        // WIS2 by data_id: a copy here as new as the message (its pubtime) stands
        Verdict::Duplicate
    } else {
        match &msg.file_op {
            Some(op) => file_op(op),
            None => file(&msg, rel, published, redelivered, rules, local),
        }
    };
    // validation only strips a leading `/`
    d.rel_at = Some(msg.rel_path.len() - rel.len());
    d.msg = Some(msg);
    d
}

/// Whether a message published at `published` is no newer than the copy of `rel` here
/// (the copy's pubtime; 1 ms of slack for the file system's rounding). A redelivery of
/// the same version is not stale: its announcement may have died with the node, and the
/// checks of the file decide. False when either time is unknown.
fn stale(published: Option<f64>, rel: &str, redelivered: bool, local: &mut dyn LocalCopy) -> bool {
    match (published, local.pub_time(rel)) {
        (Some(t), Some(here)) if redelivered => t < here - 0.001,
        (Some(t), Some(here)) => t <= here + 0.001,
        _ => false,
    }
}

/// Whether `rel` was removed here at or after `published` (unknown times: no).
fn removed_since(published: Option<f64>, rel: &str, local: &mut dyn LocalCopy) -> bool {
    matches!((published, local.removed_at(rel)), (Some(t), Some(r)) if t <= r)
}

fn file_op(op: &FileOp<'_>) -> Verdict {
    match op {
        FileOp::Remove => Verdict::Apply(Op::Remove),
        FileOp::Mkdir => Verdict::Apply(Op::Mkdir),
        FileOp::Rmdir => Verdict::Apply(Op::Rmdir),
        FileOp::Link(t) => Verdict::Refuse(Refusal::Link(t.to_string())),
        FileOp::Rename(o) => Verdict::Refuse(Refusal::Rename(o.to_string())),
    }
}

fn file(
    msg: &Message<'_>,
    rel: &str,
    published: Option<f64>,
    redelivered: bool,
    rules: &Rules<'_>,
    local: &mut dyn LocalCopy,
) -> Verdict {
    // v03 without integrity is refused by the parser already (kept so no path can skip
    // the check); in WIS2 integrity is optional
    let integrity = msg.integrity.as_ref();
    if integrity.is_none() && msg.wis2.is_none() {
        return Verdict::Refuse(Refusal::Malformed("no integrity and no fileOp".into()));
    }
    let expected =
        integrity.and_then(|i| i.digest.as_ref().filter(|_| i.method.verifies_content()));
    if !rules.download {
        // remembered by what was announced: the checksum, else the pubTime
        let key = expected.map_or(msg.pub_time.as_bytes(), |d| d.as_bytes());
        return if local.forwarded(rel, key) {
            Verdict::Duplicate
        } else {
            Verdict::Forward
        };
    }
    match (expected, integrity) {
        (Some(want), Some(integrity)) if local.matches(rel, integrity.method, want) => {
            // a redelivery whose announcement is known acknowledged: exactly once
            if redelivered && !local.announced(rel, want) {
                Verdict::Reannounce {
                    method: integrity.method,
                    digest: want.clone(),
                }
            } else {
                Verdict::Duplicate
            }
        }
        // nothing checkable was announced: a file of that name counts as the same (in
        // WIS2 its pubtime was newer, checked before: a new version)
        (None, _) if msg.wis2.is_none() && local.exists(rel) => Verdict::Duplicate,
        // not here, but removed here since it was published (by a quicker path, or
        // while it waited for a retry): stored now, the file would come back and go on
        // round the mesh
        _ if removed_since(published, rel, local) => Verdict::Duplicate,
        _ => {
            let method = match (expected, integrity) {
                (Some(_), Some(i)) => i.method,
                _ => rules.format.default_method(),
            };
            let expected = expected.cloned();
            if msg.content.is_some() {
                return Verdict::StoreInline { method, expected };
            }
            // the same bytes under another name here: not fetched twice
            let copy = expected
                .as_ref()
                .and_then(|e| Some((local.same_bytes(method, e)?, e)))
                .filter(|(from, _)| from != rel);
            match copy {
                Some((from, e)) => Verdict::Copy {
                    from,
                    method,
                    expected: e.clone(),
                },
                None => Verdict::Fetch { method, expected },
            }
        }
    }
}

#[cfg(test)]
mod tests;
