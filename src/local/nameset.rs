//! A set of domain names that answers "is this name, or a domain it is under, in the
//! set?" in a few probes, for blocklists of a million names.
//!
//! A member is kept only as its 64-bit hash, in an open-addressing table (linear
//! probing, at most half full). The hash is built label by label from the root over
//! the folded, uncompressed wire form, so one pass over the asked name from its last
//! label yields the hash of every suffix; only suffixes with as many labels as some
//! member (2 to 4 for a typical list) are probed, each with one load from the table
//! (the probes of one name are independent, so the processor overlaps their misses).
//! Members have at most [`MAX_DEPTH`] labels (real lists stay far below).
//!
//! No octets are kept, so a match is not confirmed against the name: the hash is
//! keyed by a per-set random seed (a list cannot be built to collide against a known
//! seed), and with 64-bit hashes a name that is not a member matches one with a
//! probability of about `members / 2^64` (5e-14 for a million members) per probed
//! suffix. For a blocklist that is acceptable: the worst case is one more name answered
//! as blocked. Two members with the same hash count as one (same odds, squared by the
//! birthday bound: 3e-8 for a million), and both stay blocked.
//!
//! In front of the table, a filter of 4 bits per slot (three bits per name, set in one
//! 64-bit word: 1 to 3% false positives) is small enough to stay in the processor's
//! cache, so a name that is not listed, the common case, rarely touches the table.
//!
//! Memory: 8.5 octets per slot, 2 to 4 slots per name: 17 to 34 octets a name. A table
//! of 4 MiB or more is advised onto 2 MiB pages: a listed name costs one random access
//! into it, which with 4 KiB pages also misses the TLB (measured: listed 90 → 83 ns).

/// Most labels of a member (longer names are refused by [`NameSet::insert`]).
pub const MAX_DEPTH: usize = 32;

/// A set of folded names. Valid values: `slots.len()` is a power of two at least twice
/// `len`, so every probe sequence meets an empty slot.
#[derive(Clone)]
pub struct NameSet {
    /// 0 = empty; else a member's hash (never 0, see [`finish`]).
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

    /// Octets of heap the set holds (table and filter, at their capacity).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 8 + self.filter.capacity() * 8
    }

    /// Makes room for `n` more names without growing the table again.
    pub fn reserve(&mut self, n: usize) {
        let want = (self.len + n).saturating_mul(2).next_power_of_two().max(16);
        if want > self.slots.len() {
            self.rehash(want);
        }
    }

    /// Adds `name` (folded, uncompressed wire form, as [`crate::forward::key::Key::name`]
    /// gives it). Returns false if it was there already (or a member has the same hash),
    /// or is not a wire-form name, or has more than `MAX_DEPTH` (32) labels.
    pub fn insert(&mut self, name: &[u8]) -> bool {
        let Some((h, labels)) = hash(self.seed, name) else {
            return false;
        };
        if self.find(h) {
            return false;
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.rehash((self.slots.len() * 2).max(16));
        }
        self.place(h);
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
        let Some(buf) = padded(name) else {
            return false;
        };
        // No member is deeper than `deepest` labels: its suffixes are not hashed.
        let deepest = (127 - self.depths.leading_zeros()) as usize;
        let mut h = self.seed;
        let mut found = false;
        for depth in 1..=labels.min(deepest) {
            let at = usize::from(ring.get((labels - depth) % MAX_DEPTH).copied().unwrap_or(0));
            h = mix(h, &buf, at);
            if self.depths & (1u128 << depth) != 0 {
                // No early exit: the probes of all depths are independent loads, which
                // the processor overlaps; `found` is read once at the end.
                let f = finish(h);
                found |= self.may_hold(f) && self.find(f);
            }
        }
        found
    }

    /// Whether exactly `name` is a member.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.len > 0 && hash(self.seed, name).is_some_and(|(h, _)| self.find(h))
    }

    /// The filter word and its three bits for hash `h` (bits apart from the slot index).
    fn filter_bits(&self, h: u64) -> (usize, u64) {
        let word = (h >> 20) as usize & self.filter.len().wrapping_sub(1);
        (
            word,
            1u64 << (h >> 58) | 1u64 << ((h >> 52) & 63) | 1u64 << ((h >> 46) & 63),
        )
    }

    /// False if no member has hash `h`.
    #[inline]
    fn may_hold(&self, h: u64) -> bool {
        let (word, bits) = self.filter_bits(h);
        self.filter.get(word).is_some_and(|w| w & bits == bits)
    }

    /// Whether a member has hash `h` (see the module notes on false positives).
    #[inline]
    fn find(&self, h: u64) -> bool {
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = h as usize & mask;
        for _ in 0..self.slots.len() {
            match self.slots.get(i).copied() {
                Some(0) | None => return false,
                Some(s) if s == h => return true,
                Some(_) => i = (i + 1) & mask,
            }
        }
        false
    }

    fn place(&mut self, h: u64) {
        let (word, bits) = self.filter_bits(h);
        if let Some(w) = self.filter.get_mut(word) {
            *w |= bits;
        }
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        while let Some(s) = self.slots.get_mut(i) {
            if *s == 0 {
                *s = h;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn rehash(&mut self, size: usize) {
        let table = vec![0u64; size];
        huge_pages(&table);
        let old = std::mem::replace(&mut self.slots, table);
        self.filter = vec![0; (size / 16).max(1)];
        for s in old.into_iter().filter(|&s| s != 0) {
            self.place(s);
        }
    }
}

/// Asks the kernel to back a big table with 2 MiB pages (transparent huge pages, when
/// the system has them in `madvise` mode): a lookup is one random access into the
/// table, and with 4 KiB pages most of them also miss the TLB (a page walk, doubled
/// under a hypervisor). Advice only: the kernel may ignore it; nothing changes but speed.
fn huge_pages(table: &[u64]) {
    const HUGE: usize = 2 << 20;
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(table);
    if bytes < 2 * HUGE {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let start = table.as_ptr() as usize;
        let from = start.next_multiple_of(PAGE);
        let len = (start + bytes - from) / PAGE * PAGE;
        // SAFETY: the range lies inside `table`, which this thread owns, and is page
        // aligned; MADV_HUGEPAGE changes no contents and no mapping, only how the
        // kernel backs it; a failure is harmless and ignored.
        unsafe {
            libc::madvise(from as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
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

/// The hash of a member (its labels mixed in from the root, finished) and its number
/// of labels. `None` if `name` is not a name of at most [`MAX_DEPTH`] labels.
fn hash(seed: u64, name: &[u8]) -> Option<(u64, usize)> {
    let mut ring = [0u8; MAX_DEPTH];
    let labels = label_ring(name, &mut ring).filter(|&n| n <= MAX_DEPTH)?;
    let buf = padded(name)?;
    let mut h = seed;
    for &at in ring.iter().take(labels).rev() {
        h = mix(h, &buf, usize::from(at));
    }
    Some((finish(h), labels))
}

/// Room for the longest name [`label_ring`] accepts (a label starting at octet 254,
/// 64 octets, the root) and a full 8-octet read past its end.
const PADDED: usize = 328;

/// `name` copied into a zeroed buffer, so [`mix`] reads whole words. `None` if longer
/// than any name [`label_ring`] accepts.
#[inline]
fn padded(name: &[u8]) -> Option<[u8; PADDED]> {
    let mut buf = [0u8; PADDED];
    buf.get_mut(..name.len())?.copy_from_slice(name);
    Some(buf)
}

/// One label (its length octet and octets, `buf[at..]`) into the running hash, 8
/// octets a step (the octets past the label read as 0).
#[inline]
fn mix(mut h: u64, buf: &[u8; PADDED], at: usize) -> u64 {
    let len = buf.get(at).map_or(0, |&l| usize::from(l) + 1);
    let mut i = 0;
    while i < len {
        let Some(word) = buf
            .get(at + i..at + i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        else {
            break;
        };
        let mut v = u64::from_le_bytes(word);
        let rest = len - i;
        if rest < 8 {
            v &= (1u64 << (rest * 8)) - 1;
        }
        h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        i += 8;
    }
    h
}

/// MurmurHash3's 64-bit finaliser: every input bit reaches the slot index, the filter
/// bits and the stored value. Never 0 (the empty slot): 0 becomes 1.
#[inline]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    (h ^ (h >> 33)).max(1)
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
