//! Blocking HTTP(S) GET of announced files, streamed into the store, with keep-alive
//! connections and timeouts named by phase.

use super::pipeline::{Conn, Pool};
pub use super::transfer::{FetchError, Timeouts, READ_CHUNK};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether our own client (`pipeline`) fetches `url`: `http://` or `https://` without
/// credentials in it (ureq sends those as Basic authorization).
pub fn own_client(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://")) && !split_url(url).0.contains('@')
}

/// A connection that could not be made, worded as ureq words it (the phase: connect,
/// TLS handshake).
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

pub struct Fetcher {
    /// What our own client leaves: redirects, credentials in the URL.
    agent: ureq::Agent,
    /// `http://` and `https://`: our own keep-alive connections, which can pipeline.
    pool: Arc<Pool>,
    timeouts: Timeouts,
    min_rate: u64,
    rate_window: Duration,
    stop: Arc<AtomicBool>,
    /// Reused for every download: zeroing a fresh one each time cost more than md5.
    buf: Vec<u8>,
}

impl Fetcher {
    pub fn new(t: Timeouts) -> Fetcher {
        Self::with_stop(t, 4, Arc::new(AtomicBool::new(false)))
    }

    /// A fetcher keeping up to `per_host` idle keep-alive connections per server, that
    /// abandons a transfer in progress once `stop` is set, so a large download never
    /// holds up a shutdown.
    pub fn with_stop(t: Timeouts, per_host: usize, stop: Arc<AtomicBool>) -> Fetcher {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // peers are addressed directly; an http_proxy meant for other traffic must not apply
            .proxy(None)
            .timeout_connect(Some(t.connect))
            .timeout_recv_response(Some(t.response))
            .timeout_per_read(Some(t.per_read))
            .max_idle_connections(16.max(per_host))
            .max_idle_connections_per_host(per_host)
            .user_agent(concat!("meshnode/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(super::roots::ureq_roots())
                    .build(),
            )
            .build()
            .new_agent();
        Fetcher {
            agent,
            pool: Arc::new(Pool::new(t, per_host)),
            timeouts: t,
            min_rate: t.min_rate,
            rate_window: t.rate_window,
            stop,
            buf: vec![0; READ_CHUNK],
        }
    }

    /// Another fetcher on the same connection pool (for another thread).
    pub fn share(&self) -> Fetcher {
        Fetcher {
            agent: self.agent.clone(),
            pool: self.pool.clone(),
            timeouts: self.timeouts,
            min_rate: self.min_rate,
            rate_window: self.rate_window,
            stop: self.stop.clone(),
            buf: vec![0; READ_CHUNK],
        }
    }

    /// The kept-alive `http://` connections.
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
        if own_client(url) {
            match self.get_plain(url, sink) {
                // a redirect: ureq follows it
                Err(FetchError::Status(s)) if (300..400).contains(&s) => {}
                other => return other,
            }
        }
        let mut resp = self.agent.get(url).call().map_err(|e| match e {
            ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
                FetchError::Refused
            }
            e => FetchError::Transport(e.to_string()),
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        let mut reader = resp.body_mut().as_reader();
        let buf = &mut self.buf;
        let mut total = 0u64;
        // the rate over the last window: a trickle that beats the per-read timeout
        // must not hold a download slot for hours
        let (mut window_start, mut window_bytes) = (Instant::now(), 0u64);
        loop {
            let n = match io::Read::read(&mut reader, buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FetchError::Transport(format!("reading body: {e}"))),
            };
            sink.write_all(&buf[..n]).map_err(FetchError::Write)?;
            total += n as u64;
            window_bytes += n as u64;
            let elapsed = window_start.elapsed();
            if self.min_rate > 0 && elapsed >= self.rate_window {
                if (window_bytes as f64) < self.min_rate as f64 * elapsed.as_secs_f64() {
                    return Err(FetchError::TooSlow {
                        bytes: window_bytes,
                        secs: elapsed.as_secs(),
                    });
                }
                (window_start, window_bytes) = (Instant::now(), 0);
            }
            if self.stop.load(Ordering::Relaxed) {
                return Err(FetchError::Stopped);
            }
        }
        Ok(total)
    }

    /// One GET over our own kept-alive connection. A connection kept from before that
    /// fails before answering was closed by the server meanwhile: tried again on a new
    /// one.
    fn get_plain(&mut self, url: &str, sink: &mut impl Write) -> Result<u64, FetchError> {
        let (origin, path) = split_url(url);
        let mut fresh = false;
        loop {
            let (mut conn, reused) = self
                .pool
                .take(origin, fresh)
                .map_err(|e| connect_error(&e))?;
            let result = self.exchange(&mut conn, origin, path, sink);
            match result {
                Err(FetchError::Transport(_)) if reused && conn.answered == 0 => fresh = true,
                Ok((size, keep)) => {
                    if keep {
                        self.pool.give(origin, conn);
                    }
                    return Ok(size);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one GET on `conn` and reads its answer: (size, whether the connection can
    /// be kept).
    fn exchange(
        &mut self,
        conn: &mut Conn,
        origin: &str,
        path: &str,
        sink: &mut impl Write,
    ) -> Result<(u64, bool), FetchError> {
        let host = &origin[origin.find("://").map_or(0, |i| i + 3)..];
        conn.send_gets(host, &[path])
            .map_err(|e| FetchError::Transport(format!("io: {e}")))?;
        let head = conn.read_head(self.timeouts.response)?;
        if head.status != 200 {
            // the connection is dropped with its unread body
            return Err(FetchError::Status(head.status));
        }
        let size = conn.read_body(&head, sink, &self.timeouts, &self.stop)?;
        Ok((size, !head.close))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_who_fetches_them() {
        assert_eq!(
            split_url("http://a:8000/data/x.txt?q=1"),
            ("http://a:8000", "/data/x.txt?q=1")
        );
        assert_eq!(split_url("http://b"), ("http://b", "/"));
        assert!(own_client("http://a:8000/data/x.txt"));
        assert!(own_client("https://a/x"), "https: pipelined too");
        assert!(
            !own_client("http://peer:secret@a:8000/x"),
            "credentials: ureq sends them"
        );
        assert!(own_client("http://a/x@y"), "an @ in the path is not a user");
    }
}
