//! The WIS2 Notification Message (WNM, formats.md section 6): a GeoJSON Feature whose
//! `properties` carry pubtime, data_id, integrity and content, and whose `links` carry
//! the download URL. Read into the same `Message` as the v03 dialects (the common
//! fields), with what only WIS2 has kept in `Wis2`; written back with unknown fields and
//! properties forwarded byte for byte.

use super::json::{err, keep_unread, object, parse_integrity, string, RawObject, Str};
use super::members;
use super::*;
use crate::core::time;
use std::io::Write as _;

/// Longest WNM accepted, in bytes (the standard's limit).
pub const WNM_MAX: usize = 8192;
/// Longest inline `content.value` (the standard's limit, encoded).
pub const CONTENT_MAX: usize = 4096;
/// The conformance class every WNM names in `conformsTo`.
pub const CONFORMS_TO: &str = "http://wis.wmo.int/spec/wnm/1/conf/core";

/// What a WNM's data link says of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// New data (`canonical`).
    Canonical,
    /// A new version of data published before (`update`).
    Update,
    /// The data was withdrawn (`deletion`).
    Deletion,
}

impl Relation {
    pub fn name(self) -> &'static str {
        match self {
            Relation::Canonical => "canonical",
            Relation::Update => "update",
            Relation::Deletion => "deletion",
        }
    }
}

/// What a WNM carries beside the fields every dialect has.
#[derive(Debug)]
pub struct Wis2<'a> {
    pub id: Cow<'a, str>,
    pub data_id: Cow<'a, str>,
    pub metadata_id: Option<Cow<'a, str>>,
    pub relation: Relation,
    /// `geometry`, exactly as received (null, Point, Polygon).
    pub geometry: &'a RawValue,
    /// `datetime` or `start_datetime` + `end_datetime`, raw, in arrival order.
    pub times: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// The data link's media type.
    pub link_type: Option<Cow<'a, str>>,
    /// The data link's other members (title, hreflang, security...), raw.
    pub link_extra: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// Links other than the data link, raw.
    pub other_links: Vec<&'a RawValue>,
    /// Top-level members not read here, raw.
    pub top_extra: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// True when a top-level object is a WNM: it names `conformsTo`, or is a Feature.
pub(super) fn is_wnm(obj: &RawObject<'_>) -> bool {
    obj.0.iter().any(|(k, v)| {
        k == "conformsTo" || (k == "type" && v.get().trim() == "\"Feature\"") || k == "properties"
    })
}

/// Where a WIS2 file goes in the tree: its `data_id`, with the extension of the link's
/// file name added when the data_id's last level has none (`.../synop/71628_1200` with
/// `https://x/71628_1200.bufr4` goes to `.../synop/71628_1200.bufr4`), so the file is
/// served with its type. The result is validated like any relPath by the caller.
pub fn rel_path_of(data_id: &str, href: Option<&str>) -> String {
    let mut rel = data_id.to_string();
    let last = data_id.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return rel;
    }
    let Some(href) = href else {
        return rel;
    };
    let path = href.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    if let Some((stem, ext)) = name.rsplit_once('.') {
        let plain = ext.bytes().all(|b| b.is_ascii_alphanumeric());
        if !stem.is_empty() && !ext.is_empty() && ext.len() <= 10 && plain {
            rel.push('.');
            rel.push_str(ext);
        }
    }
    rel
}

/// Reads a WNM (already split into its top-level members).
pub(super) fn parse_wnm<'a>(text: &'a str, obj: RawObject<'a>) -> Result<Message<'a>, ParseError> {
    if text.len() > WNM_MAX {
        return err(format!(
            "WIS2 message is {} bytes, the standard's limit is {WNM_MAX}",
            text.len()
        ));
    }
    let (mut id, mut conforms, mut version, mut kind) = (None, false, false, None);
    let (mut geometry, mut properties, mut links) = (None, None, None);
    let mut top_extra = obj.0;
    keep_unread(&mut top_extra, |k, v| {
        match k.as_ref() {
            "id" => id = Some(string("id", v)?),
            "conformsTo" => {
                let list: Vec<Str<'a>> = serde_json::from_str(v.get())
                    .or_else(|_| err("conformsTo is not an array of strings"))?;
                if !list.iter().any(|s| s.0 == CONFORMS_TO) {
                    return err(format!("conformsTo does not name {CONFORMS_TO}"));
                }
                conforms = true;
            }
            "version" => {
                if string("version", v)? != "v04" {
                    return err("version is not \"v04\"");
                }
                version = true;
            }
            "type" => kind = Some(string("type", v)?),
            "geometry" => geometry = Some(v),
            "properties" => properties = Some(object("properties", v)?),
            "links" => links = Some(v),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(id) = id else {
        return err("WIS2 message without id");
    };
    match (conforms, version) {
        (true, true) => return err("WIS2 message has both conformsTo and version"),
        (false, false) => return err("WIS2 message without conformsTo"),
        _ => {}
    }
    if kind.as_deref() != Some("Feature") {
        return err("WIS2 message type is not \"Feature\"");
    }
    let Some(geometry) = geometry else {
        return err("WIS2 message without geometry");
    };
    let geo = geometry.get().trim();
    if geo != "null" && !geo.starts_with('{') {
        return err("WIS2 geometry is neither null nor an object");
    }
    let Some(properties) = properties else {
        return err("WIS2 message without properties");
    };
    let Some(links) = links else {
        return err("WIS2 message without links");
    };

    let (mut pub_time, mut data_id, mut metadata_id) = (None, None, None);
    let (mut integrity, mut content, mut content_size) = (None, None, None);
    let mut times = Vec::new();
    let mut extra = properties.0;
    keep_unread(&mut extra, |k, v| {
        match k.as_ref() {
            "pubtime" => pub_time = Some(string("properties.pubtime", v)?),
            "data_id" => data_id = Some(string("properties.data_id", v)?),
            "metadata_id" => metadata_id = Some(string("properties.metadata_id", v)?),
            "datetime" | "start_datetime" | "end_datetime" => {
                let t = v.get().trim();
                let null_ok = k == "datetime" && t == "null";
                if !null_ok {
                    let s = string(&format!("properties.{k}"), v)?;
                    if time::parse_rfc3339(&s).is_none() {
                        return err(format!("properties.{k} {s:?} is not an RFC 3339 time"));
                    }
                }
                times.push((k.clone(), v));
            }
            "integrity" => {
                let i = parse_integrity("properties.integrity", v)?;
                if !i.method.is_wis2() {
                    return err(format!(
                        "properties.integrity method {} is not one WIS2 allows (sha256, sha384, sha512, sha3-256, sha3-384, sha3-512)",
                        i.method.name()
                    ));
                }
                integrity = Some(i);
            }
            "content" => {
                let (c, size) = parse_content(v)?;
                content = Some(c);
                content_size = size;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(pub_time) = pub_time else {
        return err("WIS2 message without properties.pubtime");
    };
    if time::parse_rfc3339(&pub_time).is_none() {
        return err(format!(
            "properties.pubtime {pub_time:?} is not an RFC 3339 time"
        ));
    }
    let Some(data_id) = data_id else {
        return err("WIS2 message without properties.data_id");
    };
    let has = |name: &str| times.iter().any(|(k, _)| k == name);
    match (has("datetime"), has("start_datetime"), has("end_datetime")) {
        (true, false, false) | (false, true, true) => {}
        (false, false, false) => {
            return err(
                "WIS2 message without properties.datetime (or start_datetime and end_datetime)",
            )
        }
        _ => {
            return err(
                "WIS2 message needs datetime, or start_datetime with end_datetime, not a mix",
            )
        }
    }

    let list: Vec<&'a RawValue> =
        serde_json::from_str(links.get()).or_else(|_| err("links is not an array"))?;
    if list.is_empty() {
        return err("WIS2 message has no links");
    }
    let mut data_link = None;
    let mut other_links = Vec::new();
    for raw in list {
        let link = object("a link", raw)?;
        let rel = link.0.iter().find(|(k, _)| k == "rel").map(|(_, v)| *v);
        let Some(rel) = rel else {
            return err("a link without rel");
        };
        let relation = match string("link rel", rel)?.as_ref() {
            "canonical" => Relation::Canonical,
            "update" => Relation::Update,
            "deletion" => Relation::Deletion,
            _ => {
                other_links.push(raw);
                continue;
            }
        };
        if data_link.is_some() {
            return err("WIS2 message has more than one link of rel canonical, update or deletion");
        }
        data_link = Some((relation, link));
    }
    let Some((relation, link)) = data_link else {
        return err("WIS2 message has no link of rel canonical, update or deletion");
    };
    let (mut href, mut link_type, mut length) = (None, None, None);
    let mut link_extra = link.0;
    keep_unread(&mut link_extra, |k, v| {
        match k.as_ref() {
            "href" => href = Some(string("link href", v)?),
            "rel" => {}
            "type" => link_type = Some(string("link type", v)?),
            "length" => match v.get().trim().parse::<u64>() {
                Ok(n) => length = Some(n),
                Err(_) => return err("link length is not a whole number"),
            },
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(href) = href else {
        return err(format!("the {} link has no href", relation.name()));
    };
    let file_op = (relation == Relation::Deletion).then_some(FileOp::Remove);
    if file_op.is_none() && content.is_none() && !href.contains("://") {
        return err(format!("link href {href:?} is not an absolute URL"));
    }
    let rel_path = Cow::Owned(rel_path_of(&data_id, Some(&href)));
    Ok(Message {
        dialect: Dialect::Wis2,
        pub_time,
        base_url: Cow::Borrowed(""),
        rel_path,
        ret_path: None,
        url: Some(href),
        integrity,
        content,
        size: content_size.or(length),
        file_op,
        extra,
        wis2: Some(Box::new(Wis2 {
            id,
            data_id,
            metadata_id,
            relation,
            geometry,
            times,
            link_type,
            link_extra,
            other_links,
            top_extra,
        })),
    })
}

fn parse_content<'a>(raw: &'a RawValue) -> Result<(Content<'a>, Option<u64>), ParseError> {
    let o = object("properties.content", raw)?;
    let (mut encoding, mut value, mut size) = (None, None, None);
    for (k, v) in &o.0 {
        match k.as_ref() {
            "encoding" => encoding = Some(string("content.encoding", v)?),
            "value" => value = Some(string("content.value", v)?),
            "size" => match v.get().trim().parse::<u64>() {
                Ok(n) => size = Some(n),
                Err(_) => return err("content.size is not a whole number"),
            },
            _ => {}
        }
    }
    let (Some(encoding), Some(value)) = (encoding, value) else {
        return err("properties.content needs encoding and value");
    };
    if !matches!(encoding.as_ref(), "utf-8" | "base64" | "gzip") {
        return err(format!(
            "content.encoding {encoding:?} is not utf-8, base64 or gzip"
        ));
    }
    if value.len() > CONTENT_MAX {
        return err(format!(
            "content.value is {} bytes, the standard's limit is {CONTENT_MAX}",
            value.len()
        ));
    }
    Ok((Content { encoding, value }, size))
}

/// What this node says in a WNM of its own, beside what it forwards.
pub struct WnmOut<'a> {
    /// A new UUID: every message has its own.
    pub id: &'a str,
    /// RFC 3339; the original publisher's, kept.
    pub pub_time: &'a str,
    /// This node's URL of the file.
    pub href: &'a str,
    pub relation: Relation,
    /// The data_id when the message forwarded has none (the relPath).
    pub data_id: &'a str,
    pub integrity: Option<(Method, &'a str)>,
    pub size: Option<u64>,
    /// Inline content: (encoding, value); left out when over the standard's limit.
    pub content: Option<(&'a str, &'a str)>,
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn member(out: &mut Vec<u8>, key: &str, raw: &str) {
    out.push(b',');
    json_str(out, key);
    out.push(b':');
    out.extend_from_slice(raw.as_bytes());
}

/// A string field of a v03 message's extra fields (a WNM converted to v03 carries
/// data_id, metadata_id and its times there).
fn extra_str<'m>(msg: &'m Message<'_>, key: &str) -> Option<(&'m RawValue, String)> {
    let (_, v) = msg.extra.iter().find(|(k, _)| k == key)?;
    Some((v, serde_json::from_str::<String>(v.get()).ok()?))
}

/// The times a v03 message carries of a WNM, when they are what a WNM reader accepts:
/// `datetime` (a time or null) alone, or `start_datetime` with `end_datetime`.
fn carried_times<'m, 'a>(m: &'m Message<'a>) -> Vec<&'m (Cow<'a, str>, &'a RawValue)> {
    let names = ["datetime", "start_datetime", "end_datetime"];
    let times: Vec<_> = m
        .extra
        .iter()
        .filter(|(k, _)| names.contains(&k.as_ref()))
        .collect();
    let valid = |(k, v): &&(Cow<'_, str>, &RawValue)| {
        (k == "datetime" && v.get().trim() == "null")
            || serde_json::from_str::<String>(v.get())
                .is_ok_and(|t| time::parse_rfc3339(&t).is_some())
    };
    let keys: Vec<&str> = times.iter().map(|(k, _)| k.as_ref()).collect();
    let form = keys == ["datetime"]
        || (keys.len() == 2 && keys.contains(&"start_datetime") && keys.contains(&"end_datetime"));
    if form && times.iter().all(valid) {
        times
    } else {
        Vec::new()
    }
}

/// Writes a WNM announcing `o`, forwarding from `msg` (a WNM or a v03 message, or
/// `None` for one of this node's making) what the standard says to keep: geometry,
/// metadata_id, the times, unknown properties and members, the other links. What a
/// v03 message carries of a WNM is taken only when a WNM reader would accept it, and
/// its data_id only when it names the same file as `o.data_id` (the relPath).
/// Within the standard's `WNM_MAX`: when what is carried would make the message longer,
/// the free-form members give way, then the inline content (found by fuzzing: a v03
/// message's 9 KB unknown member made a WNM no reader takes). When even the bare
/// message is too long (a relPath of kilobytes), nothing is written: Err says why.
pub fn write_wnm(
    out: &mut Vec<u8>,
    msg: Option<&Message<'_>>,
    o: &WnmOut<'_>,
) -> Result<(), String> {
    let start = out.len();
    for carry in [Carry::All, Carry::Fields, Carry::Nothing] {
        out.truncate(start);
        write_wnm_carrying(out, msg, o, carry);
        if out.len() - start <= WNM_MAX {
            return Ok(());
        }
    }
    let n = out.len() - start;
    out.truncate(start);
    Err(format!(
        "its WIS2 message would be {n} bytes, over the standard's {WNM_MAX}"
    ))
}

/// What a written WNM carries beyond its own fields.
#[derive(Clone, Copy, PartialEq)]
enum Carry {
    /// The free-form members and links of the message forwarded, and inline content.
    All,
    /// Inline content, no free-form members.
    Fields,
    /// Neither.
    Nothing,
}

fn write_wnm_carrying(out: &mut Vec<u8>, msg: Option<&Message<'_>>, o: &WnmOut<'_>, carry: Carry) {
    let free_form = carry == Carry::All;
    let msg_free = msg.filter(|_| free_form);
    let w = msg.and_then(|m| m.wis2.as_deref());
    // a v03 message that may carry a WNM's members
    let v03 = msg.filter(|m| m.wis2.is_none() && members::carries_wis2(m.dialect));
    out.extend_from_slice(b"{\"id\":");
    json_str(out, o.id);
    out.extend_from_slice(b",\"conformsTo\":[");
    json_str(out, CONFORMS_TO);
    out.extend_from_slice(b"],\"type\":\"Feature\",\"geometry\":");
    let geometry = match (w, v03) {
        (Some(w), _) => Some(w.geometry.get()),
        (None, Some(m)) => m
            .extra
            .iter()
            .find(|(k, _)| k == "geometry")
            .map(|(_, v)| v.get())
            .filter(|g| g.trim_start().starts_with('{')),
        _ => None,
    };
    out.extend_from_slice(geometry.unwrap_or("null").as_bytes());
    out.extend_from_slice(b",\"properties\":{\"pubtime\":");
    json_str(out, o.pub_time);
    out.extend_from_slice(b",\"data_id\":");
    let carried_id = v03
        .and_then(|m| extra_str(m, "data_id"))
        .map(|(_, d)| d)
        .filter(|d| rel_path_of(d, Some(o.href)) == o.data_id);
    let data_id = match (w, carried_id) {
        (Some(w), _) => w.data_id.to_string(),
        (None, Some(d)) => d,
        _ => o.data_id.to_string(),
    };
    json_str(out, &data_id);
    let metadata_id = match (w, v03.and_then(|m| extra_str(m, "metadata_id"))) {
        (Some(w), _) => w.metadata_id.as_deref().map(str::to_string),
        (None, Some((_, d))) => Some(d),
        _ => None,
    };
    if let Some(m) = metadata_id {
        out.extend_from_slice(b",\"metadata_id\":");
        json_str(out, &m);
    }
    let mut times = 0;
    if let Some(w) = w {
        for (k, v) in &w.times {
            member(out, k, v.get());
            times += 1;
        }
    } else if let Some(m) = v03 {
        for (k, v) in carried_times(m) {
            member(out, k, v.get());
            times += 1;
        }
    }
    if times == 0 {
        // the time of the data is not known here: the standard allows null
        out.extend_from_slice(b",\"datetime\":null");
    }
    if let Some((method, value)) = o.integrity {
        out.extend_from_slice(b",\"integrity\":{\"method\":");
        json_str(out, method.name());
        out.extend_from_slice(b",\"value\":");
        json_str(out, value);
        out.push(b'}');
    }
    if let (Some((enc, value)), Some(size), true) = (o.content, o.size, carry != Carry::Nothing) {
        if value.len() <= CONTENT_MAX && size <= CONTENT_MAX as u64 {
            out.extend_from_slice(b",\"content\":{\"encoding\":");
            json_str(out, enc);
            out.extend_from_slice(b",\"value\":");
            json_str(out, value);
            let _ = write!(out, ",\"size\":{size}}}");
        }
    }
    let mut link_type = w.and_then(|w| w.link_type.as_deref().map(str::to_string));
    if let Some(m) = v03 {
        // v03's media type is the link's type in WIS2
        if let Some((_, t)) = extra_str(m, "contentType") {
            link_type = Some(t);
        }
    }
    if let Some(m) = msg_free {
        for (k, v) in m
            .extra
            .iter()
            .filter(|(k, _)| members::wnm_forwards(m.dialect, k))
        {
            member(out, k, v.get());
        }
    }
    out.extend_from_slice(b"},\"links\":[{\"href\":");
    json_str(out, o.href);
    out.extend_from_slice(b",\"rel\":");
    json_str(out, o.relation.name());
    if let Some(t) = link_type {
        out.extend_from_slice(b",\"type\":");
        json_str(out, &t);
    }
    if let (Some(n), true) = (o.size, o.relation != Relation::Deletion) {
        let _ = write!(out, ",\"length\":{n}");
    }
    let w_free = w.filter(|_| free_form);
    if let Some(w) = w_free {
        for (k, v) in &w.link_extra {
            member(out, k, v.get());
        }
    }
    out.push(b'}');
    if let Some(w) = w_free {
        for l in &w.other_links {
            out.push(b',');
            out.extend_from_slice(l.get().as_bytes());
        }
    }
    out.push(b']');
    if let Some(w) = w_free {
        for (k, v) in &w.top_extra {
            member(out, k, v.get());
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests;
