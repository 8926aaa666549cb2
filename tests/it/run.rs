//! `meshnode run --config`: a whole node in one process, against real mosquitto.

use crate::common::*;
use std::time::{Duration, Instant};

const WAIT: u64 = 60;

fn write_config(s: &Scratch, name: &str, text: &str) -> String {
    let p = s.path(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn two_flows_and_the_nodes_own_server_feed_a_second_node() {
    let s = Scratch::new("run-two-flows");
    let up = Broker::start(&s.path("up"));
    let a_broker = Broker::start(&s.path("a-broker"));
    let b_broker = Broker::start(&s.path("b-broker"));
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    let a_dir = s.path("a");
    let a_port = free_port();
    let conf = write_config(
        &s,
        "a.conf",
        &format!(
            "dir {dir}\nlisten 127.0.0.1:{a_port}\nretention 0\nverbose 2\n\
             post-broker {post}\npost_baseUrl http://127.0.0.1:{a_port}\n\
             flow warnings\nbroker {up}\nsubtopic +/W/#\n\
             flow rest\nbroker {up}\nsubtopic +/S/#\n",
            dir = a_dir.display(),
            post = a_broker.url(),
            up = up.url()
        ),
    );
    let a = Node::start(&s.path("a.log"), &["run".into(), "--config".into(), conf]);
    assert!(
        wait_until(WAIT, || a.log_text().matches("subscribed").count() >= 2),
        "{}",
        a.log_text()
    );
    // node B follows node A's broker and downloads from A's own server
    let b_dir = s.path("b");
    let b = Node::start(
        &s.path("b.log"),
        &peer_args(&[&a_broker], &b_broker, &b_dir, "http://127.0.0.1:9", &[]),
    );
    assert!(wait_until(WAIT, || b.log_text().contains("subscribed")));
    let watch_b = Watcher::start(&b_broker, "xpublic/#");

    put(&origin, "2026112312/W/warning.txt", b"WARNING\n");
    put(&origin, "2026112312/S/synop.txt", b"SYNOP\n");
    publish_raw(
        &up,
        &[
            (
                "xpublic/v03/post/2026112312/W".into(),
                announcement(
                    &web.base_url(),
                    "2026112312/W/warning.txt",
                    b"WARNING\n",
                    false,
                ),
            ),
            (
                "xpublic/v03/post/2026112312/S".into(),
                announcement(&web.base_url(), "2026112312/S/synop.txt", b"SYNOP\n", true),
            ),
        ],
    );
    assert!(
        wait_until(WAIT, || watch_b.count() == 2),
        "both reach node B: {}",
        b.log_text()
    );
    for rel in ["2026112312/W/warning.txt", "2026112312/S/synop.txt"] {
        assert_eq!(read(&a_dir, rel), read(&origin, rel), "{rel} on A");
        assert_eq!(read(&b_dir, rel), read(&origin, rel), "{rel} on B");
    }
    let log = a.log_text();
    assert!(
        log.contains("[warnings] 2026112312/W/warning.txt: stored"),
        "flow names in the log: {log}"
    );
    assert!(log.contains("[rest] 2026112312/S/synop.txt: stored"));
    assert!(
        log.contains("\"GET /2026112312/W/warning.txt\" 200 8"),
        "B downloaded from A's server"
    );
}

#[test]
fn sigterm_during_a_download_leaves_no_partial_file_and_acks_nothing() {
    let s = Scratch::new("run-sigterm");
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let origin = s.path("origin");
    let big = vec![b'x'; 200_000];
    put(&origin, "2026112313/big.bin", &big);
    let stalling = WebServer::start(
        &origin,
        WebOptions {
            stall_after: Some(100_000),
            stall: Duration::from_secs(120),
            ..Default::default()
        },
    );
    let dir = s.path("node");
    let text = format!(
        "dir {}\nlisten none\npost-broker {}\npost-baseUrl http://127.0.0.1:9\nbroker {}\ntimeout 3\nverbose 2\n",
        dir.display(),
        local.url(),
        up.url()
    );
    let conf = write_config(&s, "n.conf", &text);
    let mut node = Node::start(
        &s.path("n.log"),
        &["run".into(), "--config".into(), conf.clone()],
    );
    assert!(wait_until(WAIT, || node.log_text().contains("subscribed")));
    publish_raw(
        &up,
        &[(
            "xpublic/v03/post/2026112313".into(),
            announcement(&stalling.base_url(), "2026112313/big.bin", &big, false),
        )],
    );
    assert!(wait_until(WAIT, || stalling
        .requests
        .load(std::sync::atomic::Ordering::SeqCst)
        == 1));
    std::thread::sleep(Duration::from_millis(500)); // half the file is in the temporary file
    let started = Instant::now();
    assert_eq!(node.term(), Some(0), "clean exit");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no longer than the per-read timeout"
    );
    assert_eq!(
        walk_all(&dir),
        0,
        "nothing in the tree, not even a temporary file"
    );

    // the message was not acknowledged: started again, the broker delivers it again and
    // the server (which stalls only its first answer) sends the file whole
    let watch = Watcher::start(&local, "xpublic/#");
    let node2 = Node::start(&s.path("n2.log"), &["run".into(), "--config".into(), conf]);
    let _ = &node2;
    assert!(
        wait_until(WAIT * 3, || read(&dir, "2026112313/big.bin").as_deref()
            == Some(big.as_slice())),
        "redelivered and stored"
    );
    assert!(wait_until(WAIT, || watch.count() == 1));
}

/// Every entry in a tree, hidden ones included.
fn walk_all(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_bad_config_is_refused_with_file_and_line() {
    let s = Scratch::new("run-badconf");
    let conf = write_config(
        &s,
        "bad.conf",
        "broker mqtt://127.0.0.1:1\npost-broker none\n\nlag-warn soon\n",
    );
    let mut node = Node::start(
        &s.path("bad.log"),
        &["run".into(), "--config".into(), conf.clone()],
    );
    let status = node.child.take().unwrap().wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let log = node.log_text();
    assert!(
        log.contains(&format!(
            "{conf}:4: --lag-warn: \"soon\" is not a valid number"
        )),
        "{log}"
    );
}

#[test]
fn post_of_many_files_shows_progress_on_a_terminal_only() {
    let s = Scratch::new("post-progress");
    let broker = Broker::start(&s.path("b"));
    let watch = Watcher::start(&broker, "xpublic/#");
    let dir = s.path("data");
    let files: Vec<String> = (0..60)
        .map(|i| {
            let rel = format!("2026112918/P/f{i}.txt");
            put(&dir, &rel, format!("file {i}\n").as_bytes());
            dir.join(rel).display().to_string()
        })
        .collect();
    let args = |files: &[String]| {
        let mut a = vec![
            env!("CARGO_BIN_EXE_meshnode").to_string(),
            "post".into(),
            "--post-broker".into(),
            broker.url(),
            "--post-baseUrl".into(),
            "http://127.0.0.1:9/".into(),
            "--post-baseDir".into(),
            dir.display().to_string(),
        ];
        a.extend_from_slice(files);
        a
    };
    // on a terminal (script(1) gives the command one): the progress lines
    let tty = std::process::Command::new("script")
        .args(["-qec", &args(&files[..30]).join(" "), "/dev/null"])
        .output()
        .expect("script (util-linux)");
    let shown = String::from_utf8_lossy(&tty.stdout).to_string();
    assert!(tty.status.success(), "{shown}");
    assert!(
        !shown.contains("read 30/30"),
        "under 50 files: no progress: {shown}"
    );
    let tty = std::process::Command::new("script")
        .args(["-qec", &args(&files).join(" "), "/dev/null"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&tty.stdout).to_string();
    assert!(tty.status.success(), "{shown}");
    assert!(
        shown.contains("read 60/60") && shown.contains("sent 60/60"),
        "{shown}"
    );
    // in a log (no terminal): none
    let plain = std::process::Command::new(env!("CARGO_BIN_EXE_meshnode"))
        .args(&args(&files)[1..])
        .output()
        .unwrap();
    assert!(plain.status.success());
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(!err.contains("60/60") && !err.contains('\r'), "{err}");
    assert!(
        wait_until(WAIT, || watch.count() == 150),
        "{}",
        watch.count()
    );
}

/// systemd's notifications (issue 22): under a `$NOTIFY_SOCKET` of the test's own, the
/// node says READY=1 once its flows run, keeps STATUS= to their state, and pings the
/// watchdog while every flow's loop makes progress; a flow made to hang stops the
/// pings (systemd would then restart the node), and the status says which flow.
#[test]
fn the_watchdog_is_fed_while_the_flows_progress_and_not_when_one_hangs() {
    use std::os::unix::net::UnixDatagram;
    let s = Scratch::new("run-notify");
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let sock_path = s.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = free_port();
    let conf = write_config(
        &s,
        "n.conf",
        &format!(
            "dir {dir}\nlisten 127.0.0.1:{port}\nverbose 2\npost-broker {post}\n\
             post_baseUrl http://127.0.0.1:{port}\n\
             flow steady\nbroker {up}\nsubtopic a/#\n\
             flow stuck\nbroker {up}\nsubtopic b/#\n",
            dir = s.path("data").display(),
            post = local.url(),
            up = up.url()
        ),
    );
    let sock_env = sock_path.display().to_string();
    let node = Node::start_env(
        &s.path("n.log"),
        &["run".into(), "--config".into(), conf],
        &[
            ("NOTIFY_SOCKET", sock_env.as_str()),
            // pings every second; a flow silent for 2 s is hung
            ("WATCHDOG_USEC", "2000000"),
            ("MESHNODE_FAULT_HANG", "stuck 6"),
        ],
    );
    // (time since start, datagram)
    let start = Instant::now();
    let mut heard: Vec<(f64, String)> = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(14) {
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            heard.push((start.elapsed().as_secs_f64(), text));
        }
    }
    let all: String = heard.iter().map(|(t, m)| format!("{t:.1}: {m}")).collect();
    let ready_at = heard
        .iter()
        .find(|(_, m)| m.contains("READY=1"))
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("no READY=1:\n{all}\n{}", node.log_text()));
    assert!(
        all.contains("STATUS=flow steady: ") && all.contains("flow stuck: "),
        "{all}"
    );
    let pings: Vec<f64> = heard
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        pings.iter().filter(|t| **t > ready_at && **t < 6.0).count() >= 2,
        "pings while both flows progress:\n{all}"
    );
    // the stuck flow stops 6 s after it started (about as the node did), and 2 s later
    // counts as hung: no ping in the last seconds
    assert!(
        pings.iter().all(|t| *t < 10.5),
        "pings went on with a flow hung:\n{all}"
    );
    assert!(all.contains("flow stuck: not progressing"), "{all}");
    assert!(
        node.log_text().contains("hanging on purpose"),
        "{}",
        node.log_text()
    );
}
