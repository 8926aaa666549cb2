//! One HTTP(S) request and its answer, over the download client's parts (the stream,
//! the response framing): `shove`'s upload, streamed from disk and through a proxy when
//! one is configured, and `status`'s GET. So the node has one HTTP client, not a second
//! one (ureq: the ARM binaries were 60-80 KB larger with it) for these two.

use super::fetch::{split_url, FetchError, Timeouts};
use super::pipeline::Conn;
use super::stream::Stream;
use std::io::{self, Read, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The most of an answer's body kept: the taker's answer to an upload names each file.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// What to send.
pub struct Request<'a> {
    pub method: &'a str,
    /// `http://` or `https://`; no credentials in it (they go in `headers`).
    pub url: &'a str,
    /// Headers beyond Host, Content-Length and Connection.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body and its length; none for a GET.
    pub body: Option<(&'a mut dyn Read, u64)>,
    /// An HTTP proxy (`http://host:port`), tunnelled through with CONNECT.
    pub proxy: Option<&'a str>,
    /// The authorities trusted for https (none: the node's own).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub timeouts: Timeouts,
}

/// What came back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A sink that keeps `MAX_ANSWER` bytes at most.
struct Kept(Vec<u8>);

impl Write for Kept {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.0.len() + b.len() > MAX_ANSWER {
            return Err(io::Error::other(format!(
                "answer over {} MB",
                MAX_ANSWER >> 20
            )));
        }
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends `req` on a new connection and reads the answer, whatever its status. An
/// error says what failed (connect, TLS handshake, the proxy, sending, the answer).
pub fn send(req: Request<'_>) -> Result<Answer, String> {
    // the scheme is checked where the stream is made
    let (origin, path) = split_url(req.url);
    let host = &origin[origin.find("://").map_or(0, |i| i + 3)..];
    let t = req.timeouts;
    let stream = Stream::connect_with(origin, t.connect, req.tls, req.proxy)
        .map_err(|e| super::fetch::connect_error(&e).to_string())?;
    // an upload that the server stops reading does not hang the client
    stream
        .tcp()
        .set_write_timeout(Some(t.per_read.max(t.connect)))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{} {path} HTTP/1.1\r\nHost: {host}\r\n", req.method);
    for (k, v) in req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut none = io::empty();
    let (body, length): (&mut dyn Read, u64) = match req.body {
        Some((b, n)) => (b, n),
        None => (&mut none, 0),
    };
    if req.method != "GET" {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut conn = Conn::over(stream);
    let sent = conn.send(head.as_bytes(), &mut body.take(length));
    // a server refusing early (401, 413) may answer and close before the whole body is
    // read: its answer says more than the broken pipe
    let answer = conn.read_head(t.response).and_then(|h| {
        let mut kept = Kept(Vec::new());
        conn.read_body(&h, &mut kept, &t, &AtomicBool::new(false))
            .map(|_| Answer {
                status: h.status,
                body: kept.0,
            })
    });
    match (answer, sent) {
        (Ok(a), _) => Ok(a),
        (Err(_), Err(e)) => Err(format!("sending the request: {e}")),
        (Err(e), Ok(())) => Err(match e {
            FetchError::Write(e) => e.to_string(),
            e => e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(2),
            per_read: Duration::from_secs(2),
            min_rate: 0,
            ..Timeouts::default()
        }
    }

    /// A server that reads a request head, answers `answer` and closes.
    fn answering(answer: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/rest/taker", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap() == 1 {
                head.push(b[0]);
            }
            c.write_all(answer).unwrap();
            String::from_utf8(head).unwrap()
        });
        (url, t)
    }

    fn post<'a>(
        url: &'a str,
        body: &'a mut dyn Read,
        n: u64,
        proxy: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            method: "POST",
            url,
            headers: &[("Content-Type", "text/plain; cid=MEMO")],
            body: Some((body, n)),
            proxy,
            tls: None,
            timeouts: quick(),
        }
    }

    #[test]
    fn an_upload_goes_with_its_length_and_its_answer_comes_back() {
        let (url, server) = answering(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
        let mut body = io::Cursor::new(b"memo".to_vec());
        let a = send(post(&url, &mut body, 4, None)).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (201, &b"ok"[..]));
        let head = server.join().unwrap();
        assert!(head.starts_with("POST /rest/taker HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Length: 4\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: text/plain; cid=MEMO\r\n"),
            "{head}"
        );
    }

    #[test]
    fn a_server_refusing_before_reading_the_body_is_heard() {
        // 413 at once, the 8 MB body unread: the answer, not the broken pipe
        let (url, server) = answering(
            b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig",
        );
        let mut body = io::repeat(b'x');
        let a = send(post(&url, &mut body, 8 << 20, None)).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (413, &b"big"[..]));
        server.join().unwrap();
    }

    #[test]
    fn a_proxy_refusing_the_tunnel_is_named() {
        let (proxy, server) = answering(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        let proxy = proxy.trim_end_matches("/rest/taker").to_string();
        let mut body = io::empty();
        let e = send(post("http://127.0.0.1:9/x", &mut body, 0, Some(&proxy))).unwrap_err();
        assert!(
            e.contains("refused the tunnel to 127.0.0.1:9: HTTP/1.1 403 Forbidden"),
            "{e}"
        );
        assert!(server
            .join()
            .unwrap()
            .starts_with("CONNECT 127.0.0.1:9 HTTP/1.1\r\n"));
    }

    #[test]
    fn nobody_listening_is_said_so() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/");
        let mut body = io::empty();
        assert_eq!(
            send(post(&url, &mut body, 0, None)).unwrap_err(),
            "connection refused"
        );
    }
}
