//! Drain benchmark: N announcements of 2 KB files wait upstream in the node's persistent
//! session while it is stopped; the node starts; we time until all N are re-announced on
//! the local broker. Prints messages/s, CPU microseconds per message (user+sys of the
//! node process) and peak RSS, for downloads (from webfsd, keep-alive) and for inline
//! content.
//!
//! Modes: `download` (from webfsd), `inline`, `relay` (the C floor: mosquitto_sub
//! piped into mosquitto_pub), `store` (the floor of storing: the node's own `Store`
//! writing the same files in one thread, no network), `from-run` (from another
//! meshnode started by `run`, serving its own tree; its CPU is shown too).
//!
//! `cargo bench --bench drain` (N from MESHNODE_BENCH_N, default 20000; one mode with
//! MESHNODE_BENCH_MODE; more node options from MESHNODE_BENCH_EXTRA). Loopback only;
//! every wait is bounded.

#[path = "../tests/it/common/mod.rs"]
mod common;
mod support;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{bulletin, context_switches, usage, FILE_SIZE};

struct Figures {
    mode: &'static str,
    n: usize,
    secs: f64,
    cpu_us: f64,
    sys_share: f64,
    rss_kb: u64,
    /// Context switches of the node's threads per message.
    switches: f64,
    /// CPU of the serving meshnode per message, when the files come from one.
    server_cpu_us: Option<f64>,
}

/// Where the files come from.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// webfsd, a small C server with keep-alive.
    Webfs,
    /// another meshnode, started by `run`, serving its own tree.
    MeshnodeRun,
    /// inline content in the messages.
    Inline,
}

fn drain(mode: &'static str, n: usize, source: Source) -> Figures {
    let inline = source == Source::Inline;
    let s = Scratch::new(&format!("bench-{mode}"));
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let src = s.path("src");
    let web_port = free_port();
    let mut webfs = None;
    let mut server_node = None;
    if !inline {
        for i in 0..n {
            put(
                &src,
                &format!("2026112316/GTS/B{}/f{i}.txt", i % 50),
                &bulletin(i),
            );
        }
        if source == Source::Webfs {
            webfs = Some(
                Command::new("webfsd")
                    .args([
                        "-F",
                        "-4",
                        "-i",
                        "127.0.0.1",
                        "-p",
                        &web_port.to_string(),
                        "-c",
                        "64",
                        "-r",
                    ])
                    .arg(&src)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("webfsd (Debian package webfs) is needed for the download benchmark"),
            );
        } else {
            // a node started by `run` serving its own tree (its one flow idles)
            let conf = s.path("server.conf");
            std::fs::write(
                &conf,
                format!(
                    "dir {}\nlisten 127.0.0.1:{web_port}\nverbose 0\npost-broker none\nbroker {}\nsubtopic idle/#\n",
                    src.display(),
                    up.url()
                ),
            )
            .unwrap();
            server_node = Some(Node::start(
                &s.path("server.log"),
                &["run".into(), "--config".into(), conf.display().to_string()],
            ));
        }
        assert!(wait_until(10, || std::net::TcpStream::connect((
            "127.0.0.1",
            web_port
        ))
        .is_ok()));
    }
    let base = format!("http://127.0.0.1:{web_port}");
    let dir = s.path("node");
    // MESHNODE_BENCH_EXTRA: more options of the node, e.g. "--exactly-once no"
    let extra = std::env::var("MESHNODE_BENCH_EXTRA").unwrap_or_default();
    let (inflight_v, concurrency_v, pipeline_v) = (inflight(), concurrency(), pipeline());
    let mut opts = vec![
        "--verbose",
        "1",
        "--inflight",
        &inflight_v,
        "--concurrency",
        &concurrency_v,
        "--pipeline",
        &pipeline_v,
    ];
    opts.extend(extra.split_whitespace());
    let args = peer_args(&[&up], &local, &dir, "http://127.0.0.1:9/data", &opts);
    // first start creates the persistent session, then the node stops
    let mut node = Node::start(&s.path("node.log"), &args);
    assert!(
        wait_until(30, || node.log_text().contains("subscribed")),
        "node subscribed"
    );
    assert_eq!(node.term(), Some(0));

    let items: Vec<_> = (0..n)
        .map(|i| {
            let rel = format!("2026112316/GTS/B{}/f{i}.txt", i % 50);
            (
                topic_of(&rel),
                announcement(&base, &rel, &bulletin(i), inline),
            )
        })
        .collect();
    publish_raw(&up, &items);
    drop(items);
    let watch = Watcher::start(&local, "xpublic/#");

    let start = Instant::now();
    node.restart();
    let pid = node.child.as_ref().unwrap().id();
    let done = wait_until(300, || watch.count() >= n);
    let secs = start.elapsed().as_secs_f64();
    let (user, sys, rss_kb) = usage(pid);
    let switches = context_switches(pid) as f64 / n as f64;
    // MESHNODE_BENCH_THREADS=1: where the switches are, by thread
    if std::env::var_os("MESHNODE_BENCH_THREADS").is_some() {
        for (name, k) in support::switches_by_thread(pid) {
            println!(
                "{mode}: thread {name:<16} {:>6.2} switches/message",
                k as f64 / n as f64
            );
        }
        // what is resident now: the program's own pages, or the heap and stacks
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        for l in status.lines().filter(|l| l.starts_with("Rss")) {
            println!("{mode}: {l}");
        }
    }
    let cpu = user + sys;
    let server_cpu_us = server_node.as_ref().map(|srv| {
        let (u, s, _) = usage(srv.child.as_ref().unwrap().id());
        (u + s) * 1e6 / n as f64
    });
    assert!(done, "{mode}: only {} of {n} re-announced", watch.count());
    node.term();
    if let Some(mut w) = webfs {
        let _ = w.kill();
        let _ = w.wait();
    }
    Figures {
        mode,
        n,
        secs,
        cpu_us: cpu * 1e6 / n as f64,
        sys_share: sys / cpu.max(1e-9),
        rss_kb,
        switches,
        server_cpu_us,
    }
}

/// The floor of relaying: `mosquitto_sub | mosquitto_pub` (C, one process each, no
/// download, no store) drains the same backlog of announcements from a persistent
/// session to the local broker. CPU and switches are of both processes.
fn relay_floor(n: usize) -> Figures {
    let s = Scratch::new("bench-relay");
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let sub_args = |up: &Broker| {
        let mut c = Command::new("mosquitto_sub");
        c.args(["-h", "127.0.0.1", "-p", &up.port.to_string()])
            .args(["-t", "#", "-q", "1", "-c", "-i", "bench-relay"]);
        c
    };
    // the persistent session, then the backlog while the relay is away
    let mut first = sub_args(&up)
        .stdout(Stdio::null())
        .spawn()
        .expect("mosquitto_sub (Debian package mosquitto-clients)");
    std::thread::sleep(Duration::from_millis(500));
    let _ = first.kill();
    let _ = first.wait();
    let base = "http://127.0.0.1:9/data";
    let items: Vec<_> = (0..n)
        .map(|i| {
            let rel = format!("2026112316/GTS/B{}/f{i}.txt", i % 50);
            (
                topic_of(&rel),
                announcement(base, &rel, &bulletin(i), false),
            )
        })
        .collect();
    publish_raw(&up, &items);
    drop(items);
    let watch = Watcher::start(&local, "xpublic/#");
    let start = Instant::now();
    let mut sub = sub_args(&up).stdout(Stdio::piped()).spawn().unwrap();
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &local.port.to_string()])
        .args(["-t", "xpublic/relay", "-q", "1", "-l"])
        .stdin(sub.stdout.take().unwrap())
        .spawn()
        .unwrap();
    let done = wait_until(300, || watch.count() >= n);
    let secs = start.elapsed().as_secs_f64();
    let (u1, s1, rss1) = usage(sub.id());
    let (u2, s2, rss2) = usage(publisher.id());
    let switches = (context_switches(sub.id()) + context_switches(publisher.id())) as f64;
    assert!(done, "relay: only {} of {n} relayed", watch.count());
    for c in [&mut sub, &mut publisher] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let (cpu, sys) = (u1 + s1 + u2 + s2, s1 + s2);
    Figures {
        mode: "C relay",
        n,
        secs,
        cpu_us: cpu * 1e6 / n as f64,
        sys_share: sys / cpu.max(1e-9),
        rss_kb: rss1 + rss2,
        switches: switches / n as f64,
        server_cpu_us: None,
    }
}

/// The floor of storing what a download stores: the node's `Store` writes the same N
/// files (md5 on the way, the checksum cache, the pubTime, the rename) in this thread,
/// with no broker and no network. With the relay floor it says how much of a
/// downloaded message's CPU any node that keeps files must spend.
fn store_floor(n: usize) -> Figures {
    use meshnode::core::integrity::Method;
    let s = Scratch::new("bench-store");
    let mut store = meshnode::store::Store::open(&s.path("tree"), "user.integrity").unwrap();
    let me = std::process::id();
    let (u0, s0, _) = usage(me);
    let start = Instant::now();
    for i in 0..n {
        let rel = format!("2026112316/GTS/B{}/f{i}.txt", i % 50);
        let mut tmp = store.begin(&rel, Method::Md5, u64::MAX).unwrap();
        std::io::Write::write_all(&mut tmp, &bulletin(i)).unwrap();
        tmp.set_modified(Some(1_764_000_000.0));
        store.commit(tmp, &rel, None).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let (u1, s1, _) = usage(me);
    let (cpu, sys) = (u1 - u0 + s1 - s0, s1 - s0);
    Figures {
        mode: "store",
        n,
        secs,
        cpu_us: cpu * 1e6 / n as f64,
        sys_share: sys / cpu.max(1e-9),
        // the bench's own process, which held the backlog: not a figure of storing
        rss_kb: 0,
        switches: 0.0,
        server_cpu_us: None,
    }
}

/// The node's --inflight (MESHNODE_BENCH_INFLIGHT, default 500).
fn inflight() -> String {
    std::env::var("MESHNODE_BENCH_INFLIGHT").unwrap_or_else(|_| "500".into())
}

/// The node's --pipeline (MESHNODE_BENCH_PIPELINE, default the node's own).
fn pipeline() -> String {
    std::env::var("MESHNODE_BENCH_PIPELINE")
        .unwrap_or_else(|_| meshnode::mesh::peer::DEFAULT_PIPELINE.to_string())
}

/// The node's --concurrency (MESHNODE_BENCH_CONCURRENCY, default the node's own).
fn concurrency() -> String {
    std::env::var("MESHNODE_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| meshnode::mesh::peer::DEFAULT_CONCURRENCY.to_string())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without
    // it, and a test run must not spend minutes measuring a debug build
    if !std::env::args().any(|a| a == "--bench") {
        println!("drain: a benchmark; run it with `cargo bench --bench drain`");
        return;
    }
    let n = support::bench_n(20_000);
    let mut rows = Vec::new();
    // MESHNODE_BENCH_MODE=relay|store|download|inline|from-run runs one mode only
    let only = std::env::var("MESHNODE_BENCH_MODE").unwrap_or_default();
    for (mode, source) in [
        ("download", Source::Webfs),
        ("inline", Source::Inline),
        ("from-run", Source::MeshnodeRun),
    ] {
        if !only.is_empty() && only != mode {
            continue;
        }
        rows.push(drain(mode, n, source));
        std::thread::sleep(Duration::from_millis(500));
    }
    if only.is_empty() || only == "relay" {
        rows.push(relay_floor(n));
    }
    if only.is_empty() || only == "store" {
        rows.push(store_floor(n));
    }
    println!("\ndrain benchmark: {n} announcements of {FILE_SIZE}-byte files, node started with the backlog waiting");
    println!(
        "{:<10} {:>8} {:>9} {:>12} {:>12} {:>10} {:>13} {:>12} {:>18}",
        "mode",
        "messages",
        "seconds",
        "messages/s",
        "CPU us/msg",
        "of it sys",
        "peak RSS kB",
        "switches/msg",
        "server CPU us/msg"
    );
    for r in &rows {
        println!(
            "{:<10} {:>8} {:>9.2} {:>12.0} {:>12.1} {:>9.0}% {:>13} {:>12.2} {:>18}",
            r.mode,
            r.n,
            r.secs,
            r.n as f64 / r.secs,
            r.cpu_us,
            r.sys_share * 100.0,
            if r.rss_kb > 0 {
                r.rss_kb.to_string()
            } else {
                "-".into()
            },
            r.switches,
            r.server_cpu_us
                .map_or("-".to_string(), |c| format!("{c:.1}"))
        );
    }
}
