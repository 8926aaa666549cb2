//! A table of fingerprints (u64 -> u64) whose size is fixed when made: open addressing
//! with linear probing, and deletion by shifting back the entries after the hole
//! (Knuth's algorithm R), so no tombstones. std's `HashMap`, churned by a record that
//! evicts its oldest entry at every insert, fills with tombstones and doubles its table
//! once they use up its room (a record of 14 Ki went from 16 Ki buckets, 272 KB, to
//! 32 Ki, 544 KB, in the drain benchmark, and grows so on a node that runs for months).
//! The keys are fingerprints (SipHash values): their low bits index the table as they
//! are.

/// The key that marks an empty slot; a fingerprint of 0 is kept as `ZERO_KEY`.
const EMPTY: u64 = 0;
/// Where a key of 0 goes (one more collision in 2^64, as likely as any other).
const ZERO_KEY: u64 = 1;

pub struct Slots {
    keys: Vec<u64>,
    values: Vec<u64>,
    mask: usize,
    len: usize,
    capacity: usize,
}

fn stored(key: u64) -> u64 {
    if key == EMPTY {
        ZERO_KEY
    } else {
        key
    }
}

impl Slots {
    /// Room for `capacity` entries at a load of at most 7/8 (probes stay short: the
    /// keys are uniform).
    pub fn new(capacity: usize) -> Slots {
        let capacity = capacity.max(1);
        // more slots than entries: one at least stays empty, so a probe always ends
        let n = (capacity * 8).div_ceil(7).next_power_of_two();
        Slots {
            keys: vec![EMPTY; n],
            values: vec![0; n],
            mask: n - 1,
            len: 0,
            capacity,
        }
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn find(&self, key: u64) -> (usize, bool) {
        let mut i = key as usize & self.mask;
        loop {
            match self.keys[i] {
                EMPTY => return (i, false),
                k if k == key => return (i, true),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    pub fn get(&self, key: u64) -> Option<u64> {
        match self.find(stored(key)) {
            (i, true) => Some(self.values[i]),
            _ => None,
        }
    }

    /// Sets `key`'s value; true when the key is new. Panics when the table already
    /// holds its capacity of other keys: its owner evicts first.
    pub fn insert(&mut self, key: u64, value: u64) -> bool {
        let key = stored(key);
        let (i, found) = self.find(key);
        if !found {
            assert!(self.len < self.capacity, "a full table takes no new key");
            self.keys[i] = key;
            self.len += 1;
        }
        self.values[i] = value;
        !found
    }

    pub fn remove(&mut self, key: u64) -> Option<u64> {
        let (mut hole, found) = self.find(stored(key));
        if !found {
            return None;
        }
        let value = self.values[hole];
        // entries after the hole move back into it unless their home slot lies
        // (cyclically) after the hole and at or before where they are
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let k = self.keys[j];
            if k == EMPTY {
                break;
            }
            let home = k as usize & self.mask;
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.keys[hole] = k;
                self.values[hole] = self.values[j];
                hole = j;
            }
        }
        self.keys[hole] = EMPTY;
        self.len -= 1;
        Some(value)
    }

    pub fn clear(&mut self) {
        self.keys.fill(EMPTY);
        self.len = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slots of the table (fixed when made).
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Keys crowded into a few home slots (low bits alike), so that probes run long
    /// and removals shift entries across the table's end.
    fn crowded(rng: &mut u64) -> u64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        (*rng & !0xff) | (*rng % 5) | 0xf8
    }

    #[test]
    fn agrees_with_a_hash_map_under_random_inserts_and_removals() {
        for seed in 1..=20u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut t = Slots::new(100);
            let mut model: HashMap<u64, u64> = HashMap::new();
            let mut keys: Vec<u64> = Vec::new();
            for step in 0..5_000u64 {
                let remove = !keys.is_empty() && (model.len() == 100 || rng % 3 == 0);
                if remove {
                    let k = keys.swap_remove((rng as usize >> 3) % keys.len());
                    assert_eq!(t.remove(k), model.remove(&k), "seed {seed} step {step}");
                } else {
                    let k = if rng % 7 == 0 { 0 } else { crowded(&mut rng) };
                    if model.insert(stored(k), step).is_none() {
                        keys.push(stored(k));
                    }
                    t.insert(k, step);
                }
                crowded(&mut rng);
                assert_eq!(t.len(), model.len());
                for (k, v) in &model {
                    assert_eq!(t.get(*k), Some(*v), "seed {seed} step {step}: key {k:x}");
                }
                assert_eq!(t.get(0x1234_5600), model.get(&0x1234_5600).copied());
            }
        }
    }

    #[test]
    fn sizes_for_the_capacity_at_seven_eighths_at_most() {
        assert_eq!(Slots::new(14 * 1024).slots(), 16 * 1024);
        assert_eq!(Slots::new(4 * 1024).slots(), 8 * 1024);
        assert!(Slots::new(1).slots() >= 2);
    }

    #[test]
    #[should_panic(expected = "a full table takes no new key")]
    fn a_full_table_refuses_a_new_key() {
        let mut t = Slots::new(2);
        t.insert(10, 1);
        t.insert(20, 2);
        t.insert(30, 3);
    }
}
