//! A set of domain names that answers "is this name, or a domain it is under, in the
//! set?" in a few probes, for blocklists of a million names.
//!
//! Names are kept folded to lower case, in uncompressed wire form, back to back in one
//! arena; an open-addressing table (linear probing, at most half full) holds for each
//! a 32-bit tag of its hash and its offset. A name's hash is built label by label from
//! the root, so one pass over the asked name from its last label yields the hash of
//! every suffix; only suffixes with as many labels as some member (2 to 4 for a typical
//! list) are probed, and a tag match is confirmed by comparing the octets. Members have
//! at most [`MAX_DEPTH`] labels (real lists stay far below).
//! The hash is seeded per set, so a list cannot be built to collide against a known
//! seed. In front of the table, a filter of 4 bits per slot (three bits per name, set
//! in one 64-bit word: 1 to 3% false positives) is small enough to stay in the
//! processor's cache, so a name that is not listed, the common case, rarely touches
//! the table.
//!
//! Memory: the names (about 20 octets each in real lists) plus 8.5 octets per slot, 2
//! to 4 slots per name: 40 to 60 octets a name.

/// Most labels of a member (longer names are refused by [`NameSet::insert`]).
pub const MAX_DEPTH: usize = 32;

/// A set of folded names. Valid values: `slots.len()` is a power of two at least twice
/// `len`, so every probe sequence meets an empty slot.
#[derive(Clone)]
pub struct NameSet {
    /// The members, folded, in uncompressed wire form, back to back.
    arena: Vec<u8>,
    /// 0 = empty; else the high 32 bits of the name's hash << 32 | (arena offset + 1).
    slots: Vec<u64>,
    /// Three bits per member in one word, from its hash; `slots.len() / 16` words (8
    /// to 16 bits per member: 1 to 3% false positives).
    filter: Vec<u64>,
    len: usize,
    seed: u64,
    /// Bit n set: some member has n labels (the root not counted).
    depths: u128,
}

impl std::fmt::Debug for NameSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NameSet({} names, {} octets)",
            self.len,
            self.heap_bytes()
        )
    }
}

impl Default for NameSet {
    fn default() -> NameSet {
        NameSet::with_seed(0x9E37_79B9_7F4A_7C15)
    }
}

impl NameSet {
    /// An empty set whose hash is keyed by `seed`.
    pub fn with_seed(seed: u64) -> NameSet {
        NameSet {
            arena: Vec::new(),
            slots: Vec::new(),
            filter: Vec::new(),
            len: 0,
            seed,
            depths: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Octets of heap the set holds (arena and table, at their capacity).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.slots.capacity() * 8 + self.filter.capacity() * 8
    }

    /// Makes room for `n` more names without growing the table again.
    pub fn reserve(&mut self, n: usize) {
        let want = (self.len + n).saturating_mul(2).next_power_of_two().max(16);
        if want > self.slots.len() {
            self.rehash(want);
        }
        self.arena.reserve(n.saturating_mul(20));
    }

    /// Adds `name` (folded, uncompressed wire form, as [`crate::forward::key::Key::name`]
    /// gives it). Returns false if it was there already, or is not a wire-form name, or
    /// has more than `MAX_DEPTH` (32) labels, or the arena is at its 4 GiB limit.
    pub fn insert(&mut self, name: &[u8]) -> bool {
        let Some(h) = hash(self.seed, name) else {
            return false;
        };
        let labels = count_labels(name).unwrap_or(0);
        if self.find(h, name) {
            return false;
        }
        let Ok(offset) = u32::try_from(self.arena.len() + 1) else {
            return false;
        };
        if (self.len + 1) * 2 > self.slots.len() {
            self.rehash((self.slots.len() * 2).max(16));
        }
        self.arena.extend_from_slice(name);
        self.place(h, offset);
        self.len += 1;
        self.depths |= 1u128 << labels.min(127);
        true
    }

    /// Whether `name` or a name it is under (on label boundaries) is a member.
    pub fn contains_suffix_of(&self, name: &[u8]) -> bool {
        if self.len == 0 {
            return false;
        }
        let mut ring = [0u8; MAX_DEPTH];
        let Some(labels) = label_ring(name, &mut ring) else {
            return false;
        };
        let mut h = self.seed;
        for depth in 1..=labels.min(MAX_DEPTH) {
            let at = usize::from(ring.get((labels - depth) % MAX_DEPTH).copied().unwrap_or(0));
            let suffix = name.get(at..).unwrap_or_default();
            let len = suffix.first().map_or(0, |&l| usize::from(l) + 1);
            h = mix(h, suffix.get(..len).unwrap_or_default());
            if self.depths & (1u128 << depth) != 0 {
                let f = finish(h);
                if self.may_hold(f) && self.find(f, suffix) {
                    return true;
                }
            }
            if self.depths >> (depth + 1) == 0 {
                return false; // no member is deeper
            }
        }
        false
    }

    /// Whether exactly `name` is a member.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.len > 0 && hash(self.seed, name).is_some_and(|h| self.find(h, name))
    }

    /// The filter word and its two bits for hash `h` (bits apart from the slot index).
    fn filter_bits(&self, h: u64) -> (usize, u64) {
        let word = (h >> 20) as usize & self.filter.len().wrapping_sub(1);
        (
            word,
            1u64 << (h >> 58) | 1u64 << ((h >> 52) & 63) | 1u64 << ((h >> 46) & 63),
        )
    }

    /// False if no member has hash `h`.
    fn may_hold(&self, h: u64) -> bool {
        let (word, bits) = self.filter_bits(h);
        self.filter.get(word).is_some_and(|w| w & bits == bits)
    }

    /// Whether the member `name` with hash `h` is in the table.
    fn find(&self, h: u64, name: &[u8]) -> bool {
        let mask = self.slots.len().wrapping_sub(1);
        let tag = h >> 32;
        let mut i = h as usize & mask;
        for _ in 0..self.slots.len() {
            let s = self.slots.get(i).copied().unwrap_or(0);
            if s == 0 {
                return false;
            }
            if s >> 32 == tag {
                let at = (s as u32 as usize).wrapping_sub(1);
                if self.arena.get(at..at + name.len()) == Some(name) {
                    // A wire-form name ends at its root octet: equal octets up to the
                    // end of `name` mean the member is exactly `name`.
                    return true;
                }
            }
            i = (i + 1) & mask;
        }
        false
    }

    fn place(&mut self, h: u64, offset: u32) {
        let (word, bits) = self.filter_bits(h);
        if let Some(w) = self.filter.get_mut(word) {
            *w |= bits;
        }
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        while let Some(s) = self.slots.get_mut(i) {
            if *s == 0 {
                *s = (h >> 32) << 32 | u64::from(offset);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn rehash(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        self.filter = vec![0; (size / 16).max(1)];
        for s in old.into_iter().filter(|&s| s != 0) {
            let at = (s as u32 as usize).wrapping_sub(1);
            let rest = self.arena.get(at..).unwrap_or_default();
            let name = rest.get(..name_len(rest).unwrap_or(0)).unwrap_or_default();
            self.place(hash(self.seed, name).unwrap_or(0), s as u32);
        }
    }
}

/// The number of labels of the wire-form `name` (root not counted), which must end
/// exactly at its root octet. `None` if `name` is not one name.
fn count_labels(name: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    let mut n = 0;
    loop {
        let len = usize::from(*name.get(at)?);
        if len == 0 {
            return (at + 1 == name.len()).then_some(n);
        }
        if len > 63 || at > 254 {
            return None;
        }
        n += 1;
        at += 1 + len;
    }
}

/// The length of the wire-form name at the start of `b`.
fn name_len(b: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    loop {
        let len = usize::from(*b.get(at)?);
        at += 1 + len;
        if len == 0 {
            return Some(at);
        }
    }
}

/// The label offsets of the wire-form `name` (which must end exactly at its root
/// octet), the last [`MAX_DEPTH`] of them in `ring` (label i at `i % MAX_DEPTH`);
/// returns how many labels. `None` if `name` is not one name.
fn label_ring(name: &[u8], ring: &mut [u8; MAX_DEPTH]) -> Option<usize> {
    let mut at = 0usize;
    let mut n = 0;
    loop {
        let len = usize::from(*name.get(at)?);
        if len == 0 {
            return (at + 1 == name.len()).then_some(n);
        }
        if len > 63 || at > 254 {
            return None;
        }
        *ring.get_mut(n % MAX_DEPTH)? = at as u8;
        n += 1;
        at += 1 + len;
    }
}

/// The hash of a member: its labels mixed in from the root, finished. `None` if
/// `name` is not a name of at most [`MAX_DEPTH`] labels.
fn hash(seed: u64, name: &[u8]) -> Option<u64> {
    let mut ring = [0u8; MAX_DEPTH];
    let labels = label_ring(name, &mut ring).filter(|&n| n <= MAX_DEPTH)?;
    let mut h = seed;
    for &at in ring.iter().take(labels).rev() {
        let label = name.get(usize::from(at)..)?;
        let len = label.first().map_or(0, |&l| usize::from(l) + 1);
        h = mix(h, label.get(..len)?);
    }
    Some(finish(h))
}

/// One label (its length octet and octets) into the running hash, 8 octets a step.
#[inline]
fn mix(mut h: u64, label: &[u8]) -> u64 {
    for chunk in label.chunks(8) {
        let mut b = [0u8; 8];
        if let Some(dst) = b.get_mut(..chunk.len()) {
            dst.copy_from_slice(chunk);
        }
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

/// MurmurHash3's 64-bit finaliser: every input bit reaches the slot index and the tag.
#[inline]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Name;

    fn w(s: &str) -> Vec<u8> {
        Name::from_ascii(s).unwrap().as_wire().to_ascii_lowercase()
    }

    #[test]
    fn matches_the_name_and_its_subdomains_on_label_boundaries() {
        let mut set = NameSet::default();
        assert!(set.insert(&w("ads.example.com")));
        assert!(!set.insert(&w("ads.example.com")), "no duplicates");
        assert!(set.insert(&w("tracker.net")));
        assert_eq!(set.len(), 2);
        for hit in ["ads.example.com", "x.ads.example.com", "a.b.c.tracker.net"] {
            assert!(set.contains_suffix_of(&w(hit)), "{hit}");
        }
        for miss in [
            "example.com",
            "bads.example.com",
            "ads.example.co",
            "com",
            ".",
            "tracker.net.evil",
            "xtracker.net",
        ] {
            assert!(!set.contains_suffix_of(&w(miss)), "{miss}");
        }
        assert!(set.contains(&w("tracker.net")));
        assert!(!set.contains(&w("a.tracker.net")));
    }

    #[test]
    fn survives_growth_and_refuses_what_is_not_a_name() {
        let mut set = NameSet::with_seed(7);
        for i in 0..10_000 {
            assert!(set.insert(&w(&format!("n{i}.example"))));
        }
        for i in 0..10_000 {
            assert!(set.contains_suffix_of(&w(&format!("www.n{i}.example"))));
            assert!(!set.contains_suffix_of(&w(&format!("n{i}.example.org"))));
        }
        assert!(!set.insert(b"\x03abc"), "no root octet");
        assert!(!set.insert(b"\x03ab\x00"), "label runs past the end");
        assert!(!set.contains_suffix_of(b"\x01a\x00\x00"), "trailing octets");
        assert!(!NameSet::default().contains_suffix_of(&w("a")));
        let deep = vec!["a"; MAX_DEPTH].join(".");
        assert!(set.insert(&w(&deep)));
        assert!(!set.contains_suffix_of(&w(&format!("{deep}.b"))));
        assert!(set.contains_suffix_of(&w(&format!("b.{deep}"))));
        assert!(
            !set.insert(&w(&format!("b.{deep}"))),
            "deeper than MAX_DEPTH"
        );
        let long = vec!["a"; 127].join(".");
        assert!(
            set.contains_suffix_of(&w(&long)),
            "the last labels of a long name"
        );
    }
}
