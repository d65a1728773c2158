//! GRE (RFC 2784, RFC 2890), with ERSPAN types I, II and III inside, and PPTP's
//! enhanced GRE (RFC 2637): the optional fields the flags announce, each checked
//! against the bytes there.
use super::Tunnel;
use crate::capture::link::{self, be16, Next, L3};

const GRE_CHECKSUM: u16 = 0x8000;
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQ: u16 = 0x1000;
const GRE_ACK: u16 = 0x0080;
const GRE_ERSPAN_2: u16 = 0x88be;
const GRE_ERSPAN_3: u16 = 0x22eb;

/// GRE: flags and version, protocol type, then the optional fields the flags announce.
pub(super) fn gre(b: &[u8]) -> Option<(Tunnel, L3<'_>)> {
    let flags = be16(b, 0)?;
    let proto = be16(b, 2)?;
    match flags & 0x7 {
        0 => gre_v0(flags, proto, b),
        1 => Some((Tunnel::Gre, pptp(flags, proto, b)?)),
        _ => None,
    }
}

/// GRE version 0 (RFC 2784, keys and sequence numbers of RFC 2890). Source routing
/// (RFC 1701) is obsolete and not decoded.
fn gre_v0(flags: u16, proto: u16, b: &[u8]) -> Option<(Tunnel, L3<'_>)> {
    if flags & GRE_ROUTING != 0 {
        return None;
    }
    let mut at = 4;
    for bit in [GRE_CHECKSUM, GRE_KEY, GRE_SEQ] {
        if flags & bit != 0 {
            at += 4;
        }
    }
    let rest = b.get(at..)?;
    match proto {
        // ERSPAN type II (an 8-byte header, version 1) needs the sequence number; type I
        // has neither: the mirrored frame follows the GRE header.
        GRE_ERSPAN_2 if flags & GRE_SEQ != 0 => {
            if rest.first()? >> 4 != 1 {
                return None;
            }
            Some((Tunnel::Erspan, link::chain(Next::Ethernet(rest.get(8..)?))?))
        }
        GRE_ERSPAN_2 => Some((Tunnel::Erspan, link::chain(Next::Ethernet(rest))?)),
        // ERSPAN type III: a 12-byte header (version 2), and an 8-byte platform-specific
        // subheader when its last bit (O) is set.
        GRE_ERSPAN_3 => {
            if rest.first()? >> 4 != 2 {
                return None;
            }
            let len = if rest.get(11)? & 1 != 0 { 20 } else { 12 };
            Some((
                Tunnel::Erspan,
                link::chain(Next::Ethernet(rest.get(len..)?))?,
            ))
        }
        _ => Some((Tunnel::Gre, link::chain(Next::EtherType(proto, rest))?)),
    }
}

/// PPTP's enhanced GRE (RFC 2637 §4.1): always a key (payload length, call ID), optional
/// sequence and acknowledgement numbers; PPP inside, bounded by the payload length.
fn pptp(flags: u16, proto: u16, b: &[u8]) -> Option<L3<'_>> {
    if proto != link::ETHERTYPE_PPP || flags & GRE_KEY == 0 {
        return None;
    }
    let len = usize::from(be16(b, 4)?);
    let mut at = 8;
    for bit in [GRE_SEQ, GRE_ACK] {
        if flags & bit != 0 {
            at += 4;
        }
    }
    let rest = b.get(at..)?;
    link::chain(Next::Ppp(rest.get(..len).unwrap_or(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testutil::ether;
    use crate::capture::tunnel::tests::inner4;

    #[test]
    fn gre_optional_fields_and_bad_headers() {
        let v4 = inner4();
        // Checksum, key and sequence: 12 bytes after the first 4.
        let mut g = vec![0xb0, 0x00, 0x08, 0x00];
        g.extend_from_slice(&[0; 12]);
        g.extend_from_slice(&v4);
        assert_eq!(gre(&g), Some((Tunnel::Gre, L3::V4(&v4[..]))));
        // Source routing (obsolete) and unknown versions are not decoded.
        let mut routed = g.clone();
        routed[0] |= 0x40;
        assert_eq!(gre(&routed), None);
        let mut v2 = g.clone();
        v2[1] = 2;
        assert_eq!(gre(&v2), None);
        // The optional fields run past the packet.
        assert_eq!(gre(&g[..10]), None);
        // ERSPAN II with the wrong version in its header.
        let mut e = vec![
            0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 1, 0x20, 0, 0, 0, 0, 0, 0, 0,
        ];
        e.extend_from_slice(&ether(0x0800, &v4));
        assert_eq!(gre(&e), None);
        e[8] = 0x10;
        assert_eq!(gre(&e), Some((Tunnel::Erspan, L3::V4(&v4[..]))));
    }

    #[test]
    fn pptp_needs_the_key_and_ppp() {
        let v4 = inner4();
        let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
        ppp.extend_from_slice(&v4);
        let len = u16::try_from(ppp.len()).unwrap().to_be_bytes();
        let mut g = vec![0x20, 0x01, 0x88, 0x0b, len[0], len[1], 0, 1];
        g.extend_from_slice(&ppp);
        assert_eq!(gre(&g), Some((Tunnel::Gre, L3::V4(&v4[..]))));
        let mut no_key = g.clone();
        no_key[0] = 0;
        assert_eq!(gre(&no_key), None);
    }
}
