//! The channel interface's routes and its HTTP answers (refusals, JSON, lingering).

use super::read::read;
use super::reply::{linger, send_refusal};
use super::taker::Taker;
use super::upload::{delete, take};
use crate::channels::Reason;
use crate::channels::Refusal;
use crate::http::{Handler, Request};
use std::io::{self};
use std::net::TcpStream;

/// The paths answered here rather than from the data tree.
pub fn handles(path: &str) -> bool {
    let p = path.split('?').next().unwrap_or("");
    ["/taker", "/rest/taker", "/channels"]
        .iter()
        .any(|r| p == *r || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
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
        (_, ["taker"] | ["rest", "taker"]) => Err(Refusal::new(
            Reason::WrongMethod,
            format!("{m}: use POST or PUT"),
        )),
        (_, ["channels", ..]) => Err(Refusal::new(
            Reason::WrongMethod,
            format!("{m}: use GET or HEAD"),
        )),
        _ => Err(Refusal::new(Reason::NotFound, "no such resource")),
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
    use crate::channels::read::parse_since;
    use crate::channels::taker::attributes;
    use serde_json::json;

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
