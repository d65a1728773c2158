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

use crate::wire::{walk_records, RType, RecordAt, HEADER_LEN};

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
    /// fields at the offsets of `rows` (ascending, complete).
    #[inline]
    pub(super) fn read_ttl(&self, msg: &[u8], rows: &[(u16, u32)]) -> bool {
        if self.whole {
            return unpatchable(msg, rows);
        }
        let n = usize::from(self.len);
        self.targets
            .get(..n)
            .unwrap_or_default()
            .iter()
            .any(|&t| reads_ttl(msg, usize::from(t), rows))
    }
}

/// Whether `msg` (an answer that decodes) has a TSIG record, or a name (an owner, or a
/// name in the RDATA of the types the decoder reads names of) that reads an octet of a
/// TTL field at an offset of `rows` (ascending, as the intake notes them). `true` too
/// if `msg` does not walk.
pub(super) fn unpatchable(msg: &[u8], rows: &[(u16, u32)]) -> bool {
    let mut found = false;
    let walked = walk_records(msg, |r| {
        if found || r.rtype == RType::TSIG {
            found = true;
            return;
        }
        found = reads_ttl(msg, r.owner, rows);
        rdata_names(msg, r.rtype, &r.rdata, |n| {
            found = found || reads_ttl(msg, n, rows)
        });
    });
    found || !walked
}

/// Shows `f` where each name in the RDATA `rdata` of a record of `rtype` lies, for the
/// types the decoder reads names of: the first, and the second of SOA, MINFO, RP and
/// PX, which follows it.
fn rdata_names(msg: &[u8], rtype: RType, rdata: &Range<usize>, mut f: impl FnMut(usize)) {
    if let Some(first) = rdata_name(msg, rtype, rdata) {
        f(first);
        if matches!(rtype, RType::SOA | RType::MINFO | RType::RP | RType::PX) {
            let second = name_end(msg, first);
            if second < rdata.end {
                f(second);
            }
        }
    }
}

/// Where the first name in the RDATA `rdata` of a record of `rtype` lies, for the types
/// the decoder reads names of.
#[inline]
fn rdata_name(msg: &[u8], rtype: RType, rdata: &Range<usize>) -> Option<usize> {
    let at = rdata.start;
    match rtype {
        RType::A | RType::AAAA => None,
        RType::NS | RType::CNAME | RType::PTR | RType::DNAME => Some(at),
        RType::MB | RType::MG | RType::MR | RType::SOA | RType::MINFO | RType::RP => Some(at),
        RType::MX | RType::AFSDB | RType::RT | RType::PX => Some(at + 2),
        RType::SRV => Some(at + 6),
        RType::NAPTR => naptr_name(msg, at),
        _ => None,
    }
    .filter(|&n| n < rdata.end)
}

/// Whether the name at `at` of `msg`, its pointers followed, reads an octet of a TTL field.
fn reads_ttl(msg: &[u8], mut at: usize, rows: &[(u16, u32)]) -> bool {
    // Labels that end before the first TTL field meet none (the usual run: the question).
    let first = rows.first().map_or(usize::MAX, |&(at, _)| usize::from(at));
    // Each pointer aims strictly back (the message decodes), so this ends; bounded anyway.
    let mut hops = 0;
    while let Some(&len) = msg.get(at) {
        let pointer = len & 0xC0 == 0xC0;
        let end = if pointer {
            at + 2
        } else {
            at + 1 + usize::from(len)
        };
        if end > first && overlaps_ttl(at, end, rows) {
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

/// Where the name of a NAPTR RDATA at `at` starts: after ORDER, PREFERENCE and three
/// character-strings (RFC 3403 §4.1).
fn naptr_name(msg: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 4;
    for _ in 0..3 {
        i += 1 + usize::from(*msg.get(i)?);
    }
    Some(i)
}
