//! UDP: ports and payload of a datagram.
//!
//! The payload is cut to the UDP length field, so IP-level padding is never part of a
//! message. When the length field claims more than the packet holds (the capture cut it, or
//! later IP fragments are missing), the bytes that are there are returned and marked
//! truncated. A length field below the header size is not a datagram we can frame; it is
//! skipped. Pure function, no panic.

/// A UDP datagram's ports and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Udp<'a> {
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
    /// The length field says the payload is longer than `payload`.
    pub truncated: bool,
}

const HEADER_LEN: usize = 8;

/// Parses the UDP datagram in `b` (the IP payload). `None` if the header is not all there
/// or its length field is impossible.
pub(crate) fn parse(b: &[u8]) -> Option<Udp<'_>> {
    let (header, body) = b.split_at_checked(HEADER_LEN)?;
    let field = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(header.get(at..at + 2)?.try_into().ok()?))
    };
    let sport = field(0)?;
    let dport = field(2)?;
    let len = usize::from(field(4)?);
    let claimed = len.checked_sub(HEADER_LEN)?;
    let (payload, truncated) = match body.get(..claimed) {
        Some(p) => (p, false),
        None => (body, true),
    };
    Some(Udp {
        sport,
        dport,
        payload,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testutil::udp;

    #[test]
    fn payload_cut_to_length_field() {
        let mut d = udp(1234, 53, b"query");
        d.extend_from_slice(&[0, 0, 0]); // padding after the datagram
        let u = parse(&d).unwrap();
        assert_eq!((u.sport, u.dport), (1234, 53));
        assert_eq!(u.payload, b"query");
        assert!(!u.truncated);
    }

    #[test]
    fn empty_payload_is_a_datagram() {
        let d = udp(53, 9, b"");
        let u = parse(&d).unwrap();
        assert_eq!(u.payload, b"");
        assert!(!u.truncated);
    }

    #[test]
    fn short_capture_is_truncated() {
        let d = udp(5353, 53, b"0123456789");
        let u = parse(&d[..12]).unwrap();
        assert_eq!(u.payload, b"0123");
        assert!(u.truncated);
    }

    #[test]
    fn bad_headers() {
        assert_eq!(parse(&[0; 7]), None);
        let mut d = udp(1, 53, b"x");
        d[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(parse(&d), None);
    }
}
