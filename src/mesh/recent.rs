//! A bounded record of recently stored or verified files, so the same file announced by
//! several peers costs no disk read after the first.

pub(super) mod slots;

pub(super) use slots::Slots;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// Files remembered per flow: 14 Ki fill a table of 16 Ki slots at 7/8 load, 256 KB,
/// and 112 KB with the order kept.
pub const RECENT_CAPACITY: usize = 14 * 1024;

/// Removals remembered per flow (~0.2 MB): a file published before its removal here
/// and coming later, by a slower path, is not stored again (in memory only: after a
/// restart, as before).
pub const REMOVED_CAPACITY: usize = 4 * 1024;

/// relPath fingerprint -> digest fingerprint, oldest evicted first. Its table keeps
/// the size it was made with (`Slots`).
pub struct Recent {
    map: Slots<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

pub(super) fn fingerprint(bytes: &[u8]) -> u64 {
    // DefaultHasher::new() has fixed keys: the same input gives the same value
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            map: Slots::new(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// True when `rel` was last seen with exactly this digest.
    pub fn contains(&self, rel: &str, digest: &[u8]) -> bool {
        self.map.get(fingerprint(rel.as_bytes())) == Some(fingerprint(digest))
    }

    /// The (key, value) fingerprints held, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.order
            .iter()
            .filter_map(|k| self.map.get(*k).map(|v| (*k, v)))
    }

    /// The value fingerprint held for `rel` (what `insert_fingerprints` put there).
    pub fn value_of(&self, rel: &str) -> Option<u64> {
        self.map.get(fingerprint(rel.as_bytes()))
    }

    /// `contains` with the fingerprints made already.
    pub fn holds(&self, key: u64, value: u64) -> bool {
        self.map.get(key) == Some(value)
    }

    pub fn insert(&mut self, rel: &str, digest: &[u8]) {
        self.insert_fingerprints(fingerprint(rel.as_bytes()), fingerprint(digest));
    }

    /// `insert` with the fingerprints made already (the announcement journal's records).
    pub fn insert_fingerprints(&mut self, key: u64, value: u64) {
        if self.map.get(key).is_none() {
            // the oldest leaves first: the table holds `capacity` at most
            if self.order.len() == self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(old);
                }
            }
            self.order.push_back(key);
        }
        self.map.insert(key, value);
    }

    /// Forgets `rel` (it was removed or replaced on disk).
    pub fn forget(&mut self, rel: &str) {
        // its slot in `order` stays until it ages out; the map is what answers
        self.map.remove(fingerprint(rel.as_bytes()));
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_evicts_oldest() {
        let mut r = Recent::new(2);
        r.insert("a", b"1");
        r.insert("b", b"2");
        assert!(r.contains("a", b"1"));
        assert!(
            !r.contains("a", b"2"),
            "another version is not the same file"
        );
        r.insert("c", b"3");
        assert!(!r.contains("a", b"1"), "oldest evicted");
        assert!(r.contains("b", b"2") && r.contains("c", b"3"));
        assert_eq!(r.len(), 2);
        r.forget("b");
        assert!(!r.contains("b", b"2"));
    }

    #[test]
    fn a_full_record_churned_keeps_its_table() {
        let mut r = Recent::new(RECENT_CAPACITY);
        let before = r.map.slots();
        for i in 0..10 * RECENT_CAPACITY as u64 {
            r.insert_fingerprints(fingerprint(&i.to_le_bytes()), i);
        }
        assert_eq!(r.len(), RECENT_CAPACITY);
        assert_eq!(r.map.slots(), before, "the table grew");
        let last = 10 * RECENT_CAPACITY as u64 - 1;
        assert!(r.holds(fingerprint(&last.to_le_bytes()), last));
        let gone = 10 * RECENT_CAPACITY as u64 - RECENT_CAPACITY as u64 - 1;
        assert_eq!(r.map.get(fingerprint(&gone.to_le_bytes())), None, "evicted");
    }

    #[test]
    fn replacing_a_version_does_not_grow() {
        let mut r = Recent::new(2);
        for i in 0..100u32 {
            r.insert("a", &i.to_le_bytes());
        }
        assert_eq!(r.len(), 1);
        assert!(r.contains("a", &99u32.to_le_bytes()));
    }
}

/// Files stored lately by their checksum: the same bytes announced under another name
/// are copied from here, not fetched again. Bounded; a file found here is checked
/// against its checksum before it is copied (it may have been replaced or removed).
pub struct SameBytes {
    map: HashMap<u64, String>,
    order: VecDeque<u64>,
    capacity: usize,
}

/// Files remembered by their checksum (~100 bytes each: ~0.1 MB).
pub const SAME_BYTES_CAPACITY: usize = 1024;

impl SameBytes {
    pub fn new(capacity: usize) -> SameBytes {
        SameBytes {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// In memory only (never journaled), so hashed in place: the copy it was made from
    /// cost an allocation or two per lookup, three lookups per stored file.
    fn key(method: &str, digest: &[u8]) -> u64 {
        let mut h = DefaultHasher::new();
        h.write(method.as_bytes());
        h.write_u8(0);
        h.write(digest);
        h.finish()
    }

    pub fn insert(&mut self, method: &str, digest: &[u8], rel: &str) {
        let k = Self::key(method, digest);
        if self.map.insert(k, rel.to_string()).is_none() {
            if self.order.len() == self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
            self.order.push_back(k);
        }
    }

    pub fn get(&self, method: &str, digest: &[u8]) -> Option<&str> {
        self.map.get(&Self::key(method, digest)).map(String::as_str)
    }
}

#[cfg(test)]
mod same_bytes_tests {
    use super::*;

    #[test]
    fn remembers_the_latest_name_within_its_capacity() {
        let mut s = SameBytes::new(2);
        s.insert("sha512", b"d1", "a/x");
        s.insert("sha512", b"d1", "a/y");
        assert_eq!(s.get("sha512", b"d1"), Some("a/y"));
        assert_eq!(s.get("md5", b"d1"), None, "the method is part of the key");
        s.insert("sha512", b"d2", "b");
        s.insert("sha512", b"d3", "c");
        assert_eq!(s.get("sha512", b"d1"), None, "the oldest gave way");
        assert_eq!(s.get("sha512", b"d3"), Some("c"));
    }
}
