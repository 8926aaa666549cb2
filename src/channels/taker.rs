//! The channel interface of the node's HTTP server: the Metcast taker (`POST`/`PUT`
//! `/taker` for open channels, `/rest/taker` with credentials), `DELETE` of a product,
//! and reading (`GET /channels...`). Uploads stream to disk as they arrive, multipart
//! ones part by part; every attempt is logged with user, channel, size and result.

use crate::channels::announcer::Announcer;
use crate::channels::credentials::{
    basic_auth, Credentials, VerifiedCache, VERIFIED_CAPACITY, VERIFIED_TTL,
};
use crate::channels::feeds;
use crate::channels::{ChannelDef, Channels, Kind, Product, Refusal, ANONYMOUS};
use crate::core::mediatype::MediaType;
use crate::core::time::{http_date, parse_http_date, rfc3339};
use crate::http::body::{Body, Multipart};
use crate::http::response::reason;
use crate::http::{Handler, Request};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Most parts in one multipart upload.
pub const MAX_PARTS: usize = 1000;
/// After refusing an upload, how much of its body is read (and dropped) so the client
/// gets the answer instead of a reset connection.
const LINGER_BYTES: u64 = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);
/// Between two reads of an upload.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
const REALM: &str = "Basic realm=\"meshnode taker\", charset=\"UTF-8\"";

pub struct Taker {
    pub channels: Channels,
    credentials: Option<Credentials>,
    verified: VerifiedCache,
    announcer: Option<Announcer>,
}

impl std::fmt::Debug for Taker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.channels.defs.iter().map(|d| d.id.as_str()).collect();
        write!(f, "Taker {{ channels: {ids:?} }}")
    }
}

/// The paths answered here rather than from the data tree.
pub fn handles(path: &str) -> bool {
    let p = path.split('?').next().unwrap_or("");
    ["/taker", "/rest/taker", "/channels"]
        .iter()
        .any(|r| p == *r || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
}

/// One product's outcome, for the answer and the log.
struct Outcome {
    cid: String,
    status: u16,
    oid: Option<String>,
    location: Option<String>,
    size: u64,
    error: Option<String>,
}

impl Outcome {
    fn refused(cid: &str, size: u64, r: Refusal) -> Outcome {
        Outcome {
            cid: cid.to_string(),
            status: r.status,
            oid: None,
            location: None,
            size,
            error: Some(r.why),
        }
    }

    fn json(&self, part: Option<usize>) -> Value {
        let mut v = json!({"status": self.status, "cid": self.cid, "size": self.size});
        let o = v.as_object_mut().expect("an object");
        if let Some(p) = part {
            o.insert("part".into(), json!(p));
        }
        if let Some(x) = &self.oid {
            o.insert("oid".into(), json!(x));
        }
        if let Some(x) = &self.location {
            o.insert("location".into(), json!(x));
        }
        if let Some(x) = &self.error {
            o.insert("error".into(), json!(x));
        }
        v
    }
}

/// A cut-off time: epoch seconds, a pubTime (`20261123T124201`) or an HTTP date.
pub fn parse_since(v: &str) -> Option<f64> {
    let v = crate::core::relpath::percent_decode(&v.replace('+', " "))?;
    let v = v.trim();
    v.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite())
        .or_else(|| crate::core::time::parse_time(v))
        .or_else(|| parse_http_date(v).map(|t| t as f64))
}

fn attributes(content_type: &str) -> Value {
    let mut o = serde_json::Map::new();
    if let Ok(mt) = MediaType::parse(content_type) {
        for (k, v) in mt.params {
            if k != "cid" && k != "oid" {
                o.insert(k, json!(v));
            }
        }
    }
    Value::Object(o)
}

fn product_json(p: &Product) -> Value {
    json!({
        "oid": p.oid,
        "contentType": p.meta.content_type,
        "attributes": attributes(&p.meta.content_type),
        "size": p.size,
        "time": rfc3339(p.time),
        "pubTime": p.meta.pub_time,
        "publisher": p.meta.source,
    })
}

impl Taker {
    pub fn new(
        channels: Channels,
        credentials: Option<Credentials>,
        announcer: Option<Announcer>,
    ) -> Taker {
        Taker {
            channels,
            credentials,
            verified: VerifiedCache::new(VERIFIED_CAPACITY, VERIFIED_TTL),
            announcer,
        }
    }

    /// Announces again every product this node published that it still holds (see
    /// `Channels::own_products`), waiting for room in the announcer's queue: run it on
    /// a thread of its own. Returns how many.
    pub fn announce_own(&self) -> usize {
        let Some(a) = &self.announcer else { return 0 };
        let own = self.channels.own_products();
        for p in &own {
            a.product_with(self.channels.root(), p, true);
        }
        own.len()
    }

    /// The user of a request: `None` without credentials, a refusal for wrong ones.
    fn authenticate(&self, req: &Request) -> Result<Option<String>, Refusal> {
        let Some(h) = &req.authorization else {
            return Ok(None);
        };
        match (basic_auth(h), &self.credentials) {
            (Some((u, p)), Some(c)) if self.verified.verify(c, &u, &p) => Ok(Some(u)),
            (Some((u, _)), _) => Err(Refusal::new(
                401,
                format!("authentication failed for {u:?}"),
            )),
            (None, _) => Err(Refusal::new(401, "authentication failed: not HTTP Basic")),
        }
    }

    /// Whether `user` may put `mt` into its channel; the channel's index.
    fn check(
        &self,
        mt: &MediaType,
        user: Option<&str>,
        length: Option<u64>,
    ) -> Result<usize, Refusal> {
        let cid = mt
            .param("cid")
            .ok_or_else(|| Refusal::new(400, "Content-Type has no cid= parameter"))?;
        let (i, def) = self
            .channels
            .find(cid)
            .ok_or_else(|| Refusal::new(404, format!("no channel {cid:?}")))?;
        if !def.may_write(user) {
            return Err(denied(user, "write", cid, " (use /rest/taker)"));
        }
        let max = self.channels.max_product;
        if let Some(n) = length.filter(|n| *n > max) {
            return Err(Refusal::new(
                413,
                format!("{n} bytes: over the limit of {max}"),
            ));
        }
        if let Kind::Feed { dir, min_free, .. } = &def.kind {
            feeds::check_free(dir, *min_free, length.unwrap_or(0))?;
        }
        Ok(i)
    }

    /// Stores one product that passed `check`.
    fn store(
        &self,
        i: usize,
        mt: MediaType,
        user: Option<&str>,
        body: &mut dyn Read,
        length: Option<u64>,
        buf: &mut [u8],
    ) -> Outcome {
        let def = &self.channels.defs[i];
        let now = crate::sys::unix_now();
        let cid = def.id.clone();
        if def.is_feed() {
            return match self.channels.deposit(i, &mt, body, length, now, buf) {
                Ok((oid, _, size)) => Outcome {
                    cid,
                    status: 201,
                    oid: Some(oid),
                    location: None,
                    size,
                    error: None,
                },
                Err(r) => Outcome::refused(&cid, length.unwrap_or(0), r),
            };
        }
        match self.channels.publish(i, user, mt, body, now, buf) {
            Ok(p) => {
                if let Some(a) = &self.announcer {
                    a.product(self.channels.root(), &p);
                }
                for old in &p.evicted {
                    log::info!("channel {cid}: evicted {old}");
                }
                Outcome {
                    location: Some(format!("/channels/{cid}/{}", p.oid)),
                    cid,
                    status: 201,
                    oid: Some(p.oid),
                    size: p.size,
                    error: None,
                }
            }
            Err(r) => Outcome::refused(&cid, length.unwrap_or(0), r),
        }
    }
}

fn log_outcome(peer: &str, user: Option<&str>, o: &Outcome) {
    let what = o.oid.as_deref().or(o.error.as_deref()).unwrap_or("");
    let line = format!(
        "taker {peer}: user={} channel={} size={} {} {what}",
        user.unwrap_or(ANONYMOUS),
        if o.cid.is_empty() { "-" } else { &o.cid },
        o.size,
        o.status
    );
    if o.status < 300 {
        log::info!("{line}");
    } else {
        log::warn!("{line}");
    }
}

/// Writes an answer; `Connection: close` after a request with a body.
fn send(
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

fn send_json(
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

fn send_refusal(stream: &mut TcpStream, req: &Request, r: &Refusal) -> io::Result<(u16, u64)> {
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
fn linger(stream: &mut TcpStream) {
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
fn answer(
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

fn take(
    t: &Taker,
    stream: &mut TcpStream,
    req: &Request,
    pre: &[u8],
    peer: &str,
    restricted: bool,
) -> io::Result<(u16, u64)> {
    let refuse = |stream: &mut TcpStream, user: Option<&str>, cid: &str, r: Refusal| {
        log_outcome(
            peer,
            user,
            &Outcome::refused(cid, req.content_length.unwrap_or(0), r.clone()),
        );
        let out = send_refusal(stream, req, &r)?;
        linger(stream);
        Ok(out)
    };
    let user = match t.authenticate(req) {
        Ok(None) if restricted => {
            return refuse(
                stream,
                None,
                "",
                Refusal::new(401, "authentication required"),
            )
        }
        Ok(u) => u,
        Err(r) => return refuse(stream, None, "", r),
    };
    let user = user.as_deref();
    let mt = match req.content_type.as_deref().map(MediaType::parse) {
        None => return refuse(stream, user, "", Refusal::new(400, "no Content-Type")),
        Some(Err(e)) => return refuse(stream, user, "", Refusal::new(400, e.to_string())),
        Some(Ok(mt)) => mt,
    };
    if req.content_length.is_none() && !req.chunked {
        return refuse(
            stream,
            user,
            "",
            Refusal::new(411, "give Content-Length or send chunked"),
        );
    }
    stream.set_read_timeout(Some(BODY_TIMEOUT))?;
    let mut buf = vec![0u8; 64 * 1024];
    if mt.essence.starts_with("multipart/") {
        let Some(boundary) = mt.param("boundary").map(str::to_string) else {
            return refuse(
                stream,
                user,
                "",
                Refusal::new(400, "multipart Content-Type without boundary"),
            );
        };
        if req.expect_continue {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let results = {
            let mut s2 = stream.try_clone()?;
            let body = Body::new(&mut s2, pre, req.content_length, req.chunked);
            take_parts(t, body, &boundary, user, peer, &mut buf)
        };
        let status = match results.as_slice() {
            [] => 400,
            r if r.iter().all(|(_, o)| o.status == 201) => 201,
            _ => 207,
        };
        let v: Vec<Value> = results.iter().map(|(n, o)| o.json(Some(*n))).collect();
        let out = send_json(stream, req, status, "", &json!({"results": v}))?;
        if status != 201 {
            linger(stream);
        }
        return Ok(out);
    }
    let i = match t.check(&mt, user, req.content_length) {
        Ok(i) => i,
        Err(r) => return refuse(stream, user, mt.param("cid").unwrap_or(""), r),
    };
    if req.expect_continue {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let o = {
        let mut s2 = stream.try_clone()?;
        let mut body = Body::new(&mut s2, pre, req.content_length, req.chunked);
        t.store(i, mt, user, &mut body, req.content_length, &mut buf)
    };
    log_outcome(peer, user, &o);
    let extra = o
        .location
        .as_ref()
        .map_or(String::new(), |l| format!("Location: {l}\r\n"));
    let out = send_json(
        stream,
        req,
        o.status,
        &extra,
        &json!({"results": [o.json(None)]}),
    )?;
    if o.status != 201 {
        linger(stream);
    }
    Ok(out)
}

/// Each part: its own Content-Type (cid and attributes), stored as it arrives.
fn take_parts(
    t: &Taker,
    body: Body<'_, TcpStream>,
    boundary: &str,
    user: Option<&str>,
    peer: &str,
    buf: &mut [u8],
) -> Vec<(usize, Outcome)> {
    let mut results = Vec::new();
    let mut m = match Multipart::new(body, boundary) {
        Ok(m) => m,
        Err(e) => {
            results.push((0, Outcome::refused("", 0, Refusal::new(400, e.to_string()))));
            return results;
        }
    };
    for n in 1.. {
        let head = match m.next_part() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                let o = Outcome::refused("", 0, Refusal::new(400, format!("multipart: {e}")));
                log_outcome(peer, user, &o);
                results.push((n, o));
                break;
            }
        };
        if n > MAX_PARTS {
            let o = Outcome::refused(
                "",
                0,
                Refusal::new(413, format!("more than {MAX_PARTS} parts")),
            );
            log_outcome(peer, user, &o);
            results.push((n, o));
            break;
        }
        let ct = head
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str());
        let checked = match ct.map(MediaType::parse) {
            None => Err(Refusal::new(400, "part without Content-Type")),
            Some(Err(e)) => Err(Refusal::new(400, e.to_string())),
            Some(Ok(mt)) => t.check(&mt, user, None).map(|i| (i, mt)),
        };
        let o = match checked {
            Ok((i, mt)) => t.store(i, mt, user, &mut m.part(), None, buf),
            Err(r) => {
                let cid = ct
                    .and_then(|c| MediaType::parse(c).ok())
                    .and_then(|mt| mt.param("cid").map(str::to_string))
                    .unwrap_or_default();
                Outcome::refused(&cid, 0, r)
            }
        };
        log_outcome(peer, user, &o);
        // a part cut off by the connection: nothing after it can be read
        let broken = o.status == 400
            && o.error
                .as_deref()
                .is_some_and(|e| e.starts_with("upload interrupted"));
        results.push((n, o));
        if broken {
            break;
        }
    }
    if let Err(e) = m.finish(64 * 1024) {
        log::debug!("taker {peer}: after the last part: {e}");
    }
    results
}

fn delete(
    t: &Taker,
    stream: &mut TcpStream,
    req: &Request,
    segs: &[&str],
    peer: &str,
) -> Result<(u16, u64), Refusal> {
    let (cid, oid) = match segs {
        ["taker", "channels", cid, oid] | ["rest", "taker", "channels", cid, oid] => (*cid, *oid),
        _ => return Err(Refusal::new(404, "DELETE .../taker/channels/CID/OID")),
    };
    let user = t
        .authenticate(req)?
        .ok_or_else(|| Refusal::new(401, "authentication required to delete"))?;
    let result = (|| {
        let (i, def) = t
            .channels
            .find(cid)
            .filter(|(_, d)| !d.is_feed())
            .ok_or_else(|| Refusal::new(404, format!("no channel {cid:?}")))?;
        if !def.may_delete(Some(&user)) {
            return Err(Refusal::new(
                403,
                format!("user {user} may not delete from channel {cid}"),
            ));
        }
        match t.channels.delete(i, oid) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::new(
                404,
                format!("no product {oid} in channel {cid}"),
            )),
            Err(e) => Err(e.into()),
        }
    })();
    match &result {
        Ok(()) => {
            log::info!("taker {peer}: user={user} channel={cid} deleted {oid} 204");
            if let Some(a) = &t.announcer {
                let mut now = String::new();
                crate::core::time::format_time(&mut now, crate::sys::unix_now());
                a.removal(&crate::store::sidecar::product_rel(cid, oid), &now);
            }
        }
        Err(r) => log::warn!(
            "taker {peer}: user={user} channel={cid} delete {oid} {} {}",
            r.status,
            r.why
        ),
    }
    result?;
    send(stream, req, 204, "", "", b"").map_err(Refusal::from)
}

/// The channel `cid` if `user` may read it; feeds are never shown.
fn readable<'a>(t: &'a Taker, cid: &str, user: Option<&str>) -> Result<&'a ChannelDef, Refusal> {
    let def = t
        .channels
        .find(cid)
        .map(|(_, d)| d)
        .filter(|d| !d.is_feed())
        .ok_or_else(|| Refusal::new(404, format!("no channel {cid:?}")))?;
    if def.may_read(user) {
        return Ok(def);
    }
    Err(denied(user, "read", cid, ""))
}

/// A refused `action` on channel `cid`: 401 without credentials (they could help), 403
/// with them (they do not).
fn denied(user: Option<&str>, action: &str, cid: &str, hint: &str) -> Refusal {
    match user {
        None => Refusal::new(401, format!("channel {cid} needs credentials{hint}")),
        Some(u) => Refusal::new(403, format!("user {u} may not {action} channel {cid}")),
    }
}

fn read(
    t: &Taker,
    stream: &mut TcpStream,
    req: &Request,
    segs: &[&str],
    query: &str,
) -> Result<(u16, u64), Refusal> {
    let user = t.authenticate(req)?;
    let user = user.as_deref();
    let out = match segs {
        ["channels"] | ["channels", ""] => {
            let mut list = Vec::new();
            for d in t
                .channels
                .defs
                .iter()
                .filter(|d| !d.is_feed() && d.may_read(user))
            {
                let products = t.channels.list(d)?;
                list.push(json!({
                    "id": d.id,
                    "title": d.title,
                    "capacity": d.capacity,
                    "count": products.len(),
                    "lastUpdate": products.last().map(|p| rfc3339(p.time)),
                }));
            }
            send_json(stream, req, 200, "", &Value::Array(list))
        }
        ["channels", cid] => {
            let d = readable(t, cid, user)?;
            let products: Vec<Value> = t.channels.list(d)?.iter().map(product_json).collect();
            send_json(
                stream,
                req,
                200,
                "",
                &json!({"id": d.id, "title": d.title, "capacity": d.capacity, "products": products}),
            )
        }
        ["channels", cid, "products"] => {
            let d = readable(t, cid, user)?;
            let since = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("since="))
                .map(|v| {
                    parse_since(v)
                        .ok_or_else(|| Refusal::new(400, format!("since={v}: not a time")))
                })
                .transpose()?
                .or_else(|| {
                    req.if_modified_since
                        .as_deref()
                        .and_then(parse_http_date)
                        .map(|t| t as f64)
                });
            products_since(t, d, stream, req, since)
        }
        ["channels", cid, oid] => {
            let d = readable(t, cid, user)?;
            let (p, mut f) = t
                .channels
                .open_product(d, oid)
                .ok_or_else(|| Refusal::new(404, format!("no product {oid} in channel {cid}")))?;
            send_product(stream, req, &p, &mut f)
        }
        _ => return Err(Refusal::new(404, "no such resource")),
    };
    out.map_err(Refusal::from)
}

fn send_product(
    stream: &mut TcpStream,
    req: &Request,
    p: &Product,
    f: &mut File,
) -> io::Result<(u16, u64)> {
    let close = if req.keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nLast-Modified: {}\r\n{close}\r\n",
        http_date(crate::sys::unix_now() as i64),
        p.meta.content_type,
        p.size,
        http_date(p.time as i64)
    );
    stream.write_all(head.as_bytes())?;
    if req.head {
        return Ok((200, 0));
    }
    let sent = io::copy(&mut f.take(p.size), stream)?;
    Ok((200, sent))
}

/// Products newer than `since` (whole seconds, as HTTP dates have): none is a 304, one a
/// plain body, several a multipart/mixed.
fn products_since(
    t: &Taker,
    d: &ChannelDef,
    stream: &mut TcpStream,
    req: &Request,
    since: Option<f64>,
) -> io::Result<(u16, u64)> {
    let mut open = Vec::new();
    for p in t.channels.list(d)? {
        if since.is_some_and(|s| p.time.floor() <= s) {
            continue;
        }
        // evicted between the listing and now: not part of this answer
        if let Some(x) = t.channels.open_product(d, &p.oid) {
            open.push(x);
        }
    }
    let close = if req.keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let date = http_date(crate::sys::unix_now() as i64);
    match open.len() {
        0 => {
            let head = format!("HTTP/1.1 304 Not Modified\r\nDate: {date}\r\n{close}\r\n");
            stream.write_all(head.as_bytes())?;
            Ok((304, 0))
        }
        1 => {
            let (p, mut f) = open.pop().expect("one");
            send_product(stream, req, &p, &mut f)
        }
        _ => {
            let boundary = format!(
                "meshnode-{}",
                open.last().map_or("", |(p, _)| p.oid.as_str())
            );
            let heads: Vec<String> = open
                .iter()
                .map(|(p, _)| {
                    format!(
                        "--{boundary}\r\nContent-Type: {}\r\nContent-Length: {}\r\nLast-Modified: {}\r\n\r\n",
                        p.meta.content_type,
                        p.size,
                        http_date(p.time as i64)
                    )
                })
                .collect();
            let end = format!("--{boundary}--\r\n");
            let total: u64 = open.iter().map(|(p, _)| p.size + 2).sum::<u64>()
                + heads.iter().map(|h| h.len() as u64).sum::<u64>()
                + end.len() as u64;
            let newest = open.iter().map(|(p, _)| p.time as i64).max().unwrap_or(0);
            let head = format!(
                "HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\nContent-Length: {total}\r\nLast-Modified: {}\r\n{close}\r\n",
                http_date(newest)
            );
            stream.write_all(head.as_bytes())?;
            if req.head {
                return Ok((200, 0));
            }
            let mut sent = 0;
            for ((p, f), h) in open.iter_mut().zip(&heads) {
                stream.write_all(h.as_bytes())?;
                sent += io::copy(&mut f.take(p.size), stream)?;
                stream.write_all(b"\r\n")?;
            }
            stream.write_all(end.as_bytes())?;
            Ok((200, sent))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
