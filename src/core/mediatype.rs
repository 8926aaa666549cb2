//! Media types with parameters, as a Metcast taker receives them in Content-Type:
//! `text/plain; cid=MEMO;fname=memo1.txt;topic="How to publish";author=Dave`.
//!
//! The grammar of RFC 9110 section 8.3.1: `type "/" subtype *( OWS ";" OWS parameter )`,
//! a parameter being `token "=" ( token / quoted-string )`; parameter names are
//! case-insensitive, a quoted string may hold `\`-escaped characters. Lenient only where
//! senders commonly are: an empty parameter (`;;`) and a trailing `;` are skipped.

use std::fmt;

/// Longest Content-Type accepted, in bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 4096;
/// Most parameters accepted.
pub const MAX_PARAMETERS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// `type/subtype`, lower-cased.
    pub essence: String,
    /// Parameters in order, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaTypeError(pub String);

impl fmt::Display for MediaTypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed Content-Type: {}", self.0)
    }
}

impl std::error::Error for MediaTypeError {}

/// What a quoted string holds: tab, space, visible characters and non-ASCII; no other
/// control character.
fn quotable(c: char) -> bool {
    c == '\t' || (c >= ' ' && c != '\x7f')
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn token(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !is_tchar(c)).unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

impl MediaType {
    pub fn parse(s: &str) -> Result<MediaType, MediaTypeError> {
        let err = |m: &str| Err(MediaTypeError(m.to_string()));
        if s.len() > MAX_MEDIA_TYPE_LEN {
            return err("longer than 4096 bytes");
        }
        let s = s.trim_matches([' ', '\t']);
        let Some((ty, rest)) = token(s) else {
            return err("no type");
        };
        let Some(rest) = rest.strip_prefix('/') else {
            return err("no '/' after the type");
        };
        let Some((sub, mut rest)) = token(rest) else {
            return err("no subtype");
        };
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            if rest.is_empty() {
                break;
            }
            let Some(r) = rest.strip_prefix(';') else {
                return err(&format!("expected ';' before {:?}", abbreviate(rest)));
            };
            rest = r.trim_start_matches([' ', '\t']);
            if rest.is_empty() || rest.starts_with(';') {
                continue;
            }
            let Some((name, r)) = token(rest) else {
                return err(&format!("bad parameter name at {:?}", abbreviate(rest)));
            };
            let Some(r) = r.strip_prefix('=') else {
                return err(&format!("parameter {name} has no '='"));
            };
            let (value, r) = if let Some(q) = r.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        // an escaped character is one a quoted string may hold anyway
                        // (RFC 9110 quoted-pair): an escaped NUL read and written back
                        // raw would not read again
                        '\\' => match chars.next() {
                            Some((_, e)) if quotable(e) => value.push(e),
                            _ => return err(&format!("bad escape in parameter {name}")),
                        },
                        c if !quotable(c) => {
                            return err(&format!("control character in parameter {name}"))
                        }
                        c => value.push(c),
                    }
                }
                let Some(end) = end else {
                    return err(&format!("unterminated quoted string in parameter {name}"));
                };
                (value, &q[end..])
            } else {
                match token(r) {
                    Some((v, r)) => (v.to_string(), r),
                    None => return err(&format!("parameter {name} has no value")),
                }
            };
            if params.len() == MAX_PARAMETERS {
                return err("more than 32 parameters");
            }
            params.push((name.to_ascii_lowercase(), value));
            rest = r;
        }
        let mt = MediaType {
            essence: format!("{}/{}", ty.to_ascii_lowercase(), sub.to_ascii_lowercase()),
            params,
        };
        mt.written()?;
        Ok(mt)
    }

    /// The written form, refused when it would not read again: within the limits
    /// `parse` applies. The written form puts a space after each `;`, so a type read at
    /// the length limit could be written longer (found by fuzzing); parameters added
    /// here (a product's cid and oid) could pass either limit.
    pub fn written(&self) -> Result<String, MediaTypeError> {
        if self.params.len() > MAX_PARAMETERS {
            return Err(MediaTypeError(format!(
                "more than {MAX_PARAMETERS} parameters"
            )));
        }
        let written = self.to_string();
        if written.len() > MAX_MEDIA_TYPE_LEN {
            return Err(MediaTypeError(format!(
                "longer than {MAX_MEDIA_TYPE_LEN} bytes once written ({})",
                written.len()
            )));
        }
        Ok(written)
    }

    /// The first value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for MediaType {
    /// Writes it back, quoting values that are not tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.essence)?;
        for (k, v) in &self.params {
            if !v.is_empty() && v.chars().all(is_tchar) {
                write!(f, "; {k}={v}")?;
            } else {
                write!(f, "; {k}=\"")?;
                for c in v.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}

fn abbreviate(s: &str) -> &str {
    s.char_indices().nth(20).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_longer_than_the_limit_once_written_is_refused() {
        // 4096 bytes read, 4097 written: the space after ';' (the fuzzer's finding)
        let head = "text/plain;a=";
        let at_limit = format!("{head}{}", "b".repeat(MAX_MEDIA_TYPE_LEN - head.len()));
        assert_eq!(at_limit.len(), MAX_MEDIA_TYPE_LEN);
        let e = MediaType::parse(&at_limit).unwrap_err();
        assert!(e.0.contains("once written (4097)"), "{e}");
        // one byte shorter: written at the limit, and read again
        let m = MediaType::parse(&at_limit[..MAX_MEDIA_TYPE_LEN - 1]).unwrap();
        assert_eq!(MediaType::parse(&m.to_string()).unwrap(), m);
    }

    #[test]
    fn parses_the_metcast_example() {
        let m = MediaType::parse(
            r#"text/plain; cid=MEMO;fname=memo1.txt;topic="How to publish";author=Dave"#,
        )
        .unwrap();
        assert_eq!(m.essence, "text/plain");
        assert_eq!(m.param("cid"), Some("MEMO"));
        assert_eq!(m.param("CID"), Some("MEMO"));
        assert_eq!(m.param("fname"), Some("memo1.txt"));
        assert_eq!(m.param("topic"), Some("How to publish"));
        assert_eq!(m.param("author"), Some("Dave"));
        assert_eq!(m.param("missing"), None);
        let m = MediaType::parse("application/octet-stream; cid=21").unwrap();
        assert_eq!(
            (m.essence.as_str(), m.param("cid")),
            ("application/octet-stream", Some("21"))
        );
    }

    #[test]
    fn quoted_strings_escapes_and_round_trip() {
        let m = MediaType::parse(r#"Text/Plain ; Title="a \"quoted\" \\ word; not=param" ;; x=1;"#)
            .unwrap();
        assert_eq!(m.essence, "text/plain");
        assert_eq!(m.param("title"), Some(r#"a "quoted" \ word; not=param"#));
        assert_eq!(m.param("x"), Some("1"));
        let again = MediaType::parse(&m.to_string()).unwrap();
        assert_eq!(again, m);
        assert_eq!(
            MediaType::parse(r#"a/b; e="""#).unwrap().param("e"),
            Some("")
        );
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        for s in [
            "text/plain; t=\"a\\\tb\"",
            "text/plain; t=\"caf\u{e9} \\\"x\\\"\"",
            "application/x; a=1; b=\"\"; c=\"sp ace\"",
        ] {
            let m = MediaType::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            let again = MediaType::parse(&m.to_string()).unwrap();
            assert_eq!(again, m, "{s:?} -> {m}");
        }
    }

    #[test]
    fn refuses_malformed_types() {
        for (bad, why) in [
            ("", "no type"),
            ("text", "no '/'"),
            ("text/", "no subtype"),
            ("text/plain cid=1", "expected ';'"),
            ("text/plain; cid", "no '='"),
            ("text/plain; cid=", "no value"),
            ("text/plain; =x", "bad parameter name"),
            ("text/plain; t=\"open", "unterminated"),
            ("text/plain; t=\"a\nb\"", "control character"),
            ("text/plain; t=\"a\\\0b\"", "bad escape"),
            ("text/plain; t=\"a\x01b\"", "control character"),
            ("text/plain; t=\"a\\\x7fb\"", "bad escape"),
            ("text/plain; t=a b", "expected ';'"),
        ] {
            let e = MediaType::parse(bad).unwrap_err();
            assert!(e.0.contains(why), "{bad:?}: {e}");
        }
        let many: String = (0..40).map(|i| format!("; p{i}=v")).collect();
        assert!(MediaType::parse(&format!("a/b{many}"))
            .unwrap_err()
            .0
            .contains("32"));
        assert!(MediaType::parse(&format!("a/b; x={}", "y".repeat(5000))).is_err());
    }
}
