//! Request bodies cross from the event loop to a handler's thread. On the loop a pump
//! reads hyper's body frames (hyper does the framing: Content-Length, chunked,
//! `100 Continue`) and holds the client to a minimum rate; a small bounded channel takes
//! them to the handler, which reads them as a plain `std::io::Read`. Memory per upload
//! stays a few frames whatever the product's size.

use super::refusals::refused;
use bytes::Bytes;
use http_body::Body as _;
use hyper::body::Incoming;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Longest chunk-size line or multipart header line.
pub(super) const MAX_LINE: usize = 8 * 1024;
/// A body must arrive at this average rate, counted after `BODY_GRACE`: a client
/// dribbling a body cannot hold a handler thread for long.
pub const MIN_BODY_RATE: u64 = 256;
pub const BODY_GRACE: Duration = Duration::from_secs(10);
/// Not one byte of the body for this long: cut off whatever the rate so far.
pub const BODY_STALL: Duration = Duration::from_secs(30);
/// After a refused upload, how much of its body is read (and dropped) so the client
/// gets the answer instead of a reset connection.
const LINGER_BYTES: u64 = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);
/// Frames in flight between the loop and the handler.
const FRAMES: usize = 4;

enum Chunk {
    Data(Bytes),
    End,
    Fail(io::ErrorKind, String),
}

pub(super) fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

pub(super) fn eof(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, why.to_string())
}

/// The handler's side: the body as it arrives.
pub struct BodyReader {
    rx: mpsc::Receiver<Chunk>,
    /// Tells the pump to start: the first read (so `100 Continue` goes out only once
    /// the handler has accepted the request).
    go: Option<oneshot::Sender<()>>,
    cur: Bytes,
    ended: bool,
}

/// Splits a request body into the handler's reader and the pump the loop runs.
pub fn bridge(
    body: Incoming,
    expect_continue: bool,
    peer: String,
) -> (BodyReader, impl Future<Output = ()> + Send) {
    let (tx, rx) = mpsc::channel(FRAMES);
    let (go, started) = oneshot::channel();
    let reader = BodyReader {
        rx,
        go: Some(go),
        cur: Bytes::new(),
        ended: false,
    };
    (reader, pump(body, tx, started, expect_continue, peer))
}

async fn next_frame(
    body: &mut Incoming,
) -> Option<Result<hyper::body::Frame<Bytes>, hyper::Error>> {
    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
}

async fn pump(
    mut body: Incoming,
    tx: mpsc::Sender<Chunk>,
    started: oneshot::Receiver<()>,
    expect_continue: bool,
    peer: String,
) {
    if started.await.is_err() {
        // answered without reading (a refusal): take in what the client sends anyway,
        // unless it waits for a go it will not get
        if !expect_continue {
            linger(body).await;
        }
        return;
    }
    let began = Instant::now();
    let mut got = 0u64;
    loop {
        let by_rate =
            began + BODY_GRACE + Duration::from_secs_f64(got as f64 / MIN_BODY_RATE as f64);
        let deadline = by_rate.min(Instant::now() + BODY_STALL);
        let chunk = match tokio::time::timeout_at(deadline, next_frame(&mut body)).await {
            Err(_) => {
                let why = format!("request body slower than {MIN_BODY_RATE} bytes/s");
                refused(&peer, 408, &why);
                Chunk::Fail(io::ErrorKind::TimedOut, why)
            }
            Ok(None) => Chunk::End,
            Ok(Some(Err(e))) => {
                Chunk::Fail(io::ErrorKind::UnexpectedEof, format!("request body: {e}"))
            }
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(d) => {
                    got += d.len() as u64;
                    Chunk::Data(d)
                }
                Err(_) => continue, // trailers: nothing a handler reads
            },
        };
        let last = !matches!(chunk, Chunk::Data(_));
        if tx.send(chunk).await.is_err() {
            // the handler stopped reading (a refusal mid-body)
            linger(body).await;
            return;
        }
        if last {
            return;
        }
    }
}

/// Reads and drops what is left of a refused upload for a moment, so the client reads
/// the answer rather than a reset.
async fn linger(mut body: Incoming) {
    let drain = async {
        let mut n = 0u64;
        while n < LINGER_BYTES {
            match next_frame(&mut body).await {
                Some(Ok(f)) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
        loop {
            if !self.cur.is_empty() || out.is_empty() {
                let n = out.len().min(self.cur.len());
                out[..n].copy_from_slice(&self.cur[..n]);
                let _ = self.cur.split_to(n);
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(d)) => self.cur = d,
                Some(Chunk::End) => self.ended = true,
                Some(Chunk::Fail(kind, why)) => return Err(io::Error::new(kind, why)),
                None => return Err(eof("connection closed before the whole body arrived")),
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Gives at most `step` bytes per read: every split point gets exercised.
    pub(crate) struct Trickle<'a>(pub(crate) &'a [u8], pub(crate) usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    pub(crate) fn read_all(r: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }
}
