//! Reading the v03 dialects and the array form (a WNM goes to `wnm`): borrowing from
//! the payload, unknown fields kept raw.

use super::json::{err, keep_unread, object, parse_integrity, string, RawObject};
use super::*;
use crate::core::integrity;
use crate::core::time;

/// A pubTime this node can read (and so write again in any dialect): the v03 forms or
/// RFC 3339. One that is not would be forwarded as it came and refused further on.
fn check_pub_time(p: &str, field: &str) -> Result<(), ParseError> {
    match time::parse_time(p) {
        Some(_) => Ok(()),
        None => err(format!(
            "{field} {p:?} is not a time (YYYYMMDDTHHMMSS[.f] or RFC 3339)"
        )),
    }
}

fn parse_size(raw: &RawValue) -> Option<u64> {
    let t = raw.get().trim();
    t.parse::<u64>()
        .ok()
        .or_else(|| t.strip_prefix('"')?.strip_suffix('"')?.parse().ok())
}

fn parse_file_op<'a>(raw: &'a RawValue) -> Result<FileOp<'a>, ParseError> {
    let obj = object("fileOp", raw)?;
    let has = |k: &str| obj.0.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
    match (has("remove"), has("directory"), has("link"), has("rename")) {
        (Some(_), Some(_), _, _) => Ok(FileOp::Rmdir),
        (None, Some(_), _, _) => Ok(FileOp::Mkdir),
        (_, _, Some(l), _) => Ok(FileOp::Link(string("fileOp.link", l)?)),
        (_, _, _, Some(r)) => Ok(FileOp::Rename(string("fileOp.rename", r)?)),
        (Some(_), None, None, None) => Ok(FileOp::Remove),
        _ => err("fileOp has no operation this node knows (remove, link, rename, directory)"),
    }
}

/// Parses one payload in any of the four dialects.
pub fn parse(payload: &[u8]) -> Result<Message<'_>, ParseError> {
    let text =
        std::str::from_utf8(payload).or_else(|e| err(format!("payload is not UTF-8: {e}")))?;
    match text.trim_start().as_bytes().first() {
        Some(b'{') => parse_v03(text),
        Some(b'[') => parse_array(text),
        Some(_) => err("payload is neither a JSON object nor a JSON array"),
        None => err("payload is empty"),
    }
}

fn parse_v03(text: &str) -> Result<Message<'_>, ParseError> {
    let obj: RawObject<'_> =
        serde_json::from_str(text).or_else(|e| err(format!("invalid JSON: {e}")))?;
    if super::wnm::is_wnm(&obj) {
        return super::wnm::parse_wnm(text, obj);
    }
    let (mut pub_time, mut base_url, mut rel_path, mut ret_path) = (None, None, None, None);
    let (mut integrity, mut content, mut size, mut file_op) = (None, None, None, None);
    let mut dialect = Dialect::WmoMesh;
    let mut extra = obj.0;
    keep_unread(&mut extra, |k, v| {
        match k.as_ref() {
            "pubTime" => pub_time = Some(string("pubTime", v)?),
            "baseUrl" => base_url = Some(string("baseUrl", v)?),
            "relPath" => rel_path = Some(string("relPath", v)?),
            "retPath" | "retrievePath" => ret_path = Some(string(k, v)?),
            "integrity" => {
                // sr3 reads both; identity wins when both are present
                if integrity.is_none() || dialect != Dialect::Sr3 {
                    integrity = Some(parse_integrity("integrity", v)?);
                }
            }
            "identity" => {
                integrity = Some(parse_integrity("identity", v)?);
                dialect = Dialect::Sr3;
            }
            "content" => {
                let o = object("content", v)?;
                let mut enc = None;
                let mut val = None;
                for (ck, cv) in &o.0 {
                    match ck.as_ref() {
                        "encoding" => enc = Some(string("content.encoding", cv)?),
                        "value" => val = Some(string("content.value", cv)?),
                        _ => {}
                    }
                }
                match (enc, val) {
                    (Some(encoding), Some(value)) => content = Some(Content { encoding, value }),
                    _ => return err("content needs both encoding and value"),
                }
            }
            "size" => match parse_size(v) {
                Some(n) => size = Some(n),
                None => return Ok(false),
            },
            "fileOp" => file_op = Some(parse_file_op(v)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(pub_time) = pub_time else {
        return err("missing pubTime");
    };
    let Some(rel_path) = rel_path else {
        return err("missing relPath");
    };
    let base_url = base_url.unwrap_or(Cow::Borrowed(""));
    if let Some(i) = &integrity {
        match i.method {
            Method::Remove if file_op.is_none() => file_op = Some(FileOp::Remove),
            _ => {}
        }
    }
    if integrity.is_none() && file_op.is_none() {
        return err("missing integrity (or identity)");
    }
    if base_url.is_empty() && content.is_none() && file_op.is_none() {
        return err("missing baseUrl and no inline content");
    }
    check_pub_time(&pub_time, "pubTime")?;
    Ok(Message {
        dialect,
        pub_time,
        base_url,
        rel_path,
        ret_path,
        url: None,
        integrity,
        content,
        size,
        file_op,
        extra,
        wis2: None,
    })
}

fn parse_array(text: &str) -> Result<Message<'_>, ParseError> {
    let items: Vec<&RawValue> =
        serde_json::from_str(text).or_else(|e| err(format!("invalid JSON: {e}")))?;
    if items.len() < 4 {
        return err(format!("array form needs 4 elements, got {}", items.len()));
    }
    let pub_time = string("[0] pubTime", items[0])?;
    let base_url = string("[1] baseUrl", items[1])?;
    let rel_path = string("[2] relPath", items[2])?;
    let headers = object("[3] headers", items[3])?;
    let mut integrity = None;
    let mut size = None;
    let mut file_op = None;
    let mut extra = Vec::new();
    for (k, v) in headers.0 {
        match k.as_ref() {
            "sum" => {
                let sum = string("sum", v)?;
                let (flag, hex) = sum.split_once(',').unwrap_or((sum.as_ref(), ""));
                let Some(method) = Method::from_sum_flag(flag) else {
                    return err(format!("sum flag {flag:?} is unknown"));
                };
                let digest = match method.digest_len() {
                    Some(_) => Some(
                        integrity::decode_value(method, hex)
                            .map_err(|e| ParseError(format!("sum: {e}")))?,
                    ),
                    None => None,
                };
                match method {
                    Method::Remove => file_op = Some(FileOp::Remove),
                    Method::Link => {
                        return err("sum flag L (link) is not supported: links are refused");
                    }
                    _ => {}
                }
                integrity = Some(Integrity { method, digest });
            }
            "parts" => {
                // "1,<size>,1,0,0": whole file of <size> bytes
                let p = string("parts", v)?;
                let mut f = p.split(',');
                match (f.next(), f.next().and_then(|s| s.parse().ok())) {
                    (Some("1"), Some(n)) => size = Some(n),
                    _ => return err(format!("parts {p:?}: only whole files are supported")),
                }
            }
            "link" if file_op.is_none() => file_op = Some(FileOp::Link(string("link", v)?)),
            _ => extra.push((k, v)),
        }
    }
    let Some(integrity) = integrity else {
        return err("array form without a sum header");
    };
    // as in v03: a file to fetch needs somewhere to fetch it from (the array form has
    // no inline content); found by fuzzing: a forward wrote what v03 readers refuse
    if base_url.is_empty() && file_op.is_none() {
        return err("[1] baseUrl is empty");
    }
    check_pub_time(&pub_time, "[0] pubTime")?;
    Ok(Message {
        dialect: Dialect::Array,
        pub_time,
        base_url,
        rel_path,
        ret_path: None,
        url: None,
        integrity: Some(integrity),
        content: None,
        size,
        file_op,
        extra,
        wis2: None,
    })
}
