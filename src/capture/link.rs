//! Link layers: finds the IPv4 or IPv6 packet inside a captured frame.
//!
//! Every link type ends in one of a few shapes (an Ethernet frame, a payload tagged with an
//! EtherType, an 802.2 LLC header, a PPP frame, an MPLS label stack, or bare IP), and
//! [`chain`] walks those shapes, at most [`MAX_LAYERS`] of them, so that VLAN stacks, MPLS,
//! PPPoE, LLC/SNAP and Ethernet bridged inside a tunnel are decoded once, in one place.
//! The link-type-specific headers are peeled here (Ethernet, raw IP, PPP and its
//! framings, Cisco HDLC, MPLS), in [`host`] (Linux cooked v1/v2, BSD null/loopback), in
//! [`wlan`] (IEEE 802.11 bare and behind radiotap, Prism, AVS and PPI headers) and in
//! [`other`] (OpenBSD pflog and enc, Linux NFLOG, macOS PKTAP, Frame Relay, ATM RFC
//! 1483, IPoIB, FDDI, Token Ring, ARCnet). Anything else is "no IP packet"; the caller
//! skips it. Pure functions: no state, no panic, only checked slicing, bounded work per
//! frame.

mod host;
mod other;
mod types;
mod wlan;

use host::{family_ip, host_order_family, null, sll, sll2};
pub(crate) use types::*;

/// The network-layer packet found in a frame, starting at its IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L3<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
}

pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
pub(crate) const ETHERTYPE_VLAN: u16 = 0x8100;
pub(crate) const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still emitted by some switches.
pub(crate) const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
pub(crate) const ETHERTYPE_MPLS: u16 = 0x8847;
pub(crate) const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
pub(crate) const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
/// Transparent Ethernet bridging: a whole Ethernet frame (GRE, GENEVE).
pub(crate) const ETHERTYPE_TEB: u16 = 0x6558;
/// PPP, as carried by GRE version 1 (PPTP).
pub(crate) const ETHERTYPE_PPP: u16 = 0x880b;

/// Headers walked per frame by [`chain`] (VLAN tags, MPLS, PPPoE, LLC, ...): more than
/// any real frame has, few enough that a hostile one costs nothing.
pub(crate) const MAX_LAYERS: usize = 16;
/// MPLS labels read before giving up on finding the bottom of the stack.
const MAX_LABELS: usize = 16;

/// Finds the IP packet in `frame`, or `None` if the frame carries none we decode.
pub(crate) fn decode(link_type: u32, frame: &[u8]) -> Option<L3<'_>> {
    decode_link(link_type, frame, true)
}

/// As [`decode`]; `outer` is false for the frame inside a PKTAP or PPI header, which may
/// not hold another such header (so that nesting is bounded).
fn decode_link(link_type: u32, frame: &[u8], outer: bool) -> Option<L3<'_>> {
    let next = match link_type {
        LINKTYPE_ETHERNET => Next::Ethernet(frame),
        LINKTYPE_RAW | LINKTYPE_RAW_12 | LINKTYPE_RAW_14 => Next::Ip(frame),
        LINKTYPE_IPV4 => Next::EtherType(ETHERTYPE_IPV4, frame),
        LINKTYPE_IPV6 => Next::EtherType(ETHERTYPE_IPV6, frame),
        LINKTYPE_LINUX_SLL => sll(frame)?,
        LINKTYPE_LINUX_SLL2 => sll2(frame)?,
        LINKTYPE_NULL => return null(frame, false),
        LINKTYPE_LOOP => return null(frame, true),
        LINKTYPE_PPP | LINKTYPE_PPP_HDLC => Next::Ppp(frame),
        LINKTYPE_PPP_WITH_DIR => Next::Ppp(frame.get(1..)?),
        LINKTYPE_PPP_ETHER => Next::Ppp(pppoe(frame)?),
        LINKTYPE_C_HDLC => chdlc(frame)?,
        LINKTYPE_C_HDLC_WITH_DIR => chdlc(frame.get(1..)?)?,
        LINKTYPE_MPLS => Next::Mpls(frame),
        LINKTYPE_ATM_RFC1483 => Next::Llc(frame),
        LINKTYPE_SUNATM => Next::Llc(frame.get(4..)?),
        LINKTYPE_FRELAY => other::frelay(frame)?,
        LINKTYPE_FRELAY_WITH_DIR => other::frelay(frame.get(1..)?)?,
        LINKTYPE_IPOIB => other::ipoib(frame)?,
        LINKTYPE_FDDI => other::fddi(frame)?,
        LINKTYPE_IEEE802_5 => other::token_ring(frame)?,
        LINKTYPE_ARCNET_BSD => other::arcnet(frame, false)?,
        LINKTYPE_ARCNET_LINUX => other::arcnet(frame, true)?,
        LINKTYPE_PFLOG => other::pflog(frame)?,
        LINKTYPE_ENC => other::enc(frame)?,
        LINKTYPE_NFLOG => other::nflog(frame)?,
        LINKTYPE_PKTAP if outer => {
            let (dlt, inner) = other::pktap(frame)?;
            return decode_link(dlt, inner, false);
        }
        LINKTYPE_PPI if outer => {
            let (dlt, inner) = wlan::ppi(frame)?;
            return decode_link(dlt, inner, false);
        }
        LINKTYPE_IEEE802_11 => wlan::dot11(frame)?,
        LINKTYPE_IEEE802_11_RADIOTAP => wlan::radiotap(frame)?,
        LINKTYPE_IEEE802_11_PRISM => wlan::prism(frame)?,
        LINKTYPE_IEEE802_11_AVS => wlan::avs(frame)?,
        _ => return None,
    };
    chain(next)
}

/// What a header says comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next<'a> {
    /// An Ethernet II or 802.3 frame, from its destination address.
    Ethernet(&'a [u8]),
    /// The payload of a header whose type field holds an EtherType.
    EtherType(u16, &'a [u8]),
    /// An IEEE 802.2 LLC header (SNAP or not), then its payload.
    Llc(&'a [u8]),
    /// A PPP frame, with or without the HDLC address and control bytes (0xff 0x03).
    Ppp(&'a [u8]),
    /// An MPLS label stack.
    Mpls(&'a [u8]),
    /// An IP packet of either version: the version nibble says which.
    Ip(&'a [u8]),
}

/// Walks headers from `next` until an IP packet, at most [`MAX_LAYERS`] of them.
pub(crate) fn chain(mut next: Next<'_>) -> Option<L3<'_>> {
    for _ in 0..MAX_LAYERS {
        next = match next {
            Next::Ip(b) => return raw_ip(b),
            Next::Ethernet(f) => ethernet(f)?,
            Next::EtherType(ty, b) => match ty {
                ETHERTYPE_IPV4 => return version(b, 4).map(L3::V4),
                ETHERTYPE_IPV6 => return version(b, 6).map(L3::V6),
                // A VLAN tag: TCI, then the next type.
                ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                    Next::EtherType(be16(b, 2)?, b.get(4..)?)
                }
                ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST => Next::Mpls(b),
                ETHERTYPE_PPPOE_SESSION => Next::Ppp(pppoe(b)?),
                ETHERTYPE_TEB => Next::Ethernet(b),
                ETHERTYPE_PPP => Next::Ppp(b),
                _ => return None,
            },
            Next::Llc(b) => llc(b)?,
            Next::Ppp(b) => ppp(b)?,
            Next::Mpls(b) => mpls(b)?,
        };
    }
    None
}

pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

pub(crate) fn le16(b: &[u8], at: usize) -> Option<u16> {
    be16(b, at).map(u16::swap_bytes)
}

pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    be32(b, at).map(u32::swap_bytes)
}

/// `b` if it starts with IP version `v` (an EtherType or protocol number promised it).
fn version(b: &[u8], v: u8) -> Option<&[u8]> {
    (b.first()? >> 4 == v).then_some(b)
}

/// Raw IP: the version nibble says which.
fn raw_ip(b: &[u8]) -> Option<L3<'_>> {
    match b.first()? >> 4 {
        4 => Some(L3::V4(b)),
        6 => Some(L3::V6(b)),
        _ => None,
    }
}

/// Destination and source MAC, then an EtherType, or (up to 1500) the length of an 802.3
/// frame, which then carries LLC.
fn ethernet(frame: &[u8]) -> Option<Next<'_>> {
    let ty = be16(frame, 12)?;
    let rest = frame.get(14..)?;
    match ty {
        0..=1500 => Some(Next::Llc(rest.get(..usize::from(ty)).unwrap_or(rest))),
        0x0600.. => Some(Next::EtherType(ty, rest)),
        _ => None,
    }
}

/// IEEE 802.2 LLC: SNAP (0xaa 0xaa 0x03, OUI, protocol) with an EtherType or a bridged
/// Ethernet frame (RFC 1483/2684), or the IP SAP (0x06) carrying IPv4 directly.
fn llc(b: &[u8]) -> Option<Next<'_>> {
    match b.get(..3)? {
        [0xaa, 0xaa, 0x03] => {
            let oui = b.get(3..6)?;
            let pid = be16(b, 6)?;
            let rest = b.get(8..)?;
            match (oui, pid) {
                // Encapsulated EtherType (00-00-00), Cisco's variant (00-00-f8).
                ([0, 0, 0] | [0, 0, 0xf8], _) => Some(Next::EtherType(pid, rest)),
                // IEEE 802.1 bridged 802.3, with (0x0001) or without (0x0007) FCS: two
                // bytes of padding, then the frame.
                ([0x00, 0x80, 0xc2], 0x0001 | 0x0007) => Some(Next::Ethernet(rest.get(2..)?)),
                _ => None,
            }
        }
        [0x06, 0x06, 0x03] => Some(Next::EtherType(ETHERTYPE_IPV4, b.get(3..)?)),
        _ => None,
    }
}

/// PPPoE session header (RFC 2516): version/type 0x11, code 0, session, length; then the
/// PPP protocol field. The length bounds the PPP frame.
fn pppoe(b: &[u8]) -> Option<&[u8]> {
    if *b.first()? != 0x11 || *b.get(1)? != 0 {
        return None;
    }
    let len = usize::from(be16(b, 4)?);
    let body = b.get(6..)?;
    Some(body.get(..len).unwrap_or(body))
}

/// PPP (RFC 1661): optional address/control 0xff 0x03, then the protocol field, one byte
/// when compressed (RFC 1661 §6.5: then it is odd).
fn ppp(b: &[u8]) -> Option<Next<'_>> {
    let b = match b.get(..2)? {
        [0xff, 0x03] => b.get(2..)?,
        _ => b,
    };
    let (proto, rest) = if b.first()? & 1 == 1 {
        (u16::from(*b.first()?), b.get(1..)?)
    } else {
        (be16(b, 0)?, b.get(2..)?)
    };
    match proto {
        0x0021 => Some(Next::EtherType(ETHERTYPE_IPV4, rest)),
        0x0057 => Some(Next::EtherType(ETHERTYPE_IPV6, rest)),
        0x0281 => Some(Next::Mpls(rest)),
        _ => None,
    }
}

/// Cisco HDLC: address (0x0f unicast, 0x8f broadcast), control 0, then an EtherType.
fn chdlc(b: &[u8]) -> Option<Next<'_>> {
    match b.get(..2)? {
        [0x0f | 0x8f, 0x00] => Some(Next::EtherType(be16(b, 2)?, b.get(4..)?)),
        _ => None,
    }
}

/// MPLS (RFC 3032): 4-byte entries until the bottom-of-stack bit; then IP (version 4 or
/// 6), or a pseudowire control word (first nibble 0, RFC 4385) and an Ethernet frame.
fn mpls(mut b: &[u8]) -> Option<Next<'_>> {
    for _ in 0..MAX_LABELS {
        let entry = be32(b, 0)?;
        b = b.get(4..)?;
        if entry & 0x100 != 0 {
            return match b.first()? >> 4 {
                4 | 6 => Some(Next::Ip(b)),
                0 => Some(Next::Ethernet(b.get(4..)?)),
                _ => None,
            };
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const V4: [u8; 4] = [0x45, 0, 0, 20];
    pub(super) const V6: [u8; 4] = [0x60, 0, 0, 0];

    fn eth(ty: u16, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0xaa; 12];
        f.extend_from_slice(&ty.to_be_bytes());
        f.extend_from_slice(rest);
        f
    }

    #[test]
    fn ethernet_ipv4_and_ipv6() {
        assert_eq!(
            decode(LINKTYPE_ETHERNET, &eth(0x0800, &V4)),
            Some(L3::V4(&V4[..]))
        );
        assert_eq!(
            decode(LINKTYPE_ETHERNET, &eth(0x86dd, &V6)),
            Some(L3::V6(&V6[..]))
        );
        assert_eq!(decode(LINKTYPE_ETHERNET, &eth(0x0806, &V4)), None);
        // 802.3 length field instead of an EtherType.
        assert_eq!(decode(LINKTYPE_ETHERNET, &eth(0x0040, &V4)), None);
        assert_eq!(decode(LINKTYPE_ETHERNET, &[0; 13]), None);
    }

    #[test]
    fn stacked_vlans() {
        let mut inner = vec![0x00, 0x05, 0x81, 0x00, 0x00, 0x06, 0x08, 0x00];
        inner.extend_from_slice(&V4);
        let f = eth(0x88a8, &inner);
        assert_eq!(decode(LINKTYPE_ETHERNET, &f), Some(L3::V4(&V4[..])));
        let mut single = vec![0x20, 0x01, 0x86, 0xdd];
        single.extend_from_slice(&V6);
        assert_eq!(
            decode(LINKTYPE_ETHERNET, &eth(0x8100, &single)),
            Some(L3::V6(&V6[..]))
        );
        // A tag cut short.
        assert_eq!(decode(LINKTYPE_ETHERNET, &eth(0x8100, &[0, 1, 8])), None);
        // An endless chain of tags stops.
        let chain: Vec<u8> = [0u8, 1, 0x81, 0].repeat(20);
        assert_eq!(decode(LINKTYPE_ETHERNET, &eth(0x8100, &chain)), None);
    }

    #[test]
    fn raw_ip_link_types() {
        for lt in [LINKTYPE_RAW, LINKTYPE_RAW_12, LINKTYPE_RAW_14] {
            assert_eq!(decode(lt, &V4), Some(L3::V4(&V4[..])));
            assert_eq!(decode(lt, &V6), Some(L3::V6(&V6[..])));
            assert_eq!(decode(lt, &[0x50, 0]), None);
            assert_eq!(decode(lt, &[]), None);
        }
        assert_eq!(decode(LINKTYPE_IPV4, &V4), Some(L3::V4(&V4[..])));
        assert_eq!(decode(LINKTYPE_IPV4, &V6), None);
        assert_eq!(decode(LINKTYPE_IPV6, &V6), Some(L3::V6(&V6[..])));
        assert_eq!(decode(LINKTYPE_IPV6, &V4), None);
    }

    #[test]
    fn unsupported_link_types() {
        assert!(!is_supported(147)); // USER0: private use
        assert!(!is_supported(195)); // IEEE 802.15.4
        assert_eq!(decode(147, &V4), None);
        assert!(is_supported(LINKTYPE_LINUX_SLL2));
        assert!(is_supported(LINKTYPE_IEEE802_11));
        assert!(is_supported(LINKTYPE_PPP));
    }

    #[test]
    fn mpls_stacks_are_bounded() {
        let mut f = [0u8, 0x01, 0x41, 64].to_vec(); // label 20, bottom of stack
        f.extend_from_slice(&V6);
        assert_eq!(decode(LINKTYPE_MPLS, &f), Some(L3::V6(&V6[..])));
        // Control word, then an Ethernet pseudowire.
        let mut pw = [0u8, 0x01, 0x41, 64, 0, 0, 0, 0].to_vec();
        pw.extend_from_slice(&eth(0x0800, &V4));
        assert_eq!(decode(LINKTYPE_MPLS, &pw), Some(L3::V4(&V4[..])));
        // No bottom of stack in sight.
        let endless = [0u8, 0x01, 0x40, 64].repeat(40);
        assert_eq!(decode(LINKTYPE_MPLS, &endless), None);
        assert_eq!(decode(LINKTYPE_ETHERNET, &eth(0x8847, &[0, 1, 0x41])), None);
    }

    #[test]
    fn ppp_protocol_field_forms() {
        let mut compressed = vec![0x21];
        compressed.extend_from_slice(&V4);
        assert_eq!(decode(LINKTYPE_PPP, &compressed), Some(L3::V4(&V4[..])));
        let mut full = vec![0xff, 0x03, 0x00, 0x57];
        full.extend_from_slice(&V6);
        assert_eq!(decode(LINKTYPE_PPP_HDLC, &full), Some(L3::V6(&V6[..])));
        // LCP, and a protocol that promises IPv4 but holds IPv6.
        assert_eq!(decode(LINKTYPE_PPP, &[0xc0, 0x21, 1, 1]), None);
        let mut wrong = vec![0x00, 0x21];
        wrong.extend_from_slice(&V6);
        assert_eq!(decode(LINKTYPE_PPP, &wrong), None);
        // PPPoE discovery (code != 0) carries no IP.
        assert_eq!(
            decode(LINKTYPE_PPP_ETHER, &[0x11, 0x09, 0, 0, 0, 2, 0, 0x21]),
            None
        );
    }

    #[test]
    fn llc_snap_and_bridged_frames() {
        let mut snap = vec![0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
        snap.extend_from_slice(&V4);
        assert_eq!(decode(LINKTYPE_ATM_RFC1483, &snap), Some(L3::V4(&V4[..])));
        let mut bridged = vec![0xaa, 0xaa, 0x03, 0x00, 0x80, 0xc2, 0x00, 0x07, 0, 0];
        bridged.extend_from_slice(&eth(0x86dd, &V6));
        assert_eq!(
            decode(LINKTYPE_ATM_RFC1483, &bridged),
            Some(L3::V6(&V6[..]))
        );
        // Other OUIs, and non-SNAP SAPs other than IP's, carry nothing we read.
        assert_eq!(
            decode(
                LINKTYPE_ATM_RFC1483,
                &[0xaa, 0xaa, 0x03, 1, 2, 3, 8, 0, 0x45]
            ),
            None
        );
        assert_eq!(
            decode(LINKTYPE_ATM_RFC1483, &[0x42, 0x42, 0x03, 0x45]),
            None
        );
        // 802.3: the length bounds the LLC payload.
        let f = eth(u16::try_from(snap.len()).unwrap(), &snap);
        assert_eq!(decode(LINKTYPE_ETHERNET, &f), Some(L3::V4(&V4[..])));
    }

    #[test]
    fn pktap_and_ppi_do_not_nest() {
        let mut inner = 12u32.to_le_bytes().to_vec();
        inner.extend_from_slice(&[0; 4]);
        inner.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        inner.extend_from_slice(&V4);
        assert_eq!(decode(LINKTYPE_PKTAP, &inner), Some(L3::V4(&V4[..])));
        let mut outer = 12u32.to_le_bytes().to_vec();
        outer.extend_from_slice(&[0; 4]);
        outer.extend_from_slice(&LINKTYPE_PKTAP.to_le_bytes());
        outer.extend_from_slice(&inner);
        assert_eq!(decode(LINKTYPE_PKTAP, &outer), None);
    }
}
