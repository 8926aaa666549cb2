//! Field injection across dialects (hardening issue, item 1): a message of every
//! dialect whose free-form members are named like the reserved fields of every other
//! dialect is written in every format, read again and written again; no reserved field
//! may take an injected value, and what is written must read back (no member twice).

use super::*;
use crate::core::integrity::digest_of;
use crate::core::message::{members, parse};

/// Hostile values, one per name any dialect reserves.
fn hostile_members() -> Vec<(&'static str, &'static str)> {
    let mut names: Vec<&str> = Vec::new();
    for list in [
        &members::V03_WRITTEN[..],
        &members::WNM_MARKS,
        &members::SR3_MEANING,
        &members::WIS2_CARRIED,
        &members::WNM_WRITTEN,
        &["id", "links", "version", "cache", "producer"],
    ] {
        for n in list {
            if !names.contains(n) {
                names.push(n);
            }
        }
    }
    names
        .into_iter()
        .map(|n| {
            let v = match n {
                "fileOp" => r#"{"remove":""}"#,
                "integrity" | "identity" => {
                    r#"{"method":"md5","value":"1B2M2Y8AsgTpgAmY7PhCfg=="}"#
                }
                "content" => r#"{"encoding":"utf-8","value":"evil"}"#,
                "properties" => r#"{"fileOp":{"remove":""}}"#,
                "type" => r#""Feature""#,
                "conformsTo" => r#"["http://wis.wmo.int/spec/wnm/1/conf/core"]"#,
                "size" => "7777",
                "geometry" => r#""not a geometry""#,
                "datetime" | "start_datetime" | "end_datetime" => r#""2024-01-02T037:00:00Z""#,
                _ => r#""x/evil.txt""#,
            };
            (n, v)
        })
        .collect()
}

fn members_json(skip: &[&str]) -> String {
    hostile_members()
        .iter()
        .filter(|(k, _)| !skip.contains(k))
        .map(|(k, v)| format!(",\"{k}\":{v}"))
        .collect()
}

const SHA512_HELLO: &str =
    "m3HSJL1i83hdltRq0+o9czGb+8KJDKra4t/3JRlnPKcjI8PZm6XBHXx6zG4UuMXaDEZjR1wuXDre9G9zvN7AQw==";
const MD5_HELLO: &str = "XUFAKrxLKna5cZ2REBfFkg==";

/// One upstream message of each dialect, each stuffed with hostile free-form members;
/// every one announces `a/b.txt` holding `hello`.
fn sources() -> Vec<(&'static str, String)> {
    // a v03 message's free-form members are the names its reader does not take
    let v03_taken: Vec<&str> = members::V03_WRITTEN
        .into_iter()
        .chain(members::WNM_MARKS)
        .collect();
    let demo = format!(
        r#"{{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000","relPath":"a/b.txt","integrity":{{"method":"md5","value":"{MD5_HELLO}"}}{}}}"#,
        members_json(&v03_taken)
    );
    let sr3 = format!(
        r#"{{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000","relPath":"a/b.txt","identity":{{"method":"md5","value":"{MD5_HELLO}"}}{}}}"#,
        members_json(&v03_taken)
    );
    let array = format!(
        r#"["20261123065146.406","http://up:8000","/a/b.txt",{{"sum":"d,5d41402abc4b2a76b9719d911017c592"{}}}]"#,
        members_json(&["sum", "parts", "link"])
    );
    // what a WNM's reader takes itself (global-cache it leaves free-form: injected too)
    let wnm_taken: Vec<&str> = members::WNM_WRITTEN
        .into_iter()
        .filter(|n| *n != "global-cache")
        .collect();
    let wnm = format!(
        r#"{{"id":"6f5a1c9e-0000-4000-8000-00000000000a","conformsTo":["http://wis.wmo.int/spec/wnm/1/conf/core"],"type":"Feature","geometry":null,
          "properties":{{"pubtime":"2026-11-23T06:51:46.406Z","datetime":null,"data_id":"a/b","integrity":{{"method":"sha512","value":"{SHA512_HELLO}"}}{}}},
          "links":[{{"href":"https://up.example/b.txt","rel":"canonical"}}]}}"#,
        members_json(&wnm_taken)
    );
    vec![("demo", demo), ("sr3", sr3), ("array", array), ("wnm", wnm)]
}

fn voice(format: Format) -> Voice<'static> {
    Voice {
        format,
        base_url: "http://me:8000/data",
        encoding: Encoding::Guess,
        id: "6f5a1c9e-0000-4000-8000-00000000000b",
    }
}

/// Re-announces `m` as a held file (the bytes of `hello`) in `format`.
fn reannounce(format: Format, m: &Message<'_>) -> Vec<u8> {
    let (method, value) = match format {
        Format::WmoMesh => (Method::Md5, MD5_HELLO),
        _ => (Method::Sha512, SHA512_HELLO),
    };
    let rel = m.rel_path.trim_start_matches('/');
    let held = Held {
        rel,
        pub_time: &m.pub_time,
        method,
        value,
        size: 5,
        inline: None,
    };
    let mut out = Vec::new();
    voice(format).file(&mut out, &held, Some(m)).unwrap();
    out
}

/// A member of `m` that a dialect reserves and that holds an injected value. The
/// array form's headers named like sr3's fields are v02's fields of the same meaning:
/// forwarded (`v02`).
fn injected(m: &Message<'_>, v02: bool) -> Option<String> {
    let evil = |v: &str| v.contains("evil") || v.contains("037:00") || v.contains("not a geo");
    // a WNM's unknown properties are its own free-form members, forwarded as they came
    let v03_extra = if m.wis2.is_none() { &m.extra[..] } else { &[] };
    for (k, v) in v03_extra {
        let reserved = members::WIS2_CARRIED.contains(&k.as_ref())
            || (!v02 && members::SR3_MEANING.contains(&k.as_ref()))
            || members::WNM_WRITTEN.contains(&k.as_ref());
        if reserved && evil(v.get()) {
            return Some(format!("{k}: {}", v.get()));
        }
    }
    if let Some(w) = &m.wis2 {
        if w.data_id.contains("evil") || w.metadata_id.as_deref().is_some_and(evil) {
            return Some(format!(
                "data_id {} / metadata_id {:?}",
                w.data_id, w.metadata_id
            ));
        }
        if evil(w.geometry.get()) || w.times.iter().any(|(_, v)| evil(v.get())) {
            return Some("geometry or a time".into());
        }
    }
    None
}

/// What every announcement of `a/b.txt` written here must say, whatever was injected.
/// `trusted`: the message came from a v03 source, whose own unknown members are
/// forwarded as they came (the v03 rule), so only the fields this node writes count.
fn check(label: &str, out: &[u8], trusted: bool) {
    let v02 = label.starts_with("array");
    let text = String::from_utf8_lossy(out);
    let m = parse(out).unwrap_or_else(|e| panic!("{label}: unreadable: {e}: {text}"));
    assert_eq!(m.rel_path, "a/b.txt", "{label}: {text}");
    assert_eq!(m.file_op, None, "{label}: {text}");
    assert!(m.content.is_none(), "{label}: {text}");
    assert_eq!(m.size, Some(5), "{label}: {text}");
    let i = m.integrity.as_ref().expect("integrity");
    assert_eq!(i.digest, digest_of(i.method, b"hello"), "{label}: {text}");
    let t = time::parse_time(&m.pub_time).or_else(|| time::parse_rfc3339(&m.pub_time));
    let want = time::parse_rfc3339("2026-11-23T06:51:46.406Z").unwrap();
    assert!(
        t.is_some_and(|t| (t - want).abs() < 0.001),
        "{label}: {text}"
    );
    if !trusted {
        if let Some(what) = injected(&m, v02) {
            panic!("{label}: {what} came from a free-form member: {text}");
        }
    }
    if let Some(w) = &m.wis2 {
        // a WNM's data_id is the relPath, or the WNM's own, never an injected one
        assert!(
            matches!(w.data_id.as_ref(), "a/b" | "a/b.txt"),
            "{label}: {text}"
        );
    }
}

#[test]
fn no_free_form_member_becomes_a_field_of_another_dialect() {
    for (name, src) in sources() {
        let m = parse(src.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.rel_path.trim_start_matches('/'), "a/b.txt", "{name}");
        let trusted = matches!(name, "demo" | "sr3");
        for f1 in [Format::WmoMesh, Format::Sr3, Format::Wis2] {
            let out1 = reannounce(f1, &m);
            let label = format!("{name} -> {f1:?}");
            check(&label, &out1, trusted);
            // and one node further on
            let m2 = parse(&out1).unwrap();
            for f2 in [Format::WmoMesh, Format::Sr3, Format::Wis2] {
                check(&format!("{label} -> {f2:?}"), &reannounce(f2, &m2), trusted);
            }
        }
    }
}

#[test]
fn a_forward_never_takes_a_field_from_free_form_members() {
    for (name, src) in sources() {
        let m = parse(src.as_bytes()).unwrap();
        for f in [Format::WmoMesh, Format::Sr3, Format::Wis2] {
            let mut out = Vec::new();
            let value = m.integrity.as_ref().and_then(|i| i.digest.as_ref());
            let value = value.map(|d| d.to_base64()).unwrap_or_default();
            let id = "6f5a1c9e-0000-4000-8000-00000000000c";
            forward(&mut out, f, &m, "a/b.txt", &value, id).unwrap();
            let text = String::from_utf8_lossy(&out);
            let again = parse(&out).unwrap_or_else(|e| panic!("{name} -> {f:?}: {e}: {text}"));
            assert_eq!(again.rel_path, "a/b.txt", "{name} -> {f:?}: {text}");
            assert_eq!(again.file_op, None, "{name} -> {f:?}: {text}");
            assert!(again.content.is_none(), "{name} -> {f:?}: {text}");
            if !matches!(name, "demo" | "sr3") {
                assert_eq!(
                    injected(&again, name == "array"),
                    None,
                    "{name} -> {f:?}: {text}"
                );
            }
        }
    }
}

#[test]
fn a_member_named_twice_is_refused_by_name() {
    let e = parse(br#"{"pubTime":"20261123T000000","baseUrl":"http://h/","relPath":"a","relPath":"b","integrity":{"method":"md5","value":"XUFAKrxLKna5cZ2REBfFkg=="}}"#).unwrap_err();
    assert!(e.0.contains("\"relPath\" appears twice"), "{e}");
    let wnm = sources().pop().unwrap().1.replacen(
        r#""datetime":null,"#,
        r#""datetime":null,"datetime":null,"#,
        1,
    );
    let e = parse(wnm.as_bytes()).unwrap_err();
    assert!(
        e.0.contains("properties") && e.0.contains("appears twice"),
        "{e}"
    );
}

/// The fuzzer's finding: an array-form header named `integrity` replaced the checksum
/// in the v03 output.
#[test]
fn an_array_header_named_integrity_does_not_replace_the_checksum() {
    let src = br#"["20190130033826.740083", "http://h:8000/data", "/2019013003/GTt", {"sum": "d,b1946ac92492d2347c6235b4d2611184", "integrity":{"method":"md5","value":"XUFAKrxLKna5cZ2REBfFkg=="}}]"#;
    let m = parse(src).unwrap();
    let mut out = Vec::new();
    let value = m
        .integrity
        .as_ref()
        .unwrap()
        .digest
        .as_ref()
        .unwrap()
        .to_base64();
    forward(&mut out, Format::WmoMesh, &m, "2019013003/GTt", &value, "").unwrap();
    let again = parse(&out).unwrap();
    assert_eq!(
        again.integrity.unwrap().digest,
        digest_of(Method::Md5, b"hello\n")
    );
}

/// Found by fuzzing: a v03 message with a 9 KB unknown member, re-announced as WIS2,
/// made a WNM over the standard's 8 KB, which every WNM reader (this one too) refuses.
/// Now the free-form members give way; a small one is still carried.
#[test]
fn a_wnm_written_stays_within_the_standards_size_whatever_it_carries() {
    let big = "x".repeat(9000);
    let base = r#"{"pubTime":"20261123T065146.406","baseUrl":"http://peer:8000/","relPath":"a/b.txt","integrity":{"method":"md5","value":"XUFAKrxLKna5cZ2REBfFkg=="}"#;
    let large = format!(r#"{base},"note":"{big}"}}"#);
    let small = format!(r#"{base},"note":"short"}}"#);
    let m = parse(large.as_bytes()).unwrap();
    let out = reannounce(Format::Wis2, &m);
    assert!(
        out.len() <= crate::core::message::WNM_MAX,
        "{} bytes",
        out.len()
    );
    let again = parse(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.wis2.as_ref().unwrap().data_id, "a/b.txt");
    let kept = reannounce(Format::Wis2, &parse(small.as_bytes()).unwrap());
    assert!(
        String::from_utf8_lossy(&kept).contains(r#""note":"short""#),
        "a small member is carried"
    );
}

/// Found by fuzzing: a relPath of kilobytes makes even the bare WNM (data_id and link)
/// longer than the standard allows: nothing is written, and the writer says why.
#[test]
fn a_wnm_that_cannot_fit_is_not_written() {
    let rel = format!("a/{}.txt", "b".repeat(5000));
    let text = format!(
        r#"{{"pubTime":"20261123T065146.406","baseUrl":"http://peer:8000/","relPath":"{rel}","integrity":{{"method":"md5","value":"XUFAKrxLKna5cZ2REBfFkg=="}}}}"#
    );
    let m = parse(text.as_bytes()).unwrap();
    let held = Held {
        rel: &rel,
        pub_time: &m.pub_time,
        method: Method::Sha512,
        value: SHA512_HELLO,
        size: 5,
        inline: None,
    };
    let mut out = Vec::new();
    let why = voice(Format::Wis2)
        .file(&mut out, &held, Some(&m))
        .unwrap_err();
    assert!(
        why.contains("over the standard's 8192") && out.is_empty(),
        "{why}"
    );
    let why = forward(&mut out, Format::Wis2, &m, &rel, "x", "id").unwrap_err();
    assert!(
        why.contains("over the standard's 8192") && out.is_empty(),
        "{why}"
    );
    // v03 has no such limit: written
    voice(Format::WmoMesh)
        .file(&mut out, &held, Some(&m))
        .unwrap();
    assert!(parse(&out).is_ok());
}

/// Found by fuzzing: a message with gzip content (WIS2's encoding, which v03 cannot
/// carry) and no baseUrl was forwarded as a v03 message with neither, which every v03
/// reader refuses; the forward is refused instead, with why.
#[test]
fn a_forward_with_nothing_to_fetch_from_is_refused() {
    let m = parse(br#"{"pubTime":"20190120T045018.31","relPath":"a/b.txt","integrity":{"method":"md5","value":"1B2M2Y8AsgTpgAmY7PhCfg=="},"content":{"encoding":"gzip","value":""}}"#).unwrap();
    let mut out = Vec::new();
    for format in [Format::WmoMesh, Format::Sr3] {
        let why = forward(&mut out, format, &m, "a/b.txt", "x", "id").unwrap_err();
        assert!(why.contains("no v03 form") && out.is_empty(), "{why}");
    }
}
