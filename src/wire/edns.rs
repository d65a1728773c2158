//! EDNS(0): the OPT pseudo-record (RFC 6891 §6).
//!
//! On the wire OPT is a record in the additional section whose CLASS carries the
//! requestor's UDP payload size and whose TTL carries the extended RCODE, the version
//! and the flags:
//! ```text
//!   +0 (MSB)                            +1 (LSB)
//!   +---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+
//!   |         EXTENDED-RCODE        |            VERSION            |
//!   +---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+
//!   | DO|                           Z                               |
//!   +---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+
//! ```
//! [`crate::wire::Message`] keeps OPT as a record at its wire position (so messages
//! round-trip exactly); [`Edns`] is the decoded view of it.
use nom::multi::{length_data, many0};
use nom::number::complete::be_u16;
use nom::Parser;

use super::{fail, Class, ErrorKind, Name, PResult, RData, RType, Record};

/// One EDNS option: code and data, as sent (RFC 6891 §6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EdnsOption<'a> {
    pub code: u16,
    pub data: &'a [u8],
}

impl EdnsOption<'_> {
    pub const NSID: u16 = 3;
    pub const CLIENT_SUBNET: u16 = 8;
    /// RFC 7314.
    pub const EXPIRE: u16 = 9;
    pub const COOKIE: u16 = 10;
    /// RFC 7828.
    pub const TCP_KEEPALIVE: u16 = 11;
    pub const PADDING: u16 = 12;
    /// RFC 7901.
    pub const CHAIN: u16 = 13;
    /// RFC 8145.
    pub const KEY_TAG: u16 = 14;
    pub const EDE: u16 = 15;
    /// draft-bellis-dnsop-edns-tags.
    pub const CLIENT_TAG: u16 = 16;
    pub const SERVER_TAG: u16 = 17;

    /// The mnemonic of the option code, if it has one.
    pub fn name(&self) -> Option<&'static str> {
        Some(match self.code {
            3 => "NSID",
            5 => "DAU",
            6 => "DHU",
            7 => "N3U",
            8 => "ECS",
            9 => "EXPIRE",
            10 => "COOKIE",
            11 => "KEEPALIVE",
            12 => "PADDING",
            13 => "CHAIN",
            14 => "KEY-TAG",
            15 => "EDE",
            _ => return None,
        })
    }
}

/// The decoded OPT record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Edns<'a> {
    /// The sender's UDP payload size. Values below 512 are treated as 512 (RFC 6891 §6.2.3)
    /// by [`Edns::max_udp_size`]; this field keeps what was sent.
    pub udp_size: u16,
    /// The upper 8 bits of the 12-bit RCODE.
    pub ext_rcode: u8,
    pub version: u8,
    /// DNSSEC OK (RFC 3225).
    pub dnssec_ok: bool,
    /// The 15 remaining flag bits, kept so that they round-trip. Valid values: 0..=0x7FFF.
    pub z: u16,
    pub options: Vec<EdnsOption<'a>>,
}

impl<'a> Edns<'a> {
    /// Reads the EDNS fields of an OPT record; `None` if `r` is not one.
    pub fn from_record(r: &Record<'a>) -> Option<Edns<'a>> {
        if r.rtype != RType::OPT {
            return None;
        }
        let options = match &r.rdata {
            RData::Opt(o) => o.clone(),
            _ => Vec::new(),
        };
        Some(Edns {
            udp_size: r.class.0,
            ext_rcode: (r.ttl >> 24) as u8,
            version: (r.ttl >> 16) as u8,
            dnssec_ok: r.ttl & 0x8000 != 0,
            z: (r.ttl & 0x7FFF) as u16,
            options,
        })
    }

    /// The OPT record carrying these fields.
    pub fn to_record(&self) -> Record<'a> {
        Record {
            name: Name::root(),
            rtype: RType::OPT,
            class: Class(self.udp_size),
            ttl: self.ttl(),
            rdata: RData::Opt(self.options.clone()),
        }
    }

    /// The TTL word of the OPT record.
    pub fn ttl(&self) -> u32 {
        u32::from(self.ext_rcode) << 24
            | u32::from(self.version) << 16
            | u32::from(self.dnssec_ok) << 15
            | u32::from(self.z & 0x7FFF)
    }

    /// The largest UDP message the sender accepts: its advertised size, but never less
    /// than 512 (RFC 6891 §6.2.3).
    pub fn max_udp_size(&self) -> usize {
        usize::from(self.udp_size).max(super::CLASSIC_UDP_LEN)
    }

    /// Octets the OPT record takes on the wire.
    pub fn wire_len(&self) -> usize {
        11 + self.options.iter().map(|o| 4 + o.data.len()).sum::<usize>()
    }
}

/// Parses the option TLVs that make up an OPT record's RDATA; they must fill it exactly.
pub(crate) fn parse_options(i: &[u8]) -> PResult<'_, Vec<EdnsOption<'_>>> {
    let option = (be_u16, length_data(be_u16)).map(|(code, data)| EdnsOption { code, data });
    let (rest, options) = many0(option).parse_complete(i)?;
    if !rest.is_empty() {
        return fail(rest, ErrorKind::BadEdnsOption);
    }
    Ok((rest, options))
}

/// Appends an OPT record of ours to the message `out` and counts it in ARCOUNT: root
/// owner, TYPE 41, CLASS = our UDP size, the extended RCODE, version 0, DO as given, and
/// `options` (already encoded) as its RDATA (RFC 6891 §6.1.2). `out` must hold at least
/// a header.
pub fn push_opt(out: &mut Vec<u8>, ext_rcode: u8, dnssec_ok: bool, options: &[u8]) {
    let [hi, lo] = super::OUR_UDP_SIZE.to_be_bytes();
    let dnssec = u8::from(dnssec_ok) << 7;
    let [l0, l1] = (options.len().min(0xFFFF) as u16).to_be_bytes();
    out.extend_from_slice(&[0, 0, 41, hi, lo, ext_rcode, 0, dnssec, 0, l0, l1]);
    out.extend_from_slice(options);
    if let Some(&mut [hi, lo]) = out.get_mut(10..12) {
        let n = u16::from_be_bytes([hi, lo]).saturating_add(1);
        if let Some(ar) = out.get_mut(10..12) {
            ar.copy_from_slice(&n.to_be_bytes());
        }
    }
}
