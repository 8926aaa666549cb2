//! `meshnode serve`: the data tree over HTTP/1.1 for peers (GET, HEAD, keep-alive,
//! Range, If-Modified-Since).
//!
//! Bounded by construction: at most `max_connections` connections (one more gets a 503
//! and is closed), one small thread each; headers must arrive whole within
//! `header_timeout` of their first byte (a slowloris client loses its connection, it
//! never holds a thread longer) and fit in `MAX_HEADER_BYTES`; an idle keep-alive
//! connection is closed after `idle_timeout`. Never serves anything outside the tree:
//! the path is percent-decoded, checked like a relPath, dotfiles (our temporary files
//! among them) are hidden, and the resolved path must stay under the root.

use crate::message::{civil_from_days, days_from_civil};
use crate::relpath;
use crate::taker::{self, Taker};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 32;
/// Stack of a connection thread: it only parses a head and copies a file.
const CONNECTION_STACK: usize = 128 * 1024;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// The channel interface (`/taker`, `/rest/taker`, `/channels`), when configured.
    pub taker: Option<Arc<Taker>>,
}

impl ServeConfig {
    pub fn new(dir: PathBuf, listen: SocketAddr) -> ServeConfig {
        ServeConfig {
            dir,
            listen,
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            taker: None,
        }
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Binds and starts accepting on a thread of its own.
    pub fn start(cfg: ServeConfig) -> io::Result<Server> {
        let root = cfg.dir.canonicalize().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("data directory {}: {e}", cfg.dir.display()),
            )
        })?;
        let listener = TcpListener::bind(cfg.listen)
            .map_err(|e| io::Error::new(e.kind(), format!("listen on {}: {e}", cfg.listen)))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        log::info!("serving {} on http://{addr}/", root.display());
        let thread = thread::Builder::new()
            .name("http".into())
            .spawn(move || accept_loop(listener, root, cfg, st))?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops accepting; connections in progress finish on their own.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the blocking accept
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, root: PathBuf, cfg: ServeConfig, stop: Arc<AtomicBool>) {
    let root = Arc::new(root);
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: pause rather than spin
                log::warn!("http: accept: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= cfg.max_connections {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 5\r\n\r\n",
            );
            log::warn!(
                "http: {} connections open, refusing one more",
                cfg.max_connections
            );
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (root, cfg2, active2) = (root.clone(), cfg.clone(), active.clone());
        let spawned = thread::Builder::new()
            .name("http-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                if let Err(e) = connection(stream, &root, &cfg2, &peer) {
                    log::trace!("http {peer}: {e}");
                }
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            log::error!("http: cannot start a connection thread: {e}");
        }
    }
}

/// One parsed request, owning what the answer needs.
pub struct Request {
    pub head: bool,
    pub path: String,
    pub keep_alive: bool,
    pub has_body: bool,
    pub range: Option<String>,
    pub if_modified_since: Option<String>,
    pub method_ok: bool,
    pub method: String,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub authorization: Option<String>,
    /// `Expect: 100-continue`: the client waits for a go before sending the body.
    pub expect_continue: bool,
}

/// The path of a request target; the absolute form (`http://host/path`, what a client
/// sends through a proxy) must be accepted too (RFC 9112, 3.2.2).
fn origin_form(target: &str) -> &str {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"));
    match rest {
        Some(r) => r.find('/').map_or("/", |i| &r[i..]),
        None => target,
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<(usize, Request)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("too many headers"),
        Err(_) => return Err("malformed request"),
    };
    let method = req.method.unwrap_or("");
    let http11 = req.version == Some(1);
    let mut connection = None;
    let (mut range, mut ims, mut has_body) = (None, None, false);
    let (mut content_type, mut content_length, mut chunked) = (None, None, false);
    let (mut authorization, mut expect_continue) = (None, false);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        let is = |n: &str| h.name.eq_ignore_ascii_case(n);
        if is("content-type") {
            content_type = Some(value.to_string());
        } else if is("content-length") {
            content_length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| "malformed Content-Length")?,
            );
        } else if is("authorization") {
            authorization = Some(value.to_string());
        } else if is("expect") {
            expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
        if is("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        }
        if h.name.eq_ignore_ascii_case("connection") {
            connection = Some(value.to_ascii_lowercase());
        } else if h.name.eq_ignore_ascii_case("range") {
            range = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("if-modified-since") {
            ims = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            has_body = true;
        }
    }
    let keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => http11,
    };
    Ok(Some((
        n,
        Request {
            head: method == "HEAD",
            method_ok: method == "GET" || method == "HEAD",
            method: method.to_string(),
            path: origin_form(req.path.unwrap_or("/")).to_string(),
            keep_alive,
            has_body,
            range,
            if_modified_since: ims,
            content_type,
            content_length,
            chunked,
            authorization,
            expect_continue,
        },
    )))
}

fn connection(mut stream: TcpStream, root: &Path, cfg: &ServeConfig, peer: &str) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(cfg.write_timeout))?;
    let mut buf = vec![0u8; MAX_HEADER_BYTES];
    let mut filled = 0;
    loop {
        // read one request head: the idle timeout until its first byte, then the whole
        // head must arrive before the header deadline
        let mut deadline: Option<Instant> = None;
        let (used, req) = loop {
            if filled > 0 {
                match parse_head(&buf[..filled]) {
                    Ok(Some(r)) => break r,
                    Ok(None) => {}
                    Err(why) => {
                        respond_error(&mut stream, 400, why)?;
                        return Ok(());
                    }
                }
                if filled == buf.len() {
                    respond_error(&mut stream, 431, "request head too large")?;
                    return Ok(());
                }
            }
            let wait = match deadline {
                None if filled == 0 => cfg.idle_timeout,
                None => {
                    deadline = Some(Instant::now() + cfg.header_timeout);
                    cfg.header_timeout
                }
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            if wait.is_zero() {
                respond_error(&mut stream, 408, "request head not received in time")?;
                return Ok(());
            }
            stream.set_read_timeout(Some(wait))?;
            match stream.read(&mut buf[filled..]) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    if filled == 0 {
                        deadline = Some(Instant::now() + cfg.header_timeout);
                    }
                    filled += n;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if filled > 0 {
                        respond_error(&mut stream, 408, "request head not received in time")?;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        let (status, bytes) = match &cfg.taker {
            Some(t) if taker::handles(&req.path) => {
                taker::answer(t, &mut stream, &req, &buf[used..filled], peer)?
            }
            _ => answer(&mut stream, root, &req)?,
        };
        log::debug!(
            "http {peer} \"{} {}\" {status} {bytes}",
            req.method,
            req.path
        );
        // a request body is not read: the connection cannot be reused after it
        if !req.keep_alive || req.has_body || status >= 400 && status != 404 && status != 416 {
            return Ok(());
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
    }
}

fn respond_error(stream: &mut TcpStream, status: u16, why: &str) -> io::Result<()> {
    log::debug!("http: {status}: {why}");
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        reason(status)
    );
    stream.write_all(head.as_bytes())
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        207 => "Multi-Status",
        401 => "Unauthorized",
        403 => "Forbidden",
        411 => "Length Required",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        507 => "Insufficient Storage",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Maps a request target to a file under `root`, or `None` (answered 404).
pub fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let decoded = relpath::percent_decode(path)?;
    let rel = decoded.strip_prefix('/')?;
    let rel = relpath::validate(rel).ok()?;
    if rel.split('/').any(|c| c.starts_with('.')) {
        return None; // dotfiles, temporary files among them
    }
    // the resolved path (symlinks followed) must still be in the tree
    let full = root.join(rel).canonicalize().ok()?;
    full.starts_with(root).then_some(full)
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "text" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "xml" | "cap" => "application/xml",
        "html" | "htm" => "text/html; charset=utf-8",
        "csv" => "text/csv",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "bufr" | "bin" => "application/x-bufr",
        "grib" | "grib2" | "grb" | "grb2" => "application/x-grib",
        _ => "application/octet-stream",
    }
}

/// What a Range header asks of a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// Send it whole (no range, another unit, or a list of ranges: not supported).
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Nothing of the file matches: 416.
    Unsatisfiable,
}

/// Reads a Range header for a file of `size` bytes.
pub fn parse_range(header: &str, size: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let last = match size.checked_sub(1) {
        Some(l) => l,
        None => return Range::Unsatisfiable,
    };
    let bounds = if a.is_empty() {
        b.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (size.saturating_sub(n), last))
    } else {
        let start = a.parse::<u64>().ok();
        let end = if b.is_empty() {
            Some(last)
        } else {
            b.parse::<u64>().ok().map(|e| e.min(last))
        };
        start.zip(end)
    };
    match bounds {
        Some((start, end)) if start <= end && start < size => Range::Part(start, end),
        _ => Range::Unsatisfiable,
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An HTTP date (IMF-fixdate) of epoch seconds.
pub fn http_date(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let t = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Epoch seconds of an IMF-fixdate; other (obsolete) forms are not read.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    let [_, d, mon, y, hms, "GMT"] = f.as_slice() else {
        return None;
    };
    let m = MONTHS.iter().position(|x| x == mon)? as i64 + 1;
    let (d, y): (i64, i64) = (d.parse().ok()?, y.parse().ok()?);
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    Some(days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// Answers one request; returns (status, body bytes sent).
fn answer(stream: &mut TcpStream, root: &Path, req: &Request) -> io::Result<(u16, u64)> {
    if !req.method_ok {
        stream.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok((405, 0));
    }
    let not_found = |stream: &mut TcpStream, keep: bool| -> io::Result<(u16, u64)> {
        let c = if keep { "" } else { "Connection: close\r\n" };
        stream.write_all(
            format!("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n{c}\r\n").as_bytes(),
        )?;
        Ok((404, 0))
    };
    let Some(path) = resolve(root, &req.path) else {
        return not_found(stream, req.keep_alive);
    };
    let Ok(mut file) = File::open(&path) else {
        return not_found(stream, req.keep_alive);
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return not_found(stream, req.keep_alive);
    }
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let now = crate::unix_now() as i64;
    let mut head = String::with_capacity(256);
    let conn = if req.keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let common = format!(
        "Date: {}\r\nLast-Modified: {}\r\nAccept-Ranges: bytes\r\n{conn}",
        http_date(now),
        http_date(mtime)
    );
    if let Some(ims) = req.if_modified_since.as_deref().and_then(parse_http_date) {
        if mtime <= ims {
            head.push_str("HTTP/1.1 304 Not Modified\r\n");
            head.push_str(&common);
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
            return Ok((304, 0));
        }
    }
    let range = match req
        .range
        .as_deref()
        .map_or(Range::Whole, |r| parse_range(r, size))
    {
        Range::Whole => None,
        Range::Part(a, b) => Some((a, b)),
        Range::Unsatisfiable => {
            head.push_str(&format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\n{common}\r\n"));
            stream.write_all(head.as_bytes())?;
            return Ok((416, 0));
        }
    };
    let (status, start, len) = match range {
        Some((a, b)) => {
            head.push_str(&format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{size}\r\n"
            ));
            (206, a, b - a + 1)
        }
        None => {
            head.push_str("HTTP/1.1 200 OK\r\n");
            (200, 0, size)
        }
    };
    head.push_str(&format!(
        "Content-Length: {len}\r\nContent-Type: {}\r\n{common}\r\n",
        content_type(&path)
    ));
    stream.write_all(head.as_bytes())?;
    if req.head {
        return Ok((status, 0));
    }
    file.seek(SeekFrom::Start(start))?;
    // std copies File -> TcpStream with sendfile on Linux
    let sent = io::copy(&mut file.take(len), stream)?;
    Ok((status, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=2-5", 10), Range::Part(2, 5));
        assert_eq!(parse_range("bytes=4-", 10), Range::Part(4, 9));
        assert_eq!(parse_range("bytes=-3", 10), Range::Part(7, 9));
        assert_eq!(parse_range("bytes=-30", 10), Range::Part(0, 9));
        assert_eq!(parse_range("bytes=5-100", 10), Range::Part(5, 9));
        assert_eq!(parse_range("bytes=10-", 10), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=6-2", 10), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=x-2", 10), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,4-5", 10), Range::Whole);
        assert_eq!(parse_range("items=0-1", 10), Range::Whole);
        assert_eq!(parse_range("bytes=0-", 0), Range::Unsatisfiable);
    }

    #[test]
    fn absolute_form_targets() {
        assert_eq!(origin_form("http://pi1:8000/rest/taker"), "/rest/taker");
        assert_eq!(origin_form("https://pi1/a/b?c"), "/a/b?c");
        assert_eq!(origin_form("http://pi1"), "/");
        assert_eq!(origin_form("/data/x"), "/data/x");
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn resolves_only_inside_the_tree() {
        let d = std::env::temp_dir().join(format!("meshnode-serve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("tree/a")).unwrap();
        std::fs::write(d.join("tree/a/f.txt"), b"x").unwrap();
        std::fs::write(d.join("tree/a/.meshnode.1.2.tmp"), b"partial").unwrap();
        std::fs::write(d.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(d.join("secret"), d.join("tree/a/link")).unwrap();
        let root = d.join("tree").canonicalize().unwrap();
        assert_eq!(resolve(&root, "/a/f.txt"), Some(root.join("a/f.txt")));
        assert_eq!(resolve(&root, "/a/f%2Etxt?x=1"), Some(root.join("a/f.txt")));
        for bad in [
            "/../secret",
            "/a/../../secret",
            "/%2e%2e/secret",
            "/a/%2E%2E/%2e%2e/secret",
            "/a/link",
            "/a/.meshnode.1.2.tmp",
            "a/f.txt",
            "/",
            "/a/%zz",
            "//etc/passwd",
        ] {
            assert_eq!(resolve(&root, bad), None, "{bad}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
