//! Where the names lie in RDATA: the one list of the types whose names the decoder reads
//! (RFC 3597 §4; see [`super`]), and of the fields around those names. The code that
//! walks RDATA without decoding it goes by this list: the checker (`wire::check`) and
//! the cache's search for names its TTL patches would break (`cache::overlap`). The
//! decoder (`parse.rs`) reads the same fields into typed values; `cache::overlap`'s
//! tests hold all three to this list for every type.
use super::RType;

/// The RDATA of a type whose names the decoder reads, in order, filling it exactly:
///
/// ```text
/// +--------------+------------------------+--------------+-------------+
/// | fixed octets | character-strings (*)  | names        | tail octets |
/// +--------------+------------------------+--------------+-------------+
/// (*) each a length octet and that many octets (RFC 1035 §3.3)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameLayout {
    /// Octets before the first name (or before the character-strings).
    pub fixed: u8,
    /// Character-strings between the fixed octets and the first name.
    pub strings: u8,
    /// Names, one after the other. Valid values: 1, 2.
    pub names: u8,
    /// Octets after the last name.
    pub tail: u8,
}

impl NameLayout {
    /// The layout of `rtype`'s RDATA; `None` for a type the decoder reads no name of
    /// (its RDATA holds none, or only names that are never compressed, RFC 3597 §4, and
    /// is kept as opaque octets).
    pub const fn of(rtype: RType) -> Option<NameLayout> {
        let (fixed, strings, names, tail) = match rtype {
            // One name: RFC 1035 §3.3.1, §3.3.11, §3.3.12, §3.3.3-5; RFC 6672 §2.1.
            RType::NS | RType::CNAME | RType::PTR | RType::DNAME => (0, 0, 1, 0),
            RType::MB | RType::MG | RType::MR => (0, 0, 1, 0),
            // RMAILBX, EMAILBX (RFC 1035 §3.3.7); mbox-dname, txt-dname (RFC 1183 §2.2).
            RType::MINFO | RType::RP => (0, 0, 2, 0),
            // MNAME, RNAME, then SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM (RFC 1035 §3.3.13).
            RType::SOA => (0, 0, 2, 20),
            // A 16-bit preference, then a host (RFC 1035 §3.3.9; RFC 1183 §1, §3.3).
            RType::MX | RType::AFSDB | RType::RT => (2, 0, 1, 0),
            // PREFERENCE, MAP822, MAPX400 (RFC 2163 §4).
            RType::PX => (2, 0, 2, 0),
            // Priority, Weight, Port, Target (RFC 2782).
            RType::SRV => (6, 0, 1, 0),
            // ORDER, PREFERENCE, FLAGS, SERVICES, REGEXP, REPLACEMENT (RFC 3403 §4.1).
            RType::NAPTR => (4, 3, 1, 0),
            _ => return None,
        };
        Some(NameLayout {
            fixed,
            strings,
            names,
            tail,
        })
    }

    /// The offset in `rd` (an RDATA of this layout) of its first name: past the fixed
    /// octets and the character-strings. `None` if they overrun `rd`.
    #[inline]
    pub fn first_name(self, rd: &[u8]) -> Option<usize> {
        let mut at = usize::from(self.fixed);
        for _ in 0..self.strings {
            at += 1 + usize::from(*rd.get(at)?);
        }
        (at <= rd.len()).then_some(at)
    }
}
