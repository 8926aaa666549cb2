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
    /// The pubtime of a removal applied here.
    removed: Option<f64>,
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
    fn removed_at(&mut self, _: &str) -> Option<f64> {
        self.asked.push("removed_at");
        self.removed
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
        let rel = d.rel().map(str::to_string);
        (d.verdict, rel, d.lag)
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
    // a removal here is asked of new files only (a duplicate costs no lookup)
    assert_eq!(
        f.asked,
        [
            "matches",
            "removed_at",
            "matches",
            "removed_at",
            "same_bytes"
        ]
    );
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
    assert_eq!(d.rel(), Some("2026112306/GTS/b.txt"));
    // a leading `/` (the array form, some v03 senders) is not part of it
    let d = decide(INLINE, false, PUB + 300.0, &rules, &mut f);
    assert!(matches!(d.verdict, Verdict::StoreInline { .. }));
    assert_eq!(d.rel(), Some("2026112306/GTS/a.txt"));
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

#[test]
fn a_file_older_than_its_removal_here_is_not_stored_again() {
    let select = Selection::default();
    let rules = defaults(&select);
    // removed here after the file was published: an old copy, come the long way
    let mut f = Facts {
        removed: Some(PUB + 1.0),
        ..Facts::default()
    };
    let d = decide(INLINE, false, PUB, &rules, &mut f);
    assert_eq!(d.verdict, Verdict::Duplicate);
    // redelivered too: the removal stands
    assert_eq!(
        decide(INLINE, true, PUB, &rules, &mut f).verdict,
        Verdict::Duplicate
    );
    // published after the removal: a new version of the file
    f.removed = Some(PUB - 1.0);
    assert!(matches!(
        decide(INLINE, false, PUB, &rules, &mut f).verdict,
        Verdict::StoreInline { .. }
    ));
    // the removal itself again is applied again (nothing to do, or announced if a
    // redelivery): tombstones judge files only
    f.removed = Some(PUB + 1.0);
    assert_eq!(
        decide(REMOVE, false, PUB, &rules, &mut f).verdict,
        Verdict::Apply(Op::Remove)
    );
}
