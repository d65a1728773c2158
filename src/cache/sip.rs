//! The keyed hash of the hot path: SipHash-1-3 (the function std's `HashMap` uses, so the
//! same resistance to chosen-key floods), over one byte string in one call, from the
//! `siphasher` crate. std's `BuildHasher::hash_one` on a slice hashes its length and then
//! streams the octets through a buffering `Hasher`: the same function at about twice
//! the instructions for a question name (cachegrind: 403 → ~272 a query for the
//! question and the client hashes together).
use std::hash::{BuildHasher, RandomState};

use siphasher::sip::SipHasher13;

/// SipHash-1-3 with a random 128-bit key (per instance).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyed(SipHasher13);

impl Keyed {
    /// A random key, drawn through std's `RandomState` (the OS generator, with std's
    /// own fallbacks): two of its keyed hashes are two secret words.
    pub(crate) fn random() -> Self {
        let s = RandomState::new();
        Keyed::with_keys(s.hash_one(0x5eed_u64), s.hash_one(0x5eed_u64 + 1))
    }

    pub(crate) fn with_keys(k0: u64, k1: u64) -> Self {
        Keyed(SipHasher13::new_with_keys(k0, k1))
    }

    /// The hash of `data`, as one byte string.
    #[inline]
    pub(crate) fn hash(&self, data: &[u8]) -> u64 {
        self.0.hash(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    /// Every length from 0 to 80 (each tail length, several whole words): the same as
    /// std's SipHash-1-3 with the zero key (`DefaultHasher::new()`) fed the octets alone.
    #[test]
    fn the_same_as_std_for_every_tail_length() {
        let data: Vec<u8> = (0u32..80).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..=data.len() {
            let msg = &data[..len];
            let mut std13 = std::hash::DefaultHasher::new();
            std13.write(msg);
            assert_eq!(
                Keyed::with_keys(0, 0).hash(msg),
                std13.finish(),
                "len {len}"
            );
        }
    }

    #[test]
    fn random_keys_differ() {
        let (a, b) = (Keyed::random(), Keyed::random());
        assert_ne!(
            a.hash(b"\x03www\x07example\x03org\x00"),
            b.hash(b"\x03www\x07example\x03org\x00")
        );
    }
}
