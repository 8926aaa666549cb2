//! A small HTTP server over a directory (slow, stalling, over TLS or counting on
//! demand): it counts requests, and how many a client had sent on a connection before one
//! was answered (more than one: the client pipelines).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Behaviour of the test web server.
#[derive(Clone, Default)]
pub struct WebOptions {
    /// Wait this long before answering each request.
    pub delay: Duration,
    /// On the first request only: send the head and this many body bytes, then stall
    /// for `stall` before the rest.
    pub stall_after: Option<usize>,
    pub stall: Duration,
    /// On the first request only: send the body one byte at a time, this far apart.
    pub trickle: Option<Duration>,
    /// Close each connection after this many answers, whatever was asked on it since
    /// (as servers with a keep-alive request limit do, without saying so).
    pub close_after: Option<usize>,
    /// Speak TLS with this certificate and key (PEM files): an https server.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `delay` only for paths containing this (all paths when `None`).
    pub delay_only: Option<&'static str>,
    /// Answer as an HTTP/1.0 server: no Content-Length, the body up to the close, one
    /// answer per connection.
    pub http10: bool,
    /// Paths containing `.0`: their body is sent `.1` bytes every `.2`.
    pub slow: Option<(&'static str, usize, Duration)>,
}

/// A small HTTP/1.1 server over a directory (GET, keep-alive), counting requests.
pub struct WebServer {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Most requests a connection had received, whole, when one of them was answered.
    pub pipelined: Arc<AtomicUsize>,
    /// Requests received and never answered (`http10`: those behind the one answer).
    pub unanswered: Arc<AtomicUsize>,
    tls: bool,
    stop: Arc<AtomicBool>,
    /// The connections accepted, to be cut when the server stops (an outage, not a
    /// server that keeps its old clients).
    live: Arc<Mutex<HashMap<usize, TcpStream>>>,
}

impl WebServer {
    pub fn start(root: &Path, opts: WebOptions) -> WebServer {
        Self::listen(TcpListener::bind("127.0.0.1:0").unwrap(), root, opts)
    }

    /// A server on a given port (one the test kept free until now).
    pub fn start_on(port: u16, root: &Path) -> WebServer {
        Self::listen(
            TcpListener::bind(("127.0.0.1", port)).unwrap(),
            root,
            WebOptions::default(),
        )
    }

    fn listen(listener: TcpListener, root: &Path, opts: WebOptions) -> WebServer {
        let port = listener.local_addr().unwrap().port();
        let counts = Counts::default();
        let stop = Arc::new(AtomicBool::new(false));
        let tls = opts.tls.as_ref().map(|(c, k)| tls_config(c, k));
        let live = Arc::new(Mutex::new(HashMap::new()));
        let server = WebServer {
            live: live.clone(),
            port,
            requests: counts.requests.clone(),
            connections: counts.connections.clone(),
            pipelined: counts.pipelined.clone(),
            unanswered: counts.unanswered.clone(),
            tls: tls.is_some(),
            stop: stop.clone(),
        };
        let root = root.to_path_buf();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let id = counts.connections.fetch_add(1, Ordering::SeqCst);
                if let Ok(c) = conn.try_clone() {
                    live.lock().unwrap().insert(id, c);
                }
                let (root, counts, opts, tls) =
                    (root.clone(), counts.clone(), opts.clone(), tls.clone());
                let live = live.clone();
                thread::spawn(move || {
                    match tls {
                        Some(cfg) => {
                            if let Ok(c) = rustls::ServerConnection::new(cfg) {
                                serve(rustls::StreamOwned::new(c, conn), &root, &counts, &opts)
                            }
                        }
                        None => serve(conn, &root, &counts, &opts),
                    }
                    // the copy kept to cut it would hold the socket open: the
                    // connection ends when its server is done with it
                    if let Some(c) = live.lock().unwrap().remove(&id) {
                        let _ = c.shutdown(std::net::Shutdown::Both);
                    }
                });
            }
        });
        server
    }

    /// Connections accepted and not yet closed by the client (or cut by the server).
    pub fn open_connections(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/data", self.port)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for (_, c) in self.live.lock().unwrap().drain() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[derive(Clone, Default)]
struct Counts {
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    pipelined: Arc<AtomicUsize>,
    unanswered: Arc<AtomicUsize>,
}

fn tls_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(cfg)
}

/// Whole request heads in `buf` (ended by an empty line).
fn heads_in(buf: &[u8]) -> usize {
    buf.windows(4).filter(|w| w == b"\r\n\r\n").count()
}

/// A connection the server can end its side of (an HTTP/1.0 body ends with the close,
/// and closing with requests unread would reset the connection under the body).
trait Conn: Read + Write {
    fn half_close(&mut self);
}

impl Conn for TcpStream {
    fn half_close(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Conn for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn half_close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }
}

fn serve(conn: impl Conn, root: &Path, counts: &Counts, opts: &WebOptions) {
    let requests = &counts.requests;
    let mut reader = BufReader::with_capacity(64 * 1024, conn);
    let mut answered = 0;
    loop {
        if opts.close_after == Some(answered) {
            return;
        }
        answered += 1;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        // this one, and those already here behind it
        let depth = 1 + heads_in(reader.buffer());
        counts.pipelined.fetch_max(depth, Ordering::SeqCst);
        let out = reader.get_mut();
        let nth = requests.fetch_add(1, Ordering::SeqCst) + 1;
        let path = line.split_whitespace().nth(1).unwrap_or("/");
        if opts.delay_only.is_none_or(|p| path.contains(p)) {
            thread::sleep(opts.delay);
        }
        let rel = path.trim_start_matches("/data/");
        let file = root.join(rel);
        let resp = match (rel.contains(".."), std::fs::read(&file)) {
            (false, Ok(body)) if opts.http10 => {
                let _ = out.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
                match opts.slow.filter(|(p, _, _)| path.contains(p)) {
                    Some((_, chunk, gap)) => {
                        for piece in body.chunks(chunk.max(1)) {
                            thread::sleep(gap);
                            if out.write_all(piece).is_err() {
                                return;
                            }
                        }
                    }
                    None => {
                        let _ = out.write_all(&body);
                    }
                }
                // the end of the body is the close; what the client sent beyond its
                // first request is read and dropped until it closes too
                out.half_close();
                let (mut rest, mut sink) = (Vec::new(), [0u8; 4096]);
                while let Ok(n @ 1..) = reader.read(&mut sink) {
                    rest.extend_from_slice(&sink[..n]);
                }
                counts
                    .unanswered
                    .fetch_add(heads_in(&rest), Ordering::SeqCst);
                return;
            }
            (false, Ok(body)) => {
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
                if let Some(gap) = opts.trickle.filter(|_| nth == 1) {
                    if out.write_all(&r).is_err() {
                        return;
                    }
                    for b in &body {
                        thread::sleep(gap);
                        if out.write_all(&[*b]).is_err() {
                            return; // the client gave up
                        }
                    }
                    continue;
                }
                match opts.stall_after.filter(|_| nth == 1) {
                    Some(n) => {
                        let n = n.min(body.len());
                        r.extend_from_slice(&body[..n]);
                        if out.write_all(&r).is_err() {
                            return;
                        }
                        thread::sleep(opts.stall);
                        body[n..].to_vec()
                    }
                    None => {
                        r.extend_from_slice(&body);
                        r
                    }
                }
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if out.write_all(&resp).is_err() {
            return;
        }
    }
}

/// A server that accepts connections and never answers (held until dropped).
pub struct MuteServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl MuteServer {
    pub fn start() -> MuteServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                held.extend(conn.ok());
            }
        });
        MuteServer { port, stop }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/data", self.port)
    }
}

impl Drop for MuteServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
