//! The one builder of this node's announcements, in every dialect: a file held here
//! (the flow's re-announcement, a channel product, `post`), a file operation, and a
//! dispatcher's forward. The caller reads the file; this writes the message.

use crate::core::integrity::Method;
use crate::core::message::{write_v03, Format, Message, Outgoing};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// How inline content is encoded in this node's announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Text,
    Binary,
    Guess,
}

impl Encoding {
    pub fn parse(v: &str) -> Option<Encoding> {
        match v {
            "text" => Some(Encoding::Text),
            "binary" => Some(Encoding::Binary),
            "guess" => Some(Encoding::Guess),
            _ => None,
        }
    }
}

/// Inline content as (encoding, value): utf-8 when the bytes are UTF-8 (unless `Binary`),
/// else base64.
pub fn encode(data: &[u8], enc: Encoding) -> (&'static str, String) {
    match (enc, std::str::from_utf8(data)) {
        (Encoding::Text | Encoding::Guess, Ok(s)) => ("utf-8", s.to_string()),
        _ => ("base64", B64.encode(data)),
    }
}

/// How this node speaks: its dialect, its baseUrl, its inline encoding.
#[derive(Debug, Clone, Copy)]
pub struct Voice<'a> {
    pub format: Format,
    pub base_url: &'a str,
    pub encoding: Encoding,
}

/// A file this node holds.
pub struct Held<'a> {
    pub rel: &'a str,
    pub pub_time: &'a str,
    pub method: Method,
    /// The integrity value, base64.
    pub value: &'a str,
    pub size: u64,
    /// The bytes, when small enough to go inline.
    pub inline: Option<&'a [u8]>,
}

impl Voice<'_> {
    /// Announces a file held here, with this node's baseUrl; the unknown fields of
    /// `fields` (the upstream message, or one of the node's own making) go along.
    pub fn file(&self, out: &mut Vec<u8>, h: &Held<'_>, fields: Option<&Message<'_>>) {
        let content = h.inline.map(|d| encode(d, self.encoding));
        let o = Outgoing {
            format: self.format,
            base_url: self.base_url,
            rel_path: h.rel,
            integrity: Some((h.method, h.value)),
            size: Some(h.size),
            content: content.as_ref().map(|(e, v)| (*e, v.as_str())),
            file_op: None,
        };
        write_v03(out, h.pub_time, fields, &o);
    }

    /// Announces a file operation (`FILEOP_REMOVE`...) on `rel`.
    pub fn file_op(
        &self,
        out: &mut Vec<u8>,
        rel: &str,
        pub_time: &str,
        op: &str,
        fields: Option<&Message<'_>>,
    ) {
        let o = Outgoing::file_op(self.format, self.base_url, rel, op);
        write_v03(out, pub_time, fields, &o);
    }
}

/// A dispatcher's forward: the upstream baseUrl and content kept, written in `format`.
pub fn forward(out: &mut Vec<u8>, format: Format, msg: &Message<'_>, rel: &str, value: &str) {
    let o = Outgoing {
        format,
        base_url: &msg.base_url,
        rel_path: rel,
        integrity: msg.integrity.as_ref().map(|i| (i.method, value)),
        size: msg.size,
        content: msg
            .content
            .as_ref()
            .map(|c| (c.encoding.as_ref(), c.value.as_ref())),
        file_op: None,
    };
    write_v03(out, &msg.pub_time, Some(msg), &o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::{parse, FILEOP_REMOVE};

    static UPSTREAM: &[u8] = br#"{"pubTime":"20261123T065146.406","baseUrl":"http://up:8000",
        "relPath":"a/b.txt","integrity":{"method":"md5","value":"XUFAKrxLKna5cZ2REBfFkg=="},
        "source":"up","content":{"encoding":"utf-8","value":"hello"}}"#;

    fn text(out: &[u8]) -> serde_json::Value {
        serde_json::from_slice(out).expect("valid JSON")
    }

    #[test]
    fn a_held_file_carries_our_base_url_and_the_upstream_fields() {
        let m = parse(UPSTREAM).unwrap();
        let v = Voice {
            format: Format::Sr3,
            base_url: "http://me:8000",
            encoding: Encoding::Guess,
        };
        let mut out = Vec::new();
        let held = Held {
            rel: "a/b.txt",
            pub_time: &m.pub_time,
            method: Method::Md5,
            value: "XUFAKrxLKna5cZ2REBfFkg==",
            size: 5,
            inline: Some(b"hello"),
        };
        v.file(&mut out, &held, Some(&m));
        let j = text(&out);
        assert_eq!(j["baseUrl"], "http://me:8000");
        assert_eq!(j["identity"]["method"], "md5");
        assert_eq!(j["content"]["encoding"], "utf-8");
        assert_eq!(j["source"], "up");
        assert_eq!(j["pubTime"], "20261123T065146.406");
        out.clear();
        let binary = Held {
            inline: Some(&[0xff, 0]),
            ..held
        };
        v.file(&mut out, &binary, None);
        assert_eq!(text(&out)["content"]["encoding"], "base64");
    }

    #[test]
    fn removals_and_forwards() {
        let m = parse(UPSTREAM).unwrap();
        let v = Voice {
            format: Format::WmoMesh,
            base_url: "http://me:8000",
            encoding: Encoding::Text,
        };
        let mut out = Vec::new();
        v.file_op(&mut out, "a/b.txt", "20261123T000000", FILEOP_REMOVE, None);
        let j = text(&out);
        assert_eq!(j["fileOp"], serde_json::json!({"remove": ""}));
        assert_eq!(j["integrity"]["method"], "remove");
        out.clear();
        forward(
            &mut out,
            Format::WmoMesh,
            &m,
            "a/b.txt",
            "XUFAKrxLKna5cZ2REBfFkg==",
        );
        let j = text(&out);
        assert_eq!(j["baseUrl"], "http://up:8000");
        assert_eq!(j["content"]["value"], "hello");
        assert_eq!(encode(b"caf\xc3\xa9", Encoding::Binary).0, "base64");
    }
}
