//! The download engine: files download side by side, so a dead or slow server holds only
//! its own files; the others are stored and announced meanwhile.

use super::*;
use crate::common::*;
use std::time::Duration;

#[test]
fn a_dead_server_holds_only_its_own_files() {
    let s = Scratch::new("engine-dead");
    // a long in-flow budget: before the engine, the flow waited for a dead server this long
    let (up, _local, watch, dir, node) = node_between(&s, &["--retry-time", "600"]);
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    let dead = format!("http://127.0.0.1:{}/data", free_port());
    let mut batch = Vec::new();
    // the dead ones first, so nothing after them could slip past a blocked flow
    for i in 0..3 {
        let rel = format!("2026112911/GTS/dead{i}.txt");
        batch.push((topic_of(&rel), announcement(&dead, &rel, b"never\n", false)));
    }
    let (good_batch, good) = files(
        &origin,
        &web.base_url(),
        30,
        |i| format!("2026112911/GTS/good{i}.txt"),
        |i| format!("good {i}\n"),
        |_| false,
    );
    batch.extend(good_batch);
    publish_raw(&up, &batch);
    // bounded well below the dead files' retry time: only concurrency gets them here
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &good) == (30, 30)),
        "good files stored and announced: {:?}\n{}",
        arrived(&dir, &watch, &good),
        node.log_text()
    );
    for i in 0..3 {
        let rel = format!("2026112911/GTS/dead{i}.txt");
        assert!(read(&dir, &rel).is_none(), "{rel} cannot have been stored");
        assert!(
            watch.for_rel(&rel).is_empty(),
            "{rel} cannot have been announced"
        );
    }
    assert!(
        node.log_text().contains("dead0.txt: GET"),
        "the dead ones are tried"
    );
}

#[test]
fn a_slow_file_does_not_hold_the_others() {
    let s = Scratch::new("engine-slow");
    let (up, _local, watch, dir, node) = node_between(&s, &["--timeout", "300"]);
    let origin = s.path("origin");
    // the first file asked for sends 10 bytes, then nothing for longer than the wait
    let web = WebServer::start(
        &origin,
        WebOptions {
            stall_after: Some(10),
            stall: Duration::from_secs(2 * WAIT),
            ..WebOptions::default()
        },
    );
    let (batch, rels) = files(
        &origin,
        &web.base_url(),
        20,
        |i| format!("2026112911/GTS/f{i}.txt"),
        |i| format!("file {i}: {}\n", "x".repeat(100)),
        |_| false,
    );
    publish_raw(&up, &batch);
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels) == (19, 19)),
        "all but the stalled one stored and announced: {:?}\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
    // the stalled one is still in progress, not stored half-way
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(arrived(&dir, &watch, &rels), (19, 19));
}

#[test]
fn across_a_long_link_downloads_overlap_within_the_connections_per_server() {
    let s = Scratch::new("engine-wan");
    let (up, _local, watch, dir, node) = node_between(&s, &["--host-connections", "3"]);
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    // 50 ms each way: a 100 ms round trip to the server
    let link = DelayProxy::start(web.port, Duration::from_millis(50));
    let base = format!("{}/data", link.url("http"));
    let (batch, rels) = files(
        &origin,
        &base,
        40,
        |i| format!("2026112911/GTS/far{i}.txt"),
        |i| format!("far {i}\n"),
        |_| false,
    );
    publish_raw(&up, &batch);
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels) == (40, 40)),
        "{:?}\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
    let most = link.most_open.load(std::sync::atomic::Ordering::SeqCst);
    // side by side, but never more than --host-connections at once
    assert!((2..=3).contains(&most), "{most} connections open at once");
}

#[test]
fn a_backlog_larger_than_the_window_drains_across_a_long_link() {
    let s = Scratch::new("engine-backlog");
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let watch = Watcher::start(&local, "xpublic/#");
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    // the upstream broker and the web server 20 ms away
    let web_link = DelayProxy::start(web.port, Duration::from_millis(10));
    let mqtt_link = DelayProxy::start(up.port, Duration::from_millis(10));
    let dir = s.path("node");
    let mut args = peer_args(&[], &local, &dir, "http://127.0.0.1:9/data", &[]);
    // a window whose acks outnumber a connection's request queue (512): acks that wait
    // while its thread waits to hand over a message must not stop the flow
    for a in ["--broker", &mqtt_link.url("mqtt"), "--inflight", "500"] {
        args.push(a.to_string());
    }
    let mut node = Node::start(&s.path("node.log"), &args);
    assert!(subscribed(&node, 1));
    node.kill9(); // the persistent session now queues for it
    let base = format!("{}/data", web_link.url("http"));
    // enough to fill the window twice over (the flow stalled at ~1,140 before the fix)
    let (batch, rels) = files(
        &origin,
        &base,
        1200,
        |i| format!("2026112913/GTS/B{}/b{i}.txt", i % 10),
        |i| format!("backlog {i}\n"),
        |_| false,
    );
    publish_raw(&up, &batch);
    node.restart();
    assert!(
        wait_until(2 * WAIT, || arrived(&dir, &watch, &rels) == (1200, 1200)),
        "{:?}\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
}

#[test]
fn three_nodes_sharing_a_subscription_split_the_messages() {
    let s = Scratch::new("engine-share");
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let watch = Watcher::start(&local, "xpublic/#");
    let dirs: Vec<_> = (0..3).map(|i| s.path(&format!("node{i}"))).collect();
    let nodes: Vec<Node> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let base = format!("http://127.0.0.1:9/node{i}");
            let n = Node::start(
                &s.path(&format!("node{i}.log")),
                &peer_args(&[&up], &local, d, &base, &["--share", "mesh"]),
            );
            assert!(subscribed(&n, 1));
            n
        })
        .collect();
    publish_raw(&up, &inline_batch("2026112914/GTS", "shared ", 0..60));
    let rels: Vec<String> = (0..60)
        .map(|i| format!("2026112914/GTS/f{i}.txt"))
        .collect();
    let held = |d: &std::path::Path| rels.iter().filter(|r| read(d, r).is_some()).count();
    assert!(
        wait_until(WAIT, || {
            let announced = rels.iter().filter(|r| !watch.for_rel(r).is_empty()).count();
            dirs.iter().map(|d| held(d)).sum::<usize>() == 60 && announced == 60
        }),
        "held {:?}\n{}",
        dirs.iter().map(|d| held(d)).collect::<Vec<_>>(),
        nodes[0].log_text()
    );
    // each file went to one node of the group, and every node had a share
    for r in &rels {
        assert_eq!(
            dirs.iter().filter(|d| read(d, r).is_some()).count(),
            1,
            "{r}"
        );
    }
    assert!(dirs.iter().all(|d| held(d) > 0), "every node took part");
}

/// A small tmpfs mounted at `dir`, unmounted when dropped (needs root).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_loses_nothing_and_the_flow_resumes_when_space_returns() {
    let s = Scratch::new("engine-full");
    let dir = s.path("node");
    let Some(disk) = SmallDisk::mount(&dir, "200k") else {
        // mounting a tmpfs needs root: CI and the development machine have it
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    // the node's tree is the small disk mounted at s.path("node")
    let (up, _local, watch, _, node) = node_between(&s, &[]);
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    // 40 files of 10 KB, inline and downloaded, for a disk of 200 KB
    let (batch, rels) = files(
        &origin,
        &web.base_url(),
        40,
        |i| format!("2026112915/GTS/full{i}.txt"),
        |i| format!("{i:>4} {}\n", "z".repeat(10_000)),
        |i| i % 2 == 0,
    );
    publish_raw(&up, &batch);
    assert!(
        wait_until(WAIT, || node.log_text().contains("cannot store")),
        "the full disk is noticed\n{}",
        node.log_text()
    );
    // nothing unstored is announced, while the disk stays full
    std::thread::sleep(Duration::from_secs(1));
    let (stored, announced) = arrived(&dir, &watch, &rels);
    assert!(stored < 40, "a 200 KB disk cannot hold 400 KB");
    assert!(
        announced <= stored,
        "{announced} announced, {stored} stored"
    );
    disk.grow("2m");
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels) == (40, 40)),
        "every file stored and announced once the disk has room: {:?}\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
    assert!(node.log_text().contains("takes files again"));
    assert!(!node.log_text().contains("not stored"), "none given up");
}

#[test]
fn a_flow_held_up_with_more_messages_in_flight_than_its_queue_holds_loses_nothing() {
    let s = Scratch::new("engine-held");
    let dir = s.path("node");
    let Some(disk) = SmallDisk::mount(&dir, "100k") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    // a receive maximum of 500, far beyond what the flow's queue holds: while the full
    // disk holds the flow up, the connection waits for room (TCP holds the rest), then
    // leaves the messages to the broker (keepalive 5 s: after 2.5 s) and reconnects
    // once the flow is clear
    let (up, _local, watch, _, node) = node_between(&s, &["--inflight", "500", "--keepalive", "5"]);
    // 400 inline files of 1 KB for a disk of 100 KB
    let (batch, rels) = files(
        &s.path("origin"),
        "http://127.0.0.1:1/data",
        400,
        |i| format!("2026120316/GTS/held{i}.txt"),
        |i| format!("{i:>4} {}\n", "h".repeat(1_000)),
        |_| true,
    );
    publish_raw(&up, &batch);
    assert!(
        wait_until(WAIT, || node
            .log_text()
            .contains("no room in the flow's queue")),
        "the connection stops waiting for the held-up flow\n{}",
        node.log_text()
    );
    disk.grow("4m");
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels) == (400, 400)),
        "every file stored and announced once the disk has room: {:?}\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
    assert!(
        wait_until(WAIT, || node
            .log_text()
            .contains("reconnecting so the broker delivers again")),
        "{}",
        node.log_text()
    );
    // the messages delivered again were not announced again
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(watch.count(), 400, "each file announced once");
}

#[test]
fn a_trickling_download_is_abandoned_and_tried_again() {
    let s = Scratch::new("engine-trickle");
    // at least 1,000 bytes/s over 2 s, or the download is dropped and retried
    let (up, _local, watch, dir, node) =
        node_between(&s, &["--min-rate", "1000", "--min-rate-time", "2"]);
    let origin = s.path("origin");
    // the first answer sends a byte every 50 ms (20 bytes/s): 2,000 bytes would take
    // 100 s, and no single read ever waits long enough for the per-read timeout
    let web = WebServer::start(
        &origin,
        WebOptions {
            trickle: Some(Duration::from_millis(50)),
            ..WebOptions::default()
        },
    );
    let rel = "2026112916/GTS/trickle.txt".to_string();
    let data = "t".repeat(2000);
    put(&origin, &rel, data.as_bytes());
    publish_raw(
        &up,
        &[(
            topic_of(&rel),
            announcement(&web.base_url(), &rel, data.as_bytes(), false),
        )],
    );
    let rels = [rel];
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels) == (1, 1)),
        "{}",
        node.log_text()
    );
    assert!(node.log_text().contains("too slow"), "{}", node.log_text());
}

#[test]
fn dead_links_go_to_the_retry_queue_and_the_good_files_flow_past_them() {
    let s = Scratch::new("engine-retry");
    // a short budget, a short life in the queue: the test sees both ends of it
    let (up, _local, watch, dir, node) = node_between(
        &s,
        &[
            "--timeout",
            "2",
            "--retry-time",
            "1",
            "--retry-ttl",
            "12",
            "--stats-interval",
            "1",
        ],
    );
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    let refused = format!("http://127.0.0.1:{}/data", free_port());
    let mute = MuteServer::start();
    let (mut batch, good) = files(
        &origin,
        &web.base_url(),
        294,
        |i| format!("2026112911/GTS/good{i}.txt"),
        |i| format!("good {i}\n"),
        |_| false,
    );
    // 1% at a port that refuses, 1% at a server that never answers, spread out
    let mut bad = Vec::new();
    for i in 0..6 {
        let rel = format!("2026112911/GTS/bad{i}.txt");
        let base = if i % 2 == 0 {
            &refused
        } else {
            &mute.base_url()
        };
        let a = (topic_of(&rel), announcement(base, &rel, b"never\n", false));
        batch.insert(i * 49, a);
        bad.push(rel);
    }
    publish_raw(&up, &batch);
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &good) == (294, 294)),
        "good files stored and announced: {:?}\n{}",
        arrived(&dir, &watch, &good),
        node.log_text()
    );
    // each bad one in the retry queue: queued after its attempts, moved there while
    // its download hung, or sent there untried once its server was marked down
    let in_queue = |log: &str| {
        bad.iter()
            .filter(|r| {
                log.lines().any(|l| {
                    l.contains(&format!("{r}: "))
                        && (l.contains("queued for retry")
                            || l.contains("moved to the retry queue"))
                })
            })
            .count()
    };
    assert!(
        wait_until(WAIT, || in_queue(&node.log_text()) == 6),
        "the bad ones queued: {}\n{}",
        in_queue(&node.log_text()),
        node.log_text()
    );
    // tried again from the queue, then dropped at --retry-ttl, each with its line
    assert!(
        wait_until(WAIT, || node
            .log_text()
            .matches("dropped from the retry queue")
            .count()
            >= 6),
        "dropped at the ttl:\n{}",
        node.log_text()
    );
    let log = node.log_text();
    assert!(log.contains("retried "), "{log}");
    let retried: u64 = log
        .lines()
        .filter_map(|l| l.split("retried ").nth(1))
        .filter_map(|r| {
            r.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(retried >= 1, "entries were tried again: {retried}\n{log}");
    for r in &bad {
        assert!(read(&dir, r).is_none() && watch.for_rel(r).is_empty());
        assert!(
            log.contains(&format!("{r}: dropped from the retry queue")),
            "{r}: one line when dropped\n{log}"
        );
    }
    for server in [&refused, &mute.base_url()] {
        let origin = server.trim_end_matches("/data");
        assert!(
            log.contains(&format!("{origin}: marked down after 3 failures")),
            "{origin} marked down\n{log}"
        );
    }
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn the_retry_queue_survives_sigkill_and_is_taken_up_at_restart() {
    let s = Scratch::new("engine-retry-kill");
    let (up, _local, watch, dir, mut node) =
        node_between(&s, &["--timeout", "2", "--retry-time", "0"]);
    let origin = s.path("origin");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/data");
    let (batch, rels) = files(
        &origin,
        &base,
        20,
        |i| format!("2026112911/GTS/later{i}.txt"),
        |i| format!("later {i}\n"),
        |_| false,
    );
    publish_raw(&up, &batch);
    assert!(
        wait_until(WAIT, || node.log_text().matches("queued for retry").count()
            + node.log_text().matches("server marked down").count()
            >= 20),
        "all in the retry queue:\n{}",
        node.log_text()
    );
    // acknowledged upstream: the broker will not deliver them again
    std::thread::sleep(Duration::from_millis(500));
    node.kill9();
    let _web = WebServer::start_on(port, &origin);
    node.restart();
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels) == (20, 20)),
        "stored and announced after the restart: {:?}\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
    assert!(
        node.log_text()
            .contains("20 messages taken up from the last run"),
        "{}",
        node.log_text()
    );
}

#[test]
fn a_server_back_from_down_is_probed_and_its_queued_files_fetched() {
    let s = Scratch::new("engine-probe");
    let (up, _local, watch, dir, node) = node_between(&s, &["--retry-time", "0"]);
    let origin = s.path("origin");
    let port = free_port();
    let (batch, rels) = files(
        &origin,
        &format!("http://127.0.0.1:{port}/data"),
        10,
        |i| format!("2026112911/GTS/back{i}.txt"),
        |i| format!("back {i}\n"),
        |_| false,
    );
    publish_raw(&up, &batch);
    assert!(
        wait_until(WAIT, || node
            .log_text()
            .contains("marked down after 3 failures")),
        "{}",
        node.log_text()
    );
    let _web = WebServer::start_on(port, &origin);
    // left alone for 10 s, then one file probes it; its success brings the rest
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels) == (10, 10)),
        "{:?}\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
    let log = node.log_text();
    assert!(
        log.contains("back up; its queued files are tried now"),
        "{log}"
    );
    assert_eq!(
        log.matches("stored from the retry queue").count(),
        10,
        "{log}"
    );
}

#[test]
fn a_probe_answered_404_lets_the_next_queued_file_probe_the_server() {
    // the server comes back without the files queued first (due first, so they probe
    // it): each 404 ends its probe, so the next file probes it, and the one still there
    // is fetched (before: the first 404 left the server "being probed" for ever, and
    // its queued files waited for their time to live)
    let s = Scratch::new("engine-probe-404");
    let (up, _local, watch, dir, node) = node_between(&s, &["--retry-time", "0"]);
    let origin = s.path("origin");
    let port = free_port();
    let (batch, rels) = files(
        &origin,
        &format!("http://127.0.0.1:{port}/data"),
        4,
        |i| format!("2026112911/GTS/gone{i}.txt"),
        |i| format!("gone {i}\n"),
        |_| false,
    );
    publish_raw(&up, &batch);
    assert!(
        wait_until(WAIT, || node
            .log_text()
            .contains("marked down after 3 failures")),
        "{}",
        node.log_text()
    );
    for r in &rels[..3] {
        std::fs::remove_file(origin.join(r)).unwrap();
    }
    let _web = WebServer::start_on(port, &origin);
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels[3..]) == (1, 1)),
        "the file still there is fetched: {:?}\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
    assert_eq!(arrived(&dir, &watch, &rels[..3]).0, 0);
}
