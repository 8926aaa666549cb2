//! A small HTTP server over a directory (slow, stalling or counting on demand).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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
}

/// A small HTTP/1.1 server over a directory (GET, keep-alive), counting requests.
pub struct WebServer {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
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
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, req, st) = (root.to_path_buf(), requests.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (root, req, opts) = (root.clone(), req.clone(), opts.clone());
                thread::spawn(move || serve(conn, &root, &req, &opts));
            }
        });
        WebServer {
            port,
            requests,
            stop,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/data", self.port)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, root: &Path, requests: &AtomicUsize, opts: &WebOptions) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
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
        let nth = requests.fetch_add(1, Ordering::SeqCst) + 1;
        thread::sleep(opts.delay);
        let path = line.split_whitespace().nth(1).unwrap_or("/");
        let rel = path.trim_start_matches("/data/");
        let file = root.join(rel);
        let resp = match (rel.contains(".."), std::fs::read(&file)) {
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
