//! Blocking HTTP(S) GET of one announced file, streamed into the store, over the same
//! kept-alive connections as the pipelined batches (one client, one pool): redirects
//! followed (at most `MAX_REDIRECTS`, a relative `Location` too), Basic credentials
//! from the URL, never sent to another origin than the one they came with.

use super::pipeline::Conn;
use super::pool::Pool;
pub use super::transfer::{FetchError, Timeouts, READ_CHUNK};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::io::{self, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Redirects followed for one file at most.
pub const MAX_REDIRECTS: usize = 5;

/// Whether `url` may share a pipelined connection: `http://` or `https://` without
/// credentials in it (those go one by one, with their authorization).
pub fn can_pipeline(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://")) && !split_url(url).0.contains('@')
}

/// A connection that could not be made, worded by its phase (connect, TLS handshake).
pub fn connect_error(e: &io::Error) -> FetchError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => FetchError::Refused,
        io::ErrorKind::TimedOut if e.to_string().starts_with("timeout: ") => {
            FetchError::Transport(e.to_string())
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            FetchError::Transport("timeout: connect".into())
        }
        _ => FetchError::Transport(format!("io: {e}")),
    }
}

/// `scheme://host[:port]` and the path (with its query) of a URL.
pub fn split_url(url: &str) -> (&str, &str) {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => (&url[..after + i], &url[after + i..]),
        None => (url, "/"),
    }
}

/// Where one GET goes: the origin connected to (no credentials in it), the path, and
/// the `Authorization` the URL's credentials make.
#[derive(Debug, PartialEq)]
struct Target {
    origin: String,
    path: String,
    auth: Option<String>,
}

fn target(url: &str) -> Result<Target, FetchError> {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        let scheme = url.split("://").next().unwrap_or_default();
        return Err(FetchError::Transport(format!(
            "URL scheme {scheme:?} is not http or https"
        )));
    }
    let (origin, path) = split_url(url);
    let scheme_end = origin.find("://").map_or(0, |i| i + 3);
    let (auth, hostport) = match origin[scheme_end..].rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let plain = crate::core::relpath::percent_decode(userinfo)
                .unwrap_or_else(|| userinfo.to_string());
            (Some(format!("Basic {}", B64.encode(plain))), hostport)
        }
        None => (None, &origin[scheme_end..]),
    };
    Ok(Target {
        origin: format!("{}{hostport}", &origin[..scheme_end]),
        path: path.to_string(),
        auth,
    })
}

/// The URL a `Location` names, seen from `base` (absolute, scheme-relative,
/// absolute-path or relative to the base's directory; the fragment dropped).
fn resolve(base: &Target, location: &str) -> String {
    let loc = location.split('#').next().unwrap_or_default().trim();
    if loc.contains("://") {
        return loc.to_string();
    }
    if let Some(rest) = loc.strip_prefix("//") {
        let scheme = base.origin.split("://").next().unwrap_or("http");
        return format!("{scheme}://{rest}");
    }
    if loc.starts_with('/') {
        return format!("{}{loc}", base.origin);
    }
    let path = base.path.split('?').next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{}{dir}{loc}", base.origin)
}

/// What one GET gave.
enum Got {
    Body(u64),
    /// A redirect, to the URL in its `Location`.
    Redirect(String),
}

pub struct Fetcher {
    /// Kept-alive connections, `http://` and `https://`, shared with the pipelines.
    pool: Arc<Pool>,
    timeouts: Timeouts,
    stop: Arc<AtomicBool>,
}

impl Fetcher {
    pub fn new(t: Timeouts) -> Fetcher {
        Self::with_stop(t, 4, Arc::new(AtomicBool::new(false)))
    }

    /// A fetcher keeping up to `per_host` idle keep-alive connections per server, that
    /// abandons a transfer in progress once `stop` is set, so a large download never
    /// holds up a shutdown.
    pub fn with_stop(t: Timeouts, per_host: usize, stop: Arc<AtomicBool>) -> Fetcher {
        Fetcher {
            pool: Arc::new(Pool::new(t, per_host)),
            timeouts: t,
            stop,
        }
    }

    /// Another fetcher on the same connection pool (for another thread).
    pub fn share(&self) -> Fetcher {
        Fetcher {
            pool: self.pool.clone(),
            timeouts: self.timeouts,
            stop: self.stop.clone(),
        }
    }

    /// The kept-alive connections.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub fn stop(&self) -> &AtomicBool {
        &self.stop
    }

    /// GETs `url` and copies its body into `sink`; returns the number of bytes.
    pub fn get_into(&mut self, url: &str, sink: &mut impl Write) -> Result<u64, FetchError> {
        let mut t = target(url)?;
        let (first_origin, first_auth) = (t.origin.clone(), t.auth.clone());
        for _ in 0..=MAX_REDIRECTS {
            match self.get_once(&t, sink)? {
                Got::Body(n) => return Ok(n),
                Got::Redirect(location) => {
                    let mut next = target(&resolve(&t, &location))?;
                    // the URL's credentials are for its own origin only
                    if next.auth.is_none() && next.origin == first_origin {
                        next.auth.clone_from(&first_auth);
                    }
                    t = next;
                }
            }
        }
        Err(FetchError::Transport(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// One GET over a kept-alive connection. A connection kept from before that fails
    /// before answering was closed by the server meanwhile: tried again on a new one.
    fn get_once(&mut self, t: &Target, sink: &mut impl Write) -> Result<Got, FetchError> {
        let mut fresh = false;
        loop {
            let mut conn = self
                .pool
                .take(&t.origin, fresh)
                .map_err(|e| connect_error(&e))?;
            match self.exchange(&mut conn, t, sink) {
                Err(FetchError::Transport(_)) if conn.went_stale() => fresh = true,
                Ok((got, keep)) => {
                    if keep {
                        self.pool.give(&t.origin, conn);
                    }
                    return Ok(got);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one GET on `conn` and reads its answer: what it gave, and whether the
    /// connection can be kept.
    fn exchange(
        &mut self,
        conn: &mut Conn,
        t: &Target,
        sink: &mut impl Write,
    ) -> Result<(Got, bool), FetchError> {
        let host = &t.origin[t.origin.find("://").map_or(0, |i| i + 3)..];
        conn.send_gets(host, &[&t.path], t.auth.as_deref())
            .map_err(|e| FetchError::Transport(format!("io: {e}")))?;
        let head = conn.read_head(self.timeouts.response)?;
        let redirect = matches!(head.status, 301 | 302 | 303 | 307 | 308);
        if let (true, Some(location)) = (redirect, head.location.clone()) {
            // read past its body, so the connection can serve the next request
            let kept = conn
                .read_body(&head, &mut io::sink(), &self.timeouts, &self.stop)
                .is_ok();
            return Ok((Got::Redirect(location), kept && !head.close));
        }
        if head.status != 200 {
            // the connection is dropped with its unread body
            return Err(FetchError::Status(head.status));
        }
        let size = conn.read_body(&head, sink, &self.timeouts, &self.stop)?;
        Ok((Got::Body(size), !head.close))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn urls_split_and_which_may_be_pipelined() {
        assert_eq!(
            split_url("http://a:8000/data/x.txt?q=1"),
            ("http://a:8000", "/data/x.txt?q=1")
        );
        assert_eq!(split_url("http://b"), ("http://b", "/"));
        assert!(can_pipeline("http://a:8000/data/x.txt"));
        assert!(can_pipeline("https://a/x"), "https: pipelined too");
        assert!(
            !can_pipeline("http://peer:secret@a:8000/x"),
            "credentials: one by one"
        );
        assert!(
            can_pipeline("http://a/x@y"),
            "an @ in the path is not a user"
        );
    }

    #[test]
    fn credentials_leave_the_origin_and_become_basic_authorization() {
        let t = target("https://peer:s%40cret@cache.example:8443/d/x.bufr").unwrap();
        assert_eq!(t.origin, "https://cache.example:8443");
        assert_eq!(t.path, "/d/x.bufr");
        assert_eq!(
            t.auth.as_deref(),
            Some(format!("Basic {}", B64.encode("peer:s@cret")).as_str())
        );
        assert!(target("ftp://h/x").is_err());
    }

    #[test]
    fn locations_resolve_against_the_url_they_answer() {
        let base = target("http://a:8000/data/2026/x.txt?v=1").unwrap();
        assert_eq!(resolve(&base, "https://b/y"), "https://b/y");
        assert_eq!(resolve(&base, "//c/z"), "http://c/z");
        assert_eq!(resolve(&base, "/other/y.txt"), "http://a:8000/other/y.txt");
        assert_eq!(
            resolve(&base, "y.txt#frag"),
            "http://a:8000/data/2026/y.txt"
        );
    }

    /// A server answering each request with `answer(request line, Authorization)`;
    /// the requests' (line, authorization) go to the returned receiver.
    fn server(answer: fn(&str, u16) -> String) -> (u16, mpsc::Receiver<(String, Option<String>)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut w = conn;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut auth = None;
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                                break;
                            }
                            if let Some(v) = h.strip_prefix("Authorization: ") {
                                auth = Some(v.trim().to_string());
                            }
                        }
                        let _ = tx.send((line.trim().to_string(), auth));
                        if w.write_all(answer(&line, port).as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, rx)
    }

    fn fetch(url: &str) -> Result<(u64, Vec<u8>), String> {
        let mut f = Fetcher::new(Timeouts::default());
        let mut body = Vec::new();
        f.get_into(url, &mut body)
            .map(|n| (n, body))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn redirects_are_followed_with_credentials_kept_to_their_origin() {
        // the other origin: records what it was sent
        let (other, other_rx) =
            server(|_, _| "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthere".to_string());
        static OTHER: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        OTHER.store(other, std::sync::atomic::Ordering::SeqCst);
        let (port, rx) = server(|line, _| {
            if line.contains("/start") {
                // relative, then absolute-path, then another origin
                "HTTP/1.1 302 Found\r\nLocation: next\r\nContent-Length: 3\r\n\r\nabc".into()
            } else if line.contains("/d/next") {
                "HTTP/1.1 301 Moved\r\nLocation: /far\r\nContent-Length: 0\r\n\r\n".into()
            } else if line.contains("/far") {
                let p = OTHER.load(std::sync::atomic::Ordering::SeqCst);
                format!("HTTP/1.1 307 Temporary\r\nLocation: http://127.0.0.1:{p}/end\r\nContent-Length: 0\r\n\r\n")
            } else if line.contains("/loop") {
                "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n".into()
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into()
            }
        });
        let got = fetch(&format!("http://u:pw@127.0.0.1:{port}/d/start")).unwrap();
        assert_eq!(got, (5, b"there".to_vec()));
        let auth = Some(format!("Basic {}", B64.encode("u:pw")));
        let seen: Vec<_> = rx.try_iter().collect();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(
            seen.iter().all(|(_, a)| *a == auth),
            "same origin: {seen:?}"
        );
        assert_eq!(seen[1].0, "GET /d/next HTTP/1.1");
        let (line, a) = other_rx.try_recv().unwrap();
        assert_eq!(line, "GET /end HTTP/1.1");
        assert_eq!(a, None, "no credentials to another origin");
        let e = fetch(&format!("http://127.0.0.1:{port}/loop")).unwrap_err();
        assert_eq!(e, format!("more than {MAX_REDIRECTS} redirects"));
        assert_eq!(
            fetch(&format!("http://127.0.0.1:{port}/nothere")).unwrap_err(),
            "HTTP status 404"
        );
    }

    /// A server that closes idle keep-alive connections (nginx's keepalive_timeout): the
    /// next GET finds its kept connection dead before any answer, and goes again on a
    /// new one, not failing (was: `answered` counted the connection's whole life, so a
    /// kept one never looked stale and the GET failed, costing an attempt).
    #[test]
    fn a_kept_connection_the_server_closed_meanwhile_is_replaced_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                // idle too long: closed after one answer, keep-alive said nothing of it
                drop((r, w));
            }
        });
        let mut f = Fetcher::new(Timeouts::default());
        for i in 0..3 {
            let mut body = Vec::new();
            let got = f.get_into(&format!("http://127.0.0.1:{port}/f{i}"), &mut body);
            assert_eq!(got.map_err(|e| e.to_string()), Ok(2), "GET {i}");
            std::thread::sleep(Duration::from_millis(50)); // the close reaches us
        }
        assert_eq!(
            connections.load(Ordering::SeqCst),
            3,
            "one new connection each"
        );
    }
}
