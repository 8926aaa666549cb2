//! Pipelined downloads from the web servers peers run: webfsd, nginx (whose keep-alive
//! request limit closes connections in the middle of a pipeline), `meshnode serve`, and
//! the tests' own server closing after a few answers without saying so. Every file is
//! stored as served, and announced once.

use super::*;
use crate::common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A server process of the test's own, killed at the end.
struct Server(Child);

impl Server {
    fn spawn(cmd: &mut Command, what: &str) -> Server {
        Server(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{what}: {e} (scripts/test installs it)")),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    assert!(
        wait_until(10, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "server on {port}"
    );
}

/// Announces `n` files of `origin` (served at `base`), pipelined 16 at a time over at
/// most 2 connections, and checks each is stored as served and announced once.
fn fetch_all_from(s: &Scratch, origin: &Path, base: &str, n: usize) {
    let (up, _local, watch, dir, node) =
        node_between(s, &["--pipeline", "16", "--host-connections", "2"]);
    let (batch, rels) = files(
        origin,
        base,
        n,
        |i| format!("2026112915/P/f{i}.txt"),
        |i| format!("pipelined {i} {}\n", "p".repeat(i * 7 % 3000)),
        |_| false,
    );
    publish_raw(&up, &batch);
    assert!(
        wait_until(WAIT, || arrived(&dir, &watch, &rels) == (n, n)),
        "from {base}: {:?}\n{}",
        arrived(&dir, &watch, &rels),
        node.log_text()
    );
    for r in &rels {
        assert_eq!(read(&dir, r), read(origin, r), "{r}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(watch.count(), n, "each announced once");
    let log = node.log_text();
    assert!(
        !log.contains("giving up") && !log.contains("mismatch"),
        "{log}"
    );
}

#[test]
fn pipelined_from_webfsd() {
    let s = Scratch::new("pipe-webfsd");
    let origin = s.path("origin");
    std::fs::create_dir_all(&origin).unwrap();
    let port = free_port();
    let _web = Server::spawn(
        Command::new("webfsd")
            .args(["-F", "-4", "-i", "127.0.0.1", "-p", &port.to_string(), "-r"])
            .arg(&origin),
        "webfsd (Debian package webfs)",
    );
    wait_port(port);
    fetch_all_from(&s, &origin, &format!("http://127.0.0.1:{port}"), 200);
}

#[test]
fn pipelined_from_nginx_closing_every_five_requests() {
    let s = Scratch::new("pipe-nginx");
    let origin = s.path("origin");
    let prefix = s.path("nginx");
    std::fs::create_dir_all(&origin).unwrap();
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let port = free_port();
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
             error_log {p}/logs/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 5;\n  client_body_temp_path {p}/body;\n\
             server {{ listen 127.0.0.1:{port}; root {o}; }}\n}}\n",
            p = prefix.display(),
            o = origin.display()
        ),
    )
    .unwrap();
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|b| Command::new(b).arg("-v").output().is_ok())
        .expect("nginx (Debian package nginx-light; scripts/test installs it)");
    let _web = Server::spawn(
        Command::new(nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf),
        "nginx (Debian package nginx-light)",
    );
    wait_port(port);
    fetch_all_from(&s, &origin, &format!("http://127.0.0.1:{port}"), 200);
}

#[test]
fn pipelined_from_meshnode_serve() {
    let s = Scratch::new("pipe-serve");
    let origin = s.path("origin");
    std::fs::create_dir_all(&origin).unwrap();
    let port = free_port();
    let _serve = Node::start(
        &s.path("serve.log"),
        &[
            "serve",
            "--dir",
            &origin.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]
        .map(String::from),
    );
    wait_port(port);
    fetch_all_from(&s, &origin, &format!("http://127.0.0.1:{port}"), 200);
}

#[test]
fn pipelined_from_a_server_that_closes_after_three_answers_without_notice() {
    let s = Scratch::new("pipe-close");
    let origin = s.path("origin");
    let web = WebServer::start(
        &origin,
        WebOptions {
            close_after: Some(3),
            ..WebOptions::default()
        },
    );
    fetch_all_from(&s, &origin, &web.base_url(), 100);
}
