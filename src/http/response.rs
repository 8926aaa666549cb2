//! Answers as the handlers give them: a status, header fields and a body made of
//! pieces (bytes, or a stretch of an open file). The server frames them (hyper): status
//! line, Date, Content-Length, keep-alive, HEAD: one place, one set of rules.

use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A file's bytes are sent in reads of at most this much: memory per download stays
/// small whatever the file's size.
const FILE_CHUNK: usize = 64 * 1024;

/// One stretch of a body.
pub enum Piece {
    Bytes(Bytes),
    /// The next `n` bytes of an open file (positioned by the handler).
    File(File, u64),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File(_, n) => *n,
        }
    }
}

/// One answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<Piece>,
}

impl Reply {
    /// A bodiless answer until a piece is added.
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// A body of bytes, with its Content-Type.
    pub fn bytes(self, ctype: &str, body: impl Into<Bytes>) -> Reply {
        self.header("content-type", ctype)
            .piece(Piece::Bytes(body.into()))
    }

    pub fn piece(mut self, p: Piece) -> Reply {
        self.body.push(p);
        self
    }

    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.body.iter().map(Piece::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A reply's body as hyper sends it.
pub struct ReplyBody {
    pieces: VecDeque<Piece>,
    left: u64,
    /// Called when the body is dropped: sent whole, or its connection gone.
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for ReplyBody {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

impl ReplyBody {
    pub fn new(pieces: Vec<Piece>) -> ReplyBody {
        let left = pieces.iter().map(Piece::len).sum();
        ReplyBody {
            pieces: pieces.into(),
            left,
            on_end: None,
        }
    }

    pub fn on_end(mut self, f: impl FnOnce() + Send + 'static) -> ReplyBody {
        self.on_end = Some(Box::new(f));
        self
    }

    fn next_data(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let Some(front) = self.pieces.front_mut() else {
                return Ok(None);
            };
            let data = match front {
                Piece::Bytes(b) => std::mem::take(b),
                Piece::File(_, 0) => Bytes::new(),
                Piece::File(f, n) => {
                    // a read from the page cache, on the event loop as nginx does it:
                    // a Pi's files are small and a worker-thread hop costs more
                    let mut buf = vec![0u8; (*n).min(FILE_CHUNK as u64) as usize];
                    let got = f.read(&mut buf)?;
                    if got == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shorter than when it was opened",
                        ));
                    }
                    buf.truncate(got);
                    *n -= got as u64;
                    self.left -= got as u64;
                    return Ok(Some(Bytes::from(buf)));
                }
            };
            self.pieces.pop_front();
            if !data.is_empty() {
                self.left -= data.len() as u64;
                return Ok(Some(data));
            }
        }
    }
}

impl http_body::Body for ReplyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Poll::Ready(
            self.get_mut()
                .next_data()
                .transpose()
                .map(|r| r.map(http_body::Frame::data)),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_in_order_and_lengths() {
        let d = std::env::temp_dir().join(format!("meshnode-reply-{}", std::process::id()));
        std::fs::write(&d, vec![7u8; 150_000]).unwrap();
        let r = Reply::new(200)
            .bytes("text/plain", "head:")
            .piece(Piece::File(File::open(&d).unwrap(), 140_000))
            .piece(Piece::Bytes(Bytes::from_static(b":tail")));
        assert_eq!(r.len(), 140_010);
        let mut b = ReplyBody::new(r.body);
        let mut all = Vec::new();
        let mut frames = 0;
        while let Some(d) = b.next_data().unwrap() {
            assert!(d.len() <= FILE_CHUNK);
            all.extend_from_slice(&d);
            frames += 1;
        }
        assert!(frames >= 4, "the file went in chunks");
        assert_eq!(all.len(), 140_010);
        assert!(all.starts_with(b"head:\x07") && all.ends_with(b"\x07:tail"));
        // a file that shrank is an error, not a short answer passed as whole
        let mut b = ReplyBody::new(vec![Piece::File(File::open(&d).unwrap(), 200_000)]);
        let err = loop {
            match b.next_data() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("ended early without an error"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(&d).unwrap();
    }
}
