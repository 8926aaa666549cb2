//! nginx (Debian's nginx-light) over a directory, as a peer or a WIS2 cache would serve
//! it: plain http, and https with a certificate of the test's making when asked.

use super::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// An nginx process of the test's own, killed at the end.
pub struct Nginx {
    child: Child,
    pub port: u16,
    /// The https port, when started with a certificate.
    pub tls_port: Option<u16>,
}

impl Nginx {
    /// nginx serving `root` at `/` from `prefix` (its config, logs and pid), closing a
    /// connection after `keepalive_requests`; over TLS too with `tls` (cert, key).
    pub fn start(
        root: &Path,
        prefix: &Path,
        keepalive_requests: usize,
        tls: Option<(&Path, &Path)>,
    ) -> Nginx {
        std::fs::create_dir_all(root).unwrap();
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        let port = free_port();
        let tls_port = tls.map(|_| free_port());
        let tls_server = match (tls, tls_port) {
            (Some((cert, key)), Some(p)) => format!(
                "server {{ listen 127.0.0.1:{p} ssl; ssl_certificate {}; ssl_certificate_key {}; root {}; }}\n",
                cert.display(),
                key.display(),
                root.display()
            ),
            _ => String::new(),
        };
        let conf = prefix.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
                 error_log {p}/logs/error.log;\nevents {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  keepalive_requests {keepalive_requests};\n  client_body_temp_path {p}/body;\n\
                 server {{ listen 127.0.0.1:{port}; root {o}; }}\n{tls_server}}}\n",
                p = prefix.display(),
                o = root.display()
            ),
        )
        .unwrap();
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| Command::new(b).arg("-v").output().is_ok())
            .expect("nginx (Debian package nginx-light; scripts/test installs it)");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx-light)");
        for p in std::iter::once(port).chain(tls_port) {
            assert!(
                wait_until(10, || std::net::TcpStream::connect(("127.0.0.1", p))
                    .is_ok()),
                "nginx on {p}"
            );
        }
        Nginx {
            child,
            port,
            tls_port,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
