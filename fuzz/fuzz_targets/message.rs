//! Any message the node reads, written again in every format (as a re-announcement of
//! the file and as a dispatcher's forward) and read again: what it writes is what it
//! would accept, and the round trip keeps the relPath (a WNM: its data_id), the
//! integrity the format can name, the pubTime's instant and the absence of a file
//! operation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshnode::core::announce::{forward, Encoding, Held, Voice};
use meshnode::core::integrity::{digest_of, Method};
use meshnode::core::message::{parse, Format, Message};
use meshnode::core::{relpath, time};

const FORMATS: [Format; 3] = [Format::WmoMesh, Format::Sr3, Format::Wis2];
const ID: &str = "6f5a1c9e-0000-4000-8000-000000000001";

fn instant(m: &Message<'_>) -> f64 {
    time::parse_time(&m.pub_time).expect("a message read has a readable pubTime")
}

fn check_same_file(what: &str, before: &Message<'_>, rel: &str, out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    let again = parse(out).unwrap_or_else(|e| panic!("{what}: wrote what it refuses: {e}\n{text}"));
    match &again.wis2 {
        Some(w) => {
            let data_id = before.wis2.as_ref().map_or(rel, |b| b.data_id.as_ref());
            assert_eq!(w.data_id, data_id, "{what}: {text}");
        }
        None => assert_eq!(again.rel_path, rel, "{what}: {text}"),
    }
    assert!(
        (instant(&again) - instant(before)).abs() < 1e-3,
        "{what}: pubTime: {text}"
    );
    assert!(
        again.file_op.is_none(),
        "{what}: a file operation appeared: {text}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(m) = parse(data) else {
        return;
    };
    let Ok(rel) = relpath::validate(m.rel_path.trim_start_matches('/')) else {
        return;
    };
    let rel = rel.to_string();
    if m.file_op.is_some() {
        return; // file operations are applied, then announced by `file_op`
    }
    for format in FORMATS {
        // a re-announcement of the file, as the node would have stored it
        let method = if format == Format::WmoMesh {
            Method::Md5
        } else {
            Method::Sha512
        };
        let value = digest_of(method, b"the file").unwrap().to_base64();
        let held = Held {
            rel: &rel,
            pub_time: &m.pub_time,
            method,
            value: &value,
            size: 8,
            inline: Some(b"the file"),
        };
        let voice = Voice {
            format,
            base_url: "http://node.example/data",
            encoding: Encoding::Guess,
            id: ID,
        };
        let mut out = Vec::new();
        if let Err(why) = voice.file(&mut out, &held, Some(&m)) {
            // only what the format cannot say at all: a WNM over the standard's size
            assert!(
                format == Format::Wis2 && why.contains("over the standard") && out.is_empty(),
                "file {format:?}: {why}"
            );
            continue;
        }
        check_same_file(&format!("file {format:?}"), &m, &rel, &out);
        let again = parse(&out).unwrap();
        let i = again
            .integrity
            .expect("a held file's announcement has an integrity");
        assert_eq!(i.method, method, "file {format:?}");
        // a dispatcher's forward
        let digest = m.integrity.as_ref().and_then(|i| i.digest.as_ref());
        let value = digest.map(|d| d.to_base64()).unwrap_or_default();
        out.clear();
        if forward(&mut out, format, &m, &rel, &value, ID).is_ok() {
            check_same_file(&format!("forward {format:?}"), &m, &rel, &out);
            let again = parse(&out).unwrap();
            if let (Some(a), Some(b)) = (&again.integrity, &m.integrity) {
                if format.announces(b.method) {
                    assert_eq!(a, b, "forward {format:?}: integrity changed");
                }
            }
            if format != Format::Wis2 {
                assert!(
                    again.integrity.is_some() || m.integrity.is_none(),
                    "forward {format:?}: integrity dropped"
                );
            }
        }
    }
});
