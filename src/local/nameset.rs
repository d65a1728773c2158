//! A set of domain names that answers "is this name, or a domain it is under, in the
//! set?" in a few probes, for blocklists of a million names.
//!
//! Names are kept folded to lower case, in uncompressed wire form, back to back in one
//! arena; an open-addressing table (linear probing, at most half full) holds for each
//! a 32-bit tag of its hash and its offset. A lookup hashes the suffixes of the asked
//! name label by label from the root (each suffix's hash extends the shorter one's, so
//! the whole walk reads every octet once) and probes only suffixes whose label count
//! some member has; a tag match is confirmed by comparing the octets. The hash is
//! seeded per set, so a list cannot be built to collide against a known seed.
//!
//! Memory: the names (about 20 octets each in real lists) plus 8 octets per slot, 2 to
//! 4 slots per name: about 40 octets a name.

/// Most labels in a name: 127 one-octet labels and the root make 255 octets.
const MAX_LABELS: usize = 128;

/// A set of folded names. Valid values: `slots.len()` is a power of two at least twice
/// `len`, so every probe sequence meets an empty slot.
#[derive(Clone)]
pub struct NameSet {
    /// The members, folded, in uncompressed wire form, back to back.
    arena: Vec<u8>,
    /// 0 = empty; else the high 32 bits of the name's hash << 32 | (arena offset + 1).
    slots: Vec<u64>,
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
        self.arena.capacity() + self.slots.capacity() * 8
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
    /// the arena is at its 4 GiB limit.
    pub fn insert(&mut self, name: &[u8]) -> bool {
        let mut starts = [0u8; MAX_LABELS];
        let Some(labels) = label_starts(name, &mut starts) else {
            return false;
        };
        let h = self.hash_of(name, starts.get(..labels).unwrap_or_default());
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
        let mut starts = [0u8; MAX_LABELS];
        let Some(labels) = label_starts(name, &mut starts) else {
            return false;
        };
        let mut h = self.seed;
        for (n, &at) in starts.iter().take(labels).rev().enumerate() {
            let at = usize::from(at);
            let suffix = name.get(at..).unwrap_or_default();
            let len = suffix.first().map_or(0, |&l| usize::from(l) + 1);
            h = mix(h, suffix.get(..len).unwrap_or_default());
            if self.depths >> (n + 1) == 0 {
                return false; // no member is this deep
            }
            if self.depths & (1u128 << (n + 1)) != 0 && self.find(finish(h), suffix) {
                return true;
            }
        }
        false
    }

    /// Whether exactly `name` is a member.
    pub fn contains(&self, name: &[u8]) -> bool {
        let mut starts = [0u8; MAX_LABELS];
        match label_starts(name, &mut starts) {
            Some(n) if self.len > 0 => {
                let h = self.hash_of(name, starts.get(..n).unwrap_or_default());
                self.find(h, name)
            }
            _ => false,
        }
    }

    /// The finished hash of the whole `name` (`starts`: its label offsets).
    fn hash_of(&self, name: &[u8], starts: &[u8]) -> u64 {
        let mut h = self.seed;
        for &at in starts.iter().rev() {
            let suffix = name.get(usize::from(at)..).unwrap_or_default();
            let len = suffix.first().map_or(0, |&l| usize::from(l) + 1);
            h = mix(h, suffix.get(..len).unwrap_or_default());
        }
        finish(h)
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
        for s in old.into_iter().filter(|&s| s != 0) {
            let at = (s as u32 as usize).wrapping_sub(1);
            let rest = self.arena.get(at..).unwrap_or_default();
            let name = rest.get(..name_len(rest).unwrap_or(0)).unwrap_or_default();
            let mut starts = [0u8; MAX_LABELS];
            let n = label_starts(name, &mut starts).unwrap_or(0);
            let h = self.hash_of(name, starts.get(..n).unwrap_or_default());
            self.place(h, s as u32);
        }
    }
}

/// The offsets of the labels of the wire-form `name` (which must end exactly at its
/// root octet), into `starts`; returns how many. `None` if `name` is not one name.
fn label_starts(name: &[u8], starts: &mut [u8; MAX_LABELS]) -> Option<usize> {
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
        *starts.get_mut(n)? = at as u8;
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
        let deep = vec!["a"; 127].join(".");
        assert!(set.insert(&w(&deep)));
        assert!(set.contains_suffix_of(&w(&deep)));
    }
}
