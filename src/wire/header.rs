//! The 12-octet message header (RFC 1035 §4.1.1, RFC 2535 §6.1 for AD/CD).
//!
//! ```text
//!                                 1  1  1  1  1  1
//!   0  1  2  3  4  5  6  7  8  9  0  1  2  3  4  5
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//! |                      ID                       |
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//! |QR|   Opcode  |AA|TC|RD|RA| Z|AD|CD|   RCODE   |
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//! |            QDCOUNT / ANCOUNT / NSCOUNT / ARCOUNT
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//! ```
use super::{fail, ErrorKind, PResult, HEADER_LEN};

/// OPCODE: an open 4-bit code point (RFC 1035 §4.1.1, IANA "DNS OpCodes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opcode(pub u8);

impl Opcode {
    pub const QUERY: Opcode = Opcode(0);
    pub const IQUERY: Opcode = Opcode(1);
    pub const STATUS: Opcode = Opcode(2);
    pub const NOTIFY: Opcode = Opcode(4);
    pub const UPDATE: Opcode = Opcode(5);
    pub const DSO: Opcode = Opcode(6);

    /// The mnemonic, or the number for an unassigned code.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self.0 {
            0 => "QUERY".into(),
            1 => "IQUERY".into(),
            2 => "STATUS".into(),
            4 => "NOTIFY".into(),
            5 => "UPDATE".into(),
            6 => "DSO".into(),
            n => n.to_string().into(),
        }
    }
}

/// RCODE: an open code point. The header holds the low 4 bits; with EDNS the OPT record
/// adds 8 more (RFC 6891 §6.1.3), so the full value is 12 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rcode(pub u16);

impl Rcode {
    pub const NOERROR: Rcode = Rcode(0);
    pub const FORMERR: Rcode = Rcode(1);
    pub const SERVFAIL: Rcode = Rcode(2);
    pub const NXDOMAIN: Rcode = Rcode(3);
    pub const NOTIMP: Rcode = Rcode(4);
    pub const REFUSED: Rcode = Rcode(5);
    pub const YXDOMAIN: Rcode = Rcode(6);
    pub const YXRRSET: Rcode = Rcode(7);
    pub const NXRRSET: Rcode = Rcode(8);
    pub const NOTAUTH: Rcode = Rcode(9);
    pub const NOTZONE: Rcode = Rcode(10);
    pub const BADVERS: Rcode = Rcode(16);
    pub const BADCOOKIE: Rcode = Rcode(23);

    /// The mnemonic, or `RCODEnnn` for an unassigned code.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        let s = match self.0 {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            6 => "YXDOMAIN",
            7 => "YXRRSET",
            8 => "NXRRSET",
            9 => "NOTAUTH",
            10 => "NOTZONE",
            16 => "BADVERS",
            23 => "BADCOOKIE",
            n => return format!("RCODE{n}").into(),
        };
        s.into()
    }
}

/// The message header, one field per RFC 1035 mnemonic.
///
/// `repr(C)`, with the eight flags together in the order of [`FLAGS`]'s rows (QR
/// first, CD last), so that reading a header copies its flags from the table in one
/// piece: every message the forwarder looks at is read into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Header {
    pub id: u16,
    /// The low 4 bits of the RCODE as sent in the header. Valid values: 0..=15.
    pub rcode: Rcode,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
    pub qr: bool,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    /// The reserved bit, kept so that it round-trips.
    pub z: bool,
    pub ad: bool,
    pub cd: bool,
    /// Valid values: 0..=15.
    pub opcode: Opcode,
}

/// The flags QR, AA, TC, RD, RA, Z, AD and CD for each value of an octet that holds
/// them in that order, QR its top bit: a header's flags are one row, found by index
/// rather than bit by bit. Built at compile time (an index out of bounds here fails the
/// build, never a packet).
#[allow(clippy::indexing_slicing)]
static FLAGS: [[bool; 8]; 256] = {
    let mut rows = [[false; 8]; 256];
    let mut octet = 0;
    while octet < 256 {
        let mut k = 0;
        while k < 8 {
            rows[octet][k] = octet >> (7 - k) & 1 == 1;
            k += 1;
        }
        octet += 1;
    }
    rows
};

impl Default for Opcode {
    fn default() -> Self {
        Opcode::QUERY
    }
}

impl Default for Rcode {
    fn default() -> Self {
        Rcode::NOERROR
    }
}

impl Header {
    /// The 16-bit flags word (everything between ID and QDCOUNT).
    pub fn flags(&self) -> u16 {
        (u16::from(self.qr) << 15)
            | (u16::from(self.opcode.0 & 0xF) << 11)
            | (u16::from(self.aa) << 10)
            | (u16::from(self.tc) << 9)
            | (u16::from(self.rd) << 8)
            | (u16::from(self.ra) << 7)
            | (u16::from(self.z) << 6)
            | (u16::from(self.ad) << 5)
            | (u16::from(self.cd) << 4)
            | (self.rcode.0 & 0xF)
    }

    /// Builds a header from its ID, flags word and counts.
    pub fn from_parts(id: u16, flags: u16, counts: [u16; 4]) -> Header {
        let bit = |n: u16| flags & (1 << n) != 0;
        let [qdcount, ancount, nscount, arcount] = counts;
        Header {
            id,
            qr: bit(15),
            opcode: Opcode(((flags >> 11) & 0xF) as u8),
            aa: bit(10),
            tc: bit(9),
            rd: bit(8),
            ra: bit(7),
            z: bit(6),
            ad: bit(5),
            cd: bit(4),
            rcode: Rcode(flags & 0xF),
            qdcount,
            ancount,
            nscount,
            arcount,
        }
    }

    /// [`from_parts`](Self::from_parts) for a header read off the wire: the flags
    /// copied from their row of [`FLAGS`] rather than found bit by bit. (A header built
    /// to be written is left to `from_parts`, which the compiler sees through when the
    /// flags are then packed again.)
    fn from_wire(id: u16, flags: u16, counts: [u16; 4]) -> Header {
        // QR (bit 15), then AA (bit 10) to CD (bit 4): the octet that indexes `FLAGS`.
        let octet = (flags >> 8) & 0x80 | (flags >> 4) & 0x7F;
        let [qr, aa, tc, rd, ra, z, ad, cd] =
            FLAGS.get(usize::from(octet)).copied().unwrap_or_default();
        let [qdcount, ancount, nscount, arcount] = counts;
        Header {
            id,
            qr,
            opcode: Opcode(((flags >> 11) & 0xF) as u8),
            aa,
            tc,
            rd,
            ra,
            z,
            ad,
            cd,
            rcode: Rcode(flags & 0xF),
            qdcount,
            ancount,
            nscount,
            arcount,
        }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let words = [
            self.id,
            self.flags(),
            self.qdcount,
            self.ancount,
            self.nscount,
            self.arcount,
        ];
        for (chunk, w) in out.chunks_exact_mut(2).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Dig-style flag mnemonics, e.g. `"qr rd ra"`.
    pub fn flags_text(&self) -> String {
        let names = [
            (self.qr, "qr"),
            (self.aa, "aa"),
            (self.tc, "tc"),
            (self.rd, "rd"),
            (self.ra, "ra"),
            (self.z, "z"),
            (self.ad, "ad"),
            (self.cd, "cd"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        set.join(" ")
    }
}

/// Parses the header: the first 12 octets. Fails only when there are fewer.
pub fn parse_header(i: &[u8]) -> PResult<'_, Header> {
    let Some((fixed, rest)) = i.split_first_chunk::<HEADER_LEN>() else {
        return fail(i, ErrorKind::Truncated);
    };
    let [id, flags, qd, an, ns, ar] = words(fixed);
    Ok((rest, Header::from_parts(id, flags, [qd, an, ns, ar])))
}

/// [`parse_header`] for a caller that keeps the whole header (the view of every
/// message): the flags copied from their row of [`FLAGS`] ([`Header::from_wire`]),
/// where `parse_header` leaves the compiler to find only those its caller reads.
#[inline]
pub(super) fn read_header(i: &[u8]) -> PResult<'_, Header> {
    let Some((fixed, rest)) = i.split_first_chunk::<HEADER_LEN>() else {
        return fail(i, ErrorKind::Truncated);
    };
    let [id, flags, qd, an, ns, ar] = words(fixed);
    Ok((rest, Header::from_wire(id, flags, [qd, an, ns, ar])))
}

/// The header's six big-endian words, read from one bounds-checked chunk: every packet
/// passes here.
#[inline(always)]
fn words(fixed: &[u8; HEADER_LEN]) -> [u16; 6] {
    let word = |n: usize| {
        let at = 2 * n;
        u16::from_be_bytes([
            fixed.get(at).copied().unwrap_or(0),
            fixed.get(at + 1).copied().unwrap_or(0),
        ])
    };
    [word(0), word(1), word(2), word(3), word(4), word(5)]
}

/// Rewrites the ID of the message in `msg` in place. Returns false (and changes
/// nothing) if `msg` is shorter than two octets.
pub fn set_id(msg: &mut [u8], id: u16) -> bool {
    match msg.get_mut(0..2) {
        Some(field) => {
            field.copy_from_slice(&id.to_be_bytes());
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const RESPONSE: [u8; 12] = [
        0xfd, 0x2c,             // id
        0x81, 0x80,             // qr rd ra, NOERROR
        0x00, 0x01,             // qdcount
        0x00, 0x02,             // ancount
        0x00, 0x00,             // nscount
        0x00, 0x01,             // arcount
    ];

    #[test]
    fn parses_and_writes_header() {
        let (rest, h) = parse_header(&RESPONSE).unwrap();
        assert!(rest.is_empty());
        assert_eq!(h.id, 0xfd2c);
        assert!(h.qr && h.rd && h.ra && !h.aa && !h.tc && !h.z && !h.ad && !h.cd);
        assert_eq!((h.qdcount, h.ancount, h.nscount, h.arcount), (1, 2, 0, 1));
        assert_eq!(h.flags(), 0x8180);
        assert_eq!(h.to_bytes(), RESPONSE);
    }

    #[test]
    fn every_flags_word_round_trips() {
        for flags in 0..=u16::MAX {
            let h = Header::from_parts(7, flags, [1, 2, 3, 4]);
            assert_eq!(h.flags(), flags);
            assert_eq!(Header::from_wire(7, flags, [1, 2, 3, 4]), h);
            let (_, back) = parse_header(&h.to_bytes()).unwrap();
            assert_eq!(back, h);
        }
    }

    #[test]
    fn short_header_is_truncated() {
        for n in 0..HEADER_LEN {
            let e = parse_header(&RESPONSE[..n]).unwrap_err();
            assert!(
                matches!(e, nom::Err::Error(w) if w.kind == super::super::ErrorKind::Truncated)
            );
        }
    }

    #[test]
    fn set_id_rewrites_in_place() {
        let mut m = RESPONSE;
        assert!(set_id(&mut m, 0x1234));
        assert_eq!(&m[..2], &[0x12, 0x34]);
        assert_eq!(&m[2..], &RESPONSE[2..]);
        assert!(!set_id(&mut [0u8; 1], 1));
    }
}
