//! Tunnels: finds the packet carried inside another packet, so that DNS in a tunnel is
//! found like DNS outside one.
//!
//! Over IP: IP-in-IP and 6in4 (protocols 4 and 41), GRE (47; RFC 2784/2890 and the PPTP
//! variant of RFC 2637, with ERSPAN types I, II and III inside), L2TPv3 (115, RFC 3931).
//! Over UDP, by destination port: VXLAN (4789, RFC 7348), GENEVE (6081, RFC 8926); by
//! source or destination port: GTP-U (2152, 3GPP TS 29.281), Teredo (3544, RFC 4380),
//! L2TP (1701, version 2 per RFC 2661 and version 3). Every header length is checked against the bytes there;
//! what does not fit is "no inner packet". The caller bounds nesting with [`Path`]: a
//! packet more than [`MAX_DEPTH`] tunnels deep is skipped. Pure functions, no panic.
mod gre;

use std::fmt;

use super::link::{self, be16, be32, Next, L3};
use gre::gre;

/// A kind of tunnel removed to reach a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// IPv4 or IPv6 directly inside IPv4 or IPv6 (protocols 4 and 41, e.g. 6in4).
    IpIp,
    /// GRE, including PPTP's enhanced GRE.
    Gre,
    /// ERSPAN (mirrored Ethernet inside GRE).
    Erspan,
    Vxlan,
    Geneve,
    GtpU,
    Teredo,
    L2tp,
}

impl Tunnel {
    /// The lowercase name the corpus oracle uses (`"vxlan"`, `"gtpu"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Tunnel::IpIp => "ipip",
            Tunnel::Gre => "gre",
            Tunnel::Erspan => "erspan",
            Tunnel::Vxlan => "vxlan",
            Tunnel::Geneve => "geneve",
            Tunnel::GtpU => "gtpu",
            Tunnel::Teredo => "teredo",
            Tunnel::L2tp => "l2tp",
        }
    }
}

impl fmt::Display for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Tunnels removed to reach one packet, at most this many.
pub const MAX_DEPTH: usize = 4;

/// The tunnels around a packet, outermost first. Valid values: at most [`MAX_DEPTH`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Path {
    hops: [Option<Tunnel>; MAX_DEPTH],
}

impl Path {
    /// This path one tunnel deeper, or `None` past [`MAX_DEPTH`].
    pub(crate) fn push(self, t: Tunnel) -> Option<Path> {
        let mut p = self;
        *p.hops.iter_mut().find(|h| h.is_none())? = Some(t);
        Some(p)
    }

    pub(crate) fn to_vec(self) -> Vec<Tunnel> {
        self.hops.iter().flatten().copied().collect()
    }
}

pub(crate) const PROTO_IPIP: u8 = 4;
pub(crate) const PROTO_IPV6: u8 = 41;
pub(crate) const PROTO_GRE: u8 = 47;
pub(crate) const PROTO_L2TP: u8 = 115;

pub(crate) const PORT_VXLAN: u16 = 4789;
pub(crate) const PORT_GENEVE: u16 = 6081;
pub(crate) const PORT_GTPU: u16 = 2152;
pub(crate) const PORT_TEREDO: u16 = 3544;
pub(crate) const PORT_L2TP: u16 = 1701;

/// GTP-U message type of user data (G-PDU).
const GTP_GPDU: u8 = 0xff;
/// GTP-U extension headers followed before giving up.
const MAX_GTP_EXTENSIONS: usize = 16;

/// The packet inside an IP payload of protocol `proto`, if it is a tunnel.
pub(crate) fn over_ip(proto: u8, b: &[u8]) -> Option<(Tunnel, L3<'_>)> {
    match proto {
        PROTO_IPIP => Some((
            Tunnel::IpIp,
            link::chain(Next::EtherType(link::ETHERTYPE_IPV4, b))?,
        )),
        PROTO_IPV6 => Some((
            Tunnel::IpIp,
            link::chain(Next::EtherType(link::ETHERTYPE_IPV6, b))?,
        )),
        PROTO_GRE => gre(b),
        PROTO_L2TP => Some((Tunnel::L2tp, l2tpv3_session(b)?)),
        _ => None,
    }
}

/// The packet inside a UDP payload between `sport` and `dport`, if it is a tunnel.
pub(crate) fn over_udp(sport: u16, dport: u16, b: &[u8]) -> Option<(Tunnel, L3<'_>)> {
    let on = |port| sport == port || dport == port;
    // VXLAN and GENEVE name only the destination port (RFC 7348 §5, RFC 8926 §3.3); the
    // source port is a flow hash, and a datagram from port 6081 is not GENEVE.
    if dport == PORT_VXLAN {
        Some((Tunnel::Vxlan, vxlan(b)?))
    } else if dport == PORT_GENEVE {
        Some((Tunnel::Geneve, geneve(b)?))
    } else if on(PORT_GTPU) {
        Some((Tunnel::GtpU, gtpu(b)?))
    } else if on(PORT_TEREDO) {
        Some((Tunnel::Teredo, teredo(b)?))
    } else if on(PORT_L2TP) {
        Some((Tunnel::L2tp, l2tp_udp(b)?))
    } else {
        None
    }
}

/// VXLAN: flags with the I bit (VNI valid), reserved, VNI, reserved; then Ethernet.
fn vxlan(b: &[u8]) -> Option<L3<'_>> {
    if b.first()? & 0x08 == 0 {
        return None;
    }
    link::chain(Next::Ethernet(b.get(8..)?))
}

/// GENEVE: version 0 and option length (4-byte words), flags, protocol type (an
/// EtherType; 0x6558 is Ethernet), VNI; options; then the payload.
fn geneve(b: &[u8]) -> Option<L3<'_>> {
    let first = *b.first()?;
    if first >> 6 != 0 {
        return None;
    }
    let len = 8 + usize::from(first & 0x3f) * 4;
    link::chain(Next::EtherType(be16(b, 2)?, b.get(len..)?))
}

/// GTP-U version 1: flags, message type, length (of what follows the first 8 bytes),
/// TEID; then, when any of E/S/PN is set, sequence number, N-PDU number and the first
/// extension type, and extension headers (length in 4-byte words, last byte the next
/// type). User data (G-PDU) is an IP packet.
fn gtpu(b: &[u8]) -> Option<L3<'_>> {
    let flags = *b.first()?;
    if flags >> 5 != 1 || flags & 0x10 == 0 || *b.get(1)? != GTP_GPDU {
        return None;
    }
    let len = usize::from(be16(b, 2)?);
    let body = b.get(8..)?;
    let body = body.get(..len).unwrap_or(body);
    let mut at = 0;
    if flags & 0x07 != 0 {
        let mut next = *body.get(3)?;
        at = 4;
        for _ in 0..MAX_GTP_EXTENSIONS {
            if next == 0 {
                break;
            }
            let ext_len = usize::from(*body.get(at)?) * 4;
            if ext_len == 0 {
                return None;
            }
            at = at.checked_add(ext_len)?;
            next = *body.get(at.checked_sub(1)?)?;
        }
        if next != 0 {
            return None;
        }
    }
    link::chain(Next::Ip(body.get(at..)?))
}

/// Teredo: an optional authentication indicator (type 1: ID and authentication lengths,
/// ID, value, 8-byte nonce, confirmation byte), an optional origin indication (type 0,
/// 8 bytes), then an IPv6 packet.
fn teredo(b: &[u8]) -> Option<L3<'_>> {
    let mut at = 0;
    if be16(b, 0)? == 1 {
        at = 4 + usize::from(*b.get(2)?) + usize::from(*b.get(3)?) + 9;
    }
    if be16(b, at)? == 0 {
        at += 8;
    }
    let inner = b.get(at..)?;
    // An IPv6 header, whole, and nothing but what its length says (as Wireshark's
    // heuristic): UDP on port 3544 that is not Teredo is left alone.
    let payload_len = usize::from(be16(inner, 4)?);
    if inner.first()? >> 4 != 6 || inner.len() != 40 + payload_len {
        return None;
    }
    Some(L3::V6(inner))
}

/// L2TP over UDP: version 2 (RFC 2661; data messages carry PPP) or version 3 (RFC 3931
/// §4.1.2.1: a 4-byte header, then the session header as over IP).
fn l2tp_udp(b: &[u8]) -> Option<L3<'_>> {
    let flags = be16(b, 0)?;
    // The T bit marks a control message.
    if flags & 0x8000 != 0 {
        return None;
    }
    match flags & 0xf {
        2 => l2tpv2(flags, b),
        3 => l2tpv3_session(b.get(4..)?),
        _ => None,
    }
}

/// L2TPv2 data: flags, optional length, tunnel and session IDs, optional Ns/Nr, optional
/// offset size and padding; then PPP.
fn l2tpv2(flags: u16, b: &[u8]) -> Option<L3<'_>> {
    let mut at = 2;
    if flags & 0x4000 != 0 {
        at += 2;
    }
    at += 4;
    if flags & 0x0800 != 0 {
        at += 4;
    }
    if flags & 0x0200 != 0 {
        at += 2 + usize::from(be16(b, at)?);
    }
    link::chain(Next::Ppp(b.get(at..)?))
}

/// An L2TPv3 data session header: a non-zero session ID (zero is a control message), a
/// cookie of 0, 4 or 8 bytes and an optional 4-byte sublayer, all set by configuration
/// and not on the wire; then, for the Ethernet pseudowire, a frame. Each layout is tried
/// and the first that holds an Ethernet frame with a well-formed IP packet wins.
fn l2tpv3_session(b: &[u8]) -> Option<L3<'_>> {
    if be32(b, 0)? == 0 {
        return None;
    }
    [4, 8, 12, 16].into_iter().find_map(|at| {
        let l3 = link::chain(Next::Ethernet(b.get(at..)?))?;
        let ok = match l3 {
            L3::V4(p) => super::ip::parse_v4(p).is_some(),
            L3::V6(p) => super::ip::parse_v6(p).is_some(),
        };
        ok.then_some(l3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testutil::{ether, ipv4, ipv6, udp};

    pub(super) fn inner4() -> Vec<u8> {
        ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp(1, 53, b"dns"))
    }

    fn inner6() -> Vec<u8> {
        ipv6([1; 16], [2; 16], 17, &udp(1, 53, b"dns"))
    }

    #[test]
    fn path_stops_at_max_depth() {
        let mut p = Path::default();
        for _ in 0..MAX_DEPTH {
            p = p.push(Tunnel::IpIp).unwrap();
        }
        assert_eq!(p.to_vec().len(), MAX_DEPTH);
        assert_eq!(p.push(Tunnel::Gre), None);
        assert_eq!(
            Path::default().push(Tunnel::Vxlan).unwrap().to_vec(),
            vec![Tunnel::Vxlan]
        );
    }

    #[test]
    fn ip_in_ip_checks_the_version() {
        let v4 = inner4();
        assert_eq!(
            over_ip(PROTO_IPIP, &v4),
            Some((Tunnel::IpIp, L3::V4(&v4[..])))
        );
        assert_eq!(over_ip(PROTO_IPIP, &inner6()), None);
        assert_eq!(over_ip(PROTO_IPV6, &v4), None);
        assert_eq!(over_ip(PROTO_IPV6, &[]), None);
    }

    #[test]
    fn udp_tunnels_by_port() {
        let v4 = inner4();
        let frame = ether(0x0800, &v4);
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        vx.extend_from_slice(&frame);
        assert_eq!(
            over_udp(1, PORT_VXLAN, &vx),
            Some((Tunnel::Vxlan, L3::V4(&v4[..])))
        );
        // From port 4789 is not VXLAN; nor is a header without the I flag.
        assert_eq!(over_udp(PORT_VXLAN, 1, &vx), None);
        vx[0] = 0;
        assert_eq!(over_udp(1, PORT_VXLAN, &vx), None);
        // GENEVE: option length counted; version 1 refused.
        let mut gn = vec![0x01, 0, 0x08, 0x00, 0, 0, 1, 0, 0xaa, 0xbb, 0xcc, 0xdd];
        gn.extend_from_slice(&v4);
        assert_eq!(
            over_udp(9, PORT_GENEVE, &gn),
            Some((Tunnel::Geneve, L3::V4(&v4[..])))
        );
        gn[0] |= 0x40;
        assert_eq!(over_udp(9, PORT_GENEVE, &gn), None);
        assert_eq!(over_udp(9, 10, &vx), None);
    }

    #[test]
    fn gtpu_extension_headers_are_bounded() {
        let v6 = inner6();
        let len = u16::try_from(v6.len() + 8).unwrap().to_be_bytes();
        let mut g = vec![0x34, 0xff, len[0], len[1], 0, 0, 0, 1];
        g.extend_from_slice(&[0, 0, 0, 0x85, 1, 0, 0, 0]);
        g.extend_from_slice(&v6);
        assert_eq!(
            over_udp(PORT_GTPU, PORT_GTPU, &g),
            Some((Tunnel::GtpU, L3::V6(&v6[..])))
        );
        // An extension header of length 0 would never end.
        let mut zero = g.clone();
        zero[12] = 0;
        assert_eq!(over_udp(PORT_GTPU, 1, &zero), None);
        // Signalling (echo request), and GTP version 2, are not user data.
        let mut echo = g.clone();
        echo[1] = 1;
        assert_eq!(over_udp(PORT_GTPU, 1, &echo), None);
        let mut v2 = g.clone();
        v2[0] = 0x48;
        assert_eq!(over_udp(PORT_GTPU, 1, &v2), None);
    }

    #[test]
    fn teredo_only_takes_a_whole_ipv6_packet() {
        let v6 = inner6();
        assert_eq!(
            over_udp(PORT_TEREDO, 1, &v6),
            Some((Tunnel::Teredo, L3::V6(&v6[..])))
        );
        let mut auth = vec![0, 1, 2, 0, 0xaa, 0xbb];
        auth.extend_from_slice(&[0; 9]);
        auth.extend_from_slice(&v6);
        assert_eq!(
            over_udp(1, PORT_TEREDO, &auth),
            Some((Tunnel::Teredo, L3::V6(&v6[..])))
        );
        // Trailing bytes, a cut packet, IPv4: not Teredo.
        assert_eq!(
            over_udp(1, PORT_TEREDO, &[v6.clone(), vec![0]].concat()),
            None
        );
        assert_eq!(over_udp(1, PORT_TEREDO, &v6[..50]), None);
        assert_eq!(over_udp(1, PORT_TEREDO, &inner4()), None);
    }

    #[test]
    fn l2tp_control_messages_and_versions() {
        let v4 = inner4();
        let mut l = vec![0x00, 0x02, 0, 1, 0, 1, 0xff, 0x03, 0x00, 0x21];
        l.extend_from_slice(&v4);
        assert_eq!(
            over_udp(PORT_L2TP, 1, &l),
            Some((Tunnel::L2tp, L3::V4(&v4[..])))
        );
        let mut control = l.clone();
        control[0] = 0xc8;
        assert_eq!(over_udp(PORT_L2TP, 1, &control), None);
        // Offset field: size 2, then 2 bytes of padding.
        let mut off = vec![0x02, 0x02, 0, 1, 0, 1, 0, 2, 0, 0, 0xff, 0x03, 0x00, 0x21];
        off.extend_from_slice(&v4);
        assert_eq!(
            over_udp(1, PORT_L2TP, &off),
            Some((Tunnel::L2tp, L3::V4(&v4[..])))
        );
        // L2TPv3 session 0 is a control message.
        let mut v3 = vec![0, 0, 0, 0];
        v3.extend_from_slice(&ether(0x0800, &v4));
        assert_eq!(over_ip(PROTO_L2TP, &v3), None);
        v3[3] = 7;
        assert_eq!(
            over_ip(PROTO_L2TP, &v3),
            Some((Tunnel::L2tp, L3::V4(&v4[..])))
        );
    }

    #[test]
    fn every_prefix_is_handled() {
        let v4 = inner4();
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        vx.extend_from_slice(&ether(0x0800, &v4));
        for n in 0..vx.len() {
            let _ = over_udp(1, PORT_VXLAN, &vx[..n]);
            let _ = over_udp(PORT_GTPU, 1, &vx[..n]);
            let _ = over_udp(PORT_TEREDO, 1, &vx[..n]);
            let _ = over_udp(PORT_L2TP, 1, &vx[..n]);
            let _ = over_ip(PROTO_GRE, &vx[..n]);
            let _ = over_ip(PROTO_L2TP, &vx[..n]);
        }
    }
}
