//! The keyed hash of the hot path: SipHash-1-3 (the function and round counts std's
//! `HashMap` uses, so the same resistance to chosen-key floods), over one byte string
//! read eight octets at a time. std's `BuildHasher::hash_one` on a slice hashes its
//! length and then streams the octets through a buffering `Hasher`: the same function,
//! at about twice the instructions for a question name (two `write`s, a tail buffer).
use std::hash::{BuildHasher, RandomState};

/// SipHash with a random 128-bit key (per instance), `C` compression and `D`
/// finalization rounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sip<const C: usize, const D: usize> {
    k0: u64,
    k1: u64,
}

/// SipHash-1-3.
pub(crate) type Keyed = Sip<1, 3>;

impl<const C: usize, const D: usize> Sip<C, D> {
    /// A random key, drawn through std's `RandomState` (the OS generator, with std's
    /// own fallbacks): two of its keyed hashes are two secret words.
    pub(crate) fn random() -> Self {
        let s = RandomState::new();
        Sip::with_keys(s.hash_one(0x5eed_u64), s.hash_one(0x5eed_u64 + 1))
    }

    pub(crate) const fn with_keys(k0: u64, k1: u64) -> Self {
        Sip { k0, k1 }
    }

    /// The hash of `data` (as one byte string: its length is in the last block).
    #[inline]
    pub(crate) fn hash(&self, data: &[u8]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let m = w.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b));
            v[3] ^= m;
            for _ in 0..C {
                round(&mut v);
            }
            v[0] ^= m;
        }
        let mut last = (data.len() as u64) << 56;
        for (i, &b) in words.remainder().iter().enumerate() {
            last |= u64::from(b) << (8 * i);
        }
        v[3] ^= last;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= last;
        v[2] ^= 0xff;
        for _ in 0..D {
            round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    /// The SipHash paper's test vector (appendix A): SipHash-2-4, key 00..0f, message
    /// 00..0e.
    #[test]
    fn siphash_2_4_gives_the_papers_vector() {
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(
            Sip::<2, 4>::with_keys(k0, k1).hash(&msg),
            0xa129_ca61_49be_45e5
        );
    }

    /// Every length from 0 to 80 (each tail length, several whole words) and a few
    /// keys, against std's implementations: SipHash-2-4 keyed (the deprecated
    /// `SipHasher`), and SipHash-1-3 with the zero key (`DefaultHasher::new()`).
    #[test]
    fn the_same_as_std_for_every_tail_length() {
        let data: Vec<u8> = (0u32..80).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..=data.len() {
            let msg = &data[..len];
            for (k0, k1) in [(0, 0), (1, 2), (u64::MAX, 0x0123_4567_89ab_cdef)] {
                #[allow(deprecated)]
                let mut std24 = std::hash::SipHasher::new_with_keys(k0, k1);
                std24.write(msg);
                assert_eq!(Sip::<2, 4>::with_keys(k0, k1).hash(msg), std24.finish());
            }
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
