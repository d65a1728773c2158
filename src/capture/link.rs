//! Link layers: finds the IPv4 or IPv6 packet inside a captured frame.
//!
//! Supported link types: Ethernet (1) with any stack of 802.1Q / 802.1ad / old-QinQ VLAN
//! tags, raw IP (101, and 12 and 14, which libpcap maps to raw IP), LINKTYPE_IPV4 (228) and
//! LINKTYPE_IPV6 (229), Linux cooked capture v1 (113) and v2 (276), BSD null loopback (0,
//! address family in the capturing host's byte order) and OpenBSD loopback (108, network
//! byte order). Anything else (other link types, non-IP EtherTypes, MPLS, PPPoE, 802.3/LLC
//! frames) is reported as "no IP packet"; the caller skips it. Pure function: no state, no
//! panic, only checked slicing.

/// The network-layer packet found in a frame, starting at its IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L3<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
}

pub(crate) const LINKTYPE_NULL: u32 = 0;
pub(crate) const LINKTYPE_ETHERNET: u32 = 1;
/// DLT_RAW on most BSDs; written as link type 12 by some old captures.
pub(crate) const LINKTYPE_RAW_12: u32 = 12;
/// DLT_RAW on OpenBSD.
pub(crate) const LINKTYPE_RAW_14: u32 = 14;
pub(crate) const LINKTYPE_RAW: u32 = 101;
pub(crate) const LINKTYPE_LOOP: u32 = 108;
pub(crate) const LINKTYPE_LINUX_SLL: u32 = 113;
pub(crate) const LINKTYPE_IPV4: u32 = 228;
pub(crate) const LINKTYPE_IPV6: u32 = 229;
pub(crate) const LINKTYPE_LINUX_SLL2: u32 = 276;

pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
pub(crate) const ETHERTYPE_VLAN: u16 = 0x8100;
pub(crate) const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still emitted by some switches.
pub(crate) const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// BSD address families that mean IPv4 and IPv6 in null/loopback headers: IPv6 is 24 on
/// NetBSD/OpenBSD, 28 on FreeBSD and 30 on macOS.
const AF_INET: u32 = 2;
const AF_INET6_BSD: [u32; 3] = [24, 28, 30];

/// More VLAN tags than this is not a real frame; stop rather than walk a tag chain forever.
const MAX_VLAN_TAGS: usize = 8;

/// Linux ARPHRD_NETLINK: cooked captures of netlink sockets, never IP.
const ARPHRD_NETLINK: u16 = 824;

pub(crate) fn is_supported(link_type: u32) -> bool {
    matches!(
        link_type,
        LINKTYPE_NULL
            | LINKTYPE_ETHERNET
            | LINKTYPE_RAW_12
            | LINKTYPE_RAW_14
            | LINKTYPE_RAW
            | LINKTYPE_LOOP
            | LINKTYPE_LINUX_SLL
            | LINKTYPE_IPV4
            | LINKTYPE_IPV6
            | LINKTYPE_LINUX_SLL2
    )
}

/// Finds the IP packet in `frame`, or `None` if the frame carries none we decode.
pub(crate) fn decode(link_type: u32, frame: &[u8]) -> Option<L3<'_>> {
    match link_type {
        LINKTYPE_ETHERNET => ethernet(frame),
        LINKTYPE_RAW | LINKTYPE_RAW_12 | LINKTYPE_RAW_14 => raw_ip(frame),
        LINKTYPE_IPV4 => match raw_ip(frame) {
            Some(l3 @ L3::V4(_)) => Some(l3),
            _ => None,
        },
        LINKTYPE_IPV6 => match raw_ip(frame) {
            Some(l3 @ L3::V6(_)) => Some(l3),
            _ => None,
        },
        LINKTYPE_LINUX_SLL => sll(frame),
        LINKTYPE_LINUX_SLL2 => sll2(frame),
        LINKTYPE_NULL => null(frame, false),
        LINKTYPE_LOOP => null(frame, true),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

/// Raw IP: the version nibble says which.
fn raw_ip(b: &[u8]) -> Option<L3<'_>> {
    match b.first()? >> 4 {
        4 => Some(L3::V4(b)),
        6 => Some(L3::V6(b)),
        _ => None,
    }
}

/// Dispatches on an EtherType, peeling VLAN tags (each 4 bytes: TCI, then the next type).
fn ethertype(mut ty: u16, mut rest: &[u8]) -> Option<L3<'_>> {
    for _ in 0..=MAX_VLAN_TAGS {
        match ty {
            ETHERTYPE_IPV4 => return Some(L3::V4(rest)),
            ETHERTYPE_IPV6 => return Some(L3::V6(rest)),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                ty = be16(rest, 2)?;
                rest = rest.get(4..)?;
            }
            _ => return None,
        }
    }
    None
}

fn ethernet(frame: &[u8]) -> Option<L3<'_>> {
    // Destination MAC, source MAC, then the EtherType (a length, <= 1500, on 802.3 frames,
    // which then carry LLC and are not decoded).
    let ty = be16(frame, 12)?;
    ethertype(ty, frame.get(14..)?)
}

/// Linux cooked v1: packet type, ARPHRD type, address length, 8 address bytes, protocol.
fn sll(frame: &[u8]) -> Option<L3<'_>> {
    if be16(frame, 2)? == ARPHRD_NETLINK {
        return None;
    }
    ethertype(be16(frame, 14)?, frame.get(16..)?)
}

/// Linux cooked v2: protocol, reserved, interface index, ARPHRD type, packet type, address
/// length, 8 address bytes.
fn sll2(frame: &[u8]) -> Option<L3<'_>> {
    if be16(frame, 8)? == ARPHRD_NETLINK {
        return None;
    }
    ethertype(be16(frame, 0)?, frame.get(20..)?)
}

/// BSD loopback: a 4-byte address family, in network order for LOOP and in the capturing
/// host's order (either) for NULL.
fn null(frame: &[u8], network_order: bool) -> Option<L3<'_>> {
    let raw: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    let family = if network_order {
        u32::from_be_bytes(raw)
    } else {
        // Families are small numbers, so whichever reading has the high half zero is the
        // host's byte order.
        let le = u32::from_le_bytes(raw);
        if le & 0xffff_0000 == 0 {
            le
        } else {
            u32::from_be_bytes(raw)
        }
    };
    let rest = frame.get(4..)?;
    match (family, raw_ip(rest)?) {
        (AF_INET, l3 @ L3::V4(_)) => Some(l3),
        (f, l3 @ L3::V6(_)) if AF_INET6_BSD.contains(&f) => Some(l3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: [u8; 4] = [0x45, 0, 0, 20];
    const V6: [u8; 4] = [0x60, 0, 0, 0];

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
    fn linux_cooked_v1_and_v2() {
        let mut v1 = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        v1.extend_from_slice(&V4);
        assert_eq!(decode(LINKTYPE_LINUX_SLL, &v1), Some(L3::V4(&V4[..])));
        let mut netlink = v1.clone();
        netlink[2..4].copy_from_slice(&824u16.to_be_bytes());
        assert_eq!(decode(LINKTYPE_LINUX_SLL, &netlink), None);

        let mut v2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6];
        v2.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0]);
        v2.extend_from_slice(&V6);
        assert_eq!(decode(LINKTYPE_LINUX_SLL2, &v2), Some(L3::V6(&V6[..])));
        assert_eq!(decode(LINKTYPE_LINUX_SLL2, &v2[..19]), None);
    }

    #[test]
    fn bsd_loopback_both_byte_orders() {
        let mut le = 2u32.to_le_bytes().to_vec();
        le.extend_from_slice(&V4);
        assert_eq!(decode(LINKTYPE_NULL, &le), Some(L3::V4(&V4[..])));
        for af in [24u32, 28, 30] {
            let mut be = af.to_be_bytes().to_vec();
            be.extend_from_slice(&V6);
            assert_eq!(decode(LINKTYPE_NULL, &be), Some(L3::V6(&V6[..])));
            assert_eq!(decode(LINKTYPE_LOOP, &be), Some(L3::V6(&V6[..])));
            let mut le = af.to_le_bytes().to_vec();
            le.extend_from_slice(&V6);
            assert_eq!(decode(LINKTYPE_NULL, &le), Some(L3::V6(&V6[..])));
            // LOOP is always network order.
            assert_eq!(decode(LINKTYPE_LOOP, &le), None);
        }
        // Family and IP version disagree.
        let mut wrong = 2u32.to_le_bytes().to_vec();
        wrong.extend_from_slice(&V6);
        assert_eq!(decode(LINKTYPE_NULL, &wrong), None);
        assert_eq!(decode(LINKTYPE_NULL, &[2, 0, 0]), None);
    }

    #[test]
    fn unsupported_link_types() {
        assert!(!is_supported(105)); // 802.11
        assert!(!is_supported(9)); // PPP
        assert_eq!(decode(105, &V4), None);
        assert!(is_supported(LINKTYPE_LINUX_SLL2));
    }
}
