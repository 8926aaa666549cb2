//! `GET /metrics` of a running node: the text format passes `promtool check metrics`
//! (Debian's prometheus package), the counters move as a drain proceeds, and no
//! credentials show in labels.

use crate::common::*;

const WAIT: u64 = 60;

fn metrics(port: u16) -> String {
    let r = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    String::from_utf8(r.body).unwrap()
}

/// The value of the sample `line_start` (name and labels as written).
fn value(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// A node from `options` (before its sections), with an open channel MEMO.
fn start(s: &Scratch, options: &str) -> (Node, std::path::PathBuf) {
    let conf = s.path("n.conf");
    let dir = s.path("data");
    let text = format!(
        "dir {}\n{options}channel MEMO\naccess open\n",
        dir.display()
    );
    std::fs::write(&conf, text).unwrap();
    let node = Node::start(
        &s.path("n.log"),
        &["run".into(), "--config".into(), conf.display().to_string()],
    );
    (node, conf)
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_move_with_a_drain() {
    let s = Scratch::new("metrics");
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let origin = s.path("origin");
    let web = WebServer::start(&origin, WebOptions::default());
    let (port, mport) = (free_port(), free_port());
    let (node, _) = start(
        &s,
        &format!(
            "listen 127.0.0.1:{port}\nmetrics-listen 127.0.0.1:{mport}\nverbose 2\n\
             post-broker {}\nflow main\nbroker {}\nsubtopic #\n",
            local.url(),
            up.url()
        ),
    );
    assert!(
        wait_until(WAIT, || node.log_text().contains("subscribed")),
        "{}",
        node.log_text()
    );
    let main = "meshnode_downloaded_total{flow=\"main\"}";
    assert!(wait_until(WAIT, || value(&metrics(mport), main) == Some(0.0)));
    let before = metrics(mport);
    // on their own server (metrics-listen), not on the node's
    assert_eq!(http(port, "GET", "/metrics", &[], b"").status, 404);
    promtool_check(&before);
    assert_eq!(
        value(&before, "meshnode_broker_connected{flow=\"main\""),
        None,
        "labels: flow, broker"
    );
    assert!(before.contains("meshnode_broker_connected{flow=\"main\",broker="));

    // a drain: 20 files from a server whose base URL carries credentials
    let base = web.base_url().replace("http://", "http://reader:s3cret@");
    let mut msgs = Vec::new();
    for i in 0..20 {
        let rel = format!("2026112912/M/f{i}.txt");
        let data = format!("file {i}\n").into_bytes();
        put(&origin, &rel, &data);
        msgs.push((
            "xpublic/v03/post/2026112912/M".to_string(),
            announcement(&base, &rel, &data, false),
        ));
    }
    publish_raw(&up, &msgs);
    assert!(
        wait_until(WAIT, || value(&metrics(mport), main) == Some(20.0)),
        "{}",
        metrics(mport)
    );
    // an upload taken, one refused
    assert_eq!(
        http(
            port,
            "POST",
            "/taker",
            &[("Content-Type", "text/plain; cid=MEMO")],
            b"memo"
        )
        .status,
        201
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/taker",
            &[("Content-Type", "text/plain; cid=NOPE")],
            b"x"
        )
        .status,
        404
    );
    let after = metrics(mport);
    promtool_check(&after);
    assert_eq!(
        value(&after, "meshnode_messages_total{flow=\"main\"}"),
        Some(20.0)
    );
    assert_eq!(
        value(&after, "meshnode_downloaded_bytes_total{flow=\"main\"}"),
        Some((0..20).map(|i| format!("file {i}\n").len()).sum::<usize>() as f64)
    );
    assert_eq!(
        value(&after, "meshnode_lag_seconds_count{flow=\"main\"}"),
        Some(20.0)
    );
    // the flow's threads' CPU: a part of the process's (20 small files may take less
    // than the 10 ms a clock tick counts: the unit test measures a busy thread)
    let cpu = value(&after, "meshnode_flow_cpu_seconds_total{flow=\"main\"}").unwrap();
    let process = value(&after, "meshnode_process_cpu_seconds_total").unwrap();
    assert!((0.0..=process + 0.01).contains(&cpu), "{cpu} of {process}");
    assert_eq!(
        value(&after, "meshnode_channel_products{channel=\"MEMO\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "meshnode_channel_publications_total{channel=\"MEMO\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "meshnode_channel_refusals_total{channel=\"(unknown)\"}"
        ),
        Some(1.0)
    );
    // the server's origin: scheme://host:port of its base URL
    let server = web
        .base_url()
        .splitn(4, '/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");
    assert_eq!(
        value(
            &after,
            &format!("meshnode_dataserver_status_flag{{flow=\"main\",server=\"{server}\"}}")
        ),
        Some(1.0),
        "{after}"
    );
    assert!(value(&after, &format!("meshnode_dataserver_last_download_timestamp_seconds{{flow=\"main\",server=\"{server}\"}}")).unwrap() > 1.7e9);
    assert!(value(&after, "meshnode_process_resident_memory_bytes").unwrap() > 1e6);
    assert!(value(&after, "meshnode_tree_free_bytes").unwrap() > 0.0);
    assert!(!after.contains("s3cret"), "no credentials in labels");
}

fn status_cmd(conf: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_meshnode"))
        .args(["status", "--config"])
        .arg(conf)
        .output()
        .unwrap()
}

#[test]
fn meshnode_status_and_the_status_page_show_every_flow_and_its_state() {
    let s = Scratch::new("status");
    let mut up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let port = free_port();
    let (node, conf) = start(
        &s,
        &format!(
            "listen 127.0.0.1:{port}\nverbose 1\npost-broker {}\n\
             flow obs\nbroker {up}\nsubtopic obs/#\nflow warnings\nbroker {up}\nsubtopic warn/#\n",
            local.url(),
            up = up.url()
        ),
    );
    assert!(
        wait_until(WAIT, || node.log_text().contains("serving")),
        "{}",
        node.log_text()
    );
    let json = || {
        serde_json::from_slice::<serde_json::Value>(
            &http(port, "GET", "/status.json", &[], b"").body,
        )
        .unwrap()
    };
    assert!(
        wait_until(WAIT, || json()["flows"].as_array().is_some_and(|f| f.len()
            == 2
            && f.iter().all(|f| f["state"] == "idle"))),
        "{}\n{}",
        json(),
        node.log_text()
    );
    let out = status_cmd(&conf);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for flow in ["obs", "warnings"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(flow))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("idle"), "{line}");
        // the last column: CPU seconds of the flow's threads
        let cpu: f64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(cpu >= 0.0, "{line}");
    }
    assert!(text.starts_with("node: memory "), "{text}");
    assert!(text.contains("CPU (s)"), "{text}");

    // the upstream broker goes away: both flows disconnected, status says so and fails
    up.stop();
    assert!(
        wait_until(WAIT, || json()["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["state"] == "disconnected")),
        "{}",
        json()
    );
    let out = status_cmd(&conf);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().filter(|l| l.contains("disconnected")).count() == 2,
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("obs, warnings"));

    // the page: every flow with its state, and the last problems
    let page = http(port, "GET", "/status", &[], b"");
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body).to_string();
    for want in [
        "<td>obs</td>",
        "<td>warnings</td>",
        "class=\"disconnected\">disconnected",
        "Last problems",
        "<td>MEMO</td>",
    ] {
        assert!(html.contains(want), "{want} in {html}");
    }
    let dom = headless_dom(&format!("http://127.0.0.1:{port}/status"));
    for want in [
        "<td>obs</td>",
        "<td>warnings</td>",
        ">disconnected<",
        "<td>MEMO</td>",
    ] {
        assert!(dom.contains(want), "{want} in the browser's DOM: {dom}");
    }

    // a node that is not running: a clear error
    drop(node);
    up.restart(std::time::Duration::ZERO);
    let out = status_cmd(&conf);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the node running?"));
}

/// The page as a real browser renders it (Debian's chromium, headless; scripts/test
/// installs it).
fn headless_dom(url: &str) -> String {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium (Debian package chromium)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
