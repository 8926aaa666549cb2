//! The one builder of this node's announcements, in every dialect: a file held here
//! (the flow's re-announcement, a channel product, `post`), a file operation, and a
//! dispatcher's forward. The caller reads the file; this writes the message.

use crate::core::integrity::Method;
use crate::core::message::{
    write_v03, write_wnm, Format, Message, Outgoing, Relation, WnmOut, CONTENT_MAX, FILEOP_REMOVE,
};
use crate::core::relpath;
use crate::core::time;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::borrow::Cow;

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
    /// The id of the message written (WIS2: a new UUID each; v03 has none).
    pub id: &'a str,
}

/// A pubTime as `format` writes it: RFC 3339 in WIS2, `YYYYMMDDTHHMMSS.f` in v03. An
/// unreadable one is written as it came (the receiver says so).
fn pub_time_for(format: Format, t: &str) -> Cow<'_, str> {
    let converted = match format {
        Format::Wis2 => time::pub_time_to_rfc3339(t),
        _ if t.as_bytes().get(4) == Some(&b'-') => time::rfc3339_to_pub_time(t),
        _ => None,
    };
    converted.map_or(Cow::Borrowed(t), Cow::Owned)
}

/// The relation a WIS2 announcement keeps: an update stays one; anything else held
/// here is data (canonical).
fn relation_of(fields: Option<&Message<'_>>) -> Relation {
    match fields.and_then(|m| m.wis2.as_ref()).map(|w| w.relation) {
        Some(Relation::Update) => Relation::Update,
        _ => Relation::Canonical,
    }
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
    /// `fields` (the upstream message, or one of the node's own making) go along. Err:
    /// the format cannot say it (a WIS2 message over the standard's size), nothing
    /// written.
    pub fn file(
        &self,
        out: &mut Vec<u8>,
        h: &Held<'_>,
        fields: Option<&Message<'_>>,
    ) -> Result<(), String> {
        let content = h.inline.map(|d| encode(d, self.encoding));
        let pub_time = pub_time_for(self.format, h.pub_time);
        if self.format == Format::Wis2 {
            let mut href = String::with_capacity(128);
            relpath::join_url(&mut href, self.base_url, h.rel);
            let o = WnmOut {
                id: self.id,
                pub_time: &pub_time,
                href: &href,
                relation: relation_of(fields),
                data_id: h.rel,
                integrity: Some((h.method, h.value)),
                size: Some(h.size),
                content: content.as_ref().map(|(e, v)| (*e, v.as_str())),
            };
            return write_wnm(out, fields, &o);
        }
        let o = Outgoing {
            format: self.format,
            base_url: self.base_url,
            rel_path: h.rel,
            integrity: Some((h.method, h.value)),
            size: Some(h.size),
            content: content.as_ref().map(|(e, v)| (*e, v.as_str())),
            ret_path: None,
            file_op: None,
        };
        write_v03(out, &pub_time, fields, &o);
        Ok(())
    }

    /// Announces a file operation (`FILEOP_REMOVE`...) on `rel`. False when the format
    /// cannot say it (WIS2 has deletion only, no directories): nothing written.
    pub fn file_op(
        &self,
        out: &mut Vec<u8>,
        rel: &str,
        pub_time: &str,
        op: &str,
        fields: Option<&Message<'_>>,
    ) -> bool {
        let pub_time = pub_time_for(self.format, pub_time);
        if self.format == Format::Wis2 {
            if op != FILEOP_REMOVE {
                return false;
            }
            let mut href = String::with_capacity(128);
            relpath::join_url(&mut href, self.base_url, rel);
            let o = WnmOut {
                id: self.id,
                pub_time: &pub_time,
                href: &href,
                relation: Relation::Deletion,
                data_id: rel,
                integrity: None,
                size: None,
                content: None,
            };
            return write_wnm(out, fields, &o).is_ok();
        }
        let o = Outgoing::file_op(self.format, self.base_url, rel, op);
        write_v03(out, &pub_time, fields, &o);
        true
    }
}

/// `scheme://host[:port]` and the rest of a URL (path and query), for v03's baseUrl and
/// retPath.
fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, "/"),
    }
}

/// What a dispatcher (which holds no copy) can say of a message's integrity in
/// `format`: the method as it came when the format names it; in v03, `cod` (checksum on
/// download, with the dialect's method) for one it does not (a WIS2 sha256, sr3's
/// `arbitrary`): a v03 message needs an integrity, and the receiver computes it as it
/// downloads (so too when the message had none: a WNM need not). WIS2 has no such
/// form: none.
fn forwarded_integrity<'v>(
    format: Format,
    msg: &Message<'_>,
    value: &'v str,
) -> Option<(Method, &'v str)> {
    let cod = (Method::Unverifiable, format.default_method().name());
    let Some(i) = msg.integrity.as_ref() else {
        // a WNM may come without one (it is optional there); a v03 message may not
        return (format != Format::Wis2).then_some(cod);
    };
    match format {
        _ if format.announces(i.method) => Some((i.method, value)),
        Format::Wis2 => None,
        Format::WmoMesh | Format::Sr3 if i.method == Method::Md5Name => Some((i.method, value)),
        Format::WmoMesh | Format::Sr3 => Some(cod),
    }
}

/// A dispatcher's forward: the upstream download URL and content kept, written in
/// `format` (`id`: the new message's id, for WIS2). Err: what the format cannot say of
/// it (a WNM needs a whole URL or inline content it can carry), in one line.
pub fn forward(
    out: &mut Vec<u8>,
    format: Format,
    msg: &Message<'_>,
    rel: &str,
    value: &str,
    id: &str,
) -> Result<(), String> {
    let pub_time = pub_time_for(format, &msg.pub_time);
    let content = msg
        .content
        .as_ref()
        .map(|c| (c.encoding.as_ref(), c.value.as_ref()));
    let integrity = forwarded_integrity(format, msg, value);
    if format == Format::Wis2 {
        let mut href = String::with_capacity(128);
        match &msg.url {
            Some(u) => href.push_str(u),
            None => relpath::join_url(
                &mut href,
                &msg.base_url,
                msg.ret_path.as_deref().unwrap_or(rel),
            ),
        }
        // what a WNM carries inline: a known size (said, or that of the content), within
        // the standard's limit; WIS2 knows no latin1: such content stays behind, the
        // link serves
        let size = msg.size.or_else(|| {
            let c = msg.content.as_ref()?;
            c.decode().ok().map(|d| d.len() as u64)
        });
        let small =
            |v: &str| v.len() <= CONTENT_MAX && size.is_some_and(|n| n <= CONTENT_MAX as u64);
        let content =
            content.filter(|(e, v)| matches!(*e, "utf-8" | "base64" | "gzip") && small(v));
        if !href.contains("://") && content.is_none() {
            return Err(format!(
                "no WIS2 form: no whole URL (baseUrl {:?}) and no content WIS2 can carry",
                msg.base_url
            ));
        }
        let o = WnmOut {
            id,
            pub_time: &pub_time,
            href: &href,
            relation: relation_of(Some(msg)),
            data_id: rel,
            integrity,
            size,
            content,
        };
        return write_wnm(out, Some(msg), &o);
    }
    // a WIS2 link is a whole URL: v03 says it as baseUrl + retPath
    let (base_url, ret_path) = match &msg.url {
        Some(u) => {
            let (b, r) = split_url(u);
            (b, Some(r))
        }
        None => (msg.base_url.as_ref(), None),
    };
    let o = Outgoing {
        format,
        base_url,
        rel_path: rel,
        integrity,
        size: msg.size,
        content: content.filter(|(e, _)| *e != "gzip"),
        ret_path,
        file_op: None,
    };
    // found by fuzzing: gzip content (WIS2's, which v03 cannot say) and no baseUrl
    // left nothing to fetch the file from
    if o.base_url.is_empty() && o.content.is_none() {
        return Err("no v03 form: no baseUrl, and content in an encoding v03 cannot carry".into());
    }
    write_v03(out, &pub_time, Some(msg), &o);
    Ok(())
}

#[cfg(test)]
mod injection;

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
            id: "",
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
        v.file(&mut out, &held, Some(&m)).unwrap();
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
        v.file(&mut out, &binary, None).unwrap();
        assert_eq!(text(&out)["content"]["encoding"], "base64");
    }

    #[test]
    fn removals_and_forwards() {
        let m = parse(UPSTREAM).unwrap();
        let v = Voice {
            format: Format::WmoMesh,
            base_url: "http://me:8000",
            encoding: Encoding::Text,
            id: "",
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
            "",
        )
        .unwrap();
        let j = text(&out);
        assert_eq!(j["baseUrl"], "http://up:8000");
        assert_eq!(j["content"]["value"], "hello");
        assert_eq!(encode(b"caf\xc3\xa9", Encoding::Binary).0, "base64");
    }

    static WNM_IN: &str = r#"{"id":"6f5a1c9e-0000-4000-8000-000000000001",
        "conformsTo":["http://wis.wmo.int/spec/wnm/1/conf/core"],"type":"Feature",
        "geometry":{"type":"Point","coordinates":[6.14,46.22]},
        "properties":{"pubtime":"2026-11-23T06:51:46.406Z","datetime":"2026-11-23T06:45:00Z",
          "data_id":"ca-eccc-msc/data/core/weather/synop/71628_1200",
          "metadata_id":"urn:wmo:md:ca-eccc-msc:synop","global-cache":"de-dwd-gc",
          "producer":"x","integrity":{"method":"sha256","value":"LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="}},
        "links":[{"href":"https://gc.example/cache/71628_1200.bufr4","rel":"update",
          "type":"application/bufr","length":5,"title":"t"},
          {"href":"https://x/item","rel":"item"}],
        "custom":{"a":[1,2]}}"#;

    fn wis2_voice(id: &str) -> Voice<'_> {
        Voice {
            format: Format::Wis2,
            base_url: "http://me:8000/data",
            encoding: Encoding::Guess,
            id,
        }
    }

    #[test]
    fn a_wis2_message_is_written_back_with_our_link_and_a_new_id() {
        let m = parse(WNM_IN.as_bytes()).unwrap();
        let held = Held {
            rel: &m.rel_path,
            pub_time: &m.pub_time,
            method: Method::Sha256,
            value: "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
            size: 5,
            inline: Some(b"hello"),
        };
        let mut out = Vec::new();
        wis2_voice("6f5a1c9e-0000-4000-8000-000000000002")
            .file(&mut out, &held, Some(&m))
            .unwrap();
        let j = text(&out);
        assert_eq!(j["id"], "6f5a1c9e-0000-4000-8000-000000000002");
        assert_eq!(j["geometry"]["coordinates"][0], 6.14);
        let p = &j["properties"];
        assert_eq!(
            p["pubtime"], "2026-11-23T06:51:46.406Z",
            "pubtime unchanged"
        );
        assert_eq!(
            p["data_id"],
            "ca-eccc-msc/data/core/weather/synop/71628_1200"
        );
        assert_eq!(p["metadata_id"], "urn:wmo:md:ca-eccc-msc:synop");
        assert_eq!(p["datetime"], "2026-11-23T06:45:00Z");
        assert_eq!(p["producer"], "x");
        assert!(p.get("global-cache").is_none(), "never global-cache");
        assert_eq!(p["integrity"]["method"], "sha256");
        assert_eq!(p["content"]["value"], "hello");
        assert_eq!(p["content"]["size"], 5);
        let l = &j["links"];
        assert_eq!(
            l[0]["href"],
            "http://me:8000/data/ca-eccc-msc/data/core/weather/synop/71628_1200.bufr4"
        );
        assert_eq!(l[0]["rel"], "update", "an update stays an update");
        assert_eq!(l[0]["type"], "application/bufr");
        assert_eq!(l[0]["length"], 5);
        assert_eq!(l[0]["title"], "t");
        assert_eq!(l[1]["rel"], "item");
        assert_eq!(j["custom"]["a"][1], 2, "unknown members forwarded");
        // and it reads back
        let again = parse(&out).unwrap();
        assert_eq!(again.rel_path, m.rel_path);
    }

    #[test]
    fn v03_and_wis2_convert_both_ways_keeping_what_wis2_needs() {
        // WNM in, v03 out: the WIS2 fields travel as v03 fields
        let m = parse(WNM_IN.as_bytes()).unwrap();
        let v03 = Voice {
            format: Format::Sr3,
            base_url: "http://me:8000",
            encoding: Encoding::Guess,
            id: "",
        };
        let held = Held {
            rel: &m.rel_path,
            pub_time: &m.pub_time,
            method: Method::Sha512,
            value: "z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
            size: 5,
            inline: None,
        };
        let mut out = Vec::new();
        v03.file(&mut out, &held, Some(&m)).unwrap();
        let j = text(&out);
        assert_eq!(j["pubTime"], "20261123T065146.406");
        assert_eq!(
            j["data_id"],
            "ca-eccc-msc/data/core/weather/synop/71628_1200"
        );
        assert_eq!(j["contentType"], "application/bufr");
        // and back to WIS2 at the next node
        let m2 = parse(&out).unwrap();
        let mut back = Vec::new();
        let held2 = Held {
            rel: &m2.rel_path,
            pub_time: &m2.pub_time,
            ..held
        };
        wis2_voice("6f5a1c9e-0000-4000-8000-000000000003")
            .file(&mut back, &held2, Some(&m2))
            .unwrap();
        let j = text(&back);
        let p = &j["properties"];
        assert_eq!(p["pubtime"], "2026-11-23T06:51:46.406Z");
        assert_eq!(
            p["data_id"],
            "ca-eccc-msc/data/core/weather/synop/71628_1200"
        );
        assert_eq!(p["metadata_id"], "urn:wmo:md:ca-eccc-msc:synop");
        assert_eq!(p["datetime"], "2026-11-23T06:45:00Z");
        assert_eq!(j["geometry"]["type"], "Point");
        assert_eq!(j["links"][0]["type"], "application/bufr");
        assert!(p.get("contentType").is_none() && p.get("geometry").is_none());
        // a demo v03 message: data_id from relPath, pubtime converted, datetime null
        let up = parse(UPSTREAM).unwrap();
        let held3 = Held {
            rel: "a/b.txt",
            pub_time: &up.pub_time,
            method: Method::Sha512,
            value: held.value,
            size: 5,
            inline: Some(b"hello"),
        };
        let mut w = Vec::new();
        wis2_voice("6f5a1c9e-0000-4000-8000-000000000004")
            .file(&mut w, &held3, Some(&up))
            .unwrap();
        let j = text(&w);
        assert_eq!(j["properties"]["data_id"], "a/b.txt");
        assert_eq!(j["properties"]["pubtime"], "2026-11-23T06:51:46.406Z");
        assert!(j["properties"]["datetime"].is_null());
        assert_eq!(
            j["properties"]["source"], "up",
            "v03 fields become properties"
        );
        assert_eq!(j["links"][0]["href"], "http://me:8000/data/a/b.txt");
        assert_eq!(j["links"][0]["rel"], "canonical");
        assert_eq!(j["conformsTo"][0], crate::core::message::CONFORMS_TO);
    }

    #[test]
    fn wis2_removals_are_deletions_and_directories_are_not_said() {
        let mut out = Vec::new();
        let v = wis2_voice("6f5a1c9e-0000-4000-8000-000000000005");
        assert!(v.file_op(&mut out, "a/b.txt", "20261123T000000", FILEOP_REMOVE, None));
        let j = text(&out);
        assert_eq!(j["links"][0]["rel"], "deletion");
        assert_eq!(j["properties"]["pubtime"], "2026-11-23T00:00:00Z");
        assert_eq!(
            parse(&out).unwrap().file_op,
            Some(crate::core::message::FileOp::Remove)
        );
        out.clear();
        assert!(!v.file_op(
            &mut out,
            "a",
            "20261123T000000",
            crate::core::message::FILEOP_MKDIR,
            None
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn a_dispatcher_forwards_wis2_as_v03_with_the_whole_url() {
        let m = parse(WNM_IN.as_bytes()).unwrap();
        let mut out = Vec::new();
        forward(&mut out, Format::WmoMesh, &m, &m.rel_path, "x", "").unwrap();
        let j = text(&out);
        assert_eq!(j["baseUrl"], "https://gc.example");
        assert_eq!(j["retPath"], "/cache/71628_1200.bufr4");
        // v03 cannot name sha256: checksum on download, as the dialect computes it
        assert_eq!(j["integrity"]["method"], "cod");
        assert_eq!(j["integrity"]["value"], "md5");
        let again = parse(&out).expect("a v03 reader takes it");
        assert_eq!(again.integrity.unwrap().method, Method::Unverifiable);
    }

    /// The fuzzer's findings: a WNM without integrity (optional there) forwarded as v03
    /// had none (refused by every v03 reader); a v03 message with inline content and no
    /// baseUrl forwarded as a WNM lost its content (no size) and kept a relative link.
    #[test]
    fn forwards_the_fuzzer_found_unreadable_now_read_back() {
        let wnm = br#"{"id":"1","conformsTo":["http://wis.wmo.int/spec/wnm/1/conf/core"],"type":"Feature","geometry":null,"properties":{"pubtime":"2024-01-02T03:04:05Z","datetime":null,"data_id":"a/b.txt"},"links":[{"href":"https://e.org/b.txt","rel":"canonical"}]}"#;
        let m = parse(wnm).unwrap();
        let mut out = Vec::new();
        forward(&mut out, Format::Sr3, &m, "a/b.txt", "", "").unwrap();
        let again = parse(&out).expect("a v03 reader takes it");
        assert_eq!(again.integrity.unwrap().method, Method::Unverifiable);
        let v03 = br#"{"pubTime":"20190130T033822.951880","relPath":"a/c.txt","integrity":{"method":"md5","value":"sZRqySSS0jR8YjW00mERhA=="},"content":{"encoding":"utf-8","value":"hello\n"}}"#;
        let m = parse(v03).unwrap();
        out.clear();
        let id = "6f5a1c9e-0000-4000-8000-00000000000d";
        forward(&mut out, Format::Wis2, &m, "a/c.txt", "", id).unwrap();
        let again = parse(&out).expect("a WNM reader takes it");
        assert_eq!(again.content.unwrap().decode().unwrap(), b"hello\n");
        assert_eq!(again.size, Some(6));
    }

    #[test]
    fn a_forward_that_wis2_cannot_say_is_refused_by_name() {
        let m = parse(br#"{"pubTime":"20261123T065146.406","relPath":"a/b.txt","integrity":{"method":"md5","value":"XUFAKrxLKna5cZ2REBfFkg=="},"content":{"encoding":"rot13","value":"uryyb"}}"#).unwrap();
        let mut out = Vec::new();
        let e = forward(
            &mut out,
            Format::Wis2,
            &m,
            "a/b.txt",
            "",
            "6f5a1c9e-0000-4000-8000-000000000009",
        )
        .unwrap_err();
        assert!(e.contains("no WIS2 form"), "{e}");
    }
}
