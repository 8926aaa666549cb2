//! One request head, parsed (httparse) into what the handlers need.

/// Largest request head (request line and headers) accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 32;

/// One parsed request, owning what the answer needs.
pub struct Request {
    pub head: bool,
    pub path: String,
    pub keep_alive: bool,
    pub has_body: bool,
    pub range: Option<String>,
    pub if_modified_since: Option<String>,
    pub method_ok: bool,
    pub method: String,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    /// `Content-Encoding`, when given.
    pub content_encoding: Option<String>,
    pub chunked: bool,
    pub authorization: Option<String>,
    /// `Expect: 100-continue`: the client waits for a go before sending the body.
    pub expect_continue: bool,
}

/// The path of a request target; the absolute form (`http://host/path`, what a client
/// sends through a proxy) must be accepted too (RFC 9112, 3.2.2).
fn origin_form(target: &str) -> &str {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"));
    match rest {
        Some(r) => r.find('/').map_or("/", |i| &r[i..]),
        None => target,
    }
}

pub fn parse_head(buf: &[u8]) -> Result<Option<(usize, Request)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("too many headers"),
        Err(_) => return Err("malformed request"),
    };
    let method = req.method.unwrap_or("");
    let http11 = req.version == Some(1);
    let mut connection = None;
    let (mut range, mut ims, mut has_body) = (None, None, false);
    let (mut content_type, mut content_length, mut chunked) = (None, None, false);
    let mut content_encoding = None;
    let (mut authorization, mut expect_continue) = (None, false);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        let is = |n: &str| h.name.eq_ignore_ascii_case(n);
        if is("content-type") {
            content_type = Some(value.to_string());
        } else if is("content-length") {
            content_length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| "malformed Content-Length")?,
            );
        } else if is("authorization") {
            authorization = Some(value.to_string());
        } else if is("content-encoding") {
            content_encoding = Some(value.to_string());
        } else if is("expect") {
            expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
        if is("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        }
        if h.name.eq_ignore_ascii_case("connection") {
            connection = Some(value.to_ascii_lowercase());
        } else if h.name.eq_ignore_ascii_case("range") {
            range = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("if-modified-since") {
            ims = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            has_body = true;
        }
    }
    let keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => http11,
    };
    Ok(Some((
        n,
        Request {
            head: method == "HEAD",
            method_ok: method == "GET" || method == "HEAD",
            method: method.to_string(),
            path: origin_form(req.path.unwrap_or("/")).to_string(),
            keep_alive,
            has_body,
            range,
            if_modified_since: ims,
            content_type,
            content_length,
            content_encoding,
            chunked,
            authorization,
            expect_continue,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_targets() {
        assert_eq!(origin_form("http://pi1:8000/rest/taker"), "/rest/taker");
        assert_eq!(origin_form("https://pi1/a/b?c"), "/a/b?c");
        assert_eq!(origin_form("http://pi1"), "/");
        assert_eq!(origin_form("/data/x"), "/data/x");
    }
}
