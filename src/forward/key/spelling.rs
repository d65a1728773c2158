//! The letter case of a question name (draft-vixie-dnsext-dns0x20): a [`Spelling`] says
//! which octets of a folded (lower-case) name are upper case, one bit each, so that a
//! query in flight or a waiting client holds its spelling without a copy of the name;
//! [`Spelling::random_case`] finds the letters and spells them at random for our queries.
//!
//! Every query passes through here several times (folded on arrival, spelled at random
//! for the upstream, compared with the answer, spelled back for the client), so names
//! are handled eight octets at a time. The words of a name of `len` ≥ 8 octets sit at
//! 0, 8, 16, … and, when `len` is not a multiple of 8, one more word ends at `len`,
//! overlapping the one before it: no octet-at-a-time tail. That is sound because every
//! operation here either gives an octet seen twice the same result (folding, marking
//! letters: an OR of the same bits) or uses only the top octets of that last word, those
//! past the last whole word (spelling, in place; comparing). Names shorter than a word go
//! octet by octet.
//! Every access is a bounds-checked `get`: a short buffer gives a shorter result, never
//! a panic.
use super::super::ids::IdSource;
use crate::wire::MAX_NAME_LEN;

/// 0x80 in each octet of the little-endian word `w` that is an ASCII character in
/// `lo..=hi` (1 ≤ lo ≤ hi < 0x7F), 0 elsewhere: eight octets compared at once (no octet
/// sum carries into the next: each stays below 0x100).
fn ascii_in(w: u64, lo: u8, hi: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = w & !HIGH;
    let at_least_lo = low7 + ONES * u64::from(0x80 - lo);
    let above_hi = low7 + ONES * u64::from(0x7F - hi);
    at_least_lo & !above_hi & !w & HIGH
}

/// 0x80 in each octet of `w` that is an ASCII letter, either case.
fn letters_in(w: u64) -> u64 {
    ascii_in(w | 0x2020_2020_2020_2020, b'a', b'z')
}

/// The sum of the eight octets of `m` (a total below 256, so no carry): one multiply
/// adds them into the top octet, where `count_ones` of marked octets without the POPCNT
/// instruction (not in baseline x86-64) takes a dozen steps.
fn octets_summed(m: u64) -> u32 {
    (m.wrapping_mul(0x0101_0101_0101_0101) >> 56) as u32
}

/// The top bits of the eight octets of `m` (each 0x80 or 0) as one octet, octet 0 in
/// bit 0: the products land in distinct bits, so nothing carries into the top octet.
fn gather(m: u64) -> u8 {
    ((m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// For each octet value `v` (8 bits of a [`Spelling`]): 0x20 in octet `b` of the result
/// (little-endian order) where bit `b` of `v` is set.
const CASE_FLIPS: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut v = 0;
    while v < 256 {
        let mut b = 0;
        while b < 8 {
            if (v >> b) & 1 == 1 {
                table[v] |= 0x20 << (8 * b);
            }
            b += 1;
        }
        v += 1;
    }
    table
};

/// The 0x20 flips for the eight octets whose bits `v` holds.
fn flips_of(v: u8) -> u64 {
    CASE_FLIPS.get(usize::from(v)).copied().unwrap_or(0)
}

/// One bit per octet of a name (bit `i % 8` of octet `i / 8` for octet `i` of the name):
/// 256 bits, for names of up to 255 octets.
pub type Bits = [u8; 32];

/// The eight bits of `bits` from bit `at` on, as one octet (bit `at` in bit 0).
#[cfg(test)]
fn bits_at(bits: &Bits, at: usize) -> u8 {
    let (i, s) = (at / 8, at % 8);
    let lo = bits.get(i).copied().unwrap_or(0);
    let hi = bits.get(i + 1).copied().unwrap_or(0);
    (u16::from_le_bytes([lo, hi]) >> s) as u8
}

/// Sets the bits of `v` in `bits` from bit `at` on (bit 0 of `v` at bit `at`).
fn set_bits_at(bits: &mut Bits, at: usize, v: u8) {
    let (i, s) = (at / 8, at % 8);
    let [lo, hi] = (u16::from(v) << s).to_le_bytes();
    if let Some(b) = bits.get_mut(i) {
        *b |= lo;
    }
    if let Some(b) = bits.get_mut(i + 1) {
        *b |= hi;
    }
}

/// Whether bit `at` of `bits` is set.
fn bit(bits: &Bits, at: usize) -> bool {
    bits.get(at / 8).is_some_and(|b| b >> (at % 8) & 1 == 1)
}

/// A spelling of a key's name: which octets of the folded name are upper case.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Spelling {
    upper: Bits,
}

impl std::fmt::Debug for Spelling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spelling({:x?})", self.upper)
    }
}

impl Spelling {
    /// Whether this is the folded name itself (all lower case).
    pub fn is_lower(&self) -> bool {
        self.upper == [0; 32]
    }

    /// The spelling of `name` (uncompressed wire form): where its letters are upper case.
    pub fn of_name(name: &[u8]) -> Spelling {
        let mut folded = [0u8; MAX_NAME_LEN];
        Spelling::fold(name, &mut folded)
    }

    /// Copies `name` into `out` with its letters folded to lower case, and returns its
    /// spelling (every query's name passes here). Copies as much as `out` holds.
    pub fn fold(name: &[u8], out: &mut [u8]) -> Spelling {
        let mut s = Spelling::default();
        let len = name.len().min(out.len());
        let (Some(name), Some(out)) = (name.get(..len), out.get_mut(..len)) else {
            return s;
        };
        if len < 8 {
            for (at, (b, o)) in name.iter().zip(out.iter_mut()).enumerate() {
                *o = b.to_ascii_lowercase();
                set_bits_at(&mut s.upper, at, u8::from(b.is_ascii_uppercase()));
            }
            return s;
        }
        // Whole words, each filling its own octet of the bitmap (no shifting of bits
        // across octets); 0x80 >> 2 is the case bit.
        let words = name.chunks_exact(8).zip(out.chunks_exact_mut(8));
        for (n, (w, o)) in words.enumerate() {
            if let (Ok(w), Ok(o)) = (<[u8; 8]>::try_from(w), <&mut [u8; 8]>::try_from(o)) {
                let w = u64::from_le_bytes(w);
                let upper = ascii_in(w, b'A', b'Z');
                if let Some(u) = s.upper.get_mut(n) {
                    *u = gather(upper);
                }
                *o = (w | upper >> 2).to_le_bytes();
            }
        }
        // Then the word ending the name, folded whole (its low octets again, to the
        // same result); its top `tail` octets fill the low bits of the next octet.
        let tail = len % 8;
        if let (true, Some(w), Some(o)) =
            (tail != 0, name.last_chunk::<8>(), out.last_chunk_mut::<8>())
        {
            let w = u64::from_le_bytes(*w);
            let upper = ascii_in(w, b'A', b'Z');
            if let Some(u) = s.upper.get_mut(len / 8) {
                *u = gather(upper) >> (8 - tail);
            }
            *o = (w | upper >> 2).to_le_bytes();
        }
        s
    }

    /// Random letter case for the folded `name` (0x20), one random bit per letter; with
    /// `mix` false, all lower case. `None` if the generator failed.
    #[cfg(test)]
    pub fn random(name: &[u8], mix: bool, rng: &mut dyn IdSource) -> Option<Spelling> {
        if !mix {
            return Some(Spelling::default());
        }
        let spare = rng.next_u64()? as u32;
        Some(Spelling::random_case(name, &case_bits(name.len(), spare, rng)?).0)
    }

    /// Random letter case for the folded `name` (0x20): a letter is upper case where
    /// its octet's bit in `random` (from [`case_bits`]) is set. Also returns how many
    /// letters the name has: the bits a forger must guess. One pass, eight octets at a
    /// time; whole words of the name fill whole octets of the bitmap.
    #[inline]
    pub fn random_case(name: &[u8], random: &Bits) -> (Spelling, u32) {
        let mut s = Spelling::default();
        let mut count = 0;
        let name = name.get(..MAX_NAME_LEN).unwrap_or(name);
        let len = name.len();
        if len < 8 {
            for (at, b) in name.iter().enumerate() {
                let letter = b.is_ascii_alphabetic();
                count += u32::from(letter);
                set_bits_at(&mut s.upper, at, u8::from(letter && bit(random, at)));
            }
            return (s, count);
        }
        // Letters are counted per octet across the words (each octet of `marks` at most
        // 32, so no carry), and summed once at the end.
        let mut marks = 0u64;
        let words = name.chunks_exact(8).zip(s.upper.iter_mut().zip(random));
        for (w, (upper, random)) in words {
            if let Ok(w) = <[u8; 8]>::try_from(w) {
                let letters = letters_in(u64::from_le_bytes(w));
                marks += letters >> 7;
                *upper = gather(letters) & random;
            }
        }
        // The last `tail` octets: the word ending at `len`, less its first 8 - `tail`
        // octets (its low ones), seen in the last whole word.
        let tail = len % 8;
        if let (true, Some(w)) = (tail != 0, name.last_chunk::<8>()) {
            let letters = letters_in(u64::from_le_bytes(*w)) >> (8 * (8 - tail));
            marks += letters >> 7;
            if let (Some(upper), Some(random)) = (s.upper.get_mut(len / 8), random.get(len / 8)) {
                *upper = gather(letters) & random;
            }
        }
        (s, count + octets_summed(marks))
    }

    /// Appends the folded `name`, spelled, to `out`.
    #[inline(always)]
    pub fn write(&self, name: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(name);
        if self.is_lower() {
            return;
        }
        if let Some(spelled) = out.get_mut(start..) {
            self.respell(spelled);
        }
    }

    /// Spells the folded name in `name` this way, in place. Whole words first, each
    /// with its own octet of the bitmap; then the octets past the last whole word, as
    /// the top of the word that ends the name (its low octets are spelled already).
    fn respell(&self, name: &mut [u8]) {
        let len = name.len();
        if len < 8 {
            for (at, o) in name.iter_mut().enumerate() {
                *o ^= if bit(&self.upper, at) { 0x20 } else { 0 };
            }
            return;
        }
        for (w, &v) in name.chunks_exact_mut(8).zip(&self.upper) {
            if let Ok(w) = <&mut [u8; 8]>::try_from(w) {
                *w = (u64::from_le_bytes(*w) ^ flips_of(v)).to_le_bytes();
            }
        }
        let tail = len % 8;
        let last = self.upper.get(len / 8).copied().unwrap_or(0);
        if let (true, Some(w)) = (tail != 0, name.last_chunk_mut::<8>()) {
            let flips = flips_of(last) << (8 * (8 - tail));
            *w = (u64::from_le_bytes(*w) ^ flips).to_le_bytes();
        }
    }

    /// Whether `wire` is the folded `name` spelled this way, octet for octet (compared
    /// in place, eight octets at a time).
    #[inline]
    pub fn matches(&self, name: &[u8], wire: &[u8]) -> bool {
        let len = name.len();
        if len != wire.len() {
            return false;
        }
        if len < 8 {
            return name
                .iter()
                .enumerate()
                .map(|(at, b)| b ^ if bit(&self.upper, at) { 0x20 } else { 0 })
                .eq(wire.iter().copied());
        }
        let words = name
            .chunks_exact(8)
            .zip(wire.chunks_exact(8))
            .zip(&self.upper);
        for ((x, y), &v) in words {
            if let (Ok(x), Ok(y)) = (<[u8; 8]>::try_from(x), <[u8; 8]>::try_from(y)) {
                if u64::from_le_bytes(x) ^ flips_of(v) != u64::from_le_bytes(y) {
                    return false;
                }
            }
        }
        // The octets past the last whole word: the top of the word ending the name.
        let tail = len % 8;
        let last = self.upper.get(len / 8).copied().unwrap_or(0);
        match (name.last_chunk::<8>(), wire.last_chunk::<8>()) {
            _ if tail == 0 => true,
            (Some(x), Some(y)) => {
                let top = 8 * (8 - tail);
                let differ = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
                (differ ^ flips_of(last) << top) >> top == 0
            }
            _ => false,
        }
    }

    /// The folded `name` spelled, into `out`; returns the octets written.
    #[inline]
    pub fn copy_into(&self, name: &[u8], out: &mut [u8]) -> usize {
        let n = name.len().min(out.len());
        if let (Some(src), Some(dst)) = (name.get(..n), out.get_mut(..n)) {
            dst.copy_from_slice(src);
            if !self.is_lower() {
                self.respell(dst);
            }
        }
        n
    }
}

/// Random bits for the letter case of a name of `len` octets, one per octet (as
/// [`Spelling::random_case`] takes them): `spare`, 32 bits of a draw made for the query
/// anyway, if they cover the name (most names), else one fresh 64-bit draw per 64 octets.
/// `None` if the generator failed.
pub fn case_bits(len: usize, spare: u32, rng: &mut dyn IdSource) -> Option<Bits> {
    let mut bits = [0u8; 32];
    if len <= 32 {
        if let Some(b) = bits.first_chunk_mut::<4>() {
            *b = spare.to_le_bytes();
        }
        return Some(bits);
    }
    for word in bits.chunks_exact_mut(8).take(len.div_ceil(64)) {
        word.copy_from_slice(&rng.next_u64()?.to_le_bytes());
    }
    Some(bits)
}

/// ASCII letters in a wire-form name (length octets excluded).
pub fn letters(name: &[u8]) -> u32 {
    let mut count = 0;
    let mut at = 0;
    while let Some(&n) = name.get(at) {
        if n == 0 {
            break;
        }
        let end = (at + 1 + usize::from(n)).min(name.len());
        count += name
            .get(at + 1..end)
            .unwrap_or_default()
            .iter()
            .filter(|b| b.is_ascii_alphabetic())
            .count() as u32;
        at = end;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::SeededRandom;

    /// The octet-at-a-time meaning of each operation, for names of every length from 0
    /// to 255 (so every overlap of the last word) in a mix of cases and octet values.
    #[test]
    fn word_at_a_time_agrees_with_octet_at_a_time() {
        // Every octet value in every position of a word, beside others.
        for v in 0..=255u8 {
            for at in 0..8 {
                let mut run = *b"aZ.-9\xffQ@";
                run[at] = v;
                let w = u64::from_le_bytes(run);
                for (j, b) in run.iter().enumerate() {
                    let upper = gather(ascii_in(w, b'A', b'Z'));
                    assert_eq!(upper >> j & 1 == 1, b.is_ascii_uppercase(), "{run:?}");
                    let letters = gather(letters_in(w));
                    assert_eq!(letters >> j & 1 == 1, b.is_ascii_alphabetic(), "{run:?}");
                }
                let letters = run.iter().filter(|b| b.is_ascii_alphabetic()).count();
                assert_eq!(
                    octets_summed(letters_in(w) >> 7) as usize,
                    letters,
                    "{run:?}"
                );
            }
        }
        let mut rng = SeededRandom::new(11);
        for len in 0..=255usize {
            let name: Vec<u8> = (0..len)
                .map(|i| [b'a', b'Q', 7, b'z', 0xC1, b'-', b'Z', b'`', b'{', b'@'][i % 10])
                .collect();
            let mut folded = vec![0u8; len];
            let s = Spelling::fold(&name, &mut folded);
            assert_eq!(folded, name.to_ascii_lowercase(), "len {len}");
            // With every random bit set, the random case is the letters themselves.
            let (letters, count) = Spelling::random_case(&name, &[0xFF; 32]);
            assert_eq!(count, super::letters(&name_with_length(&name)), "len {len}");
            for (i, b) in name.iter().enumerate() {
                assert_eq!(bit(&s.upper, i), b.is_ascii_uppercase(), "len {len} at {i}");
                assert_eq!(
                    bit(&letters.upper, i),
                    b.is_ascii_alphabetic(),
                    "len {len} at {i}"
                );
            }
            // No bit past the name.
            for i in len..256 {
                assert!(
                    !bit(&s.upper, i) && !bit(&letters.upper, i),
                    "len {len} bit {i}"
                );
            }
            assert_eq!(Spelling::of_name(&name), s);
            let mut spelled = vec![0u8; len];
            assert_eq!(s.copy_into(&folded, &mut spelled), len);
            assert_eq!(spelled, name);
            let mut out = b"prefix".to_vec();
            s.write(&folded, &mut out);
            assert_eq!(&out[6..], &name[..]);
            assert!(s.matches(&folded, &name));
            for at in 0..len {
                // Any octet changed, case or not, is a mismatch.
                for flip in [0x20u8, 0x01, 0x80] {
                    let mut other = name.clone();
                    other[at] ^= flip;
                    assert!(!s.matches(&folded, &other), "len {len} at {at} ^{flip:x}");
                }
            }
            assert!(!s.matches(&folded, &name[..len.saturating_sub(1)]) || len == 0);
            // A random spelling flips letters only, and reads back as itself.
            let r = Spelling::random(&folded, true, &mut rng).unwrap();
            let mut wire = Vec::new();
            r.write(&folded, &mut wire);
            assert!(wire.eq_ignore_ascii_case(&folded));
            for (a, b) in wire.iter().zip(&folded) {
                if !b.is_ascii_alphabetic() {
                    assert_eq!(a, b);
                }
            }
            assert!(r.matches(&folded, &wire));
            assert_eq!(Spelling::of_name(&wire), r);
        }
    }

    /// `name` as the one label of a wire-form name (for [`letters`], which walks labels),
    /// cut to 63 octets a label.
    fn name_with_length(name: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        for label in name.chunks(63) {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label);
        }
        wire.push(0);
        wire
    }

    #[test]
    fn random_case_uses_the_bits_of_letters_only() {
        let name = b"\x03www\x07example\x03com\x00";
        let (all, count) = Spelling::random_case(name, &[0xFF; 32]);
        assert_eq!(count, 13);
        let mut out = [0u8; 255];
        let n = all.copy_into(name, &mut out);
        assert_eq!(&out[..n], b"\x03WWW\x07EXAMPLE\x03COM\x00");
        let (none, count) = Spelling::random_case(name, &[0; 32]);
        assert!(none.is_lower() && count == 13);
        // Bit i decides octet i: every other octet.
        let (some, _) = Spelling::random_case(name, &[0x55; 32]);
        let n = some.copy_into(name, &mut out);
        assert_eq!(&out[..n], b"\x03wWw\x07eXaMpLe\x03cOm\x00");
        // The spare bits cover 32 octets; longer names draw words of their own.
        let mut rng = SeededRandom::new(1);
        let short = case_bits(32, 0xDEAD_BEEF, &mut rng).unwrap();
        assert_eq!(short[..4], 0xDEAD_BEEFu32.to_le_bytes());
        assert_eq!(short[4..], [0; 28]);
        let long = case_bits(33, 0xDEAD_BEEF, &mut rng).unwrap();
        assert_ne!(long[..8], [0; 8]);
        assert_eq!(long[8..], [0; 24]);
        assert!(case_bits(33, 0, &mut crate::forward::BrokenRandom).is_none());
        assert!(case_bits(255, 0, &mut rng).unwrap()[24..]
            .iter()
            .any(|&b| b != 0));
    }

    #[test]
    fn short_buffers_give_short_results() {
        let name = b"\x07example\x03com\x00";
        let s = Spelling::of_name(b"\x07ExAmple\x03COM\x00");
        for n in 0..name.len() {
            let mut out = vec![0u8; n];
            assert_eq!(s.copy_into(name, &mut out), n);
            assert_eq!(&out[..], &b"\x07ExAmple\x03COM\x00"[..n]);
            let mut folded = vec![0u8; n];
            let f = Spelling::fold(b"\x07ExAmple\x03COM\x00", &mut folded);
            assert_eq!(&folded[..], &name[..n]);
            for i in 0..name.len() {
                assert_eq!(bit(&f.upper, i), i < n && bit(&s.upper, i));
            }
        }
    }

    #[test]
    fn bits_straddle_words() {
        let mut bits = [0u8; 32];
        for at in [0, 1, 7, 8, 56, 57, 63, 64, 120, 127, 190, 247, 248] {
            set_bits_at(&mut bits, at, 0xA5);
            assert_eq!(bits_at(&bits, at), 0xA5, "at {at}");
            for i in 0..256 {
                assert_eq!(
                    bit(&bits, i),
                    (at..at + 8).contains(&i) && 0xA5 >> (i - at) & 1 == 1
                );
            }
            bits = [0; 32];
        }
        // Past the last octet: dropped, not a panic.
        set_bits_at(&mut bits, 300, 0xFF);
        set_bits_at(&mut bits, 252, 0xFF);
        assert_eq!(bits[..31], [0; 31]);
        assert_eq!(bits[31], 0xF0);
        assert_eq!(bits_at(&bits, 252), 0x0F);
    }
}
