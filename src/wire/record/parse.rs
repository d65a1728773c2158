//! Decoding the RDATA of the types [`RData`] lists: each must consume its RDATA whole,
//! and names inside it resolve against the whole message.
use std::net::{Ipv4Addr, Ipv6Addr};

use nom::bytes::complete::take;
use nom::multi::{length_data, many0};
use nom::number::complete::{be_u16, be_u32, u8 as octet};
use nom::Parser;

use super::{Class, Minfo, Naptr, Px, RData, RType, Rp, Soa};
use crate::wire::edns::parse_options;
use crate::wire::{fail, parse_name, ErrorKind, PResult, WireError};

/// Decodes `rd` (exactly the RDATA, a slice of `msg`) as `rtype`. The RDATA must be
/// consumed whole; running out inside it is `RdataLength`, not `Truncated`.
///
/// The types it reads names of, and the fields around them, are [`super::NameLayout`]'s
/// (which the code that walks RDATA undecoded goes by); a test in `cache::overlap` holds
/// this decoder to it for every type.
pub(super) fn parse_rdata<'a>(
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
