//! The file handler: the data tree for peers (GET, HEAD, Range, If-Modified-Since).
//! Never serves anything outside the tree: the path is percent-decoded, checked like a
//! relPath, dotfiles (our temporary files among them) are hidden, and the resolved path
//! must stay under the root.

use super::request::Request;
use super::response::{Piece, Reply};
use super::Handler;
use crate::core::relpath;
use crate::core::time::{http_date, parse_http_date};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The data tree, served.
pub struct Files {
    root: PathBuf,
}

impl Files {
    /// Serves the tree at `dir` (which must exist).
    pub fn open(dir: &Path) -> io::Result<Files> {
        let root = dir.canonicalize().map_err(|e| {
            io::Error::new(e.kind(), format!("data directory {}: {e}", dir.display()))
        })?;
        Ok(Files { root })
    }
}

impl Handler for Files {
    fn name(&self) -> String {
        self.root.display().to_string()
    }
    fn handles(&self, _path: &str) -> bool {
        true
    }
    /// A file from the page cache: answered on the event loop.
    fn blocking(&self, _req: &Request) -> bool {
        false
    }
    fn answer(&self, req: &Request, _body: &mut dyn Read, _peer: &str) -> io::Result<Reply> {
        answer(&self.root, req)
    }
}

/// Maps a request target to a file under `root`, or `None` (answered 404).
pub fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let decoded = relpath::percent_decode(path)?;
    let rel = decoded.strip_prefix('/')?;
    let rel = relpath::validate(rel).ok()?;
    if rel.split('/').any(|c| c.starts_with('.')) {
        return None; // dotfiles, temporary files among them
    }
    // the resolved path (symlinks followed) must still be in the tree
    let full = root.join(rel).canonicalize().ok()?;
    full.starts_with(root).then_some(full)
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "text" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "xml" | "cap" => "application/xml",
        "html" | "htm" => "text/html; charset=utf-8",
        "csv" => "text/csv",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "bufr" | "bin" => "application/x-bufr",
        "grib" | "grib2" | "grb" | "grb2" => "application/x-grib",
        _ => "application/octet-stream",
    }
}

/// What a Range header asks of a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// Send it whole (no range, another unit, or a list of ranges: not supported).
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Nothing of the file matches: 416.
    Unsatisfiable,
}

/// Reads a Range header for a file of `size` bytes.
pub fn parse_range(header: &str, size: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let last = match size.checked_sub(1) {
        Some(l) => l,
        None => return Range::Unsatisfiable,
    };
    let bounds = if a.is_empty() {
        b.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (size.saturating_sub(n), last))
    } else {
        let start = a.parse::<u64>().ok();
        let end = if b.is_empty() {
            Some(last)
        } else {
            b.parse::<u64>().ok().map(|e| e.min(last))
        };
        start.zip(end)
    };
    match bounds {
        Some((start, end)) if start <= end && start < size => Range::Part(start, end),
        _ => Range::Unsatisfiable,
    }
}

/// Answers one request.
fn answer(root: &Path, req: &Request) -> io::Result<Reply> {
    if !req.method_ok {
        return Ok(Reply::new(405).header("allow", "GET, HEAD"));
    }
    let Some(path) = resolve(root, &req.path) else {
        return Ok(Reply::new(404));
    };
    let Ok(mut file) = File::open(&path) else {
        return Ok(Reply::new(404));
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Reply::new(404));
    }
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let with_dates = |r: Reply| {
        r.header("last-modified", http_date(mtime))
            .header("accept-ranges", "bytes")
    };
    if let Some(ims) = req.if_modified_since.as_deref().and_then(parse_http_date) {
        if mtime <= ims {
            return Ok(with_dates(Reply::new(304)));
        }
    }
    let range = req
        .range
        .as_deref()
        .map_or(Range::Whole, |r| parse_range(r, size));
    let (reply, start, len) = match range {
        Range::Whole => (Reply::new(200), 0, size),
        Range::Part(a, b) => (
            Reply::new(206).header("content-range", format!("bytes {a}-{b}/{size}")),
            a,
            b - a + 1,
        ),
        Range::Unsatisfiable => {
            let r = Reply::new(416).header("content-range", format!("bytes */{size}"));
            return Ok(with_dates(r));
        }
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    Ok(with_dates(reply)
        .header("content-type", content_type(&path))
        .piece(Piece::File(file, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=2-5", 10), Range::Part(2, 5));
        assert_eq!(parse_range("bytes=4-", 10), Range::Part(4, 9));
        assert_eq!(parse_range("bytes=-3", 10), Range::Part(7, 9));
        assert_eq!(parse_range("bytes=-30", 10), Range::Part(0, 9));
        assert_eq!(parse_range("bytes=5-100", 10), Range::Part(5, 9));
        assert_eq!(parse_range("bytes=10-", 10), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=6-2", 10), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=x-2", 10), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,4-5", 10), Range::Whole);
        assert_eq!(parse_range("items=0-1", 10), Range::Whole);
        assert_eq!(parse_range("bytes=0-", 0), Range::Unsatisfiable);
    }

    #[test]
    fn resolves_only_inside_the_tree() {
        let d = std::env::temp_dir().join(format!("meshnode-serve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("tree/a")).unwrap();
        std::fs::write(d.join("tree/a/f.txt"), b"x").unwrap();
        std::fs::write(d.join("tree/a/.meshnode.1.2.tmp"), b"partial").unwrap();
        std::fs::write(d.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(d.join("secret"), d.join("tree/a/link")).unwrap();
        let root = d.join("tree").canonicalize().unwrap();
        assert_eq!(resolve(&root, "/a/f.txt"), Some(root.join("a/f.txt")));
        assert_eq!(resolve(&root, "/a/f%2Etxt?x=1"), Some(root.join("a/f.txt")));
        for bad in [
            "/../secret",
            "/a/../../secret",
            "/%2e%2e/secret",
            "/a/%2E%2E/%2e%2e/secret",
            "/a/link",
            "/a/.meshnode.1.2.tmp",
            "a/f.txt",
            "/",
            "/a/%zz",
            "//etc/passwd",
        ] {
            assert_eq!(resolve(&root, bad), None, "{bad}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
