//! Link types of firewalls, capture frameworks and older networks: OpenBSD pflog and enc,
//! Linux NFLOG, macOS PKTAP, Frame Relay, IP over InfiniBand, FDDI, Token Ring, ARCnet.
//!
//! Each function peels its header and says what comes next; lengths read from the frame
//! are checked before use. No panic, only checked slicing.
use super::{be16, family_ip, host_order_family, le16, le32, Next, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// Linux AF_INET6 (NFLOG uses Linux families).
const AF_INET6_LINUX: u8 = 10;
/// NFLOG TLV type of the packet itself (NFULA_PAYLOAD).
const NFULA_PAYLOAD: u16 = 9;
/// TLVs read from one NFLOG record before giving up.
const MAX_NFLOG_TLVS: usize = 64;

/// IP as an EtherType-tagged payload of the given version.
fn ip_of(version: u8, b: &[u8]) -> Option<Next<'_>> {
    match version {
        4 => Some(Next::EtherType(ETHERTYPE_IPV4, b)),
        6 => Some(Next::EtherType(ETHERTYPE_IPV6, b)),
        _ => None,
    }
}

/// OpenBSD pflog: header length (byte 0, padded to 4 on the wire) and address family
/// (byte 1), then the packet.
pub(crate) fn pflog(f: &[u8]) -> Option<Next<'_>> {
    let hdrlen = usize::from(*f.first()?);
    let family = u32::from(*f.get(1)?);
    if hdrlen < 4 {
        return None;
    }
    let start = hdrlen.checked_add(3)? & !3;
    let rest = f.get(start..)?;
    match family_ip(family, rest)? {
        super::L3::V4(b) => ip_of(4, b),
        super::L3::V6(b) => ip_of(6, b),
    }
}

/// OpenBSD enc (IPsec before encryption / after decryption): address family in host byte
/// order, SPI, flags; 12 bytes.
pub(crate) fn enc(f: &[u8]) -> Option<Next<'_>> {
    let raw: [u8; 4] = f.get(..4)?.try_into().ok()?;
    match family_ip(host_order_family(raw), f.get(12..)?)? {
        super::L3::V4(b) => ip_of(4, b),
        super::L3::V6(b) => ip_of(6, b),
    }
}

/// Linux NFLOG: family, version 0, resource id; then TLVs (length including the 4-byte
/// header, type; host byte order; padded to 4) of which NFULA_PAYLOAD is the packet.
pub(crate) fn nflog(f: &[u8]) -> Option<Next<'_>> {
    let version = match *f.first()? {
        2 => 4,
        AF_INET6_LINUX => 6,
        _ => return None,
    };
    if *f.get(1)? != 0 {
        return None;
    }
    // The capturing host's byte order: the first TLV's length read both ways, the one that
    // fits is it.
    let mut rest = f.get(4..)?;
    let little = le16(rest, 0).is_some_and(|l| l >= 4 && usize::from(l) <= rest.len());
    let read16 = |b: &[u8], at: usize| if little { le16(b, at) } else { be16(b, at) };
    for _ in 0..MAX_NFLOG_TLVS {
        let len = usize::from(read16(rest, 0)?);
        let ty = read16(rest, 2)? & 0x7fff;
        if len < 4 {
            return None;
        }
        let value = rest.get(4..len)?;
        if ty == NFULA_PAYLOAD {
            return ip_of(version, value);
        }
        rest = rest.get(len.checked_add(3)? & !3..)?;
    }
    None
}

/// macOS PKTAP: header length, record type, then the link type of the frame that follows
/// the header, little-endian. Returns that link type and frame.
pub(crate) fn pktap(f: &[u8]) -> Option<(u32, &[u8])> {
    let len = usize::try_from(le32(f, 0)?).ok()?;
    if len < 12 {
        return None;
    }
    Some((le32(f, 8)?, f.get(len..)?))
}

/// Frame Relay (RFC 2427): a Q.922 address of 2 to 4 bytes (the last has the EA bit),
/// control 0x03 (UI), optional padding, then an NLPID: IPv4, IPv6, or SNAP.
pub(crate) fn frelay(f: &[u8]) -> Option<Next<'_>> {
    let addr_len = (1..4).find(|&i| f.get(i).is_some_and(|b| b & 1 == 1))? + 1;
    if *f.get(addr_len)? != 0x03 {
        return None;
    }
    let mut at = addr_len + 1;
    if *f.get(at)? == 0x00 {
        at += 1;
    }
    let rest = f.get(at + 1..)?;
    match *f.get(at)? {
        0xcc => ip_of(4, rest),
        0x8e => ip_of(6, rest),
        // SNAP: OUI, then the protocol; as LLC SNAP without its three LLC bytes.
        0x80 => match rest.get(..3)? {
            [0, 0, 0] => Some(Next::EtherType(be16(rest, 3)?, rest.get(5..)?)),
            _ => None,
        },
        _ => None,
    }
}

/// IP over InfiniBand as Linux captures it: a 40-byte pseudo-header (the global route
/// header, or 20 zero bytes and the destination address), then the RFC 4391 §6 header:
/// EtherType, two reserved bytes.
pub(crate) fn ipoib(f: &[u8]) -> Option<Next<'_>> {
    Some(Next::EtherType(be16(f, 40)?, f.get(44..)?))
}

/// FDDI: frame control (LLC frames: class bits 0x30 = 0x10), destination, source; LLC.
pub(crate) fn fddi(f: &[u8]) -> Option<Next<'_>> {
    if f.first()? & 0x30 != 0x10 {
        return None;
    }
    Some(Next::Llc(f.get(13..)?))
}

/// Token Ring (802.5): access control, frame control (LLC frames: 0x40), destination,
/// source; a source with the route bit set is followed by routing information whose
/// length is in its first byte. Then LLC.
pub(crate) fn token_ring(f: &[u8]) -> Option<Next<'_>> {
    if f.get(1)? & 0xc0 != 0x40 {
        return None;
    }
    let mut at = 14;
    if f.get(8)? & 0x80 != 0 {
        at += usize::from(f.get(14)? & 0x1f);
    }
    Some(Next::Llc(f.get(at..)?))
}

/// ARCnet: source and destination (BSD), plus a 2-byte offset (Linux); then the protocol.
/// RFC 1201 protocols (IP 0xd4, IPv6 0xc4) have a split flag and sequence number before
/// the packet; RFC 1051 IP (0xf0) has none. Exception packets (split 0xff) are skipped.
pub(crate) fn arcnet(f: &[u8], linux: bool) -> Option<Next<'_>> {
    let at = if linux { 4 } else { 2 };
    let proto = *f.get(at)?;
    let rfc1201 = |version| {
        if *f.get(at + 1)? == 0xff {
            return None;
        }
        ip_of(version, f.get(at + 4..)?)
    };
    match proto {
        0xf0 => ip_of(4, f.get(at + 1..)?),
        0xd4 => rfc1201(4),
        0xc4 => rfc1201(6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: [u8; 4] = [0x45, 0, 0, 20];
    const V6: [u8; 4] = [0x60, 0, 0, 0];

    #[test]
    fn nflog_finds_the_payload_tlv_in_either_byte_order() {
        let mut le = vec![2, 0, 0, 0, 8, 0, 1, 0, 8, 0, 0, 0, 8, 0, 9, 0];
        le.extend_from_slice(&V4);
        assert_eq!(nflog(&le), Some(Next::EtherType(ETHERTYPE_IPV4, &V4[..])));
        let mut be = vec![10, 0, 0, 0, 0, 8, 0, 9];
        be.extend_from_slice(&V6);
        assert_eq!(nflog(&be), Some(Next::EtherType(ETHERTYPE_IPV6, &V6[..])));
        // A TLV shorter than its header, a payload TLV running past the end, version 1.
        assert_eq!(nflog(&[2, 0, 0, 0, 2, 0, 9, 0]), None);
        assert_eq!(nflog(&[2, 0, 0, 0, 80, 0, 9, 0, 0x45]), None);
        assert_eq!(nflog(&[2, 1, 0, 0, 8, 0, 9, 0, 0x45, 0, 0, 0]), None);
        // Many small TLVs without a payload: bounded, none found.
        let mut many = vec![2, 0, 0, 0];
        many.extend_from_slice(&[4, 0, 1, 0].repeat(200));
        assert_eq!(nflog(&many), None);
    }

    #[test]
    fn pflog_rounds_its_header_length_up() {
        let mut f = vec![61, 2];
        f.extend_from_slice(&[0; 62]);
        f.extend_from_slice(&V4);
        assert_eq!(pflog(&f), Some(Next::EtherType(ETHERTYPE_IPV4, &V4[..])));
        f[1] = 24;
        assert_eq!(pflog(&f), None); // family and version disagree
        assert_eq!(pflog(&[255, 2]), None);
        assert_eq!(pflog(&[0, 2, 0x45]), None);
    }

    #[test]
    fn pktap_and_short_headers() {
        let mut f = 12u32.to_le_bytes().to_vec();
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(b"frame");
        assert_eq!(pktap(&f), Some((1, &b"frame"[..])));
        assert_eq!(pktap(&[4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), None);
        assert_eq!(pktap(&f[..11]), None);
    }

    #[test]
    fn frame_relay_addresses_and_nlpids() {
        let mut f = vec![0x18, 0x41, 0x03, 0xcc];
        f.extend_from_slice(&V4);
        assert_eq!(frelay(&f), Some(Next::EtherType(ETHERTYPE_IPV4, &V4[..])));
        // Padding, then SNAP with an EtherType.
        let mut snap = vec![0x18, 0x41, 0x03, 0x00, 0x80, 0, 0, 0, 0x86, 0xdd];
        snap.extend_from_slice(&V6);
        assert_eq!(
            frelay(&snap),
            Some(Next::EtherType(ETHERTYPE_IPV6, &V6[..]))
        );
        // No address byte with the EA bit: not Frame Relay.
        assert_eq!(frelay(&[0x18, 0x40, 0x40, 0x40, 0x03, 0xcc]), None);
        assert_eq!(frelay(&[0x18, 0x41, 0x13, 0xcc]), None);
    }

    #[test]
    fn token_ring_routing_and_arcnet_exceptions() {
        let mut tr = vec![
            0x10, 0x40, 1, 2, 3, 4, 5, 6, 0x80, 2, 3, 4, 5, 6, 0x04, 0, 0, 0,
        ];
        tr.extend_from_slice(&[0xaa, 0xaa, 0x03]);
        assert_eq!(token_ring(&tr), Some(Next::Llc(&tr[18..])));
        assert_eq!(token_ring(&tr[..14]), None);
        assert_eq!(arcnet(&[1, 2, 0xd4, 0xff, 0, 0, 0x45], false), None);
        assert_eq!(
            arcnet(&[1, 2, 0xf0, 0x45], false),
            Some(Next::EtherType(ETHERTYPE_IPV4, &[0x45][..]))
        );
        assert_eq!(
            arcnet(&[1, 2, 0, 0, 0xc4, 0, 0, 0, 0x60], true),
            ip_of(6, &[0x60])
        );
        assert_eq!(arcnet(&[1, 2, 0x06], false), None);
    }
}
