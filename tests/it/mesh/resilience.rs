//! Failures ridden out: SIGKILL, broker restarts, slow downloads, web servers away,
//! a local broker that loses its sessions.

use super::*;
use crate::common::*;
use std::time::Duration;

#[test]
fn sigkill_during_a_backlog_of_2000_loses_nothing() {
    let s = Scratch::new("sigkill");
    let (up, _local, watch, dir, mut node) = node_between(&s, &["--verbose", "1"]);
    node.kill9(); // the persistent session now queues for it
    const N: usize = 2000;
    let items: Vec<_> = (0..N)
        .map(|i| {
            let rel = format!("2026112314/GTS/B{}/f{i}.txt", i % 10);
            (
                topic_of(&rel),
                announcement(
                    "http://127.0.0.1:1/data",
                    &rel,
                    format!("backlog {i}\n").as_bytes(),
                    true,
                ),
            )
        })
        .collect();
    publish_raw(&up, &items);
    let stored = || walk_count(&dir);
    node.restart();
    assert!(wait_until(WAIT, || stored() >= 300), "draining");
    node.kill9();
    let at_kill = stored();
    node.restart();
    assert!(
        wait_until(WAIT * 2, || stored() == N),
        "all {N} stored, {} so far (killed at {at_kill})",
        stored()
    );
    assert!(
        wait_until(WAIT, || {
            let got: std::collections::HashSet<String> = watch
                .snapshot()
                .iter()
                .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m.payload).ok())
                .map(|v| v["relPath"].as_str().unwrap().to_string())
                .collect();
            got.len() == N
        }),
        "every file announced at least once"
    );
    assert!(at_kill < N, "the kill happened mid-backlog");
}

#[test]
fn broker_restarts_are_ridden_out() {
    let s = Scratch::new("restart");
    let (mut up, mut local, watch, dir, node) = node_between(&s, &[]);
    let batch = |from: usize| inline_batch("2026112315/R", "r", from..from + 50);
    publish_raw(&up, &batch(0));
    assert!(wait_until(WAIT, || walk_count(&dir) == 50));
    up.restart(Duration::from_millis(500));
    assert!(
        subscribed(&node, 2),
        "resubscribed after the upstream restart"
    );
    publish_raw(&up, &batch(50));
    assert!(wait_until(WAIT, || walk_count(&dir) == 100));
    local.restart(Duration::from_millis(500));
    publish_raw(&up, &batch(100));
    assert!(wait_until(WAIT, || walk_count(&dir) == 150));
    assert!(
        wait_until(WAIT, || {
            let got: std::collections::HashSet<String> =
                watch.snapshot().iter().map(|m| m.payload.clone()).collect();
            got.len() >= 150
        }),
        "all 150 announced on the local broker, got {}",
        watch.count()
    );
}

#[test]
fn a_download_slower_than_three_keepalives_with_a_full_window_keeps_the_sessions() {
    let s = Scratch::new("slow");
    // five slow downloads fill a window of five: the flow takes nothing more meanwhile,
    // and mosquitto 2.0.11, resuming the session, sends the 150 after them anyway, far
    // beyond the receive maximum of 5
    let (up, _local, watch, dir, mut node) = node_between(
        &s,
        &[
            "--keepalive",
            "5",
            "--inflight",
            "5",
            "--host-connections",
            "5",
        ],
    );
    node.kill9();
    let peer_tree = s.path("peer");
    // keepalive 5 s (rumqttc's minimum): 16 s is over three keepalives
    let web = WebServer::start(
        &peer_tree,
        WebOptions {
            delay: Duration::from_secs(16),
            ..Default::default()
        },
    );
    // quick messages first: mosquitto answers their acks with bursts
    let mut items = inline_batch("slow/first", "first", 0..100);
    for rel in (0..5).map(|i| format!("slow/s{i}.txt")) {
        put(&peer_tree, &rel, b"slow\n");
        items.push((
            topic_of(&rel),
            announcement(&web.base_url(), &rel, b"slow\n", false),
        ));
    }
    items.extend(inline_batch("slow/after", "after", 0..150));
    publish_raw(&up, &items);
    node.restart();
    assert!(
        wait_until(WAIT, || walk_count(&dir) >= 255),
        "{}",
        node.log_text()
    );
    assert!(wait_until(WAIT, || watch.count() >= 255));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(watch.count(), 255, "no redelivery, nothing announced twice");
    let log = node.log_text();
    // the connections kept their pings: no session lost, no connection error. The
    // slow downloads move to the retry queue after a while, so the window rarely stays
    // full: a new upstream connection, if any, is the node's own, to fetch what it
    // left to the broker
    assert!(!log.contains("retrying in"), "{log}");
    let connects = log.matches("connected (session").count();
    assert!(
        connects == 4
            || (connects == 5 && log.contains("reconnecting so the broker delivers again")),
        "before the kill: one upstream, one to post; after: one (or two) upstream, one to post: {log}"
    );
    assert_eq!(web.requests.load(std::sync::atomic::Ordering::SeqCst), 5);
}

#[test]
fn a_peer_web_server_away_for_a_while_is_waited_for() {
    let s = Scratch::new("webaway");
    let peer_tree = s.path("peer");
    put(&peer_tree, "late/l.txt", b"late\n");
    // the announcement names a server that is not there yet
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/data");
    let (up, _local, watch, dir, node) = node_between(&s, &[]);
    publish_raw(
        &up,
        &[(
            topic_of("late/l.txt"),
            announcement(&base, "late/l.txt", b"late\n", false),
        )],
    );
    assert!(
        wait_until(WAIT, || node.log_text().matches("GET").count() >= 2),
        "retrying"
    );
    assert!(read(&dir, "late/l.txt").is_none());
    let _web = WebServer::start_on(port, &peer_tree);
    assert!(
        wait_until(WAIT, || read(&dir, "late/l.txt").is_some()),
        "{}",
        node.log_text()
    );
    assert!(wait_until(WAIT, || watch.count() == 1));
    assert!(!node.log_text().contains("giving up"));
}

#[test]
fn a_local_broker_that_loses_its_sessions_loses_no_announcement() {
    let s = Scratch::new("session-lost");
    let (up, mut local, watch, dir, node) = node_between(&s, &[]);
    let batch = |from: usize| inline_batch("2026112317/L", "l", from..from + 30);
    // the local broker dies; files keep arriving and are stored, their announcements
    // wait unacknowledged in rumqttc
    local.crash();
    publish_raw(&up, &batch(0));
    assert!(
        wait_until(WAIT, || walk_count(&dir) == 30),
        "stored while the local broker is away"
    );
    // it comes back with no memory of the node's session: rumqttc drops what it held
    local.forget_and_start();
    assert!(
        wait_until(WAIT, || node.log_text().contains("lost its session")),
        "the flow notices: {}",
        node.log_text()
    );
    // the upstream messages were never acknowledged, so they come again and are announced
    assert!(
        wait_until(WAIT, || (0..30).all(|i| !watch
            .for_rel(&format!("2026112317/L/f{i}.txt"))
            .is_empty())),
        "every file announced after the loss; got {}",
        watch.count()
    );
}

#[test]
fn a_broker_sending_beyond_the_receive_maximum_loses_nothing() {
    let s = Scratch::new("oversend");
    let origin = s.path("origin");
    // each download takes a while: the window stays full as the backlog comes
    let web = WebServer::start(
        &origin,
        WebOptions {
            delay: Duration::from_millis(20),
            ..WebOptions::default()
        },
    );
    let (up, _local, watch, dir, mut node) = node_between(
        &s,
        &["--inflight", "5", "--concurrency", "2", "--verbose", "2"],
    );
    node.kill9(); // the persistent session now queues for it
    const N: usize = 150;
    // half inline, half downloads
    let (batch, rels) = files(
        &origin,
        &web.base_url(),
        N,
        |i| format!("2026112911/GTS/o{i}.txt"),
        |i| format!("over {i}\n"),
        |i| i % 2 == 0,
    );
    publish_raw(&up, &batch);
    // mosquitto 2.0.11 may send the whole queue of a resumed session at once
    node.restart();
    assert!(
        wait_until(WAIT, || rels.iter().all(|r| read(&dir, r).is_some())),
        "all stored: {} of {N}\n{}",
        rels.iter().filter(|r| read(&dir, r).is_some()).count(),
        node.log_text()
    );
    assert!(
        wait_until(WAIT, || rels.iter().all(|r| !watch.for_rel(r).is_empty())),
        "all announced"
    );
    let log = node.log_text();
    assert!(!log.contains("panicked"), "{log}");
    if log.contains("beyond the receive maximum") {
        assert!(
            log.contains("reconnecting so the broker delivers again"),
            "{log}"
        );
    }
}

#[test]
fn acks_released_while_the_upstream_broker_restarts_lose_no_message() {
    let s = Scratch::new("ack-epoch");
    let origin = s.path("origin");
    // downloads slow enough that many are in progress when the broker goes
    let web = WebServer::start(
        &origin,
        WebOptions {
            delay: Duration::from_millis(30),
            ..WebOptions::default()
        },
    );
    let (mut up, _local, watch, dir, node) = node_between(&s, &["--concurrency", "4"]);
    const N: usize = 300;
    let (batch, rels) = files(
        &origin,
        &web.base_url(),
        N,
        |i| format!("2026112911/GTS/e{i}.txt"),
        |i| format!("epoch {i}\n"),
        |_| false,
    );
    publish_raw(&up, &batch);
    let stored = || rels.iter().filter(|r| read(&dir, r).is_some()).count();
    assert!(wait_until(WAIT, || stored() >= 30), "draining");
    // downloads finish while the broker is away: their acks must not go out on the
    // next connection, where the same packet ids name other messages
    up.restart(Duration::from_millis(1500));
    assert!(
        wait_until(WAIT * 2, || stored() == N),
        "every message delivered and stored: {} of {N}\n{}",
        stored(),
        node.log_text()
    );
    assert!(
        wait_until(WAIT, || rels.iter().all(|r| !watch.for_rel(r).is_empty())),
        "every file announced"
    );
}

#[test]
fn a_ring_with_a_node_killed_mid_burst_announces_each_file_once_on_every_broker() {
    let s = Scratch::new("ring-kill");
    let ring = Ring::new(&s);
    let (b, trees) = (&ring.brokers, &ring.trees);
    let watches: Vec<Watcher> = b.iter().map(|b| Watcher::start(b, "xpublic/#")).collect();
    let start = |i: usize, up: usize| ring.start(i, up);
    let n1 = start(0, 2);
    let mut n2 = start(1, 0);
    let n3 = start(2, 1);
    assert!(subscribed(&n1, 1) && subscribed(&n2, 1) && subscribed(&n3, 1));
    const N: usize = 1000;
    let files = inline_batch("2026112919/K", "k", 0..N);
    // node 1 holds them: it is where they come from
    let rels: Vec<String> = (0..N).map(|i| format!("2026112919/K/f{i}.txt")).collect();
    for (i, rel) in rels.iter().enumerate() {
        put(&trees[0], rel, format!("k{i}\n").as_bytes());
    }
    publish_raw(&b[0], &files);
    // node 2 is killed in the middle of the burst, and started again
    assert!(wait_until(WAIT, || walk_count(&trees[1]) >= N / 4));
    n2.kill9();
    let at_kill = walk_count(&trees[1]);
    n2.restart();
    assert!(
        wait_until(WAIT * 2, || trees.iter().all(|t| walk_count(t) >= N)),
        "every node holds every file: {:?}",
        trees.iter().map(|t| walk_count(t)).collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_secs(2)); // let any echo or late repeat show up
    let mut dups = Vec::new();
    for (i, w) in watches.iter().enumerate() {
        let mut per_rel: std::collections::HashMap<String, usize> = Default::default();
        for m in w.snapshot() {
            let v: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
            *per_rel
                .entry(v["relPath"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let missing = rels.iter().filter(|r| !per_rel.contains_key(*r)).count();
        assert_eq!(missing, 0, "broker {} announced every file", i + 1);
        dups.push(per_rel.values().filter(|n| **n > 1).count());
    }
    println!("killed at {at_kill} of {N}; files announced more than once per broker: {dups:?}");
    assert!(at_kill < N, "the kill happened mid-burst");
    // the killed node's broker too: what it took before the kill is journaled from the
    // node's audit session at restart (without it: one batch, 32, again; without the
    // journal, every message not yet acknowledged upstream, 179 and 212 in two runs)
    assert_eq!(
        dups[1], 0,
        "node 2 did not announce again what its broker took: {dups:?}"
    );
    assert_eq!(
        (dups[0], dups[2]),
        (0, 0),
        "the others announced each file once"
    );
}

/// The issue's outage: the upstream web server goes away for 20 s in the middle of a
/// 3,000-file drain (its connections cut, new ones refused); the files announced
/// meanwhile go to the retry queue, the server is marked down, and once it is back
/// everything is stored and announced through the batched, pipelined path (was: one
/// retry at a time, ~2 files/s, 12 minutes for such a backlog).
#[test]
fn a_web_server_outage_mid_drain_is_caught_up_at_full_speed() {
    let s = Scratch::new("outage");
    let origin = s.path("origin");
    let mut web = Some(WebServer::start(&origin, WebOptions::default()));
    let port = web.as_ref().unwrap().port;
    let base = web.as_ref().unwrap().base_url();
    let (up, _local, watch, dir, node) = node_between(&s, &[]);
    let n = 3000;
    let (batch, rels) = files(
        &origin,
        &base,
        n,
        |i| format!("2026120216/OUT/B{}/f{i}.txt", i % 10),
        |i| format!("outage {i} {}\n", "o".repeat(2000)),
        |_| false,
    );
    publish_raw(&up, &batch[..n / 2]);
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels[..n / 2])
            == (n / 2, n / 2)),
        "first half: {:?}",
        arrived(&dir, &watch, &rels[..n / 2])
    );
    let outage = std::time::Instant::now();
    drop(web.take());
    publish_raw(&up, &batch[n / 2..]);
    assert!(
        wait_until(WAIT, || node.log_text().contains("marked down")),
        "{}",
        node.log_text()
    );
    let left = std::time::Duration::from_secs(20).saturating_sub(outage.elapsed());
    std::thread::sleep(left);
    let (stored, _) = arrived(&dir, &watch, &rels);
    assert!(stored < n, "the outage held files back ({stored} stored)");
    let _web = WebServer::start_on(port, &origin);
    let back = std::time::Instant::now();
    // the issue's target is 15 s; the bound leaves room for a loaded CI machine
    let caught_up = wait_until(30, || arrived(&dir, &watch, &rels) == (n, n));
    let secs = back.elapsed().as_secs_f64();
    eprintln!(
        "outage: {} files held back, all stored and announced {secs:.1} s after the server's return",
        n - stored
    );
    assert!(
        caught_up,
        "{:?} of {n} 30 s after the server's return\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
    for r in rels.iter().step_by(97) {
        assert_eq!(read(&dir, r), read(&origin, r), "{r}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(watch.count(), n, "each announced once");
}

/// The audit session at start behind a backlog larger than its receive maximum
/// (hardening issue, item 9): announcements of the node's own (its correlation data)
/// that the broker took while the node was down wait in the persistent audit session;
/// they are journaled and acknowledged as they come, so the rest and the marker behind
/// them arrive (before: the first 64 waited unacknowledged for the marker, which could
/// not come: "the audit session did not answer within 10 s"); and the marker is
/// published even when the request queue is full.
#[test]
fn an_audit_backlog_beyond_the_receive_maximum_is_drained_at_start() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{Client, Event, MqttOptions};
    let s = Scratch::new("audit-backlog");
    let (_up, local, _watch, _dir, mut node) = node_between(&s, &["--client-id", "auditfull"]);
    // the first start made the audit session, persistent; it waits for the node
    assert_eq!(node.term(), Some(0));
    let tag = meshnode::mesh::mqtt::publisher_tag("auditfull-post");
    let mut o = MqttOptions::new("backlog-publisher", "127.0.0.1", local.port);
    o.set_max_packet_size(Some(2_000_000));
    let n = 400;
    let (client, mut conn) = Client::new(o, n + 10);
    for i in 0..n {
        let rel = format!("2026120217/AUD/f{i}.txt");
        let a = announcement("http://127.0.0.1:9/data", &rel, b"x\n", false);
        let props = PublishProperties {
            correlation_data: Some(
                meshnode::mesh::mqtt::key_bytes(tag, (i as u64 + 1, 7))
                    .to_vec()
                    .into(),
            ),
            ..PublishProperties::default()
        };
        client
            .publish_with_properties(topic_of(&rel), QoS::AtLeastOnce, false, a, props)
            .unwrap();
    }
    let mut acked = 0;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked < n && std::time::Instant::now() < end {
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            conn.recv_timeout(std::time::Duration::from_secs(1))
        {
            acked += 1;
        }
    }
    assert_eq!(acked, n);
    let before = node.log_text().len();
    node.restart();
    assert!(
        wait_until(WAIT, || node.log_text()[before..].contains("subscribed")),
        "{}",
        node.log_text()
    );
    let log = node.log_text()[before..].to_string();
    assert!(!log.contains("did not answer"), "{log}");
    assert!(!log.contains("cannot publish its marker"), "{log}");
    assert!(
        log.contains(&format!("{n} announcements the broker took are journaled")),
        "{log}"
    );
}

/// A 0-byte temporary a SIGKILLed node left in the tree (hardening issue, item 10) is
/// swept when a flow starts; a live process's is kept.
#[test]
fn temporaries_of_a_killed_node_are_swept_at_start() {
    let s = Scratch::new("sweep");
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let dir = s.path("node");
    let left = format!("2026120217/SW/.meshnode.{dead}.0.tmp");
    let live = format!("2026120217/SW/.meshnode.{}.0.tmp", std::process::id());
    put(&dir, &left, b"");
    put(&dir, &live, b"");
    let (_up, _local, _watch, _dir, node) = node_between(&s, &[]);
    assert!(
        wait_until(WAIT, || !dir.join(&left).exists()),
        "{}",
        node.log_text()
    );
    assert!(wait_until(WAIT, || node
        .log_text()
        .contains("removed 1 temporaries")));
    assert!(
        dir.join(&live).exists(),
        "a live process's temporary is kept"
    );
}

/// Issue 23, item 8: an origin's own posted files come back round the ring; the origin,
/// frozen and then killed while the echoes were on their way, receives them again at
/// restart as redeliveries (DUP) of files it holds. Its broker already carries their
/// announcements (made by `meshnode post`, not by the flow): the flow must not announce
/// them a second time.
#[test]
fn an_origin_killed_while_its_posted_files_echo_back_does_not_announce_them_again() {
    let s = Scratch::new("ring-echo");
    let ring = Ring::new(&s);
    let (b, trees) = (&ring.brokers, &ring.trees);
    let origin_watch = Watcher::start(&b[0], "xpublic/#");
    let start = |i: usize, up: usize| ring.start(i, up);
    let mut n1 = start(0, 2);
    let n2 = start(1, 0);
    let n3 = start(2, 1);
    assert!(subscribed(&n1, 1) && subscribed(&n2, 1) && subscribed(&n3, 1));
    // node 1 frozen: the echoes pile up in its session, the first ones sent to it
    n1.signal("STOP");
    const N: usize = 300;
    let files: Vec<String> = (0..N)
        .map(|i| {
            let rel = format!("2026120219/E/f{i}.txt");
            put(&trees[0], &rel, format!("echo {i}\n").as_bytes());
            trees[0].join(rel).display().to_string()
        })
        .collect();
    let post = std::process::Command::new(env!("CARGO_BIN_EXE_meshnode"))
        .args(["post", "--inline", "--post-broker", &b[0].url()])
        .args(["--post-baseUrl", "http://127.0.0.1:9/", "--post-baseDir"])
        .arg(&trees[0])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        post.status.success(),
        "{}",
        String::from_utf8_lossy(&post.stderr)
    );
    assert!(
        wait_until(WAIT, || walk_count(&trees[2]) >= N),
        "node 3 holds the files: {}",
        walk_count(&trees[2])
    );
    // node 3 announced them to node 1's session: some sent to it (unacknowledged)
    std::thread::sleep(Duration::from_millis(500));
    n1.kill9();
    n1.restart();
    assert!(subscribed(&n1, 2), "node 1 subscribed again");
    // the redeliveries come first on the resumed session; let any repeat show up
    std::thread::sleep(Duration::from_secs(4));
    let mut per_rel: std::collections::HashMap<String, usize> = Default::default();
    for m in origin_watch.snapshot() {
        let v: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
        *per_rel
            .entry(v["relPath"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_rel.len(), N, "node 1's broker announced every file");
    let again = per_rel.values().filter(|n| **n > 1).count();
    assert_eq!(
        again,
        0,
        "files announced a second time on the origin's broker: {}",
        n1.log_text()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Found by the five-node chaos test: a node following two brokers that both carry the
/// same messages gets both copies redelivered (DUP) after a crash; the first is applied
/// and announced, the second found done and judged by the journal of acknowledged
/// announcements, where the first's was not yet: it was announced a second time (files
/// and removals alike).
#[test]
fn messages_redelivered_by_two_upstreams_after_a_crash_are_announced_once() {
    let s = Scratch::new("two-redeliveries");
    let (a, b) = (Broker::start(&s.path("a")), Broker::start(&s.path("b")));
    let local = Broker::start(&s.path("local"));
    let watch = Watcher::start(&local, "xpublic/#");
    let dir = s.path("node");
    let mut node = Node::start(
        &s.path("node.log"),
        &peer_args(
            &[&a, &b],
            &local,
            &dir,
            "http://127.0.0.1:9/",
            &["--inline"],
        ),
    );
    assert!(subscribed(&node, 2));
    const N: usize = 300;
    let rels: Vec<String> = (0..N).map(|i| format!("2026120300/T/f{i}.txt")).collect();
    let removals: Vec<(String, Vec<u8>)> = rels
        .iter()
        .map(|r| {
            let m = serde_json::json!({"pubTime": pub_time_now(), "baseUrl": "http://127.0.0.1:9/",
                "relPath": r, "fileOp": {"remove": ""}});
            (topic_of(r), serde_json::to_vec(&m).unwrap())
        })
        .collect();
    for (phase, batch) in [inline_batch("2026120300/T", "t", 0..N), removals]
        .into_iter()
        .enumerate()
    {
        // frozen: both brokers send it the messages, none is acknowledged
        node.signal("STOP");
        publish_raw(&a, &batch);
        publish_raw(&b, &batch);
        std::thread::sleep(Duration::from_millis(500));
        node.kill9();
        node.restart();
        let done = || {
            let (stored, _) = arrived(&dir, &watch, &rels);
            let announced = rels
                .iter()
                .filter(|r| watch.for_rel(r).len() > phase)
                .count();
            (if phase == 0 { stored } else { N - stored }, announced)
        };
        assert!(wait_until(WAIT, || done() == (N, N)), "{:?}", done());
        std::thread::sleep(Duration::from_secs(2)); // let any repeat show up
        let twice = rels
            .iter()
            .filter(|r| watch.for_rel(r).len() > phase + 1)
            .count();
        assert_eq!(twice, 0, "phase {phase}: announced twice, of {N}");
    }
}

/// A removal that comes while its file waits in the retry queue (its server away)
/// drops it there: tried later, from a server that had not heard of the removal, the
/// file would come back on this node and go on round the mesh (the chaos test's
/// channel evictions travel so).
#[test]
fn a_removal_drops_the_queued_retries_of_its_file() {
    let s = Scratch::new("remove-queued");
    let peer_tree = s.path("peer");
    put(&peer_tree, "gone/g.txt", b"gone\n");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/data");
    let (up, _local, watch, dir, node) = node_between(&s, &["--retry-time", "0"]);
    publish_raw(
        &up,
        &[(
            topic_of("gone/g.txt"),
            announcement(&base, "gone/g.txt", b"gone\n", false),
        )],
    );
    assert!(
        wait_until(WAIT, || node.log_text().contains("queued for retry")),
        "{}",
        node.log_text()
    );
    let removal = serde_json::json!({"pubTime": pub_time_now(), "baseUrl": base,
        "relPath": "gone/g.txt", "fileOp": {"remove": ""}});
    publish_raw(
        &up,
        &[(
            topic_of("gone/g.txt"),
            serde_json::to_vec(&removal).unwrap(),
        )],
    );
    std::thread::sleep(Duration::from_secs(1)); // taken by the node
                                                // the server comes back, still holding the file: long enough for a retry
    let web = WebServer::start_on(port, &peer_tree);
    std::thread::sleep(Duration::from_secs(12));
    assert!(read(&dir, "gone/g.txt").is_none(), "{}", node.log_text());
    assert_eq!(web.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(watch
        .for_rel("gone/g.txt")
        .iter()
        .all(|m| m.get("fileOp").is_some()));
    assert!(node.log_text().contains("its 1 queued retries are dropped"));
}
