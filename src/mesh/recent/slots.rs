//! A table of fingerprints (u64 -> a small value) that never grows past the room it is
//! given: open addressing with linear probing, and deletion by shifting back the
//! entries after the hole (Knuth's algorithm R), so no tombstones. std's `HashMap`,
//! churned by a record that evicts its oldest entry at every insert, fills with
//! tombstones and doubles its table once they use up its room (a record of 14 Ki went
//! from 16 Ki buckets, 272 KB, to 32 Ki, 544 KB, in the drain benchmark, and grows so
//! on a node that runs for months); and it sizes by powers of two with 16-byte slots
//! for a (u64, u32), so the WIS2 ids' 256 Ki took ~9 MB where these 12-byte slots at
//! 7/8 load take 3.6 MB. The keys are fingerprints (SipHash values): a key's home slot
//! is its high bits scaled to the table (Lemire's multiply-shift), so any size works.

/// The key that marks an empty slot; a fingerprint of 0 is kept as `ZERO_KEY`.
const EMPTY: u64 = 0;
/// Where a key of 0 goes (one more collision in 2^64, as likely as any other).
const ZERO_KEY: u64 = 1;
/// The room a growing table starts with.
const FIRST_ROOM: usize = 1024;

pub struct Slots<V> {
    keys: Vec<u64>,
    values: Vec<V>,
    len: usize,
    /// Entries the table holds before it grows (or refuses, at `capacity`).
    room: usize,
    capacity: usize,
}

fn stored(key: u64) -> u64 {
    if key == EMPTY {
        ZERO_KEY
    } else {
        key
    }
}

/// Slots for `room` entries at a load of at most 7/8 (probes stay short: the keys are
/// uniform), and one more, so that one at least stays empty and a probe always ends.
fn slots_for(room: usize) -> usize {
    (room * 8).div_ceil(7) + 1
}

impl<V: Copy + Default> Slots<V> {
    /// A table made at its full size: room for `capacity` entries.
    pub fn new(capacity: usize) -> Slots<V> {
        let capacity = capacity.max(1);
        Self::with_room(capacity, capacity)
    }

    /// A table that starts small and doubles its room as entries come, up to
    /// `capacity`: for records that are often nearly empty and sometimes large.
    pub fn growing(capacity: usize) -> Slots<V> {
        let capacity = capacity.max(1);
        Self::with_room(capacity.min(FIRST_ROOM), capacity)
    }

    fn with_room(room: usize, capacity: usize) -> Slots<V> {
        let n = slots_for(room);
        Slots {
            keys: vec![EMPTY; n],
            values: vec![V::default(); n],
            len: 0,
            room,
            capacity,
        }
    }

    fn home(&self, key: u64) -> usize {
        ((key as u128 * self.keys.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.keys.len() {
            0
        } else {
            i + 1
        }
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn find(&self, key: u64) -> (usize, bool) {
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                EMPTY => return (i, false),
                k if k == key => return (i, true),
                _ => i = self.next(i),
            }
        }
    }

    pub fn get(&self, key: u64) -> Option<V> {
        match self.find(stored(key)) {
            (i, true) => Some(self.values[i]),
            _ => None,
        }
    }

    /// Sets `key`'s value; true when the key is new. Panics when the table already
    /// holds its capacity of other keys: its owner evicts first.
    pub fn insert(&mut self, key: u64, value: V) -> bool {
        let key = stored(key);
        let (mut i, found) = self.find(key);
        if !found {
            assert!(self.len < self.capacity, "a full table takes no new key");
            if self.len == self.room {
                self.grow();
                i = self.find(key).0;
            }
            self.keys[i] = key;
            self.len += 1;
        }
        self.values[i] = value;
        !found
    }

    /// Doubles the room (at most to the capacity), placing every entry anew.
    fn grow(&mut self) {
        let mut bigger = Self::with_room((self.room * 2).min(self.capacity), self.capacity);
        for (&k, &v) in self.keys.iter().zip(&self.values) {
            if k != EMPTY {
                let (i, _) = bigger.find(k);
                bigger.keys[i] = k;
                bigger.values[i] = v;
            }
        }
        bigger.len = self.len;
        *self = bigger;
    }

    pub fn remove(&mut self, key: u64) -> Option<V> {
        let (hole, found) = self.find(stored(key));
        if !found {
            return None;
        }
        let value = self.values[hole];
        self.remove_at(hole);
        Some(value)
    }

    /// Empties slot `hole`: entries after it move back into it unless their home slot
    /// lies (cyclically) after the hole and at or before where they are. The entries
    /// that move land at or after `hole`, before the next empty slot.
    fn remove_at(&mut self, mut hole: usize) {
        let mut j = hole;
        loop {
            j = self.next(j);
            let k = self.keys[j];
            if k == EMPTY {
                break;
            }
            let home = self.home(k);
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
    }

    /// Keeps only the entries for which `keep` is true, in place (no second table).
    pub fn retain(&mut self, mut keep: impl FnMut(u64, V) -> bool) {
        // start after an empty slot: no run of entries crosses it, so the entries a
        // removal moves back land where the walk has yet to go
        let Some(start) = self.keys.iter().position(|&k| k == EMPTY) else {
            return;
        };
        let n = self.keys.len();
        for step in 1..n {
            let i = (start + step) % n;
            while self.keys[i] != EMPTY && !keep(self.keys[i], self.values[i]) {
                self.remove_at(i);
            }
        }
    }

    /// The entries, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.keys
            .iter()
            .zip(&self.values)
            .filter(|(&k, _)| k != EMPTY)
            .map(|(&k, &v)| (k, v))
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

    /// The slots of the table now.
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Keys crowded into a few home slots at either end of the table (high bits
    /// alike), so that probes run long and removals shift entries across the table's
    /// end.
    fn crowded(rng: &mut u64) -> u64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let top = if *rng & 1 == 0 {
            *rng % 5
        } else {
            0xff - *rng % 5
        };
        (top << 56) | (*rng & 0x00ff_ffff_ffff_ffff)
    }

    fn agree(t: &Slots<u64>, model: &HashMap<u64, u64>, seed: u64, step: u64) {
        assert_eq!(t.len(), model.len());
        for (k, v) in model {
            assert_eq!(t.get(*k), Some(*v), "seed {seed} step {step}: key {k:x}");
        }
        assert_eq!(t.get(0x1234_5600), model.get(&0x1234_5600).copied());
        assert_eq!(t.iter().count(), model.len());
    }

    #[test]
    fn agrees_with_a_hash_map_under_random_inserts_removals_and_sweeps() {
        for seed in 1..=20u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            // half the seeds grow from a small room (5 entries, then 10, 20, ... 100)
            let mut t = if seed % 2 == 0 {
                Slots::new(100)
            } else {
                Slots::with_room(5, 100)
            };
            let mut model: HashMap<u64, u64> = HashMap::new();
            let mut keys: Vec<u64> = Vec::new();
            for step in 0..5_000u64 {
                if step % 997 == 0 {
                    // sweep out the keys of odd values, as SeenIds drops expired ids
                    t.retain(|_, v| v % 2 == 0);
                    model.retain(|_, v| *v % 2 == 0);
                    keys.retain(|k| model.contains_key(k));
                } else if !keys.is_empty() && (model.len() == 100 || rng % 3 == 0) {
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
                agree(&t, &model, seed, step);
            }
        }
    }

    #[test]
    fn sizes_for_the_capacity_at_seven_eighths_at_most() {
        let t: Slots<u64> = Slots::new(14 * 1024);
        assert_eq!(t.slots(), 16 * 1024 + 1);
        assert!(Slots::<u64>::new(1).slots() >= 2);
    }

    #[test]
    fn a_growing_table_starts_small_and_doubles_up_to_its_capacity() {
        let mut t: Slots<u32> = Slots::growing(256 * 1024);
        assert_eq!(t.slots(), slots_for(FIRST_ROOM));
        for k in 1..=1024u64 {
            t.insert(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1);
        }
        assert_eq!(
            t.slots(),
            slots_for(1024),
            "no growth before the room is used"
        );
        t.insert(7, 1);
        assert_eq!(t.slots(), slots_for(2048));
        for k in 1025..256 * 1024u64 {
            t.insert(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1);
        }
        assert_eq!(t.len(), 256 * 1024);
        assert_eq!(
            t.slots(),
            slots_for(256 * 1024),
            "never past its capacity's room"
        );
        // 12 bytes a slot: 3.6 MB for 256 Ki ids
        assert!(t.slots() * 12 < 3_700_000, "{} slots", t.slots());
    }

    #[test]
    #[should_panic(expected = "a full table takes no new key")]
    fn a_full_table_refuses_a_new_key() {
        let mut t = Slots::new(2);
        t.insert(10, 1u64);
        t.insert(20, 2);
        t.insert(30, 3);
    }
}
