//! The channel interface's routes and its HTTP answers (refusals, JSON, lingering).

use super::read::*;
use super::taker::*;
use super::upload::*;
use crate::channels::Refusal;
use crate::core::time::http_date;
use crate::http::response::reason;
use crate::http::{Handler, Request};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The paths answered here rather than from the data tree.
pub fn handles(path: &str) -> bool {
    let p = path.split('?').next().unwrap_or("");
    ["/taker", "/rest/taker", "/channels"]
        .iter()
        .any(|r| p == *r || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
}

/// Writes an answer; `Connection: close` after a request with a body.
pub(super) fn send(
    stream: &mut TcpStream,
    req: &Request,
    status: u16,
    extra: &str,
    ctype: &str,
    body: &[u8],
) -> io::Result<(u16, u64)> {
    let close = if req.has_body || !req.keep_alive {
        "Connection: close\r\n"
    } else {
        ""
    };
    let ct = if ctype.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {ctype}\r\n")
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nDate: {}\r\n{ct}Content-Length: {}\r\n{extra}{close}\r\n",
        reason(status),
        http_date(crate::sys::unix_now() as i64),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !req.head {
        stream.write_all(body)?;
    }
    Ok((status, body.len() as u64))
}

pub(super) fn send_json(
    stream: &mut TcpStream,
    req: &Request,
    status: u16,
    extra: &str,
    v: &Value,
) -> io::Result<(u16, u64)> {
    let mut body = serde_json::to_vec_pretty(v).expect("JSON serializes");
    body.push(b'\n');
    send(stream, req, status, extra, "application/json", &body)
}

pub(super) fn send_refusal(
    stream: &mut TcpStream,
    req: &Request,
    r: &Refusal,
) -> io::Result<(u16, u64)> {
    let extra = if r.status == 401 {
        format!("WWW-Authenticate: {REALM}\r\n")
    } else {
        String::new()
    };
    send_json(
        stream,
        req,
        r.status,
        &extra,
        &json!({"status": r.status, "error": r.why}),
    )
}

/// Reads and drops what is left of a refused upload for a moment, so the client reads
/// the answer rather than a reset.
pub(super) fn linger(stream: &mut TcpStream) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let end = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 16 * 1024];
    let mut n = 0u64;
    while n < LINGER_BYTES && Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

impl Handler for Taker {
    fn name(&self) -> String {
        "channels".into()
    }
    fn handles(&self, path: &str) -> bool {
        handles(path)
    }
    fn answer(
        &self,
        stream: &mut TcpStream,
        req: &Request,
        pre: &[u8],
        peer: &str,
    ) -> io::Result<(u16, u64)> {
        answer(self, stream, req, pre, peer)
    }
}

/// Answers one request of the channel interface; returns (status, body bytes sent).
pub(super) fn answer(
    t: &Taker,
    stream: &mut TcpStream,
    req: &Request,
    pre: &[u8],
    peer: &str,
) -> io::Result<(u16, u64)> {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = req.method.as_str();
    let result = match (m, segs.as_slice()) {
        ("POST" | "PUT", ["taker"]) => return take(t, stream, req, pre, peer, false),
        ("POST" | "PUT", ["rest", "taker"]) => return take(t, stream, req, pre, peer, true),
        ("DELETE", ["taker" | "rest", ..]) => delete(t, stream, req, &segs, peer),
        ("GET" | "HEAD", ["channels", ..]) => read(t, stream, req, &segs, query),
        (_, ["taker"] | ["rest", "taker"]) => {
            Err(Refusal::new(405, format!("{m}: use POST or PUT")))
        }
        (_, ["channels", ..]) => Err(Refusal::new(405, format!("{m}: use GET or HEAD"))),
        _ => Err(Refusal::new(404, "no such resource")),
    };
    match result {
        Ok(done) => Ok(done),
        Err(r) => {
            let out = send_refusal(stream, req, &r)?;
            if req.has_body {
                linger(stream);
            }
            Ok(out)
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::read::{attributes, parse_since};

    #[test]
    fn routes_and_times() {
        for p in [
            "/taker",
            "/rest/taker",
            "/channels",
            "/channels/MEMO/1?since=3",
            "/taker/channels/A/1",
        ] {
            assert!(handles(p), "{p}");
        }
        for p in ["/takers", "/channelsX", "/data/channels", "/"] {
            assert!(!handles(p), "{p}");
        }
        assert_eq!(parse_since("784111777"), Some(784111777.0));
        assert_eq!(parse_since("19941106T084937"), Some(784111777.0));
        assert_eq!(
            parse_since("Sun,%2006%20Nov%201994%2008:49:37%20GMT"),
            Some(784111777.0)
        );
        assert_eq!(parse_since("yesterday"), None);
        let a = attributes("text/plain; cid=M; oid=1; fname=a.txt; topic=\"How to\"");
        assert_eq!(a, json!({"fname": "a.txt", "topic": "How to"}));
    }
}
