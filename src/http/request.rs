//! One request, read from the head hyper parsed into what the handlers need.

/// Largest request head (request line and headers) accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 32;

/// One request, as the handlers need it (hyper has read and checked the head).
pub struct Request {
    pub head: bool,
    pub path: String,
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
    /// `Expect: 100-continue`: the client waits for a go before sending the body (the
    /// server sends it when the handler first reads the body).
    pub expect_continue: bool,
    /// Came over TLS.
    pub tls: bool,
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

impl Request {
    pub fn of(parts: &http::request::Parts, tls: bool) -> Request {
        let h = &parts.headers;
        let text = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let method = parts.method.as_str();
        let chunked = h
            .get_all("transfer-encoding")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().trim_end().ends_with("chunked"));
        let content_length = text("content-length").and_then(|v| v.parse::<u64>().ok());
        let target = parts.uri.to_string();
        Request {
            head: method == "HEAD",
            method_ok: method == "GET" || method == "HEAD",
            method: method.to_string(),
            path: origin_form(&target).to_string(),
            has_body: chunked || content_length.is_some_and(|n| n > 0),
            range: text("range"),
            if_modified_since: text("if-modified-since"),
            content_type: text("content-type"),
            content_length,
            content_encoding: text("content-encoding"),
            chunked,
            authorization: text("authorization"),
            expect_continue: text("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")),
            tls,
        }
    }
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
