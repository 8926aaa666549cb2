//! An HTTP request head through the server's request path: parsed as hyper parses it
//! (httparse, the server's header limit), made a `Request`, then what the handlers take
//! from it: the file it maps to (never outside the tree), its Range (never beyond the
//! file), its dates, media type and credentials (no panic).
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshnode::http::files::{parse_range, resolve, Range};
use meshnode::http::request::{Request, MAX_HEADERS};
use std::path::PathBuf;
use std::sync::OnceLock;

/// A small tree the targets may name: a file, a directory, a dotfile.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("meshnode-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("a/b"));
        let _ = std::fs::write(dir.join("a/b/f.txt"), b"file\n");
        let _ = std::fs::write(dir.join("a/.hidden"), b"hidden\n");
        dir.canonicalize().expect("the fuzz tree")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        return;
    };
    // what hyper then insists on: a method, a target and header values it can hold
    let mut b = http::Request::builder()
        .method(req.method.unwrap_or("GET"))
        .uri(req.path.unwrap_or("/"));
    for h in req.headers.iter() {
        b = b.header(h.name, h.value);
    }
    let Ok(r) = b.body(()) else {
        return;
    };
    let (parts, ()) = r.into_parts();
    let request = Request::of(&parts, false);
    if let Some(file) = resolve(root(), &request.path) {
        assert!(file.starts_with(root()), "{:?} -> {file:?}", request.path);
        assert!(
            !file.to_string_lossy().contains("/."),
            "a dotfile served: {file:?}"
        );
    }
    if let Some(range) = &request.range {
        for size in [0u64, 1, 5, 1 << 40] {
            if let Range::Part(start, end) = parse_range(range, size) {
                assert!(start <= end && end < size, "{range:?} of {size}: {start}..={end}");
            }
        }
    }
    if let Some(d) = &request.if_modified_since {
        let _ = meshnode::core::time::parse_http_date(d);
    }
    if let Some(t) = &request.content_type {
        let _ = meshnode::core::mediatype::MediaType::parse(t);
    }
    if let Some(a) = &request.authorization {
        let _ = meshnode::channels::credentials::basic_auth(a);
    }
});
