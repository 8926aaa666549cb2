use super::*;
use crate::core::integrity::digest_of;
use crate::core::message::parse;

static EXAMPLE1: &str = include_str!("../../../../tests/fixtures/wis2/example1.json");
static EXAMPLE2: &str = include_str!("../../../../tests/fixtures/wis2/example2.json");
static EXAMPLE3: &str = include_str!("../../../../tests/fixtures/wis2/example3.json");
static EXAMPLE4: &str = include_str!("../../../../tests/fixtures/wis2/example4.json");
/// The standard's examples carry a shortened placeholder as integrity value.
const PLACEHOLDER: &str = "A2KNxvks...S8qfSCw==";

fn real_integrity(example: &str) -> String {
    let sha = digest_of(Method::Sha512, b"encoded bytes from the file").unwrap();
    example.replace(PLACEHOLDER, &sha.to_base64())
}

#[test]
fn reads_the_standards_examples() {
    let e1 = real_integrity(EXAMPLE1);
    let m = parse(e1.as_bytes()).unwrap();
    assert_eq!(m.dialect, Dialect::Wis2);
    let w = m.wis2.as_ref().unwrap();
    assert_eq!(w.id, "31e9d66a-cd83-4174-9429-b932f1abe1be");
    assert_eq!(w.relation, Relation::Canonical);
    assert_eq!(m.pub_time, "2022-03-20T04:50:18Z");
    assert_eq!(
        m.rel_path,
        "dataset/123/data-granule/UANT01_CWAO_200445___15103.bufr4"
    );
    assert_eq!(
        m.url.as_deref(),
        Some("https://example.org/data/4Pubsub/92c557ef-d28e-4713-91af-2e2e7be6f8ab.bufr4")
    );
    assert_eq!(m.integrity.as_ref().unwrap().method, Method::Sha512);
    assert_eq!(
        m.content.as_ref().unwrap().decode().unwrap(),
        b"encoded bytes from the file"
    );
    assert_eq!(m.size, Some(457), "content.size");
    assert_eq!(w.other_links.len(), 1, "the item link is kept");
    assert_eq!(w.link_type.as_deref(), Some("application/bufr"));
    assert!(w.geometry.get().contains("Point"));

    let e2 = real_integrity(EXAMPLE2);
    let m = parse(e2.as_bytes()).unwrap();
    let w = m.wis2.as_ref().unwrap();
    let times: Vec<&str> = w.times.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(times, ["start_datetime", "end_datetime"]);
    assert_eq!(
        m.rel_path, "dataset/4546/abcdef-abcd-abcd-abcd-abcdefabcd.grib",
        "the link's extension is added to a data_id without one"
    );

    let m = parse(EXAMPLE3.as_bytes()).unwrap();
    assert!(m.integrity.is_none(), "integrity is optional");
    assert_eq!(m.extra.len(), 1);
    assert_eq!(m.extra[0].0, "cache");
    let m = parse(EXAMPLE4.as_bytes()).unwrap();
    assert_eq!(m.file_op, Some(FileOp::Remove));
    assert_eq!(m.wis2.unwrap().relation, Relation::Deletion);
    assert_eq!(
        m.rel_path, "data/data-123/items/abcdefab-abcd-1234-5678-0123456789ab.txt",
        "the deletion names the file the canonical message stored"
    );
}

#[test]
fn the_examples_placeholder_integrity_is_refused_by_name() {
    let e = parse(EXAMPLE1.as_bytes()).unwrap_err();
    assert!(e.0.contains("properties.integrity"), "{e}");
}

/// `EXAMPLE3` with one edit: `(from, to)` replaced.
fn edited(from: &str, to: &str) -> String {
    assert!(EXAMPLE3.contains(from), "{from}");
    EXAMPLE3.replacen(from, to, 1)
}

#[test]
fn refuses_what_the_schema_refuses_with_a_line_naming_it() {
    let link = r#""rel": "canonical""#;
    let cases: Vec<(String, &str)> = vec![
        (
            edited(r#""id": "31e9d66a-cd83-4174-9429-b932f1abcdef","#, ""),
            "without id",
        ),
        (
            edited(r#""conformsTo": ["#, r#""version": "v04", "conformsTo": ["#),
            "both conformsTo and version",
        ),
        (
            edited("http://wis.wmo.int/spec/wnm/1/conf/core", "http://x/other"),
            "conformsTo does not name",
        ),
        (
            edited(r#""type": "Feature","#, r#""type": "Point","#),
            "not \"Feature\"",
        ),
        (edited(r#""geometry": null,"#, ""), "without geometry"),
        (
            edited(r#""pubtime": "2022-11-20T16:40:37Z","#, ""),
            "without properties.pubtime",
        ),
        (
            edited("2022-11-20T16:40:37Z", "20221120T164037"),
            "not an RFC 3339 time",
        ),
        (
            edited(
                r#""data_id": "data/data-123/items/abcdefab-abcd-1234-5678-0123456789ab","#,
                "",
            ),
            "without properties.data_id",
        ),
        (
            edited(r#""datetime": "2022-11-11T11:11:11Z","#, ""),
            "without properties.datetime",
        ),
        (
            edited(
                r#""datetime": "2022-11-11T11:11:11Z","#,
                r#""datetime": "2022-11-11T11:11:11Z", "end_datetime": "2022-11-11T11:11:11Z","#,
            ),
            "not a mix",
        ),
        (edited(link, r#""rel": "item""#), "no link of rel canonical"),
        (
            edited(
                link,
                r#""rel": "canonical"}, {"href": "https://b/x.txt", "rel": "update""#,
            ),
            "more than one link",
        ),
        (
            edited(
                r#""cache": false"#,
                r#""cache": false, "integrity": {"method": "md5", "value": "sZRqySSS0jR8YjW00mERhA=="}"#,
            ),
            "not one WIS2 allows",
        ),
        (
            edited(
                r#""cache": false"#,
                r#""cache": false, "integrity": {"method": "sha256", "value": "AAAA"}"#,
            ),
            "sha256 digest is 3 bytes",
        ),
        (
            edited(
                r#""cache": false"#,
                r#""cache": false, "content": {"encoding": "rot13", "value": "x", "size": 1}"#,
            ),
            "not utf-8, base64 or gzip",
        ),
        (
            edited(
                r#""cache": false"#,
                &format!(
                    r#""cache": false, "content": {{"encoding": "utf-8", "value": "{}", "size": 8000}}"#,
                    "x".repeat(8000)
                ),
            ),
            "the standard's limit is 8192",
        ),
        (
            edited(
                r#""cache": false"#,
                &format!(
                    r#""cache": false, "content": {{"encoding": "utf-8", "value": "{}", "size": 4100}}"#,
                    "x".repeat(4100)
                ),
            ),
            "the standard's limit is 4096",
        ),
        (
            edited(r#""links": ["#, r#""links": [], "x": ["#),
            "has no links",
        ),
        (
            edited("https://example.org/92c557ef", "ftp-ish/92c557ef"),
            "not an absolute URL",
        ),
    ];
    for (text, want) in cases {
        let e = parse(text.as_bytes()).unwrap_err();
        assert!(e.0.contains(want), "want {want:?}, got {:?}", e.0);
    }
}

#[test]
fn gzip_content_inflates_and_bombs_do_not() {
    // `printf 'hello wis2\n' | gzip -n | base64`
    let z = B64
        .decode("H4sIAAAAAAAAA8tIzcnJVyjPLDbiAgDrGNGnCwAAAA==")
        .unwrap();
    assert_eq!(gunzip(&z, 100).unwrap(), b"hello wis2\n");
    assert!(gunzip(&z, 4).is_err(), "over the limit");
    assert!(gunzip(b"not gzip at all, no", 100).is_err());
    let mut torn = z.clone();
    torn.truncate(z.len() - 3);
    assert!(gunzip(&torn, 100).is_err());
    let c = Content {
        encoding: "gzip".into(),
        value: "H4sIAAAAAAAAA8tIzcnJVyjPLDbiAgDrGNGnCwAAAA==".into(),
    };
    assert_eq!(c.decode().unwrap(), b"hello wis2\n");
}

#[test]
fn rel_path_rule() {
    assert_eq!(
        rel_path_of("a/b/c.txt", Some("http://h/x.bin")),
        "a/b/c.txt"
    );
    assert_eq!(
        rel_path_of("a/b/c", Some("http://h/p/c.bufr4?x=1")),
        "a/b/c.bufr4"
    );
    assert_eq!(rel_path_of("a/b/c", Some("http://h/p/noext")), "a/b/c");
    assert_eq!(rel_path_of("a/b/c", Some("http://h/p/.hidden")), "a/b/c");
    assert_eq!(rel_path_of("a/b/c", Some("http://h/p/x.a%2Fb")), "a/b/c");
    assert_eq!(rel_path_of("a/b/c", None), "a/b/c");
}
