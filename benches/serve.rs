//! HTTP server benchmark: `meshnode serve` beside webfsd (the demo's server), measured in
//! the same run on the same tree.
//!
//! - GET of a 2 KB file over keep-alive: 4 client connections, one request after
//!   another (no pipelining); requests/s and the server's CPU microseconds per request
//!   (user+sys from /proc), for each server;
//! - 2,000 idle connections held open to `meshnode serve` (from 40 loopback addresses,
//!   under the per-address cap): its resident memory before and after, per connection.
//!
//! `cargo bench --bench serve` (requests from MESHNODE_BENCH_N, default 40000). Loopback
//! only; every loop is bounded in count and in time.

#[path = "../tests/it/common/mod.rs"]
mod common;
mod support;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{bulletin, usage};

const CLIENTS: usize = 4;
const FILES: usize = 100;
const IDLE: usize = 2000;
const TIME_CAP: Duration = Duration::from_secs(30);

fn rss_now_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Reads one answer; returns its body length.
fn answer(r: &mut BufReader<TcpStream>) -> usize {
    let mut len = 0;
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line
            .split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            len = v.1.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    len
}

/// Requests/s and server CPU µs per request.
fn load(port: u16, pid: u32, n: usize) -> (f64, f64) {
    let (u0, s0, _) = usage(pid);
    let start = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut done = 0;
                let end = Instant::now() + TIME_CAP;
                while done < n / CLIENTS && Instant::now() < end {
                    let f = (c * 7 + done) % FILES;
                    let req =
                        format!("GET /2026112316/GTS/f{f}.txt HTTP/1.1\r\nHost: bench\r\n\r\n");
                    w.write_all(req.as_bytes()).unwrap();
                    assert_eq!(answer(&mut r), support::FILE_SIZE);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let done: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    let (u1, s1, _) = usage(pid);
    (done as f64 / secs, (u1 - u0 + s1 - s0) * 1e6 / done as f64)
}

fn wait_up(port: u16) {
    assert!(wait_until(10, || TcpStream::connect(("127.0.0.1", port)).is_ok()));
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let n = support::bench_n(40_000);
    let s = Scratch::new("bench-serve");
    let tree = s.path("tree");
    for i in 0..FILES {
        put(&tree, &format!("2026112316/GTS/f{i}.txt"), &bulletin(i));
    }
    let (web_port, node_port) = (free_port(), free_port());
    let webfs = Killed(
        Command::new("webfsd")
            .args(["-F", "-4", "-i", "127.0.0.1", "-p", &web_port.to_string()])
            .args(["-c", "64", "-r"])
            .arg(&tree)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("webfsd (Debian package webfs)"),
    );
    let node = Node::start(
        &s.path("serve.log"),
        &[
            "serve".into(),
            "--dir".into(),
            tree.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{node_port}"),
            "--verbose".into(),
            "0".into(),
        ],
    );
    let node_pid = node.child.as_ref().unwrap().id();
    wait_up(web_port);
    wait_up(node_port);
    println!(
        "GET of a {} B file, keep-alive, {CLIENTS} connections, {n} requests",
        support::FILE_SIZE
    );
    println!(
        "{:<16} {:>10} {:>14}",
        "server", "requests/s", "CPU us/request"
    );
    for (name, port, pid) in [
        ("webfsd", web_port, webfs.0.id()),
        ("meshnode serve", node_port, node_pid),
    ] {
        load(port, pid, n / 10); // warm up
        let (rate, cpu) = load(port, pid, n);
        println!("{name:<16} {rate:>10.0} {cpu:>14.1}");
    }

    // idle connections: what each costs the server
    let before = rss_now_kb(node_pid);
    let to: SocketAddr = format!("127.0.0.1:{node_port}").parse().unwrap();
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| connect_from(Ipv4Addr::new(127, 0, 2, 1 + (i % 40) as u8), to).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    // still open (not refused): each answers nothing yet
    let mut open = 0;
    let mut other = std::collections::BTreeMap::new();
    for c in &idle {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 16];
        match (&*c).read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
            Err(e) => *other.entry(e.kind().to_string()).or_insert(0) += 1,
            Ok(k) => {
                *other
                    .entry(String::from_utf8_lossy(&b[..k]).into_owned())
                    .or_insert(0) += 1
            }
        }
    }
    if !other.is_empty() {
        println!("not open: {other:?}");
    }
    let after = rss_now_kb(node_pid);
    let (_, _, peak) = usage(node_pid);
    println!(
        "{open} idle connections: RSS {before} kB -> {after} kB, {:.1} kB each; peak RSS {peak} kB",
        (after.saturating_sub(before)) as f64 / open.max(1) as f64
    );
    drop(idle);
}
