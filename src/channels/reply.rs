//! The channel interface's HTTP answers: status line, Date, JSON bodies, refusals, and
//! lingering over what is left of a refused upload.

use crate::channels::{Reason, Refusal};
use crate::core::time::http_date;
use crate::http::response::reason;
use crate::http::Request;
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// After refusing an upload, how much of its body is read (and dropped) so the client
/// gets the answer instead of a reset connection.
const LINGER_BYTES: u64 = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);
impl Refusal {
    /// The HTTP status that says this refusal.
    pub fn status(&self) -> u16 {
        match self.reason {
            Reason::BadRequest => 400,
            Reason::Unauthenticated => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::WrongMethod => 405,
            Reason::LengthRequired => 411,
            Reason::TooLarge => 413,
            Reason::UnsupportedEncoding => 415,
            Reason::Storage => 500,
            Reason::DiskFull => 507,
        }
    }
}

const REALM: &str = "Basic realm=\"meshnode taker\", charset=\"UTF-8\"";

/// Writes an answer; `Connection: close` after a request with a body.
pub(super) fn send(
    stream: &mut TcpStream,
    req: &Request,
    status: u16,
    extra: &str,
    ctype: &str,
    body: &[u8],
) -> io::Result<(u16, u64)> {
    let close = if req.has_body || !req.keep_alive {
        "Connection: close\r\n"
    } else {
        ""
    };
    let ct = if ctype.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {ctype}\r\n")
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nDate: {}\r\n{ct}Content-Length: {}\r\n{extra}{close}\r\n",
        reason(status),
        http_date(crate::sys::unix_now() as i64),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !req.head {
        stream.write_all(body)?;
    }
    Ok((status, body.len() as u64))
}

pub(super) fn send_json(
    stream: &mut TcpStream,
    req: &Request,
    status: u16,
    extra: &str,
    v: &Value,
) -> io::Result<(u16, u64)> {
    let mut body = serde_json::to_vec_pretty(v).expect("JSON serializes");
    body.push(b'\n');
    send(stream, req, status, extra, "application/json", &body)
}

pub(super) fn send_refusal(
    stream: &mut TcpStream,
    req: &Request,
    r: &Refusal,
) -> io::Result<(u16, u64)> {
    let extra = if r.reason == Reason::Unauthenticated {
        format!("WWW-Authenticate: {REALM}\r\n")
    } else {
        String::new()
    };
    send_json(
        stream,
        req,
        r.status(),
        &extra,
        &json!({"status": r.status(), "error": r.why}),
    )
}

/// Reads and drops what is left of a refused upload for a moment, so the client reads
/// the answer rather than a reset.
pub(super) fn linger(stream: &mut TcpStream) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let end = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 16 * 1024];
    let mut n = 0u64;
    while n < LINGER_BYTES && Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}
