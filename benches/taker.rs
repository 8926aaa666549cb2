//! Taker benchmark: a node started by `run` takes products into a stored channel
//! (capacity 100, so eviction runs all along) and announces each on its broker.
//!
//! - `single`: N uploads of 2 KB, one request each, from 4 client threads;
//! - `multipart`: the same N products, 100 per multipart request;
//! - `large`: one 64 MB product, to show that memory does not grow with product size.
//!
//! Prints products/s (until the last is announced on the broker), CPU microseconds per
//! product (user+sys of the node) and the node's peak RSS.
//! `cargo bench --bench taker` (N from MESHNODE_BENCH_N, default 5000). Loopback only;
//! every loop is bounded in count and every wait in time.

#[path = "../tests/it/common/mod.rs"]
mod common;
mod support;

use common::*;
use std::time::{Duration, Instant};
use support::usage;

const PRODUCT_SIZE: usize = 2048;
const CLIENTS: usize = 4;
const PER_REQUEST: usize = 100;
const LARGE: usize = 64 << 20;

fn product(i: usize) -> Vec<u8> {
    let mut p = format!("product {i} ").into_bytes();
    p.resize(PRODUCT_SIZE, b'x');
    p
}

struct Row {
    mode: &'static str,
    products: usize,
    secs: f64,
    cpu_us: f64,
    rss_kb: u64,
}

fn start(s: &Scratch, broker: &Broker) -> (Node, u16) {
    let port = free_port();
    let conf = s.path("node.conf");
    std::fs::write(
        &conf,
        format!(
            "dir {}\nlisten 127.0.0.1:{port}\nproduct-max 100M\nnode-id bench\nverbose 0\n\
             post-broker {}\nchannel BENCH\ncapacity 100\naccess open\n",
            s.path("data").display(),
            broker.url()
        ),
    )
    .unwrap();
    let node = Node::start(
        &s.path("node.log"),
        &["run".into(), "--config".into(), conf.display().to_string()],
    );
    let up = wait_until(30, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "{}", node.log_text());
    (node, port)
}

fn run(mode: &'static str, n: usize) -> Row {
    let s = Scratch::new(&format!("bench-taker-{mode}"));
    let broker = Broker::start(&s.path("broker"));
    let (mut node, port) = start(&s, &broker);
    let watch = Watcher::start(&broker, "xpublic/#");
    let pid = node.child.as_ref().unwrap().id();
    let before = usage(pid);
    let t0 = Instant::now();
    let products = match mode {
        "single" => {
            let threads: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    std::thread::spawn(move || {
                        for i in (c..n).step_by(CLIENTS) {
                            let r = http(
                                port,
                                "POST",
                                "/taker",
                                &[("Content-Type", "text/plain; cid=BENCH; fname=p.txt")],
                                &product(i),
                            );
                            assert_eq!(r.status, 201, "{}", r.head);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            n
        }
        "multipart" => {
            let b = "bench-boundary";
            for first in (0..n).step_by(PER_REQUEST) {
                let mut body = Vec::new();
                for i in first..(first + PER_REQUEST).min(n) {
                    body.extend_from_slice(
                        format!("--{b}\r\nContent-Type: text/plain; cid=BENCH\r\n\r\n").as_bytes(),
                    );
                    body.extend_from_slice(&product(i));
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
                let ct = format!("multipart/mixed; boundary={b}");
                let r = http(port, "POST", "/taker", &[("Content-Type", &ct)], &body);
                assert_eq!(r.status, 201, "{}", r.head);
            }
            n
        }
        _ => {
            let big = vec![b'g'; LARGE];
            let r = http(
                port,
                "POST",
                "/taker",
                &[("Content-Type", "application/octet-stream; cid=BENCH")],
                &big,
            );
            assert_eq!(r.status, 201, "{}", r.head);
            1
        }
    };
    let announced = wait_until(120, || watch.count() >= products);
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        announced,
        "{mode}: {} of {products} announced",
        watch.count()
    );
    let after = usage(pid);
    node.term();
    Row {
        mode,
        products,
        secs,
        cpu_us: (after.0 + after.1 - before.0 - before.1) * 1e6 / products as f64,
        rss_kb: after.2,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("taker: a benchmark; run it with `cargo bench --bench taker`");
        return;
    }
    let n = support::bench_n(5000);
    let rows: Vec<Row> = ["single", "multipart", "large"]
        .into_iter()
        .map(|m| {
            let r = run(m, n);
            std::thread::sleep(Duration::from_millis(300));
            r
        })
        .collect();
    println!("\ntaker benchmark: {PRODUCT_SIZE}-byte products (large: one of {LARGE} bytes) into a capacity-100 channel, each announced");
    println!(
        "{:<10} {:>9} {:>9} {:>11} {:>14} {:>13}",
        "mode", "products", "seconds", "products/s", "CPU us/prod", "peak RSS kB"
    );
    for r in &rows {
        println!(
            "{:<10} {:>9} {:>9.2} {:>11.0} {:>14.1} {:>13}",
            r.mode,
            r.products,
            r.secs,
            r.products as f64 / r.secs,
            r.cpu_us,
            r.rss_kb
        );
    }
}
