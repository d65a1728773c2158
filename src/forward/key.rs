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

mod spelling;
pub use spelling::{case_bits, letters, Spelling};

/// Flag bits of a key's last octet (as [`crate::cache::key_of`] writes them).
const RD: u8 = 4;
const DO: u8 = 2;
const CD: u8 = 1;

/// A question as a key: folded name (uncompressed wire form), QTYPE, QCLASS, flags.
/// The same octets are the cache's key. Valid values: `len` ≤ `MAX_KEY_LEN`; the octets
/// past `len` mean nothing (a key read or copied into a used one keeps them), so
/// equality and copies look at the first `len` only.
pub struct Key {
    bytes: [u8; MAX_KEY_LEN],
    len: usize,
}

impl Clone for Key {
    fn clone(&self) -> Key {
        Key {
            bytes: self.bytes,
            len: self.len,
        }
    }

    /// Copies only `source`'s octets (a key is mostly unused room: a new query's key
    /// goes into its slot at the cost of its name's length, not of 260 octets).
    fn clone_from(&mut self, source: &Key) {
        let src = source.as_bytes();
        if let Some(dst) = self.bytes.get_mut(..src.len()) {
            dst.copy_from_slice(src);
            self.len = src.len();
        }
    }
}

impl Default for Key {
    fn default() -> Key {
        Key::EMPTY
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

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

    /// [`with_spelling`](Self::with_spelling) into `self` (any key: what it held is
    /// overwritten), where the caller keeps it: the key (268 octets) is not moved on
    /// return, nor zeroed first when reused. `None` (and `self` left unspecified) if the
    /// query has no question.
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

    /// The key split once: its name, QTYPE and QCLASS, and its flags octet (what our
    /// upstream query is written from).
    #[inline]
    pub fn parts(&self) -> (&[u8], [u8; 4], u8) {
        let bytes = self.as_bytes();
        let (name, rest) = bytes.split_at(bytes.len().saturating_sub(5));
        let [t0, t1, c0, c1, flags] = rest.first_chunk::<5>().copied().unwrap_or_default();
        (name, [t0, t1, c0, c1], flags)
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
        self.type_class_array().map_or(&[], |tc| &tc[..])
    }

    /// [`type_class`](Self::type_class) as an array, for fixed-size compares.
    fn type_class_array(&self) -> Option<&[u8; 4]> {
        let n = self.name().len();
        self.bytes.get(n..)?.first_chunk::<4>()
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

/// Writes our upstream query for `key` into `out` (cleared first): ID `id`, RD and CD
/// from the key, the name as `spelling`, and an OPT record advertising `udp_size` with
/// DO from the key and no options (RFC 6891 §6.1.2). Always inlined: in `start` it shares
/// the key's and the spelling's places (`#[inline]` alone left it apart).
#[inline(always)]
pub fn write_query(out: &mut Vec<u8>, id: u16, key: &Key, spelling: &Spelling, udp_size: u16) {
    out.clear();
    let (name, [t0, t1, c0, c1], f) = key.parts();
    let flags = u16::from(f & RD != 0) << 8 | u16::from(f & CD != 0) << 4;
    out.extend_from_slice(&Header::from_parts(id, flags, [1, 0, 0, 1]).to_bytes());
    spelling.write(name, out);
    let [hi, lo] = udp_size.to_be_bytes();
    let dnssec = u8::from(f & DO != 0) << 7;
    // QTYPE and QCLASS, then the OPT record (root owner, TYPE 41): one append.
    out.extend_from_slice(&[t0, t1, c0, c1, 0, 0, 41, hi, lo, 0, 0, dnssec, 0, 0, 0]);
}

/// Whether `answer` asks exactly the question we sent: one question, the name octet for
/// octet as `spelling` (letter case included: an answer that lost our random case is
/// not ours), and the key's QTYPE and QCLASS. The question of a response starts right
/// after the header and cannot be a pointer (pointers into the header are refused).
pub fn same_question_exact(answer: &[u8], spelling: &Spelling, key: &Key) -> bool {
    let name = key.name();
    let at = HEADER_LEN + name.len();
    // QDCOUNT, QTYPE and QCLASS first: fixed-size compares, cheaper than the name's.
    answer.get(4..6) == Some(&[0, 1][..])
        && same_type_class(answer, at, key)
        && answer
            .get(HEADER_LEN..at)
            .is_some_and(|wire| spelling.matches(name, wire))
}

/// Whether the QTYPE and QCLASS at offset `at` of `answer` are the key's.
fn same_type_class(answer: &[u8], at: usize, key: &Key) -> bool {
    let theirs = answer.get(at..).and_then(<[u8]>::first_chunk::<4>);
    key.type_class_array()
        .is_some_and(|ours| theirs == Some(ours))
}

/// Whether `answer` asks the key's question ignoring letter case: one question, the
/// name equal to the key's but for ASCII case, and the key's QTYPE and QCLASS.
pub fn same_question_folded(answer: &[u8], key: &Key) -> bool {
    let name = key.name();
    let at = HEADER_LEN + name.len();
    // QDCOUNT first, as in `same_question_exact`: without it, the first record of an
    // answer of no question could pass for the question.
    answer.get(4..6) == Some(&[0, 1][..])
        && same_type_class(answer, at, key)
        && answer
            .get(HEADER_LEN..at)
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
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
    fn a_reused_key_is_the_key_read_fresh() {
        let long = key("a-much-longer-name.example.org", RD | DO);
        for (name, flags) in [("x.org", 0), ("WWW.Example.COM", CD)] {
            let q = crate::wire::Message {
                header: crate::wire::Header::from_parts(1, u16::from(flags) << 4, [0; 4]),
                questions: vec![crate::wire::Question {
                    qname: Name::from_ascii(name).unwrap(),
                    qtype: RType::A,
                    qclass: crate::wire::Class::IN,
                }],
                ..Default::default()
            }
            .to_vec();
            let v = MessageView::parse(&q).unwrap();
            let fresh = Key::of(&v).unwrap();
            // Read over a longer key: its leftover octets do not count.
            let mut used = long.clone();
            used.read_spelled(&v).unwrap();
            assert_eq!(used, fresh);
            assert_eq!(used.as_bytes(), fresh.as_bytes());
            // Copied over a longer key: the same.
            let mut copy = long.clone();
            copy.clone_from(&fresh);
            assert_eq!(copy, fresh);
            assert_ne!(copy, long);
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
        assert_eq!(Spelling::random_case(k.name(), &[0; 32]).1, 11);
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

    #[test]
    fn an_answer_must_repeat_the_whole_question() {
        let k = key("Www.Example.org", RD);
        let mut rng = SeededRandom::new(5);
        let s = Spelling::random(k.name(), true, &mut rng).unwrap();
        let mut q = Vec::new();
        write_query(&mut q, 7, &k, &s, 1232);
        assert!(same_question_exact(&q, &s, &k) && same_question_folded(&q, &k));
        let at = HEADER_LEN + k.name().len();
        // Another QTYPE, another QCLASS, two questions: not ours, in any case.
        for (i, v) in [(at + 1, 28), (at + 3, 3), (5, 2)] {
            let mut other = q.clone();
            other[i] = v;
            assert!(!same_question_exact(&other, &s, &k), "octet {i} = {v}");
            assert!(!same_question_folded(&other, &k), "octet {i} = {v}");
        }
        // Cut anywhere before the end of QCLASS: not ours, and no panic.
        for n in 0..at + 4 {
            assert!(!same_question_exact(&q[..n], &s, &k), "cut at {n}");
            assert!(!same_question_folded(&q[..n], &k), "cut at {n}");
        }
    }

    /// (Found by fuzzing, `fuzz/fuzz_targets/spelling.rs`.) `same_question_folded` did not
    /// look at QDCOUNT: an answer of no question whose first record's owner, type and
    /// class spell the key's question (or of several, the first ours) passed, so over TCP
    /// it was taken as the answer, and over UDP it counted as a near miss (a spoofing
    /// signal) rather than a stray.
    #[test]
    fn a_folded_match_needs_one_question() {
        let k = key("www.example.org", RD);
        let s = Spelling::default();
        let mut q = Vec::new();
        write_query(&mut q, 7, &k, &s, 1232);
        for (at, v) in [(5, 0), (5, 2), (5, 220), (4, 1)] {
            let mut other = q.clone();
            other[at] = v;
            assert!(!same_question_exact(&other, &s, &k), "octet {at} = {v}");
            assert!(!same_question_folded(&other, &k), "octet {at} = {v}");
        }
    }
}
