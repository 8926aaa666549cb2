//! The taker: channels, users and announcer together; who may do what (credentials,
//! rights), storing one product, the outcome of each attempt and its log line.
//!
//! The channel interface over HTTP is built on it: `routes` (which path does what),
//! `upload` (POST/PUT, streamed to disk, multipart part by part; DELETE), `read`
//! (GET of channels and products), `reply` (the answers).

use crate::channels::announcer::Announcer;
use crate::channels::credentials::{
    basic_auth, Credentials, VerifiedCache, VERIFIED_CAPACITY, VERIFIED_TTL,
};
use crate::channels::feeds;
use crate::channels::Reason;
use crate::channels::{ChannelDef, Channels, Kind, Product, Refusal, ANONYMOUS};
use crate::core::mediatype::MediaType;
use crate::core::time::rfc3339;
use crate::http::Request;
use serde_json::{json, Value};
use std::io::Read;

/// Most parts in one multipart upload.
pub const MAX_PARTS: usize = 1000;

pub struct Taker {
    pub channels: Channels,
    pub(super) credentials: Option<Credentials>,
    pub(super) verified: VerifiedCache,
    pub(super) announcer: Option<Announcer>,
    /// Per channel id (of a defined channel; "" for the others): products taken and
    /// uploads refused, for the metrics.
    tally: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

impl std::fmt::Debug for Taker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.channels.defs.iter().map(|d| d.id.as_str()).collect();
        write!(f, "Taker {{ channels: {ids:?} }}")
    }
}

/// One product's outcome, for the answer and the log.
pub(super) struct Outcome {
    pub(super) cid: String,
    pub(super) status: u16,
    pub(super) oid: Option<String>,
    pub(super) location: Option<String>,
    pub(super) size: u64,
    pub(super) error: Option<String>,
}

impl Outcome {
    pub(super) fn refused(cid: &str, size: u64, r: Refusal) -> Outcome {
        Outcome {
            cid: cid.to_string(),
            status: r.status(),
            oid: None,
            location: None,
            size,
            error: Some(r.why),
        }
    }

    pub(super) fn json(&self, part: Option<usize>) -> Value {
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
            tally: Default::default(),
        }
    }

    /// Logs an upload's outcome and counts it.
    pub(super) fn log_outcome(&self, peer: &str, user: Option<&str>, o: &Outcome) {
        let key = if self.channels.find(&o.cid).is_some() {
            o.cid.as_str()
        } else {
            "" // a name from the client: not a label of its own
        };
        {
            let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            let e = t.entry(key.to_string()).or_default();
            if o.status < 300 {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
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

    /// Products taken and uploads refused per channel id ("" for unknown channels).
    pub fn tally(&self) -> Vec<(String, u64, u64)> {
        let t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().map(|(k, (a, r))| (k.clone(), *a, *r)).collect()
    }

    /// Announces again every product this node published that it still holds (see
    /// `Channels::own_products`) and whose announcement its broker did not take,
    /// waiting for room in the announcer's queue: run it on a thread of its own.
    /// Returns how many.
    pub fn announce_own(&self) -> usize {
        let Some(a) = &self.announcer else { return 0 };
        let own: Vec<_> = self
            .channels
            .own_products()
            .into_iter()
            .filter(|p| self.meshed(&p.rel) && !a.was_announced(p))
            .collect();
        for p in &own {
            a.product_with(self.channels.root(), p, true);
        }
        own.len()
    }

    /// Whether the product at `rel` (`metcast/CID/OID`) goes to the mesh: not when its
    /// channel's readers are restricted (every peer would serve it to anyone).
    pub(super) fn meshed(&self, rel: &str) -> bool {
        crate::store::sidecar::split_product_rel(rel)
            .and_then(|(cid, _)| self.channels.find(cid))
            .is_some_and(|(_, d)| !d.readers_restricted())
    }

    /// The user of a request: `None` without credentials, a refusal for wrong ones.
    pub(super) fn authenticate(&self, req: &Request) -> Result<Option<String>, Refusal> {
        let Some(h) = &req.authorization else {
            return Ok(None);
        };
        match (basic_auth(h), &self.credentials) {
            (Some((u, p)), Some(c)) if self.verified.verify(c, &u, &p) => Ok(Some(u)),
            (Some((u, _)), _) => Err(Refusal::new(
                Reason::Unauthenticated,
                format!("authentication failed for {u:?}"),
            )),
            (None, _) => Err(Refusal::new(
                Reason::Unauthenticated,
                "authentication failed: not HTTP Basic",
            )),
        }
    }

    /// Whether `user` may put `mt` into its channel; the channel's index.
    pub(super) fn check(
        &self,
        mt: &MediaType,
        user: Option<&str>,
        length: Option<u64>,
    ) -> Result<usize, Refusal> {
        let cid = mt.param("cid").ok_or_else(|| {
            Refusal::new(Reason::BadRequest, "Content-Type has no cid= parameter")
        })?;
        let (i, def) = self
            .channels
            .find(cid)
            .ok_or_else(|| Refusal::new(Reason::NotFound, format!("no channel {cid:?}")))?;
        if !def.may_write(user) {
            return Err(denied(user, "write", cid, " (use /rest/taker)"));
        }
        let max = self.channels.max_product;
        if let Some(n) = length.filter(|n| *n > max) {
            return Err(Refusal::new(
                Reason::TooLarge,
                format!("{n} bytes: over the limit of {max}"),
            ));
        }
        if let Kind::Feed { dir, min_free, .. } = &def.kind {
            feeds::check_free(dir, *min_free, length.unwrap_or(0))?;
        }
        Ok(i)
    }

    /// Stores one product that passed `check`.
    pub(super) fn store(
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
                if let Some(a) = self.announcer.as_ref().filter(|_| self.meshed(&p.rel)) {
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

pub(super) fn attributes(content_type: &str) -> Value {
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

pub(super) fn product_json(p: &Product) -> Value {
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
/// Whether `user` sees channel `d`: a stored channel it may read; a feed it may write,
/// which looks like an empty channel to its publishers (the reference: a user never
/// notices the difference) and is invisible to everyone else.
pub(super) fn shown(d: &ChannelDef, user: Option<&str>) -> bool {
    if d.is_feed() {
        d.may_write(user)
    } else {
        d.may_read(user)
    }
}

/// The channel `cid` if `user` may see it (`shown`).
pub(super) fn readable<'a>(
    t: &'a Taker,
    cid: &str,
    user: Option<&str>,
) -> Result<&'a ChannelDef, Refusal> {
    let def = t
        .channels
        .find(cid)
        .map(|(_, d)| d)
        .filter(|d| !d.is_feed() || d.may_write(user))
        .ok_or_else(|| Refusal::new(Reason::NotFound, format!("no channel {cid:?}")))?;
    if shown(def, user) {
        return Ok(def);
    }
    Err(denied(user, "read", cid, ""))
}

/// A refused `action` on channel `cid`: 401 without credentials (they could help), 403
/// with them (they do not).
pub(super) fn denied(user: Option<&str>, action: &str, cid: &str, hint: &str) -> Refusal {
    match user {
        None => Refusal::new(
            Reason::Unauthenticated,
            format!("channel {cid} needs credentials{hint}"),
        ),
        Some(u) => Refusal::new(
            Reason::Forbidden,
            format!("user {u} may not {action} channel {cid}"),
        ),
    }
}
