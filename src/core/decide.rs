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
    /// Its relPath, validated (no leading `/`), when it got that far.
    pub rel: Option<String>,
    /// Seconds since its pubTime, when readable.
    pub lag: Option<f64>,
    pub verdict: Verdict,
}

impl Decision<'_> {
    fn refuse(r: Refusal) -> Self {
        Decision {
            msg: None,
            rel: None,
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
        rel: None,
        lag,
        verdict: Verdict::LagDrop,
    };
    if lag.is_some_and(|l| l > rules.lag_drop) {
        d.msg = Some(msg);
        return d;
    }
    let rel = match relpath::validate(&msg.rel_path) {
        Ok(r) => r.to_string(),
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
    } else if !rules.select.accepts(&rel) {
        Verdict::Refuse(Refusal::NotSelected)
    } else if msg.wis2.is_some() && stale(published, &rel, redelivered, local) {
        // WIS2 by data_id: a copy here as new as the message (its pubtime) stands
        Verdict::Duplicate
    } else {
        match &msg.file_op {
            Some(op) => file_op(op),
            None => file(&msg, &rel, redelivered, rules, local),
        }
    };
    d.msg = Some(msg);
    d.rel = Some(rel);
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
mod tests {
    use super::*;
    use crate::core::integrity::digest_of;

    /// pubTime of the fixtures, as epoch seconds (2026-11-23T06:51:46.406).
    const PUB: f64 = 1_795_416_706.406;

    static INLINE: &[u8] = br#"{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000",
        "relPath":"/2026112306/GTS/a.txt","integrity":{"method":"md5","value":"XUFAKrxLKna5cZ2REBfFkg=="},
        "content":{"encoding":"utf-8","value":"hello"}}"#;
    static DOWNLOAD: &[u8] = br#"{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000",
        "relPath":"2026112306/GTS/b.txt","integrity":{"method":"md5","value":"XUFAKrxLKna5cZ2REBfFkg=="}}"#;
    static UNVERIFIABLE: &[u8] = br#"{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000",
        "relPath":"2026112306/GTS/c.txt","integrity":{"method":"cod","value":"sha512"}}"#;
    static REMOVE: &[u8] = br#"{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000",
        "relPath":"2026112306/GTS/a.txt","fileOp":{"remove":""}}"#;
    static LINK: &[u8] = br#"{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000",
        "relPath":"2026112306/GTS/l","fileOp":{"link":"/etc/passwd"}}"#;
    static ESCAPE: &[u8] = br#"{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000",
        "relPath":"../../etc/passwd","integrity":{"method":"md5","value":"XUFAKrxLKna5cZ2REBfFkg=="}}"#;
    static NO_INTEGRITY: &[u8] = br#"{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000",
        "relPath":"2026112306/GTS/d.txt"}"#;

    /// A local copy of fixed facts, recording what it was asked.
    #[derive(Default)]
    struct Facts {
        same: bool,
        exists: bool,
        forwarded: bool,
        announced: bool,
        /// The pubtime of the copy here.
        here: Option<f64>,
        /// WIS2 ids seen.
        ids: Vec<String>,
        /// A file here with the same bytes.
        same_bytes: Option<String>,
        asked: Vec<&'static str>,
    }

    impl LocalCopy for Facts {
        fn matches(&mut self, _: &str, _: Method, _: &Digest) -> bool {
            self.asked.push("matches");
            self.same
        }
        fn exists(&mut self, _: &str) -> bool {
            self.asked.push("exists");
            self.exists
        }
        fn forwarded(&mut self, _: &str, _: &[u8]) -> bool {
            self.asked.push("forwarded");
            self.forwarded
        }
        fn announced(&mut self, _: &str, _: &Digest) -> bool {
            self.asked.push("announced");
            self.announced
        }
        fn pub_time(&mut self, _: &str) -> Option<f64> {
            self.asked.push("pub_time");
            self.here
        }
        fn same_bytes(&mut self, _: Method, _: &Digest) -> Option<String> {
            self.asked.push("same_bytes");
            self.same_bytes.clone()
        }
        fn seen_id(&mut self, id: &str) -> bool {
            self.asked.push("seen_id");
            if self.ids.iter().any(|i| i == id) {
                return true;
            }
            self.ids.push(id.to_string());
            false
        }
    }

    /// A WNM of the standard's shape: `rel` canonical, update or deletion.
    fn wnm(id: &str, pubtime: &str, rel: &str, integrity: bool) -> Vec<u8> {
        let sha = digest_of(Method::Sha256, b"hello").unwrap().to_base64();
        let integrity = if integrity {
            format!(r#","integrity":{{"method":"sha256","value":"{sha}"}}"#)
        } else {
            String::new()
        };
        format!(
            r#"{{"id":"{id}","conformsTo":["http://wis.wmo.int/spec/wnm/1/conf/core"],
            "type":"Feature","geometry":null,"properties":{{"pubtime":"{pubtime}",
            "datetime":null,"data_id":"ca-eccc-msc/data/core/weather/71628_1200"{integrity}}},
            "links":[{{"href":"http://up:8000/x/71628_1200.bufr4","rel":"{rel}"}}]}}"#
        )
        .into_bytes()
    }

    const WNM_PUB: &str = "2026-11-23T06:51:46.406Z";

    #[test]
    fn wis2_messages_are_judged_by_id_then_by_data_id_and_pubtime() {
        let sha = || digest_of(Method::Sha256, b"hello");
        let mut f = Facts::default();
        let first = wnm("id-1", WNM_PUB, "canonical", true);
        let d = {
            let select = Selection::default();
            let rules = defaults(&select);
            let d = decide(&first, false, PUB + 1.0, &rules, &mut f);
            (d.verdict, d.rel, d.lag)
        };
        assert_eq!(
            d.0,
            Verdict::Fetch {
                method: Method::Sha256,
                expected: sha()
            }
        );
        assert_eq!(
            d.1.as_deref(),
            Some("ca-eccc-msc/data/core/weather/71628_1200.bufr4"),
            "relPath: data_id with the link's extension"
        );
        assert!((d.2.unwrap() - 1.0).abs() < 1e-3, "lag from pubtime");
        // the same id again (another global broker): a duplicate, nothing else asked
        f.asked.clear();
        assert_eq!(judge(&first, false, PUB, &mut f), Verdict::Duplicate);
        assert_eq!(f.asked, ["seen_id"]);
        // redelivered: the id is not enough (its work may have died with the node)
        f.same = true;
        assert!(matches!(
            judge(&first, true, PUB, &mut f),
            Verdict::Reannounce { .. }
        ));
        // a new id (a global cache's copy), same data_id and pubtime, copy here: duplicate
        f.here = Some(PUB);
        f.same = false;
        let copy = wnm("id-2", WNM_PUB, "canonical", true);
        assert_eq!(judge(&copy, false, PUB, &mut f), Verdict::Duplicate);
        // an update with a newer pubtime replaces; an older one does not
        let newer = wnm("id-3", "2026-11-23T06:52:00Z", "update", true);
        assert!(matches!(
            judge(&newer, false, PUB, &mut f),
            Verdict::Fetch { .. }
        ));
        let older = wnm("id-4", "2026-11-23T06:50:00Z", "update", true);
        assert_eq!(judge(&older, false, PUB, &mut f), Verdict::Duplicate);
        // without integrity: a newer pubtime is a new version, hashed in our dialect
        let plain = wnm("id-5", "2026-11-23T06:53:00Z", "update", false);
        f.exists = true;
        assert_eq!(
            judge_with(&plain, false, PUB, &mut f, |r| r.format = Format::Wis2),
            Verdict::Fetch {
                method: Method::Sha512,
                expected: None
            }
        );
        // a deletion newer than the copy removes it; an older one leaves it
        let gone = wnm("id-6", "2026-11-23T07:00:00Z", "deletion", false);
        assert_eq!(judge(&gone, false, PUB, &mut f), Verdict::Apply(Op::Remove));
        let stale = wnm("id-7", "2026-11-23T06:00:00Z", "deletion", false);
        assert_eq!(judge(&stale, false, PUB, &mut f), Verdict::Duplicate);
    }

    /// The defaults of `meshnode peer`.
    fn defaults(select: &Selection) -> Rules<'_> {
        Rules {
            message_max: 500_000,
            lag_warn: 120.0,
            lag_drop: 7200.0,
            select,
            download: true,
            format: Format::WmoMesh,
        }
    }

    fn judge(payload: &[u8], dup: bool, now: f64, facts: &mut Facts) -> Verdict {
        judge_with(payload, dup, now, facts, |_| {})
    }

    fn judge_with(
        payload: &[u8],
        dup: bool,
        now: f64,
        facts: &mut Facts,
        tweak: impl FnOnce(&mut Rules<'_>),
    ) -> Verdict {
        let select = Selection::default();
        let mut rules = defaults(&select);
        tweak(&mut rules);
        decide(payload, dup, now, &rules, facts).verdict
    }

    fn md5_hello() -> Option<Digest> {
        digest_of(Method::Md5, b"hello")
    }

    #[test]
    fn new_files_are_stored_inline_or_fetched() {
        let mut f = Facts::default();
        assert_eq!(
            judge(INLINE, false, PUB + 1.0, &mut f),
            Verdict::StoreInline {
                method: Method::Md5,
                expected: md5_hello()
            }
        );
        assert_eq!(
            judge(DOWNLOAD, false, PUB + 1.0, &mut f),
            Verdict::Fetch {
                method: Method::Md5,
                expected: md5_hello()
            }
        );
        assert_eq!(f.asked, ["matches", "matches", "same_bytes"]);
    }

    #[test]
    fn the_same_bytes_under_another_name_are_copied_not_fetched() {
        let mut f = Facts {
            same_bytes: Some("2026112306/GTS/other.txt".into()),
            ..Facts::default()
        };
        assert_eq!(
            judge(DOWNLOAD, false, PUB, &mut f),
            Verdict::Copy {
                from: "2026112306/GTS/other.txt".into(),
                method: Method::Md5,
                expected: md5_hello().unwrap()
            }
        );
        // the only copy known is the file itself (replaced since): fetched
        f.same_bytes = Some("2026112306/GTS/b.txt".into());
        assert!(matches!(
            judge(DOWNLOAD, false, PUB, &mut f),
            Verdict::Fetch { .. }
        ));
        // nothing checkable announced: nothing to look up
        f.asked.clear();
        judge(UNVERIFIABLE, false, PUB, &mut f);
        assert!(!f.asked.contains(&"same_bytes"));
    }

    #[test]
    fn the_same_file_again_is_a_duplicate_unless_redelivered() {
        let mut f = Facts {
            same: true,
            ..Facts::default()
        };
        assert_eq!(judge(DOWNLOAD, false, PUB, &mut f), Verdict::Duplicate);
        assert_eq!(
            judge(DOWNLOAD, true, PUB, &mut f),
            Verdict::Reannounce {
                method: Method::Md5,
                digest: md5_hello().unwrap()
            }
        );
        // its announcement acknowledged before the crash: not announced twice
        f.announced = true;
        assert_eq!(judge(DOWNLOAD, true, PUB, &mut f), Verdict::Duplicate);
    }

    #[test]
    fn an_unverifiable_checksum_is_judged_by_name_and_hashed_in_our_dialect() {
        let mut here = Facts {
            exists: true,
            ..Facts::default()
        };
        assert_eq!(
            judge(UNVERIFIABLE, false, PUB, &mut here),
            Verdict::Duplicate
        );
        assert_eq!(here.asked, ["exists"]);
        let mut absent = Facts::default();
        let v = judge_with(UNVERIFIABLE, false, PUB, &mut absent, |r| {
            r.format = Format::Sr3
        });
        assert_eq!(
            v,
            Verdict::Fetch {
                method: Method::Sha512,
                expected: None
            }
        );
    }

    #[test]
    fn lag_over_lag_drop_is_dropped_before_anything_is_asked() {
        let mut f = Facts::default();
        let select = Selection::default();
        let rules = defaults(&select);
        let d = decide(DOWNLOAD, false, PUB + 7201.0, &rules, &mut f);
        assert_eq!(d.verdict, Verdict::LagDrop);
        assert!((d.lag.unwrap() - 7201.0).abs() < 1e-3);
        assert!(f.asked.is_empty());
        // under lag-drop: processed, the lag reported for the warning and the stats
        let d = decide(DOWNLOAD, false, PUB + 300.0, &rules, &mut f);
        assert!(matches!(d.verdict, Verdict::Fetch { .. }));
        assert_eq!(d.rel.as_deref(), Some("2026112306/GTS/b.txt"));
    }

    #[test]
    fn file_operations() {
        let mut f = Facts::default();
        assert_eq!(
            judge(REMOVE, false, PUB, &mut f),
            Verdict::Apply(Op::Remove)
        );
        assert_eq!(
            judge(LINK, false, PUB, &mut f),
            Verdict::Refuse(Refusal::Link("/etc/passwd".into()))
        );
        assert!(f.asked.is_empty(), "file operations need no facts");
    }

    #[test]
    fn refusals_name_what_was_wrong() {
        let mut f = Facts::default();
        let v = judge_with(DOWNLOAD, false, PUB, &mut f, |r| r.message_max = 100);
        assert!(matches!(
            v,
            Verdict::Refuse(Refusal::TooLarge { limit: 100, .. })
        ));
        let v = judge(b"{\"pubTime\": 3", false, PUB, &mut f);
        assert!(matches!(v, Verdict::Refuse(Refusal::Malformed(_))), "{v:?}");
        match judge(ESCAPE, false, PUB, &mut f) {
            Verdict::Refuse(r @ Refusal::RelPath { .. }) => {
                assert!(r.to_string().contains("'..'"), "{r}")
            }
            v => panic!("{v:?}"),
        }
        // the parser already refuses a file announcement without a checksum
        match judge(NO_INTEGRITY, false, PUB, &mut f) {
            Verdict::Refuse(Refusal::Malformed(e)) => assert!(e.contains("integrity"), "{e}"),
            v => panic!("{v:?}"),
        }
        let mut select = Selection::default();
        select.push("reject .*/GTS/.*").unwrap();
        let d = decide(DOWNLOAD, false, PUB, &defaults(&select), &mut f);
        assert_eq!(d.verdict, Verdict::Refuse(Refusal::NotSelected));
        assert!(
            f.asked.is_empty(),
            "nothing asked of the disk for a refusal"
        );
    }

    #[test]
    fn a_dispatcher_forwards_once() {
        let mut f = Facts::default();
        let v = judge_with(DOWNLOAD, false, PUB, &mut f, |r| r.download = false);
        assert_eq!(v, Verdict::Forward);
        f.forwarded = true;
        let v = judge_with(DOWNLOAD, false, PUB, &mut f, |r| r.download = false);
        assert_eq!(v, Verdict::Duplicate);
        assert_eq!(f.asked, ["forwarded", "forwarded"]);
    }
}
