//! Request bodies as they arrive: `Content-Length` or chunked.

use std::io::{self, Read};

/// Longest chunk-size line or multipart header line.
pub(super) const MAX_LINE: usize = 8 * 1024;

enum Mode {
    Length(u64),
    /// Bytes left in the current chunk; `None` before a chunk-size line.
    Chunked(Option<u64>),
    Done,
}

/// A request body: the bytes read with the head first, then the connection.
pub struct Body<'a, R: Read> {
    inner: &'a mut R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    mode: Mode,
}

impl<'a, R: Read> Body<'a, R> {
    /// `length`: the Content-Length; `None` with `chunked` for a chunked body.
    pub fn new(inner: &'a mut R, pre: &[u8], length: Option<u64>, chunked: bool) -> Self {
        let mut buf = vec![0u8; (16 * 1024).max(pre.len())];
        buf[..pre.len()].copy_from_slice(pre);
        let mode = match (chunked, length) {
            (true, _) => Mode::Chunked(None),
            (false, Some(n)) => Mode::Length(n),
            (false, None) => Mode::Length(0),
        };
        Body {
            inner,
            buf,
            pos: 0,
            end: pre.len(),
            mode,
        }
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let n = self.inner.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf[self.pos..self.end]
                .iter()
                .position(|b| *b == b'\n')
            {
                let l = String::from_utf8_lossy(&self.buf[self.pos..self.pos + i])
                    .trim_end_matches('\r')
                    .to_string();
                self.pos += i + 1;
                return Ok(l);
            }
            if self.end - self.pos > MAX_LINE {
                return Err(bad("chunk-size line too long"));
            }
            if self.fill()? == 0 {
                return Err(eof("body ends inside a chunk-size line"));
            }
        }
    }

    /// Raw bytes, at most `max`.
    fn raw(&mut self, out: &mut [u8], max: u64) -> io::Result<usize> {
        let want = (out.len() as u64).min(max) as usize;
        if self.pos < self.end {
            let n = want.min(self.end - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(&mut out[..want])
    }
}

pub(super) fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

pub(super) fn eof(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, why.to_string())
}

impl<R: Read> Read for Body<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.mode {
                Mode::Done => return Ok(0),
                Mode::Length(0) => {
                    self.mode = Mode::Done;
                }
                Mode::Length(left) => {
                    let n = self.raw(out, left)?;
                    if n == 0 {
                        return Err(eof("connection closed before the whole body arrived"));
                    }
                    self.mode = Mode::Length(left - n as u64);
                    return Ok(n);
                }
                Mode::Chunked(None) => {
                    let l = self.line()?;
                    let hex = l.split(';').next().unwrap_or("").trim();
                    let size =
                        u64::from_str_radix(hex, 16).map_err(|_| bad("malformed chunk size"))?;
                    if size == 0 {
                        // trailer fields, up to the empty line
                        while !self.line()?.is_empty() {}
                        self.mode = Mode::Done;
                    } else {
                        self.mode = Mode::Chunked(Some(size));
                    }
                }
                Mode::Chunked(Some(left)) => {
                    let n = self.raw(out, left)?;
                    if n == 0 {
                        return Err(eof("connection closed inside a chunk"));
                    }
                    if left == n as u64 {
                        if !self.line()?.is_empty() {
                            return Err(bad("chunk not followed by CRLF"));
                        }
                        self.mode = Mode::Chunked(None);
                    } else {
                        self.mode = Mode::Chunked(Some(left - n as u64));
                    }
                    return Ok(n);
                }
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

    #[test]
    fn length_and_chunked_bodies() {
        let mut s = Trickle(b"lo world!EXTRA", 3);
        let mut b = Body::new(&mut s, b"hel", Some(11), false);
        assert_eq!(read_all(&mut b).unwrap(), b"hello world");
        let wire =
            b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 5, 100] {
            let mut s = Trickle(&wire[3..], step);
            let mut b = Body::new(&mut s, &wire[..3], None, true);
            assert_eq!(read_all(&mut b).unwrap(), b"Wikipedia in \r\n\r\nchunks.");
        }
        let mut s = Trickle(b"short", 2);
        let mut b = Body::new(&mut s, b"", Some(10), false);
        assert_eq!(
            read_all(&mut b).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut s = Trickle(b"zz\r\n", 2);
        let mut b = Body::new(&mut s, b"", None, true);
        assert_eq!(
            read_all(&mut b).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
