//! Reading and writing announcements in the four dialects of formats.md: the demo's
//! v03 (`integrity`), sr3's v03 (`identity`), the older array form and WIS2's
//! notification message (WNM).
//!
//! Parsing borrows from the payload: fields the node does not know are kept as raw
//! JSON slices and written back byte for byte (the v03 rule: forward unknown fields
//! unmodified).

mod json;
pub mod members;
mod parse;
mod wnm;
mod write;

pub use parse::parse;
pub use wnm::{rel_path_of, write_wnm, Relation, Wis2, WnmOut, CONFORMS_TO, CONTENT_MAX, WNM_MAX};
pub use write::{write_v03, Outgoing, FILEOP_MKDIR, FILEOP_REMOVE, FILEOP_RMDIR};

use crate::core::integrity::{Digest, Method};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Most top-level fields (or array-form headers) accepted in one message.
pub const MAX_FIELDS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// v03 with `integrity` (the wmo_mesh demo).
    WmoMesh,
    /// v03 with `identity` (Sarracenia sr3).
    Sr3,
    /// `[pubTime, baseUrl, relPath, {headers}]`.
    Array,
    /// A WIS2 notification message (GeoJSON).
    Wis2,
}

/// Which dialect the node writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    WmoMesh,
    Sr3,
    /// WIS2 notification messages.
    Wis2,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "wmo_mesh" | "wmo-mesh" | "v03" => Some(Format::WmoMesh),
            "sr3" => Some(Format::Sr3),
            "wis2" | "wnm" => Some(Format::Wis2),
            _ => None,
        }
    }
    /// The xattr where the dialect's tools cache a file's checksum.
    pub fn xattr_name(self) -> &'static str {
        match self {
            Format::WmoMesh => "user.sr_integrity",
            Format::Sr3 | Format::Wis2 => "user.sr_identity",
        }
    }
    pub fn default_topic_prefix(self) -> &'static str {
        match self {
            Format::WmoMesh => "v03/post",
            Format::Sr3 => "v03",
            Format::Wis2 => "a/wis2",
        }
    }
    /// True when announcements in this format may name `method` (WIS2 forbids md5; the
    /// v03 readers know md5 and sha512).
    pub fn announces(self, method: Method) -> bool {
        match self {
            Format::Wis2 => method.is_wis2(),
            Format::WmoMesh | Format::Sr3 => matches!(method, Method::Md5 | Method::Sha512),
        }
    }
    /// The method this format's files are checksummed with when the announced one is
    /// missing or not one it may name.
    pub fn default_method(self) -> Method {
        match self {
            Format::WmoMesh => Method::Md5,
            Format::Sr3 | Format::Wis2 => Method::Sha512,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    pub method: Method,
    /// The digest, for methods that carry one and when it decoded.
    pub digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp<'a> {
    Remove,
    Link(Cow<'a, str>),
    Rename(Cow<'a, str>),
    Mkdir,
    Rmdir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content<'a> {
    pub encoding: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

impl Content<'_> {
    /// The bytes the content stands for.
    pub fn decode(&self) -> Result<Vec<u8>, String> {
        match self.encoding.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" | "text" => Ok(self.value.as_bytes().to_vec()),
            "base64" => B64
                .decode(self.value.as_bytes())
                .map_err(|e| format!("invalid base64 in content: {e}")),
            // WIS2: base64 of a gzip stream
            "gzip" => B64
                .decode(self.value.as_bytes())
                .map_err(|e| format!("invalid base64 in gzip content: {e}"))
                .and_then(|z| gunzip(&z, GUNZIP_MAX)),
            // sr3 allows it: each char is one byte
            "iso-8859-1" | "latin1" => self
                .value
                .chars()
                .map(|c| u8::try_from(u32::from(c)).map_err(|_| "char beyond latin1".into()))
                .collect(),
            other => Err(format!("unknown content encoding {other:?}")),
        }
    }
}

/// Most bytes inline gzip content may inflate to (a WIS2 message is at most 8 KB: more
/// than this is a bomb, not a product).
pub const GUNZIP_MAX: usize = 1 << 20;

/// Inflates a gzip member (RFC 1952), at most `limit` bytes out.
pub fn gunzip(z: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let bad = |why: &str| Err(format!("gzip content: {why}"));
    if z.len() < 18 || z[0] != 0x1f || z[1] != 0x8b || z[2] != 8 {
        return bad("not a gzip stream");
    }
    let flags = z[3];
    let mut at = 10;
    if flags & 4 != 0 {
        let Some(n) = z.get(at..at + 2) else {
            return bad("truncated header");
        };
        at += 2 + usize::from(u16::from_le_bytes([n[0], n[1]]));
    }
    for bit in [8, 16] {
        if flags & bit != 0 {
            let Some(end) = z.get(at..).and_then(|r| r.iter().position(|&b| b == 0)) else {
                return bad("truncated header");
            };
            at += end + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    let Some(body) = z.get(at..z.len() - 8) else {
        return bad("truncated");
    };
    let out = miniz_oxide::inflate::decompress_to_vec_with_limit(body, limit)
        .or_else(|e| bad(&format!("{:?} (or over {limit} bytes)", e.status)))?;
    let t = &z[z.len() - 4..];
    if u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != out.len() as u32 {
        return bad("length in the trailer differs");
    }
    Ok(out)
}

/// One announcement, borrowing from its payload.
#[derive(Debug)]
pub struct Message<'a> {
    pub dialect: Dialect,
    pub pub_time: Cow<'a, str>,
    pub base_url: Cow<'a, str>,
    pub rel_path: Cow<'a, str>,
    pub ret_path: Option<Cow<'a, str>>,
    /// The whole download URL, when the message gives one (a WIS2 link's href): baseUrl
    /// and relPath then only say where the file goes here.
    pub url: Option<Cow<'a, str>>,
    pub integrity: Option<Integrity>,
    pub content: Option<Content<'a>>,
    pub size: Option<u64>,
    pub file_op: Option<FileOp<'a>>,
    /// Fields not interpreted here (of a WNM: properties), in arrival order, as raw JSON.
    pub extra: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// What only a WIS2 message has.
    pub wis2: Option<Box<Wis2<'a>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl<'a> Message<'a> {
    /// A message of this node's own making: nothing to forward but `extra` fields.
    pub fn fresh(extra: Vec<(Cow<'a, str>, &'a RawValue)>) -> Message<'a> {
        Message {
            dialect: Dialect::WmoMesh,
            pub_time: Cow::Borrowed(""),
            base_url: Cow::Borrowed(""),
            rel_path: Cow::Borrowed(""),
            ret_path: None,
            url: None,
            integrity: None,
            content: None,
            size: None,
            file_op: None,
            extra,
            wis2: None,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::integrity;

    const SHA512_EMPTY: &str =
        "z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==";

    static DEMO_V03: &[u8] = br#"{"pubTime": "20190130T033822.951880",
     "baseUrl": "http://blacklab:8000/data",
     "relPath": "2019013003/GTS/AMMC/FT/FTAU31_AMMC_292300_AAC_c267.txt",
     "integrity": {"method": "md5", "value": "sZRqySSS0jR8YjW00mERhA=="},
     "content": {"encoding": "utf-8", "value": "hello\n"}}"#;

    static SR3_V03: &[u8] = br#"{"pubTime": "20261123T065146.406", "baseUrl": "http://peer:8000/",
     "relPath": "20261123/CA/data/file1.txt",
     "identity": {"method": "sha512", "value": "z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="},
     "size": 0, "mtime": "20261123T065146.406", "mode": "644", "source": "meshuser",
     "to_clusters": ["a", {"deep": [1, 2.5e3, null]}]}"#;

    static ARRAY_FORM: &[u8] = br#"["20190130033826.740083", "http://blacklab:8000/data",
     "/2019013003/GTS/CWAO/SX/SXCN19_CWAO_300300_ac8d.txt",
     {"sum": "d,b1946ac92492d2347c6235b4d2611184", "parts": "1,6,1,0,0", "source": "UCAR-UNIDATA"}]"#;

    static README_EXAMPLE: &[u8] = br#"{ "pubTime" : "20190120T045018.314854383", "baseUrl" : "https://localhost/data", "relPath" : "20190120/WIS/CA/CMC/UpperAir/04/UANT01_CWAO_200445___15103.txt", "size": "TBD", "integrity": { "method": "MD5", "value": "d41d8cd98f00b204e9800998ecf8427e" }, "content": { "encoding": "utf-8", "value": "" } }"#;

    #[test]
    fn reads_demo_v03() {
        let m = parse(DEMO_V03).unwrap();
        assert_eq!(m.dialect, Dialect::WmoMesh);
        assert_eq!(m.base_url, "http://blacklab:8000/data");
        assert!(
            matches!(m.rel_path, Cow::Borrowed(_)),
            "no copy for plain strings"
        );
        let i = m.integrity.unwrap();
        assert_eq!(i.method, Method::Md5);
        assert_eq!(i.digest, integrity::digest_of(Method::Md5, b"hello\n"));
        assert_eq!(m.content.unwrap().decode().unwrap(), b"hello\n");
        assert!(m.extra.is_empty());
    }

    #[test]
    fn reads_sr3_and_keeps_unknown_fields_raw() {
        let m = parse(SR3_V03).unwrap();
        assert_eq!(m.dialect, Dialect::Sr3);
        assert_eq!(m.size, Some(0));
        assert_eq!(m.integrity.as_ref().unwrap().method, Method::Sha512);
        let keys: Vec<&str> = m.extra.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["mtime", "mode", "source", "to_clusters"]);
        assert_eq!(m.extra[3].1.get(), r#"["a", {"deep": [1, 2.5e3, null]}]"#);
    }

    #[test]
    fn reads_array_form() {
        let m = parse(ARRAY_FORM).unwrap();
        assert_eq!(m.dialect, Dialect::Array);
        assert_eq!(
            m.rel_path,
            "/2019013003/GTS/CWAO/SX/SXCN19_CWAO_300300_ac8d.txt"
        );
        assert_eq!(m.size, Some(6));
        assert_eq!(
            m.integrity.unwrap().digest,
            integrity::digest_of(Method::Md5, b"hello\n")
        );
        assert_eq!(m.extra.len(), 1);
        let m = parse(br#"["20190130033826", "http://h/", "/a/b", {"sum": "R,"}]"#).unwrap();
        assert_eq!(m.file_op, Some(FileOp::Remove));
    }

    #[test]
    fn reads_the_reference_readme_example() {
        let m = parse(README_EXAMPLE).unwrap();
        assert_eq!(
            m.integrity.unwrap().digest,
            integrity::digest_of(Method::Md5, b"")
        );
        assert_eq!(m.size, None);
        assert_eq!(
            m.extra[0].0, "size",
            "a non-numeric size is forwarded as is"
        );
    }

    #[test]
    fn reads_file_ops() {
        let base =
            r#"{"pubTime":"20261123T000000","baseUrl":"http://h/","relPath":"a/b","fileOp":"#;
        let op =
            |o: &str| parse(format!("{base}{o}}}").as_bytes().to_vec().leak()).map(|m| m.file_op);
        assert_eq!(op(r#"{"remove":""}"#).unwrap(), Some(FileOp::Remove));
        assert_eq!(op(r#"{"directory":""}"#).unwrap(), Some(FileOp::Mkdir));
        assert_eq!(
            op(r#"{"remove":"","directory":""}"#).unwrap(),
            Some(FileOp::Rmdir)
        );
        assert_eq!(
            op(r#"{"link":"x/y"}"#).unwrap(),
            Some(FileOp::Link("x/y".into()))
        );
        assert_eq!(
            op(r#"{"rename":"old"}"#).unwrap(),
            Some(FileOp::Rename("old".into()))
        );
        assert!(op(r#"{"frobnicate":""}"#).is_err());
        assert!(op(r#""remove""#).is_err());
    }

    #[test]
    fn refuses_malformed_messages() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"hello", "neither"),
            (b"{\"pubTime\": ", "invalid JSON"),
            (b"\xff\xfe", "UTF-8"),
            (br#"{"pubTime": 5, "relPath": "a"}"#, "pubTime is not a string"),
            (br#"{"pubTime": "x", "baseUrl": "h", "relPath": "a"}"#, "missing integrity"),
            (br#"{"pubTime": "x", "baseUrl": "h", "integrity": {"method":"md5","value":"sZRqySSS0jR8YjW00mERhA=="}}"#, "missing relPath"),
            (br#"{"pubTime": "x", "baseUrl": "h", "relPath": "a", "integrity": {"method":"md5","value":"!!!"}}"#, "base64"),
            (br#"{"pubTime": "x", "baseUrl": "h", "relPath": "a", "integrity": {"method":"crc32","value":"AA=="}}"#, "unknown"),
            (br#"{"pubTime": "x", "baseUrl": "h", "relPath": "a", "integrity": "md5"}"#, "not an object"),
            // readers differ on which of two methods counts
            (br#"{"pubTime": "x", "baseUrl": "h", "relPath": "a", "integrity": {"method":"md5","value":"sZRqySSS0jR8YjW00mERhA==","method":"sha512"}}"#, "field integrity: duplicate field `method`"),
            (br#"{"pubTime": "x", "baseUrl": "h", "relPath": "a", "identity": {"method":5,"value":"AA=="}}"#, "field identity: invalid type"),
            (br#"{"pubTime": "x", "baseUrl": "h", "relPath": "a", "integrity": {"value":"sZRqySSS0jR8YjW00mERhA=="}}"#, "integrity has no method"),
            (br#"{"pubTime": "x", "relPath": "a", "integrity": {"method":"md5","value":"sZRqySSS0jR8YjW00mERhA=="}}"#, "missing baseUrl"),
            (br#"["20190130033826", "http://h/", "/a/b"]"#, "4 elements"),
            (br#"["20190130033826", "http://h/", "/a/b", {"sum": "x,00"}]"#, "flag"),
            (br#"["20190130033826", 7, "/a/b", {"sum": "d,00"}]"#, "baseUrl is not a string"),
            (br#"{"pubTime": "x", "baseUrl": "h", "relPath": "a", "integrity": {"method":"md5","value":"sZRqySSS0jR8YjW00mERhA=="}}"#, "pubTime \"x\" is not a time"),
            (br#"["2019013003", "http://h/", "/a/b", {"sum": "R,"}]"#, "[0] pubTime"),
            // found by fuzzing: forwarded as v03, it was refused by every v03 reader
            (br#"["20190130033826.740083", "", "/a/b", {"sum": "d,b1946ac92492d2346c6235b4d2611184"}]"#, "[1] baseUrl is empty"),
        ];
        for (payload, want) in cases {
            let e = parse(payload).unwrap_err();
            assert!(
                e.0.contains(want),
                "{:?}: got {:?}",
                String::from_utf8_lossy(payload),
                e.0
            );
        }
    }

    #[test]
    fn reads_integrity_past_members_it_does_not_know() {
        let p = br#"{"pubTime":"20261123T000000","baseUrl":"h","relPath":"a","integrity":{"note":{"x":[1]},"method":"md5","value":"sZRqySSS0jR8YjW00mERhA=="}}"#;
        let m = parse(p).unwrap();
        let i = m.integrity.unwrap();
        assert_eq!(i.method, Method::Md5);
        assert_eq!(i.digest.unwrap().to_base64(), "sZRqySSS0jR8YjW00mERhA==");
    }

    #[test]
    fn survives_deep_nesting_and_many_fields() {
        let mut deep = br#"{"pubTime":"x","baseUrl":"h","relPath":"a","junk":"#.to_vec();
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(parse(&deep).is_err());
        let mut wide = String::from(r#"{"pubTime":"x""#);
        for i in 0..100 {
            wide.push_str(&format!(",\"f{i}\":1"));
        }
        wide.push('}');
        assert!(parse(wide.as_bytes()).unwrap_err().0.contains("more than"));
    }

    #[test]
    fn unescapes_strings_and_surrogate_pairs() {
        let p = br#"{"pubTime":"20261123T000000","baseUrl":"h","relPath":"a","integrity":{"method":"md5","value":"sZRqySSS0jR8YjW00mERhA=="},"content":{"encoding":"utf-8","value":"line\n\"q\" \ud83d\ude00"}}"#;
        let m = parse(p).unwrap();
        assert_eq!(m.content.unwrap().value, "line\n\"q\" \u{1F600}");
    }

    #[test]
    fn writes_back_with_unknown_fields_untouched() {
        let m = parse(SR3_V03).unwrap();
        let mut out = Vec::new();
        let o = Outgoing {
            format: Format::Sr3,
            base_url: "http://me:8000/data",
            rel_path: &m.rel_path,
            integrity: Some((Method::Sha512, SHA512_EMPTY)),
            size: Some(0),
            content: None,
            ret_path: None,
            file_op: None,
        };
        write_v03(&mut out, &m.pub_time, Some(&m), &o);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["pubTime"], "20261123T065146.406");
        assert_eq!(v["baseUrl"], "http://me:8000/data");
        assert_eq!(v["identity"]["value"], SHA512_EMPTY);
        assert_eq!(v["to_clusters"][1]["deep"][1], 2.5e3);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#""to_clusters":["a", {"deep": [1, 2.5e3, null]}]"#),
            "{text}"
        );
        // and it reads back
        let again = parse(text.as_bytes()).unwrap();
        assert_eq!(again.extra.len(), 4);
    }

    #[test]
    fn writes_removals_both_ways() {
        let mut out = Vec::new();
        let o = Outgoing {
            format: Format::WmoMesh,
            base_url: "http://me/",
            rel_path: "a/b",
            integrity: None,
            size: None,
            content: None,
            ret_path: None,
            file_op: Some(FILEOP_REMOVE),
        };
        write_v03(&mut out, "20261123T000000", None, &o);
        let m = parse(&out).unwrap();
        assert_eq!(m.file_op, Some(FileOp::Remove));
        assert_eq!(m.integrity.unwrap().method, Method::Remove);
    }
}
