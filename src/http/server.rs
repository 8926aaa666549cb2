//! The HTTP/1.1 server: event-driven (hyper on a current-thread tokio runtime), so an
//! idle or slow connection costs a few KB, never a thread. Each request goes to the
//! first handler that takes its path: file answers are made on the event loop (a read
//! from the page cache, as nginx does), the others (locks, fsync, request bodies) on a
//! small pool of worker threads, their bodies streamed across (`body`).
//!
//! Bounded by construction: `max_connections` in all and `max_per_address` per client
//! address (one more gets a 503 and is closed); a request head must arrive whole within
//! `header_timeout` of its first byte, and fit in `MAX_HEADER_BYTES`; a connection
//! waiting for a next request is closed after `idle_timeout`; a request body must keep
//! a minimum rate; an answer nobody reads is dropped after `write_timeout`.

pub use super::admission::open_connections;
use super::admission::{Admission, Slot};
use super::body;
use super::deadlines::{watchdog, ConnState, Deadlines};
pub use super::refusals::refused;
use super::request::{Request, MAX_HEADERS, MAX_HEADER_BYTES};
use super::response::{Reply, ReplyBody};
use super::tls::{Tls, TlsFiles};
use super::Handler;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Stack of a worker thread: handlers parse and copy, they hold no large arrays.
const WORKER_STACK: usize = 256 * 1024;

#[derive(Clone)]
pub struct ServeConfig {
    /// Plain HTTP; `None` with TLS only.
    pub listen: Option<SocketAddr>,
    /// HTTPS: its own address and the PEM files.
    pub tls: Option<(SocketAddr, TlsFiles)>,
    /// With TLS on, credentials over plain HTTP are refused unless this is set.
    pub allow_plain_credentials: bool,
    pub max_connections: usize,
    pub max_per_address: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// Threads answering the requests that may block (uploads, channel reads).
    pub workers: usize,
    /// Asked in order: the first that handles a request's path answers it; none: 404.
    pub handlers: Vec<Arc<dyn Handler>>,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, handlers: Vec<Arc<dyn Handler>>) -> ServeConfig {
        ServeConfig {
            listen: Some(listen),
            tls: None,
            allow_plain_credentials: false,
            max_connections: 4096,
            max_per_address: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            workers: 16,
            handlers,
        }
    }
}

/// A running server.
pub struct Server {
    /// The plain HTTP address (the TLS one when there is no plain listener).
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    stop: Arc<Notify>,
    thread: Option<thread::JoinHandle<()>>,
}

/// What every connection shares.
struct Shared {
    cfg: ServeConfig,
    tls_on: bool,
    admission: Arc<Admission>,
}

impl Server {
    /// Binds and starts serving on a thread of its own.
    pub fn start(cfg: ServeConfig) -> io::Result<Server> {
        let bind = |a: SocketAddr| {
            listen_on(a).map_err(|e| io::Error::new(e.kind(), format!("listen on {a}: {e}")))
        };
        raise_file_limit(cfg.max_connections);
        let plain = cfg.listen.map(bind).transpose()?;
        let secure = match &cfg.tls {
            Some((a, files)) => {
                let tls = Tls::load(files.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                Some((bind(*a)?, Arc::new(tls)))
            }
            None => None,
        };
        let plain_addr = plain.as_ref().map(|l| l.local_addr()).transpose()?;
        let tls_addr = secure.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
        let addr = plain_addr
            .or(tls_addr)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "nothing to listen on"))?;
        let names: Vec<String> = cfg.handlers.iter().map(|h| h.name()).collect();
        let what = names.join(" and ");
        if let Some(a) = plain_addr {
            log::info!("serving {what} on http://{a}/");
        }
        if let Some(a) = tls_addr {
            log::info!("serving {what} on https://{a}/");
        }
        // SIGHUP reads the certificate again
        let reload = Arc::new(AtomicBool::new(false));
        if secure.is_some() {
            signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(cfg.workers.max(1))
            .thread_stack_size(WORKER_STACK)
            .thread_name("http-worker")
            .build()?;
        let stop = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            admission: Arc::new(Admission::new(cfg.max_connections, cfg.max_per_address)),
            tls_on: secure.is_some(),
            cfg,
        });
        let st = stop.clone();
        let thread = thread::Builder::new().name("http".into()).spawn(move || {
            runtime.block_on(async move {
                if let Some(l) = plain {
                    match TcpListener::from_std(l) {
                        Ok(l) => drop(tokio::spawn(accept(l, shared.clone(), None))),
                        Err(e) => log::error!("http: {e}"),
                    }
                }
                // refusals held back by the flood limit are said within 10 s
                drop(tokio::spawn(async {
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        tick.tick().await;
                        super::refusals::flush_refusals();
                    }
                }));
                if let Some((l, tls)) = secure {
                    match TcpListener::from_std(l) {
                        Ok(l) => {
                            drop(tokio::spawn(watch_reload(tls.clone(), reload)));
                            drop(tokio::spawn(accept(l, shared.clone(), Some(tls))));
                        }
                        Err(e) => log::error!("http: {e}"),
                    }
                }
                st.notified().await;
            });
            // connections in progress get a moment to finish
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
        Ok(Server {
            addr,
            tls_addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops serving.
    pub fn shutdown(&mut self) {
        self.stop.notify_one();
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

/// Connections the kernel completes before they are accepted: std's 128 overflows
/// when hundreds of clients connect at once (their SYNs are then retried a second
/// later, and later again).
const BACKLOG: i32 = 1024;

fn listen_on(a: SocketAddr) -> io::Result<std::net::TcpListener> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let family = if a.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &a)?;
    rustix::net::listen(&fd, BACKLOG)?;
    let l = std::net::TcpListener::from(fd);
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Descriptors the process may hold: each connection takes one, and systemd's soft
/// default (1,024) is below the connection cap. Raised up to the hard limit.
fn raise_file_limit(connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    let want = connections as u64 + 1024;
    let cur = lim.current.unwrap_or(u64::MAX);
    if cur >= want {
        return;
    }
    let new = lim.maximum.map_or(want, |max| want.min(max));
    if new <= cur {
        log::warn!(
            "http: {connections} connections allowed but only {cur} descriptors (hard limit)"
        );
        return;
    }
    lim.current = Some(new);
    if let Err(e) = setrlimit(Resource::Nofile, lim) {
        log::warn!("http: cannot raise the descriptor limit from {cur} to {new}: {e}");
    }
}

async fn watch_reload(tls: Arc<Tls>, reload: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if reload.swap(false, Ordering::Relaxed) {
            tls.reload();
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, tls: Option<Arc<Tls>>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: pause rather than spin
                log::warn!("http: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match shared.admission.admit(peer.ip()) {
            Ok(slot) => {
                let acceptor = tls.as_ref().map(|t| t.acceptor());
                drop(tokio::spawn(connection(
                    tcp,
                    peer,
                    shared.clone(),
                    acceptor,
                    slot,
                )));
            }
            Err(why) => {
                if tls.is_none() {
                    // one non-blocking try: a refusal never waits on its client
                    let _ = tcp.try_write(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 5\r\n\r\n",
                    );
                }
                refused(&peer.to_string(), 503, &why);
            }
        }
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    _slot: Slot,
) {
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = tls else {
        return serve(tcp, peer, shared, false).await;
    };
    match tokio::time::timeout(shared.cfg.header_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve(stream, peer, shared, true).await,
        // scanners and wrong clients: not worth a line at the default level
        Ok(Err(e)) => log::debug!("http {peer}: TLS handshake: {e}"),
        Err(_) => refused(&peer.to_string(), 408, "TLS handshake not done in time"),
    }
}

async fn serve<T>(io: T, peer: SocketAddr, shared: Arc<Shared>, tls: bool)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new());
    let quiet = watchdog(state.clone(), shared.cfg.idle_timeout);
    let limits = (shared.cfg.header_timeout, shared.cfg.write_timeout);
    let timed = Deadlines::new(io, state.clone(), limits, peer.to_string());
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req| {
        answer(svc_shared.clone(), state.clone(), req, peer, tls)
    });
    let conn = http1::Builder::new()
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .title_case_headers(true)
        // a client may shut its side after the request (an empty POST with no length):
        // it still gets its answer
        .half_close(true)
        .serve_connection(TokioIo::new(timed), svc);
    let done = tokio::select! {
        r = conn => r,
        () = quiet => {
            log::debug!("http {peer}: closed, idle");
            return;
        }
    };
    if let Err(e) = done {
        let p = peer.to_string();
        if e.is_parse_too_large() {
            refused(&p, 431, "request head too large");
        } else if e.is_parse() || e.is_parse_status() {
            refused(&p, 400, &format!("malformed request: {e}"));
        } else {
            // timeouts were logged where they struck; resets are the client's affair
            log::debug!("http {peer}: {e}");
        }
    }
}

async fn answer(
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    hreq: http::Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Result<http::Response<ReplyBody>, Infallible> {
    state.started.fetch_add(1, Ordering::SeqCst);
    state.busy.store(true, Ordering::SeqCst);
    let (parts, incoming) = hreq.into_parts();
    let req = Request::of(&parts, tls);
    let who = peer.to_string();
    let handler = shared.cfg.handlers.iter().find(|h| h.handles(&req.path));
    let (req, reply) = if !req.tls
        && shared.tls_on
        && !shared.cfg.allow_plain_credentials
        && req.authorization.is_some()
    {
        let why = "credentials over plain HTTP refused: use https";
        refused(&who, 403, why);
        let body = format!("{{\"status\": 403, \"error\": \"{why}\"}}\n");
        let r = Reply::new(403).bytes("application/json", body);
        (req, Ok(r))
    } else {
        match handler {
            None => (req, Ok(Reply::new(404))),
            Some(h) if !req.has_body && !h.blocking(&req) => {
                let r = h.answer(&req, &mut io::empty(), &who);
                (req, r)
            }
            Some(h) => {
                let h = h.clone();
                let (mut reader, pump) = body::bridge(incoming, req.expect_continue, who.clone());
                drop(tokio::spawn(pump));
                let peer_s = who.clone();
                let work = tokio::task::spawn_blocking(move || {
                    let r = h.answer(&req, &mut reader, &peer_s);
                    (req, r)
                });
                match work.await {
                    Ok(done) => done,
                    Err(e) => {
                        // a handler that panicked: its request only
                        log::error!("http {who}: handler failed: {e}");
                        return Ok(response(Reply::new(500), false, state));
                    }
                }
            }
        }
    };
    let mut reply = reply.unwrap_or_else(|e| {
        log::warn!("http {who}: \"{} {}\": {e}", req.method, req.path);
        Reply::new(500)
    });
    if req.has_body && reply.status >= 400 {
        // what is left of a refused body is drained a moment, then the connection
        // ends: the client's next request would have to wait behind it
        reply.headers.push(("connection", "close".into()));
    }
    log::debug!(
        "http {who} \"{} {}\" {} {}",
        req.method,
        req.path,
        reply.status,
        if req.head { 0 } else { reply.len() }
    );
    Ok(response(reply, req.head, state))
}

/// Frames a reply; its body, when dropped (sent, or the connection gone), marks the
/// connection idle again.
fn response(reply: Reply, head: bool, state: Arc<ConnState>) -> http::Response<ReplyBody> {
    let len = reply.len();
    let bodiless = matches!(reply.status, 100..=199 | 204 | 304);
    let mut b = http::Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        match http::HeaderValue::from_str(v) {
            Ok(v) => b = b.header(*k, v),
            Err(_) => log::warn!("http: header {k} not sent: {v:?} is not a header value"),
        }
    }
    if !bodiless {
        b = b.header(http::header::CONTENT_LENGTH, len);
    }
    let pieces = if head || bodiless {
        Vec::new()
    } else {
        reply.body
    };
    let body = ReplyBody::new(pieces).on_end(move || state.busy.store(false, Ordering::SeqCst));
    b.body(body).unwrap_or_else(|e| {
        log::error!("http: cannot frame an answer: {e}");
        let mut r = http::Response::new(ReplyBody::new(Vec::new()));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
