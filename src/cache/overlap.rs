//! What in an answer the cache's patches would break, so that it is not stored (it is
//! still relayed as received):
//! * a name that reads TTL octets. A compression pointer may aim anywhere before the run
//!   of labels it ends (RFC 1035 §4.1.4 asks no more), so a name can read the octets of
//!   another record's TTL field as labels. The cache patches TTLs where they lie
//!   (clamped when stored, counted down when served), and such a name would change with
//!   them, or stop being a name. Real compressors aim only at names.
//! * a TSIG record. It must be the last record (RFC 8945 §5.1), and a hit appends our
//!   OPT record after it; nor does it sign anything once the ID is the client's.
use crate::wire::{walk_records, RType};

/// Octets of a TTL field.
const TTL_LEN: usize = 4;

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
        let (at, end) = (r.rdata.start, r.rdata.end);
        let first = match r.rtype {
            RType::NS | RType::CNAME | RType::PTR | RType::DNAME => Some(at),
            RType::MB | RType::MG | RType::MR | RType::SOA | RType::MINFO | RType::RP => Some(at),
            RType::MX | RType::AFSDB | RType::RT | RType::PX => Some(at + 2),
            RType::SRV => Some(at + 6),
            RType::NAPTR => naptr_name(msg, at),
            _ => None,
        };
        let second = match r.rtype {
            RType::SOA | RType::MINFO | RType::RP | RType::PX => first.map(|n| name_end(msg, n)),
            _ => None,
        };
        found = reads_ttl(msg, r.owner, rows)
            || [first, second]
                .into_iter()
                .flatten()
                .any(|n| n < end && reads_ttl(msg, n, rows));
    });
    found || !walked
}

/// Whether the name at `at` of `msg`, its pointers followed, reads an octet of a TTL field.
fn reads_ttl(msg: &[u8], mut at: usize, rows: &[(u16, u32)]) -> bool {
    // Each pointer aims strictly back (the message decodes), so this ends; bounded anyway.
    for _ in 0..msg.len() {
        let Some(&len) = msg.get(at) else {
            return false;
        };
        let end = match len {
            0 => at + 1,
            l if l & 0xC0 == 0xC0 => at + 2,
            l => at + 1 + usize::from(l),
        };
        if overlaps_ttl(at, end, rows) {
            return true;
        }
        match (len, msg.get(at + 1)) {
            (0, _) => return false,
            (l, Some(&lo)) if l & 0xC0 == 0xC0 => at = usize::from(l & 0x3F) << 8 | usize::from(lo),
            _ => at = end,
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
