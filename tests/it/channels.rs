//! Channels over real sockets: the taker's statuses, attributes, capacity, concurrency,
//! a SIGKILL mid-upload, multipart, cut-off retrieval, DELETE rights; and two nodes
//! through real mosquitto brokers.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const WAIT: u64 = 60;

/// A GET with no condition and no credentials.
fn get(port: u16, path: &str) -> Resp {
    http(port, "GET", path, &[], b"")
}

fn publish(port: u16, ct: &str, auth: Option<&str>, body: &[u8]) -> Resp {
    let a = auth.map(basic);
    let mut h = vec![("Content-Type", ct)];
    let path = match &a {
        Some(a) => {
            h.push(("Authorization", a.as_str()));
            "/rest/taker"
        }
        None => "/taker",
    };
    http(port, "POST", path, &h, body)
}

fn channels_text(feed: &Path) -> String {
    format!(
        "channel MEMO\ntitle Memos to all\ncapacity 3\naccess open\nwriters dave\n\
         channel LATEST\ncapacity 1\naccess restricted\nwriters dave,ann\n\
         channel SECRET\naccess restricted\nwriters dave\nreaders dave, ghost\n\
         channel FEED\nkind feed\nfeed-dir {feed}\naccess restricted\nwriters dave\n\
         channel FULL\nkind feed\nfeed-dir {feed}/full\nmin-free 1000000G\naccess open\n",
        feed = feed.display()
    )
}

/// A node taking channels; `before`: options before the channel sections.
pub(crate) fn start_node(s: &Scratch, name: &str, port: u16, before: &str) -> Node {
    let pw = s.path("passwd");
    if !pw.exists() {
        let lines = [("dave", "davepw"), ("ann", "annpw"), ("eve", "evepw")]
            .map(|(u, p)| meshnode::channels::credentials::hash_line(u, p, 1000).unwrap());
        std::fs::write(&pw, lines.join("\n") + "\n").unwrap();
    }
    let conf = s.path(&format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "dir {dir}\nlisten 127.0.0.1:{port}\npassword-file {pw}\nmax-connections 256\n\
             product-max 1M\nnode-id {name}\nverbose 2\n{before}\n{channels}",
            dir = s.path(&format!("{name}-data")).display(),
            pw = pw.display(),
            channels = channels_text(&s.path(&format!("{name}-feed")))
        ),
    )
    .unwrap();
    let n = Node::start(
        &s.path(&format!("{name}.log")),
        &["run".into(), "--config".into(), conf.display().to_string()],
    );
    assert!(
        wait_until(WAIT, || n.log_text().contains("serving")),
        "{}",
        n.log_text()
    );
    n
}

fn visible_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_status_of_the_taker_and_quoted_attributes() {
    let s = Scratch::new("ch-statuses");
    let port = free_port();
    let node = start_node(&s, "n1", port, "");
    let ct =
        r#"text/plain; cid=MEMO;fname=memo1.txt;topic="How to \"publish\"; really";author=Dave"#;
    let r = publish(port, ct, None, b"memo one\n");
    assert_eq!(r.status, 201, "{}", r.head);
    let oid = r.oid();
    assert_eq!(r.header("Location"), Some(format!("/channels/MEMO/{oid}")));
    // a name in a rights list that the password file lacks is said at start
    assert!(
        node.log_text().contains(
            "channel SECRET: readers names user \"ghost\", who is not in the password file"
        ),
        "{}",
        node.log_text()
    );
    // `writers dave,ann` (commas) admits ann
    let r = publish(port, "text/plain; cid=LATEST", Some("ann:annpw"), b"by ann");
    assert_eq!(r.status, 201, "{}", r.head);

    // the attributes, quoted string and all, as listed and as served
    let d = get(port, "/channels/MEMO").json();
    let p = &d["products"][0];
    assert_eq!(p["oid"], oid.as_str());
    assert_eq!(p["attributes"]["topic"], "How to \"publish\"; really");
    assert_eq!(p["attributes"]["author"], "Dave");
    assert_eq!(p["attributes"]["fname"], "memo1.txt");
    assert_eq!(
        (p["size"].as_u64(), p["publisher"].as_str()),
        (Some(9), Some("anonymous"))
    );
    let g = get(port, &format!("/channels/MEMO/{oid}"));
    assert_eq!((g.status, g.body.as_slice()), (200, &b"memo one\n"[..]));
    let served =
        meshnode::core::mediatype::MediaType::parse(&g.header("Content-Type").unwrap()).unwrap();
    assert_eq!(served.param("topic"), Some("How to \"publish\"; really"));
    assert_eq!(served.param("oid"), Some(oid.as_str()));

    // refusals, each with the status that says why
    let dave = Some("dave:davepw");
    let cases: Vec<(&str, Resp)> = vec![
        (
            "bad content type",
            publish(port, "text/plain; topic=\"unterminated", None, b"x"),
        ),
        ("no cid", publish(port, "text/plain; fname=a", None, b"x")),
        (
            "unknown channel",
            publish(port, "text/plain; cid=NOPE", None, b"x"),
        ),
        (
            "no credentials",
            http(
                port,
                "POST",
                "/rest/taker",
                &[("Content-Type", "text/plain; cid=LATEST")],
                b"x",
            ),
        ),
        (
            "restricted via /taker",
            publish(port, "text/plain; cid=LATEST", None, b"x"),
        ),
        (
            "wrong password",
            publish(port, "text/plain; cid=LATEST", Some("dave:nope"), b"x"),
        ),
        (
            "unknown user",
            publish(port, "text/plain; cid=LATEST", Some("mallory:x"), b"x"),
        ),
        (
            "not a writer",
            publish(port, "text/plain; cid=SECRET", Some("ann:annpw"), b"x"),
        ),
        (
            "too large",
            publish(
                port,
                "text/plain; cid=MEMO",
                None,
                &vec![b'x'; (1 << 20) + 1],
            ),
        ),
        (
            "disk too full",
            publish(port, "application/octet-stream; cid=FULL", None, b"x"),
        ),
        (
            "gzip, stored as its bytes it would lose its label",
            http(
                port,
                "POST",
                "/taker",
                &[
                    ("Content-Type", "text/plain; cid=MEMO"),
                    ("Content-Encoding", "gzip"),
                ],
                b"\x1f\x8b\x08\x00",
            ),
        ),
    ];
    let want = [400, 400, 404, 401, 401, 401, 401, 403, 413, 507, 415];
    for ((what, r), want) in cases.iter().zip(want) {
        assert_eq!(r.status, want, "{what}: {}", r.head);
        assert!(
            r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: a reason"
        );
        if want == 401 {
            assert!(
                r.header("WWW-Authenticate")
                    .unwrap()
                    .starts_with("Basic realm="),
                "{what}"
            );
        }
    }
    // a chunked upload that grows past the limit mid-way
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let chunk = vec![b'y'; 256 * 1024];
    let mut req = b"POST /taker HTTP/1.1\r\nContent-Type: text/plain; cid=MEMO\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let _ = c.write_all(&req);
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // accepted: restricted with credentials, and a feed (deposited, never listed)
    assert_eq!(
        publish(port, "text/plain; cid=LATEST", dave, b"l").status,
        201
    );
    let f = publish(
        port,
        "application/octet-stream; cid=FEED; fname=MTR50.SRVR",
        dave,
        b"METAR",
    );
    assert_eq!(f.status, 201);
    assert_eq!(
        std::fs::read(s.path("n1-feed/MTR50.SRVR")).unwrap(),
        b"METAR"
    );
    let list = get(port, "/channels").json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    // a feed looks like a channel to those who may write it (FULL is open), and is
    // not there for the others (FEED is dave's)
    assert_eq!(
        ids,
        ["MEMO", "LATEST", "FULL"],
        "unreadable channels and others' feeds are not listed"
    );
    assert_eq!(list[0]["count"], 1);
    assert_eq!(list[0]["title"], "Memos to all");
    assert_eq!(list[2]["count"], 0, "a feed keeps nothing here");
    let auth = basic("dave:davepw");
    let list = http(port, "GET", "/channels", &[("Authorization", &auth)], b"").json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["MEMO", "LATEST", "SECRET", "FEED", "FULL"],
        "dave reads SECRET and writes FEED"
    );
    assert_eq!(get(port, "/channels/FEED").status, 404);
    let feed = http(
        port,
        "GET",
        "/channels/FEED",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(feed.status, 200, "{}", feed.head);
    let feed = feed.json();
    assert_eq!(
        (
            feed["id"].as_str(),
            feed["products"].as_array().map(Vec::len)
        ),
        (Some("FEED"), Some(0)),
        "{feed}"
    );
    assert!(
        !feed.to_string().contains("n1-feed"),
        "the feed's directory is never shown: {feed}"
    );
    assert_eq!(get(port, "/channels/SECRET").status, 401);
    let eve = basic("eve:evepw");
    assert_eq!(
        http(
            port,
            "GET",
            "/channels/SECRET",
            &[("Authorization", &eve)],
            b""
        )
        .status,
        403
    );
    assert_eq!(get(port, "/channels/MEMO/0000-nope").status, 404);
    assert_eq!(http(port, "PATCH", "/taker", &[], b"").status, 405);

    // nothing refused left a file, and every attempt is in the log
    assert_eq!(visible_files(&s.path("n1-data/metcast/MEMO")).len(), 1);
    assert!(visible_files(&s.path("n1-feed/full")).is_empty());
    let log = node.log_text();
    let attempts = log
        .lines()
        .filter(|l| l.contains(" taker ") && l.contains("user="))
        .count();
    assert_eq!(attempts, 1 + 1 + cases.len() + 1 + 2, "{log}");
    assert!(log.contains("user=ann channel=SECRET size=1 403"), "{log}");
    assert!(
        log.contains("user=anonymous channel=MEMO size=9 201"),
        "{log}"
    );
}

#[test]
fn capacity_one_replaces_and_capacity_n_evicts_the_oldest() {
    let s = Scratch::new("ch-capacity");
    let port = free_port();
    let _node = start_node(&s, "n1", port, "");
    let dave = Some("dave:davepw");
    let mut latest = Vec::new();
    for i in 0..3 {
        let r = publish(
            port,
            "text/plain; cid=LATEST",
            dave,
            format!("v{i}").as_bytes(),
        );
        assert_eq!(r.status, 201);
        latest.push(r.oid());
    }
    let d = get(port, "/channels/LATEST").json();
    assert_eq!(d["products"].as_array().unwrap().len(), 1);
    assert_eq!(d["products"][0]["oid"], latest[2].as_str());
    assert_eq!(
        visible_files(&s.path("n1-data/metcast/LATEST")),
        [latest[2].clone()]
    );
    let mut memo = Vec::new();
    for i in 0..5 {
        memo.push(
            publish(
                port,
                "text/plain; cid=MEMO",
                None,
                format!("m{i}").as_bytes(),
            )
            .oid(),
        );
    }
    let d = get(port, "/channels/MEMO").json();
    let oids: Vec<&str> = d["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["oid"].as_str().unwrap())
        .collect();
    assert_eq!(oids, &memo[2..], "the three newest, oldest first");
    assert_eq!(
        get(port, &format!("/channels/MEMO/{}", memo[1])).status,
        404
    );
    // the sidecars went with their products
    let all: Vec<String> = std::fs::read_dir(s.path("n1-data/metcast/MEMO"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(all.len(), 6, "{all:?}");
}

/// A product that says what it must be: its number, then a pattern of that number.
fn product(n: usize) -> Vec<u8> {
    let mut v = format!("product {n:03}\n").into_bytes();
    v.extend((0..20_000 + n * 97).map(|i| b'a' + ((i * 7 + n) % 26) as u8));
    v
}

#[test]
fn twenty_writers_and_twenty_readers_on_a_capacity_one_channel_never_read_nothing() {
    let s = Scratch::new("ch-concurrent");
    let port = free_port();
    let node = start_node(&s, "n1", port, "");
    let publish_one = move |n: usize| {
        let r = publish(
            port,
            "application/octet-stream; cid=LATEST",
            Some("ann:annpw"),
            &product(n),
        );
        assert_eq!(r.status, 201, "publisher {n}: {}", r.head);
    };
    publish_one(999);
    // several seconds of replacing and reading, bounded in count too
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let writers: Vec<_> = (0..20)
        .map(|w| {
            std::thread::spawn(move || {
                let mut n = 0;
                while std::time::Instant::now() < until && n < 200 {
                    publish_one((w * 37 + n) % 999);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let readers: Vec<_> = (0..20)
        .map(|k| {
            std::thread::spawn(move || {
                let mut reads = 0;
                while std::time::Instant::now() < until && reads < 2000 {
                    reads += 1;
                    if k % 2 == 0 {
                        // the old or the new, one whole product, never none
                        let r = get(port, "/channels/LATEST/products");
                        assert_eq!(r.status, 200, "an unconditional read: {}", r.head);
                        assert!(
                            !r.header("Content-Type").unwrap().starts_with("multipart"),
                            "capacity 1: one product per answer"
                        );
                        let n: usize = std::str::from_utf8(&r.body[8..11])
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert_eq!(r.body, product(n), "a whole product {n}, nothing mixed");
                    } else {
                        let d = get(port, "/channels/LATEST").json();
                        assert_eq!(
                            d["products"].as_array().map(Vec::len),
                            Some(1),
                            "the description lists one product: {d}"
                        );
                    }
                }
                reads
            })
        })
        .collect();
    let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let all = std::fs::read_dir(s.path("n1-data/metcast/LATEST"))
        .unwrap()
        .count();
    assert_eq!(all, 2, "one product and its sidecar, no temporary file");
    let published = node.log_text().matches("channel=LATEST size=").count();
    assert_eq!(published, written + 1);
    assert!(
        written > 20 && reads > 20,
        "{written} written, {reads} read"
    );
}

#[test]
fn sigkill_mid_upload_leaves_nothing_visible() {
    let s = Scratch::new("ch-sigkill");
    let port = free_port();
    let mut node = start_node(&s, "n1", port, "");
    let before = publish(port, "text/plain; cid=MEMO", None, b"before").oid();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"POST /taker HTTP/1.1\r\nContent-Type: text/plain; cid=MEMO\r\nContent-Length: 900000\r\n\r\n")
        .unwrap();
    c.write_all(&[b'z'; 300_000]).unwrap();
    let dir = s.path("n1-data/metcast/MEMO");
    let temp = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
    };
    assert!(wait_until(WAIT, temp), "the upload is being written");
    node.kill9();
    assert_eq!(
        visible_files(&dir),
        std::slice::from_ref(&before),
        "only the product from before"
    );
    node.restart();
    assert!(wait_until(WAIT, || node
        .log_text()
        .matches("serving")
        .count()
        == 2));
    assert!(!temp(), "the partial upload was cleared at start");
    assert!(node.log_text().contains("left by an interrupted upload"));
    let d = get(port, "/channels/MEMO").json();
    assert_eq!(d["products"].as_array().unwrap().len(), 1);
    let after = publish(port, "text/plain; cid=MEMO", None, b"after").oid();
    assert!(
        after > before,
        "OIDs keep growing across restarts: {before} {after}"
    );
}

#[test]
fn multipart_with_a_bad_part_among_good_ones() {
    let s = Scratch::new("ch-multipart");
    let port = free_port();
    let _node = start_node(&s, "n1", port, "");
    let b = "part-boundary-42";
    let mut body = Vec::new();
    for (ct, data) in [
        ("text/plain; cid=MEMO; fname=a.txt", &b"first good"[..]),
        ("text/plain; cid=NOWHERE", b"bad: unknown channel"),
        ("text/plain; fname=nocid", b"bad: no cid"),
        (
            "application/octet-stream; cid=FEED; fname=GRIB1",
            b"second good\r\n--part-boundary-4 almost",
        ),
        ("text/plain; cid=SECRET", b"third good"),
    ] {
        body.extend_from_slice(format!("--{b}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    let auth = basic("dave:davepw");
    let ct = format!("multipart/mixed; boundary={b}");
    let r = http(
        port,
        "POST",
        "/rest/taker",
        &[("Content-Type", &ct), ("Authorization", &auth)],
        &body,
    );
    assert_eq!(r.status, 207, "{}", String::from_utf8_lossy(&r.body));
    let results = r.json()["results"].as_array().unwrap().clone();
    let statuses: Vec<u64> = results
        .iter()
        .map(|x| x["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 404, 400, 201, 201]);
    assert_eq!(results[1]["cid"], "NOWHERE");
    let oid = results[0]["oid"].as_str().unwrap();
    let g = get(port, &format!("/channels/MEMO/{oid}"));
    assert_eq!(g.body, b"first good");
    assert_eq!(
        std::fs::read(s.path("n1-feed/GRIB1")).unwrap(),
        b"second good\r\n--part-boundary-4 almost"
    );
    // part by part as it arrives: the first part is stored while the second is still
    // on its way
    let first = format!("--{b}\r\nContent-Type: text/plain; cid=MEMO; n=early\r\n\r\nearly\r\n--{b}\r\nContent-Type: text/plain; cid=MEMO\r\n\r\nla");
    let rest = format!("te\r\n--{b}--\r\n");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(
        format!(
            "POST /taker HTTP/1.1\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{first}",
            first.len() + rest.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let early_stored = wait_until(WAIT, || {
        let d = get(port, "/channels/MEMO").json();
        d["products"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["attributes"]["n"] == "early")
    });
    assert!(
        early_stored,
        "the first part is stored before the request ends"
    );
    c.write_all(rest.as_bytes()).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let all_good = format!("--{b}\r\nContent-Type: text/plain; cid=MEMO\r\n\r\nx\r\n--{b}--\r\n");
    let r = http(
        port,
        "POST",
        "/taker",
        &[("Content-Type", &ct)],
        all_good.as_bytes(),
    );
    assert_eq!(r.status, 201);
}

/// The parts of a multipart/mixed answer: (Content-Type, body).
fn parts(r: &Resp) -> Vec<(String, Vec<u8>)> {
    let ct =
        meshnode::core::mediatype::MediaType::parse(&r.header("Content-Type").unwrap()).unwrap();
    let b = ct.param("boundary").unwrap().to_string();
    let mut m = meshnode::http::multipart::Multipart::new(&r.body[..], &b).unwrap();
    let mut out = Vec::new();
    while let Some(h) = m.next_part().unwrap() {
        let mut data = Vec::new();
        m.part().read_to_end(&mut data).unwrap();
        out.push((
            h.iter()
                .find(|(k, _)| k == "content-type")
                .unwrap()
                .1
                .clone(),
            data,
        ));
    }
    out
}

#[test]
fn cut_off_retrieval() {
    let s = Scratch::new("ch-cutoff");
    let port = free_port();
    let _node = start_node(&s, "n1", port, "");
    assert_eq!(
        get(port, "/channels/MEMO/products").status,
        204,
        "empty, and no condition to answer 304 to"
    );
    publish(port, "text/plain; cid=MEMO; n=1", None, b"one");
    let first = get(port, "/channels/MEMO/products");
    assert_eq!((first.status, first.body.as_slice()), (200, &b"one"[..]));
    let cut = first.header("Last-Modified").unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // HTTP dates count whole seconds
    publish(port, "text/plain; cid=MEMO; n=2", None, b"two");
    publish(port, "text/plain; cid=MEMO; n=3", None, b"three");
    // If-Modified-Since is inclusive of its second: "one" again (the poller skips it
    // by its oid), never a product of that second missed
    let newer = http(
        port,
        "GET",
        "/channels/MEMO/products",
        &[("If-Modified-Since", &cut)],
        b"",
    );
    assert_eq!(newer.status, 200);
    let got = parts(&newer);
    let bodies: Vec<&[u8]> = got.iter().map(|p| p.1.as_slice()).collect();
    assert_eq!(bodies, [&b"one"[..], b"two", b"three"], "{}", newer.head);
    assert!(got[2].0.contains("n=3") && got[2].0.contains("cid=MEMO; oid="));
    let all = get(port, "/channels/MEMO/products?since=0");
    assert_eq!(parts(&all).len(), 3);
    // ?since= is exact: after the pubTime given, with its fraction
    let listed = get(port, "/channels/MEMO").json();
    let pub_time = listed["products"][0]["pubTime"]
        .as_str()
        .unwrap()
        .to_string();
    let q = get(port, &format!("/channels/MEMO/products?since={pub_time}"));
    let bodies: Vec<Vec<u8>> = parts(&q).into_iter().map(|p| p.1).collect();
    assert_eq!(
        bodies,
        [b"two".to_vec(), b"three".to_vec()],
        "since={pub_time}"
    );
    let newest = listed["products"][2]["pubTime"].as_str().unwrap();
    let none = get(port, &format!("/channels/MEMO/products?since={newest}"));
    assert_eq!(none.status, 304, "nothing after the newest");
    assert_eq!(get(port, "/channels/MEMO/products?since=soon").status, 400);
}

#[test]
fn a_poller_with_a_cursor_misses_nothing_of_a_burst() {
    // a multipart shove lands in one second: pollers must be able to say exactly
    // where they left off
    let s = Scratch::new("ch-cursor");
    let port = free_port();
    let _node = start_node(&s, "n1", port, "");
    // MEMO keeps 3: two products a round, read between rounds
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut oids = Vec::new();
    for round in 0..3 {
        for k in 0..2 {
            let body = format!("burst {round}-{k}");
            let r = publish(port, "text/plain; cid=MEMO", None, body.as_bytes());
            assert_eq!(r.status, 201);
            oids.push(r.oid());
        }
        let path = if cursor.is_empty() {
            "/channels/MEMO/products".to_string()
        } else {
            format!("/channels/MEMO/products?after={cursor}")
        };
        let r = get(port, &path);
        assert_eq!(r.status, 200, "round {round}: {}", r.head);
        let got = if r
            .header("Content-Type")
            .is_some_and(|c| c.starts_with("multipart/"))
        {
            parts(&r)
        } else {
            vec![(r.header("Content-Type").unwrap(), r.body.clone())]
        };
        for (head, body) in got {
            let oid = head
                .split("oid=")
                .nth(1)
                .and_then(|o| o.split([';', '\r', '\n', ' ']).next())
                .unwrap()
                .to_string();
            seen.push(String::from_utf8(body).unwrap());
            cursor = oid;
        }
    }
    let want: Vec<String> = (0..3)
        .flat_map(|r| (0..2).map(move |k| format!("burst {r}-{k}")))
        .collect();
    assert_eq!(seen, want, "each product once, none missed");
    assert_eq!(&cursor, oids.last().unwrap());
    let after_last = get(port, &format!("/channels/MEMO/products?after={cursor}"));
    assert_eq!(after_last.status, 304);
    assert_eq!(get(port, "/channels/MEMO/products?after=../x").status, 400);
}

#[test]
fn delete_rights() {
    let s = Scratch::new("ch-delete");
    let port = free_port();
    let node = start_node(&s, "n1", port, "");
    let oid = publish(port, "text/plain; cid=LATEST", Some("ann:annpw"), b"x").oid();
    let path = format!("/rest/taker/channels/LATEST/{oid}");
    let (dave, eve) = (basic("dave:davepw"), basic("eve:evepw"));
    assert_eq!(http(port, "DELETE", &path, &[], b"").status, 401);
    // a guessed password: refused, and in the log with the name tried
    let guess = basic("dave:guess");
    assert_eq!(
        http(port, "DELETE", &path, &[("Authorization", &guess)], b"").status,
        401
    );
    let log = node.log_text();
    assert!(
        log.contains(&format!("user=anonymous channel=LATEST delete {oid} 401"))
            && log.contains(&format!(
                "channel=LATEST delete {oid} 401 authentication failed for \"dave\""
            )),
        "every refused DELETE leaves a line: {log}"
    );
    assert_eq!(
        http(port, "DELETE", &path, &[("Authorization", &eve)], b"").status,
        403
    );
    let gone = http(
        port,
        "DELETE",
        &format!("/rest/taker/channels/LATEST/1-{}", "x"),
        &[("Authorization", &dave)],
        b"",
    );
    assert_eq!(gone.status, 404);
    assert_eq!(
        http(
            port,
            "DELETE",
            "/rest/taker/channels/NOPE/1",
            &[("Authorization", &dave)],
            b""
        )
        .status,
        404
    );
    assert_eq!(
        http(port, "DELETE", &path, &[("Authorization", &dave)], b"").status,
        204
    );
    assert_eq!(get(port, &format!("/channels/LATEST/{oid}")).status, 404);
    assert_eq!(
        http(port, "DELETE", &path, &[("Authorization", &dave)], b"").status,
        404
    );
    // the reference's form, on the open taker's path, with credentials
    let oid = publish(port, "text/plain; cid=MEMO", None, b"y").oid();
    let r = http(
        port,
        "DELETE",
        &format!("/taker/channels/MEMO/{oid}"),
        &[("Authorization", &dave)],
        b"",
    );
    assert_eq!(r.status, 204);
    assert!(visible_files(&s.path("n1-data/metcast/MEMO")).is_empty());
}

#[test]
fn two_nodes_shove_on_a_reaches_b_and_delete_on_a_removes_it_on_b() {
    let s = Scratch::new("ch-two-nodes");
    let a_broker = Broker::start(&s.path("a-broker"));
    let b_broker = Broker::start(&s.path("b-broker"));
    let (a_port, b_port) = (free_port(), free_port());
    let a = start_node(
        &s,
        "a",
        a_port,
        &format!("post-broker {}\n", a_broker.url()),
    );
    // B follows A's broker, downloads from A's server, and takes the same channels
    let b = start_node(
        &s,
        "b",
        b_port,
        &format!(
            "post-broker {}\nflow from-a\nbroker {}\n",
            b_broker.url(),
            a_broker.url()
        ),
    );
    assert!(
        wait_until(WAIT, || b.log_text().contains("subscribed")),
        "{}",
        b.log_text()
    );
    let watch_b = Watcher::start(&b_broker, "xpublic/#");

    let w = s.path("w-shove.conf");
    std::fs::write(
        &w,
        format!("# HTTP uploader's configuration\nSERVER_URL = http://127.0.0.1:{a_port}/rest/taker\nPROXY_ENABLE = FALSE\nPROXY_NAME = proxy.host\nPROXY_PORT = 80\nAUTH_ENABLE = true\nAUTH_CREDENTIAL = dave:davepw\n"),
    )
    .unwrap();
    let memo = s.path("memo1.txt");
    let big = s.path("chart.bin");
    std::fs::write(&memo, b"Publishing is done with w-shove.\n").unwrap();
    std::fs::write(&big, product(7).repeat(20)).unwrap(); // over inline-max: downloaded
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshnode"))
        .args(["shove", w.to_str().unwrap()])
        .arg(r#"text/plain; cid=MEMO;fname=memo1.txt;topic="How to publish";author=Dave"#)
        .args([&memo, &big])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let oids: Vec<String> = stdout
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(oids.len(), 2, "{stdout}");

    // on B: the same bytes and the same attributes, and B announces them on
    assert!(
        wait_until(WAIT, || watch_b.count() >= 2),
        "{}",
        b.log_text()
    );
    for (oid, file) in oids.iter().zip([&memo, &big]) {
        let on_b = http(b_port, "GET", &format!("/channels/MEMO/{oid}"), &[], b"");
        assert_eq!(on_b.status, 200, "{oid} on B: {}", b.log_text());
        let on_a = http(a_port, "GET", &format!("/channels/MEMO/{oid}"), &[], b"");
        assert_eq!(on_b.body, std::fs::read(file).unwrap());
        assert_eq!(on_b.header("Content-Type"), on_a.header("Content-Type"));
    }
    let d = http(b_port, "GET", "/channels/MEMO", &[], b"").json();
    let p = &d["products"][0];
    assert_eq!(p["attributes"]["topic"], "How to publish");
    assert_eq!(p["attributes"]["author"], "Dave");
    assert_eq!(p["publisher"], "dave");
    let rel = format!("metcast/MEMO/{}", oids[0]);
    let announced = watch_b.for_rel(&rel);
    assert_eq!(announced.len(), 1, "B announced it once");
    let sha = |p: &Path| {
        meshnode::core::integrity::digest_of(
            meshnode::core::integrity::Method::Sha512,
            &std::fs::read(p).unwrap(),
        )
        .unwrap()
        .to_base64()
    };
    assert_eq!(
        announced[0]["integrity"]["value"],
        sha(&memo).as_str(),
        "the same checksum"
    );
    assert_eq!(announced[0]["integrity"]["method"], "sha512");

    // DELETE on A removes it on B
    let dave = basic("dave:davepw");
    let del = http(
        a_port,
        "DELETE",
        &format!("/rest/taker/channels/MEMO/{}", oids[0]),
        &[("Authorization", &dave)],
        b"",
    );
    assert_eq!(del.status, 204);
    let b_dir = s.path("b-data/metcast/MEMO");
    // the body goes first, then its sidecar
    let sidecar = b_dir.join(format!(".{}.meta", oids[0]));
    assert!(
        wait_until(WAIT, || !b_dir.join(&oids[0]).exists() && !sidecar.exists()),
        "body and sidecar removed on B: {}",
        b.log_text()
    );
    assert_eq!(
        http(
            b_port,
            "GET",
            &format!("/channels/MEMO/{}", oids[0]),
            &[],
            b""
        )
        .status,
        404
    );
    assert!(b_dir.join(&oids[1]).exists(), "the other product stays");
    // an eviction on A (capacity 3) travels as a removal too
    for i in 0..3 {
        publish(
            a_port,
            "text/plain; cid=MEMO",
            None,
            format!("more {i}").as_bytes(),
        );
    }
    assert!(
        wait_until(WAIT, || !b_dir.join(&oids[1]).exists()
            && visible_files(&b_dir).len() == 3),
        "{:?} {}",
        visible_files(&b_dir),
        b.log_text()
    );
    drop(a);
}

#[test]
fn a_hostile_content_type_from_the_mesh_never_reaches_a_header() {
    let s = Scratch::new("ch-hostile");
    let up = Broker::start(&s.path("up"));
    let port = free_port();
    let node = start_node(
        &s,
        "n1",
        port,
        &format!("post-broker none\nflow up\nbroker {}\n", up.url()),
    );
    assert!(wait_until(WAIT, || node.log_text().contains("subscribed")));
    let oid = "1795438220220639-elsewhere";
    let rel = format!("metcast/MEMO/{oid}");
    let mut m: serde_json::Value =
        serde_json::from_slice(&announcement("http://127.0.0.1:9", &rel, b"evil\n", true)).unwrap();
    m["contentType"] = "text/plain; cid=MEMO\r\nX-Evil: 1".into();
    let good = "1795438220220640-elsewhere";
    let good_rel = format!("metcast/MEMO/{good}");
    let mut g: serde_json::Value = serde_json::from_slice(&announcement(
        "http://127.0.0.1:9",
        &good_rel,
        b"fine\n",
        true,
    ))
    .unwrap();
    g["contentType"] = "text/plain; cid=OTHER; oid=forged; author=\"A. N. Other\"".into();
    publish_raw(
        &up,
        &[
            (topic_of(&rel), serde_json::to_vec(&m).unwrap()),
            (topic_of(&good_rel), serde_json::to_vec(&g).unwrap()),
        ],
    );
    let dir = s.path("n1-data/metcast/MEMO");
    assert!(
        wait_until(WAIT, || dir.join(good).exists()),
        "{}",
        node.log_text()
    );
    let r = get(port, &format!("/channels/MEMO/{oid}"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"evil\n"[..]));
    assert!(r.header("X-Evil").is_none(), "{}", r.head);
    assert_eq!(
        r.header("Content-Type").unwrap(),
        format!("application/octet-stream; cid=MEMO; oid={oid}")
    );
    assert!(node.log_text().contains("contentType refused"));
    // a valid one keeps its attributes, with the cid and oid of its relPath
    let r = get(port, &format!("/channels/MEMO/{good}"));
    assert_eq!(
        r.header("Content-Type").unwrap(),
        format!("text/plain; cid=MEMO; oid={good}; author=\"A. N. Other\"")
    );
}

/// A CONNECT proxy on loopback (what `shove` speaks to a proxy); counts the tunnels.
fn connect_proxy() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let tunnels = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = tunnels.clone();
    std::thread::spawn(move || {
        for c in l.incoming().take(4) {
            let mut c = c.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap() == 1 {
                head.push(b[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let target = head
                .strip_prefix("CONNECT ")
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            let up = TcpStream::connect(target).unwrap();
            t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .unwrap();
            let (mut c2, mut up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut c2, &mut up2));
            std::thread::spawn(move || {
                let mut up = up;
                std::io::copy(&mut up, &mut c)
            });
        }
    });
    (port, tunnels)
}

#[test]
fn shove_through_a_proxy_and_its_exit_statuses() {
    let s = Scratch::new("ch-proxy");
    let port = free_port();
    let _node = start_node(&s, "n1", port, "");
    let (proxy, tunnels) = connect_proxy();
    let conf = s.path("w.conf");
    std::fs::write(
        &conf,
        format!(
            "SERVER_URL = http://127.0.0.1:{port}/rest/taker\nPROXY_ENABLE = TRUE\n\
             PROXY_NAME = 127.0.0.1\nPROXY_PORT = {proxy}\nAUTH_ENABLE = true\nAUTH_CREDENTIAL = dave:davepw\n"
        ),
    )
    .unwrap();
    let file = s.path("memo.txt");
    std::fs::write(&file, b"via the proxy").unwrap();
    let shove = |ct: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_meshnode"))
            .args(["shove", conf.to_str().unwrap(), ct, file.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let ok = shove("text/plain; cid=MEMO");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        tunnels.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "it went through the proxy"
    );
    let d = get(port, "/channels/MEMO").json();
    assert_eq!(d["products"][0]["attributes"]["fname"], "memo.txt");
    let refused = shove("text/plain; cid=NOPE");
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("memo.txt: refused: HTTP 404"), "{err}");
    let usage = shove("text/plain");
    assert_eq!(usage.status.code(), Some(2), "no cid: a usage error");
}

#[test]
fn a_product_whose_announcement_died_with_the_node_is_announced_at_restart() {
    let s = Scratch::new("ch-reannounce");
    let mut broker = Broker::start(&s.path("broker"));
    let port = free_port();
    broker.stop(); // the announcement can only wait in memory
    let mut node = start_node(&s, "n1", port, &format!("post-broker {}\n", broker.url()));
    let oid = publish(port, "text/plain; cid=MEMO; author=Dave", None, b"memo\n").oid();
    let feed = publish(port, "text/plain; cid=FULL", None, b"x");
    assert_eq!(feed.status, 507);
    node.kill9();
    broker.forget_and_start();
    let watch = Watcher::start(&broker, "xpublic/#");
    node.restart();
    let rel = format!("metcast/MEMO/{oid}");
    assert!(
        wait_until(WAIT, || watch.for_rel(&rel).len() == 1),
        "{}",
        node.log_text()
    );
    let m = &watch.for_rel(&rel)[0];
    assert_eq!(
        m["contentType"],
        format!("text/plain; cid=MEMO; oid={oid}; author=Dave").as_str()
    );
    assert_eq!(m["source"], "anonymous");
    assert!(node
        .log_text()
        .contains("1 products published here announced again"));
}

#[test]
fn a_form_upload_is_named_after_its_file() {
    // what `curl -F 'file=@memo.txt;type=text/plain; cid=MEMO' .../taker` sends
    let s = Scratch::new("ch-form");
    let port = free_port();
    let _node = start_node(&s, "n1", port, "");
    let b = "------------------------curlboundary";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"memo.txt\"\r\n\
         Content-Type: text/plain; cid=MEMO\r\n\r\nfrom a form\r\n--{b}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={b}");
    let r = http(
        port,
        "POST",
        "/taker",
        &[("Content-Type", &ct)],
        body.as_bytes(),
    );
    assert!(r.status == 201 || r.status == 207, "{}", r.head);
    let d = get(port, "/channels/MEMO").json();
    assert_eq!(d["products"][0]["attributes"]["fname"], "memo.txt", "{d}");
}

#[test]
fn a_removal_whose_announcement_died_with_the_node_is_announced_at_restart() {
    let s = Scratch::new("ch-removal-journal");
    let mut broker = Broker::start(&s.path("broker"));
    let port = free_port();
    broker.stop(); // the announcements can only wait in memory (and in the journal)
    let mut node = start_node(&s, "n1", port, &format!("post-broker {}\n", broker.url()));
    let dave = Some("dave:davepw");
    // LATEST keeps one: the second evicts the first; then a DELETE of the second
    let first = publish(port, "text/plain; cid=LATEST", dave, b"1").oid();
    let second = publish(port, "text/plain; cid=LATEST", dave, b"2").oid();
    let path = format!("/rest/taker/channels/LATEST/{second}");
    let auth = basic("dave:davepw");
    assert_eq!(
        http(port, "DELETE", &path, &[("Authorization", &auth)], b"").status,
        204
    );
    node.kill9();
    broker.forget_and_start();
    let watch = Watcher::start(&broker, "xpublic/#");
    node.restart();
    for oid in [&first, &second] {
        let rel = format!("metcast/LATEST/{oid}");
        assert!(
            wait_until(WAIT, || watch
                .for_rel(&rel)
                .iter()
                .any(|m| m.get("fileOp").is_some())),
            "removal of {rel} announced after the restart: {:?}\n{}",
            watch.for_rel(&rel),
            node.log_text()
        );
    }
    assert!(
        node.log_text()
            .contains("2 removals of the last run announced again"),
        "{}",
        node.log_text()
    );
    // acknowledged now: a second restart has nothing left to make good
    let journal = s.path("n1-data.state/channels/removals.log");
    assert!(
        wait_until(WAIT, || std::fs::metadata(&journal)
            .is_ok_and(|m| m.len() == 0)),
        "the journal is emptied once the broker acknowledged"
    );
}

#[test]
fn a_slow_upload_overtaken_by_a_quick_one_is_the_one_kept() {
    let s = Scratch::new("ch-order");
    let port = free_port();
    let _node = start_node(&s, "n1", port, "");
    let dave = Some("dave:davepw");
    // the slow one begins: its head and half its body
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = basic("dave:davepw");
    let head = format!(
        "POST /rest/taker HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: {auth}\r\n\
         Content-Type: text/plain; cid=LATEST\r\nContent-Length: 10\r\n\r\nslow "
    );
    slow.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // a quick one, begun later, accepted first
    let quick = publish(port, "text/plain; cid=LATEST", dave, b"quick");
    assert_eq!(quick.status, 201);
    // the slow one ends: accepted last, so it is the one kept
    slow.write_all(b"done!").unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let location = answer
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .unwrap()
        .to_string();
    let got = get(port, &location);
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"slow done!"[..]),
        "a 201's Location answers"
    );
    let list = get(port, "/channels/LATEST").json();
    assert_eq!(
        list["products"][0]["oid"].as_str(),
        location.rsplit('/').next()
    );
    assert_eq!(
        http(
            port,
            "GET",
            &format!("/channels/LATEST/{}", quick.oid()),
            &[],
            b""
        )
        .status,
        404,
        "the quick one, accepted first, gave way"
    );
}

#[test]
fn a_feed_keeps_extensions_last_and_partial_uploads_out_of_sight() {
    let s = Scratch::new("ch-feed-names");
    let port = free_port();
    let _node = start_node(&s, "n1", port, "");
    let dave = Some("dave:davepw");
    for body in [&b"first"[..], b"second"] {
        let r = publish(
            port,
            "application/octet-stream; cid=FEED; fname=MTR50.SRVR",
            dave,
            body,
        );
        assert_eq!(r.status, 201, "{}", r.head);
    }
    let names: Vec<String> = std::fs::read_dir(s.path("n1-feed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // FULL's directory, and its incoming beside it, nest in FEED's in this config
        .filter(|n| !n.starts_with("full") && n != ".full.incoming")
        .collect();
    assert_eq!(
        names.len(),
        2,
        "{names:?}: nothing else in the watched directory"
    );
    assert!(names.iter().any(|n| n == "MTR50.SRVR"), "{names:?}");
    let second = names
        .iter()
        .find(|n| *n != "MTR50.SRVR")
        .expect("the second under another name");
    assert!(
        second.starts_with("MTR50.") && second.ends_with(".SRVR"),
        "a decoder watching *.SRVR sees the second: {names:?}"
    );
    assert_eq!(
        std::fs::read(s.path("n1-feed").join(second)).unwrap(),
        b"second"
    );
    assert!(
        s.path(".n1-feed.incoming").is_dir(),
        "partial uploads wait beside it"
    );
}

#[test]
fn a_restricted_channel_is_read_by_its_readers_only_whichever_path_and_stays_here() {
    let s = Scratch::new("ch-read-rights");
    let broker = Broker::start(&s.path("broker"));
    let watch = Watcher::start(&broker, "xpublic/#");
    let port = free_port();
    let _node = start_node(&s, "n1", port, &format!("post-broker {}\n", broker.url()));
    let dave = Some("dave:davepw");
    let secret = publish(port, "text/plain; cid=SECRET", dave, b"for dave").oid();
    let memo = publish(port, "text/plain; cid=MEMO", None, b"for all").oid();
    let tree = format!("/metcast/SECRET/{secret}");
    let (d, a) = (basic("dave:davepw"), basic("ann:annpw"));
    // the tree path, as the channel path: to its readers only
    assert_eq!(get_with(port, &tree, None).status, 401);
    assert_eq!(get_with(port, &tree, Some(&a)).status, 403);
    let ok = get_with(port, &tree, Some(&d));
    assert_eq!((ok.status, ok.body.as_slice()), (200, &b"for dave"[..]));
    // around it: percent-encoding, the directory, other methods
    let encoded = format!("/metcast/SEC%52ET/{secret}");
    assert_eq!(get_with(port, &encoded, None).status, 401, "{encoded}");
    assert_eq!(get_with(port, "/metcast/SECRET/", None).status, 401);
    assert_eq!(get_with(port, "/metcast/SECRET/", Some(&d)).status, 404);
    // an open channel's products stay on the file server, for anyone
    let open = get_with(port, &format!("/metcast/MEMO/{memo}"), None);
    assert_eq!((open.status, open.body.as_slice()), (200, &b"for all"[..]));
    // and only the open one goes to the mesh
    let memo_rel = format!("metcast/MEMO/{memo}");
    assert!(wait_until(WAIT, || watch.for_rel(&memo_rel).len() == 1));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        watch
            .for_rel(&format!("metcast/SECRET/{secret}"))
            .is_empty(),
        "a channel with restricted readers is not announced"
    );
}

fn get_with(port: u16, path: &str, auth: Option<&str>) -> Resp {
    match auth {
        Some(a) => http(port, "GET", path, &[("Authorization", a)], b""),
        None => get(port, path),
    }
}

#[test]
fn a_body_sent_at_ten_bytes_a_second_is_cut_off() {
    let s = Scratch::new("ch-slow-body");
    let port = free_port();
    let node = start_node(&s, "n1", port, "");
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    slow.write_all(
        b"POST /taker HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain; cid=MEMO\r\nContent-Length: 1000\r\n\r\n",
    )
    .unwrap();
    let mut w = slow.try_clone().unwrap();
    // the whole body at this pace would take 100 s
    let dribble = std::thread::spawn(move || {
        for _ in 0..100 {
            if w.write_all(b"0123456789").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // others are taken meanwhile
    assert_eq!(
        publish(port, "text/plain; cid=MEMO", None, b"quick").status,
        201
    );
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("too slow"), "{answer}");
    assert!(
        node.log_text()
            .contains("408 request body slower than 256 bytes/s"),
        "{}",
        node.log_text()
    );
    let d = get(port, "/channels/MEMO").json();
    let products = d["products"].as_array().unwrap();
    assert_eq!(products.len(), 1, "only the quick one: {d}");
    dribble.join().unwrap();
}

#[test]
fn products_announced_before_a_restart_or_a_sigkill_are_not_announced_again() {
    let s = Scratch::new("ch-once");
    let broker = Broker::start(&s.path("broker"));
    let watch = Watcher::start(&broker, "xpublic/#");
    let port = free_port();
    let mut node = start_node(&s, "n1", port, &format!("post-broker {}\n", broker.url()));
    for i in 0..3 {
        let r = publish(
            port,
            "text/plain; cid=MEMO",
            None,
            format!("memo {i}\n").as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.head);
    }
    assert!(
        wait_until(WAIT, || watch.count() == 3),
        "{}",
        node.log_text()
    );
    // the announcements were taken by the broker: journaled (from the PUBACKs or the
    // audit session) whether the node stops cleanly or is killed
    for kill in [false, true] {
        if kill {
            node.kill9();
        } else {
            assert_eq!(node.term(), Some(0));
        }
        let before = node
            .log_text()
            .matches("products published here announced again")
            .count();
        node.restart();
        assert!(
            wait_until(WAIT, || node
                .log_text()
                .matches("products published here announced again")
                .count()
                > before),
            "{}",
            node.log_text()
        );
        assert!(
            node.log_text()
                .contains("0 products published here announced again"),
            "{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            watch.count(),
            3,
            "announced once each: {:#?}",
            watch.snapshot()
        );
    }
}

/// A POST with neither Content-Length nor chunking, its client half-closing after the
/// head (hardening issue, item 6): answered with a refusal naming what is missing, not
/// dropped.
#[test]
fn an_empty_half_closed_post_is_answered() {
    use std::io::{Read, Write};
    let s = Scratch::new("ch-halfclose");
    let port = free_port();
    let _node = start_node(&s, "n1", port, "");
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    c.write_all(b"POST /taker HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain; cid=MEMO\r\n\r\n")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 411"), "no refusal: {answer:?}");
    assert!(answer.contains("Content-Length"), "{answer}");
}
