//! The ghost queue of S3-FIFO: hashes of the keys most recently evicted from the small
//! queue, so that a name asked for again soon after is admitted straight to the main one.
//!
//! Kept as the paper's own implementation keeps it, as fingerprints with an insertion
//! stamp in a bucketed table rather than as a list: no keys, no allocation after start,
//! a fixed size. An entry is live while it is among the last `capacity` insertions (a
//! FIFO of that length); a bucket whose four slots are all live forgets its oldest early.
//! Memory: 8 octets a slot, at most 2 × `capacity` slots.

use super::heap_bytes;

/// Slots a bucket: one hash can sit in any of them.
const WAYS: usize = 4;

/// Recently evicted keys, by their 64-bit hash.
pub(super) struct Ghost {
    /// Each slot: the fingerprint (high 32 bits of the hash, low bit forced on) in the
    /// high half, the stamp in the low half. Valid values: 0 is an empty slot; the length
    /// is 0 or a power of two ≥ WAYS.
    slots: Box<[u64]>,
    /// Insertions so far, the stamp of the next one (wrapping; after 2^32 of them an old slot may look recent again,
    /// which only admits one entry to the main queue early).
    clock: u32,
    /// How many of the latest insertions are live. Valid values: 0..=2^30.
    capacity: u32,
}

impl Ghost {
    /// A ghost remembering the last `capacity` keys (0: none).
    pub(super) fn new(capacity: usize) -> Ghost {
        let capacity = capacity.min(1 << 30);
        let len = match capacity {
            0 => 0,
            n => n.next_power_of_two().max(WAYS),
        };
        Ghost {
            // vec![0; n] is a zeroed allocation: pages become resident as they are used.
            slots: vec![0u64; len].into_boxed_slice(),
            clock: 0,
            capacity: capacity as u32,
        }
    }

    /// Octets the table takes.
    pub(super) fn bytes(&self) -> usize {
        match self.slots.len() {
            0 => 0,
            n => heap_bytes(n * std::mem::size_of::<u64>()),
        }
    }

    /// The bucket `hash` falls in, and its fingerprint there.
    fn bucket(&mut self, hash: u64) -> (&mut [u64], u64) {
        let fingerprint = (hash >> 32) | 1;
        let b = match self.slots.len() / WAYS {
            0 => return (&mut [], fingerprint),
            buckets => (hash as usize) & (buckets - 1),
        };
        let slots = self
            .slots
            .get_mut(b * WAYS..b * WAYS + WAYS)
            .unwrap_or_default();
        (slots, fingerprint)
    }

    /// Remembers `hash` (taking the place of a dead slot, or of the oldest in its bucket).
    pub(super) fn insert(&mut self, hash: u64) {
        let (clock, capacity) = (self.clock, self.capacity);
        let (slots, fingerprint) = self.bucket(hash);
        let age = |slot: u64| match slot {
            0 => u32::MAX,
            // Every dead slot is as good as any other.
            s => clock.wrapping_sub(s as u32).min(capacity + 1),
        };
        if let Some(oldest) = slots.iter_mut().max_by_key(|s| age(**s)) {
            *oldest = fingerprint << 32 | u64::from(clock);
        }
        self.clock = clock.wrapping_add(1);
    }

    /// Whether `hash` was evicted recently; forgets it if so (it is back in the cache).
    pub(super) fn take(&mut self, hash: u64) -> bool {
        if self.clock == 0 {
            // Nothing evicted yet (or 2^32 evictions ago, which only admits an entry to
            // the small queue rather than main): the common case of a cache filling up.
            return false;
        }
        let (clock, capacity) = (self.clock, self.capacity);
        let (slots, fingerprint) = self.bucket(hash);
        // A bucket of fixed size: the search is unrolled.
        let Some(slots) = slots.first_chunk_mut::<WAYS>() else {
            return false;
        };
        let live = |s: u64| s >> 32 == fingerprint && clock.wrapping_sub(s as u32) <= capacity;
        match slots.iter_mut().find(|s| live(**s)) {
            Some(s) => {
                *s = 0;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spread test hashes over buckets and fingerprints as SipHash output would.
    fn h(n: u64) -> u64 {
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn remembers_recent_hashes_once() {
        let mut g = Ghost::new(100);
        for n in 0..50 {
            g.insert(h(n));
        }
        assert!(g.take(h(7)));
        assert!(!g.take(h(7)), "taken once");
        assert!(!g.take(h(1000)), "never inserted");
    }

    #[test]
    fn forgets_after_capacity_insertions() {
        let mut g = Ghost::new(64);
        // 16 buckets; x in bucket 3, the others spread over the rest (so none is
        // forgotten early because its bucket is full).
        let x = 0xABCD_0000_0000_0003;
        let other = |n: u64| (n << 32) | [0, 1, 2, 4, 5, 6, 7, 8][n as usize % 8];
        g.insert(x);
        for n in 100..163 {
            g.insert(other(n));
        }
        assert!(g.take(x), "63 later insertions: still live");
        g.insert(x);
        for n in 200..264 {
            g.insert(other(n));
        }
        assert!(!g.take(x), "64 later insertions: gone");
    }

    #[test]
    fn most_recent_of_a_full_window_are_kept() {
        let mut g = Ghost::new(10_000);
        for n in 0..100_000 {
            g.insert(h(n));
        }
        let live = (90_000..100_000).filter(|&n| g.take(h(n))).count();
        assert!(live > 8_000, "{live} of the last 10,000");
        assert!(
            (0..90_000).filter(|&n| g.take(h(n))).count() < 10,
            "old ones gone"
        );
        assert_eq!(g.bytes(), heap_bytes(16_384 * 8));
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut g = Ghost::new(0);
        g.insert(h(1));
        assert!(!g.take(h(1)));
        assert_eq!(g.bytes(), 0);
    }
}
