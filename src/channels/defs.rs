//! Channel definitions (the `channel` sections of the config) and their rights.

use crate::store::sidecar::{valid_id, MAX_ID_LEN};
use std::io;
use std::path::PathBuf;

/// Default capacity of a channel that does not say.
pub const DEFAULT_CAPACITY: usize = 10;
/// The publisher recorded for an upload without credentials.
pub const ANONYMOUS: &str = "anonymous";

/// Who may do something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Users {
    /// Any authenticated user.
    All,
    Only(Vec<String>),
}

/// The users named in the channels' rights lists and absent from the password file
/// (`known`): (channel, list, user), for a warning at start.
pub fn unknown_users<'d>(
    defs: &'d [ChannelDef],
    known: &[&str],
) -> Vec<(&'d str, &'static str, &'d str)> {
    let mut out = Vec::new();
    for d in defs {
        let lists = [
            ("writers", Some(&d.writers)),
            ("readers", Some(&d.readers)),
            ("deleters", d.deleters.as_ref()),
        ];
        for (name, users) in lists {
            for u in users.map(Users::names).unwrap_or_default() {
                if !known.contains(&u.as_str()) {
                    out.push((d.id.as_str(), name, u.as_str()));
                }
            }
        }
    }
    out
}

impl Users {
    /// `*`, or user names separated by spaces and/or commas (`dave,frank`,
    /// `dave, frank`, `dave frank`).
    pub fn parse(v: &str) -> Users {
        if v.trim() == "*" {
            Users::All
        } else {
            Users::Only(
                v.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        }
    }

    /// The names listed (none for `*`).
    pub fn names(&self) -> &[String] {
        match self {
            Users::All => &[],
            Users::Only(l) => l,
        }
    }

    pub fn contains(&self, user: &str) -> bool {
        match self {
            Users::All => true,
            Users::Only(l) => l.iter().any(|u| u == user),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Kept in the data tree and announced into the mesh.
    Stored,
    /// Deposited into `dir` for a local decoder. `incoming` holds partial uploads (same
    /// filesystem, so the final rename is atomic); `min_free` bytes must stay free.
    Feed {
        dir: PathBuf,
        incoming: Option<PathBuf>,
        min_free: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelDef {
    pub id: String,
    pub title: String,
    /// Most products kept; 1: always the latest.
    pub capacity: usize,
    /// Open: anyone may publish, through `/taker`, without credentials.
    pub open: bool,
    pub writers: Users,
    /// `All` here also admits readers without credentials.
    pub readers: Users,
    /// `None`: the writers.
    pub deleters: Option<Users>,
    pub kind: Kind,
}

/// Bytes from `512`, `64K`, `10M`, `2G`.
pub fn parse_size(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'K' | 'k')) => (&v[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&v[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{v:?} is not a size (bytes, or with K, M, G)"))
}

impl ChannelDef {
    pub fn new(id: &str) -> Result<ChannelDef, String> {
        if !valid_id(id) {
            return Err(format!(
                "channel id {id:?}: use up to {MAX_ID_LEN} letters, digits, '-', '_' and '.' (not first)"
            ));
        }
        Ok(ChannelDef {
            id: id.to_string(),
            title: id.to_string(),
            capacity: DEFAULT_CAPACITY,
            open: false,
            writers: Users::All,
            readers: Users::All,
            deleters: None,
            kind: Kind::Stored,
        })
    }

    /// One `option value` line of a `channel` section.
    pub fn apply(&mut self, name: &str, v: &str) -> Result<(), String> {
        match name {
            "title" => self.title = v.to_string(),
            "capacity" => {
                self.capacity = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("capacity: {v:?} is not a positive number"))?
            }
            "access" => {
                self.open = match v {
                    "open" => true,
                    "restricted" => false,
                    _ => return Err(format!("access: {v:?} is not open or restricted")),
                }
            }
            "writers" => self.writers = Users::parse(v),
            "readers" => self.readers = Users::parse(v),
            "deleters" => self.deleters = Some(Users::parse(v)),
            "kind" => {
                self.kind = match v {
                    "stored" => Kind::Stored,
                    "feed" => Kind::Feed {
                        dir: PathBuf::new(),
                        incoming: None,
                        min_free: 0,
                    },
                    _ => return Err(format!("kind: {v:?} is not stored or feed")),
                }
            }
            "feed-dir" | "incoming" | "min-free" => {
                let Kind::Feed {
                    dir,
                    incoming,
                    min_free,
                } = &mut self.kind
                else {
                    return Err(format!("{name} needs `kind feed` first"));
                };
                match name {
                    "feed-dir" => *dir = PathBuf::from(v),
                    "incoming" => *incoming = Some(PathBuf::from(v)),
                    _ => *min_free = parse_size(v).map_err(|e| format!("min-free: {e}"))?,
                }
            }
            _ => return Err(format!("unknown channel option {name}")),
        }
        Ok(())
    }

    /// Checks the whole definition.
    pub fn finish(&self) -> Result<(), String> {
        if let Kind::Feed { dir, .. } = &self.kind {
            if dir.as_os_str().is_empty() {
                return Err(format!("channel {}: kind feed needs feed-dir", self.id));
            }
        }
        Ok(())
    }

    pub fn may_write(&self, user: Option<&str>) -> bool {
        self.open || user.is_some_and(|u| self.writers.contains(u))
    }

    /// Whether only some users may read it: then it stays on this node (never announced
    /// to the mesh) and its products are served to those users only, whichever path
    /// asks (`/channels/...` or the tree's `/metcast/...`).
    pub fn readers_restricted(&self) -> bool {
        matches!(self.readers, Users::Only(_))
    }

    pub fn may_read(&self, user: Option<&str>) -> bool {
        match &self.readers {
            Users::All => true,
            Users::Only(_) => user.is_some_and(|u| self.readers.contains(u)),
        }
    }

    /// Deleting needs credentials: an anonymous publisher of an open channel may not.
    pub fn may_delete(&self, user: Option<&str>) -> bool {
        user.is_some_and(|u| self.deleters.as_ref().unwrap_or(&self.writers).contains(u))
    }

    pub fn is_feed(&self) -> bool {
        matches!(self.kind, Kind::Feed { .. })
    }
}

/// Why a channel request is refused, in the channels' own terms; the HTTP answer
/// maps it to a status (`reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The request is malformed (headers, attributes, a cut-off, an id).
    BadRequest,
    /// No credentials, or wrong ones, where they are needed.
    Unauthenticated,
    /// Credentials that do not give this right.
    Forbidden,
    /// No such channel, product or resource.
    NotFound,
    /// A method the resource does not take.
    WrongMethod,
    /// An upload without a length or chunked framing.
    LengthRequired,
    /// Larger than the product limit.
    TooLarge,
    /// A content coding (gzip...) the taker does not undo.
    UnsupportedEncoding,
    /// The disk or the tree failed.
    Storage,
    /// A feed's disk is below its min-free.
    DiskFull,
    /// A body that came too slowly (the server's minimum rate).
    TooSlow,
}

/// A refusal: the reason, and one line saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub why: String,
}

impl Refusal {
    pub fn new(reason: Reason, why: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            why: why.into(),
        }
    }
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Refusal {
        Refusal::new(Reason::Storage, format!("storage: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memo(capacity: usize) -> ChannelDef {
        let mut d = ChannelDef::new("MEMO").unwrap();
        d.capacity = capacity;
        d
    }

    #[test]
    fn ids_and_sizes() {
        assert!(crate::store::sidecar::valid_id("MEMO") && valid_id("21") && valid_id("a.b-c_d"));
        for bad in ["", ".x", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(!crate::store::sidecar::valid_id(bad), "{bad}");
        }
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn unknown_users_are_found_in_every_list() {
        let mut d = memo(1);
        d.apply("writers", "dave,frank").unwrap();
        d.apply("readers", "*").unwrap();
        d.apply("deleters", "root").unwrap();
        assert_eq!(
            unknown_users(&[d], &["dave"]),
            vec![("MEMO", "writers", "frank"), ("MEMO", "deleters", "root")]
        );
    }

    #[test]
    fn user_lists_take_commas_and_spaces() {
        for v in ["dave,frank", "dave, frank", "dave frank", " dave ,, frank "] {
            assert_eq!(Users::parse(v).names(), ["dave", "frank"], "{v:?}");
        }
        assert!(Users::parse(" * ").names().is_empty());
    }

    #[test]
    fn rights() {
        let mut d = memo(1);
        d.apply("access", "restricted").unwrap();
        d.apply("writers", "dave,ann").unwrap();
        d.apply("readers", "ann").unwrap();
        assert!(d.may_write(Some("dave")) && !d.may_write(Some("eve")) && !d.may_write(None));
        assert!(d.may_read(Some("ann")) && !d.may_read(Some("dave")) && !d.may_read(None));
        assert!(d.may_delete(Some("dave")) && !d.may_delete(Some("eve")));
        d.apply("deleters", "ann").unwrap();
        assert!(!d.may_delete(Some("dave")) && d.may_delete(Some("ann")));
        let mut o = memo(1);
        o.apply("access", "open").unwrap();
        assert!(o.may_write(None) && o.may_read(None) && !o.may_delete(None));
        assert!(o.apply("feed-dir", "/x").unwrap_err().contains("kind feed"));
        assert!(o.apply("capacity", "0").is_err());
        o.apply("kind", "feed").unwrap();
        assert!(o.finish().unwrap_err().contains("feed-dir"));
    }
}
