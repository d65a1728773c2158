//! The headers of captures taken on a host rather than on a wire: Linux cooked capture
//! (SLL, SLL2) and BSD null/loopback, with the address families that name IPv4 and IPv6.
use super::{be16, raw_ip, Next, L3};

/// BSD address families that mean IPv4 and IPv6 in null/loopback headers: IPv6 is 24 on
/// NetBSD/OpenBSD, 28 on FreeBSD and 30 on macOS (10 is Linux's, seen in NFLOG).
const AF_INET: u32 = 2;
const AF_INET6_BSD: [u32; 3] = [24, 28, 30];

/// Linux ARPHRD_NETLINK: cooked captures of netlink sockets, never IP.
const ARPHRD_NETLINK: u16 = 824;
/// Linux cooked "protocol" values that are not EtherTypes: an 802.2 LLC frame follows.
const SLL_P_802_2: u16 = 0x0004;

/// Linux cooked v1: packet type, ARPHRD type, address length, 8 address bytes, protocol.
pub(super) fn sll(frame: &[u8]) -> Option<Next<'_>> {
    if be16(frame, 2)? == ARPHRD_NETLINK {
        return None;
    }
    sll_protocol(be16(frame, 14)?, frame.get(16..)?)
}

/// Linux cooked v2: protocol, reserved, interface index, ARPHRD type, packet type, address
/// length, 8 address bytes.
pub(super) fn sll2(frame: &[u8]) -> Option<Next<'_>> {
    if be16(frame, 8)? == ARPHRD_NETLINK {
        return None;
    }
    sll_protocol(be16(frame, 0)?, frame.get(20..)?)
}

fn sll_protocol(proto: u16, rest: &[u8]) -> Option<Next<'_>> {
    match proto {
        SLL_P_802_2 => Some(Next::Llc(rest)),
        0x0600.. => Some(Next::EtherType(proto, rest)),
        _ => None,
    }
}

/// A BSD address family (as in null/loopback and OpenBSD enc headers) and the IP packet
/// after it, if the two agree.
pub(super) fn family_ip(family: u32, rest: &[u8]) -> Option<L3<'_>> {
    match (family, raw_ip(rest)?) {
        (AF_INET, l3 @ L3::V4(_)) => Some(l3),
        (f, l3 @ L3::V6(_)) if AF_INET6_BSD.contains(&f) => Some(l3),
        _ => None,
    }
}

/// A 4-byte address family in the capturing host's byte order (either): families are
/// small numbers, so whichever reading has the high half zero is the host's order.
pub(super) fn host_order_family(raw: [u8; 4]) -> u32 {
    let le = u32::from_le_bytes(raw);
    if le & 0xffff_0000 == 0 {
        le
    } else {
        u32::from_be_bytes(raw)
    }
}

/// BSD loopback: a 4-byte address family, in network order for LOOP and in the capturing
/// host's order for NULL.
pub(super) fn null(frame: &[u8], network_order: bool) -> Option<L3<'_>> {
    let raw: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    let family = if network_order {
        u32::from_be_bytes(raw)
    } else {
        host_order_family(raw)
    };
    family_ip(family, frame.get(4..)?)
}

#[cfg(test)]
mod tests {
    use crate::capture::link::tests::{V4, V6};
    use crate::capture::link::*;

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
}
