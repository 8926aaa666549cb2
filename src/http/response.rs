//! Response framing shared by the handlers: status reasons, bodiless errors.

use std::io::{self, Write};

/// A bodiless error answer, then the connection closes.
pub fn respond_error(stream: &mut dyn Write, status: u16, why: &str) -> io::Result<()> {
    log::debug!("http: {status}: {why}");
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        reason(status)
    );
    stream.write_all(head.as_bytes())
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        207 => "Multi-Status",
        401 => "Unauthorized",
        403 => "Forbidden",
        411 => "Length Required",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        507 => "Insufficient Storage",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}
