//! Resource records (RFC 1035 §3.2, §4.1.3) and their RDATA.
//!
//! RDATA of the types listed in [`RData`] is decoded: those whose names may be compressed.
//! RFC 3597 §4: "Receiving servers MUST decompress domain names in RRs of well-known type,
//! and SHOULD also decompress RRs of type RP, AFSDB, RT, SIG, PX, NXT, NAPTR, and SRV".
//! So the names inside RFC 1035 types (NS, CNAME, PTR, MX, SOA, MB, MG, MR, MINFO) are
//! decompressed on read and may be compressed on write; SRV, DNAME, RP, AFSDB, RT, PX and
//! NAPTR names are decompressed on read but never compressed on write (RFC 3597 §4,
//! RFC 2782, RFC 6672, RFC 3403). A message written again therefore never carries a
//! pointer inside RDATA that a receiver is not bound to follow.
//! Every other type, DNSSEC and SVCB/HTTPS included, is kept as opaque octets
//! (RFC 3597) so that it passes through unchanged and costs nothing to forward; its
//! names are never compressed, so the octets mean the same anywhere in a message.
//! [`super::rdata`] decodes those on demand, for display. [`NameLayout`] says which types
//! hold the names the decoder reads, and where, for the code that walks RDATA undecoded.
mod layout;
mod parse;
mod types;

use std::net::{Ipv4Addr, Ipv6Addr};

use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32};

use super::{parse_name, EdnsOption, Name, PResult, Writer};
pub use layout::NameLayout;
use parse::parse_rdata;
pub use types::{Class, RType};

/// SOA RDATA (RFC 1035 §3.3.13).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Soa {
    pub mname: Name,
    pub rname: Name,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

/// MINFO RDATA (RFC 1035 §3.3.7). The two-name types are boxed, as SOA and NAPTR are,
/// so that [`RData`] (and every record the forwarder decodes) stays 40 octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Minfo {
    pub rmailbx: Name,
    pub emailbx: Name,
}

/// RP RDATA (RFC 1183 §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rp {
    pub mbox: Name,
    pub txt: Name,
}

/// PX RDATA (RFC 2163 §4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Px {
    pub preference: u16,
    pub map822: Name,
    pub mapx400: Name,
}

/// NAPTR RDATA (RFC 3403 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Naptr<'a> {
    pub order: u16,
    pub preference: u16,
    pub flags: &'a [u8],
    pub services: &'a [u8],
    pub regexp: &'a [u8],
    pub replacement: Name,
}

/// Decoded RDATA. Octet strings borrow from the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RData<'a> {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ns(Name),
    Cname(Name),
    Ptr(Name),
    /// RFC 6672: decompressed on read, never compressed on write.
    Dname(Name),
    /// MB, MG, MR (RFC 1035 §3.3.3-5): one mailbox or mail group name, `rtype` says which.
    Mailbox(Name),
    /// RFC 1035 §3.3.7.
    Minfo(Box<Minfo>),
    /// RFC 1183 §2.2.
    Rp(Box<Rp>),
    /// AFSDB (RFC 1183 §1) and RT (RFC 1183 §3.3): a 16-bit number and a host name.
    PrefName {
        preference: u16,
        host: Name,
    },
    /// RFC 2163 §4.
    Px(Box<Px>),
    /// RFC 3403 §4.1.
    Naptr(Box<Naptr<'a>>),
    Mx {
        preference: u16,
        exchange: Name,
    },
    /// One or more character-strings (RFC 1035 §3.3.14).
    Txt(Vec<&'a [u8]>),
    Soa(Box<Soa>),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Name,
    },
    /// RFC 8659 §4.1. Valid values of `tag`: 1..=15 ASCII letters and digits.
    Caa {
        flags: u8,
        tag: &'a [u8],
        value: &'a [u8],
    },
    /// EDNS options of the OPT pseudo-record (RFC 6891 §6.1.2).
    Opt(Vec<EdnsOption<'a>>),
    /// Any other type, or an empty RDATA of class ANY/NONE (RFC 2136 §2.5): kept as sent.
    Opaque(&'a [u8]),
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record<'a> {
    pub name: Name,
    pub rtype: RType,
    pub class: Class,
    /// As sent: a value with the top bit set is kept here (RFC 2181 §8 says to treat it
    /// as zero, which is the cache's business).
    pub ttl: u32,
    pub rdata: RData<'a>,
}

/// Parses a record at `i`, resolving names (in the owner and in RDATA) against `msg`.
pub fn parse_record<'a>(msg: &'a [u8], i: &'a [u8]) -> PResult<'a, Record<'a>> {
    let (i, name) = parse_name(msg, i)?;
    let (i, rtype) = be_u16(i)?;
    let (i, class) = be_u16(i)?;
    let (i, ttl) = be_u32(i)?;
    let (i, rdlength) = be_u16(i)?;
    let (i, rd) = take(rdlength)(i)?;
    let (rtype, class) = (RType(rtype), Class(class));
    let rdata = parse_rdata(msg, rd, rtype, class)?;
    let record = Record {
        name,
        rtype,
        class,
        ttl,
        rdata,
    };
    Ok((i, record))
}

impl Record<'_> {
    /// Appends the record; false (and nothing written) if it does not fit the writer.
    pub fn write(&self, w: &mut Writer) -> bool {
        let mark = w.mark();
        let ok = self.write_fields(w);
        if !ok {
            w.rollback(mark);
        }
        ok
    }

    fn write_fields(&self, w: &mut Writer) -> bool {
        if !(w.name(&self.name, true)
            && w.u16(self.rtype.0)
            && w.u16(self.class.0)
            && w.u32(self.ttl)
            && w.u16(0))
        {
            return false;
        }
        let start = w.len();
        if !self.rdata.write(w) {
            return false;
        }
        match u16::try_from(w.len() - start) {
            Ok(rdlength) => w.patch_u16(start - 2, rdlength),
            Err(_) => false,
        }
    }
}

impl RData<'_> {
    /// Appends the RDATA (without RDLENGTH).
    fn write(&self, w: &mut Writer) -> bool {
        match self {
            RData::A(a) => w.bytes(&a.octets()),
            RData::Aaaa(a) => w.bytes(&a.octets()),
            RData::Ns(n) | RData::Cname(n) | RData::Ptr(n) => w.name(n, true),
            RData::Dname(n) => w.name(n, false),
            RData::Mailbox(n) => w.name(n, true),
            RData::Minfo(m) => w.name(&m.rmailbx, true) && w.name(&m.emailbx, true),
            RData::Rp(rp) => w.name(&rp.mbox, false) && w.name(&rp.txt, false),
            RData::PrefName { preference, host } => w.u16(*preference) && w.name(host, false),
            RData::Px(px) => {
                w.u16(px.preference) && w.name(&px.map822, false) && w.name(&px.mapx400, false)
            }
            RData::Naptr(n) => {
                w.u16(n.order)
                    && w.u16(n.preference)
                    && w.char_string(n.flags)
                    && w.char_string(n.services)
                    && w.char_string(n.regexp)
                    && w.name(&n.replacement, false)
            }
            RData::Mx {
                preference,
                exchange,
            } => w.u16(*preference) && w.name(exchange, true),
            RData::Txt(strings) => strings.iter().all(|s| w.char_string(s)),
            RData::Soa(soa) => {
                w.name(&soa.mname, true)
                    && w.name(&soa.rname, true)
                    && [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum]
                        .iter()
                        .all(|&v| w.u32(v))
            }
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => w.u16(*priority) && w.u16(*weight) && w.u16(*port) && w.name(target, false),
            RData::Caa { flags, tag, value } => {
                w.u8(*flags) && w.char_string(tag) && w.bytes(value)
            }
            RData::Opt(options) => options
                .iter()
                .all(|o| w.u16(o.code) && w.char_string16(o.data)),
            RData::Opaque(b) => w.bytes(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::wire::{parse_message, Name, RData, RType};

    /// A response for `example. <rtype>` whose one answer has `rdata` (names may point
    /// at the question's name, offset 12).
    fn answer(rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let [t0, t1] = rtype.to_be_bytes();
        #[rustfmt::skip]
        let mut m = vec![
            0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, // header: 1 question, 1 answer
            7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, t0, t1, 0, 1, // question
            0xc0, 12, t0, t1, 0, 1, 0, 0, 0x0e, 0x10, 0, rdata.len() as u8, // answer
        ];
        m.extend_from_slice(rdata);
        m
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    /// Every record the forwarder decodes (the cache's insert, TC cuts) moves an RData:
    /// the new types must not make it bigger.
    #[test]
    fn rdata_stays_40_octets() {
        assert!(std::mem::size_of::<RData<'_>>() <= 40);
    }

    #[test]
    fn decompresses_rp_and_writes_it_uncompressed() {
        // RP mbx.example. example., both compressed against the question.
        let wire = answer(17, &[3, b'm', b'b', b'x', 0xc0, 12, 0xc0, 12]);
        let m = parse_message(&wire).unwrap();
        let RData::Rp(rp) = &m.answers[0].rdata else {
            panic!("not RP")
        };
        assert_eq!(
            (&rp.mbox, &rp.txt),
            (&name("mbx.example."), &name("example."))
        );
        let again = m.to_vec();
        // RFC 3597 §4: RP is not an RFC 1035 type, so its names go out in full.
        let rdata = b"\x03mbx\x07example\x00\x07example\x00";
        assert!(again.ends_with(rdata), "{again:02x?}");
        assert_eq!(parse_message(&again).unwrap().answers, m.answers);
    }

    #[test]
    fn compresses_minfo_as_an_rfc_1035_type() {
        let wire = answer(14, &[0xc0, 12, 1, b'e', 0xc0, 12]);
        let m = parse_message(&wire).unwrap();
        let again = m.to_vec();
        assert!(
            again.ends_with(&[0, 6, 0xc0, 12, 1, b'e', 0xc0, 12]),
            "{again:02x?}"
        );
        assert_eq!(parse_message(&again).unwrap().answers, m.answers);
    }

    #[test]
    fn decodes_naptr_afsdb_rt_px_and_mailboxes() {
        let naptr = answer(35, b"\x00\x64\x00\x0a\x01S\x07SIP+D2U\x00\xc0\x0c");
        let RData::Naptr(n) = &parse_message(&naptr).unwrap().answers[0].rdata else {
            panic!("not NAPTR")
        };
        assert_eq!((n.order, n.preference, n.flags), (100, 10, &b"S"[..]));
        assert_eq!(n.replacement, name("example."));
        for (rtype, rdata) in [
            (18u16, &b"\x00\x01\xc0\x0c"[..]),
            (21, b"\x00\x14\xc0\x0c"),
            (26, b"\x00\x0a\xc0\x0c\x01x\xc0\x0c"),
            (7, b"\xc0\x0c"),
            (8, b"\xc0\x0c"),
            (9, b"\xc0\x0c"),
        ] {
            let wire = answer(rtype, rdata);
            let m = parse_message(&wire).unwrap();
            assert!(!matches!(m.answers[0].rdata, RData::Opaque(_)), "{rtype}");
            assert_eq!(parse_message(&m.to_vec()).unwrap().answers, m.answers);
        }
        // A name running past the RDATA is an RDATA length error, not a panic.
        let bad = answer(RType::RP.0, &[3, b'm', b'b']);
        assert!(parse_message(&bad).is_err());
    }
}
