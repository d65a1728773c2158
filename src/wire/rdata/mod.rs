//! Typed RDATA decoded on demand: the types [`super::parse_message`] keeps opaque
//! (RFC 3597), decoded for display (`dnsfwd decode`), never for forwarding.
//!
//! The forwarder relays these RDATA as the octets it received (`RData::Opaque`), byte
//! for byte, and pays nothing to parse them; a record of a known type with malformed
//! contents is relayed all the same (it is the resolver's to judge, RFC 3597 §2).
//! [`parse_typed`] reads one RDATA in full and fails, naming the type and the field,
//! on anything its RFC forbids; [`Typed::write`] writes it back: `write(parse(b)) == b`
//! for every accepted `b`.
//!
//! Names inside these types are never compressed. RFC 3597 §4: "Servers MUST NOT
//! compress domain names embedded in the RDATA of types that are class-specific or not
//! well-known", and RFC 4034 §3.1.7 and §4.1.1 (RRSIG signer, NSEC next name), RFC 9460
//! §2.2 (SVCB target) forbid it by name. So a pointer there is an error on read (RFC 3597
//! §4 lists no type of this module among those receivers must decompress), and the
//! writer never compresses them.
use std::net::Ipv4Addr;

use nom::bytes::complete::take;
use nom::multi::{length_data, many0};
use nom::number::complete::{be_u16, u8 as octet};
use nom::Parser;

use super::{fail, parse_name, ErrorKind, Name, PResult, RType, Writer};

mod dnssec;
mod loc;
mod svcb;

pub use dnssec::{Dnskey, Ds, Nsec3, Nsec3param, Rrsig, TypeBitmap};
pub use loc::{Loc, LOC_EQUATOR};
pub use svcb::{SvcParam, Svcb};

/// What is wrong with a typed RDATA ([`ErrorKind::BadField`]). One octet, so that
/// [`ErrorKind`] and every parser's error stay small on the forwarding path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    CompressedName,
    StringCount,
    BitmapOrder,
    BitmapEmptyWindow,
    BitmapWindowLength,
    BitmapTrailingZero,
    EmptySignature,
    DsDigestLength,
    EmptyNextHashed,
    ZonemdDigestLength,
    SvcKeyDuplicate,
    SvcKeyOrder,
    MandatoryShape,
    AlpnEmpty,
    AlpnIdEmpty,
    AlpnIdLength,
    ValueNotEmpty,
    PortLength,
    Ipv4HintLength,
    EchEmpty,
    Ipv6HintLength,
    MandatorySelf,
    MandatoryOrder,
    MandatoryMissing,
    LocVersion,
    LocPrecision,
    LocRange,
}

impl Fault {
    /// The fault in words.
    pub fn text(self) -> &'static str {
        match self {
            Fault::CompressedName => "compressed name where this type forbids compression",
            Fault::StringCount => "wrong number of character-strings",
            Fault::BitmapOrder => "type bitmap windows out of order",
            Fault::BitmapEmptyWindow => "empty type bitmap window",
            Fault::BitmapWindowLength => "type bitmap window over 32 octets",
            Fault::BitmapTrailingZero => "type bitmap ends in a zero octet",
            Fault::EmptySignature => "empty signature",
            Fault::DsDigestLength => "digest length does not match its digest type",
            Fault::EmptyNextHashed => "empty next hashed owner name",
            Fault::ZonemdDigestLength => "digest length does not match its hash algorithm",
            Fault::SvcKeyDuplicate => "duplicate SvcParamKey",
            Fault::SvcKeyOrder => "SvcParamKeys out of order",
            Fault::MandatoryShape => "mandatory is not a list of keys",
            Fault::AlpnEmpty => "empty alpn",
            Fault::AlpnIdEmpty => "empty alpn-id",
            Fault::AlpnIdLength => "alpn-id runs past its value",
            Fault::ValueNotEmpty => "value not empty for a key that takes none",
            Fault::PortLength => "port is not 2 octets",
            Fault::Ipv4HintLength => "ipv4hint is not a list of IPv4 addresses",
            Fault::EchEmpty => "empty ech",
            Fault::Ipv6HintLength => "ipv6hint is not a list of IPv6 addresses",
            Fault::MandatorySelf => "mandatory lists itself",
            Fault::MandatoryOrder => "mandatory keys out of order",
            Fault::MandatoryMissing => "mandatory lists a key that is not present",
            Fault::LocVersion => "LOC version is not 0",
            Fault::LocPrecision => "size or precision digit over 9",
            Fault::LocRange => "latitude or longitude out of range",
        }
    }
}

/// A decoded RDATA of one of the types in [`parse_typed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed<'a> {
    /// DNSKEY and CDNSKEY (RFC 4034 §2.1, RFC 7344 §3.2).
    Dnskey(Dnskey<'a>),
    Rrsig(Box<Rrsig<'a>>),
    /// DS and CDS (RFC 4034 §5.1, RFC 7344 §3.1).
    Ds(Ds<'a>),
    /// RFC 4034 §4.1.
    Nsec {
        next: Name,
        types: TypeBitmap<'a>,
    },
    Nsec3(Box<Nsec3<'a>>),
    Nsec3param(Nsec3param<'a>),
    /// SVCB and HTTPS (RFC 9460 §2.2).
    Svcb(Svcb<'a>),
    /// RFC 4255 §3.1.
    Sshfp {
        algorithm: u8,
        fp_type: u8,
        fingerprint: &'a [u8],
    },
    /// TLSA (RFC 6698 §2.1) and SMIMEA (RFC 8162 §2).
    Tlsa {
        usage: u8,
        selector: u8,
        matching_type: u8,
        data: &'a [u8],
    },
    /// RFC 8976 §2.2.
    Zonemd {
        serial: u32,
        scheme: u8,
        hash_algorithm: u8,
        digest: &'a [u8],
    },
    /// RFC 7477 §2.1.
    Csync {
        serial: u32,
        flags: u16,
        types: TypeBitmap<'a>,
    },
    Loc(Loc),
    /// RFC 7553 §4.
    Uri {
        priority: u16,
        weight: u16,
        target: &'a [u8],
    },
    /// RFC 4398 §2.
    Cert {
        cert_type: u16,
        key_tag: u16,
        algorithm: u8,
        certificate: &'a [u8],
    },
    /// OPENPGPKEY (RFC 7929 §2.1) and DHCID (RFC 4701 §3): one blob, shown in base64.
    Blob(&'a [u8]),
    /// Character-strings: HINFO (2, RFC 1035 §3.3.2), X25 (1) and ISDN (1 or 2,
    /// RFC 1183 §3.1-2), SPF (1 or more, RFC 7208 §3.1, as TXT).
    Strings(Vec<&'a [u8]>),
    /// KX (RFC 2230 §3.1) and LP (RFC 6742 §2.4): a preference and a name.
    PrefName {
        preference: u16,
        name: Name,
    },
    /// NID and L64 (RFC 6742 §2.1, §2.3): a preference and 64 bits.
    Locator64 {
        preference: u16,
        locator: [u8; 8],
    },
    /// L32 (RFC 6742 §2.2).
    L32 {
        preference: u16,
        locator: Ipv4Addr,
    },
    /// RFC 7043 §3.1.
    Eui48([u8; 6]),
    /// RFC 7043 §4.1.
    Eui64([u8; 8]),
}

/// Why an RDATA of a known type did not decode: the type, the offset inside the RDATA,
/// and what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdataError {
    pub rtype: RType,
    /// Offset from the first octet of the RDATA.
    pub offset: usize,
    pub kind: ErrorKind,
}

impl std::fmt::Display for RdataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "malformed {} rdata: {} (rdata offset {})",
            self.rtype.name(),
            self.kind.describe(),
            self.offset
        )
    }
}

impl std::error::Error for RdataError {}

type Parser1 = for<'a> fn(&'a [u8]) -> PResult<'a, Typed<'a>>;

/// The parser for `rtype`, if it is one of ours.
fn parser_for(rtype: RType) -> Option<Parser1> {
    Some(match rtype {
        RType::DNSKEY | RType::CDNSKEY => dnssec::parse_dnskey,
        RType::RRSIG => dnssec::parse_rrsig,
        RType::DS | RType::CDS => dnssec::parse_ds,
        RType::NSEC => dnssec::parse_nsec,
        RType::NSEC3 => dnssec::parse_nsec3,
        RType::NSEC3PARAM => dnssec::parse_nsec3param,
        RType::ZONEMD => dnssec::parse_zonemd,
        RType::CSYNC => dnssec::parse_csync,
        RType::SVCB | RType::HTTPS => svcb::parse_svcb,
        RType::LOC => loc::parse_loc,
        RType::SSHFP => parse_sshfp,
        RType::TLSA | RType::SMIMEA => parse_tlsa,
        RType::URI => parse_uri,
        RType::CERT => parse_cert,
        RType::OPENPGPKEY | RType::DHCID => |i| Ok((&[], Typed::Blob(i))),
        RType::HINFO => |i| parse_strings(i, 2, 2),
        RType::X25 => |i| parse_strings(i, 1, 1),
        RType::ISDN => |i| parse_strings(i, 1, 2),
        RType::SPF => |i| parse_strings(i, 1, usize::MAX),
        RType::KX | RType::LP => parse_pref_name,
        RType::NID | RType::L64 => parse_locator64,
        RType::L32 => parse_l32,
        RType::EUI48 => |i| take(6usize).map(|b| Typed::Eui48(octets(b))).parse(i),
        RType::EUI64 => |i| take(8usize).map(|b| Typed::Eui64(octets(b))).parse(i),
        _ => return None,
    })
}

/// Whether [`parse_typed`] knows `rtype`.
pub fn is_typed(rtype: RType) -> bool {
    parser_for(rtype).is_some()
}

/// Decodes `rd`, the whole RDATA of a record of type `rtype`; `None` if the type is not
/// one of this module's (see [`Typed`]). The RDATA must be consumed exactly.
pub fn parse_typed(rtype: RType, rd: &[u8]) -> Option<Result<Typed<'_>, RdataError>> {
    let parser = parser_for(rtype)?;
    let error = |at: &[u8], kind| RdataError {
        rtype,
        offset: super::offset_in(rd, at),
        kind,
    };
    Some(match parser(rd) {
        Ok(([], typed)) => Ok(typed),
        Ok((rest, _)) => Err(error(rest, ErrorKind::RdataLength)),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(error(
            e.input,
            match e.kind {
                ErrorKind::Truncated => ErrorKind::RdataLength,
                ErrorKind::BadPointer { .. } => ErrorKind::BadField(Fault::CompressedName),
                k => k,
            },
        )),
        Err(nom::Err::Incomplete(_)) => Err(error(&[], ErrorKind::RdataLength)),
    })
}

/// A name that must not be compressed: read against itself, so that any pointer, which
/// can only point before the name's own start, is refused.
pub(crate) fn plain_name(i: &[u8]) -> PResult<'_, Name> {
    parse_name(i, i)
}

/// Copies a slice that `take(N)` guarantees has length N into an array.
fn octets<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, i) in out.iter_mut().zip(b) {
        *o = *i;
    }
    out
}

/// The rest of the RDATA.
fn rest(i: &[u8]) -> PResult<'_, &[u8]> {
    take(i.len()).parse(i)
}

fn parse_sshfp(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, algorithm) = octet(i)?;
    let (i, fp_type) = octet(i)?;
    let (i, fingerprint) = rest(i)?;
    let typed = Typed::Sshfp {
        algorithm,
        fp_type,
        fingerprint,
    };
    Ok((i, typed))
}

fn parse_tlsa(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, usage) = octet(i)?;
    let (i, selector) = octet(i)?;
    let (i, matching_type) = octet(i)?;
    let (i, data) = rest(i)?;
    let typed = Typed::Tlsa {
        usage,
        selector,
        matching_type,
        data,
    };
    Ok((i, typed))
}

fn parse_uri(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, priority) = be_u16(i)?;
    let (i, weight) = be_u16(i)?;
    let (i, target) = rest(i)?;
    let typed = Typed::Uri {
        priority,
        weight,
        target,
    };
    Ok((i, typed))
}

fn parse_cert(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, cert_type) = be_u16(i)?;
    let (i, key_tag) = be_u16(i)?;
    let (i, algorithm) = octet(i)?;
    let (i, certificate) = rest(i)?;
    let typed = Typed::Cert {
        cert_type,
        key_tag,
        algorithm,
        certificate,
    };
    Ok((i, typed))
}

/// Between `min` and `max` character-strings filling the RDATA.
fn parse_strings(i: &[u8], min: usize, max: usize) -> PResult<'_, Typed<'_>> {
    let (rest, strings) = many0(length_data(octet)).parse(i)?;
    if !rest.is_empty() {
        // A length octet that runs past the end.
        return fail(rest, ErrorKind::RdataLength);
    }
    if strings.len() < min || strings.len() > max {
        return fail(i, ErrorKind::BadField(Fault::StringCount));
    }
    Ok((rest, Typed::Strings(strings)))
}

fn parse_pref_name(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, preference) = be_u16(i)?;
    let (i, name) = plain_name(i)?;
    Ok((i, Typed::PrefName { preference, name }))
}

fn parse_locator64(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, preference) = be_u16(i)?;
    let (i, locator) = take(8usize).map(octets).parse(i)?;
    Ok((
        i,
        Typed::Locator64 {
            preference,
            locator,
        },
    ))
}

fn parse_l32(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, preference) = be_u16(i)?;
    let (i, locator) = take(4usize)
        .map(|b| Ipv4Addr::from(octets::<4>(b)))
        .parse(i)?;
    Ok((
        i,
        Typed::L32 {
            preference,
            locator,
        },
    ))
}

impl Typed<'_> {
    /// Appends the RDATA (without RDLENGTH); names uncompressed. False if it does not fit.
    pub fn write(&self, w: &mut Writer) -> bool {
        match self {
            Typed::Dnskey(k) => k.write(w),
            Typed::Rrsig(s) => s.write(w),
            Typed::Ds(d) => d.write(w),
            Typed::Nsec { next, types } => w.name(next, false) && w.bytes(types.as_wire()),
            Typed::Nsec3(n) => n.write(w),
            Typed::Nsec3param(n) => n.write(w),
            Typed::Svcb(s) => s.write(w),
            Typed::Sshfp {
                algorithm,
                fp_type,
                fingerprint,
            } => w.u8(*algorithm) && w.u8(*fp_type) && w.bytes(fingerprint),
            Typed::Tlsa {
                usage,
                selector,
                matching_type,
                data,
            } => w.u8(*usage) && w.u8(*selector) && w.u8(*matching_type) && w.bytes(data),
            Typed::Zonemd {
                serial,
                scheme,
                hash_algorithm,
                digest,
            } => w.u32(*serial) && w.u8(*scheme) && w.u8(*hash_algorithm) && w.bytes(digest),
            Typed::Csync {
                serial,
                flags,
                types,
            } => w.u32(*serial) && w.u16(*flags) && w.bytes(types.as_wire()),
            Typed::Loc(l) => l.write(w),
            Typed::Uri {
                priority,
                weight,
                target,
            } => w.u16(*priority) && w.u16(*weight) && w.bytes(target),
            Typed::Cert {
                cert_type,
                key_tag,
                algorithm,
                certificate,
            } => w.u16(*cert_type) && w.u16(*key_tag) && w.u8(*algorithm) && w.bytes(certificate),
            Typed::Blob(b) => w.bytes(b),
            Typed::Strings(strings) => strings.iter().all(|s| w.char_string(s)),
            Typed::PrefName { preference, name } => w.u16(*preference) && w.name(name, false),
            Typed::Locator64 {
                preference,
                locator,
            } => w.u16(*preference) && w.bytes(locator),
            Typed::L32 {
                preference,
                locator,
            } => w.u16(*preference) && w.bytes(&locator.octets()),
            Typed::Eui48(a) => w.bytes(a),
            Typed::Eui64(a) => w.bytes(a),
        }
    }

    /// The RDATA in wire form (names uncompressed).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut w = Writer::new(super::MAX_MESSAGE_LEN);
        self.write(&mut w);
        w.into_bytes()
    }
}

#[cfg(test)]
mod tests;
