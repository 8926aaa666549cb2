//! The HTTP/1.1 server: accepts, reads request heads, hands each request to the first
//! handler that takes its path (keep-alive and pipelining across requests).
//!
//! Bounded by construction: at most `max_connections` connections (one more gets a 503
//! and is closed), one small thread each; headers must arrive whole within
//! `header_timeout` of their first byte (a slowloris client loses its connection, it
//! never holds a thread longer) and fit in `MAX_HEADER_BYTES`; an idle keep-alive
//! connection is closed after `idle_timeout`.

use super::request::{parse_head, MAX_HEADER_BYTES};
use super::response::respond_error;
use super::Handler;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Stack of a connection thread: it only parses a head and copies a file.
const CONNECTION_STACK: usize = 128 * 1024;

#[derive(Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// Asked in order: the first that handles a request's path answers it; none: 404.
    pub handlers: Vec<Arc<dyn Handler>>,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, handlers: Vec<Arc<dyn Handler>>) -> ServeConfig {
        ServeConfig {
            listen,
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            handlers,
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
        let listener = TcpListener::bind(cfg.listen)
            .map_err(|e| io::Error::new(e.kind(), format!("listen on {}: {e}", cfg.listen)))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let names: Vec<String> = cfg.handlers.iter().map(|h| h.name()).collect();
        log::info!("serving {} on http://{addr}/", names.join(" and "));
        let thread = thread::Builder::new()
            .name("http".into())
            .spawn(move || accept_loop(listener, cfg, st))?;
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

fn accept_loop(listener: TcpListener, cfg: ServeConfig, stop: Arc<AtomicBool>) {
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
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string());
            refused(
                &peer,
                503,
                &format!("{} connections open already", cfg.max_connections),
            );
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (cfg2, active2) = (cfg.clone(), active.clone());
        let spawned = thread::Builder::new()
            .name("http-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                if let Err(e) = connection(stream, &cfg2, &peer) {
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

/// Clients whose last refusal was logged, and when: at most one line a second each, so
/// a flood of bad requests cannot flood the log.
static LAST_LOGGED: std::sync::Mutex<Option<std::collections::HashMap<String, Instant>>> =
    std::sync::Mutex::new(None);
/// Clients remembered at most; beyond, the old ones are forgotten.
const LOG_MEMORY: usize = 4096;

/// Logs a refusal at the HTTP layer (400, 408, 431, 503) with the client's address, at
/// most once a second per client address.
pub fn refused(peer: &str, status: u16, why: &str) {
    let addr = peer.rsplit_once(':').map_or(peer, |(a, _)| a).to_string();
    let now = Instant::now();
    let mut last = LAST_LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    let map = last.get_or_insert_with(std::collections::HashMap::new);
    if map
        .get(&addr)
        .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1))
    {
        return;
    }
    if map.len() >= LOG_MEMORY {
        map.retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
        if map.len() >= LOG_MEMORY {
            map.clear();
        }
    }
    map.insert(addr, now);
    log::warn!("http {peer}: {status} {why}");
}

fn connection(mut stream: TcpStream, cfg: &ServeConfig, peer: &str) -> io::Result<()> {
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
                        refused(peer, 400, why);
                        respond_error(&mut stream, 400, why)?;
                        return Ok(());
                    }
                }
                if filled == buf.len() {
                    let why = "request head too large";
                    refused(peer, 431, why);
                    respond_error(&mut stream, 431, why)?;
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
                let why = "request head not received in time";
                refused(peer, 408, why);
                respond_error(&mut stream, 408, why)?;
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
                        let why = "request head not received in time";
                        refused(peer, 408, why);
                        respond_error(&mut stream, 408, why)?;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        let (status, bytes) = match cfg.handlers.iter().find(|h| h.handles(&req.path)) {
            Some(h) => h.answer(&mut stream, &req, &buf[used..filled], peer)?,
            None => {
                respond_error(&mut stream, 404, "no handler")?;
                (404, 0)
            }
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
