//! Writing v03 in either dialect: pubTime kept, baseUrl rewritten, integrity as computed,
//! unknown fields forwarded byte for byte.

use super::members::v03_forwards;
use super::{Format, Message};
use crate::core::integrity::Method;
use std::io::Write;

/// What this node says in its own announcement, beside what it forwards.
pub struct Outgoing<'a> {
    pub format: Format,
    pub base_url: &'a str,
    pub rel_path: &'a str,
    /// The integrity to write (computed by this node); `None` for a removal.
    pub integrity: Option<(Method, &'a str)>,
    pub size: Option<u64>,
    /// Inline content: (encoding, value).
    pub content: Option<(&'a str, &'a str)>,
    /// Where the file is downloaded from, when not relPath (retPath).
    pub ret_path: Option<&'a str>,
    /// A file operation to announce, as raw JSON (`FILEOP_REMOVE`...).
    pub file_op: Option<&'a str>,
}

impl<'a> Outgoing<'a> {
    /// An announcement of a file operation (`FILEOP_REMOVE`...) on `rel_path`.
    pub fn file_op(format: Format, base_url: &'a str, rel_path: &'a str, op: &'a str) -> Self {
        Outgoing {
            format,
            base_url,
            rel_path,
            integrity: None,
            size: None,
            content: None,
            ret_path: None,
            file_op: Some(op),
        }
    }
}

pub const FILEOP_REMOVE: &str = r#"{"remove":""}"#;
pub const FILEOP_MKDIR: &str = r#"{"directory":""}"#;
pub const FILEOP_RMDIR: &str = r#"{"remove":"","directory":""}"#;

fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Writes the node's re-announcement of `msg` (or a fresh one when `msg` is `None`) as
/// v03 in the chosen dialect: pubTime kept, baseUrl rewritten, integrity as computed,
/// unknown fields forwarded untouched.
pub fn write_v03(out: &mut Vec<u8>, pub_time: &str, msg: Option<&Message<'_>>, o: &Outgoing<'_>) {
    out.extend_from_slice(b"{\"pubTime\":");
    json_str(out, pub_time);
    out.extend_from_slice(b",\"baseUrl\":");
    json_str(out, o.base_url);
    out.extend_from_slice(b",\"relPath\":");
    json_str(out, o.rel_path);
    if let Some(r) = o.ret_path {
        out.extend_from_slice(b",\"retPath\":");
        json_str(out, r);
    }
    let key: &[u8] = match o.format {
        Format::WmoMesh => b",\"integrity\":{\"method\":",
        // a WNM is written by write_wnm: never here
        Format::Sr3 | Format::Wis2 => b",\"identity\":{\"method\":",
    };
    if let Some((method, value)) = o.integrity {
        out.extend_from_slice(key);
        json_str(out, method.name());
        out.extend_from_slice(b",\"value\":");
        json_str(out, value);
        out.push(b'}');
    } else if o.file_op == Some(FILEOP_REMOVE) && o.format == Format::WmoMesh {
        // the demo's schema names removal as an integrity method
        out.extend_from_slice(key);
        out.extend_from_slice(b"\"remove\",\"value\":\"\"}");
    }
    if let Some(n) = o.size {
        let _ = write!(out, ",\"size\":{n}");
    }
    if let Some((enc, value)) = o.content {
        out.extend_from_slice(b",\"content\":{\"encoding\":");
        json_str(out, enc);
        out.extend_from_slice(b",\"value\":");
        json_str(out, value);
        out.push(b'}');
    }
    if let Some(op) = o.file_op {
        out.extend_from_slice(b",\"fileOp\":");
        out.extend_from_slice(op.as_bytes());
    }
    if let Some(m) = msg {
        for (k, v) in m.extra.iter().filter(|(k, _)| v03_forwards(m.dialect, k)) {
            out.push(b',');
            json_str(out, k);
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        // what only a WNM has goes along as v03 fields, so that it can be written
        // back into a WNM downstream
        if let Some(w) = &m.wis2 {
            out.extend_from_slice(b",\"data_id\":");
            json_str(out, &w.data_id);
            if let Some(id) = &w.metadata_id {
                out.extend_from_slice(b",\"metadata_id\":");
                json_str(out, id);
            }
            for (k, v) in &w.times {
                out.push(b',');
                json_str(out, k);
                out.push(b':');
                out.extend_from_slice(v.get().as_bytes());
            }
            if w.geometry.get().trim() != "null" {
                out.extend_from_slice(b",\"geometry\":");
                out.extend_from_slice(w.geometry.get().as_bytes());
            }
            if let Some(t) = &w.link_type {
                out.extend_from_slice(b",\"contentType\":");
                json_str(out, t);
            }
        }
    }
    out.push(b'}');
}
