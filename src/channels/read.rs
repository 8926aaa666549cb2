//! Reading channels: the list, a channel's description, products since a cut-off.

use super::reply::json_reply;
use super::taker::{product_json, readable, shown, Taker};
use crate::channels::Reason;
use crate::channels::{ChannelDef, Product, Refusal};
use crate::core::time::{http_date, parse_http_date, rfc3339};
use crate::http::{Piece, Reply, Request};
use serde_json::{json, Value};
use std::fs::File;

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

pub(super) fn read(t: &Taker, req: &Request, segs: &[&str], query: &str) -> Result<Reply, Refusal> {
    let user = t.authenticate(req)?;
    let user = user.as_deref();
    let out = match segs {
        ["channels"] | ["channels", ""] => {
            let mut list = Vec::new();
            for d in t.channels.defs.iter().filter(|d| shown(d, user)) {
                let products = t.channels.list(d)?;
                list.push(json!({
                    "id": d.id,
                    "title": d.title,
                    "capacity": d.capacity,
                    "count": products.len(),
                    "lastUpdate": products.last().map(|p| rfc3339(p.time)),
                }));
            }
            json_reply(200, &Value::Array(list))
        }
        ["channels", cid] => {
            let d = readable(t, cid, user)?;
            let products: Vec<Value> = t.channels.list(d)?.iter().map(product_json).collect();
            json_reply(
                200,
                &json!({"id": d.id, "title": d.title, "capacity": d.capacity, "products": products}),
            )
        }
        ["channels", cid, "products"] => {
            let d = readable(t, cid, user)?;
            let cursor = Cursor::of(query, req)?;
            products_since(t, d, &cursor)?
        }
        ["channels", cid, oid] => {
            let d = readable(t, cid, user)?;
            let (p, f) = t.channels.open_product(d, oid).ok_or_else(|| {
                Refusal::new(
                    Reason::NotFound,
                    format!("no product {oid} in channel {cid}"),
                )
            })?;
            product_reply(&p, f)
        }
        _ => return Err(Refusal::new(Reason::NotFound, "no such resource")),
    };
    Ok(out)
}

/// One product, as it is.
pub(super) fn product_reply(p: &Product, f: File) -> Reply {
    Reply::new(200)
        .header("content-type", p.meta.content_type.clone())
        .header("last-modified", http_date(p.time as i64))
        .piece(Piece::File(f, p.size))
}

/// Products newer than `since` (whole seconds, as HTTP dates have): none is a 304, one a
/// plain body, several a multipart/mixed.
/// Where a poller left off.
#[derive(Debug, PartialEq)]
pub enum Cursor {
    /// No condition: the products kept.
    All,
    /// `?after=OID`: the products listed after that one (OIDs sort in publication
    /// order), exact even within a second and when that one is gone.
    After(String),
    /// `?since=T`: the products published after T (pubTime, with its fraction).
    Since(f64),
    /// `If-Modified-Since` (whole seconds): the products of that second and after, the
    /// client skipping the ones it has (a second can hold several products).
    FromSecond(f64),
}

impl Cursor {
    fn of(query: &str, req: &Request) -> Result<Cursor, Refusal> {
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        if let Some(oid) = param("after") {
            if !crate::store::sidecar::valid_id(oid) {
                return Err(Refusal::new(
                    Reason::BadRequest,
                    format!("after={oid}: not a product id"),
                ));
            }
            return Ok(Cursor::After(oid.to_string()));
        }
        if let Some(v) = param("since") {
            return parse_since(v)
                .map(Cursor::Since)
                .ok_or_else(|| Refusal::new(Reason::BadRequest, format!("since={v}: not a time")));
        }
        Ok(req
            .if_modified_since
            .as_deref()
            .and_then(parse_http_date)
            .map_or(Cursor::All, |t| Cursor::FromSecond(t as f64)))
    }

    fn wants(&self, p: &Product) -> bool {
        match self {
            Cursor::All => true,
            Cursor::After(oid) => p.oid.as_str() > oid.as_str(),
            Cursor::Since(t) => p.time > *t,
            Cursor::FromSecond(t) => p.time.floor() >= *t,
        }
    }
}

pub(super) fn products_since(t: &Taker, d: &ChannelDef, cursor: &Cursor) -> std::io::Result<Reply> {
    let mut open = Vec::new();
    for _ in 0..crate::channels::products::LIST_ATTEMPTS {
        open.clear();
        let mut vanished = false;
        for p in t.channels.list(d)?.into_iter().filter(|p| cursor.wants(p)) {
            match t.channels.open_product(d, &p.oid) {
                Some(x) => open.push(x),
                // evicted since the listing: a newer one is in place, list again
                None => vanished = true,
            }
        }
        if !vanished {
            break;
        }
    }
    Ok(match open.len() {
        // nothing newer than the condition; with no condition, an empty channel (a 304
        // answers conditions only)
        0 if *cursor == Cursor::All => Reply::new(204),
        0 => Reply::new(304),
        1 => {
            let (p, f) = open.pop().expect("one");
            product_reply(&p, f)
        }
        _ => {
            let boundary = format!(
                "meshnode-{}",
                open.last().map_or("", |(p, _)| p.oid.as_str())
            );
            let newest = open.iter().map(|(p, _)| p.time as i64).max().unwrap_or(0);
            let mut r = Reply::new(200)
                .header(
                    "content-type",
                    format!("multipart/mixed; boundary=\"{boundary}\""),
                )
                .header("last-modified", http_date(newest));
            for (p, f) in open {
                let head = format!(
                    "--{boundary}\r\nContent-Type: {}\r\nContent-Length: {}\r\nLast-Modified: {}\r\n\r\n",
                    p.meta.content_type,
                    p.size,
                    http_date(p.time as i64)
                );
                r = r
                    .piece(Piece::Bytes(head.into()))
                    .piece(Piece::File(f, p.size))
                    .piece(Piece::Bytes(bytes::Bytes::from_static(b"\r\n")));
            }
            r.piece(Piece::Bytes(format!("--{boundary}--\r\n").into()))
        }
    })
}
