//! Multipart bodies split into parts as they arrive, without holding any part in memory.

use super::body::{bad, eof, MAX_LINE};
use std::io::{self, Read};

/// Most header bytes of one multipart part.
const MAX_PART_HEAD: usize = 8 * 1024;

/// A multipart body, part by part.
pub struct Multipart<R: Read> {
    inner: R,
    /// `\r\n--boundary`
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The current part's data is all read (its delimiter consumed).
    part_done: bool,
    finished: bool,
    eof: bool,
}

/// One part's header fields (names lower-cased).
pub type PartHead = Vec<(String, String)>;

impl<R: Read> Multipart<R> {
    pub fn new(inner: R, boundary: &str) -> io::Result<Self> {
        if boundary.is_empty() || boundary.len() > 70 {
            return Err(bad("multipart boundary must be 1 to 70 characters"));
        }
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        let mut buf = vec![0u8; 64 * 1024];
        // the first delimiter may come without its CRLF: lend it one, so the preamble
        // is just a part to skip
        buf[..2].copy_from_slice(b"\r\n");
        Ok(Multipart {
            inner,
            delimiter,
            buf,
            pos: 0,
            end: 2,
            part_done: false,
            finished: false,
            eof: false,
        })
    }

    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            return Err(bad("multipart line too long"));
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    fn find_delimiter(&self) -> Option<usize> {
        let hay = &self.buf[self.pos..self.end];
        let d = &self.delimiter;
        let mut i = 0;
        while let Some(off) = hay[i..].iter().position(|b| *b == b'\r') {
            let at = i + off;
            if hay[at..].starts_with(d) {
                return Some(at);
            }
            if hay.len() - at < d.len() && d.starts_with(&hay[at..]) {
                return None; // maybe, when more arrives
            }
            i = at + 1;
        }
        None
    }

    fn read_data(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.part_done {
                return Ok(0);
            }
            let avail = self.end - self.pos;
            match self.find_delimiter() {
                Some(0) => {
                    self.pos += self.delimiter.len();
                    self.part_done = true;
                    return Ok(0);
                }
                Some(i) => {
                    let n = i.min(out.len());
                    out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
                None => {
                    // all but a tail that could be the start of the delimiter
                    let safe = avail.saturating_sub(self.delimiter.len() - 1);
                    if safe > 0 {
                        let n = safe.min(out.len());
                        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                        self.pos += n;
                        return Ok(n);
                    }
                }
            }
            if !self.fill()? {
                return Err(eof("multipart body ends inside a part"));
            }
        }
    }

    fn line(&mut self) -> io::Result<String> {
        loop {
            let hay = &self.buf[self.pos..self.end];
            if let Some(i) = hay.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&hay[..i]).into_owned();
                self.pos += i + 2;
                return Ok(l);
            }
            if hay.len() > MAX_LINE {
                return Err(bad("multipart header line too long"));
            }
            if !self.fill()? {
                return Err(eof("multipart body ends inside a part's header"));
            }
        }
    }

    /// The next part's header, or `None` after the closing delimiter. Whatever is left
    /// of the current part is skipped.
    pub fn next_part(&mut self) -> io::Result<Option<PartHead>> {
        if self.finished {
            return Ok(None);
        }
        let mut sink = [0u8; 4096];
        while self.read_data(&mut sink)? > 0 {}
        while self.end - self.pos < 2 {
            if !self.fill()? {
                return Err(eof("multipart body ends after a delimiter"));
            }
        }
        if &self.buf[self.pos..self.pos + 2] == b"--" {
            self.finished = true;
            return Ok(None);
        }
        // transport padding, then CRLF
        if !self.line()?.trim().is_empty() {
            return Err(bad("garbage after a multipart delimiter"));
        }
        let mut head = Vec::new();
        let mut bytes = 0;
        loop {
            let l = self.line()?;
            if l.is_empty() {
                break;
            }
            bytes += l.len();
            if bytes > MAX_PART_HEAD || head.len() >= 32 {
                return Err(bad("multipart part header too large"));
            }
            let Some((k, v)) = l.split_once(':') else {
                return Err(bad("malformed multipart header line"));
            };
            head.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        self.part_done = false;
        Ok(Some(head))
    }

    /// After the closing delimiter: reads the epilogue (at most `max` bytes), so the
    /// connection is not closed with bytes unread (which resets it, and can lose the
    /// answer on its way to the client).
    pub fn finish(&mut self, max: usize) -> io::Result<()> {
        if !self.finished {
            return Ok(());
        }
        let mut read = 0;
        while !self.eof && read <= max {
            self.pos = 0;
            self.end = 0;
            let n = self.inner.read(&mut self.buf)?;
            self.eof = n == 0;
            read += n;
        }
        Ok(())
    }

    /// The current part's data.
    pub fn part(&mut self) -> Part<'_, R> {
        Part(self)
    }
}

pub struct Part<'a, R: Read>(&'a mut Multipart<R>);

impl<R: Read> Read for Part<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.0.read_data(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::tests::{read_all, Trickle};

    #[test]
    fn multipart_parts_at_every_split() {
        let body = b"preamble\r\n--XyZ\r\nContent-Type: text/plain; cid=MEMO\r\n\r\nfirst\r\n--X not yet\r\n--XyZ  \r\ncontent-type: application/octet-stream; cid=21\r\nX-Other: a:b\r\n\r\n\r\n--XyZ--\r\nepilogue";
        for step in [1, 2, 3, 7, 64, 10_000] {
            let mut m = Multipart::new(Trickle(body, step), "XyZ").unwrap();
            let h = m.next_part().unwrap().unwrap();
            assert_eq!(h, [("content-type".into(), "text/plain; cid=MEMO".into())]);
            assert_eq!(read_all(&mut m.part()).unwrap(), b"first\r\n--X not yet");
            let h = m.next_part().unwrap().unwrap();
            assert_eq!(h[1], ("x-other".into(), "a:b".into()));
            assert_eq!(read_all(&mut m.part()).unwrap(), b"");
            assert!(m.next_part().unwrap().is_none(), "step {step}");
            m.finish(1024).unwrap();
            assert!(m.eof, "the epilogue is read");
        }
        // no CRLF before the first delimiter, a part skipped unread
        let body = b"--b\r\nA: 1\r\n\r\nskipped\r\n--b\r\nA: 2\r\n\r\nkept\r\n--b--";
        let mut m = Multipart::new(Trickle(body, 4), "b").unwrap();
        assert_eq!(m.next_part().unwrap().unwrap()[0].1, "1");
        assert_eq!(m.next_part().unwrap().unwrap()[0].1, "2");
        assert_eq!(read_all(&mut m.part()).unwrap(), b"kept");
        assert!(m.next_part().unwrap().is_none());
        // cut off inside a part
        let body = b"--b\r\nA: 1\r\n\r\nnever ends";
        let mut m = Multipart::new(Trickle(body, 4), "b").unwrap();
        m.next_part().unwrap();
        assert!(read_all(&mut m.part()).is_err());
        assert!(Multipart::new(Trickle(b"", 1), "").is_err());
    }
}
