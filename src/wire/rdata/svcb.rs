//! SVCB and HTTPS RDATA (RFC 9460 §2.2): priority, target name, SvcParams.
//!
//! What is checked (RFC 9460 §2.2: "SvcParamKeys SHALL appear in increasing numeric
//! order"; "Clients MUST consider an RR malformed if ... the SvcParamKeys are not in
//! strictly increasing numeric order", or a value does not have its key's wire format):
//! keys strictly increasing (so no duplicates); `mandatory` a non-empty list of keys
//! in strictly increasing order, without itself, each present in the record (§8);
//! `alpn` non-empty, of non-empty alpn-ids; `no-default-alpn` and `ohttp` empty; `port`
//! 2 octets; `ipv4hint`/`ipv6hint` a non-empty list of 4/16-octet addresses; `ech`
//! non-empty. `dohpath` (RFC 9461) and unknown keys may hold any octets.
use nom::multi::length_data;
use nom::number::complete::be_u16;
use nom::Parser;

use super::{fail, plain_name, ErrorKind, Fault, Name, PResult, Typed, Writer};

/// RFC 9460 §2.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svcb<'a> {
    /// 0: AliasMode; otherwise ServiceMode.
    pub priority: u16,
    pub target: Name,
    /// Valid values: keys strictly increasing, each value well-formed for its key.
    pub params: Vec<SvcParam<'a>>,
}

/// One SvcParam: key and value as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcParam<'a> {
    pub key: u16,
    pub value: &'a [u8],
}

impl SvcParam<'_> {
    pub const MANDATORY: u16 = 0;
    pub const ALPN: u16 = 1;
    pub const NO_DEFAULT_ALPN: u16 = 2;
    pub const PORT: u16 = 3;
    pub const IPV4HINT: u16 = 4;
    pub const ECH: u16 = 5;
    pub const IPV6HINT: u16 = 6;
    /// RFC 9461 §5.
    pub const DOHPATH: u16 = 7;
    /// RFC 9540 §4.
    pub const OHTTP: u16 = 8;

    /// The key's name (RFC 9460 §14.3.2), or `keyNNNNN`.
    pub fn key_name(key: u16) -> std::borrow::Cow<'static, str> {
        match key {
            0 => "mandatory".into(),
            1 => "alpn".into(),
            2 => "no-default-alpn".into(),
            3 => "port".into(),
            4 => "ipv4hint".into(),
            5 => "ech".into(),
            6 => "ipv6hint".into(),
            7 => "dohpath".into(),
            8 => "ohttp".into(),
            n => format!("key{n}").into(),
        }
    }
}

pub(crate) fn parse_svcb(i: &[u8]) -> PResult<'_, Typed<'_>> {
    let (i, priority) = be_u16(i)?;
    let (mut i, target) = plain_name(i)?;
    let mut params: Vec<SvcParam<'_>> = Vec::new();
    while !i.is_empty() {
        let at = i;
        let (rest, key) = be_u16(i)?;
        let (rest, value) = length_data(be_u16).parse(rest)?;
        match params.last() {
            Some(p) if p.key == key => {
                return fail(at, ErrorKind::BadField(Fault::SvcKeyDuplicate))
            }
            Some(p) if p.key > key => return fail(at, ErrorKind::BadField(Fault::SvcKeyOrder)),
            _ => {}
        }
        check_value(key, value)?;
        params.push(SvcParam { key, value });
        i = rest;
    }
    if let Some(m) = params.iter().find(|p| p.key == SvcParam::MANDATORY) {
        check_mandatory(m.value, &params)?;
    }
    let svcb = Svcb {
        priority,
        target,
        params,
    };
    Ok((i, Typed::Svcb(svcb)))
}

/// The wire format of one value (RFC 9460 §7, RFC 9461 §5, RFC 9540 §4).
fn check_value(key: u16, v: &[u8]) -> PResult<'_, ()> {
    let bad = |what| fail(v, ErrorKind::BadField(what));
    match key {
        SvcParam::MANDATORY if v.is_empty() || !v.len().is_multiple_of(2) => {
            bad(Fault::MandatoryShape)
        }
        SvcParam::ALPN => {
            if v.is_empty() {
                return bad(Fault::AlpnEmpty);
            }
            let mut i = v;
            while let Some((&len, rest)) = i.split_first() {
                if len == 0 {
                    return bad(Fault::AlpnIdEmpty);
                }
                let Some((_, after)) = rest.split_at_checked(usize::from(len)) else {
                    return bad(Fault::AlpnIdLength);
                };
                i = after;
            }
            Ok((v, ()))
        }
        SvcParam::NO_DEFAULT_ALPN | SvcParam::OHTTP if !v.is_empty() => bad(Fault::ValueNotEmpty),
        SvcParam::PORT if v.len() != 2 => bad(Fault::PortLength),
        SvcParam::IPV4HINT if v.is_empty() || !v.len().is_multiple_of(4) => {
            bad(Fault::Ipv4HintLength)
        }
        SvcParam::ECH if v.is_empty() => bad(Fault::EchEmpty),
        SvcParam::IPV6HINT if v.is_empty() || !v.len().is_multiple_of(16) => {
            bad(Fault::Ipv6HintLength)
        }
        _ => Ok((v, ())),
    }
}

/// RFC 9460 §8: "The list of keys MUST NOT contain duplicates and MUST be in strictly
/// increasing numeric order"; "mandatory" must not list itself, and "for
/// self-consistency, listed keys MUST also appear in the SvcParams".
fn check_mandatory<'a>(v: &'a [u8], params: &[SvcParam<'_>]) -> PResult<'a, ()> {
    let mut last: Option<u16> = None;
    for pair in v.chunks_exact(2) {
        let key = pair.iter().fold(0u16, |k, &b| k << 8 | u16::from(b));
        let what = if key == SvcParam::MANDATORY {
            Some(Fault::MandatorySelf)
        } else if last.is_some_and(|l| key <= l) {
            Some(Fault::MandatoryOrder)
        } else if !params.iter().any(|p| p.key == key) {
            Some(Fault::MandatoryMissing)
        } else {
            None
        };
        if let Some(what) = what {
            return fail(v, ErrorKind::BadField(what));
        }
        last = Some(key);
    }
    Ok((v, ()))
}

impl Svcb<'_> {
    pub(crate) fn write(&self, w: &mut Writer) -> bool {
        w.u16(self.priority)
            && w.name(&self.target, false)
            && self
                .params
                .iter()
                .all(|p| w.u16(p.key) && w.char_string16(p.value))
    }
}
