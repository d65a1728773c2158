//! What a query asks, decoded once (the key), and the query we write upstream for it.
//!
//! Every client query is reduced to a [`Key`]: the question name with its letters folded
//! to lower case, QTYPE, QCLASS, and the three bits that change what an upstream returns
//! (RD, and DO and CD). There is exactly one upstream query in flight per key; the
//! clients that asked it wait on that query, each with its own [`Asker`] (ID, spelling,
//! RD, EDNS and size).
//!
//! The upstream query is ours, never the client's bytes: a fresh header with a random
//! ID, the name in random letter case (draft-vixie-dnsext-dns0x20: one more bit an
//! off-path forger must guess per letter), and an OPT record with our UDP size and DO,
//! carrying no client option (no ECS, no client cookie).
use crate::cache::{key_flags, key_of, MAX_KEY_LEN};
use crate::wire::{Header, MessageView, HEADER_LEN, MAX_NAME_LEN};

use super::ids::IdSource;

/// Flag bits of a key's last octet (as [`crate::cache::key_of`] writes them).
const RD: u8 = 4;
const DO: u8 = 2;
const CD: u8 = 1;

/// A question as a key: folded name (uncompressed wire form), QTYPE, QCLASS, flags.
/// The same octets are the cache's key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; MAX_KEY_LEN],
    len: usize,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?})", self.as_bytes())
    }
}

impl Key {
    /// The key of a query's first question; `None` if it has none.
    pub fn of(view: &MessageView<'_>) -> Option<Key> {
        let mut bytes = [0u8; MAX_KEY_LEN];
        let len = key_of(view, &mut bytes)?;
        Some(Key { bytes, len })
    }

    /// The key of a query's first question and the query's spelling of the name, from
    /// one walk of the name; `None` if it has no question. The key's octets are those of
    /// [`crate::cache::key_of`].
    pub fn with_spelling(view: &MessageView<'_>) -> Option<(Key, Spelling)> {
        let mut key = Key::EMPTY;
        let spelling = key.read_spelled(view)?;
        Some((key, spelling))
    }

    /// No question (all zeros, length 0): a place for [`read_spelled`](Self::read_spelled).
    pub const EMPTY: Key = Key {
        bytes: [0; MAX_KEY_LEN],
        len: 0,
    };

    /// [`with_spelling`](Self::with_spelling) into `self` (an [`EMPTY`](Self::EMPTY)
    /// key), where the caller keeps it: the key (268 octets) is not moved on return.
    /// `None` (and `self` left unspecified) if the query has no question.
    pub fn read_spelled(&mut self, view: &MessageView<'_>) -> Option<Spelling> {
        let (qtype, qclass) = view.qtype_qclass()?;
        // The question as it sits in the query: one copy, folded in place.
        let spelled = view.qname()?;
        let n = spelled.len();
        let spelling = Spelling::fold(spelled, self.bytes.get_mut(..n)?);
        let flags = key_flags(view);
        let [t0, t1] = qtype.0.to_be_bytes();
        let [c0, c1] = qclass.0.to_be_bytes();
        self.bytes
            .get_mut(n..n + 5)?
            .copy_from_slice(&[t0, t1, c0, c1, flags]);
        self.len = n + 5;
        Some(spelling)
    }

    /// A key from its octets (a cache entry's), if they have the shape of one.
    pub fn from_bytes(b: &[u8]) -> Option<Key> {
        if b.len() < 6 || b.len() > MAX_KEY_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_KEY_LEN];
        bytes.get_mut(..b.len())?.copy_from_slice(b);
        let key = Key {
            bytes,
            len: b.len(),
        };
        (Key::walked_name_len(b) + 5 == b.len()).then_some(key)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// The key without its flags octet: name, type and class, what the in-flight index
    /// is hashed on (so that an answer with any flags finds its question).
    pub fn question(&self) -> &[u8] {
        self.bytes
            .get(..self.len.saturating_sub(1))
            .unwrap_or_default()
    }

    /// The folded name, in uncompressed wire form (ends with the root label).
    pub fn name(&self) -> &[u8] {
        // Every constructor lays a key out as name, QTYPE, QCLASS, flags (5 octets).
        self.bytes
            .get(..self.len.saturating_sub(5))
            .unwrap_or_default()
    }

    /// Octets of the uncompressed name at the start of `b`, by its label lengths.
    fn walked_name_len(b: &[u8]) -> usize {
        let mut at = 0;
        while let Some(&n) = b.get(at) {
            at += 1 + usize::from(n);
            if n == 0 || at >= b.len() {
                break;
            }
        }
        at.min(b.len())
    }

    /// QTYPE and QCLASS as on the wire (4 octets).
    pub fn type_class(&self) -> &[u8] {
        let n = self.name().len();
        self.bytes.get(n..n + 4).unwrap_or_default()
    }

    pub fn flags(&self) -> u8 {
        self.len
            .checked_sub(1)
            .and_then(|i| self.bytes.get(i))
            .copied()
            .unwrap_or(0)
    }

    pub fn rd(&self) -> bool {
        self.flags() & RD != 0
    }

    pub fn dnssec_ok(&self) -> bool {
        self.flags() & DO != 0
    }

    pub fn cd(&self) -> bool {
        self.flags() & CD != 0
    }
}

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

/// A spelling of a key's name: which octets of the folded name are upper case, one bit
/// each (32 octets for a name of up to 255), so a query in flight or a waiting client
/// holds its spelling without a copy of the name.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Spelling {
    upper: [u64; 4],
}

impl std::fmt::Debug for Spelling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spelling({:x?})", self.upper)
    }
}

impl Spelling {
    /// Whether this is the folded name itself (all lower case).
    pub fn is_lower(&self) -> bool {
        self.upper == [0; 4]
    }

    /// The spelling of `name` (uncompressed wire form): where its letters are upper case.
    pub fn of_name(name: &[u8]) -> Spelling {
        let mut folded = [0u8; MAX_NAME_LEN];
        Spelling::fold(name, &mut folded)
    }

    /// Copies `name` into `out` with its letters folded to lower case, and returns its
    /// spelling: eight octets at a time (every query's name passes here). Copies as
    /// much as `out` holds.
    pub fn fold(name: &[u8], out: &mut [u8]) -> Spelling {
        let mut s = Spelling::default();
        let mut runs = name.chunks_exact(8);
        let mut outs = out.chunks_exact_mut(8);
        let mut n = 0;
        for (run, dst) in runs.by_ref().zip(outs.by_ref()) {
            if let (Ok(run), Ok(dst)) = (<[u8; 8]>::try_from(run), <&mut [u8; 8]>::try_from(dst)) {
                let w = u64::from_le_bytes(run);
                let upper = ascii_in(w, b'A', b'Z');
                *dst = (w | upper >> 2).to_le_bytes();
                if let Some(word) = s.upper.get_mut(n / 8) {
                    *word |= u64::from(gather(upper)) << (8 * (n % 8));
                }
            }
            n += 1;
        }
        let done = 8 * n;
        let rest = name.get(done..).unwrap_or_default();
        let dst = out.get_mut(done..).unwrap_or_default();
        for (j, (b, o)) in rest.iter().zip(dst).enumerate() {
            *o = b.to_ascii_lowercase();
            let at = done + j;
            if let Some(word) = s.upper.get_mut(at / 64) {
                *word |= u64::from(b.is_ascii_uppercase()) << (at % 64);
            }
        }
        s
    }

    /// The 0x20 flips of the `n`th run of 8 octets of the name, as a little-endian word.
    fn flips(&self, n: usize) -> u64 {
        let word = self.upper.get(n / 8).copied().unwrap_or(0);
        let bits = usize::from((word >> (8 * (n % 8))) as u8);
        CASE_FLIPS.get(bits).copied().unwrap_or(0)
    }

    /// Spells the folded name in place (`name` is its octets, all lower case): eight
    /// octets at a time, flips from a table (this runs for every query we send).
    fn apply(&self, name: &mut [u8]) {
        if self.is_lower() {
            return;
        }
        let mut runs = name.chunks_exact_mut(8);
        let mut n = 0;
        for run in runs.by_ref() {
            // Only letters have their bit set: flipping 0x20 makes them upper case.
            if let Ok(run) = <&mut [u8; 8]>::try_from(run) {
                *run = (u64::from_le_bytes(*run) ^ self.flips(n)).to_le_bytes();
            }
            n += 1;
        }
        let flips = self.flips(n).to_le_bytes();
        for (b, f) in runs.into_remainder().iter_mut().zip(flips) {
            *b ^= f;
        }
    }

    /// Random letter case for the folded `name` (0x20), one random bit per letter; with
    /// `mix` false, all lower case. `None` if the generator failed.
    pub fn random(name: &[u8], mix: bool, rng: &mut dyn IdSource) -> Option<Spelling> {
        Spelling::random_for(&Letters::of(name), mix, rng)
    }

    /// [`random`](Self::random) for a name whose letters are already found.
    pub fn random_for(letters: &Letters, mix: bool, rng: &mut dyn IdSource) -> Option<Spelling> {
        let mut s = Spelling::default();
        if !mix {
            return Some(s);
        }
        for (n, word) in s.upper.iter_mut().enumerate() {
            let octets = letters.len.saturating_sub(64 * n).min(64);
            if octets == 0 {
                break;
            }
            let mut random = 0u64;
            for _ in 0..octets.div_ceil(16) {
                random = random << 16 | u64::from(rng.next_u16()?);
            }
            *word = letters.mask.get(n).copied().unwrap_or(0) & random;
        }
        Some(s)
    }

    /// Appends the folded `name`, spelled, to `out`.
    pub fn write(&self, name: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(name);
        if let Some(spelled) = out.get_mut(start..) {
            self.apply(spelled);
        }
    }

    /// Whether `wire` is the folded `name` spelled this way, octet for octet (compared
    /// in place, eight octets at a time).
    pub fn matches(&self, name: &[u8], wire: &[u8]) -> bool {
        if name.len() != wire.len() {
            return false;
        }
        let (mut a, mut b) = (name.chunks_exact(8), wire.chunks_exact(8));
        let mut n = 0;
        for (x, y) in a.by_ref().zip(b.by_ref()) {
            if let (Ok(x), Ok(y)) = (<[u8; 8]>::try_from(x), <[u8; 8]>::try_from(y)) {
                if u64::from_le_bytes(x) ^ self.flips(n) != u64::from_le_bytes(y) {
                    return false;
                }
            }
            n += 1;
        }
        let flips = self.flips(n).to_le_bytes();
        a.remainder()
            .iter()
            .zip(flips)
            .map(|(x, f)| x ^ f)
            .eq(b.remainder().iter().copied())
    }

    /// The folded `name` spelled, into `out`; returns the octets written.
    pub fn copy_into(&self, name: &[u8], out: &mut [u8]) -> usize {
        let n = name.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), name.get(..n)) {
            dst.copy_from_slice(src);
            self.apply(dst);
        }
        n
    }
}

/// Where the ASCII letters of a wire-form name are, one bit an octet (length octets are
/// at most 63, below every letter, so only letters are marked): found once a query,
/// for its random case and for the bits a forger must guess.
pub struct Letters {
    mask: [u64; 4],
    len: usize,
}

impl Letters {
    pub fn of(name: &[u8]) -> Letters {
        let mut mask = [0u64; 4];
        let mut runs = name.chunks_exact(8);
        let mut n = 0;
        for run in runs.by_ref() {
            if let (Ok(run), Some(word)) = (<[u8; 8]>::try_from(run), mask.get_mut(n / 8)) {
                // Letters are those that fold to a..z.
                let letters = ascii_in(u64::from_le_bytes(run) | 0x2020_2020_2020_2020, b'a', b'z');
                *word |= u64::from(gather(letters)) << (8 * (n % 8));
            }
            n += 1;
        }
        for (j, b) in runs.remainder().iter().enumerate() {
            let at = 8 * n + j;
            if let Some(word) = mask.get_mut(at / 64) {
                *word |= u64::from(b.is_ascii_alphabetic()) << (at % 64);
            }
        }
        Letters {
            mask,
            len: name.len(),
        }
    }

    /// How many (as [`letters`] counts them).
    pub fn count(&self) -> u32 {
        self.mask.iter().map(|w| w.count_ones()).sum()
    }
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

/// Writes our upstream query for `key` into `out` (cleared first): ID `id`, RD and CD
/// from the key, the name as `spelling`, and an OPT record advertising `udp_size` with
/// DO from the key and no options (RFC 6891 §6.1.2).
pub fn write_query(out: &mut Vec<u8>, id: u16, key: &Key, spelling: &Spelling, udp_size: u16) {
    out.clear();
    let flags = u16::from(key.rd()) << 8 | u16::from(key.cd()) << 4;
    out.extend_from_slice(&Header::from_parts(id, flags, [1, 0, 0, 1]).to_bytes());
    spelling.write(key.name(), out);
    out.extend_from_slice(key.type_class());
    let [hi, lo] = udp_size.to_be_bytes();
    let dnssec = u8::from(key.dnssec_ok()) << 7;
    out.extend_from_slice(&[0, 0, 41, hi, lo, 0, 0, dnssec, 0, 0, 0]);
}

/// Whether `answer` asks exactly the question we sent: one question, the name octet for
/// octet as `spelling` (letter case included: an answer that lost our random case is
/// not ours), and the key's QTYPE and QCLASS. The question of a response starts right
/// after the header and cannot be a pointer (pointers into the header are refused).
pub fn same_question_exact(answer: &[u8], spelling: &Spelling, key: &Key) -> bool {
    let name = key.name();
    let qd = answer.get(4..6) == Some(&[0, 1][..]);
    let at = HEADER_LEN + name.len();
    qd && answer
        .get(HEADER_LEN..at)
        .is_some_and(|wire| spelling.matches(name, wire))
        && answer.get(at..at + 4) == Some(key.type_class())
}

/// Whether `answer`'s question is the key's question ignoring letter case.
pub fn same_question_folded(answer: &[u8], key: &Key) -> bool {
    let name = key.name();
    let at = HEADER_LEN + name.len();
    answer
        .get(HEADER_LEN..at)
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
        && answer.get(at..at + 4) == Some(key.type_class())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::SeededRandom;
    use crate::wire::{parse_message, Name, RType};

    fn key(name: &str, flags: u8) -> Key {
        let n = Name::from_ascii(name).unwrap();
        let mut b = n.as_wire().to_ascii_lowercase();
        b.extend_from_slice(&RType::A.0.to_be_bytes());
        b.extend_from_slice(&[0, 1, flags]);
        Key::from_bytes(&b).unwrap()
    }

    #[test]
    fn with_spelling_is_the_cache_key_and_the_clients_case() {
        for (name, rd, edns) in [("WwW.Example.org", true, Some(true)), ("x", false, None)] {
            let mut m = crate::wire::Message {
                header: crate::wire::Header::from_parts(1, u16::from(rd) << 8 | 0x10, [0; 4]),
                questions: vec![crate::wire::Question {
                    qname: Name::from_ascii(name).unwrap(),
                    qtype: RType::AAAA,
                    qclass: crate::wire::Class::IN,
                }],
                ..Default::default()
            };
            if let Some(dnssec_ok) = edns {
                let mut e =
                    crate::wire::Edns::from_record(&crate::forward::reply::our_opt(dnssec_ok))
                        .unwrap();
                e.udp_size = 4096;
                m.additional.push(e.to_record());
            }
            let q = m.to_vec();
            let v = MessageView::parse(&q).unwrap();
            let (k, s) = Key::with_spelling(&v).unwrap();
            assert_eq!(Some(k.clone()), Key::of(&v));
            let mut out = [0u8; 255];
            let n = s.copy_into(k.name(), &mut out);
            assert_eq!(&out[..n], Name::from_ascii(name).unwrap().as_wire());
        }
    }

    #[test]
    fn word_at_a_time_agrees_with_octet_at_a_time() {
        // Every octet value in every position of a word, beside others.
        for v in 0..=255u8 {
            for at in 0..8 {
                let mut run = *b"aZ.-9\xffQ@";
                run[at] = v;
                let w = u64::from_le_bytes(run);
                let upper = ascii_in(w, b'A', b'Z');
                let letters = ascii_in(w | 0x2020_2020_2020_2020, b'a', b'z');
                for (j, b) in run.iter().enumerate() {
                    assert_eq!(
                        gather(upper) >> j & 1 == 1,
                        b.is_ascii_uppercase(),
                        "{run:?}"
                    );
                    assert_eq!(
                        gather(letters) >> j & 1 == 1,
                        b.is_ascii_alphabetic(),
                        "{run:?}"
                    );
                }
            }
        }
        // Names of every length up to 255, mixed case, against the octet rules.
        for len in 0..=255usize {
            let name: Vec<u8> = (0..len)
                .map(|i| [b'a', b'Q', 7, b'z', 0xC1, b'-', b'Z'][i % 7])
                .collect();
            let mut folded = vec![0u8; len];
            let s = Spelling::fold(&name, &mut folded);
            assert_eq!(folded, name.to_ascii_lowercase());
            let letters = Letters::of(&name);
            for (i, b) in name.iter().enumerate() {
                assert_eq!(s.upper[i / 64] >> (i % 64) & 1 == 1, b.is_ascii_uppercase());
                assert_eq!(
                    letters.mask[i / 64] >> (i % 64) & 1 == 1,
                    b.is_ascii_alphabetic()
                );
            }
            let mut spelled = folded.clone();
            s.apply(&mut spelled);
            assert_eq!(spelled, name);
            assert!(s.matches(&folded, &name));
            if len > 0 {
                let mut other = name.clone();
                other[len - 1] ^= 1;
                assert!(!s.matches(&folded, &other));
            }
        }
    }

    #[test]
    fn key_parts() {
        let k = key("WWW.Example.COM", RD | DO);
        assert_eq!(k.name(), b"\x03www\x07example\x03com\x00");
        assert_eq!(k.type_class(), &[0, 1, 0, 1]);
        assert!(k.rd() && k.dnssec_ok() && !k.cd());
        assert!(Key::from_bytes(b"\x03www\x00\x00").is_none(), "too short");
    }

    #[test]
    fn spelling_flips_letters_only_and_keeps_the_name() {
        let k = key("a1-b.c_d.example", 0);
        let mut rng = SeededRandom::new(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..64 {
            let s = Spelling::random(k.name(), true, &mut rng).unwrap();
            let mut wire = Vec::new();
            s.write(k.name(), &mut wire);
            assert!(wire.eq_ignore_ascii_case(k.name()));
            assert!(s.matches(k.name(), &wire));
            // Length octets and non-letters unchanged.
            for (a, b) in wire.iter().zip(k.name()) {
                if !b.is_ascii_alphabetic() {
                    assert_eq!(a, b);
                }
            }
            assert_eq!(Spelling::of_name(&wire), s);
            seen.insert(wire);
        }
        assert!(seen.len() > 50, "case is random: {} spellings", seen.len());
        let plain = Spelling::random(k.name(), false, &mut rng).unwrap();
        assert!(plain.is_lower());
        let mut out = [0u8; 255];
        let n = plain.copy_into(k.name(), &mut out);
        assert_eq!(&out[..n], k.name());
        assert_eq!(letters(k.name()), 11);
        assert_eq!(Letters::of(k.name()).count(), 11);
    }

    #[test]
    fn our_query_has_no_client_options() {
        let k = key("example.org", RD | DO | CD);
        let mut rng = SeededRandom::new(1);
        let s = Spelling::random(k.name(), true, &mut rng).unwrap();
        let mut q = Vec::new();
        write_query(&mut q, 0xBEEF, &k, &s, 1232);
        let m = parse_message(&q).unwrap();
        assert_eq!(m.header.id, 0xBEEF);
        assert!(m.header.rd && m.header.cd && !m.header.qr);
        let e = m.edns().unwrap();
        assert_eq!(e.udp_size, 1232);
        assert!(e.dnssec_ok);
        assert!(e.options.is_empty());
        let mut spelled = Vec::new();
        s.write(k.name(), &mut spelled);
        assert_eq!(m.questions[0].qname.as_wire(), &spelled[..]);
        assert!(same_question_exact(&q, &s, &k));
        assert!(same_question_folded(&q, &k));
        let mut lower = q.clone();
        lower[HEADER_LEN..HEADER_LEN + k.name().len()].make_ascii_lowercase();
        if !s.is_lower() {
            assert!(!same_question_exact(&lower, &s, &k), "case is checked");
        }
        assert!(same_question_folded(&lower, &k));
    }
}
