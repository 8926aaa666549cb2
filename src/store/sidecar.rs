//! Channel products in the data tree: `metcast/<cid>/<oid>` (the body) and a hidden
//! sidecar `.<oid>.meta` beside it (JSON: Content-Type with cid and oid, publisher,
//! pubTime). The taker writes them; a flow that stores a product from the mesh writes
//! the sidecar from the message's fields, before the body.

use super::temp_name;
use crate::core::mediatype::{MediaType, MediaTypeError};
use std::fs;
use std::io;
use std::path::Path;

/// The directory of the data tree that holds stored channels.
pub const TREE: &str = "metcast";
/// Longest channel id (and OID).
pub const MAX_ID_LEN: usize = 64;

/// A channel id or an OID: what may safely be a path component and a URL segment.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A product's description (the sidecar plus what the body's metadata says).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    #[serde(rename = "contentType")]
    pub content_type: String,
    pub source: String,
    #[serde(rename = "pubTime")]
    pub pub_time: String,
}

/// The relPath of a product.
pub fn product_rel(cid: &str, oid: &str) -> String {
    format!("{TREE}/{cid}/{oid}")
}

pub fn meta_name(oid: &str) -> String {
    format!(".{oid}.meta")
}

/// For a relPath `metcast/<cid>/<oid>`: (cid, oid).
pub fn split_product_rel(rel: &str) -> Option<(&str, &str)> {
    let rest = rel.strip_prefix(TREE)?.strip_prefix('/')?;
    let (cid, oid) = rest.split_once('/')?;
    (valid_id(cid) && valid_id(oid)).then_some((cid, oid))
}

/// Writes a sidecar atomically (temporary name, then rename).
pub fn write_meta(dir: &Path, oid: &str, meta: &Meta) -> io::Result<()> {
    let tmp = dir.join(temp_name());
    let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    fs::write(&tmp, json)?;
    fs::rename(&tmp, dir.join(meta_name(oid))).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Removes a product's sidecar (after its body).
pub fn remove_meta(body: &Path) {
    if let (Some(dir), Some(name)) = (body.parent(), body.file_name().and_then(|n| n.to_str())) {
        let _ = fs::remove_file(dir.join(meta_name(name)));
    }
}

pub fn read_meta(dir: &Path, oid: &str) -> Option<Meta> {
    let raw = fs::read(dir.join(meta_name(oid))).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// The Content-Type of a product: the publisher's, with `cid` and `oid` set.
/// Written, as the sidecar keeps it and other nodes read it from the announcement;
/// refused when the cid and oid make it one a reader refuses (too long, too many
/// parameters).
pub fn product_media_type(
    mut mt: MediaType,
    cid: &str,
    oid: &str,
) -> Result<String, MediaTypeError> {
    mt.params.retain(|(k, _)| k != "cid" && k != "oid");
    mt.params.insert(0, ("oid".into(), oid.into()));
    mt.params.insert(0, ("cid".into(), cid.into()));
    mt.written()
        .map_err(|e| MediaTypeError(format!("{} with the cid and oid", e.0)))
}

pub fn fallback_meta(cid: &str, oid: &str) -> Meta {
    Meta {
        content_type: format!("application/octet-stream; cid={cid}; oid={oid}"),
        source: String::new(),
        pub_time: String::new(),
    }
}
