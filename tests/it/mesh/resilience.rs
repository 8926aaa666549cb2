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
fn a_download_slower_than_three_keepalives_keeps_the_sessions() {
    let s = Scratch::new("slow");
    let (up, _local, watch, _dir, node) = node_between(&s, &["--keepalive", "5"]);
    let peer_tree = s.path("peer");
    // keepalive 5 s (rumqttc's minimum): 16 s is over three keepalives
    let web = WebServer::start(
        &peer_tree,
        WebOptions {
            delay: Duration::from_secs(16),
            ..Default::default()
        },
    );
    put(&peer_tree, "slow/s.txt", b"slow\n");
    let mut items = vec![(
        topic_of("slow/s.txt"),
        announcement(&web.base_url(), "slow/s.txt", b"slow\n", false),
    )];
    for i in 0..5 {
        let rel = format!("slow/after{i}.txt");
        items.push((
            topic_of(&rel),
            announcement("http://127.0.0.1:1/data", &rel, b"after\n", true),
        ));
    }
    publish_raw(&up, &items);
    assert!(wait_until(WAIT, || watch.count() >= 6));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(watch.count(), 6, "no redelivery, nothing announced twice");
    let log = node.log_text();
    assert_eq!(
        log.matches("connected (session").count(),
        2,
        "one connect upstream, one to post: {log}"
    );
    assert_eq!(web.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
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
