//! What a flow does with each message: store, verify, re-announce, dialects, selection,
//! removals, duplicates, bad input, dispatching.

use super::*;
use crate::common::*;
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn two_nodes_store_verify_and_reannounce_every_dialect() {
    let s = Scratch::new("two");
    let peer_tree = s.path("peer");
    let web = WebServer::start(&peer_tree, WebOptions::default());
    let (up, _local, watch, dir, _node) = node_between(&s, &[]);

    put(
        &peer_tree,
        "2026112310/GTS/CWAO/SX/SXCN19.txt",
        b"SXCN19 CWAO 231000\nbody\n",
    );
    put(
        &peer_tree,
        "2026112310/GTS/EGRR/IU/IUAA01.bufr",
        &[0u8, 159, 1, 2, 255],
    );
    let now = pub_time_now();
    let sr3_payload = {
        let data = [0u8, 159, 1, 2, 255];
        let sha =
            meshnode::core::integrity::digest_of(meshnode::core::integrity::Method::Sha512, &data)
                .unwrap();
        format!(
            r#"{{"pubTime":"{now}","baseUrl":"{}","relPath":"2026112310/GTS/EGRR/IU/IUAA01.bufr","identity":{{"method":"sha512","value":"{}"}},"size":5,"mtime":"{now}","to_clusters":["a",{{"b":[1,2]}}]}}"#,
            web.base_url(),
            sha.to_base64()
        )
    };
    let md5_hex: String = meshnode::core::integrity::digest_of(
        meshnode::core::integrity::Method::Md5,
        b"SXCN19 CWAO 231000\nbody\n",
    )
    .unwrap()
    .as_bytes()
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    // the array form writes pubTime without the T
    let array_payload = format!(
        r#"["{}", "{}", "/2026112310/GTS/CWAO/SX/SXCN19.txt", {{"sum": "d,{md5_hex}", "parts": "1,24,1,0,0", "source": "UCAR-UNIDATA"}}]"#,
        now.replace('T', ""),
        web.base_url(),
    );
    publish_raw(
        &up,
        &[
            (
                "xpublic/v03/2026112310/GTS/EGRR/IU".into(),
                sr3_payload.into_bytes(),
            ),
            (
                "xpublic/v03/post/2026112310/GTS/CWAO/SX".into(),
                array_payload.into_bytes(),
            ),
            (
                topic_of("2026112310/GTS/KWBC/FT/inline.txt"),
                announcement(
                    "http://127.0.0.1:1/data",
                    "2026112310/GTS/KWBC/FT/inline.txt",
                    b"FT inline\n",
                    true,
                ),
            ),
            // the demo peer's topic without the slash after "post" (formats.md) is still read
            (
                "xpublic/v03/post2026112310/GTS/KWBC/WA".into(),
                announcement(
                    "http://127.0.0.1:1/data",
                    "2026112310/GTS/KWBC/WA/wa.txt",
                    b"WA\n",
                    true,
                ),
            ),
        ],
    );
    assert!(
        wait_until(WAIT, || watch.count() >= 4),
        "4 re-announcements, got {:?}",
        watch.snapshot()
    );
    assert_eq!(
        read(&dir, "2026112310/GTS/CWAO/SX/SXCN19.txt").unwrap(),
        b"SXCN19 CWAO 231000\nbody\n"
    );
    assert_eq!(
        read(&dir, "2026112310/GTS/EGRR/IU/IUAA01.bufr").unwrap(),
        [0u8, 159, 1, 2, 255]
    );
    assert_eq!(
        read(&dir, "2026112310/GTS/KWBC/FT/inline.txt").unwrap(),
        b"FT inline\n"
    );
    assert_eq!(
        read(&dir, "2026112310/GTS/KWBC/WA/wa.txt").unwrap(),
        b"WA\n"
    );

    let sr3 = watch.for_rel("2026112310/GTS/EGRR/IU/IUAA01.bufr");
    assert_eq!(sr3.len(), 1);
    assert_eq!(
        sr3[0]["baseUrl"], "http://127.0.0.1:9/data",
        "baseUrl rewritten"
    );
    assert_eq!(sr3[0]["pubTime"], now.as_str(), "pubTime kept");
    assert_eq!(
        sr3[0]["integrity"]["method"], "sha512",
        "the integrity it computed"
    );
    assert_eq!(
        sr3[0]["to_clusters"][1]["b"][1], 2,
        "unknown fields forwarded"
    );
    assert_eq!(sr3[0]["mtime"], now.as_str());
    // each stored file's modification time is its pubTime (WIS2's newer-pubtime rule
    // and Last-Modified read it): downloaded and inline alike
    for rel in [
        "2026112310/GTS/EGRR/IU/IUAA01.bufr",
        "2026112310/GTS/KWBC/FT/inline.txt",
    ] {
        let announced = watch.for_rel(rel);
        let pub_time = announced[0]["pubTime"].as_str().unwrap();
        let want = meshnode::core::time::parse_time(pub_time).unwrap();
        let mtime = std::fs::metadata(dir.join(rel))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (mtime - want).abs() < 0.001,
            "{rel}: modified {mtime}, pubTime {pub_time} ({want})"
        );
    }
    let arr = watch.for_rel("2026112310/GTS/CWAO/SX/SXCN19.txt");
    assert_eq!(arr.len(), 1);
    assert_eq!(
        arr[0]["integrity"]["value"],
        md5_b64(b"SXCN19 CWAO 231000\nbody\n")
    );
    assert_eq!(arr[0]["source"], "UCAR-UNIDATA");
    assert_eq!(arr[0]["size"], 24);
    let all = watch.snapshot();
    assert!(all
        .iter()
        .all(|m| m.content_type.as_deref() == Some("application/json")));
    let topics: Vec<&str> = all.iter().map(|m| m.topic.as_str()).collect();
    assert!(
        topics.contains(&"xpublic/v03/post/2026112310/GTS/EGRR/IU"),
        "{topics:?}"
    );
    assert_eq!(
        web.requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "inline files are not downloaded"
    );
}

#[test]
fn ring_with_chord_gives_everyone_everything_once() {
    let s = Scratch::new("ring");
    let b: Vec<Broker> = (1..=3)
        .map(|i| Broker::start(&s.path(&format!("b{i}"))))
        .collect();
    let trees: Vec<_> = (1..=3).map(|i| s.path(&format!("node{i}"))).collect();
    let webs: Vec<WebServer> = trees
        .iter()
        .map(|t| WebServer::start(t, WebOptions::default()))
        .collect();
    let watches: Vec<Watcher> = b.iter().map(|b| Watcher::start(b, "xpublic/#")).collect();
    // ring 1 <- 3 <- 2 <- 1, and a chord: node 3 also follows broker 1
    let n1 = Node::start(
        &s.path("n1.log"),
        &peer_args(&[&b[2]], &b[0], &trees[0], &webs[0].base_url(), &[]),
    );
    let n2 = Node::start(
        &s.path("n2.log"),
        &peer_args(&[&b[0]], &b[1], &trees[1], &webs[1].base_url(), &[]),
    );
    let n3 = Node::start(
        &s.path("n3.log"),
        &peer_args(&[&b[1], &b[0]], &b[2], &trees[2], &webs[2].base_url(), &[]),
    );
    assert!(subscribed(&n1, 1) && subscribed(&n2, 1) && subscribed(&n3, 2));

    let mut files = Vec::new();
    for (i, (tree, broker)) in trees.iter().zip(&b).enumerate() {
        for k in 0..3 {
            let rel = format!("2026112311/GTS/N{i}/file{k}.txt");
            let data = format!("bulletin {k} from node {i}\n").into_bytes();
            put(tree, &rel, &data);
            // one of each node's files travels inline
            publish_raw(
                broker,
                &[(
                    topic_of(&rel),
                    announcement(&webs[i].base_url(), &rel, &data, k == 2),
                )],
            );
            files.push((rel, data));
        }
    }
    let complete = || {
        files.iter().all(|(rel, data)| {
            trees
                .iter()
                .all(|t| read(t, rel).as_deref() == Some(data.as_slice()))
        })
    };
    assert!(wait_until(WAIT, complete), "every node holds every file");
    std::thread::sleep(Duration::from_secs(2)); // let any echo show up
    for (i, w) in watches.iter().enumerate() {
        let mut per_rel: HashMap<String, usize> = HashMap::new();
        for m in w.snapshot() {
            let v: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
            *per_rel
                .entry(v["relPath"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        for (rel, _) in &files {
            assert_eq!(
                per_rel.get(rel),
                Some(&1),
                "broker {} announced {rel} exactly once: {per_rel:?}",
                i + 1
            );
        }
        assert_eq!(per_rel.len(), files.len());
    }
    // every node stored each of the 6 files it lacked exactly once, by download or
    // inline (which one depends on which announcement reached it first)
    for (i, mut node) in [n1, n2, n3].into_iter().enumerate() {
        assert_eq!(node.term(), Some(0));
        let (downloads, inline) = totals(&node.log_text());
        assert_eq!(
            downloads + inline,
            6,
            "node {} stored each missing file once",
            i + 1
        );
    }
    let requests: usize = webs
        .iter()
        .map(|w| w.requests.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    assert!(requests <= 18, "no file fetched twice: {requests} requests");
}

#[test]
fn the_same_file_from_two_peers_is_downloaded_once() {
    let s = Scratch::new("twopeers");
    let (b1, b2, local) = (
        Broker::start(&s.path("b1")),
        Broker::start(&s.path("b2")),
        Broker::start(&s.path("l")),
    );
    let (t1, t2) = (s.path("p1"), s.path("p2"));
    let (w1, w2) = (
        WebServer::start(&t1, WebOptions::default()),
        WebServer::start(&t2, WebOptions::default()),
    );
    let watch = Watcher::start(&local, "xpublic/#");
    let dir = s.path("node");
    let node = Node::start(
        &s.path("node.log"),
        &peer_args(&[&b1, &b2], &local, &dir, "http://127.0.0.1:9/data", &[]),
    );
    assert!(subscribed(&node, 2));
    let rel = "2026112312/GTS/CWAO/SA/SACN31.txt";
    let data = b"SACN31 CWAO 231200\n";
    put(&t1, rel, data);
    put(&t2, rel, data);
    publish_raw(
        &b1,
        &[(
            topic_of(rel),
            announcement(&w1.base_url(), rel, data, false),
        )],
    );
    assert!(wait_until(WAIT, || watch.count() == 1));
    publish_raw(
        &b2,
        &[(
            topic_of(rel),
            announcement(&w2.base_url(), rel, data, false),
        )],
    );
    // a stats line at the end says the second one was a duplicate
    let mut node = node;
    assert_eq!(node.term(), Some(0));
    assert!(
        node.log_text().contains("duplicates 1,"),
        "{}",
        node.log_text()
    );
    let requests = w1.requests.load(std::sync::atomic::Ordering::SeqCst)
        + w2.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(requests, 1, "downloaded once");
    assert_eq!(watch.count(), 1, "announced once");
    assert_eq!(read(&dir, rel).unwrap(), data);
}

#[test]
fn bad_input_is_refused_and_harms_nothing_else() {
    let s = Scratch::new("bad");
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let peer_tree = s.path("peer");
    let web = WebServer::start(&peer_tree, WebOptions::default());
    let watch = Watcher::start(&local, "xpublic/#");
    let dir = s.path("tree/data");
    put(&dir, "keep/existing.txt", b"precious");
    put(&s.0, "tree/outside.txt", b"untouched");
    let mut node = Node::start(
        &s.path("node.log"),
        &peer_args(
            &[&up],
            &local,
            &dir,
            "http://127.0.0.1:9/data",
            &["--retries", "2"],
        ),
    );
    assert!(subscribed(&node, 1));

    // the server has one content, the announcement claims another
    put(&peer_tree, "bad/mismatch.txt", b"what the server has");
    let mut mismatch = announcement(
        &web.base_url(),
        "bad/mismatch.txt",
        b"what was announced",
        false,
    );
    let hostile = |rel: &str| {
        let mut v: serde_json::Value = serde_json::from_slice(&announcement(
            "http://127.0.0.1:1/data",
            "x",
            b"pwned",
            true,
        ))
        .unwrap();
        v["relPath"] = rel.into();
        serde_json::to_vec(&v).unwrap()
    };
    let mut deep = br#"{"pubTime":"20261123T000000","relPath":"a","x":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 50_000));
    let mut big = announcement("http://127.0.0.1:1/data", "big/big.txt", b"x", true);
    big.truncate(big.len() - 1);
    big.extend(format!(r#","pad":"{}"}}"#, "p".repeat(510_000)).into_bytes());
    let mut bad_b64: serde_json::Value = serde_json::from_slice(&announcement(
        "http://127.0.0.1:1/data",
        "b/b64.txt",
        b"zz",
        true,
    ))
    .unwrap();
    bad_b64["content"] = serde_json::json!({"encoding": "base64", "value": "!!!not base64"});
    let mut inline_wrong: serde_json::Value = serde_json::from_slice(&announcement(
        "http://127.0.0.1:1/data",
        "b/inline-wrong.txt",
        b"claimed",
        true,
    ))
    .unwrap();
    inline_wrong["content"]["value"] = "different".into();
    let t = "xpublic/v03/post/x".to_string();
    let items = vec![
        (t.clone(), b"{not json".to_vec()),
        (t.clone(), b"\xff\xfe binary junk".to_vec()),
        (t.clone(), deep),
        (t.clone(), hostile("../outside.txt")),
        (t.clone(), hostile("a/../../outside.txt")),
        (t.clone(), hostile("//etc/outside.txt")),
        (t.clone(), hostile("keep/./existing.txt")),
        (t.clone(), hostile("nul\u{0}byte")),
        (t.clone(), big),
        (t.clone(), serde_json::to_vec(&bad_b64).unwrap()),
        (t.clone(), serde_json::to_vec(&inline_wrong).unwrap()),
        (t.clone(), std::mem::take(&mut mismatch)),
        (
            topic_of("good/ok.txt"),
            announcement("http://127.0.0.1:1/data", "good/ok.txt", b"fine\n", true),
        ),
    ];
    publish_raw(&up, &items);
    assert!(
        wait_until(WAIT, || watch.count() >= 1),
        "the good message still goes through"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(read(&dir, "good/ok.txt").unwrap(), b"fine\n");
    let msgs = watch.snapshot();
    assert_eq!(
        msgs.len(),
        1,
        "nothing but the good file announced: {msgs:?}"
    );
    assert_eq!(read(&s.0, "tree/outside.txt").unwrap(), b"untouched");
    assert_eq!(read(&dir, "keep/existing.txt").unwrap(), b"precious");
    assert!(
        read(&dir, "bad/mismatch.txt").is_none(),
        "a mismatch is never stored under its name"
    );
    assert!(read(&dir, "b/inline-wrong.txt").is_none());
    assert!(read(&dir, "big/big.txt").is_none());
    assert_eq!(
        web.requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "mismatch retried --retries times"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("bad"))
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(leftovers.iter().all(|n| *n == 0), "no temporary file left");
    let log = node.log_text();
    for want in [
        "invalid JSON",
        "not UTF-8",
        "'..' component",
        "absolute",
        "'.' component",
        "control character",
        "limit 500000",
        "invalid base64",
        "checksum mismatch",
        "EOF while parsing a list",
    ] {
        assert!(log.contains(want), "log names the problem {want:?}");
    }
    assert!(node.is_running());
    assert_eq!(node.term(), Some(0));
}

#[test]
fn removals_travel_and_stop() {
    let s = Scratch::new("remove");
    let (up, _local, watch, dir, node) = node_between(&s, &[]);
    let rel = "2026112313/GTS/r.txt";
    publish_raw(
        &up,
        &[(
            topic_of(rel),
            announcement("http://127.0.0.1:1/data", rel, b"to go\n", true),
        )],
    );
    assert!(wait_until(WAIT, || read(&dir, rel).is_some()));
    let removal = |op: &str| {
        format!(r#"{{"pubTime":"20991231T000000","baseUrl":"http://127.0.0.1:1/data","relPath":"{rel}","fileOp":{op}}}"#).into_bytes()
    };
    let array_removal =
        format!(r#"["20991231000000", "http://127.0.0.1:1/data", "/{rel}", {{"sum": "R,"}}]"#)
            .into_bytes();
    publish_raw(&up, &[(topic_of(rel), removal(r#"{"remove":""}"#))]);
    assert!(wait_until(WAIT, || read(&dir, rel).is_none()), "removed");
    assert!(wait_until(WAIT, || watch.count() == 2));
    let last: serde_json::Value = serde_json::from_str(&watch.snapshot()[1].payload).unwrap();
    assert_eq!(last["fileOp"]["remove"], "", "removal passed on: {last}");
    // the same removal again (from another peer, or the array form) is not passed on
    publish_raw(
        &up,
        &[
            (topic_of(rel), array_removal),
            (topic_of(rel), removal(r#"{"link":"/etc/passwd"}"#)),
        ],
    );
    assert!(wait_until(WAIT, || node
        .log_text()
        .contains("link to \"/etc/passwd\" refused")));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(watch.count(), 2);
}

#[test]
fn sr3_output_inline_split_exchanges_and_selection() {
    let s = Scratch::new("options");
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let watch = Watcher::start(&local, "#");
    let dir = s.path("node");
    let node = Node::start(
        &s.path("node.log"),
        &peer_args(
            &[&up],
            &local,
            &dir,
            "http://127.0.0.1:9/data",
            &[
                "--format",
                "sr3",
                "--inline",
                "--inline-max",
                "64",
                "--post-exchange-split",
                "3",
                "--select",
                "reject .*\\.grib2",
            ],
        ),
    );
    assert!(subscribed(&node, 1));
    let small = b"small bulletin\n";
    let large = vec![b'L'; 100];
    publish_raw(
        &up,
        &[
            (
                topic_of("o/a/small.txt"),
                announcement("http://127.0.0.1:1/data", "o/a/small.txt", small, true),
            ),
            (
                topic_of("o/a/large.txt"),
                announcement("http://127.0.0.1:1/data", "o/a/large.txt", &large, true),
            ),
            (
                topic_of("o/a/model.grib2"),
                announcement("http://127.0.0.1:1/data", "o/a/model.grib2", b"GRIB", true),
            ),
        ],
    );
    // "#" sees the audit session's marker too (meshnode-audit/...): not an announcement
    let announcements = || -> Vec<Received> {
        let mut m = watch.snapshot();
        m.retain(|r| !r.topic.starts_with("meshnode-audit/"));
        m
    };
    assert!(wait_until(WAIT, || announcements().len() >= 2));
    std::thread::sleep(Duration::from_secs(1));
    let msgs = announcements();
    assert_eq!(
        msgs.len(),
        2,
        "the grib2 file is rejected by --select: {msgs:?}"
    );
    assert!(read(&dir, "o/a/model.grib2").is_none());
    for m in &msgs {
        let v: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
        let value = v["identity"]["value"]
            .as_str()
            .expect("sr3 writes identity");
        assert!(v.get("integrity").is_none());
        // <exchange>NN/v03/<dirs>, NN = first char of the integrity value mod 3
        let nn = u32::from(value.as_bytes()[0]) % 3;
        assert_eq!(m.topic, format!("xpublic{nn:02}/v03/o/a"), "{m:?}");
        match v["relPath"].as_str().unwrap() {
            "o/a/small.txt" => {
                assert_eq!(v["content"]["encoding"], "utf-8");
                assert_eq!(
                    v["content"]["value"], "small bulletin\n",
                    "inline up to --inline-max"
                );
            }
            "o/a/large.txt" => assert!(v.get("content").is_none(), "over --inline-max: not inline"),
            other => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn a_dispatcher_forwards_without_downloading() {
    let s = Scratch::new("dispatch");
    let (up, _local, watch, dir, _node) = node_between(&s, &["--download", "no"]);
    let a = announcement("http://origin:8000/data", "d/f.txt", b"dispatched\n", false);
    // the same announcement from two paths is forwarded once
    publish_raw(
        &up,
        &[(topic_of("d/f.txt"), a.clone()), (topic_of("d/f.txt"), a)],
    );
    assert!(wait_until(WAIT, || watch.count() >= 1));
    std::thread::sleep(Duration::from_secs(1));
    let msgs = watch.for_rel("d/f.txt");
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0]["baseUrl"], "http://origin:8000/data",
        "baseUrl kept: nothing was downloaded"
    );
    assert_eq!(msgs[0]["integrity"]["value"], md5_b64(b"dispatched\n"));
    assert!(read(&dir, "d/f.txt").is_none());
}

/// A removal that comes before its file (the file took a slower path round the mesh):
/// the file, published before the removal, is not stored when it comes; a version
/// published after the removal is.
#[test]
fn a_file_coming_after_its_removal_is_not_stored_again() {
    let s = Scratch::new("removed-first");
    let (up, _local, watch, dir, node) = node_between(&s, &["--inline"]);
    let rel = "2026120300/R/r.txt";
    let old = announcement("http://127.0.0.1:9/", rel, b"old\n", true);
    std::thread::sleep(Duration::from_millis(20));
    let removal = serde_json::json!({"pubTime": pub_time_now(), "baseUrl": "http://127.0.0.1:9/",
        "relPath": rel, "fileOp": {"remove": ""}});
    publish_raw(
        &up,
        &[(topic_of(rel), serde_json::to_vec(&removal).unwrap())],
    );
    publish_raw(&up, &[(topic_of(rel), old)]);
    std::thread::sleep(Duration::from_millis(20));
    let new = announcement("http://127.0.0.1:9/", rel, b"new\n", true);
    publish_raw(&up, &[(topic_of(rel), new)]);
    assert!(
        wait_until(WAIT, || read(&dir, rel).is_some()),
        "{}",
        node.log_text()
    );
    assert_eq!(read(&dir, rel).unwrap(), b"new\n", "the new version only");
    std::thread::sleep(Duration::from_millis(500));
    let files: Vec<_> = watch
        .for_rel(rel)
        .into_iter()
        .filter(|m| m.get("fileOp").is_none())
        .collect();
    assert_eq!(files.len(), 1, "announced once, the new version: {files:?}");
}

#[test]
fn a_burst_of_inline_files_is_announced_in_the_order_it_came() {
    // read in batches off the socket: the MQTT edge must hand them on in that order
    // (and ack them in that order, as MQTT asks of a QoS 1 receiver)
    let s = Scratch::new("in-order");
    let (up, _local, watch, _dir, node) = node_between(&s, &[]);
    let burst = inline_batch("2026120700/O", "ordered ", 0..300);
    publish_raw(&up, &burst);
    assert!(
        wait_until(WAIT, || watch.count() >= burst.len()),
        "{} of {} announced\n{}",
        watch.count(),
        burst.len(),
        node.log_text()
    );
    let announced: Vec<String> = watch
        .snapshot()
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok())
        .filter_map(|v| v["relPath"].as_str().map(str::to_string))
        .collect();
    let sent: Vec<String> = (0..burst.len())
        .map(|i| format!("2026120700/O/f{i}.txt"))
        .collect();
    let first_out_of_order = announced.iter().zip(&sent).position(|(a, b)| a != b);
    assert_eq!(
        first_out_of_order,
        None,
        "announced out of order: {:?}",
        &announced[..announced.len().min(20)]
    );
}
