//! What in an answer the cache's patches would break, so that it is not stored (it is
//! still relayed as received):
//! * a name that reads TTL octets. A compression pointer may aim anywhere before the run
//!   of labels it ends (RFC 1035 §4.1.4 asks no more), so a name can read the octets of
//!   another record's TTL field as labels. The cache patches TTLs where they lie
//!   (clamped when stored, counted down when served), and such a name would change with
//!   them, or stop being a name. Real compressors aim only at names.
//! * a TSIG record. It must be the last record (RFC 8945 §5.1), and a hit appends our
//!   OPT record after it; nor does it sign anything once the ID is the client's.
//!
//! Only a name read through a compression pointer can meet a TTL field: a name as it
//! lies ends before its record's TYPE (an owner) or inside its RDATA. So the intake's
//! walk notes where the names' pointers aim ([`Targets`], a few a message, most aiming
//! at the question), and once every TTL is placed each target's run of labels is
//! checked ([`Targets::read_ttl`]); [`unpatchable`] does the same in a walk of its own
//! for an answer that was decoded and written again.
use std::ops::Range;

use crate::wire::{walk_records, NameLayout, RType, RecordAt, HEADER_LEN};

/// Octets of a TTL field.
const TTL_LEN: usize = 4;

/// How many distinct pointer targets [`Targets`] keeps; past them it asks for the
/// whole walk ([`unpatchable`]).
const MAX_TARGETS: usize = 8;

/// Where the names of an answer's records aim their pointers, noted on the intake's
/// walk. Valid values: `targets[..len]` are offsets (the last one noted is not noted
/// again; another may be, which costs a second check and nothing else).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Targets {
    targets: [u16; MAX_TARGETS],
    len: u8,
    /// More targets than kept: decided by [`unpatchable`].
    whole: bool,
}

impl Targets {
    /// Notes the pointers of record `r`'s names (its owner unless `owner` is false, and
    /// the names in its RDATA for the types the decoder reads names of). A TSIG record
    /// is the view's to note (`MessageView::tsig`).
    #[inline(always)]
    pub(super) fn record(&mut self, msg: &[u8], r: &RecordAt, owner: bool) {
        if owner {
            self.name(msg, r.owner);
        }
        if !matches!(r.rtype, RType::A | RType::AAAA) {
            self.rdata(msg, r.rtype, r.rdata.clone());
        }
    }

    /// The RDATA part of [`record`](Self::record), for a record of `rtype` whose RDATA
    /// is `rdata` (by value: so that the record need not be written to memory for it).
    #[inline(never)]
    fn rdata(&mut self, msg: &[u8], rtype: RType, rdata: Range<usize>) {
        rdata_names(msg, rtype, &rdata, |n| self.name(msg, n));
    }

    /// Notes where the name lying at `at` ends in a pointer, if it does.
    #[inline(always)]
    fn name(&mut self, msg: &[u8], mut at: usize) {
        while let Some(&len) = msg.get(at) {
            if len & 0xC0 == 0xC0 {
                let lo = msg.get(at + 1).copied().unwrap_or(0);
                self.push(u16::from(len & 0x3F) << 8 | u16::from(lo));
                return;
            }
            if len == 0 {
                return;
            }
            at += 1 + usize::from(len);
        }
    }

    #[inline(always)]
    fn push(&mut self, target: u16) {
        // The usual target, the first name (the question's): the run from it is that name
        // as it lies, with no pointer of its own (none may aim into the header), so it
        // ends before the first record's TYPE, and any TTL.
        if usize::from(target) == HEADER_LEN {
            return;
        }
        let n = usize::from(self.len);
        if n > 0 && self.targets.get(n - 1) == Some(&target) {
            return;
        }
        match self.targets.get_mut(n) {
            Some(slot) => {
                *slot = target;
                self.len += 1;
            }
            None => self.whole = true,
        }
    }

    /// Whether the answer `msg` the targets were noted on is [`unpatchable`], its TTL
    /// fields at the offsets of `rows` (ascending, complete), its first `stored` octets
    /// kept (the OPT record, last, is cut off).
    #[inline(always)]
    pub(super) fn read_ttl(&self, msg: &[u8], rows: &[(u16, u32)], stored: usize) -> bool {
        if self.whole {
            return unpatchable(msg, rows, stored);
        }
        let n = usize::from(self.len);
        self.targets
            .get(..n)
            .unwrap_or_default()
            .iter()
            .any(|&t| reads_ttl(msg, usize::from(t), rows, stored))
    }
}

/// Whether `msg` (an answer that decodes) has a TSIG record, or a name (an owner, or a
/// name in the RDATA of the types the decoder reads names of) that reads an octet of a
/// TTL field at an offset of `rows` (ascending, as the intake notes them), or an octet
/// past the first `stored` (what is kept of `msg`: a name that reads the OPT record the
/// cache cuts off would read our OPT, or nothing, once served). `true` too if `msg` does
/// not walk.
pub(super) fn unpatchable(msg: &[u8], rows: &[(u16, u32)], stored: usize) -> bool {
    let mut found = false;
    let walked = walk_records(msg, |r| {
        if found || r.rtype == RType::TSIG {
            found = true;
            return;
        }
        if r.owner >= stored {
            return; // the OPT record, cut off
        }
        found = reads_ttl(msg, r.owner, rows, stored);
        rdata_names(msg, r.rtype, &r.rdata, |n| {
            found = found || reads_ttl(msg, n, rows, stored)
        });
    });
    found || !walked
}

/// Shows `f` where each name in the RDATA `rdata` of a record of `rtype` lies, for the
/// types the decoder reads names of ([`NameLayout`]).
fn rdata_names(msg: &[u8], rtype: RType, rdata: &Range<usize>, mut f: impl FnMut(usize)) {
    let Some(layout) = NameLayout::of(rtype) else {
        return;
    };
    let Some(first) = msg.get(rdata.clone()).and_then(|rd| layout.first_name(rd)) else {
        return;
    };
    let mut at = rdata.start + first;
    for n in 1..=layout.names {
        // An RDATA that decodes ends before a name only when empty (an update's delete).
        if at >= rdata.end {
            return;
        }
        f(at);
        if n < layout.names {
            at = name_end(msg, at);
        }
    }
}

/// Whether the name at `at` of `msg`, its pointers followed, reads an octet of a TTL field
/// or one past the first `stored` octets (the part of `msg` the cache keeps).
fn reads_ttl(msg: &[u8], mut at: usize, rows: &[(u16, u32)], stored: usize) -> bool {
    // Labels that end before the first TTL field (and within what is kept) meet none:
    // the usual run, the question.
    let first = rows
        .first()
        .map_or(stored, |&(at, _)| usize::from(at).min(stored));
    // Each pointer aims strictly back (the message decodes), so this ends; bounded anyway.
    let mut hops = 0;
    while let Some(&len) = msg.get(at) {
        let pointer = len & 0xC0 == 0xC0;
        let end = if pointer {
            at + 2
        } else {
            at + 1 + usize::from(len)
        };
        if end > first && (end > stored || overlaps_ttl(at, end, rows)) {
            return true;
        }
        if len == 0 {
            return false;
        }
        if pointer {
            let Some(&lo) = msg.get(at + 1) else {
                return false;
            };
            hops += 1;
            if hops > msg.len() {
                return false;
            }
            at = usize::from(len & 0x3F) << 8 | usize::from(lo);
        } else {
            at = end;
        }
    }
    false
}

/// Whether octets `start..end` meet a TTL field of `rows`.
fn overlaps_ttl(start: usize, end: usize, rows: &[(u16, u32)]) -> bool {
    // The first field that ends after `start`; fields do not overlap, so ends ascend.
    let i = rows.partition_point(|&(at, _)| usize::from(at) + TTL_LEN <= start);
    rows.get(i).is_some_and(|&(at, _)| usize::from(at) < end)
}

/// The offset just past the name at `at` as it lies (a pointer ends it).
fn name_end(msg: &[u8], mut at: usize) -> usize {
    while let Some(&len) = msg.get(at) {
        match len {
            0 => return at + 1,
            l if l & 0xC0 == 0xC0 => return at + 2,
            l => at += 1 + usize::from(l),
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_message, rdata_ok, Class, Name, RData};

    /// A response to `a.example. A IN` with one answer of `rtype` holding `rd`, owned by
    /// a pointer to the question's name; and the offset of `rd`.
    fn answer(rtype: u16, rd: &[u8]) -> (Vec<u8>, usize) {
        #[rustfmt::skip]
        let mut m = vec![
            0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, // header: one question, one answer
            1, b'a', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1, // a.example. A IN
            0xC0, 12, // owner: pointer to the question's name
        ];
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 60]); // class IN, TTL 60
        m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        let at = m.len();
        m.extend_from_slice(rd);
        (m, at)
    }

    /// An RDATA of `layout` at offset `at` of its message: its fixed octets and
    /// character-strings, then names, each a label and a pointer (the first to the
    /// question's name, the next to the name before it), then its tail. Also the names'
    /// offsets, and the names.
    fn built(layout: NameLayout, at: usize) -> (Vec<u8>, Vec<usize>, Vec<Name>) {
        let mut rd: Vec<u8> = (1..=layout.fixed).collect();
        for s in 0..layout.strings {
            rd.extend_from_slice(&[2, b's', b'0' + s]);
        }
        let (mut offsets, mut names) = (Vec::new(), Vec::new());
        let (mut target, mut text) = (HEADER_LEN, "a.example".to_string());
        for n in 0..layout.names {
            let [hi, lo] = (target as u16).to_be_bytes();
            target = at + rd.len();
            offsets.push(target);
            rd.extend_from_slice(&[2, b'n', b'0' + n, 0xC0 | hi, lo]);
            text = format!("n{n}.{text}");
            names.push(Name::from_ascii(&text).unwrap());
        }
        rd.extend((0..layout.tail).map(|t| 0xA0 + t));
        (rd, offsets, names)
    }

    /// The names the decoder read into `rdata`. No catch-all arm: a new variant must
    /// say what names it holds.
    fn names_of(rdata: &RData<'_>) -> Vec<Name> {
        match rdata {
            RData::Ns(n) | RData::Cname(n) | RData::Ptr(n) | RData::Dname(n) => vec![n.clone()],
            RData::Mailbox(n) => vec![n.clone()],
            RData::Minfo(m) => vec![m.rmailbx.clone(), m.emailbx.clone()],
            RData::Rp(rp) => vec![rp.mbox.clone(), rp.txt.clone()],
            RData::PrefName { host, .. } => vec![host.clone()],
            RData::Px(px) => vec![px.map822.clone(), px.mapx400.clone()],
            RData::Naptr(naptr) => vec![naptr.replacement.clone()],
            RData::Mx { exchange, .. } => vec![exchange.clone()],
            RData::Soa(soa) => vec![soa.mname.clone(), soa.rname.clone()],
            RData::Srv { target, .. } => vec![target.clone()],
            RData::A(_) | RData::Aaaa(_) | RData::Txt(_) | RData::Caa { .. } => Vec::new(),
            RData::Opt(_) | RData::Opaque(_) => Vec::new(),
        }
    }

    /// For `m` and its one answer (its RDATA at `at`, of `rtype`): whether the checker
    /// accepts it (the RDATA by `rdata_ok`, the message by `walk_records`, which checks
    /// also where OPT and TSIG may be), the names the decoder reads (`None` if it fails),
    /// and where the cache looks for names.
    fn three(m: &[u8], rtype: u16, at: usize) -> (bool, Option<Vec<Name>>, Vec<usize>) {
        let checked = walk_records(m, |_| ());
        assert!(!checked || rdata_ok(m, &m[at..], RType(rtype), Class::IN));
        let decoded = parse_message(m).ok().map(|d| names_of(&d.answers[0].rdata));
        let mut found = Vec::new();
        rdata_names(m, RType(rtype), &(at..m.len()), |n| found.push(n));
        (checked, decoded, found)
    }

    #[test]
    fn the_checker_the_decoder_and_the_cache_agree_on_names_for_every_type() {
        let at = answer(0, &[]).1;
        let mut with_names = 0;
        for t in 0..=u16::MAX {
            let Some(layout) = NameLayout::of(RType(t)) else {
                // No names to find; nor may the decoder read one, wherever it lies.
                for fixed in 0..=6 {
                    let rd = [&[0; 6][..fixed], &[2, b'n', b'0', 0xC0, 12][..]].concat();
                    let (m, _) = answer(t, &rd);
                    let (checked, decoded, found) = three(&m, t, at);
                    assert_eq!(checked, decoded.is_some(), "type {t} rdata {rd:02x?}");
                    let decoded = decoded.unwrap_or_default();
                    assert!(decoded.is_empty(), "type {t} rdata {rd:02x?}: {decoded:?}");
                    assert!(found.is_empty(), "type {t} rdata {rd:02x?}: {found:?}");
                }
                continue;
            };
            with_names += 1;
            let (rd, offsets, names) = built(layout, at);
            let (m, _) = answer(t, &rd);
            assert_eq!(three(&m, t, at), (true, Some(names), offsets), "type {t}");
            assert!(rdata_ok(&m, &m[at..], RType(t), Class::IN), "type {t}");
            // Cut short or one octet long, the checker and the decoder still agree.
            for n in 0..rd.len() {
                let (m, _) = answer(t, &rd[..n]);
                let (checked, decoded, _) = three(&m, t, at);
                assert_eq!(
                    checked,
                    decoded.is_some(),
                    "type {t}, {n} octets of {rd:02x?}"
                );
            }
            let (m, _) = answer(t, &[&rd[..], &[0]].concat());
            let (checked, decoded, _) = three(&m, t, at);
            assert_eq!(
                (checked, decoded),
                (false, None),
                "type {t}, one octet long"
            );
        }
        assert_eq!(with_names, 16);
    }
}
