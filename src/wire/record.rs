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
//! [`super::rdata`] decodes those on demand, for display.
use std::net::{Ipv4Addr, Ipv6Addr};

use nom::bytes::complete::take;
use nom::multi::{length_data, many0};
use nom::number::complete::{be_u16, be_u32, u8 as octet};
use nom::Parser;

use super::edns::parse_options;
use super::{fail, parse_name, EdnsOption, ErrorKind, Name, PResult, WireError, Writer};

/// TYPE: an open 16-bit code point (IANA "Resource Record (RR) TYPEs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RType(pub u16);

/// CLASS: an open 16-bit code point. For OPT it holds the UDP payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Class(pub u16);

/// Mnemonics of the types we print by name; everything else is `TYPEnnn` (RFC 3597 §5).
const RTYPE_NAMES: &[(u16, &str)] = &[
    (1, "A"),
    (2, "NS"),
    (3, "MD"),
    (4, "MF"),
    (5, "CNAME"),
    (6, "SOA"),
    (7, "MB"),
    (8, "MG"),
    (9, "MR"),
    (10, "NULL"),
    (11, "WKS"),
    (12, "PTR"),
    (13, "HINFO"),
    (14, "MINFO"),
    (15, "MX"),
    (16, "TXT"),
    (17, "RP"),
    (18, "AFSDB"),
    (19, "X25"),
    (20, "ISDN"),
    (21, "RT"),
    (22, "NSAP"),
    (23, "NSAP-PTR"),
    (24, "SIG"),
    (25, "KEY"),
    (26, "PX"),
    (27, "GPOS"),
    (28, "AAAA"),
    (29, "LOC"),
    (30, "NXT"),
    (33, "SRV"),
    (35, "NAPTR"),
    (36, "KX"),
    (37, "CERT"),
    (38, "A6"),
    (39, "DNAME"),
    (41, "OPT"),
    (42, "APL"),
    (43, "DS"),
    (44, "SSHFP"),
    (45, "IPSECKEY"),
    (46, "RRSIG"),
    (47, "NSEC"),
    (48, "DNSKEY"),
    (49, "DHCID"),
    (50, "NSEC3"),
    (51, "NSEC3PARAM"),
    (52, "TLSA"),
    (53, "SMIMEA"),
    (55, "HIP"),
    (59, "CDS"),
    (60, "CDNSKEY"),
    (61, "OPENPGPKEY"),
    (62, "CSYNC"),
    (63, "ZONEMD"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (99, "SPF"),
    (104, "NID"),
    (105, "L32"),
    (106, "L64"),
    (107, "LP"),
    (108, "EUI48"),
    (109, "EUI64"),
    (249, "TKEY"),
    (250, "TSIG"),
    (251, "IXFR"),
    (252, "AXFR"),
    (253, "MAILB"),
    (254, "MAILA"),
    (255, "ANY"),
    (256, "URI"),
    (257, "CAA"),
    (32768, "TA"),
    (32769, "DLV"),
];

impl RType {
    pub const A: RType = RType(1);
    pub const NS: RType = RType(2);
    pub const CNAME: RType = RType(5);
    pub const SOA: RType = RType(6);
    pub const MB: RType = RType(7);
    pub const MG: RType = RType(8);
    pub const MR: RType = RType(9);
    pub const NULL: RType = RType(10);
    pub const PTR: RType = RType(12);
    pub const HINFO: RType = RType(13);
    pub const MINFO: RType = RType(14);
    pub const MX: RType = RType(15);
    pub const TXT: RType = RType(16);
    pub const RP: RType = RType(17);
    pub const AFSDB: RType = RType(18);
    pub const X25: RType = RType(19);
    pub const ISDN: RType = RType(20);
    pub const RT: RType = RType(21);
    pub const PX: RType = RType(26);
    pub const AAAA: RType = RType(28);
    pub const LOC: RType = RType(29);
    pub const SRV: RType = RType(33);
    pub const NAPTR: RType = RType(35);
    pub const KX: RType = RType(36);
    pub const CERT: RType = RType(37);
    pub const DNAME: RType = RType(39);
    pub const OPT: RType = RType(41);
    pub const DS: RType = RType(43);
    pub const SSHFP: RType = RType(44);
    pub const RRSIG: RType = RType(46);
    pub const NSEC: RType = RType(47);
    pub const DNSKEY: RType = RType(48);
    pub const DHCID: RType = RType(49);
    pub const NSEC3: RType = RType(50);
    pub const NSEC3PARAM: RType = RType(51);
    pub const TLSA: RType = RType(52);
    pub const SMIMEA: RType = RType(53);
    pub const CDS: RType = RType(59);
    pub const CDNSKEY: RType = RType(60);
    pub const OPENPGPKEY: RType = RType(61);
    pub const CSYNC: RType = RType(62);
    pub const ZONEMD: RType = RType(63);
    pub const SVCB: RType = RType(64);
    pub const HTTPS: RType = RType(65);
    pub const SPF: RType = RType(99);
    pub const NID: RType = RType(104);
    pub const L32: RType = RType(105);
    pub const L64: RType = RType(106);
    pub const LP: RType = RType(107);
    pub const EUI48: RType = RType(108);
    pub const EUI64: RType = RType(109);
    pub const TSIG: RType = RType(250);
    pub const ANY: RType = RType(255);
    pub const URI: RType = RType(256);
    pub const CAA: RType = RType(257);

    /// The mnemonic, or `TYPEnnn` (RFC 3597 §5).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match RTYPE_NAMES.binary_search_by_key(&self.0, |&(n, _)| n) {
            Ok(at) => RTYPE_NAMES.get(at).map_or("", |&(_, s)| s).into(),
            Err(_) => format!("TYPE{}", self.0).into(),
        }
    }
}

impl Class {
    pub const IN: Class = Class(1);
    pub const CH: Class = Class(3);
    pub const HS: Class = Class(4);
    pub const NONE: Class = Class(254);
    pub const ANY: Class = Class(255);

    /// The mnemonic, or `CLASSnnn` (RFC 3597 §5).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self.0 {
            1 => "IN".into(),
            3 => "CH".into(),
            4 => "HS".into(),
            254 => "NONE".into(),
            255 => "ANY".into(),
            n => format!("CLASS{n}").into(),
        }
    }
}

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

/// Decodes `rd` (exactly the RDATA, a slice of `msg`) as `rtype`. The RDATA must be
/// consumed whole; running out inside it is `RdataLength`, not `Truncated`.
fn parse_rdata<'a>(
    msg: &'a [u8],
    rd: &'a [u8],
    rtype: RType,
    class: Class,
) -> Result<RData<'a>, nom::Err<WireError<'a>>> {
    // RFC 2136 deletes and prerequisites; OPT's CLASS is a size, not a class.
    if rd.is_empty() && (class == Class::ANY || class == Class::NONE) && rtype != RType::OPT {
        return Ok(RData::Opaque(rd));
    }
    let name = |i| parse_name(msg, i);
    let parsed: PResult<'a, RData<'a>> = match rtype {
        RType::A => take(4usize)
            .map(|b: &[u8]| RData::A(Ipv4Addr::from(octets::<4>(b))))
            .parse_complete(rd),
        RType::AAAA => take(16usize)
            .map(|b: &[u8]| RData::Aaaa(Ipv6Addr::from(octets::<16>(b))))
            .parse_complete(rd),
        RType::NS => name(rd).map(|(i, n)| (i, RData::Ns(n))),
        RType::CNAME => name(rd).map(|(i, n)| (i, RData::Cname(n))),
        RType::PTR => name(rd).map(|(i, n)| (i, RData::Ptr(n))),
        RType::DNAME => name(rd).map(|(i, n)| (i, RData::Dname(n))),
        RType::MB | RType::MG | RType::MR => name(rd).map(|(i, n)| (i, RData::Mailbox(n))),
        RType::MINFO => (name, name)
            .map(|(rmailbx, emailbx)| RData::Minfo(Box::new(Minfo { rmailbx, emailbx })))
            .parse_complete(rd),
        RType::RP => (name, name)
            .map(|(mbox, txt)| RData::Rp(Box::new(Rp { mbox, txt })))
            .parse_complete(rd),
        RType::AFSDB | RType::RT => (be_u16, name)
            .map(|(preference, host)| RData::PrefName { preference, host })
            .parse_complete(rd),
        RType::PX => (be_u16, name, name)
            .map(|(preference, map822, mapx400)| {
                RData::Px(Box::new(Px {
                    preference,
                    map822,
                    mapx400,
                }))
            })
            .parse_complete(rd),
        RType::NAPTR => parse_naptr(msg, rd),
        RType::MX => parse_mx(msg, rd),
        RType::TXT => parse_txt(rd),
        RType::SOA => parse_soa(msg, rd),
        RType::SRV => parse_srv(msg, rd),
        RType::CAA => parse_caa(rd),
        RType::OPT => parse_options(rd).map(|(i, o)| (i, RData::Opt(o))),
        _ => take(rd.len()).map(RData::Opaque).parse_complete(rd),
    };
    let (rest, rdata) = parsed.map_err(|e| {
        e.map(|w| match w.kind {
            ErrorKind::Truncated if within(rd, w.input) => {
                WireError::new(w.input, ErrorKind::RdataLength)
            }
            _ => w,
        })
    })?;
    if !rest.is_empty() {
        return Err(nom::Err::Error(WireError::new(
            rest,
            ErrorKind::RdataLength,
        )));
    }
    Ok(rdata)
}

/// True if `inner` starts inside `outer` or just past its end.
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i <= o + outer.len()
}

/// Copies a slice that `take(N)` guarantees has length N into an array.
fn octets<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, i) in out.iter_mut().zip(b) {
        *o = *i;
    }
    out
}

fn parse_mx<'a>(msg: &'a [u8], i: &'a [u8]) -> PResult<'a, RData<'a>> {
    let (i, preference) = be_u16(i)?;
    let (i, exchange) = parse_name(msg, i)?;
    Ok((
        i,
        RData::Mx {
            preference,
            exchange,
        },
    ))
}

fn parse_txt(i: &[u8]) -> PResult<'_, RData<'_>> {
    let (i, strings) = many0(length_data(octet)).parse_complete(i)?;
    if strings.is_empty() {
        return fail(i, ErrorKind::RdataLength);
    }
    Ok((i, RData::Txt(strings)))
}

fn parse_soa<'a>(msg: &'a [u8], i: &'a [u8]) -> PResult<'a, RData<'a>> {
    let (i, mname) = parse_name(msg, i)?;
    let (i, rname) = parse_name(msg, i)?;
    let (i, serial) = be_u32(i)?;
    let (i, refresh) = be_u32(i)?;
    let (i, retry) = be_u32(i)?;
    let (i, expire) = be_u32(i)?;
    let (i, minimum) = be_u32(i)?;
    let soa = Soa {
        mname,
        rname,
        serial,
        refresh,
        retry,
        expire,
        minimum,
    };
    Ok((i, RData::Soa(Box::new(soa))))
}

fn parse_srv<'a>(msg: &'a [u8], i: &'a [u8]) -> PResult<'a, RData<'a>> {
    let (i, priority) = be_u16(i)?;
    let (i, weight) = be_u16(i)?;
    let (i, port) = be_u16(i)?;
    let (i, target) = parse_name(msg, i)?;
    let srv = RData::Srv {
        priority,
        weight,
        port,
        target,
    };
    Ok((i, srv))
}

fn parse_naptr<'a>(msg: &'a [u8], i: &'a [u8]) -> PResult<'a, RData<'a>> {
    let (i, order) = be_u16(i)?;
    let (i, preference) = be_u16(i)?;
    let (i, flags) = length_data(octet).parse_complete(i)?;
    let (i, services) = length_data(octet).parse_complete(i)?;
    let (i, regexp) = length_data(octet).parse_complete(i)?;
    let (i, replacement) = parse_name(msg, i)?;
    let naptr = Naptr {
        order,
        preference,
        flags,
        services,
        regexp,
        replacement,
    };
    Ok((i, RData::Naptr(Box::new(naptr))))
}

fn parse_caa(i: &[u8]) -> PResult<'_, RData<'_>> {
    let (i, flags) = octet(i)?;
    let at_tag = i;
    let (i, tag) = length_data(octet).parse_complete(i)?;
    if tag.is_empty() || tag.len() > 15 || !tag.iter().all(u8::is_ascii_alphanumeric) {
        return fail(at_tag, ErrorKind::BadRdata);
    }
    let (i, value) = take(i.len())(i)?;
    Ok((i, RData::Caa { flags, tag, value }))
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
