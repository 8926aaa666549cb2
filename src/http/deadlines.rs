//! The server's deadlines on a connection: the head's (from its first byte), the idle
//! time between requests (`watchdog`), and an answer nobody reads (`write_timeout`).

use super::refusals::refused;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a connection is in its request/answer cycle, shared by the service (which
/// sees requests start and answers end) and the socket's deadlines.
pub struct ConnState {
    /// Requests whose head has been read.
    pub started: AtomicU32,
    /// A request is being answered.
    pub busy: AtomicBool,
    /// Milliseconds from `opened` to the last byte read or written.
    last_io: AtomicU64,
    opened: tokio::time::Instant,
}

impl ConnState {
    pub fn new() -> ConnState {
        ConnState {
            started: AtomicU32::new(0),
            busy: AtomicBool::new(false),
            last_io: AtomicU64::new(0),
            opened: tokio::time::Instant::now(),
        }
    }

    pub fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_io.store(ms, Ordering::Relaxed);
    }

    fn last_io(&self) -> tokio::time::Instant {
        self.opened + Duration::from_millis(self.last_io.load(Ordering::Relaxed))
    }
}

/// Ends a connection that has been quiet for `idle` while no request was being
/// answered: the idle timeout between requests, kept outside the socket because hyper
/// reads it only when it is ready (measured: a deadline armed in a read started seconds
/// late, when a stale timer happened to wake the connection).
pub async fn watchdog(state: Arc<ConnState>, idle: Duration) {
    loop {
        let deadline = state.last_io() + idle;
        let now = tokio::time::Instant::now();
        if now < deadline {
            tokio::time::sleep_until(deadline).await;
        } else if state.busy.load(Ordering::SeqCst) {
            // an answer under way (a handler, a body): its own limits hold
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            return;
        }
    }
}

/// The socket with the server's deadlines: a new connection's first byte within
/// `header_timeout`, from a head's first byte until it is read `header_timeout`
/// (answered 408), and `write_timeout` for an answer the client does not read. hyper's
/// own header timer runs from when it starts waiting, not from the first byte. Between
/// requests the `watchdog` keeps the idle timeout.
pub struct Deadlines<T> {
    io: T,
    state: Arc<ConnState>,
    header: Duration,
    write: Duration,
    peer: String,
    /// Requests started when last looked.
    seen: u32,
    phase: Phase,
    read_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    write_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for a request's first byte: on a new connection until then; between
    /// requests without a deadline here (hyper polls the socket only when it is ready,
    /// so a timer armed in a read could not start when an answer ends: the watchdog's).
    Idle(Option<tokio::time::Instant>),
    /// A head has begun: whole by then.
    Head(tokio::time::Instant),
    /// A request is being answered: its handler and body rules hold.
    Busy,
}

impl<T> Deadlines<T> {
    /// `header`: the head's time limit; `write`: an answer's, while the client reads
    /// nothing.
    pub fn new(
        io: T,
        state: Arc<ConnState>,
        (header, write): (Duration, Duration),
        peer: String,
    ) -> Self {
        Deadlines {
            io,
            state,
            header,
            write,
            peer,
            seen: 0,
            phase: Phase::Idle(Some(tokio::time::Instant::now() + header)),
            read_timer: None,
            write_timer: None,
        }
    }

    fn update_phase(&mut self) {
        let started = self.state.started.load(Ordering::SeqCst);
        if self.state.busy.load(Ordering::SeqCst) {
            self.phase = Phase::Busy;
            self.seen = started;
        } else if started != self.seen || self.phase == Phase::Busy {
            self.seen = started;
            self.phase = Phase::Idle(None);
        }
    }
}

/// Waits on `timer` (set to `deadline`): true when it has passed.
fn expired(
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    deadline: tokio::time::Instant,
    cx: &mut Context<'_>,
) -> bool {
    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if t.deadline() != deadline {
        t.as_mut().reset(deadline);
    }
    t.as_mut().poll(cx).is_ready()
}

fn timed_out(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why.to_string())
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Deadlines<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.update_phase();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.touch();
                }
                if let Phase::Idle(_) = this.phase {
                    if buf.filled().len() > before {
                        this.phase = Phase::Head(tokio::time::Instant::now() + this.header);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let (deadline, head) = match this.phase {
                    Phase::Busy | Phase::Idle(None) => return Poll::Pending,
                    Phase::Idle(Some(d)) => (d, false),
                    Phase::Head(d) => (d, true),
                };
                if !expired(&mut this.read_timer, deadline, cx) {
                    return Poll::Pending;
                }
                if !head {
                    return Poll::Ready(Err(timed_out("idle")));
                }
                let why = "request head not received in time";
                refused(&this.peer, 408, why);
                // no answer is under way between requests: a best-effort 408
                let msg = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                if let Poll::Ready(Ok(_)) = Pin::new(&mut this.io).poll_write(cx, msg) {
                    let _ = Pin::new(&mut this.io).poll_flush(cx);
                }
                Poll::Ready(Err(timed_out(why)))
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Deadlines<T> {
    fn wrote(&mut self, done: &Poll<io::Result<usize>>) {
        self.write_timer = None;
        if let Poll::Ready(Ok(n)) = done {
            if *n > 0 {
                self.state.touch();
            }
        }
    }

    /// A write that cannot go on for `write_timeout`: the client is not reading.
    fn write_waits(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self.write_timer.as_ref().map_or_else(
            || tokio::time::Instant::now() + self.write,
            |t| t.deadline(),
        );
        if expired(&mut self.write_timer, deadline, cx) {
            log::debug!("http {}: answer not read by the client in time", self.peer);
            return Poll::Ready(timed_out("answer not read in time"));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Deadlines<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, data) {
            Poll::Pending => this.write_waits(cx).map(Err),
            done => {
                this.wrote(&done);
                done
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.write_waits(cx).map(Err),
            done => {
                this.wrote(&done);
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.write_waits(cx).map(Err),
            done => {
                this.write_timer = None;
                done
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
