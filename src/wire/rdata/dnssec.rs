//! DNSSEC RDATA: DNSKEY/CDNSKEY, RRSIG, DS/CDS (RFC 4034, RFC 7344), NSEC and its type
//! bitmap (RFC 4034 §4.1.2), NSEC3 and NSEC3PARAM (RFC 5155), and the two types that
//! share their shapes: ZONEMD (RFC 8976, a digest) and CSYNC (RFC 7477, a type bitmap).
use nom::bytes::complete::take;
use nom::multi::length_data;
use nom::number::complete::{be_u16, be_u32, u8 as octet};
use nom::Parser;

use super::{fail, plain_name, rest, ErrorKind, Fault, Name, PResult, RType, Typed, Writer};

/// RFC 4034 §2.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnskey<'a> {
    pub flags: u16,
    /// Valid values: 3 (RFC 4034 §2.1.2); others are shown, not refused.
    pub protocol: u8,
    pub algorithm: u8,
    pub public_key: &'a [u8],
}

/// RFC 4034 §3.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrsig<'a> {
    pub type_covered: RType,
    pub algorithm: u8,
    pub labels: u8,
    pub original_ttl: u32,
    /// Seconds since 1970 modulo 2^32 (RFC 4034 §3.1.5).
    pub expiration: u32,
    pub inception: u32,
    pub key_tag: u16,
    pub signer: Name,
    /// Valid values: at least one octet.
    pub signature: &'a [u8],
}

/// RFC 4034 §5.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ds<'a> {
    pub key_tag: u16,
    pub algorithm: u8,
    pub digest_type: u8,
    /// Valid values: as long as `digest_type` says when it is a known one (SHA-1 20,
    /// SHA-256 32, GOST 32, SHA-384 48 octets).
    pub digest: &'a [u8],
}

/// RFC 5155 §3.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nsec3<'a> {
    pub hash_algorithm: u8,
    pub flags: u8,
    pub iterations: u16,
    pub salt: &'a [u8],
    /// Valid values: 1..=255 octets.
    pub next_hashed: &'a [u8],
    pub types: TypeBitmap<'a>,
}

/// RFC 5155 §4.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nsec3param<'a> {
    pub hash_algorithm: u8,
    pub flags: u8,
    pub iterations: u16,
    pub salt: &'a [u8],
}

/// The type bitmap of NSEC, NSEC3 and CSYNC (RFC 4034 §4.1.2), kept in wire form.
/// Valid values: windows in strictly increasing order, each with a bitmap of 1..=32
/// octets whose last octet is not zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeBitmap<'a>(&'a [u8]);

impl<'a> TypeBitmap<'a> {
    pub fn as_wire(&self) -> &'a [u8] {
        self.0
    }

    /// The types present, in increasing order.
    pub fn types(&self) -> Vec<RType> {
        let mut out = Vec::new();
        let mut i = self.0;
        while let Some((&[window, len], rest)) = i.split_first_chunk::<2>() {
            let Some((bits, after)) = rest.split_at_checked(usize::from(len)) else {
                break;
            };
            for (n, &b) in bits.iter().enumerate() {
                for bit in 0..8 {
                    if b & (0x80 >> bit) != 0 {
                        let low = n * 8 + bit;
                        out.push(RType(u16::from(window) << 8 | low as u16));
                    }
                }
            }
            i = after;
        }
        out
    }
}

/// A type bitmap filling the rest of the RDATA (RFC 4034 §4.1.2: "Blocks with no types
/// present MUST NOT be included. Trailing zero octets in the bitmap MUST be omitted",
/// windows in increasing order). Empty is allowed.
pub(crate) fn parse_bitmap(i: &[u8]) -> PResult<'_, TypeBitmap<'_>> {
    let all = i;
    let mut i = i;
    let mut last: Option<u8> = None;
    while !i.is_empty() {
        let at = i;
        let (rest, window) = octet(i)?;
        let (rest, bits) = length_data(octet).parse(rest)?;
        if last.is_some_and(|l| window <= l) {
            return fail(at, ErrorKind::BadField(Fault::BitmapOrder));
        }
        match bits.last() {
            None => return fail(at, ErrorKind::BadField(Fault::BitmapEmptyWindow)),
            Some(_) if bits.len() > 32 => {
                return fail(at, ErrorKind::BadField(Fault::BitmapWindowLength))
            }
            Some(0) => return fail(at, ErrorKind::BadField(Fault::BitmapTrailingZero)),
            Some(_) => {}
        }
        last = Some(window);
        i = rest;
    }
    Ok((i, TypeBitmap(all)))
}

pub(crate) fn parse_dnskey(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, flags) = be_u16(i)?;
    let (i, protocol) = octet(i)?;
    let (i, algorithm) = octet(i)?;
    let (i, public_key) = rest(i)?;
    let key = Dnskey {
        flags,
        protocol,
        algorithm,
        public_key,
    };
    Ok((i, Typed::Dnskey(key)))
}

pub(crate) fn parse_rrsig(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, type_covered) = be_u16(i)?;
    let (i, algorithm) = octet(i)?;
    let (i, labels) = octet(i)?;
    let (i, original_ttl) = be_u32(i)?;
    let (i, expiration) = be_u32(i)?;
    let (i, inception) = be_u32(i)?;
    let (i, key_tag) = be_u16(i)?;
    let (i, signer) = plain_name(i)?;
    if i.is_empty() {
        return fail(i, ErrorKind::BadField(Fault::EmptySignature));
    }
    let (i, signature) = rest(i)?;
    let sig = Rrsig {
        type_covered: RType(type_covered),
        algorithm,
        labels,
        original_ttl,
        expiration,
        inception,
        key_tag,
        signer,
        signature,
    };
    Ok((i, Typed::Rrsig(Box::new(sig))))
}

/// Octets of the digest types whose length is fixed (IANA "DS RR Type Digest
/// Algorithms"): SHA-1, SHA-256, GOST R 34.11-94, SHA-384.
fn digest_len(digest_type: u8) -> Option<usize> {
    match digest_type {
        1 => Some(20),
        2 | 3 => Some(32),
        4 => Some(48),
        _ => None,
    }
}

pub(crate) fn parse_ds(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, key_tag) = be_u16(i)?;
    let (i, algorithm) = octet(i)?;
    let (i, digest_type) = octet(i)?;
    if digest_len(digest_type).is_some_and(|n| n != i.len()) {
        return fail(i, ErrorKind::BadField(Fault::DsDigestLength));
    }
    let (i, digest) = rest(i)?;
    let ds = Ds {
        key_tag,
        algorithm,
        digest_type,
        digest,
    };
    Ok((i, Typed::Ds(ds)))
}

pub(crate) fn parse_nsec(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, next) = plain_name(i)?;
    let (i, types) = parse_bitmap(i)?;
    Ok((i, Typed::Nsec { next, types }))
}

pub(crate) fn parse_nsec3(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, hash_algorithm) = octet(i)?;
    let (i, flags) = octet(i)?;
    let (i, iterations) = be_u16(i)?;
    let (i, salt) = length_data(octet).parse(i)?;
    let at_hash = i;
    let (i, next_hashed) = length_data(octet).parse(i)?;
    if next_hashed.is_empty() {
        return fail(at_hash, ErrorKind::BadField(Fault::EmptyNextHashed));
    }
    let (i, types) = parse_bitmap(i)?;
    let n = Nsec3 {
        hash_algorithm,
        flags,
        iterations,
        salt,
        next_hashed,
        types,
    };
    Ok((i, Typed::Nsec3(Box::new(n))))
}

pub(crate) fn parse_nsec3param(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, hash_algorithm) = octet(i)?;
    let (i, flags) = octet(i)?;
    let (i, iterations) = be_u16(i)?;
    let (i, salt) = length_data(octet).parse(i)?;
    let n = Nsec3param {
        hash_algorithm,
        flags,
        iterations,
        salt,
    };
    Ok((i, Typed::Nsec3param(n)))
}

pub(crate) fn parse_zonemd(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, serial) = be_u32(i)?;
    let (i, scheme) = octet(i)?;
    let (i, hash_algorithm) = octet(i)?;
    // RFC 8976 §2.2.4: at least 12 octets; SHA-384 (1) and SHA-512 (2) have their own.
    let want = match hash_algorithm {
        1 => Some(48),
        2 => Some(64),
        _ => None,
    };
    if i.len() < 12 || want.is_some_and(|n| n != i.len()) {
        return fail(i, ErrorKind::BadField(Fault::ZonemdDigestLength));
    }
    let (i, digest) = take(i.len()).parse(i)?;
    let z = Typed::Zonemd {
        serial,
        scheme,
        hash_algorithm,
        digest,
    };
    Ok((i, z))
}

pub(crate) fn parse_csync(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, serial) = be_u32(i)?;
    let (i, flags) = be_u16(i)?;
    let (i, types) = parse_bitmap(i)?;
    let c = Typed::Csync {
        serial,
        flags,
        types,
    };
    Ok((i, c))
}

impl Dnskey<'_> {
    pub(crate) fn write(&self, w: &mut Writer) -> bool {
        w.u16(self.flags) && w.u8(self.protocol) && w.u8(self.algorithm) && w.bytes(self.public_key)
    }
}

impl Rrsig<'_> {
    pub(crate) fn write(&self, w: &mut Writer) -> bool {
        w.u16(self.type_covered.0)
            && w.u8(self.algorithm)
            && w.u8(self.labels)
            && w.u32(self.original_ttl)
            && w.u32(self.expiration)
            && w.u32(self.inception)
            && w.u16(self.key_tag)
            && w.name(&self.signer, false)
            && w.bytes(self.signature)
    }
}

impl Ds<'_> {
    pub(crate) fn write(&self, w: &mut Writer) -> bool {
        w.u16(self.key_tag)
            && w.u8(self.algorithm)
            && w.u8(self.digest_type)
            && w.bytes(self.digest)
    }
}

impl Nsec3<'_> {
    pub(crate) fn write(&self, w: &mut Writer) -> bool {
        w.u8(self.hash_algorithm)
            && w.u8(self.flags)
            && w.u16(self.iterations)
            && w.char_string(self.salt)
            && w.char_string(self.next_hashed)
            && w.bytes(self.types.as_wire())
    }
}

impl Nsec3param<'_> {
    pub(crate) fn write(&self, w: &mut Writer) -> bool {
        w.u8(self.hash_algorithm)
            && w.u8(self.flags)
            && w.u16(self.iterations)
            && w.char_string(self.salt)
    }
}
