//! HTTPS on the node's server: a certificate made by the test (openssl), GET, Range, an
//! upload with Basic auth, `meshnode shove` over https, credentials refused over plain
//! HTTP, and a certificate renewed with SIGHUP while a connection stays open.

use crate::common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn cert_der(dir: &Path, file: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.join(file)).unwrap()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection trusting `root` only.
fn connect(port: u16, root: CertificateDer<'static>) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn start(s: &Scratch, plain: u16, tls: u16) -> Node {
    make_cert(&s.0, "first");
    std::fs::create_dir_all(s.path("data/a")).unwrap();
    std::fs::write(s.path("data/a/obs.txt"), b"0123456789").unwrap();
    let pw = meshnode::channels::credentials::hash_line("dave", "davepw", 1000).unwrap();
    std::fs::write(s.path("passwd"), pw + "\n").unwrap();
    let conf = s.path("n.conf");
    std::fs::write(
        &conf,
        format!(
            "dir {d}\nlisten 127.0.0.1:{plain}\nlisten-tls 127.0.0.1:{tls}\n\
             tls-cert {c}\ntls-key {k}\npassword-file {pw}\nnode-id n1\nverbose 2\n\
             channel MEMO\naccess restricted\nwriters dave\n",
            d = s.path("data").display(),
            c = s.path("cert.pem").display(),
            k = s.path("key.pem").display(),
            pw = s.path("passwd").display(),
        ),
    )
    .unwrap();
    let n = Node::start(
        &s.path("n.log"),
        &["run".into(), "--config".into(), conf.display().to_string()],
    );
    assert!(
        wait_until(15, || n.log_text().contains("https://")),
        "{}",
        n.log_text()
    );
    n
}

#[test]
fn https_get_range_upload_shove_and_a_renewed_certificate() {
    let s = Scratch::new("tls");
    let (plain, tls) = (free_port(), free_port());
    let node = start(&s, plain, tls);
    let root = cert_der(&s.0, "ca.pem");
    let first = cert_der(&s.0, "cert.pem");
    let auth = basic("dave:davepw");

    let r = exchange(
        &mut connect(tls, root.clone()),
        "GET",
        "/a/obs.txt",
        &[],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"0123456789"[..]));
    let r = exchange(
        &mut connect(tls, root.clone()),
        "GET",
        "/a/obs.txt",
        &[("Range", "bytes=2-4")],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &b"234"[..]));

    // an upload with credentials: over TLS taken, over plain HTTP refused with a reason
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "text/plain; cid=MEMO"),
    ];
    let up = exchange(
        &mut connect(tls, root.clone()),
        "POST",
        "/rest/taker",
        &headers,
        b"secure",
    );
    assert_eq!(up.status, 201, "{}", up.head);
    let refused = http(plain, "POST", "/rest/taker", &headers, b"in clear");
    assert_eq!(refused.status, 403, "{}", refused.head);
    let why = refused.json()["error"].as_str().unwrap().to_string();
    assert!(why.contains("credentials over plain HTTP refused"), "{why}");
    // the refusal is logged beside the answer, not before it: a moment later
    assert!(
        wait_until(5, || node
            .log_text()
            .contains("403 credentials over plain HTTP refused")),
        "{}",
        node.log_text()
    );
    let reader = [("Authorization", auth.as_str())];
    let memo = || {
        exchange(
            &mut connect(tls, root.clone()),
            "GET",
            "/channels/MEMO",
            &reader,
            b"",
        )
    };
    // plain HTTP without credentials still serves the mesh
    assert_eq!(http(plain, "GET", "/a/obs.txt", &[], b"").status, 200);
    let list = memo();
    assert_eq!(
        list.json()["products"].as_array().unwrap().len(),
        1,
        "the refused one is not kept"
    );

    // meshnode shove over https, trusting the node's certificate (CA_FILE)
    let conf = s.path("w.conf");
    std::fs::write(
        &conf,
        format!(
            "SERVER_URL = https://127.0.0.1:{tls}/rest/taker\nAUTH_ENABLE = true\n\
             AUTH_CREDENTIAL = dave:davepw\nCA_FILE = {}\n",
            s.path("ca.pem").display()
        ),
    )
    .unwrap();
    std::fs::write(s.path("memo.txt"), b"shoved over TLS").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshnode"))
        .args(["shove", conf.to_str().unwrap(), "text/plain; cid=MEMO"])
        .arg(s.path("memo.txt"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = memo();
    assert_eq!(
        list.json()["products"][1]["attributes"]["fname"],
        "memo.txt"
    );

    // a renewed certificate: SIGHUP; a connection opened before keeps working
    let mut before = connect(tls, root.clone());
    let keep = "GET /a/obs.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    use std::io::{Read, Write};
    before.write_all(keep.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = before.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    make_cert(&s.0, "renewed");
    let renewed = cert_der(&s.0, "cert.pem");
    assert_ne!(renewed, first);
    signal(node.child.as_ref().unwrap().id(), "HUP");
    assert!(
        wait_until(10, || node.log_text().contains("loaded again")),
        "{}",
        node.log_text()
    );
    let mut after = connect(tls, root.clone());
    let r = exchange(&mut after, "GET", "/a/obs.txt", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        after.conn.peer_certificates().unwrap()[0],
        renewed,
        "the new certificate is served"
    );
    assert_eq!(
        before.conn.peer_certificates().unwrap()[0],
        first,
        "the old connection kept its certificate"
    );
    before.write_all(keep.as_bytes()).unwrap();
    let n = before.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "and still works after the reload"
    );

    // a broken renewal keeps the certificate in use
    std::fs::write(s.path("cert.pem"), b"not a certificate").unwrap();
    signal(node.child.as_ref().unwrap().id(), "HUP");
    assert!(wait_until(10, || node
        .log_text()
        .contains("TLS reload failed")));
    let mut again = connect(tls, root);
    let r = exchange(&mut again, "GET", "/a/obs.txt", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(again.conn.peer_certificates().unwrap()[0], renewed);
}
