//! Certificates made by the tests with the openssl command: a test CA and a server
//! certificate for 127.0.0.1 (HTTPS on the node's server, MQTTS brokers).

use std::path::Path;

pub fn openssl(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A test CA (`ca.pem`) and a server certificate it signs for 127.0.0.1 (`cert.pem`,
/// `key.pem`), named `cn`.
pub fn make_cert(dir: &Path, cn: &str) {
    if !dir.join("ca.pem").exists() {
        let mut a = vec![
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=meshnode test CA",
        ];
        a.extend(EC);
        a.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&a, dir);
    }
    let subj = format!("/CN={cn}");
    let mut a = vec!["req", "-nodes", "-subj", &subj];
    a.extend(EC);
    a.extend(["-keyout", "key.pem", "-out", "leaf.csr"]);
    openssl(&a, dir);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ],
        dir,
    );
}
