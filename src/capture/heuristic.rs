//! Is this payload DNS? For `--any-port`: UDP and TCP payloads on ports not configured as
//! DNS are taken when they look like a DNS message, in the spirit of Wireshark's DNS
//! heuristic: a header with plausible counts and opcode, and a message that parses whole
//! (every count satisfied, no trailing bytes). Multicast DNS (5353) and LLMNR (5355) are
//! DNS messages and are taken; NetBIOS name service (137) borrows the format but is not
//! DNS, so its port is left out. Pure functions, no panic.
use crate::wire::parse_message;

/// Header size (RFC 1035 §4.1.1).
const HEADER_LEN: usize = 12;
/// More questions than this in one message is not DNS seen in practice.
const MAX_QDCOUNT: u16 = 4;

/// Ports whose traffic has the DNS wire format without being DNS: NetBIOS name service
/// (RFC 1002).
const LOOKALIKE_PORTS: [u16; 1] = [137];

/// False for a datagram or connection on a port of a DNS look-alike.
pub(crate) fn port_may_carry_dns(sport: u16, dport: u16) -> bool {
    !LOOKALIKE_PORTS.contains(&sport) && !LOOKALIKE_PORTS.contains(&dport)
}

/// The header fields checked before parsing: QUERY, NOTIFY or UPDATE opcode, 1 to
/// [`MAX_QDCOUNT`] questions (UPDATE: exactly one zone), Z clear.
fn plausible_header(b: &[u8]) -> bool {
    let (Some(&flags_hi), Some(&flags_lo)) = (b.get(2), b.get(3)) else {
        return false;
    };
    let opcode = (flags_hi >> 3) & 0x0f;
    let z = flags_lo & 0x40;
    let qdcount = b
        .get(4..6)
        .and_then(|c| <[u8; 2]>::try_from(c).ok())
        .map_or(0, u16::from_be_bytes);
    b.len() > HEADER_LEN
        && matches!(opcode, 0 | 4 | 5)
        && z == 0
        && (1..=MAX_QDCOUNT).contains(&qdcount)
}

/// A UDP payload that is one whole, well-formed DNS message.
pub(crate) fn looks_like_dns(b: &[u8]) -> bool {
    plausible_header(b) && parse_message(b).is_ok()
}

/// A TCP segment payload that starts with a 2-byte length and a whole message that
/// [`looks_like_dns`] (RFC 1035 §4.2.2 framing).
pub(crate) fn looks_like_dns_over_tcp(b: &[u8]) -> bool {
    let Some(len) = b
        .get(..2)
        .and_then(|l| <[u8; 2]>::try_from(l).ok())
        .map(u16::from_be_bytes)
    else {
        return false;
    };
    b.get(2..)
        .and_then(|m| m.get(..usize::from(len)))
        .is_some_and(looks_like_dns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testutil::{framed, query};

    #[test]
    fn takes_whole_plausible_messages() {
        let q = query(7);
        assert!(looks_like_dns(&q));
        assert!(looks_like_dns_over_tcp(&framed(&q)));
        // Followed by the next message in the same segment.
        assert!(looks_like_dns_over_tcp(&[framed(&q), framed(&q)].concat()));
    }

    #[test]
    fn netbios_name_service_is_not_dns() {
        assert!(!port_may_carry_dns(137, 137));
        assert!(!port_may_carry_dns(40000, 137));
        assert!(port_may_carry_dns(5353, 5353));
        assert!(port_may_carry_dns(40000, 1053));
    }

    #[test]
    fn rejects_what_is_not_dns() {
        let q = query(7);
        assert!(!looks_like_dns(&q[..q.len() - 1]));
        assert!(!looks_like_dns(&[q.clone(), vec![0]].concat()));
        assert!(!looks_like_dns(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!looks_like_dns(&[0; 40]));
        assert!(!looks_like_dns(&[]));
        let mut opcode = q.clone();
        opcode[2] |= 0x30; // opcode 6
        assert!(!looks_like_dns(&opcode));
        let mut no_question = q.clone();
        no_question[5] = 0;
        assert!(!looks_like_dns(&no_question));
        assert!(!looks_like_dns_over_tcp(&framed(&q)[..10]));
        assert!(!looks_like_dns_over_tcp(&[0]));
    }
}
