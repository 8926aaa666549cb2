//! Metcast channels: named, bounded collections of annotated products.
//!
//! A stored channel's products live in the data tree as `metcast/<cid>/<oid>` (the body,
//! byte for byte) with a hidden sidecar `.<oid>.meta` (JSON: the Content-Type with cid,
//! oid and the publisher's attributes, the publisher, pubTime). Being plain files in the
//! tree, products are served, announced and replicated by the mesh like any other file;
//! the sidecar travels as message fields (`contentType`, `source`) and each node writes
//! its own. A feed channel deposits products into a directory of its own, never in the
//! tree, never listed.
//!
//! Atomicity without a database: every product has its own OID, so a new product never
//! overwrites an old one. The body is written to a temporary name and renamed; the
//! sidecar goes first, so a visible body always has its attributes. Readers take at most
//! `capacity` newest products, so a reader of a capacity-1 channel sees exactly one
//! product even in the instant between a new product's rename and the old one's unlink,
//! and an open file keeps its content after an unlink: a read is always one whole
//! product.

use super::defs::ANONYMOUS;
use super::defs::{ChannelDef, Kind, Reason, Refusal};
use crate::core::integrity::{Digest, Method};
use crate::core::mediatype::MediaType;
use crate::store::sidecar::{
    fallback_meta, product_media_type, product_rel, read_meta, remove_meta, valid_id, write_meta,
    Meta, TREE,
};
use crate::store::{Store, TEMP_PREFIX};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub oid: String,
    pub meta: Meta,
    pub size: u64,
    /// Epoch seconds of pubTime (the body's mtime when the sidecar is missing).
    pub time: f64,
}

impl Product {
    /// From its sidecar (a default when it has none) and its body's metadata; the time
    /// is pubTime, else the body's mtime.
    fn new(cid: &str, oid: &str, meta: Option<Meta>, md: &fs::Metadata) -> Product {
        let meta = meta.unwrap_or_else(|| fallback_meta(cid, oid));
        let time = crate::core::time::parse_time(&meta.pub_time).unwrap_or_else(|| {
            md.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64())
        });
        Product {
            oid: oid.to_string(),
            meta,
            size: md.len(),
            time,
        }
    }
}

/// What a stored publication did, for the announcer.
#[derive(Debug)]
pub struct Published {
    pub oid: String,
    pub rel: String,
    pub meta: Meta,
    pub method: Method,
    pub digest: Digest,
    pub size: u64,
    /// relPaths of products evicted to make room.
    pub evicted: Vec<String>,
}

/// Copies at most `limit` bytes; more is a 413.
pub fn copy_limited(
    from: &mut dyn Read,
    to: &mut dyn Write,
    limit: u64,
    buf: &mut [u8],
) -> Result<u64, Refusal> {
    let mut n = 0u64;
    loop {
        let got = match from.read(buf) {
            Ok(0) => return Ok(n),
            Ok(g) => g,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Refusal::new(
                    Reason::TooSlow,
                    format!("upload too slow: {e}"),
                ))
            }
            Err(e) => {
                return Err(Refusal::new(
                    Reason::BadRequest,
                    format!("upload interrupted: {e}"),
                ))
            }
        };
        n += got as u64;
        if n > limit {
            return Err(Refusal::new(
                Reason::TooLarge,
                format!("product larger than the limit of {limit} bytes"),
            ));
        }
        to.write_all(&buf[..got])?;
    }
}

/// The channels of a node, and their products on disk.
pub struct Channels {
    pub defs: Vec<ChannelDef>,
    root: PathBuf,
    node_id: String,
    /// Microseconds of the last OID made: OIDs only grow, even if the clock steps back.
    last_oid: Mutex<u64>,
    /// A store each, kept (its checked directories with it); locked for the short
    /// steps only (temporary file, commit and eviction), never while a body arrives.
    stores: Vec<Mutex<Store>>,
    pub max_product: u64,
}

/// Where a feed's partial uploads wait by default: beside its directory, not in it
/// (`.<name>.incoming`), so a decoder watching the directory never sees them; in it
/// (`.incoming`) when the directory is a mount point of its own (the final link must
/// stay on one filesystem).
fn default_incoming(dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let inside = dir.join(".incoming");
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return inside;
    };
    let beside = parent.join(format!(".{}.incoming", name.to_string_lossy()));
    let _ = fs::create_dir_all(dir);
    let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
    if dev(parent).is_some() && dev(parent) == dev(dir) {
        beside
    } else {
        inside
    }
}

/// Readings of a channel's directory before a listing is given as it is, when products
/// keep vanishing under it (each vanishing means a newer product arrived).
pub const LIST_ATTEMPTS: usize = 8;

/// The time an OID was made (its microseconds since the epoch), so a product's pubTime
/// sorts as its OID does.
fn oid_time(oid: &str) -> Option<f64> {
    let (us, _) = oid.split_once('-')?;
    us.parse::<u64>().ok().map(|us| us as f64 / 1e6)
}

impl Channels {
    /// Prepares every channel's directory, removes what a crash left half-written and
    /// recovers the last OID made here.
    pub fn open(
        mut defs: Vec<ChannelDef>,
        data_dir: &Path,
        node_id: &str,
        xattr_name: &'static str,
        max_product: u64,
    ) -> Result<Channels, String> {
        let root = data_dir
            .canonicalize()
            .map_err(|e| format!("data directory {}: {e}", data_dir.display()))?;
        let mut last = 0u64;
        let suffix = format!("-{node_id}");
        for d in &mut defs {
            let (dir, temp_dir) = match &mut d.kind {
                Kind::Stored => {
                    let dir = root.join(TREE).join(&d.id);
                    (dir.clone(), dir)
                }
                Kind::Feed { dir, incoming, .. } => {
                    let inc = incoming
                        .get_or_insert_with(|| default_incoming(dir))
                        .clone();
                    (dir.clone(), inc)
                }
            };
            for p in [&dir, &temp_dir] {
                fs::create_dir_all(p)
                    .map_err(|e| format!("channel {}: {}: {e}", d.id, p.display()))?;
            }
            if let Kind::Feed { .. } = d.kind {
                use std::os::unix::fs::MetadataExt;
                let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
                if dev(&dir) != dev(&temp_dir) {
                    return Err(format!(
                        "channel {}: incoming {} is not on the filesystem of feed-dir {}: the final rename would not be atomic",
                        d.id,
                        temp_dir.display(),
                        dir.display()
                    ));
                }
            }
            let entries = fs::read_dir(&temp_dir)
                .map_err(|e| format!("channel {}: {}: {e}", d.id, temp_dir.display()))?;
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp") {
                    log::info!(
                        "channel {}: removing {name}, left by an interrupted upload",
                        d.id
                    );
                    let _ = fs::remove_file(e.path());
                } else if let Some(t) = name.strip_suffix(suffix.as_str()) {
                    last = last.max(t.parse().unwrap_or(0));
                }
            }
        }
        let stores = defs
            .iter()
            .map(|_| Store::open(&root, xattr_name).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("data directory {}: {e}", root.display()))?;
        Ok(Channels {
            defs,
            root,
            node_id: node_id.to_string(),
            last_oid: Mutex::new(last),
            stores,
            max_product,
        })
    }

    pub fn find(&self, cid: &str) -> Option<(usize, &ChannelDef)> {
        self.defs.iter().enumerate().find(|(_, d)| d.id == cid)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, cid: &str) -> PathBuf {
        self.root.join(TREE).join(cid)
    }

    /// A new OID: microseconds since the epoch (fixed width, so names sort by time) and
    /// this node's id (unique across the mesh).
    pub fn next_oid(&self, now: f64) -> String {
        let mut last = self.last_oid.lock().unwrap_or_else(|p| p.into_inner());
        let t = ((now * 1e6) as u64).max(*last + 1);
        *last = t;
        format!("{t:016}-{}", self.node_id)
    }

    /// Stores one product into stored channel number `i`, evicting the oldest beyond its
    /// capacity.
    pub fn publish(
        &self,
        i: usize,
        user: Option<&str>,
        mt: MediaType,
        body: &mut dyn Read,
        now: f64,
        buf: &mut [u8],
    ) -> Result<Published, Refusal> {
        let def = &self.defs[i];
        let method = Method::Sha512;
        let lock = || self.stores[i].lock().unwrap_or_else(|p| p.into_inner());
        // the body streams in under no name yet (only its directory counts here)
        let mut tmp = lock().begin(&product_rel(&def.id, "incoming"), method, u64::MAX)?;
        let size = copy_limited(body, &mut tmp, self.max_product, buf)?;
        let dir = self.dir(&def.id);
        let mut store = lock();
        // the OID (and pubTime) at commit, under the channel's lock: the product
        // accepted last is the newest, so the one kept, whatever upload began first
        let oid = self.next_oid(now);
        let rel = product_rel(&def.id, &oid);
        let mut pub_time = String::new();
        crate::core::time::format_time(&mut pub_time, oid_time(&oid).unwrap_or(now));
        // what other nodes will read from the announcement: refused here if they would
        let content_type = product_media_type(mt, &def.id, &oid)
            .map_err(|e| Refusal::new(Reason::BadRequest, e.to_string()))?;
        let meta = Meta {
            content_type,
            source: user.unwrap_or(ANONYMOUS).to_string(),
            pub_time,
        };
        write_meta(&dir, &oid, &meta)?;
        let (method, digest) = store.commit(tmp, &rel, None).map_err(|e| {
            remove_meta(&dir.join(&oid));
            Refusal::new(Reason::Storage, format!("storage: {e}"))
        })?;
        let mut names = self.names(&dir)?;
        let mut evicted = Vec::new();
        while names.len() > def.capacity {
            let old = names.remove(0);
            let body = dir.join(&old);
            match fs::remove_file(&body) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    log::error!("channel {}: cannot evict {old}: {e}", def.id);
                    continue;
                }
            }
            remove_meta(&body);
            evicted.push(product_rel(&def.id, &old));
        }
        Ok(Published {
            oid,
            rel,
            meta,
            method,
            digest,
            size,
            evicted,
        })
    }

    /// The product names (OIDs) of a channel directory, oldest first.
    fn names(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                if valid_id(n) && e.file_type().is_ok_and(|t| t.is_file()) {
                    names.push(n.to_string());
                }
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// The products of a stored channel, oldest first: the newest `capacity` of them.
    pub fn list(&self, def: &ChannelDef) -> io::Result<Vec<Product>> {
        if def.is_feed() {
            return Ok(Vec::new()); // deposited for a decoder, never kept here
        }
        let dir = self.dir(&def.id);
        // a product evicted between the directory's reading and its own means a newer
        // one is in place already (eviction comes after it): read again, so a reader
        // sees the old or the new, never neither
        let mut out = Vec::new();
        for _ in 0..LIST_ATTEMPTS {
            let mut names = self.names(&dir)?;
            let skip = names.len().saturating_sub(def.capacity);
            names.drain(..skip);
            out.clear();
            let mut vanished = false;
            for oid in names {
                let Ok(md) = fs::metadata(dir.join(&oid)) else {
                    vanished = true;
                    continue;
                };
                let meta = read_meta(&dir, &oid);
                out.push(Product::new(&def.id, &oid, meta, &md));
            }
            if !vanished {
                break;
            }
        }
        Ok(out)
    }

    /// The products this node published that are still in its stored channels, with
    /// their checksums (from the xattr cache, else computed): announced again at start,
    /// since an announcement waiting for the broker does not survive a crash. Peers
    /// that have them already take them as duplicates and stop there.
    pub fn own_products(&self) -> Vec<Published> {
        let suffix = format!("-{}", self.node_id);
        let mut out = Vec::new();
        for (i, def) in self.defs.iter().enumerate().filter(|(_, d)| !d.is_feed()) {
            let products = match self.list(def) {
                Ok(p) => p,
                Err(e) => {
                    log::error!("channel {}: cannot list: {e}", def.id);
                    continue;
                }
            };
            for p in products.into_iter().filter(|p| p.oid.ends_with(&suffix)) {
                let rel = product_rel(&def.id, &p.oid);
                let mut store = self.stores[i].lock().unwrap_or_else(|e| e.into_inner());
                match store.local_digest(&rel, Method::Sha512) {
                    Ok(Some(digest)) => out.push(Published {
                        oid: p.oid,
                        rel,
                        meta: p.meta,
                        method: Method::Sha512,
                        digest,
                        size: p.size,
                        evicted: Vec::new(),
                    }),
                    Ok(None) => {} // evicted meanwhile
                    Err(e) => log::error!("{rel}: cannot read: {e}"),
                }
            }
        }
        out
    }

    /// One product, opened: the file keeps its content even if evicted while being read.
    pub fn open_product(&self, def: &ChannelDef, oid: &str) -> Option<(Product, File)> {
        if !valid_id(oid) || def.is_feed() {
            return None;
        }
        let dir = self.dir(&def.id);
        // the sidecar first: eviction removes the body first, so a body opened after
        // its sidecar was read is the product the sidecar describes
        let meta = read_meta(&dir, oid);
        let file = File::open(dir.join(oid)).ok()?;
        let md = file.metadata().ok().filter(|m| m.is_file())?;
        Some((Product::new(&def.id, oid, meta, &md), file))
    }

    /// Removes one product; `Ok(false)` when there was none.
    pub fn delete(&self, i: usize, oid: &str) -> io::Result<bool> {
        let def = &self.defs[i];
        if !valid_id(oid) {
            return Ok(false);
        }
        let body = self.dir(&def.id).join(oid);
        let _one_at_a_time = self.stores[i].lock().unwrap_or_else(|p| p.into_inner());
        match fs::remove_file(&body) {
            Ok(()) => {
                remove_meta(&body);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
