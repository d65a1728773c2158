//! IPv4 and IPv6 headers: finds the transport payload, or the fragment a packet carries.
//!
//! IPv4: the header length (IHL) and total length are honoured, so Ethernet padding and
//! trailers are dropped; a total length larger than what was captured marks the payload as
//! cut. IPv6: hop-by-hop, routing, destination options and AH extension headers are walked;
//! a fragment header yields a [`Fragment`] for [`super::frag`]; any other next header ends
//! the walk and is the transport protocol. Checksums are not verified: a capture shows what
//! was on the wire, and offloaded checksums are often wrong in captures. Pure functions, no
//! panic, only checked slicing.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::tunnel::Path;

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;

const V6_HOP_BY_HOP: u8 = 0;
const V6_ROUTING: u8 = 43;
const V6_FRAGMENT: u8 = 44;
const V6_AH: u8 = 51;
const V6_DEST_OPTS: u8 = 60;

/// A packet's transport payload when the packet is not a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Datagram<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub payload: &'a [u8],
    /// The IP length says there is more than was captured.
    pub cut: bool,
}

/// Identifies the datagram a fragment belongs to (RFC 791 / RFC 8200).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FragKey {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        id: u16,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: u32,
    },
}

/// One fragment of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fragment<'a> {
    pub key: FragKey,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4: the transport protocol. IPv6: the first header of the fragmentable part.
    pub proto: u8,
    /// Byte offset of `data` in the reassembled payload.
    pub offset: u32,
    /// More fragments follow this one.
    pub more: bool,
    pub data: &'a [u8],
    /// The tunnels around the packet; set by the caller, empty as parsed.
    pub tunnel: Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    Whole(Datagram<'a>),
    Fragment(Fragment<'a>),
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The first `claimed` bytes of `body`, or all of them with `cut` set when fewer were
/// captured.
fn bounded(body: &[u8], claimed: usize) -> (&[u8], bool) {
    match body.get(..claimed) {
        Some(b) => (b, false),
        None => (body, true),
    }
}

/// Parses an IPv4 packet. `None` if it is not a well-formed IPv4 header.
pub(crate) fn parse_v4(b: &[u8]) -> Option<Parsed<'_>> {
    let first = *b.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f).checked_mul(4)?;
    if header_len < 20 {
        return None;
    }
    let total_len = usize::from(be16(b, 2)?);
    let id = be16(b, 4)?;
    let flags_frag = be16(b, 6)?;
    let proto = *b.get(9)?;
    let src = Ipv4Addr::from(array::<4>(b, 12)?);
    let dst = Ipv4Addr::from(array::<4>(b, 16)?);
    let body = b.get(header_len..)?;
    let (payload, cut) = if total_len == 0 {
        // Set by TCP segmentation offload on the capturing host: trust the capture.
        (body, false)
    } else {
        bounded(body, total_len.checked_sub(header_len)?)
    };
    let more = flags_frag & 0x2000 != 0;
    let offset = u32::from(flags_frag & 0x1fff) * 8;
    if more || offset != 0 {
        return Some(Parsed::Fragment(Fragment {
            key: FragKey::V4 {
                src,
                dst,
                proto,
                id,
            },
            src: src.into(),
            dst: dst.into(),
            proto,
            offset,
            more,
            data: payload,
            tunnel: Path::default(),
        }));
    }
    Some(Parsed::Whole(Datagram {
        src: src.into(),
        dst: dst.into(),
        proto,
        payload,
        cut,
    }))
}

/// Walks the extension headers of an IPv6 payload starting with header `nh`, stopping at
/// the first header that is not hop-by-hop, routing, destination options or AH. Returns
/// that header's type and the bytes from it on. A fragment header here (one nested in a
/// reassembled payload) is not walked. `None` if an extension header runs past the data.
pub(crate) fn walk_v6_ext(mut nh: u8, mut b: &[u8]) -> Option<(u8, &[u8])> {
    loop {
        let len = match nh {
            V6_HOP_BY_HOP | V6_ROUTING | V6_DEST_OPTS => {
                (usize::from(*b.get(1)?) + 1).checked_mul(8)?
            }
            V6_AH => (usize::from(*b.get(1)?) + 2).checked_mul(4)?,
            _ => return Some((nh, b)),
        };
        let next = *b.first()?;
        // Each step consumes at least 8 bytes, so the loop ends with the data.
        b = b.get(len..)?;
        nh = next;
    }
}

/// Parses an IPv6 packet. `None` if it is not a well-formed IPv6 header chain.
pub(crate) fn parse_v6(b: &[u8]) -> Option<Parsed<'_>> {
    if b.first()? >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(be16(b, 4)?);
    let first_nh = *b.get(6)?;
    let src = Ipv6Addr::from(array::<16>(b, 8)?);
    let dst = Ipv6Addr::from(array::<16>(b, 24)?);
    let body = b.get(40..)?;
    let (body, cut) = if payload_len == 0 {
        // A jumbogram, or segmentation offload: trust the capture.
        (body, false)
    } else {
        bounded(body, payload_len)
    };
    let (nh, rest) = walk_v6_ext(first_nh, body)?;
    if nh != V6_FRAGMENT {
        return Some(Parsed::Whole(Datagram {
            src: src.into(),
            dst: dst.into(),
            proto: nh,
            payload: rest,
            cut,
        }));
    }
    let inner = *rest.first()?;
    let off_flags = be16(rest, 2)?;
    let id = be32(rest, 4)?;
    let data = rest.get(8..)?;
    let offset = u32::from(off_flags >> 3) * 8;
    let more = off_flags & 1 != 0;
    if offset == 0 && !more {
        // An "atomic fragment" (RFC 6946): the whole datagram, behind a fragment header.
        let (proto, payload) = walk_v6_ext(inner, data)?;
        return Some(Parsed::Whole(Datagram {
            src: src.into(),
            dst: dst.into(),
            proto,
            payload,
            cut,
        }));
    }
    Some(Parsed::Fragment(Fragment {
        key: FragKey::V6 { src, dst, id },
        src: src.into(),
        dst: dst.into(),
        proto: inner,
        offset,
        more,
        data,
        tunnel: Path::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testutil::{ipv4, ipv4_frag, ipv6, ipv6_frag};

    const A4: [u8; 4] = [10, 0, 0, 1];
    const B4: [u8; 4] = [10, 0, 0, 2];

    fn whole(p: Option<Parsed<'_>>) -> Datagram<'_> {
        match p {
            Some(Parsed::Whole(d)) => d,
            other => panic!("expected a whole datagram, got {other:?}"),
        }
    }

    fn frag(p: Option<Parsed<'_>>) -> Fragment<'_> {
        match p {
            Some(Parsed::Fragment(f)) => f,
            other => panic!("expected a fragment, got {other:?}"),
        }
    }

    #[test]
    fn ipv4_payload_honours_total_length_and_ihl() {
        let mut pkt = ipv4(A4, B4, 17, b"hello");
        pkt.extend_from_slice(&[0; 12]); // Ethernet padding
        let d = whole(parse_v4(&pkt));
        assert_eq!(d.payload, b"hello");
        assert_eq!(d.proto, 17);
        assert!(!d.cut);
        assert_eq!(d.src, IpAddr::from(A4));

        // IHL 6: one word of options.
        let mut opt = ipv4(A4, B4, 17, b"\0\0\0\0hello");
        opt[0] = 0x46;
        assert_eq!(whole(parse_v4(&opt)).payload, b"hello");

        // Cut by the snap length.
        let d = whole(parse_v4(&pkt[..22]));
        assert_eq!(d.payload, b"he");
        assert!(d.cut);
    }

    #[test]
    fn ipv4_rejects_bad_headers() {
        let pkt = ipv4(A4, B4, 17, b"x");
        let mut bad_ihl = pkt.clone();
        bad_ihl[0] = 0x44;
        assert_eq!(parse_v4(&bad_ihl), None);
        let mut short_total = pkt.clone();
        short_total[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(parse_v4(&short_total), None);
        assert_eq!(parse_v4(&pkt[..19]), None);
        assert_eq!(parse_v4(&[]), None);
        let mut v6 = pkt;
        v6[0] = 0x65;
        assert_eq!(parse_v4(&v6), None);
    }

    #[test]
    fn ipv4_total_length_zero_means_captured_length() {
        let mut pkt = ipv4(A4, B4, 6, b"abc");
        pkt[2..4].copy_from_slice(&[0, 0]);
        assert_eq!(whole(parse_v4(&pkt)).payload, b"abc");
    }

    #[test]
    fn ipv4_fragments() {
        let first = ipv4_frag(A4, B4, 17, 7, 0, true, &[1; 16]);
        let f = frag(parse_v4(&first));
        assert_eq!((f.offset, f.more, f.data.len(), f.proto), (0, true, 16, 17));
        let last = ipv4_frag(A4, B4, 17, 7, 16, false, &[2; 5]);
        let g = frag(parse_v4(&last));
        assert_eq!((g.offset, g.more), (16, false));
        assert_eq!(f.key, g.key);
    }

    #[test]
    fn ipv6_walks_extension_headers() {
        // Hop-by-hop (8 bytes) -> destination options (16 bytes) -> routing (8) -> UDP.
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[43, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(b"udp!");
        let pkt = ipv6([1; 16], [2; 16], 0, &ext);
        let d = whole(parse_v6(&pkt));
        assert_eq!(d.proto, 17);
        assert_eq!(d.payload, b"udp!");

        // AH: length in 4-byte units minus 2.
        let mut ah = vec![6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        ah.extend_from_slice(b"tcp");
        let pkt = ipv6([1; 16], [2; 16], 51, &ah);
        let d = whole(parse_v6(&pkt));
        assert_eq!((d.proto, d.payload), (6, &b"tcp"[..]));

        // Unknown next header stops the walk (ESP here).
        let pkt = ipv6([1; 16], [2; 16], 50, b"esp");
        let d = whole(parse_v6(&pkt));
        assert_eq!(d.proto, 50);

        // An extension header that runs past the packet.
        assert_eq!(
            parse_v6(&ipv6([1; 16], [2; 16], 0, &[17, 3, 0, 0, 0, 0, 0, 0])),
            None
        );
    }

    #[test]
    fn ipv6_payload_length_and_cut() {
        let mut pkt = ipv6([1; 16], [2; 16], 17, b"abcdef");
        pkt.extend_from_slice(&[0; 6]);
        assert_eq!(whole(parse_v6(&pkt)).payload, b"abcdef");
        let d = whole(parse_v6(&pkt[..43]));
        assert_eq!((d.payload, d.cut), (&b"abc"[..], true));
        assert_eq!(parse_v6(&pkt[..39]), None);
    }

    #[test]
    fn ipv6_fragments_and_atomic_fragment() {
        let first = ipv6_frag([1; 16], [2; 16], 17, 99, 0, true, &[7; 24]);
        let f = frag(parse_v6(&first));
        assert_eq!((f.offset, f.more, f.proto, f.data.len()), (0, true, 17, 24));
        let last = ipv6_frag([1; 16], [2; 16], 17, 99, 24, false, &[8; 3]);
        let g = frag(parse_v6(&last));
        assert_eq!((g.offset, g.more), (24, false));
        assert_eq!(f.key, g.key);
        let atomic = ipv6_frag([1; 16], [2; 16], 17, 5, 0, false, b"x");
        let d = whole(parse_v6(&atomic));
        assert_eq!((d.proto, d.payload), (17, &b"x"[..]));
    }
}
