//! Checksums: the methods the dialects name, their base64 (v03) and hex (array form)
//! spellings, and a hasher fed while a file is written.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fmt;

/// A digest: 16 bytes for md5, up to 64 for the sha families.
#[derive(Clone, PartialEq, Eq)]
pub struct Digest {
    len: u8,
    bytes: [u8; 64],
}

impl Digest {
    pub fn from_slice(s: &[u8]) -> Option<Digest> {
        if s.len() > 64 {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..s.len()].copy_from_slice(s);
        Some(Digest {
            len: s.len() as u8,
            bytes,
        })
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
    pub fn to_base64(&self) -> String {
        B64.encode(self.as_bytes())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_base64())
    }
}

/// The methods of the dialects. md5 and the sha families describe the content and can
/// be verified; the others are carried but say nothing checkable about the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Md5,
    Sha512,
    /// WIS2's (WNM) methods beside sha512.
    Sha256,
    Sha384,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    /// md5 of the file name (`n` in the array form).
    Md5Name,
    /// arbitrary, random, cod, `z`, `0`: nothing to verify against.
    Unverifiable,
    /// The announcement is a removal (`remove`, `R`).
    Remove,
    /// The announcement is a link (`link`, `L`).
    Link,
}

impl Method {
    /// Parses a v03 method name, case-insensitively (the demo's README writes "MD5").
    pub fn from_name(name: &str) -> Option<Method> {
        // lowered on the stack: every message names its method, and a lowered copy on
        // the heap was an allocation per message (names longer than any known are none)
        let mut buf = [0u8; 16];
        let lower = buf.get_mut(..name.len())?;
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"md5" => Method::Md5,
            b"sha512" => Method::Sha512,
            b"sha256" => Method::Sha256,
            b"sha384" => Method::Sha384,
            b"sha3-256" => Method::Sha3_256,
            b"sha3-384" => Method::Sha3_384,
            b"sha3-512" => Method::Sha3_512,
            b"md5name" => Method::Md5Name,
            b"arbitrary" | b"random" | b"cod" | b"unknown" => Method::Unverifiable,
            b"remove" => Method::Remove,
            b"link" => Method::Link,
            _ => return None,
        })
    }

    /// Parses the flag of the array form's `sum` header.
    pub fn from_sum_flag(flag: &str) -> Option<Method> {
        Some(match flag {
            "d" => Method::Md5,
            "s" => Method::Sha512,
            "n" => Method::Md5Name,
            "z" | "0" | "a" => Method::Unverifiable,
            "R" => Method::Remove,
            "L" => Method::Link,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Md5 => "md5",
            Method::Sha512 => "sha512",
            Method::Sha256 => "sha256",
            Method::Sha384 => "sha384",
            Method::Sha3_256 => "sha3-256",
            Method::Sha3_384 => "sha3-384",
            Method::Sha3_512 => "sha3-512",
            Method::Md5Name => "md5name",
            // written only by a dispatcher that cannot say the checksum in v03: computed
            // on download, with the method its value names
            Method::Unverifiable => "cod",
            Method::Remove => "remove",
            Method::Link => "link",
        }
    }

    pub fn digest_len(self) -> Option<usize> {
        match self {
            Method::Md5 | Method::Md5Name => Some(16),
            Method::Sha256 | Method::Sha3_256 => Some(32),
            Method::Sha384 | Method::Sha3_384 => Some(48),
            Method::Sha512 | Method::Sha3_512 => Some(64),
            _ => None,
        }
    }

    /// True when the method describes the file's bytes.
    pub fn verifies_content(self) -> bool {
        matches!(
            self,
            Method::Md5
                | Method::Sha512
                | Method::Sha256
                | Method::Sha384
                | Method::Sha3_256
                | Method::Sha3_384
                | Method::Sha3_512
        )
    }

    /// True for the methods a WIS2 notification message may name (not md5).
    pub fn is_wis2(self) -> bool {
        self.verifies_content() && self != Method::Md5
    }
}

/// Decodes an announced digest value: base64 as v03 says, or hex as the demo's README
/// example and the array form write it. The expected length decides which.
pub fn decode_value(method: Method, value: &str) -> Result<Digest, String> {
    let Some(len) = method.digest_len() else {
        return Err(format!("method {} carries no digest", method.name()));
    };
    if value.len() == len * 2 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return decode_hex(value)
            .and_then(|v| Digest::from_slice(&v))
            .ok_or_else(|| format!("invalid hex digest {value:?}"));
    }
    let mut buf = [0u8; 66];
    match B64.decode_slice(value.as_bytes(), &mut buf) {
        Ok(n) if n == len => Ok(Digest::from_slice(&buf[..n]).expect("len <= 64")),
        Ok(n) => Err(format!(
            "{} digest is {n} bytes, expected {len}",
            method.name()
        )),
        Err(e) => Err(format!("invalid base64 in integrity value: {e}")),
    }
}

pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// A running checksum over bytes written.
pub enum Hasher {
    Md5(md5::Context),
    /// sha256, sha384, sha512 (ring's assembly where it has it).
    Sha2(Method, ring::digest::Context),
    Sha3_256(sha3::Sha3_256),
    Sha3_384(sha3::Sha3_384),
    Sha3_512(sha3::Sha3_512),
}

impl Hasher {
    /// A hasher for a content method; `None` for the others.
    pub fn new(method: Method) -> Option<Hasher> {
        use sha3::Digest as _;
        let sha2 = |alg| Some(Hasher::Sha2(method, ring::digest::Context::new(alg)));
        match method {
            Method::Md5 => Some(Hasher::Md5(md5::Context::new())),
            Method::Sha256 => sha2(&ring::digest::SHA256),
            Method::Sha384 => sha2(&ring::digest::SHA384),
            Method::Sha512 => sha2(&ring::digest::SHA512),
            Method::Sha3_256 => Some(Hasher::Sha3_256(sha3::Sha3_256::new())),
            Method::Sha3_384 => Some(Hasher::Sha3_384(sha3::Sha3_384::new())),
            Method::Sha3_512 => Some(Hasher::Sha3_512(sha3::Sha3_512::new())),
            _ => None,
        }
    }

    pub fn method(&self) -> Method {
        match self {
            Hasher::Md5(_) => Method::Md5,
            Hasher::Sha2(m, _) => *m,
            Hasher::Sha3_256(_) => Method::Sha3_256,
            Hasher::Sha3_384(_) => Method::Sha3_384,
            Hasher::Sha3_512(_) => Method::Sha3_512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha3::Digest as _;
        match self {
            Hasher::Md5(c) => c.consume(data),
            Hasher::Sha2(_, c) => c.update(data),
            Hasher::Sha3_256(c) => c.update(data),
            Hasher::Sha3_384(c) => c.update(data),
            Hasher::Sha3_512(c) => c.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        use sha3::Digest as _;
        let d = |s: &[u8]| Digest::from_slice(s).expect("at most 64 bytes");
        match self {
            Hasher::Md5(c) => d(&c.finalize().0),
            Hasher::Sha2(_, c) => d(c.finish().as_ref()),
            Hasher::Sha3_256(c) => d(&c.finalize()),
            Hasher::Sha3_384(c) => d(&c.finalize()),
            Hasher::Sha3_512(c) => d(&c.finalize()),
        }
    }
}

/// Digest of a whole buffer.
pub fn digest_of(method: Method, data: &[u8]) -> Option<Digest> {
    let mut h = Hasher::new(method)?;
    h.update(data);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_and_sha512_known_values() {
        let d = digest_of(Method::Md5, b"hello\n").unwrap();
        assert_eq!(d.to_base64(), "sZRqySSS0jR8YjW00mERhA==");
        let d = digest_of(Method::Sha512, b"").unwrap();
        assert!(d
            .to_base64()
            .starts_with("z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8"));
    }

    #[test]
    fn the_wis2_methods_known_values() {
        // FIPS 180-4 / 202 values of "abc", as hex
        let abc = |m| {
            let d = digest_of(m, b"abc").unwrap();
            d.as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert!(abc(Method::Sha256).starts_with("ba7816bf8f01cfea414140de5dae2223"));
        assert!(abc(Method::Sha384).starts_with("cb00753f45a35e8bb5a03d699ac65007"));
        assert!(abc(Method::Sha3_256).starts_with("3a985da74fe225b2045c172d6bd390bd"));
        assert!(abc(Method::Sha3_384).starts_with("ec01498288516fc926459f58e2c6ad8d"));
        assert!(abc(Method::Sha3_512).starts_with("b751850b1a57168a5693cd924b6b096e"));
        assert_eq!(
            digest_of(Method::Sha3_384, b"").unwrap().as_bytes().len(),
            48
        );
        for m in [
            "sha256", "sha384", "sha512", "sha3-256", "sha3-384", "sha3-512",
        ] {
            let method = Method::from_name(m).unwrap();
            assert_eq!(method.name(), m);
            assert!(method.is_wis2());
        }
        assert!(!Method::Md5.is_wis2());
    }

    #[test]
    fn decodes_base64_and_hex() {
        let b = decode_value(Method::Md5, "sZRqySSS0jR8YjW00mERhA==").unwrap();
        let h = decode_value(Method::Md5, "b1946ac92492d2347c6235b4d2611184").unwrap();
        assert_eq!(b, h);
        assert_eq!(b, digest_of(Method::Md5, b"hello\n").unwrap());
    }

    #[test]
    fn refuses_bad_values() {
        assert!(decode_value(Method::Md5, "not base64!!")
            .unwrap_err()
            .contains("base64"));
        assert!(decode_value(Method::Md5, "AAAA")
            .unwrap_err()
            .contains("expected 16"));
        assert!(decode_value(Method::Sha512, "sZRqySSS0jR8YjW00mERhA==").is_err());
        assert!(decode_value(Method::Remove, "x").is_err());
        // far longer than any digest: must not overflow the decode buffer
        assert!(decode_value(Method::Sha512, &"A".repeat(400)).is_err());
    }

    #[test]
    fn method_names() {
        assert_eq!(Method::from_name("MD5"), Some(Method::Md5));
        assert_eq!(Method::from_name("sha512"), Some(Method::Sha512));
        assert_eq!(Method::from_name("crc"), None);
        assert_eq!(Method::from_name("Sha3-256"), Some(Method::Sha3_256));
        assert_eq!(Method::from_name("ARBITRARY"), Some(Method::Unverifiable));
        assert_eq!(Method::from_name(""), None);
        assert_eq!(
            Method::from_name("md5md5md5md5md5md5"),
            None,
            "longer than any"
        );
        assert_eq!(Method::from_name("mD5é"), None, "not ASCII");
        assert_eq!(Method::from_sum_flag("d"), Some(Method::Md5));
        assert_eq!(Method::from_sum_flag("R"), Some(Method::Remove));
        assert_eq!(Method::from_sum_flag("q"), None);
    }
}
