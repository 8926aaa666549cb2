//! Uploads into channels (whole or multipart, streamed to disk) and DELETE of a product.

use super::reply::json_reply;
use super::taker::{Outcome, Taker, MAX_PARTS};
use crate::channels::Refusal;
use crate::channels::{Reason, ANONYMOUS};
use crate::core::mediatype::MediaType;
use crate::http::multipart::Multipart;
use crate::http::{Reply, Request};
use serde_json::{json, Value};
use std::io::Read;

/// An upload into a channel (or several, multipart). A refusal is answered without
/// reading the body: the server takes in (and drops) what the client still sends.
pub(super) fn take(
    t: &Taker,
    req: &Request,
    body: &mut dyn Read,
    peer: &str,
    restricted: bool,
) -> Reply {
    let refuse = |user: Option<&str>, cid: &str, r: Refusal| {
        t.log_outcome(
            peer,
            user,
            &Outcome::refused(cid, req.content_length.unwrap_or(0), r.clone()),
        );
        r.reply()
    };
    let user = match t.authenticate(req) {
        Ok(None) if restricted => {
            return refuse(
                None,
                "",
                Refusal::new(Reason::Unauthenticated, "authentication required"),
            )
        }
        Ok(u) => u,
        Err(r) => return refuse(None, "", r),
    };
    let user = user.as_deref();
    if let Err(r) = identity_only(req.content_encoding.as_deref()) {
        return refuse(user, "", r);
    }
    let mt = match req.content_type.as_deref().map(MediaType::parse) {
        None => {
            return refuse(
                user,
                "",
                Refusal::new(Reason::BadRequest, "no Content-Type"),
            )
        }
        Some(Err(e)) => return refuse(user, "", Refusal::new(Reason::BadRequest, e.to_string())),
        Some(Ok(mt)) => mt,
    };
    if req.content_length.is_none() && !req.chunked {
        return refuse(
            user,
            "",
            Refusal::new(
                Reason::LengthRequired,
                "give Content-Length or send chunked",
            ),
        );
    }
    let mut buf = vec![0u8; 64 * 1024];
    if mt.essence.starts_with("multipart/") {
        let Some(boundary) = mt.param("boundary").map(str::to_string) else {
            return refuse(
                user,
                "",
                Refusal::new(
                    Reason::BadRequest,
                    "multipart Content-Type without boundary",
                ),
            );
        };
        let results = take_parts(t, body, &boundary, user, peer, &mut buf);
        let status = match results.as_slice() {
            [] => 400,
            r if r.iter().all(|(_, o)| o.status == 201) => 201,
            _ => 207,
        };
        let v: Vec<Value> = results.iter().map(|(n, o)| o.json(Some(*n))).collect();
        return json_reply(status, &json!({"results": v}));
    }
    let i = match t.check(&mt, user, req.content_length) {
        Ok(i) => i,
        Err(r) => return refuse(user, mt.param("cid").unwrap_or(""), r),
    };
    let o = t.store(i, mt, user, body, req.content_length, &mut buf);
    t.log_outcome(peer, user, &o);
    let r = json_reply(o.status, &json!({"results": [o.json(None)]}));
    match &o.location {
        Some(l) => r.header("location", l.clone()),
        None => r,
    }
}

/// Refuses a content coding: a product stored as gzip bytes and served under its
/// uncompressed type would lose its label. Who wants it kept compressed says so in its
/// Content-Type (`application/gzip`).
fn identity_only(encoding: Option<&str>) -> Result<(), Refusal> {
    match encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("identity") => Ok(()),
        Some(e) => Err(Refusal::new(
            Reason::UnsupportedEncoding,
            format!(
                "Content-Encoding {e}: send the product as it is (its type in Content-Type, application/gzip to keep it compressed)"
            ),
        )),
    }
}

/// A part's Content-Disposition `filename` (its last path component) as its `fname`
/// when its Content-Type names none, as `curl -F file=@memo.txt` sends a file. Read
/// with the Content-Type's own parameter rules, so it is as header-safe as they are.
fn fname_from_disposition(mt: &mut MediaType, head: &[(String, String)]) {
    if mt.param("fname").is_some() {
        return;
    }
    let Some((_, d)) = head.iter().find(|(k, _)| k == "content-disposition") else {
        return;
    };
    let Ok(cd) = MediaType::parse(&format!("x/{d}")) else {
        return;
    };
    let name = cd
        .param("filename")
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .filter(|n| !n.is_empty() && !n.chars().any(char::is_control));
    if let Some(n) = name {
        mt.params.push(("fname".into(), n.to_string()));
    }
}

/// Each part: its own Content-Type (cid and attributes), stored as it arrives.
pub(super) fn take_parts(
    t: &Taker,
    body: &mut dyn Read,
    boundary: &str,
    user: Option<&str>,
    peer: &str,
    buf: &mut [u8],
) -> Vec<(usize, Outcome)> {
    let mut results = Vec::new();
    let mut m = match Multipart::new(body, boundary) {
        Ok(m) => m,
        Err(e) => {
            results.push((
                0,
                Outcome::refused("", 0, Refusal::new(Reason::BadRequest, e.to_string())),
            ));
            return results;
        }
    };
    for n in 1.. {
        let head = match m.next_part() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                let o = Outcome::refused(
                    "",
                    0,
                    Refusal::new(Reason::BadRequest, format!("multipart: {e}")),
                );
                t.log_outcome(peer, user, &o);
                results.push((n, o));
                break;
            }
        };
        if n > MAX_PARTS {
            let o = Outcome::refused(
                "",
                0,
                Refusal::new(Reason::TooLarge, format!("more than {MAX_PARTS} parts")),
            );
            t.log_outcome(peer, user, &o);
            results.push((n, o));
            break;
        }
        let ct = head
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str());
        let checked = match ct.map(MediaType::parse) {
            None => Err(Refusal::new(
                Reason::BadRequest,
                "part without Content-Type",
            )),
            Some(Err(e)) => Err(Refusal::new(Reason::BadRequest, e.to_string())),
            Some(Ok(mut mt)) => {
                fname_from_disposition(&mut mt, &head);
                let encoding = head.iter().find(|(k, _)| k == "content-encoding");
                identity_only(encoding.map(|(_, v)| v.as_str()))
                    .and_then(|()| t.check(&mt, user, None))
                    .map(|i| (i, mt))
            }
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
        t.log_outcome(peer, user, &o);
        // a part cut off by the connection: nothing after it can be read
        let broken = o.status == 408
            || o.status == 400
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

pub(super) fn delete(
    t: &Taker,
    req: &Request,
    segs: &[&str],
    peer: &str,
) -> Result<Reply, Refusal> {
    let (cid, oid) = match segs {
        ["taker", "channels", cid, oid] | ["rest", "taker", "channels", cid, oid] => (*cid, *oid),
        _ => {
            return Err(Refusal::new(
                Reason::NotFound,
                "DELETE .../taker/channels/CID/OID",
            ))
        }
    };
    // every attempt leaves a line, refused credentials first: password guessing
    // through DELETE must show in the log
    let user = match t.authenticate(req) {
        Ok(Some(u)) => u,
        Ok(None) => {
            let r = Refusal::new(Reason::Unauthenticated, "authentication required to delete");
            log::warn!(
                "taker {peer}: user={ANONYMOUS} channel={cid} delete {oid} {} {}",
                r.status(),
                r.why
            );
            return Err(r);
        }
        Err(r) => {
            log::warn!(
                "taker {peer}: user=- channel={cid} delete {oid} {} {}",
                r.status(),
                r.why
            );
            return Err(r);
        }
    };
    let result = (|| {
        let (i, def) = t
            .channels
            .find(cid)
            .filter(|(_, d)| !d.is_feed())
            .ok_or_else(|| Refusal::new(Reason::NotFound, format!("no channel {cid:?}")))?;
        if !def.may_delete(Some(&user)) {
            return Err(Refusal::new(
                Reason::Forbidden,
                format!("user {user} may not delete from channel {cid}"),
            ));
        }
        match t.channels.delete(i, oid) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::new(
                Reason::NotFound,
                format!("no product {oid} in channel {cid}"),
            )),
            Err(e) => Err(e.into()),
        }
    })();
    match &result {
        Ok(()) => {
            log::info!("taker {peer}: user={user} channel={cid} deleted {oid} 204");
            let rel = crate::store::sidecar::product_rel(cid, oid);
            if let Some(a) = t.announcer.as_ref().filter(|_| t.meshed(&rel)) {
                let mut now = String::new();
                crate::core::time::format_time(&mut now, crate::sys::unix_now());
                a.removal(&crate::store::sidecar::product_rel(cid, oid), &now);
            }
        }
        Err(r) => log::warn!(
            "taker {peer}: user={user} channel={cid} delete {oid} {} {}",
            r.status(),
            r.why
        ),
    }
    result?;
    Ok(Reply::new(204))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fname(ct: &str, disposition: &str) -> Option<String> {
        let mut mt = MediaType::parse(ct).unwrap();
        let head = vec![("content-disposition".to_string(), disposition.to_string())];
        fname_from_disposition(&mut mt, &head);
        mt.param("fname").map(str::to_string)
    }

    #[test]
    fn a_parts_filename_becomes_its_fname() {
        let d = r#"form-data; name="file"; filename="memo.txt""#;
        assert_eq!(
            fname("text/plain; cid=MEMO", d).as_deref(),
            Some("memo.txt")
        );
        assert_eq!(
            fname("text/plain; cid=MEMO; fname=given.txt", d).as_deref(),
            Some("given.txt"),
            "the Content-Type's own fname wins"
        );
        let path = r#"form-data; name="file"; filename="C:\\docs\\memo.txt""#;
        assert_eq!(fname("text/plain", path).as_deref(), Some("memo.txt"));
        assert_eq!(
            fname("text/plain", "form-data; name=\"file\"").as_deref(),
            None
        );
        assert_eq!(
            fname("text/plain", "form-data; filename=\"\"").as_deref(),
            None
        );
    }
}
