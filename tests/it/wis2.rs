//! WIS2 notification messages through two nodes: a node following a WIS2 broker (WNM
//! in, WNM out, its files served over HTTP), a second node following it and speaking
//! v03, and the WMO's own client, pywis-pubsub, downloading from the first node and
//! verifying what it gets. Every message the node writes is checked by pywis-pubsub's
//! validator (its bundled schema, offline).

use crate::common::*;
use meshnode::core::integrity::{digest_of, Method};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: u64 = 60;
const TOPIC: &str = "origin/a/wis2/xx-test/data/core/weather/surface-based-observations/synop";
const CORE: &str = "http://wis.wmo.int/spec/wnm/1/conf/core";

/// pywis-pubsub: `PYWIS_PUBSUB` (scripts/test installs it in a virtualenv), else PATH.
fn pywis() -> String {
    let exe = std::env::var("PYWIS_PUBSUB").unwrap_or_else(|_| "pywis-pubsub".into());
    let schema_dir = Path::new(&std::env::var("HOME").expect("HOME"))
        .join(".pywis-pubsub/wis2-notification-message");
    let schema = schema_dir.join("wis2-notification-message-bundled.json");
    if !schema.exists() {
        // where pywis-pubsub looks for it; it cannot download it here
        std::fs::create_dir_all(&schema_dir).unwrap();
        let ours = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/wis2/wis2-notification-message-bundled.json");
        std::fs::copy(ours, &schema).unwrap();
    }
    exe
}

/// Validates one message with `pywis-pubsub ets validate`: all tests passed.
fn validate(scratch: &Scratch, n: usize, payload: &str) {
    let file = scratch.path(&format!("validate-{n}.json"));
    std::fs::write(&file, payload).unwrap();
    let out = Command::new(pywis())
        .args(["ets", "validate"])
        .arg(&file)
        .output()
        .expect("pywis-pubsub (scripts/test installs it into target/pywis-pubsub)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"FAILED\": 0"),
        "pywis-pubsub ets validate refused {payload}\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha(method: Method, data: &[u8]) -> String {
    digest_of(method, data).unwrap().to_base64()
}

/// A WNM of the standard's shape.
#[allow(clippy::too_many_arguments)]
fn wnm(
    id: &str,
    pubtime: &str,
    data_id: &str,
    rel: &str,
    href: &str,
    data: &[u8],
    method: Method,
    inline: Option<(&str, &str)>,
) -> Vec<u8> {
    let mut props = serde_json::json!({
        "pubtime": pubtime,
        "datetime": "2026-11-29T12:00:00Z",
        "data_id": data_id,
        "metadata_id": "urn:wmo:md:xx-test:synop",
        "producer": "xx-test",
        "integrity": {"method": method.name(), "value": sha(method, data)},
    });
    if let Some((encoding, value)) = inline {
        props["content"] =
            serde_json::json!({"encoding": encoding, "value": value, "size": data.len()});
    }
    let mut link = serde_json::json!({"href": href, "rel": rel, "type": "application/bufr"});
    if rel != "deletion" {
        link["length"] = data.len().into();
    }
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "conformsTo": [CORE],
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [6.14, 46.22]},
        "properties": props,
        "links": [link, {"href": "https://example.org/item", "rel": "item"}],
    }))
    .unwrap()
}

fn uuid(n: usize) -> String {
    format!("6f5a1c9e-0000-4000-8000-{n:012}")
}

fn rfc3339(epoch: f64) -> String {
    let mut s = String::new();
    meshnode::core::time::format_time(&mut s, epoch);
    meshnode::core::time::pub_time_to_rfc3339(&s).unwrap()
}

/// pywis-pubsub subscribed to `broker`, downloading and verifying into `basedir`.
struct PywisSubscriber {
    child: Child,
    log: PathBuf,
}

impl PywisSubscriber {
    fn start(s: &Scratch, broker: &Broker, topic: &str, basedir: &Path) -> PywisSubscriber {
        let config = s.path("pywis.yml");
        std::fs::write(
            &config,
            format!(
                "broker: mqtt://127.0.0.1:{}\nsubscribe_topics:\n  - '{topic}'\n\
                 verify_data: true\nvalidate_message: true\n\
                 storage:\n  type: fs\n  options:\n    basedir: {}\n",
                broker.port,
                basedir.display()
            ),
        )
        .unwrap();
        let log = s.path("pywis.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(pywis())
            .args([
                "subscribe",
                "--download",
                "--verbosity",
                "DEBUG",
                "--config",
            ])
            .arg(&config)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(out)
            .spawn()
            .expect("pywis-pubsub (scripts/test installs it into target/pywis-pubsub)");
        let sub = PywisSubscriber { child, log };
        // its own client logs the broker's SUBACK (paho, at DEBUG): subscribed, so
        // nothing published from now on is missed
        assert!(
            wait_until(30, || sub.log_text().contains("Received SUBACK")),
            "pywis-pubsub subscribed: {}",
            sub.log_text()
        );
        sub
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PywisSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn wis2_messages_flow_through_two_nodes_and_pywis_pubsub_verifies_the_files() {
    let s = Scratch::new("wis2");
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    let global = Broker::start(&s.path("global"));
    let broker_a = Broker::start(&s.path("broker-a"));
    let broker_b = Broker::start(&s.path("broker-b"));
    let watch_a = Watcher::start(&broker_a, "origin/#");
    let watch_b = Watcher::start(&broker_b, "xpublic/#");
    let (dir_a, dir_b) = (s.path("a"), s.path("b"));
    let port_a = free_port();
    let base_a = format!("http://127.0.0.1:{port_a}");
    std::fs::create_dir_all(&dir_a).unwrap();
    let _serve_a = Node::start(
        &s.path("serve-a.log"),
        &[
            "serve".into(),
            "--dir".into(),
            dir_a.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port_a}"),
        ],
    );
    // node A follows the "global broker" as a WIS2 consumer would, and speaks WIS2
    let wis2_in = ["--exchange", "origin", "--topic-prefix", "a/wis2"];
    let mut a_args = peer_args(&[&global], &broker_a, &dir_a, &base_a, &wis2_in);
    a_args.extend(["--format", "wis2", "--post-exchange", "origin", "--inline"].map(String::from));
    let node_a = Node::start(&s.path("a.log"), &a_args);
    // node B follows node A and speaks v03
    let b_args = peer_args(
        &[&broker_a],
        &broker_b,
        &dir_b,
        "http://127.0.0.1:9/data",
        &wis2_in,
    );
    let node_b = Node::start(&s.path("b.log"), &b_args);
    for n in [&node_a, &node_b] {
        assert!(wait_until(WAIT, || n.log_text().contains("subscribed")));
    }
    let pywis_dir = s.path("pywis");
    let pywis = PywisSubscriber::start(&s, &broker_a, "origin/a/wis2/#", &pywis_dir);

    // phase 1: six files to download, two inline (utf-8 and gzip), a message repeated
    // with its id (another global broker) and a global cache's copy (new id, same
    // data_id and pubtime)
    let now = meshnode_now();
    let t1 = rfc3339(now - 5.0);
    let data_id = |i: usize| format!("xx-test/data/core/weather/synop/station{i}_1200");
    let rel = |i: usize| format!("{}.bufr4", data_id(i));
    let body = |i: usize, v: &str| format!("BUFR station {i} {v}\n").repeat(i + 1).into_bytes();
    let methods = [
        Method::Sha512,
        Method::Sha256,
        Method::Sha3_256,
        Method::Sha384,
        Method::Sha3_512,
        Method::Sha3_384,
    ];
    let mut burst = Vec::new();
    for (i, &method) in methods.iter().enumerate() {
        put(&origin, &format!("wis2/station{i}.bufr4"), &body(i, "v1"));
        let href = format!("{}/wis2/station{i}.bufr4", web.base_url());
        let m = wnm(
            &uuid(i),
            &t1,
            &data_id(i),
            "canonical",
            &href,
            &body(i, "v1"),
            method,
            None,
        );
        burst.push((TOPIC.to_string(), m));
    }
    let text = b"SYNOP inline text\n";
    let href6 = format!("{}/wis2/nothere6.txt", web.base_url());
    burst.push((
        TOPIC.to_string(),
        wnm(
            &uuid(6),
            &t1,
            &data_id(6),
            "canonical",
            &href6,
            text,
            Method::Sha512,
            Some(("utf-8", std::str::from_utf8(text).unwrap())),
        ),
    ));
    // `printf 'hello wis2\n' | gzip -n | base64`
    let gz = "H4sIAAAAAAAAA8tIzcnJVyjPLDbiAgDrGNGnCwAAAA==";
    let href7 = format!("{}/wis2/nothere7.txt", web.base_url());
    burst.push((
        TOPIC.to_string(),
        wnm(
            &uuid(7),
            &t1,
            &data_id(7),
            "canonical",
            &href7,
            b"hello wis2\n",
            Method::Sha256,
            Some(("gzip", gz)),
        ),
    ));
    burst.push(burst[1].clone()); // the same id again
    let copy_href = format!("{}/wis2/station2.bufr4", web.base_url());
    burst.push((
        TOPIC.to_string(),
        wnm(
            &uuid(100),
            &t1,
            &data_id(2),
            "canonical",
            &copy_href,
            &body(2, "v1"),
            methods[2],
            None,
        ),
    ));
    publish_raw(&global, &burst);

    let rels: Vec<String> = (0..6)
        .map(rel)
        .chain([format!("{}.txt", data_id(6)), format!("{}.txt", data_id(7))])
        .collect();
    let want = |i: usize| -> Vec<u8> {
        match i {
            6 => text.to_vec(),
            7 => b"hello wis2\n".to_vec(),
            i => body(i, "v1"),
        }
    };
    let all_here =
        |dir: &Path| (0..8).all(|i| read(dir, &rels[i]).as_deref() == Some(&want(i)[..]));
    assert!(
        wait_until(WAIT, || all_here(&dir_a)),
        "node A stored all 8:\n{}",
        node_a.log_text()
    );
    assert!(
        wait_until(WAIT, || all_here(&dir_b)),
        "node B stored all 8:\n{}",
        node_b.log_text()
    );
    let pywis_has = |i: usize, data: &[u8]| read(&pywis_dir, &data_id(i)).as_deref() == Some(data);
    assert!(
        wait_until(WAIT, || (0..8).all(|i| pywis_has(i, &want(i)))),
        "pywis-pubsub downloaded and verified all 8 from node A:\n{}",
        pywis.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    // the repeated id and the cache's copy were duplicates: each file announced once
    assert_eq!(
        watch_a.count(),
        8,
        "node A announced each file once: {:#?}",
        watch_a.snapshot()
    );

    // phase 2: an update with a newer pubtime, a stale update (older pubtime), a deletion
    let t2 = rfc3339(now - 1.0);
    let t0 = rfc3339(now - 60.0);
    put(&origin, "wis2/station0-v2.bufr4", &body(0, "v2"));
    put(&origin, "wis2/station3-stale.bufr4", &body(3, "stale"));
    let update = wnm(
        &uuid(10),
        &t2,
        &data_id(0),
        "update",
        &format!("{}/wis2/station0-v2.bufr4", web.base_url()),
        &body(0, "v2"),
        Method::Sha512,
        None,
    );
    let stale = wnm(
        &uuid(11),
        &t0,
        &data_id(3),
        "update",
        &format!("{}/wis2/station3-stale.bufr4", web.base_url()),
        &body(3, "stale"),
        Method::Sha512,
        None,
    );
    let deletion = wnm(
        &uuid(12),
        &t2,
        &data_id(5),
        "deletion",
        &format!("{}/wis2/station5.bufr4", web.base_url()),
        b"",
        Method::Sha512,
        None,
    );
    publish_raw(
        &global,
        &[
            (TOPIC.into(), update),
            (TOPIC.into(), stale),
            (TOPIC.into(), deletion),
        ],
    );

    let phase2 = |dir: &Path| {
        read(dir, &rels[0]).as_deref() == Some(&body(0, "v2")[..])
            && read(dir, &rels[5]).is_none()
            && read(dir, &rels[3]).as_deref() == Some(&body(3, "v1")[..])
    };
    assert!(
        wait_until(WAIT, || phase2(&dir_a)),
        "node A: update, stale, deletion:\n{}",
        node_a.log_text()
    );
    assert!(
        wait_until(WAIT, || phase2(&dir_b)),
        "node B: update, stale, deletion:\n{}",
        node_b.log_text()
    );
    assert!(
        wait_until(WAIT, || pywis_has(0, &body(0, "v2"))
            && read(&pywis_dir, &data_id(5)).is_none()),
        "pywis-pubsub took the update and the deletion:\n{}",
        pywis.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));

    // what node A wrote: WNM, each with its own id, validated by pywis-pubsub
    let a_msgs = watch_a.snapshot();
    assert_eq!(
        a_msgs.len(),
        10,
        "8 files, an update and a deletion: {a_msgs:#?}"
    );
    let mut ids = std::collections::HashSet::new();
    for (n, m) in a_msgs.iter().enumerate() {
        assert!(
            m.topic
                .starts_with("origin/a/wis2/xx-test/data/core/weather/"),
            "{}",
            m.topic
        );
        let v: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
        assert!(
            ids.insert(v["id"].as_str().unwrap().to_string()),
            "ids are new"
        );
        assert!(v["id"].as_str().unwrap().len() == 36);
        assert!(
            v["links"][0]["href"].as_str().unwrap().starts_with(&base_a),
            "our own href"
        );
        assert_eq!(v["geometry"]["type"], "Point", "geometry kept");
        assert_eq!(v["properties"]["metadata_id"], "urn:wmo:md:xx-test:synop");
        assert!(v["properties"].get("global-cache").is_none());
        validate(&s, n, &m.payload);
    }
    let rel_of = |v: &serde_json::Value| v["links"][0]["rel"].as_str().unwrap().to_string();
    let kinds: Vec<String> = a_msgs
        .iter()
        .map(|m| rel_of(&serde_json::from_str(&m.payload).unwrap()))
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "update").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "deletion").count(), 1);

    // what node B wrote: v03, with data_id carried along
    let b_msgs = watch_b.snapshot();
    assert_eq!(b_msgs.len(), 10, "{b_msgs:#?}");
    for m in &b_msgs {
        let v: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
        assert!(v["pubTime"].as_str().unwrap().starts_with("2026"), "{v}");
        assert!(
            v["data_id"].as_str().unwrap().starts_with("xx-test/"),
            "{v}"
        );
    }
    // 8 files and the update, each downloaded from node A and verified by pywis-pubsub
    let log = pywis.log_text();
    assert_eq!(log.matches("Data verification passed").count(), 9, "{log}");
    assert!(!log.contains("verification failed"), "{log}");

    // phase 3: the bytes of station 1 under another data_id, with a link that leads
    // nowhere: node A copies what it has (a download would fail), and announces it
    let again = wnm(
        &uuid(20),
        &t2,
        &data_id(9),
        "canonical",
        &format!("{}/wis2/gone.bufr4", web.base_url()),
        &body(1, "v1"),
        methods[1],
        None,
    );
    publish_raw(&global, &[(TOPIC.into(), again)]);
    assert!(
        wait_until(WAIT, || read(&dir_a, &rel(9)).as_deref()
            == Some(&body(1, "v1")[..])),
        "node A stored it from its own copy:\n{}",
        node_a.log_text()
    );
    // the file is renamed into place before its log line is written: wait for both
    assert!(
        wait_until(WAIT, || node_a.log_text().contains("the same bytes as")),
        "{}",
        node_a.log_text()
    );
    assert!(
        wait_until(WAIT, || read(&dir_b, &rel(9)).as_deref()
            == Some(&body(1, "v1")[..])),
        "and node B got it from node A:\n{}",
        node_b.log_text()
    );
    assert!(wait_until(WAIT, || pywis_has(9, &body(1, "v1"))));
}

/// Seconds since the epoch, now.
fn meshnode_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_wis2_broker_over_mqtts_with_everyone_everyone_is_one_broker_url() {
    let s = Scratch::new("wis2-mqtts");
    let certs = s.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_cert(&certs, "127.0.0.1");
    let pw = certs.join("pwfile");
    let out = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pw)
        .args(["everyone", "everyone"])
        .output()
        .expect("mosquitto_passwd (Debian package mosquitto)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the broker runs as user mosquitto when started by root
    for f in ["pwfile", "key.pem", "cert.pem"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(certs.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // the "global broker": MQTTS with a password file; a plain listener for the test's
    // publisher
    let plain = free_port();
    let global = Broker::start_with(
        &s.path("global"),
        &format!(
            "certfile {c}/cert.pem\nkeyfile {c}/key.pem\nlistener {plain} 127.0.0.1\n\
             allow_anonymous true\npassword_file {c}/pwfile\n",
            c = certs.display()
        ),
    );
    let local = Broker::start(&s.path("local"));
    let watch = Watcher::start(&local, "origin/#");
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    let dir = s.path("node");
    let args: Vec<String> = [
        "peer",
        "--broker",
        &format!("mqtts://everyone:everyone@127.0.0.1:{}", global.port),
        "--exchange",
        "cache",
        "--topic-prefix",
        "a/wis2",
        "--subtopic",
        "+/data/core/weather/surface-based-observations/#",
        "--post-broker",
        &local.url(),
        "--post-baseUrl",
        "http://127.0.0.1:9",
        "--post-exchange",
        "origin",
        "--format",
        "wis2",
        "--dir",
        &dir.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    // the test CA is trusted as the system's bundle would be (SSL_CERT_FILE); without
    // it the node logs "invalid peer certificate: UnknownIssuer" (checked by hand)
    let ca = certs.join("ca.pem").display().to_string();
    let node = Node::start_env(&s.path("node.log"), &args, &[("SSL_CERT_FILE", &ca)]);
    assert!(
        wait_until(WAIT, || node.log_text().contains("subscribed")),
        "{}",
        node.log_text()
    );
    let data = b"BUFR over mqtts\n";
    put(&origin, "x/obs.bufr4", data);
    let t = rfc3339(meshnode_now());
    let m = wnm(
        &uuid(1),
        &t,
        "xx-test/data/core/weather/surface-based-observations/synop/obs",
        "canonical",
        &format!("{}/x/obs.bufr4", web.base_url()),
        data,
        Method::Sha512,
        None,
    );
    let topic = "cache/a/wis2/xx-test/data/core/weather/surface-based-observations/synop";
    // and one outside the subtopic, not taken
    let other = "cache/a/wis2/xx-test/data/core/climate/x";
    publish_to(plain, &[(topic.into(), m.clone()), (other.into(), m)]);
    let rel = "xx-test/data/core/weather/surface-based-observations/synop/obs.bufr4";
    assert!(
        wait_until(WAIT, || read(&dir, rel).as_deref() == Some(&data[..])),
        "{}",
        node.log_text()
    );
    assert!(wait_until(WAIT, || watch.count() == 1));
    assert_eq!(
        watch.snapshot()[0].topic,
        "origin/a/wis2/xx-test/data/core/weather/surface-based-observations/synop",
        "the WIS2 hierarchy kept, under our exchange"
    );
    assert!(
        node.log_text().contains("mqtts://everyone@127.0.0.1"),
        "{}",
        node.log_text()
    );
    assert!(
        !node.log_text().contains("everyone:everyone"),
        "no password in the log"
    );
}

#[test]
fn channel_products_are_announced_in_wis2_and_replicated_and_removed() {
    let s = Scratch::new("wis2-channels");
    let (broker_a, broker_b) = (Broker::start(&s.path("ba")), Broker::start(&s.path("bb")));
    let watch_a = Watcher::start(&broker_a, "origin/#");
    let (port_a, port_b) = (free_port(), free_port());
    // the channels tests' node: MEMO open, dave may write (and more channels)
    let a = crate::channels::start_node(
        &s,
        "a",
        port_a,
        &format!(
            "post-broker {}\npost-exchange origin\nformat wis2\n",
            broker_a.url()
        ),
    );
    let b = crate::channels::start_node(
        &s,
        "b",
        port_b,
        &format!(
            "post-broker {}\nflow from-a\nbroker {}\nexchange origin\ntopic-prefix a/wis2\n",
            broker_b.url(),
            broker_a.url()
        ),
    );
    assert!(
        wait_until(WAIT, || b.log_text().contains("subscribed")),
        "{}",
        b.log_text()
    );
    let auth = basic("dave:davepw");
    let body = b"Memo: WIS2 from a channel\n";
    let r = http(
        port_a,
        "POST",
        "/rest/taker",
        &[
            ("Content-Type", "text/plain; cid=MEMO; fname=memo.txt"),
            ("Authorization", &auth),
        ],
        body,
    );
    assert_eq!(r.status, 201, "{}", r.head);
    let oid = r.oid();
    let path = format!("/channels/MEMO/{oid}");
    assert!(
        wait_until(WAIT, || http(port_b, "GET", &path, &[], b"").status == 200),
        "{}",
        b.log_text()
    );
    let (on_a, on_b) = (
        http(port_a, "GET", &path, &[], b""),
        http(port_b, "GET", &path, &[], b""),
    );
    assert_eq!(on_b.body, body);
    assert_eq!(on_b.header("Content-Type"), on_a.header("Content-Type"));
    assert!(on_b
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain"));

    let d = http(
        port_a,
        "DELETE",
        &format!("/rest/taker/channels/MEMO/{oid}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert!(d.status / 100 == 2, "{}", d.head);
    assert!(
        wait_until(WAIT, || http(port_b, "GET", &path, &[], b"").status == 404),
        "{}",
        b.log_text()
    );
    let msgs = watch_a.snapshot();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    let first: serde_json::Value = serde_json::from_str(&msgs[0].payload).unwrap();
    assert_eq!(
        first["properties"]["data_id"],
        format!("metcast/MEMO/{oid}")
    );
    assert_eq!(first["properties"]["integrity"]["method"], "sha512");
    assert!(first["links"][0]["type"]
        .as_str()
        .unwrap()
        .starts_with("text/plain"));
    let second: serde_json::Value = serde_json::from_str(&msgs[1].payload).unwrap();
    assert_eq!(second["links"][0]["rel"], "deletion");
    for (n, m) in msgs.iter().enumerate() {
        validate(&s, n, &m.payload);
    }
    drop(a);
}

#[test]
fn post_writes_wis2_that_pywis_pubsub_validates_and_refuses_md5() {
    let s = Scratch::new("wis2-post");
    let b = Broker::start(&s.path("b"));
    let watch = Watcher::start(&b, "origin/#");
    let dir = s.path("data");
    put(&dir, "2026112919/xx/obs.txt", b"SYNOP text\n");
    let binary: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    put(&dir, "2026112919/xx/big.bin", &binary);
    let post = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_meshnode"))
            .args([
                "post",
                "--post-broker",
                &b.url(),
                "--post-baseUrl",
                "http://127.0.0.1:9",
            ])
            .arg("--post-baseDir")
            .arg(&dir)
            .args(["--format", "wis2", "--post-exchange", "origin", "--inline"])
            .args(extra)
            .arg(dir.join("2026112919/xx/obs.txt"))
            .arg(dir.join("2026112919/xx/big.bin"))
            .output()
            .unwrap()
    };
    let out = post(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(WAIT, || watch.count() == 2));
    for (n, m) in watch.snapshot().iter().enumerate() {
        assert_eq!(m.topic, "origin/a/wis2/2026112919/xx");
        validate(&s, n, &m.payload);
    }
    let small: serde_json::Value = serde_json::from_str(&watch.snapshot()[0].payload).unwrap();
    assert_eq!(small["properties"]["content"]["value"], "SYNOP text\n");
    assert_eq!(small["properties"]["integrity"]["method"], "sha512");
    let out = post(&["--integrity", "md5"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WIS2 forbids md5"), "{err}");
}
