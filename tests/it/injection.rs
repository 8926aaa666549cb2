//! Field injection across dialects, end to end (hardening issue, item 1): upstream
//! messages of every dialect whose free-form members are named like the reserved
//! fields of the other dialects go through node A (v03 out) and node B (WNM out); no
//! reserved field takes an injected value on either broker, and the file the injected
//! `fileOp`/`relPath` aim at survives on both nodes.

use crate::common::*;
use meshnode::core::integrity::{digest_of, Method};
use meshnode::core::message::parse;

const WAIT: u64 = 60;
const VICTIM: &str = "victim/evil.txt";
/// Free-form members named like the fields of v03 and sr3 (and a WNM's marks).
const V03_NAMES: &str = r#""relPath":"victim/evil.txt","fileOp":{"remove":""},"pubTime":"20000101T000000","baseUrl":"http://127.0.0.9/","retPath":"/victim/evil.txt","identity":{"method":"md5","value":"1B2M2Y8AsgTpgAmY7PhCfg=="},"size":7777,"mode":"777","mtime":"20000101T000000","source":"evil","properties":{"fileOp":{"remove":""}},"conformsTo":["x"],"type":"Feature""#;
/// Free-form members named like a WNM's properties.
const WNM_NAMES: &str = r#""data_id":"victim/evil","metadata_id":"urn:evil","pubtime":"2000-01-01T00:00:00Z","datetime":"2024-01-02T037:00:00Z","geometry":"evil","global-cache":"evil","contentType":"evil/evil""#;

fn sha512(data: &[u8]) -> String {
    digest_of(Method::Sha512, data).unwrap().to_base64()
}

fn hex_md5(data: &[u8]) -> String {
    let d = digest_of(Method::Md5, data).unwrap();
    d.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// What an announcement of one of the test's files must say on any broker.
fn check_announcement(label: &str, payload: &str, rel: &str, data: &[u8]) {
    let m = parse(payload.as_bytes()).unwrap_or_else(|e| panic!("{label}: {e}: {payload}"));
    assert_eq!(
        m.rel_path.trim_start_matches('/'),
        rel,
        "{label}: {payload}"
    );
    assert_eq!(m.file_op, None, "{label}: {payload}");
    assert!(!payload.contains("7777"), "{label}: {payload}");
    if rel == "inj/w1.txt" {
        // sr3's fields never come from a WNM's properties
        assert!(!payload.contains("\"mode\""), "{label}: {payload}");
    }
    let i = m.integrity.as_ref().expect("integrity");
    assert_eq!(i.digest, digest_of(i.method, data), "{label}: {payload}");
    if let Some(w) = &m.wis2 {
        // a v03 message's metadata_id is how a WNM's travels through v03 (carried);
        // from any other dialect it is a free-form member
        if rel != "inj/v1.txt" {
            assert!(w.metadata_id.is_none(), "{label}: {payload}");
        }
        assert_eq!(w.geometry.get(), "null", "{label}: {payload}");
        assert!(
            w.times.iter().all(|(_, v)| v.get() == "null"),
            "{label}: {payload}"
        );
    }
}

#[test]
fn free_form_members_never_become_fields_of_another_dialect_across_two_nodes() {
    let s = Scratch::new("injection");
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    let upstream = Broker::start(&s.path("upstream"));
    let broker_a = Broker::start(&s.path("broker-a"));
    let broker_b = Broker::start(&s.path("broker-b"));
    let watch_a = Watcher::start(&broker_a, "xpublic/#");
    let watch_b = Watcher::start(&broker_b, "origin/#");
    let (dir_aw, dir_av, dir_b) = (s.path("a-wis2"), s.path("a-v03"), s.path("b"));
    for d in [&dir_aw, &dir_av, &dir_b] {
        put(d, VICTIM, b"must survive\n");
    }
    // node A: one flow following WIS2, one following v03 (and the array form), both
    // announcing v03 on broker A, inline so that node B needs no web server of theirs
    let wis2_in = [
        "--exchange",
        "origin",
        "--topic-prefix",
        "a/wis2",
        "--inline",
    ];
    let aw_args = peer_args(
        &[&upstream],
        &broker_a,
        &dir_aw,
        "http://127.0.0.1:9/d",
        &wis2_in,
    );
    let node_aw = Node::start(&s.path("a-wis2.log"), &aw_args);
    let av_args = peer_args(
        &[&upstream],
        &broker_a,
        &dir_av,
        "http://127.0.0.1:9/d",
        &["--inline"],
    );
    let node_av = Node::start(&s.path("a-v03.log"), &av_args);
    // node B follows A and speaks WIS2
    let mut b_args = peer_args(&[&broker_a], &broker_b, &dir_b, "http://127.0.0.1:9/d", &[]);
    b_args.extend(["--format", "wis2", "--post-exchange", "origin", "--inline"].map(String::from));
    let node_b = Node::start(&s.path("b.log"), &b_args);
    for n in [&node_aw, &node_av, &node_b] {
        assert!(wait_until(WAIT, || n.log_text().contains("subscribed")));
    }

    let wnm_data = b"hello from a WIS2 publisher\n";
    let v03_data = b"hello from a v03 publisher\n";
    let array_data = b"hello from an array-form publisher\n";
    put(&origin, "inj/a1.txt", array_data);
    let wnm = format!(
        r#"{{"id":"6f5a1c9e-0000-4000-8000-0000000000f1","conformsTo":["http://wis.wmo.int/spec/wnm/1/conf/core"],"type":"Feature","geometry":null,
        "properties":{{"pubtime":"{}","datetime":null,"data_id":"inj/w1.txt",
          "integrity":{{"method":"sha512","value":"{}"}},
          "content":{{"encoding":"utf-8","value":{},"size":{}}},{V03_NAMES}}},
        "links":[{{"href":"http://127.0.0.1:9/w1.txt","rel":"canonical"}}]}}"#,
        rfc3339_now(),
        sha512(wnm_data),
        serde_json::to_string(std::str::from_utf8(wnm_data).unwrap()).unwrap(),
        wnm_data.len()
    );
    let v03 = format!(
        r#"{{"pubTime":"{}","baseUrl":"http://127.0.0.1:9/","relPath":"inj/v1.txt",
        "integrity":{{"method":"md5","value":"{}"}},
        "content":{{"encoding":"utf-8","value":{}}},{WNM_NAMES}}}"#,
        pub_time_now(),
        md5_b64(v03_data),
        serde_json::to_string(std::str::from_utf8(v03_data).unwrap()).unwrap(),
    );
    let array = format!(
        r#"["{}","{}","/inj/a1.txt",{{"sum":"d,{}","integrity":{{"method":"md5","value":"1B2M2Y8AsgTpgAmY7PhCfg=="}},{V03_NAMES},{WNM_NAMES}}}]"#,
        pub_time_now().replace('T', ""),
        web.base_url(),
        hex_md5(array_data)
    );
    publish_raw(
        &upstream,
        &[
            (
                "origin/a/wis2/xx-test/data/core/weather/inj".into(),
                wnm.into_bytes(),
            ),
            ("xpublic/v03/post/inj".into(), v03.into_bytes()),
            ("xpublic/v03/post/inj".into(), array.into_bytes()),
        ],
    );

    let files = [
        ("inj/w1.txt", &wnm_data[..]),
        ("inj/v1.txt", &v03_data[..]),
        ("inj/a1.txt", &array_data[..]),
    ];
    for (rel, data) in files {
        assert!(
            wait_until(WAIT, || read(&dir_b, rel).as_deref() == Some(data)),
            "{rel} reached node B"
        );
    }
    // what B announced reaches its broker after it stored the file
    assert!(wait_until(WAIT, || watch_b.count() >= 3));
    for (label, watch) in [("broker A (v03)", &watch_a), ("broker B (WIS2)", &watch_b)] {
        let got = watch.snapshot();
        assert_eq!(got.len(), 3, "{label}: {got:?}");
        for r in got {
            let (rel, data) = files
                .iter()
                .find(|(rel, _)| r.payload.contains(rel))
                .unwrap_or_else(|| {
                    panic!(
                        "{label}: an announcement of none of the files: {}",
                        r.payload
                    )
                });
            check_announcement(label, &r.payload, rel, data);
        }
    }
    for d in [&dir_aw, &dir_av, &dir_b] {
        assert_eq!(read(d, VICTIM).as_deref(), Some(&b"must survive\n"[..]));
    }
}

fn rfc3339_now() -> String {
    meshnode::core::time::pub_time_to_rfc3339(&pub_time_now()).unwrap()
}
