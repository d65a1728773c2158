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
use crate::wire::{Header, MessageView, HEADER_LEN};

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
        let (qtype, qclass) = view.qtype_qclass()?;
        // The question as it sits in the query: one copy, folded in place.
        let spelled = view.qname()?;
        let n = spelled.len();
        let spelling = Spelling::of_name(spelled);
        let mut bytes = [0u8; MAX_KEY_LEN];
        let name = bytes.get_mut(..n)?;
        name.copy_from_slice(spelled);
        name.make_ascii_lowercase();
        let flags = key_flags(view);
        let [t0, t1] = qtype.0.to_be_bytes();
        let [c0, c1] = qclass.0.to_be_bytes();
        bytes
            .get_mut(n..n + 5)?
            .copy_from_slice(&[t0, t1, c0, c1, flags]);
        Some((Key { bytes, len: n + 5 }, spelling))
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

/// Up to 8 octets as a little-endian word, zero-padded.
fn word_of(run: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    if let Some(dst) = w.get_mut(..run.len()) {
        dst.copy_from_slice(run);
    }
    u64::from_le_bytes(w)
}

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
        let mut s = Spelling::default();
        for (chunk, word) in name.chunks(64).zip(s.upper.iter_mut()) {
            for (j, b) in chunk.iter().enumerate() {
                *word |= u64::from(b.is_ascii_uppercase()) << j;
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
        for (n, run) in name.chunks_mut(8).enumerate() {
            // Only letters have their bit set: flipping 0x20 makes them upper case.
            let spelled = (word_of(run) ^ self.flips(n)).to_le_bytes();
            run.copy_from_slice(spelled.get(..run.len()).unwrap_or_default());
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
        name.len() == wire.len()
            && name
                .chunks(8)
                .zip(wire.chunks(8))
                .enumerate()
                .all(|(n, (a, b))| word_of(a) ^ self.flips(n) == word_of(b))
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
        for (chunk, word) in name.chunks(64).zip(mask.iter_mut()) {
            for (j, b) in chunk.iter().enumerate() {
                *word |= u64::from(b.is_ascii_alphabetic()) << j;
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
