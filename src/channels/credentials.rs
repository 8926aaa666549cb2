//! The taker's password file: one `user:$pbkdf2-sha256$ITERATIONS$SALT$HASH` line per
//! user (salt and hash in base64), `#` comments. No plaintext is ever stored or
//! accepted; checking is constant-time and costs the same for an unknown user, so
//! timing tells nothing about which users exist.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::pbkdf2;
use std::num::NonZeroU32;

/// Iterations for new entries: about 10 ms on a desktop core, ~150 ms on a Pi 1.
pub const DEFAULT_ITERATIONS: u32 = 10_000;
const SCHEME: &str = "$pbkdf2-sha256$";
const HASH_LEN: usize = 32;

#[derive(Debug, Clone)]
struct Entry {
    user: String,
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct Credentials {
    entries: Vec<Entry>,
}

fn parse_entry(line: &str) -> Result<Entry, String> {
    let (user, rest) = line
        .split_once(':')
        .ok_or("expected user:$pbkdf2-sha256$...")?;
    if user.is_empty() || user.contains(char::is_whitespace) {
        return Err(format!("bad user name {user:?}"));
    }
    let Some(rest) = rest.strip_prefix(SCHEME) else {
        return Err(format!(
            "user {user}: not a $pbkdf2-sha256$ hash (plaintext passwords are refused)"
        ));
    };
    let mut f = rest.split('$');
    let (Some(it), Some(salt), Some(hash), None) = (f.next(), f.next(), f.next(), f.next()) else {
        return Err(format!("user {user}: expected ITERATIONS$SALT$HASH"));
    };
    let iterations = it
        .parse::<u32>()
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| format!("user {user}: bad iteration count {it:?}"))?;
    let salt = B64
        .decode(salt)
        .map_err(|e| format!("user {user}: salt: {e}"))?;
    let hash = B64
        .decode(hash)
        .map_err(|e| format!("user {user}: hash: {e}"))?;
    if hash.len() != HASH_LEN || salt.len() < 8 {
        return Err(format!(
            "user {user}: hash must be 32 bytes and salt at least 8"
        ));
    }
    Ok(Entry {
        user: user.to_string(),
        iterations,
        salt,
        hash,
    })
}

impl Credentials {
    /// Parses a password file's text; errors name `file:line`.
    pub fn parse(text: &str, file: &str) -> Result<Credentials, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let e = parse_entry(line).map_err(|e| format!("{file}:{}: {e}", i + 1))?;
            if entries.iter().any(|x| x.user == e.user) {
                return Err(format!("{file}:{}: user {} appears twice", i + 1, e.user));
            }
            entries.push(e);
        }
        Ok(Credentials { entries })
    }

    /// True when `password` is `user`'s.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.entries.iter().find(|e| e.user == user) {
            Some(e) => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA256,
                e.iterations,
                &e.salt,
                password.as_bytes(),
                &e.hash,
            )
            .is_ok(),
            None => {
                // the same work as for a real user
                let mut out = [0u8; HASH_LEN];
                let it = NonZeroU32::new(DEFAULT_ITERATIONS).expect("non-zero");
                pbkdf2::derive(
                    pbkdf2::PBKDF2_HMAC_SHA256,
                    it,
                    b"meshnode-no-such-user",
                    password.as_bytes(),
                    &mut out,
                );
                false
            }
        }
    }

    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.user.as_str())
    }
}

/// A new password file line for `user` (random salt).
pub fn hash_line(user: &str, password: &str, iterations: u32) -> Result<String, String> {
    use ring::rand::SecureRandom;
    if user.is_empty() || user.contains([':', '\n']) || user.contains(char::is_whitespace) {
        return Err(format!("bad user name {user:?}"));
    }
    let it = NonZeroU32::new(iterations).ok_or("iterations must be at least 1")?;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "no randomness for a salt")?;
    let mut hash = [0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        it,
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    Ok(format!(
        "{user}:{SCHEME}{iterations}${}${}",
        B64.encode(salt),
        B64.encode(hash)
    ))
}

/// Sets `user`'s line in a password file's text (added, or replaced in place).
pub fn set_user(text: &str, user: &str, line: &str) -> String {
    let mut out = String::new();
    let mut replaced = false;
    for l in text.lines() {
        if l.split_once(':').is_some_and(|(u, _)| u == user) && !l.trim_start().starts_with('#') {
            if !replaced {
                out.push_str(line);
                out.push('\n');
                replaced = true;
            }
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// (user, password) of an `Authorization: Basic ...` header value.
pub fn basic_auth(header: &str) -> Option<(String, String)> {
    let (scheme, b64) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = B64.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Recently verified (user, password) pairs, so a client sending the same credentials
/// with every request pays PBKDF2 (~150 ms on a Pi 1) once, not every time. Holds only
/// successes, as an HMAC under a key made at start (never the password), bounded in
/// number and age; a miss costs the full check.
pub struct VerifiedCache {
    key: ring::hmac::Key,
    entries: std::sync::Mutex<Vec<(ring::hmac::Tag, std::time::Instant)>>,
    capacity: usize,
    ttl: std::time::Duration,
}

/// Pairs remembered, and for how long.
pub const VERIFIED_CAPACITY: usize = 64;
pub const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(300);

impl VerifiedCache {
    pub fn new(capacity: usize, ttl: std::time::Duration) -> VerifiedCache {
        let rng = ring::rand::SystemRandom::new();
        let key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).expect("randomness for a key");
        VerifiedCache {
            key,
            entries: std::sync::Mutex::new(Vec::new()),
            capacity,
            ttl,
        }
    }

    fn tag(&self, user: &str, password: &str) -> ring::hmac::Tag {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        ctx.sign()
    }

    /// `creds.verify`, answered from the cache when this pair passed recently.
    pub fn verify(&self, creds: &Credentials, user: &str, password: &str) -> bool {
        let tag = self.tag(user, password);
        let now = std::time::Instant::now();
        {
            let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            e.retain(|(_, at)| now.duration_since(*at) < self.ttl);
            // tags are keyed by a secret of this process: comparing them tells an
            // attacker nothing; compared without early exit all the same
            if e.iter().any(|(t, _)| same(t.as_ref(), tag.as_ref())) {
                return true;
            }
        }
        if !creds.verify(user, password) {
            return false;
        }
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() >= self.capacity {
            e.remove(0);
        }
        e.push((tag, now));
        true
    }
}

/// Equal bytes, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_remembers_only_successes() {
        let text = hash_line("dave", "pw", 1000).unwrap();
        let c = Credentials::parse(&text, "pw").unwrap();
        let cache = VerifiedCache::new(2, std::time::Duration::from_secs(60));
        assert!(!cache.verify(&c, "dave", "nope"));
        assert!(cache.verify(&c, "dave", "pw"));
        assert_eq!(
            cache.entries.lock().unwrap().len(),
            1,
            "the failure is not kept"
        );
        assert!(cache.verify(&c, "dave", "pw"), "from the cache");
        assert!(!cache.verify(&c, "dave", "pw2"));
        assert!(
            !cache.verify(&c, "dav", "e\0pw"),
            "no confusion across the separator"
        );
        // a changed password file is believed once the entry has aged out
        let cache = VerifiedCache::new(2, std::time::Duration::ZERO);
        assert!(cache.verify(&c, "dave", "pw"));
        let other = Credentials::parse(&hash_line("dave", "new", 1000).unwrap(), "pw").unwrap();
        assert!(!cache.verify(&other, "dave", "pw"));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }

    #[test]
    fn hashes_and_verifies() {
        let line = hash_line("dave", "s3cret: with colon", 1000).unwrap();
        assert!(!line.contains("s3cret"), "no plaintext in the file");
        let text = format!(
            "# taker users\n{line}\n{}\n",
            hash_line("ann", "pw", 1000).unwrap()
        );
        let c = Credentials::parse(&text, "pw").unwrap();
        assert!(c.verify("dave", "s3cret: with colon"));
        assert!(!c.verify("dave", "s3cret"));
        assert!(!c.verify("ann", "s3cret: with colon"));
        assert!(!c.verify("nobody", "pw"));
        assert_eq!(c.users().collect::<Vec<_>>(), ["dave", "ann"]);
        // same password, different salt: different lines
        assert_ne!(
            hash_line("x", "pw", 1000).unwrap(),
            hash_line("x", "pw", 1000).unwrap()
        );
    }

    #[test]
    fn refuses_plaintext_and_bad_lines() {
        for (text, want) in [
            (
                "dave:secret\n",
                "pw:1: user dave: not a $pbkdf2-sha256$ hash (plaintext",
            ),
            ("dave\n", "pw:1: expected user:"),
            (
                "# c\ndave:$pbkdf2-sha256$0$AAAAAAAAAAA=$AAAA\n",
                "pw:2: user dave: bad iteration count",
            ),
            ("dave:$pbkdf2-sha256$10$!!$AAAA\n", "pw:1: user dave: salt"),
            (
                "dave:$pbkdf2-sha256$10$AAAAAAAAAAA=$AAAA\n",
                "pw:1: user dave: hash must be 32 bytes",
            ),
        ] {
            let e = Credentials::parse(text, "pw").unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
        let l = hash_line("d", "p", 10).unwrap();
        assert!(Credentials::parse(&format!("{l}\n{l}\n"), "pw")
            .unwrap_err()
            .contains("twice"));
        assert!(hash_line("a b", "p", 10).is_err());
    }

    #[test]
    fn sets_users_in_place() {
        let t = "# header\nann:x\ndave:old\n";
        assert_eq!(
            set_user(t, "dave", "dave:new"),
            "# header\nann:x\ndave:new\n"
        );
        assert_eq!(
            set_user(t, "bob", "bob:b"),
            "# header\nann:x\ndave:old\nbob:b\n"
        );
        assert_eq!(set_user("", "bob", "bob:b"), "bob:b\n");
    }

    #[test]
    fn decodes_basic_auth() {
        // "dave:s3cret:x" in base64
        let h = format!("Basic {}", B64.encode("dave:s3cret:x"));
        assert_eq!(basic_auth(&h), Some(("dave".into(), "s3cret:x".into())));
        assert_eq!(basic_auth("Bearer abc"), None);
        assert_eq!(basic_auth("Basic !!!"), None);
        assert_eq!(
            basic_auth(&format!("basic {}", B64.encode("nocolon"))),
            None
        );
    }
}
