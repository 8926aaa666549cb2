//! HTTP/1.1 GETs for `http://` and `https://` over kept-alive connections, pipelined: the requests of
//! a batch go out at once and the answers are read in order, so a batch of N small
//! files costs about one round trip instead of N. Across a 100 ms link that is the
//! difference between 40 and 300+ files/s from four connections (docs/benchmarks.md, "wide area").
//!
//! Our own because ureq sends one request at a time per connection (over https, 39
//! files/s across 100 ms where pipelining gives hundreds). It speaks only what a GET of
//! a file needs: Content-Length, chunked, or a body up to the close; redirects and
//! credentials are `fetch.rs`'s, the idle connections `pool.rs`'s. A server that closes
//! between answers, as servers with a keep-alive request limit do, loses nothing: the
//! requests it did not answer are sent again on another connection.

use super::stream::Stream;
use super::transfer::{FetchError, Timeouts, READ_CHUNK};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Up to the close (HTTP/1.0 style): the connection ends with it.
    UntilClose,
}

/// A response head.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// The server closes the connection after this response.
    pub close: bool,
    /// Where a redirect points.
    pub location: Option<String>,
}

pub struct Conn {
    stream: Stream,
    /// Bytes read and not yet used: `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Answers read since it was taken from the pool (or opened).
    pub answered: u64,
    /// Taken from the pool: kept from before, so the server may have closed it while
    /// it was idle (see `went_stale`).
    pub reused: bool,
    /// The socket's read timeout now (set only when it changes: a system call).
    read_timeout: Duration,
}

impl Conn {
    /// A new connection to `origin` (`http://host:port`, `https://host:port`).
    pub fn connect(origin: &str, timeout: Duration) -> io::Result<Conn> {
        Ok(Conn::over(Stream::connect(origin, timeout)?))
    }

    /// A connection over a stream made otherwise (through a proxy, other authorities).
    pub fn over(stream: Stream) -> Conn {
        Conn {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            answered: 0,
            reused: false,
            read_timeout: Duration::ZERO,
        }
    }

    /// Taken again from the pool.
    pub fn reused(&mut self) {
        self.reused = true;
        self.answered = 0;
    }

    /// Bytes were read past the last answer: nobody asked for them.
    pub fn holds_unread(&self) -> bool {
        self.start != self.end
    }
}

impl Conn {
    /// Whether a failure now says only that the server closed this kept connection
    /// while it was idle (nothing answered on it since it was taken): the requests go
    /// again at once on a new connection, costing no attempt of their budgets. The
    /// one rule, for the one-by-one path (`Fetcher`) and batches (`workers`) alike.
    pub fn went_stale(&self) -> bool {
        self.reused && self.answered == 0
    }

    /// Sends a GET for each path (already URL-encoded), all at once, with an
    /// `Authorization` header when given.
    pub fn send_gets(&mut self, host: &str, paths: &[&str], auth: Option<&str>) -> io::Result<()> {
        let mut out = Vec::with_capacity(paths.len() * 128);
        for p in paths {
            write!(
                out,
                "GET {p} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: meshnode/{}\r\nAccept-Encoding: identity\r\n",
                env!("CARGO_PKG_VERSION")
            )?;
            if let Some(a) = auth {
                write!(out, "Authorization: {a}\r\n")?;
            }
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out)?;
        // TLS holds what it could not send at once
        self.stream.flush()
    }

    /// Sends one request: its head, then its body copied from `body` as it is read
    /// (an upload streamed from disk).
    pub fn send(&mut self, head: &[u8], body: &mut dyn Read) -> io::Result<()> {
        self.stream.write_all(head)?;
        io::copy(body, &mut self.stream)?;
        self.stream.flush()
    }

    /// Reads more bytes into the buffer; false at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    // acknowledge at once: a server that does not set TCP_NODELAY
                    // (webfsd) holds each pipelined answer until the last is
                    // acknowledged, and a delayed ack costs up to 40 ms (measured: a
                    // drain from webfsd fell from 12,000 to 1,400 files/s without this).
                    // Linux turns quick acks off again by itself, so after every read.
                    let _ = rustix::net::sockopt::set_tcp_quickack(self.stream.tcp(), true);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the next response head (skipping 1xx answers), waiting at most `wait`
    /// for each read.
    pub fn read_head(&mut self, wait: Duration) -> Result<Head, FetchError> {
        self.set_read_timeout(wait);
        loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(n)) => Some((n, head_of(&resp)?)),
                    Ok(httparse::Status::Partial) => None,
                    Err(e) => return Err(FetchError::Transport(format!("bad response head: {e}"))),
                }
            };
            match parsed {
                Some((n, head)) => {
                    self.start += n;
                    if (100..200).contains(&head.status) {
                        continue;
                    }
                    return Ok(head);
                }
                None => {
                    if self.end - self.start >= MAX_HEAD {
                        return Err(FetchError::Transport("response head too large".into()));
                    }
                    match self.fill() {
                        Ok(true) => {}
                        Ok(false) if self.start == self.end => {
                            return Err(FetchError::Transport(
                                "connection closed before the answer".into(),
                            ))
                        }
                        Ok(false) => {
                            return Err(FetchError::Transport("connection closed in a head".into()))
                        }
                        Err(e) => return Err(transport(e, "receive response")),
                    }
                }
            }
        }
    }

    /// Copies the body of `head` into `sink` (all of it is read even when `sink` fails,
    /// so the next answer can be read); returns its size. Abandoned (the connection
    /// unusable) when slower than the minimum rate, or when `stop` is set.
    pub fn read_body(
        &mut self,
        head: &Head,
        sink: &mut dyn Write,
        t: &Timeouts,
        stop: &AtomicBool,
    ) -> Result<u64, FetchError> {
        self.set_read_timeout(t.per_read);
        let mut body = Body {
            conn: self,
            sink,
            total: 0,
            write_error: None,
            rate: Rate::new(t),
            stop,
        };
        match head.framing {
            Framing::Length(n) => body.copy(Some(n))?,
            Framing::UntilClose => body.copy(None)?,
            Framing::Chunked => loop {
                let line = body.conn.line()?;
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(hex, 16)
                    .map_err(|_| FetchError::Transport(format!("bad chunk size {hex:?}")))?;
                if size == 0 {
                    // trailers, up to an empty line
                    while !body.conn.line()?.is_empty() {}
                    break;
                }
                body.copy(Some(size))?;
                if !body.conn.line()?.is_empty() {
                    return Err(FetchError::Transport("bad chunk end".into()));
                }
            },
        }
        let (total, write_error) = (body.total, body.write_error);
        self.answered += 1;
        match write_error {
            Some(e) => Err(FetchError::Write(e)),
            None => Ok(total),
        }
    }

    fn set_read_timeout(&mut self, d: Duration) {
        let d = nonzero(d);
        if d != self.read_timeout && self.stream.tcp().set_read_timeout(Some(d)).is_ok() {
            self.read_timeout = d;
        }
    }

    /// One CRLF-ended line of a chunked body, without its end.
    fn line(&mut self) -> Result<String, FetchError> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let raw = &self.buf[self.start..self.start + i];
                let line = String::from_utf8_lossy(raw)
                    .trim_end_matches('\r')
                    .to_string();
                self.start += i + 1;
                return Ok(line);
            }
            if self.end - self.start > 4096 {
                return Err(FetchError::Transport("chunk line too long".into()));
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    return Err(FetchError::Transport("connection closed in a chunk".into()))
                }
                Err(e) => return Err(transport(e, "reading body")),
            }
        }
    }
}

fn nonzero(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

fn transport(e: io::Error, phase: &str) -> FetchError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            FetchError::Transport(format!("timeout: {phase}"))
        }
        _ => FetchError::Transport(format!("io: {e}")),
    }
}

fn head_of(resp: &httparse::Response<'_, '_>) -> Result<Head, FetchError> {
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let (mut length, mut chunked, mut close, mut keep) = (None, false, false, false);
    let mut location = None;
    for h in resp.headers.iter() {
        // only the four headers read are decoded: a server sends several more
        let v = || String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = v();
            let n = v
                .trim()
                .parse::<u64>()
                .map_err(|_| FetchError::Transport(format!("bad Content-Length {v:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(FetchError::Transport(
                    "two different Content-Lengths".into(),
                ));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = v();
            chunked = v
                .split(',')
                .next_back()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(FetchError::Transport(format!("transfer encoding {v:?}")));
            }
        } else if h.name.eq_ignore_ascii_case("location") {
            location = Some(v().trim().to_string());
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in v().split(',') {
                close |= token.trim().eq_ignore_ascii_case("close");
                keep |= token.trim().eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
    let framing = if bodiless {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Head {
        status,
        framing,
        close: close || (http10 && !keep) || framing == Framing::UntilClose,
        location,
    })
}

/// The minimum-rate guard of one body.
struct Rate {
    min: u64,
    window: Duration,
    start: Instant,
    bytes: u64,
}

impl Rate {
    fn new(t: &Timeouts) -> Rate {
        Rate {
            min: t.min_rate,
            window: t.rate_window,
            start: Instant::now(),
            bytes: 0,
        }
    }

    fn add(&mut self, n: usize) -> Result<(), FetchError> {
        self.bytes += n as u64;
        let elapsed = self.start.elapsed();
        if self.min > 0 && elapsed >= self.window {
            if (self.bytes as f64) < self.min as f64 * elapsed.as_secs_f64() {
                return Err(FetchError::TooSlow {
                    bytes: self.bytes,
                    secs: elapsed.as_secs(),
                });
            }
            (self.start, self.bytes) = (Instant::now(), 0);
        }
        Ok(())
    }
}

struct Body<'c, 's> {
    conn: &'c mut Conn,
    sink: &'s mut dyn Write,
    total: u64,
    /// The first write that failed: the rest of the body is read and dropped.
    write_error: Option<io::Error>,
    rate: Rate,
    stop: &'c AtomicBool,
}

impl Body<'_, '_> {
    /// Copies `n` bytes (`None`: up to the close) from the connection to the sink.
    fn copy(&mut self, n: Option<u64>) -> Result<(), FetchError> {
        let mut left = n;
        loop {
            if left == Some(0) {
                return Ok(());
            }
            if self.conn.start == self.conn.end {
                match self.conn.fill() {
                    Ok(true) => {}
                    Ok(false) if left.is_none() => return Ok(()),
                    Ok(false) => {
                        return Err(FetchError::Transport(
                            "connection closed in the body".into(),
                        ))
                    }
                    Err(e) => return Err(transport(e, "reading body")),
                }
            }
            let avail = self.conn.end - self.conn.start;
            let take = left.map_or(avail, |l| avail.min(usize::try_from(l).unwrap_or(avail)));
            let data = &self.conn.buf[self.conn.start..self.conn.start + take];
            if self.write_error.is_none() {
                if let Err(e) = self.sink.write_all(data) {
                    self.write_error = Some(e);
                }
            }
            self.conn.start += take;
            self.total += take as u64;
            if let Some(l) = left.as_mut() {
                *l -= take as u64;
            }
            self.rate.add(take)?;
            if self.stop.load(Ordering::Relaxed) {
                return Err(FetchError::Stopped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::thread;

    /// A server answering each request line of one connection with `answer(i)`, then
    /// closing after `close_after` answers (if given).
    fn server(answer: fn(usize) -> Vec<u8>, close_after: Option<usize>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut w = conn;
                    let mut i = 0;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            if w.write_all(&answer(i)).is_err() {
                                return;
                            }
                            i += 1;
                            if close_after == Some(i) {
                                return;
                            }
                        }
                    }
                });
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    /// An answer as the tests see it: (status, body) or the error's words.
    type Answer = Result<(u16, Vec<u8>), String>;

    fn fetch_all(origin: &str, n: usize) -> (Vec<Answer>, Conn) {
        let mut c = Conn::connect(origin, Timeouts::default().connect).unwrap();
        let paths: Vec<String> = (0..n).map(|i| format!("/f{i}")).collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        c.send_gets(&origin[7..], &refs, None).unwrap();
        let stop = AtomicBool::new(false);
        let mut out = Vec::new();
        for _ in 0..n {
            let got = c.read_head(Duration::from_secs(5)).and_then(|h| {
                let mut body = Vec::new();
                c.read_body(&h, &mut body, &Timeouts::default(), &stop)
                    .map(|_| (h.status, body))
            });
            let failed = got.is_err();
            out.push(got.map_err(|e| e.to_string()));
            if failed {
                break;
            }
        }
        (out, c)
    }

    #[test]
    fn pipelined_answers_by_length_and_chunks_come_in_order() {
        let origin = server(
            |i| {
                match i % 3 {
                0 => format!("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nf{i:02}").into_bytes(),
                1 => format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nf{}\r\n1\r\n{}\r\n0\r\n\r\n", i / 10, i % 10).into_bytes(),
                _ => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n".to_vec(),
            }
            },
            None,
        );
        let (got, c) = fetch_all(&origin, 6);
        let want: Vec<Answer> = vec![
            Ok((200, b"f00".to_vec())),
            Ok((200, b"f01".to_vec())),
            Ok((404, b"not here\n".to_vec())),
            Ok((200, b"f03".to_vec())),
            Ok((200, b"f04".to_vec())),
            Ok((404, b"not here\n".to_vec())),
        ];
        assert_eq!(got, want);
        assert_eq!(c.answered, 6);
    }

    #[test]
    fn a_server_closing_mid_batch_is_noticed_at_the_first_unanswered() {
        let origin = server(
            |i| format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nf{i}").into_bytes(),
            Some(2),
        );
        let (got, _) = fetch_all(&origin, 4);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], Ok((200, b"f1".to_vec())));
        assert_eq!(
            got[2],
            Err("connection closed before the answer".to_string())
        );
    }

    #[test]
    fn a_body_up_to_the_close_and_connection_close_end_the_connection() {
        let origin = server(
            |_| b"HTTP/1.0 200 OK\r\n\r\nuntil the end".to_vec(),
            Some(1),
        );
        let (got, _) = fetch_all(&origin, 1);
        assert_eq!(got, vec![Ok((200, b"until the end".to_vec()))]);
        let head = {
            let mut headers = [httparse::EMPTY_HEADER; 4];
            let mut r = httparse::Response::new(&mut headers);
            r.parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n")
                .unwrap();
            head_of(&r).unwrap()
        };
        assert!(head.close && head.framing == Framing::Length(1));
    }

    #[test]
    fn a_short_body_is_an_error() {
        let origin = server(
            |_| b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
            Some(1),
        );
        let (got, _) = fetch_all(&origin, 1);
        assert_eq!(got, vec![Err("connection closed in the body".to_string())]);
    }
}
