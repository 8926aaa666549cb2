//! Validation of the relPath of a message: the only part of a message that names a
//! place on our disk, so it is checked before anything touches the disk.

use std::fmt;

/// Longest relPath accepted, in bytes (Linux PATH_MAX is 4096; GTS trees are far shorter).
pub const MAX_RELPATH_LEN: usize = 1024;
/// Longest single component, in bytes (NAME_MAX on Linux filesystems).
pub const MAX_COMPONENT_LEN: usize = 255;
/// Deepest tree accepted.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelPathError {
    Empty,
    TooLong(usize),
    TooDeep(usize),
    ComponentTooLong,
    Absolute,
    EmptyComponent,
    DotComponent,
    ParentComponent,
    ControlChar,
}

impl fmt::Display for RelPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "relPath is empty"),
            Self::TooLong(n) => write!(f, "relPath is {n} bytes, limit {MAX_RELPATH_LEN}"),
            Self::TooDeep(n) => write!(f, "relPath has {n} levels, limit {MAX_DEPTH}"),
            Self::ComponentTooLong => {
                write!(f, "relPath has a component over {MAX_COMPONENT_LEN} bytes")
            }
            Self::Absolute => write!(f, "relPath is absolute (starts with //)"),
            Self::EmptyComponent => write!(f, "relPath has an empty component (//)"),
            Self::DotComponent => write!(f, "relPath has a '.' component"),
            Self::ParentComponent => write!(f, "relPath has a '..' component"),
            Self::ControlChar => write!(f, "relPath contains a NUL or control character"),
        }
    }
}

impl std::error::Error for RelPathError {}

/// Checks `rel` and returns it without its leading `/`.
///
/// One leading `/` is accepted because the array form (and some v03 senders) write
/// relPath that way; it is relative to baseUrl all the same. Everything else that could
/// name a place outside the tree, or that a file system or a log line would treat
/// specially, is refused.
pub fn validate(rel: &str) -> Result<&str, RelPathError> {
    if rel.len() > MAX_RELPATH_LEN {
        return Err(RelPathError::TooLong(rel.len()));
    }
    let rel = match rel.strip_prefix('/') {
        Some(r) if r.starts_with('/') => return Err(RelPathError::Absolute),
        Some(r) => r,
        None => rel,
    };
    if rel.is_empty() {
        return Err(RelPathError::Empty);
    }
    if rel.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(RelPathError::ControlChar);
    }
    let mut depth = 0;
    for component in rel.split('/') {
        depth += 1;
        match component {
            "" => return Err(RelPathError::EmptyComponent),
            "." => return Err(RelPathError::DotComponent),
            ".." => return Err(RelPathError::ParentComponent),
            c if c.len() > MAX_COMPONENT_LEN => return Err(RelPathError::ComponentTooLong),
            _ => {}
        }
    }
    if depth > MAX_DEPTH {
        return Err(RelPathError::TooDeep(depth));
    }
    Ok(rel)
}

/// The directory part of a validated relPath ("" for a file at the top of the tree).
pub fn dirname(rel: &str) -> &str {
    rel.rfind('/').map_or("", |i| &rel[..i])
}

/// The file name part of a validated relPath.
pub fn basename(rel: &str) -> &str {
    rel.rfind('/').map_or(rel, |i| &rel[i + 1..])
}

/// Appends `base/rel` to `out` as a URL, percent-encoding what a URL path cannot carry
/// as is (space, `%`, `?`, `#`, non-ASCII...).
pub fn join_url(out: &mut String, base: &str, rel: &str) {
    out.push_str(base.trim_end_matches('/'));
    out.push('/');
    for b in rel.trim_start_matches('/').bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

/// Decodes `%XX` escapes; `None` when an escape is truncated or not hex, or the result
/// is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        assert_eq!(
            validate("2019013003/GTS/CWAO/SX/a.txt"),
            Ok("2019013003/GTS/CWAO/SX/a.txt")
        );
        assert_eq!(
            validate("/2019013003/GTS/a.txt"),
            Ok("2019013003/GTS/a.txt")
        );
        assert_eq!(validate("hello.txt"), Ok("hello.txt"));
        assert_eq!(validate("a/..b/c..").unwrap(), "a/..b/c..");
    }

    #[test]
    fn refuses_hostile_paths() {
        let cases: &[(&str, RelPathError)] = &[
            ("", RelPathError::Empty),
            ("/", RelPathError::Empty),
            ("//etc/passwd", RelPathError::Absolute),
            ("../etc/passwd", RelPathError::ParentComponent),
            ("a/../../etc/passwd", RelPathError::ParentComponent),
            ("a/..", RelPathError::ParentComponent),
            ("a/./b", RelPathError::DotComponent),
            ("a//b", RelPathError::EmptyComponent),
            ("a/b/", RelPathError::EmptyComponent),
            ("a/b\0c", RelPathError::ControlChar),
            ("a/b\nc", RelPathError::ControlChar),
        ];
        for (rel, want) in cases {
            assert_eq!(validate(rel), Err(want.clone()), "{rel:?}");
        }
        let long = "a/".repeat(600);
        assert!(matches!(validate(&long), Err(RelPathError::TooLong(_))));
        let deep = "a/".repeat(40) + "f";
        assert_eq!(validate(&deep), Err(RelPathError::TooDeep(41)));
        let wide = "x".repeat(256);
        assert_eq!(validate(&wide), Err(RelPathError::ComponentTooLong));
    }

    #[test]
    fn splits_and_joins() {
        assert_eq!(dirname("a/b/c.txt"), "a/b");
        assert_eq!(dirname("c.txt"), "");
        assert_eq!(basename("a/b/c.txt"), "c.txt");
        let mut url = String::new();
        join_url(&mut url, "http://h:8000/data/", "/a b/c%d#e.txt");
        assert_eq!(url, "http://h:8000/data/a%20b/c%25d%23e.txt");
    }
}
