//! Checks without decoding: whether RDATA would decode, answered without building the
//! values (no allocation), for the hot path that keeps the octets as they came (the
//! cache stores an upstream's answer as received, and must store only what decodes).
//!
//! [`rdata_ok`] accepts exactly what the RDATA decoder behind [`super::parse_record`]
//! accepts, and [`walk_records`] exactly the messages [`super::parse_message`] accepts;
//! the tests hold them to that on random input.
use std::ops::Range;

use super::name::walk_name;
use super::{Class, MessageView, NameLayout, RType, HEADER_LEN};

/// One record as [`walk_records`] meets it: offsets into the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAt {
    /// Which record: 0 is the first answer; the additional section starts at
    /// ANCOUNT + NSCOUNT.
    pub index: usize,
    /// Offset of its owner name.
    pub owner: usize,
    pub rtype: RType,
    pub class: Class,
    /// Offset of the TTL field (the RDLENGTH follows it, then the RDATA).
    pub ttl_at: usize,
    pub ttl: u32,
    pub rdata: Range<usize>,
}

/// Walks the whole message `msg` as [`super::parse_message`] would decode it, without
/// building anything: every name followed under the one pointer rule, every RDATA
/// checked by [`rdata_ok`], OPT (once, in the additional section, owned by the root) and
/// TSIG (last) where they may be, no octet left over. `on_record` sees each record in
/// wire order; false if the message does not decode.
pub fn walk_records(msg: &[u8], on_record: impl FnMut(&RecordAt)) -> bool {
    let Some((header, mut i)) = msg.split_first_chunk::<HEADER_LEN>() else {
        return false;
    };
    let qdcount = match header.get(4..6) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    };
    for _ in 0..qdcount {
        let Ok((rest, _)) = walk_name(msg, i, |_| ()) else {
            return false;
        };
        match rest.get(4..) {
            Some(rest) => i = rest,
            None => return false,
        }
    }
    records(msg, i, qdcount > 0, on_record)
}

/// [`walk_records`] for a message `view` has read (its octets up to `view.end`): with
/// one question, the header and the question, which the view walked as the decoder
/// does, are not walked again.
#[inline]
pub fn walk_viewed_records(view: &MessageView<'_>, on_record: impl FnMut(&RecordAt)) -> bool {
    let Some(msg) = view.bytes().get(..view.end) else {
        return false;
    };
    if view.header.qdcount != 1 {
        return walk_records(msg, on_record);
    }
    match msg.get(view.records_at()..) {
        Some(i) => records(msg, i, true, on_record),
        None => false,
    }
}

/// The records from `i` (a slice of `msg`, just past the question section) to the end.
/// `question`: a question was walked, so the name at offset 12 is whole and good.
#[inline]
fn records<'a>(
    msg: &'a [u8],
    mut i: &'a [u8],
    question: bool,
    mut on_record: impl FnMut(&RecordAt),
) -> bool {
    let checks = RecordChecks::new(msg);
    // Owners are most often a pointer to the question's name: walking it again would
    // meet the same labels, which the question's walk found good (it holds no pointer).
    let to_question = [0xC0, HEADER_LEN as u8];
    let question_is_root = msg.get(HEADER_LEN) == Some(&0);
    let mut seen_opt = false;
    for index in 0..checks.total {
        let owner = msg.len() - i.len();
        let (rest, root) = match i.strip_prefix(&to_question[..]) {
            Some(rest) if question => (rest, question_is_root),
            _ => {
                let mut labels = 0;
                match walk_name(msg, i, |_| labels += 1) {
                    Ok((rest, _)) => (rest, labels == 0),
                    Err(_) => return false,
                }
            }
        };
        let Some((&[t0, t1, c0, c1, l0, l1, l2, l3, r0, r1], rest)) = rest.split_first_chunk()
        else {
            return false;
        };
        let (rtype, class) = (
            RType(u16::from_be_bytes([t0, t1])),
            Class(u16::from_be_bytes([c0, c1])),
        );
        let rdlength = usize::from(u16::from_be_bytes([r0, r1]));
        let Some((rd, rest)) = rest.split_at_checked(rdlength) else {
            return false;
        };
        if rtype == RType::OPT {
            if index < checks.additional || seen_opt || !root {
                return false;
            }
            seen_opt = true;
        }
        if !checks.tsig_ok(index, rtype) {
            return false;
        }
        if !rdata_ok(msg, rd, rtype, class) {
            return false;
        }
        let rdata_at = msg.len() - rd.len() - rest.len();
        on_record(&RecordAt {
            index,
            owner,
            rtype,
            class,
            ttl_at: rdata_at - 6,
            ttl: u32::from_be_bytes([l0, l1, l2, l3]),
            rdata: rdata_at..rdata_at + rdlength,
        });
        i = rest;
    }
    i.is_empty()
}

/// What [`walk_records`] checks of each record beyond what [`MessageView::parse`]
/// does, for a walk that the view makes once for both (the cache's intake, see
/// `MessageView::parse_with`): the owner name followed under the pointer rule (the view
/// only steps over it), TSIG last, the RDATA by [`rdata_ok`]. The view checks the rest:
/// framing, labels, OPT's place and owner. So a message of one question that the view
/// reads to its last octet decodes exactly when no record is [`Checked::Bad`]
/// (cache/intake.rs's tests, `the_view_notes_what_the_walk_finds*`, hold it to
/// [`walk_viewed_records`]).
#[derive(Debug, Clone, Copy)]
pub struct RecordChecks {
    /// The message has a question: an owner that points at offset 12 points at a name
    /// the view walked (followed) already.
    question: bool,
    /// Index of the first additional record, and of one past the last record.
    additional: usize,
    total: usize,
}

/// What [`RecordChecks::check`] found of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// It does not decode.
    Bad,
    /// It decodes, and its owner is a pointer to the question's name: no name of its
    /// own to look at.
    ToQuestion,
    /// It decodes.
    Good,
}

impl RecordChecks {
    /// The checks for `msg` (its header's counts; zero counts if it has no header, when
    /// the view fails anyway).
    pub fn new(msg: &[u8]) -> RecordChecks {
        let h = msg.first_chunk::<HEADER_LEN>().unwrap_or(&[0; HEADER_LEN]);
        let count = |at: usize| match h.get(at..at + 2) {
            Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
            _ => 0,
        };
        RecordChecks::of_counts([count(4), count(6), count(8), count(10)])
    }

    /// The checks for a message whose header counts QDCOUNT, ANCOUNT, NSCOUNT and
    /// ARCOUNT `counts`.
    #[inline]
    pub fn of_counts(counts: [u16; 4]) -> RecordChecks {
        let [qd, an, ns, ar] = counts.map(usize::from);
        RecordChecks {
            question: qd > 0,
            additional: an + ns,
            total: an + ns + ar,
        }
    }

    /// A TSIG record only as the last one, in the additional section (RFC 8945 §5.1).
    #[inline]
    fn tsig_ok(&self, index: usize, rtype: RType) -> bool {
        rtype != RType::TSIG || (index >= self.additional && index + 1 == self.total)
    }

    /// Whether record `r` of `msg` (as the view stepped over it) decodes, and whether
    /// its owner is a pointer to the question's name.
    #[inline]
    pub fn check(&self, msg: &[u8], r: &RecordAt) -> Checked {
        let Some(rd) = msg.get(r.rdata.clone()) else {
            return Checked::Bad;
        };
        // The view checked an OPT record's place and owner (the root, or a pointer it
        // followed to the root): its options are left. (Nor is it a TSIG record.)
        if r.rtype == RType::OPT {
            return match rdata_ok(msg, rd, r.rtype, r.class) {
                true => Checked::Good,
                false => Checked::Bad,
            };
        }
        let Some(at_owner) = msg.get(r.owner..) else {
            return Checked::Bad;
        };
        // As in `records`: an owner pointing at the question's name (the commonest) is
        // not walked again. Nor is the root: the view stepped over it, and there is no
        // pointer to follow.
        let owner = if self.question && at_owner.starts_with(&[0xC0, HEADER_LEN as u8]) {
            Checked::ToQuestion
        } else if at_owner.first() == Some(&0) || walk_name(msg, at_owner, |_| ()).is_ok() {
            Checked::Good
        } else {
            return Checked::Bad;
        };
        match self.tsig_ok(r.index, r.rtype) && rdata_ok(msg, rd, r.rtype, r.class) {
            true => owner,
            false => Checked::Bad,
        }
    }
}

/// Whether `rd` (exactly the RDATA, a slice of `msg`) decodes as `rtype` of `class`:
/// the same rules as the record decoder, names in it followed against `msg` under the
/// one pointer rule, the whole RDATA consumed.
///
/// Inline for the commonest records (an address, whatever the class, and the OPT record
/// that nearly every answer carries), so that a walk over them makes no call; the rest
/// in [`rdata_ok_slow`].
#[inline]
pub fn rdata_ok(msg: &[u8], rd: &[u8], rtype: RType, class: Class) -> bool {
    match rtype {
        RType::A if rd.len() == 4 => true,
        RType::AAAA if rd.len() == 16 => true,
        // As in `rdata_ok_slow`: OPT's CLASS is a size, so an empty OPT is no delete.
        RType::OPT => options_fill(rd),
        _ => rdata_ok_slow(msg, rd, rtype, class),
    }
}

/// [`rdata_ok`] for the rest: the types decoded without names by their own rules, the
/// types whose names the decoder reads by their [`NameLayout`], any other as opaque.
fn rdata_ok_slow(msg: &[u8], rd: &[u8], rtype: RType, class: Class) -> bool {
    // RFC 2136 deletes and prerequisites; OPT's CLASS is a size, not a class.
    if rd.is_empty() && (class == Class::ANY || class == Class::NONE) && rtype != RType::OPT {
        return true;
    }
    match rtype {
        RType::A => rd.len() == 4,
        RType::AAAA => rd.len() == 16,
        RType::TXT => !rd.is_empty() && strings_fill(rd),
        RType::CAA => caa_ok(rd),
        RType::OPT => options_fill(rd),
        _ => match NameLayout::of(rtype) {
            Some(layout) => names_fill(msg, rd, layout),
            None => true,
        },
    }
}

/// Whether `rd` holds the fields of `layout` exactly, its names followed against `msg`.
fn names_fill(msg: &[u8], rd: &[u8], layout: NameLayout) -> bool {
    let Some(mut i) = layout.first_name(rd).and_then(|at| rd.get(at..)) else {
        return false;
    };
    for _ in 0..layout.names {
        match walk_name(msg, i, |_| ()) {
            Ok((rest, _)) => i = rest,
            Err(_) => return false,
        }
    }
    i.len() == usize::from(layout.tail)
}

/// One or more character-strings filling the RDATA (RFC 1035 §3.3.14); the caller checks
/// that there is at least one.
fn strings_fill(mut rd: &[u8]) -> bool {
    while let Some((&len, rest)) = rd.split_first() {
        match rest.get(usize::from(len)..) {
            Some(after) => rd = after,
            None => return false,
        }
    }
    true
}

/// Flags, a tag of 1..=15 letters and digits, the value (RFC 8659 §4.1).
fn caa_ok(rd: &[u8]) -> bool {
    let Some((&tag_len, rest)) = rd.get(1..).and_then(<[u8]>::split_first) else {
        return false;
    };
    rest.get(..usize::from(tag_len)).is_some_and(|tag| {
        (1..=15).contains(&tag.len()) && tag.iter().all(u8::is_ascii_alphanumeric)
    })
}

/// EDNS options (code, length, data) filling the RDATA exactly (RFC 6891 §6.1.2).
#[inline]
fn options_fill(mut rd: &[u8]) -> bool {
    while !rd.is_empty() {
        let Some((&[_, _, l0, l1], rest)) = rd.split_first_chunk::<4>() else {
            return false;
        };
        match rest.get(usize::from(u16::from_be_bytes([l0, l1]))..) {
            Some(after) => rd = after,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_message;
    use proptest::prelude::*;

    /// A response with one record of `rtype`/`class` holding `rd`, after a question for
    /// `a.example.` (so that names in RDATA have something to point to): an answer
    /// owned by the question's name, or for OPT an additional record owned by the root.
    fn message(rtype: u16, class: u16, rd: &[u8]) -> Vec<u8> {
        let opt = rtype == RType::OPT.0;
        #[rustfmt::skip]
        let mut m = vec![
            0, 1, 0x81, 0x80, 0, 1, 0, u8::from(!opt), 0, 0, 0, u8::from(opt), // header
            1, b'a', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1, // question
        ];
        if opt {
            m.push(0); // owner: the root
        } else {
            m.extend_from_slice(&[0xC0, 12]); // owner: pointer to the question's name
        }
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&class.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 60]);
        m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        m.extend_from_slice(rd);
        m
    }

    fn agrees(rtype: u16, class: u16, rd: &[u8]) {
        let m = message(rtype, class, rd);
        let at = m.len() - rd.len();
        let ours = rdata_ok(&m, &m[at..], RType(rtype), Class(class));
        let decoder = parse_message(&m).is_ok();
        assert_eq!(ours, decoder, "type {rtype} class {class} rdata {rd:02x?}");
    }

    /// What `walk_records` reports, or `None`; and what the decoder makes of it.
    /// Type, class and TTL of each record, or `None` if the message does not decode.
    type Seen = Option<Vec<(u16, u16, u32)>>;

    fn both(m: &[u8]) -> (Seen, Seen) {
        let mut seen = Vec::new();
        let ours = walk_records(m, |r| {
            assert_eq!(m[r.ttl_at..r.ttl_at + 4], r.ttl.to_be_bytes());
            assert_eq!(
                usize::from(u16::from_be_bytes([m[r.ttl_at + 4], m[r.ttl_at + 5]])),
                r.rdata.len()
            );
            seen.push((r.rtype.0, r.class.0, r.ttl));
        })
        .then_some(seen);
        // Through a view, the same (when the view reads the message at all).
        if let Ok(v) = MessageView::parse(m) {
            let mut again = Vec::new();
            let viewed = walk_viewed_records(&v, |r| again.push((r.rtype.0, r.class.0, r.ttl)));
            if v.end == m.len() {
                assert_eq!(viewed.then_some(again), ours, "through the view: {m:02x?}");
            }
        }
        let decoded = parse_message(m).ok().map(|d| {
            d.answers
                .iter()
                .chain(&d.authority)
                .chain(&d.additional)
                .map(|r| (r.rtype.0, r.class.0, r.ttl))
                .collect()
        });
        (ours, decoded)
    }

    /// A response with a CNAME, an A, an SOA in authority, a TXT and an OPT: names
    /// compressed, so that mutations hit pointers, labels, counts and lengths.
    fn sample() -> Vec<u8> {
        use crate::wire::{Message, Name, Question, RData, Record, Soa};
        let n = |s: &str| Name::from_ascii(s).unwrap();
        let rec = |name: &str, rtype, ttl, rdata| Record {
            name: n(name),
            rtype,
            class: Class::IN,
            ttl,
            rdata,
        };
        let mut m = Message {
            header: crate::wire::Header::from_parts(7, 0x8180, [0; 4]),
            questions: vec![Question {
                qname: n("www.example.org"),
                qtype: RType::A,
                qclass: Class::IN,
            }],
            answers: vec![
                rec(
                    "www.example.org",
                    RType::CNAME,
                    300,
                    RData::Cname(n("web.example.org")),
                ),
                rec(
                    "web.example.org",
                    RType::A,
                    60,
                    RData::A([192, 0, 2, 1].into()),
                ),
            ],
            authority: vec![rec(
                "example.org",
                RType::SOA,
                3600,
                RData::Soa(Box::new(Soa {
                    mname: n("ns.example.org"),
                    rname: n("host.example.org"),
                    serial: 1,
                    refresh: 2,
                    retry: 3,
                    expire: 4,
                    minimum: 5,
                })),
            )],
            additional: vec![rec("example.org", RType::TXT, 10, RData::Txt(vec![b"hi"]))],
        };
        m.additional.push(crate::forward::reply::our_opt(true));
        m.to_vec()
    }

    #[test]
    fn walks_what_the_decoder_decodes() {
        let m = sample();
        let (ours, decoded) = both(&m);
        assert!(ours.is_some());
        assert_eq!(ours, decoded);
        // Every prefix fails, every single-octet change agrees.
        for n in 0..m.len() {
            assert_eq!(both(&m[..n]), (None, None), "prefix {n}");
        }
        for at in 0..m.len() {
            // Including the types whose names the decoder reads (MB 7, MG 8, MR 9,
            // MINFO 14, RP 17, AFSDB 18, RT 21, PX 26, NAPTR 35).
            for v in [
                0u8, 1, 2, 5, 7, 8, 9, 12, 14, 17, 18, 21, 26, 35, 41, 63, 64, 0x80, 0xC0, 0xFF,
            ] {
                let mut x = m.clone();
                x[at] = v;
                let (ours, decoded) = both(&x);
                assert_eq!(ours, decoded, "octet {at} = {v}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn walks_what_the_decoder_decodes_after_random_changes(
            changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        ) {
            let mut m = sample();
            for (at, v) in changes {
                let len = m.len();
                m[at % len] = v;
            }
            let (ours, decoded) = both(&m);
            prop_assert_eq!(ours, decoded);
        }
    }

    /// A, AAAA, the types the decoder reads names of (`NameLayout`), TXT, CAA, OPT and
    /// two it keeps opaque.
    const TYPES: &[u16] = &[
        1, 28, 2, 5, 12, 39, 7, 8, 9, 14, 17, 18, 21, 26, 35, 15, 33, 6, 16, 257, 41, 99, 46,
    ];

    #[test]
    fn agrees_with_the_decoder_on_chosen_rdata() {
        let name = [1, b'x', 0xC0, 12];
        let soa: Vec<u8> = [&name[..], &[0][..], &[7; 20][..]].concat();
        let cases: &[&[u8]] = &[
            &[],
            &[1, 2, 3, 4],
            &[0; 16],
            &name,
            &[0, 10, 1, b'x', 0xC0, 12],
            &[0, 1, 0, 2, 0, 3, 0],
            &soa,
            &soa[..soa.len() - 1],
            &[3, b'a', b'b', b'c', 0],
            &[3, b'a', b'b'],
            &[0, 5, b'i', b's', b's', b'u', b'e', b'x'],
            &[0, 0],
            &[0, 10, 0, 1, 0xAB],
            &[0, 10, 0, 0],
            &[0xC0, 40],
            &[0x40],
        ];
        for &t in TYPES {
            for class in [1, 255, 254] {
                for rd in cases {
                    agrees(t, class, rd);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn agrees_with_the_decoder_on_random_rdata(
            t in proptest::sample::select(TYPES),
            class in proptest::sample::select(&[1u16, 255, 254][..]),
            rd in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(3), Just(0xC0), Just(12), Just(b'a'), any::<u8>()],
                0..40,
            ),
        ) {
            agrees(t, class, &rd);
        }
    }
}
