//! `meshnode serve` over real sockets.

use crate::common::*;
use meshnode::http::files::Files;
use meshnode::http::server::{ServeConfig, Server};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (body by Content-Length; none for HEAD or 304).
fn read_response(r: &mut BufReader<TcpStream>, head_request: bool) -> Option<Response> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![
        0;
        if head_request || status == 304 {
            0
        } else {
            len
        }
    ];
    r.read_exact(&mut body).ok()?;
    Some(Response {
        status,
        headers,
        body,
    })
}

fn request(addr: std::net::SocketAddr, raw: &str) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    read_response(&mut BufReader::new(s), raw.starts_with("HEAD")).expect("a response")
}

fn get(addr: std::net::SocketAddr, path: &str, extra: &str) -> Response {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"),
    )
}

fn server(s: &Scratch, tweak: impl FnOnce(&mut ServeConfig)) -> Server {
    let tree = s.path("tree");
    put(&tree, "2026112310/GTS/SA.txt", b"0123456789");
    put(&tree, "2026112310/GTS/.meshnode.1.1.tmp", b"partial");
    put(&s.0, "secret.txt", b"do not serve");
    std::os::unix::fs::symlink(s.path("secret.txt"), tree.join("2026112310/escape.txt")).unwrap();
    let files = Files::open(&tree).unwrap();
    let mut cfg = ServeConfig::new("127.0.0.1:0".parse().unwrap(), vec![Arc::new(files)]);
    tweak(&mut cfg);
    Server::start(cfg).unwrap()
}

#[test]
fn serves_files_with_the_right_headers() {
    let s = Scratch::new("serve-basic");
    let srv = server(&s, |_| {});
    let r = get(srv.addr, "/2026112310/GTS/SA.txt", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"0123456789");
    assert_eq!(r.header("content-length"), Some("10"));
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r.header("last-modified").unwrap().ends_with("GMT"));
    let h = request(
        srv.addr,
        "HEAD /2026112310/GTS/SA.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (h.status, h.header("content-length"), h.body.len()),
        (200, Some("10"), 0)
    );
    assert_eq!(get(srv.addr, "/2026112310/GTS/nope.txt", "").status, 404);
    assert_eq!(
        get(srv.addr, "/2026112310/GTS", "").status,
        404,
        "no directory listings"
    );
    let p = request(
        srv.addr,
        "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((p.status, p.header("allow")), (405, Some("GET, HEAD")));
    assert_eq!(request(srv.addr, "BLAH\r\n\r\n").status, 400);
}

#[test]
fn keeps_connections_alive() {
    let s = Scratch::new("serve-keepalive");
    let srv = server(&s, |_| {});
    let stream = TcpStream::connect(srv.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    // two requests sent at once (pipelined), then a third
    w.write_all(b"GET /2026112310/GTS/SA.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /2026112310/GTS/SA.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().body, b"0123456789");
    assert_eq!(read_response(&mut r, false).unwrap().body, b"01");
    w.write_all(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 404);
    w.write_all(b"GET /2026112310/GTS/SA.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut r, false).unwrap().status,
        200,
        "still open after a 404"
    );
}

#[test]
fn answers_ranges_and_if_modified_since() {
    let s = Scratch::new("serve-range");
    let srv = server(&s, |_| {});
    let p = "/2026112310/GTS/SA.txt";
    let r = get(srv.addr, p, "Range: bytes=2-5\r\n");
    assert_eq!(
        (r.status, r.body.as_slice(), r.header("content-range")),
        (206, &b"2345"[..], Some("bytes 2-5/10"))
    );
    let r = get(srv.addr, p, "Range: bytes=-3\r\n");
    assert_eq!((r.status, r.body.as_slice()), (206, &b"789"[..]));
    let r = get(srv.addr, p, "Range: bytes=20-\r\n");
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */10"))
    );
    let lm = get(srv.addr, p, "")
        .header("last-modified")
        .unwrap()
        .to_string();
    let r = get(srv.addr, p, &format!("If-Modified-Since: {lm}\r\n"));
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = get(
        srv.addr,
        p,
        "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"0123456789"[..]));
}

#[test]
fn never_serves_outside_the_tree() {
    let s = Scratch::new("serve-traversal");
    let srv = server(&s, |_| {});
    for path in [
        "/../secret.txt",
        "/2026112310/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/2026112310/%2E%2E/%2e%2e/secret.txt",
        "/2026112310/escape.txt",
        "/2026112310/GTS/.meshnode.1.1.tmp",
        "/2026112310/GTS/%2emeshnode.1.1.tmp",
        "//etc/passwd",
        "/..%2fsecret.txt",
    ] {
        let r = get(srv.addr, path, "");
        assert_eq!(r.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("do not serve"));
    }
}

#[test]
fn a_slowloris_client_does_not_stop_others() {
    let s = Scratch::new("serve-slowloris");
    let srv = server(&s, |c| c.header_timeout = Duration::from_secs(2));
    // a client trickling its request head, a byte at a time
    let mut slow = TcpStream::connect(srv.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /2026").unwrap();
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        for b in b"112310/GTS/SA.txt HTTP/1.1\r\nHost: x\r\n" {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let mut answer = String::new();
        let _ = BufReader::new(slow).read_line(&mut answer);
        answer
    });
    // meanwhile others are served
    for _ in 0..5 {
        assert_eq!(get(srv.addr, "/2026112310/GTS/SA.txt", "").status, 200);
    }
    let answer = trickle.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "slow head cut off: {answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "within the header timeout"
    );
}

#[test]
fn refuses_connections_over_the_cap() {
    let s = Scratch::new("serve-cap");
    let srv = server(&s, |c| c.max_connections = 2);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = get(srv.addr, "/2026112310/GTS/SA.txt", "");
    assert_eq!(r.status, 503);
    drop(idle);
    assert!(wait_until(10, || get(
        srv.addr,
        "/2026112310/GTS/SA.txt",
        ""
    )
    .status
        == 200));
}

#[test]
fn the_node_fetcher_downloads_from_it_over_keep_alive() {
    let s = Scratch::new("serve-fetch");
    let srv = server(&s, |_| {});
    let mut f = meshnode::mesh::fetch::Fetcher::new(meshnode::mesh::fetch::Timeouts::default());
    for _ in 0..3 {
        let mut out = Vec::new();
        let n = f
            .get_into(
                &format!("http://{}/2026112310/GTS/SA.txt", srv.addr),
                &mut out,
            )
            .unwrap();
        assert_eq!((n, out.as_slice()), (10, &b"0123456789"[..]));
    }
    let mut out = Vec::new();
    let e = f
        .get_into(&format!("http://{}/missing", srv.addr), &mut out)
        .unwrap_err();
    assert!(e.is_permanent(), "{e}");
}

#[test]
fn the_serve_command_runs_and_stops_on_sigterm() {
    let s = Scratch::new("serve-cli");
    put(&s.path("tree"), "a/b.txt", b"cli");
    let port = free_port();
    let mut node = Node::start(
        &s.path("serve.log"),
        &[
            "serve",
            "--dir",
            &s.path("tree").display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--verbose",
            "2",
        ]
        .map(String::from),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(wait_until(10, || TcpStream::connect(addr).is_ok()));
    assert_eq!(get(addr, "/a/b.txt", "").body, b"cli");
    // refusals at the HTTP layer leave a line with the client, once a second at most
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "x".repeat(10_000));
    // the server answers before reading all of it, so the client may see a reset:
    // what counts here is the log
    let send_huge = || {
        use std::io::{Read, Write};
        if let Ok(mut c) = TcpStream::connect(addr) {
            let _ = c.write_all(huge.as_bytes());
            let _ = c.read_to_end(&mut Vec::new());
        }
    };
    for _ in 0..5 {
        send_huge();
    }
    let lines = |log: &str| log.matches(": 431 request head too large").count();
    assert!(
        wait_until(5, || lines(&node.log_text()) == 1),
        "{}",
        node.log_text()
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    send_huge();
    assert!(
        wait_until(5, || lines(&node.log_text()) == 2),
        "{}",
        node.log_text()
    );
    assert!(
        node.log_text().contains("http 127.0.0.1:"),
        "with the client's address"
    );
    assert_eq!(node.term(), Some(0));
    assert!(
        node.log_text().contains("\"GET /a/b.txt\" 200 3"),
        "access log line: {}",
        node.log_text()
    );
}

#[test]
fn two_thousand_dribbling_clients_keep_no_one_waiting() {
    let s = Scratch::new("serve-dribble");
    let srv = server(&s, |c| c.header_timeout = Duration::from_secs(4));
    // 2,000 clients from 40 addresses (50 each: under the per-address cap), each
    // sending its request head a byte a second
    let mut dribblers: Vec<TcpStream> = (0..2000)
        .map(|i| {
            let from = std::net::Ipv4Addr::new(127, 0, 1, 1 + (i % 40) as u8);
            let c = connect_from(from, srv.addr).unwrap();
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    let head = b"GET /2026112310/GTS/SA.txt HTTP/1.1\r\nHost: x\r\n";
    let addr = srv.addr;
    // meanwhile 20 ordinary clients fetch, one request after another
    let normal: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut worst = Duration::ZERO;
                let mut statuses = Vec::new();
                let end = Instant::now() + Duration::from_secs(6);
                while Instant::now() < end && statuses.len() < 200 {
                    let t = Instant::now();
                    statuses.push(get(addr, "/2026112310/GTS/SA.txt", "").status);
                    worst = worst.max(t.elapsed());
                    std::thread::sleep(Duration::from_millis(50));
                }
                (statuses, worst)
            })
        })
        .collect();
    for b in head.iter().take(7) {
        for c in &mut dribblers {
            let _ = c.write(&[*b]);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut asked = 0;
    for n in normal {
        let (statuses, worst) = n.join().unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        asked += statuses.len();
        // a liveness bound, not a speed figure: a starved client waits for seconds
        assert!(worst < Duration::from_secs(2), "a GET waited {worst:?}");
    }
    assert!(asked >= 20 * 10, "{asked} GETs");
    // every dribbler was cut off at the header deadline (4 s after its first byte)
    let mut cut = 0;
    for c in &mut dribblers {
        c.set_nonblocking(false).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        match c.read_to_end(&mut answer) {
            Ok(_) if answer.is_empty() || answer.starts_with(b"HTTP/1.1 408") => cut += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => cut += 1,
            other => panic!("{other:?} {:?}", String::from_utf8_lossy(&answer)),
        }
    }
    assert_eq!(cut, 2000);
}

#[test]
fn one_address_cannot_take_the_server() {
    let s = Scratch::new("serve-per-address");
    let srv = server(&s, |_| {});
    let greedy = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut conns: Vec<TcpStream> = (0..500)
        .map(|_| connect_from(greedy, srv.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    for c in &mut conns {
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = c.read(&mut buf) {
            if buf[..n].starts_with(b"HTTP/1.1 503") {
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 500 - 64, "over 64 from one address: 503");
    // another address is served at once
    assert_eq!(get(srv.addr, "/2026112310/GTS/SA.txt", "").status, 200);
    drop(conns);
    // and the greedy one again once its connections are gone
    assert!(wait_until(10, || {
        let Ok(mut c) = connect_from(greedy, srv.addr) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = c.write_all(
            b"GET /2026112310/GTS/SA.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        answer.starts_with(b"HTTP/1.1 200")
    }));
}

#[test]
fn an_idle_keep_alive_connection_closes_after_the_idle_timeout() {
    let s = Scratch::new("serve-idle");
    let srv = server(&s, |c| {
        c.idle_timeout = Duration::from_secs(2);
        c.header_timeout = Duration::from_secs(20);
    });
    let stream = TcpStream::connect(srv.addr).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"GET /2026112310/GTS/SA.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    let answered = Instant::now();
    // kept alive a moment...
    std::thread::sleep(Duration::from_millis(500));
    w.write_all(b"GET /2026112310/GTS/SA.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    // ...then closed by the idle timeout (2 s), long before the header one (20 s)
    r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        answered.elapsed() < Duration::from_secs(10),
        "closed after {:?}",
        answered.elapsed()
    );
}
