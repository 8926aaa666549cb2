//! Wide-area drain benchmark: the node reaches its upstream broker and the web server
//! through a delaying TCP proxy (round trip 0, 20 or 100 ms); N announcements of 2 KB
//! files wait in its persistent session; we time until all are re-announced on the
//! local broker, for several `--concurrency` values (`--host-connections` 4). Prints
//! files/s, CPU per file, peak RSS and the most connections open to the web server.
//!
//! `cargo bench --bench wan` (N from MESHNODE_BENCH_N, default 1000; the 100 ms row with
//! concurrency 1 uses N/4; MESHNODE_BENCH_RTT and MESHNODE_BENCH_CONCURRENCY pick one
//! value each; MESHNODE_BENCH_PIPELINE sets --pipeline; MESHNODE_BENCH_DEAD=1 adds a row
//! with 1% of the announcements at a refused port and 1% at a server that never
//! answers, timed until the good files are all re-announced). MESHNODE_BENCH_SERVER
//! picks the web server: `tests` (the tests' own, default) or `nginx` (Debian's
//! nginx-light); MESHNODE_BENCH_SCHEMES `http,https` (default `http`) the schemes, each
//! from the same server in the same run, https with a certificate the bench makes.
//! Loopback only; every wait is bounded.

#[path = "../tests/it/common/mod.rs"]
mod common;
mod support;

use common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{bulletin, usage, FILE_SIZE};

struct Row {
    server: String,
    rtt_ms: u64,
    /// 1% of the announcements at a refused port and 1% at a server that never answers.
    dead: bool,
    concurrency: usize,
    n: usize,
    secs: f64,
    cpu_us: f64,
    rss_kb: u64,
    most_open: usize,
}

/// Where the files are served: the tests' server or nginx, over http or https.
#[derive(Clone, Copy)]
struct Serving<'a> {
    nginx: bool,
    https: bool,
    name: &'a str,
}

/// The web server of one row (kept alive with it, stopped when dropped), its port
/// and the CA the node must trust (https).
#[allow(dead_code)] // held, never read
enum Web {
    Tests(WebServer),
    Nginx(Nginx),
}

fn serve(s: &Scratch, origin: &std::path::Path, how: Serving<'_>) -> (Web, u16, Option<String>) {
    let tls = how.https.then(|| {
        make_cert(&s.0, "bench");
        (s.path("cert.pem"), s.path("key.pem"))
    });
    let ca = tls.as_ref().map(|_| s.path("ca.pem").display().to_string());
    if how.nginx {
        // a generous keep-alive limit, as a cache serving many files would set
        let keys = tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let n = Nginx::start(origin, &s.path("nginx"), 10_000, keys);
        let port = if how.https {
            n.tls_port.unwrap()
        } else {
            n.port
        };
        return (Web::Nginx(n), port, ca);
    }
    let web = WebServer::start(
        origin,
        WebOptions {
            tls,
            ..WebOptions::default()
        },
    );
    let port = web.port;
    (Web::Tests(web), port, ca)
}

fn drain(how: Serving<'_>, rtt_ms: u64, concurrency: usize, n: usize, dead: bool) -> Row {
    let s = Scratch::new(&format!(
        "bench-wan-{}-{rtt_ms}-{concurrency}-{dead}",
        how.name
    ));
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let origin = s.path("origin");
    for i in 0..n {
        put(&origin, &rel(i), &bulletin(i));
    }
    let (_web, web_port, ca) = serve(&s, &origin, how);
    let one_way = Duration::from_millis(rtt_ms / 2);
    let web_link = DelayProxy::start(web_port, one_way);
    let mqtt_link = DelayProxy::start(up.port, one_way);
    let scheme = if how.https { "https" } else { "http" };
    // the tests' server serves under /data, nginx from its root
    let base = match how.nginx {
        true => web_link.url(scheme),
        false => format!("{}/data", web_link.url(scheme)),
    };
    let dir = s.path("node");
    let mut args = vec![
        "peer".to_string(),
        "--broker".into(),
        mqtt_link.url("mqtt"),
        "--post-broker".into(),
        local.url(),
        "--post-baseUrl".into(),
        "http://127.0.0.1:9/data".into(),
        "--dir".into(),
        dir.display().to_string(),
    ];
    for a in [
        "--verbose",
        "1",
        "--inflight",
        "500",
        "--host-connections",
        "4",
        "--concurrency",
        &concurrency.to_string(),
    ] {
        args.push(a.into());
    }
    // MESHNODE_BENCH_PIPELINE: requests per connection (the node's default otherwise)
    if let Ok(p) = std::env::var("MESHNODE_BENCH_PIPELINE") {
        args.extend(["--pipeline".to_string(), p]);
    }
    // first start creates the persistent session, then the node stops
    let env: Vec<(&str, &str)> = ca.iter().map(|c| ("SSL_CERT_FILE", c.as_str())).collect();
    let mut node = Node::start_env(&s.path("node.log"), &args, &env);
    assert!(wait_until(30, || node.log_text().contains("subscribed")));
    assert_eq!(node.term(), Some(0));
    let mut items: Vec<_> = (0..n)
        .map(|i| {
            let r = rel(i);
            (topic_of(&r), announcement(&base, &r, &bulletin(i), false))
        })
        .collect();
    // the bad ones spread through the backlog; only the good ones are waited for
    let mute = MuteServer::start();
    if dead {
        let refused = format!("http://127.0.0.1:{}/data", free_port());
        for k in 0..(n / 100).max(1) * 2 {
            let r = format!("2026112912/GTS/dead/d{k}.txt");
            let at = if k % 2 == 0 {
                &refused
            } else {
                &mute.base_url()
            };
            let a = (topic_of(&r), announcement(at, &r, &bulletin(k), false));
            items.insert((k * 50 + 7).min(items.len()), a);
        }
    }
    publish_raw(&up, &items);
    let watch = Watcher::start(&local, "xpublic/#");
    let start = Instant::now();
    node.restart();
    let pid = node.child.as_ref().unwrap().id();
    let done = wait_until(600, || watch.count() >= n);
    let secs = start.elapsed().as_secs_f64();
    let (user, sys, rss_kb) = usage(pid);
    assert!(
        done,
        "rtt {rtt_ms}: only {} of {n} re-announced",
        watch.count()
    );
    node.term();
    Row {
        server: format!("{} {scheme}", if how.nginx { "nginx" } else { "tests" }),
        rtt_ms,
        dead,
        concurrency,
        n,
        secs,
        cpu_us: (user + sys) * 1e6 / n as f64,
        rss_kb,
        most_open: web_link.most_open.load(Ordering::SeqCst),
    }
}

fn rel(i: usize) -> String {
    format!("2026112912/GTS/B{}/f{i}.txt", i % 20)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("wan: a benchmark; run it with `cargo bench --bench wan`");
        return;
    }
    let n = support::bench_n(1000);
    // MESHNODE_BENCH_RTT / MESHNODE_BENCH_CONCURRENCY: one value each instead of all
    let pick = |var: &str, all: &[u64]| -> Vec<u64> {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or_else(|| all.to_vec(), |v| vec![v])
    };
    let nginx = std::env::var("MESHNODE_BENCH_SERVER").is_ok_and(|v| v == "nginx");
    let schemes = std::env::var("MESHNODE_BENCH_SCHEMES").unwrap_or_else(|_| "http".into());
    let mut rows = Vec::new();
    for (rtt, https) in pick("MESHNODE_BENCH_RTT", &[0, 20, 100])
        .into_iter()
        .flat_map(|rtt| {
            schemes
                .split(',')
                .map(move |scheme| (rtt, scheme.trim() == "https"))
        })
    {
        let how = Serving {
            nginx,
            https,
            name: if https { "https" } else { "http" },
        };
        for concurrency in pick("MESHNODE_BENCH_CONCURRENCY", &[1, 4, 16]) {
            let concurrency = concurrency as usize;
            // one file at a time across 100 ms takes 0.1 s a file: fewer of them
            let n = if rtt >= 100 && concurrency == 1 {
                n / 4
            } else {
                n
            };
            rows.push(drain(how, rtt, concurrency, n, false));
            // MESHNODE_BENCH_DEAD=1: the same with 2% dead links
            if std::env::var("MESHNODE_BENCH_DEAD").is_ok_and(|v| v == "1") {
                rows.push(drain(how, rtt, concurrency, n, true));
            }
        }
    }
    println!("\nwide-area drain: {FILE_SIZE}-byte files, upstream broker and web server behind a delay proxy, --host-connections 4");
    println!(
        "{:>12} {:>7} {:>10} {:>12} {:>6} {:>8} {:>8} {:>11} {:>12} {:>17}",
        "server",
        "RTT ms",
        "dead links",
        "concurrency",
        "files",
        "seconds",
        "files/s",
        "CPU us/file",
        "peak RSS kB",
        "web connections"
    );
    for r in &rows {
        println!(
            "{:>12} {:>7} {:>10} {:>12} {:>6} {:>8.2} {:>8.0} {:>11.1} {:>12} {:>17}",
            r.server,
            r.rtt_ms,
            if r.dead { "2%" } else { "-" },
            r.concurrency,
            r.n,
            r.secs,
            r.n as f64 / r.secs,
            r.cpu_us,
            r.rss_kb,
            r.most_open
        );
    }
}
