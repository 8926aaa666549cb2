//! The channel interface's routes and its HTTP answers (refusals, JSON, lingering).

use super::read::read;
use super::taker::Taker;
use super::upload::{delete, take};
use crate::channels::Reason;
use crate::channels::Refusal;
use crate::http::{Handler, Reply, Request};
use std::io::{self, Read};

/// The paths answered here rather than from the data tree.
pub fn handles(path: &str) -> bool {
    let p = path.split('?').next().unwrap_or("");
    ["/taker", "/rest/taker", "/channels"]
        .iter()
        .any(|r| p == *r || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
}

impl Taker {
    /// Whether `path` is in the tree directory of a channel with restricted readers
    /// (`/metcast/CID[/...]`): answered here, with the channel's read rights, never by
    /// the file server.
    fn guards(&self, path: &str) -> bool {
        // read as the file server reads it (percent-decoded, one leading slash), and
        // where it leads on disk (a symlink must not open a way around)
        let any = self.channels.defs.iter().any(|d| d.readers_restricted());
        if !any {
            return false; // the common case costs nothing per request
        }
        let p = path.split(['?', '#']).next().unwrap_or("");
        let Some(decoded) = crate::core::relpath::percent_decode(p) else {
            return false;
        };
        let restricted = |rel: &str| {
            let mut c = rel.split('/');
            c.next() == Some(crate::store::sidecar::TREE)
                && c.next().is_some_and(|cid| {
                    self.channels
                        .find(cid)
                        .is_some_and(|(_, d)| !d.is_feed() && d.readers_restricted())
                })
        };
        let rel = decoded.strip_prefix('/').unwrap_or(&decoded);
        if restricted(rel) {
            return true;
        }
        let root = self.channels.root();
        root.join(rel)
            .canonicalize()
            .ok()
            .and_then(|full| {
                full.strip_prefix(root)
                    .ok()
                    .map(|r| restricted(&r.to_string_lossy()))
            })
            .unwrap_or(false)
    }
}

/// A product of a restricted channel asked for by its tree path: to its readers only.
fn read_tree(t: &Taker, req: &Request, cid: &str, rest: &[&str]) -> Result<Reply, Refusal> {
    let user = t.authenticate(req)?;
    // read as the file server would have read it
    let decode = |s: &str| crate::core::relpath::percent_decode(s).unwrap_or_default();
    let d = super::taker::readable(t, &decode(cid), user.as_deref())?;
    let [oid] = rest else {
        return Err(Refusal::new(Reason::NotFound, "no such file"));
    };
    let oid = decode(oid);
    let (p, f) = t
        .channels
        .open_product(d, &oid)
        .ok_or_else(|| Refusal::new(Reason::NotFound, format!("no product {oid}")))?;
    Ok(super::read::product_reply(&p, f))
}

impl Handler for Taker {
    fn name(&self) -> String {
        "channels".into()
    }
    fn handles(&self, path: &str) -> bool {
        handles(path) || self.guards(path)
    }
    fn answer(&self, req: &Request, body: &mut dyn Read, peer: &str) -> io::Result<Reply> {
        Ok(answer(self, req, body, peer))
    }
}

/// Answers one request of the channel interface.
pub(super) fn answer(t: &Taker, req: &Request, body: &mut dyn Read, peer: &str) -> Reply {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = req.method.as_str();
    let result = match (m, segs.as_slice()) {
        ("POST" | "PUT", ["taker"]) => return take(t, req, body, peer, false),
        ("POST" | "PUT", ["rest", "taker"]) => return take(t, req, body, peer, true),
        ("DELETE", ["taker" | "rest", ..]) => delete(t, req, &segs, peer),
        ("GET" | "HEAD", ["channels", ..]) => read(t, req, &segs, query),
        ("GET" | "HEAD", ["metcast", cid, rest @ ..]) => read_tree(t, req, cid, rest),
        (_, ["metcast", ..]) => Err(Refusal::new(
            Reason::WrongMethod,
            format!("{m}: use GET or HEAD"),
        )),
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
    result.unwrap_or_else(|r| r.reply())
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
