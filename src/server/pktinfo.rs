//! Where a datagram to a wildcard listener (`0.0.0.0`, `[::]`) was sent, and the source
//! its answer goes out from: IP_PKTINFO and IPV6_PKTINFO control messages, written and
//! read here (the receive ring is mmsg.rs's, the batches send.rs's).
//!
//! A listener bound to a wildcard address ([`set_recv_dst`]) learns from the kernel
//! where each datagram was sent (a control message, read into a buffer per slot of a
//! [`RecvRing::with_dst`](super::mmsg::RecvRing::with_dst) ring), and its answer goes
//! out from there (the same message, given to every datagram of a batch or to one
//! alone: send.rs's `SendBatch`). Without that, the kernel picks the source of an
//! answer by its route, and a client that asked another of the host's addresses drops
//! it.
//!
//! Written by hand rather than with nix's `ControlMessage` / `ControlMessageOwned`:
//! nix reads control messages only from its own `recvmsg` / `recvmmsg`, whose reused
//! headers are not given their buffers' lengths back between calls (a slot that once
//! received no control message gets none after), and its `sendmsg` allocates the
//! control buffer on every call.
//!
//! Guarantees: no panic; control data is read only within what the kernel wrote, and a
//! destination it does not report whole is `None`.
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::ptr;

/// Room for the control messages of a datagram: the one asked for here, IP_PKTINFO or
/// IPV6_PKTINFO (40 octets at most), and a header to spare, should the kernel ever
/// put another first.
const CONTROL_LEN: usize = 64;

// SAFETY: CMSG_SPACE is arithmetic on its argument.
const _: () = assert!(
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in_pktinfo>() as libc::c_uint) } as usize
        + mem::size_of::<libc::cmsghdr>()
        <= CONTROL_LEN
        && unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in6_pktinfo>() as libc::c_uint) }
            as usize
            <= CONTROL_LEN
        && mem::align_of::<libc::cmsghdr>() <= mem::align_of::<Control>()
);

/// A control buffer (msg_control), aligned for the cmsghdr at its start.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct Control([u8; CONTROL_LEN]);

pub(super) const NO_CONTROL: Control = Control([0; CONTROL_LEN]);

/// Where a datagram to a wildcard listener (`0.0.0.0`, `[::]`) was sent: the local
/// address its answer must come from, and the interface it came in on (0: unknown),
/// which an IPv6 link-local address needs to mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dst {
    pub ip: IpAddr,
    pub ifindex: u32,
}

/// The control buffers of a receive ring, one per slot, each header pointing to its
/// slot's (none in a ring without destinations).
pub(super) struct Controls {
    /// The buffers, reached only through `base` once built.
    bufs: Vec<Control>,
    base: *const Control,
    /// The msg_controllen each receive offers. Valid values: 0 (no buffers), or
    /// CONTROL_LEN when every header points to its slot's buffer.
    len: usize,
}

impl Controls {
    /// No buffers: a receive offers none, and no destination is read.
    pub(super) fn none() -> Controls {
        Controls {
            bufs: Vec::new(),
            base: ptr::null(),
            len: 0,
        }
    }

    /// A buffer for each of `hdrs`, which are pointed to them and offered them whole.
    pub(super) fn attach(hdrs: &mut [libc::mmsghdr]) -> Controls {
        let mut bufs = vec![NO_CONTROL; hdrs.len()];
        let base = bufs.as_mut_ptr();
        for (i, h) in hdrs.iter_mut().enumerate() {
            // SAFETY: i < hdrs.len(), the length of `bufs`.
            h.msg_hdr.msg_control = unsafe { base.add(i) }.cast();
            h.msg_hdr.msg_controllen = CONTROL_LEN as _;
        }
        Controls {
            bufs,
            base,
            len: CONTROL_LEN,
        }
    }

    /// The control length each receive offers: 0 (no buffers), or CONTROL_LEN.
    #[inline(always)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Where the datagram of header `h`, slot `i` of the ring, was sent, if the kernel
    /// said (`None` otherwise).
    pub(super) fn dst(&self, i: usize, h: &libc::mmsghdr) -> Option<Dst> {
        // A socket without IP_PKTINFO / IPV6_RECVPKTINFO writes no control data (and a
        // ring without buffers offers none): the length is 0, nothing to look at.
        #[allow(clippy::unnecessary_cast)] // usize with glibc, socklen_t with musl
        let len = h.msg_hdr.msg_controllen as usize;
        if len == 0 || i >= self.bufs.len() {
            return None;
        }
        // SAFETY: i < the number of buffers; read through the pointer the kernel wrote
        // through.
        decode_dst(unsafe { &*self.base.add(i) }, len)
    }
}

/// Asks the kernel to tell where each datagram on `socket` was sent (IP_PKTINFO, or
/// IPV6_RECVPKTINFO if `ipv6`), for a listener bound to a wildcard address.
pub fn set_recv_dst(socket: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    let on: libc::c_int = 1;
    // SAFETY: the option value is a c_int alive for the call, with its size as length.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            ptr::from_ref(&on).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes into `control` the control message that makes a datagram go out from `src`,
/// as dnsmasq and Unbound do: IP_PKTINFO with `src` as `ipi_spec_dst` and interface 0
/// (the route picks it, as for any datagram), or IPV6_PKTINFO with `src` and its
/// interface (a link-local address means nothing without it). Returns the length to
/// give as msg_controllen.
pub(super) fn encode_src(src: Dst, control: &mut Control) -> usize {
    let cmsg = ptr::from_mut(control).cast::<libc::cmsghdr>();
    let (level, kind, len) = match src.ip {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            mem::size_of::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            mem::size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: the buffer is aligned for a cmsghdr and holds CMSG_SPACE(len) ≤
    // CONTROL_LEN octets (checked at compile time): the header, then `len` octets of
    // data at CMSG_DATA, written unaligned as the kernel's types may not be.
    unsafe {
        let mut hdr: libc::cmsghdr = mem::zeroed();
        hdr.cmsg_len = libc::CMSG_LEN(len as libc::c_uint) as _;
        hdr.cmsg_level = level;
        hdr.cmsg_type = kind;
        cmsg.write(hdr);
        let data = libc::CMSG_DATA(cmsg);
        match src.ip {
            IpAddr::V4(ip) => data
                .cast::<libc::in_pktinfo>()
                .write_unaligned(libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(ip.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                }),
            IpAddr::V6(ip) => data
                .cast::<libc::in6_pktinfo>()
                .write_unaligned(libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: src.ifindex,
                }),
        }
        libc::CMSG_SPACE(len as libc::c_uint) as usize
    }
}

/// Reads a datagram's destination from the first `len` octets of `control` (its
/// msg_controllen, as the kernel wrote it): the `ipi_spec_dst` of an IP_PKTINFO
/// message (the local address it was for: a broadcast's is the interface's own), or
/// the address of an IPV6_PKTINFO message, with the interface. Bounded: at most the
/// headers that fit in the buffer are looked at, and only a message lying whole within
/// `len` (capped at the buffer) is read; none found gives `None`.
fn decode_dst(control: &Control, len: usize) -> Option<Dst> {
    let len = len.min(CONTROL_LEN);
    let start = ptr::from_ref(control) as usize;
    // SAFETY: plain data when zeroed; only the control fields are set, for the walk.
    let mut h: libc::msghdr = unsafe { mem::zeroed() };
    h.msg_control = ptr::from_ref(control).cast_mut().cast();
    h.msg_controllen = len as _;
    // SAFETY: CMSG_FIRSTHDR looks at the header's control fields only: the start of
    // the buffer if a cmsghdr fits in `len` octets, else null.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&h) };
    for _ in 0..CONTROL_LEN / mem::size_of::<libc::cmsghdr>() {
        if cmsg.is_null() {
            return None;
        }
        // SAFETY: FIRSTHDR and NXTHDR give only an aligned header lying whole within
        // the first `len` octets of the buffer.
        let hdr = unsafe { cmsg.read() };
        let at = (cmsg as usize).saturating_sub(start);
        // SAFETY: arithmetic only.
        let data_len =
            (hdr.cmsg_len as usize).saturating_sub(unsafe { libc::CMSG_LEN(0) } as usize);
        if at.saturating_add(hdr.cmsg_len as usize) > len {
            // Cut short (MSG_CTRUNC), or not a message: nothing after it either.
            return None;
        }
        // SAFETY (both reads): the message lies whole within `len` octets of the
        // buffer and its data is at least the size read, unaligned.
        match (hdr.cmsg_level, hdr.cmsg_type) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO)
                if data_len >= mem::size_of::<libc::in_pktinfo>() =>
            {
                let p = unsafe {
                    libc::CMSG_DATA(cmsg)
                        .cast::<libc::in_pktinfo>()
                        .read_unaligned()
                };
                return Some(Dst {
                    ip: Ipv4Addr::from(p.ipi_spec_dst.s_addr.to_ne_bytes()).into(),
                    ifindex: u32::try_from(p.ipi_ifindex).unwrap_or(0),
                });
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                if data_len >= mem::size_of::<libc::in6_pktinfo>() =>
            {
                let p = unsafe {
                    libc::CMSG_DATA(cmsg)
                        .cast::<libc::in6_pktinfo>()
                        .read_unaligned()
                };
                return Some(Dst {
                    ip: Ipv6Addr::from(p.ipi6_addr.s6_addr).into(),
                    ifindex: p.ipi6_ifindex,
                });
            }
            _ => {}
        }
        // SAFETY: `cmsg` is a header within the buffer (above) whose length keeps it
        // within `len` octets (so NXTHDR's arithmetic cannot overflow); NXTHDR returns
        // the next one only if a whole header of it fits within them, else null.
        cmsg = unsafe { libc::CMSG_NXTHDR(&h, cmsg) };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, UdpSocket as StdUdp};
    use std::time::Duration;

    use mio::net::UdpSocket;

    use crate::server::mmsg::RecvRing;
    use crate::server::send::{Outgoing, SendBatch};

    fn dst(ip: &str, ifindex: u32) -> Dst {
        Dst {
            ip: ip.parse().unwrap(),
            ifindex,
        }
    }

    /// The header fields of the control message in `c`: (cmsg_len, level, type).
    fn header_of(c: &Control) -> (usize, i32, i32) {
        let h = unsafe { ptr::from_ref(c).cast::<libc::cmsghdr>().read() };
        (h.cmsg_len as usize, h.cmsg_level, h.cmsg_type)
    }

    fn set_header(c: &mut Control, len: usize, level: i32, kind: i32) {
        let cmsg = ptr::from_mut(c).cast::<libc::cmsghdr>();
        unsafe {
            (*cmsg).cmsg_len = len as _;
            (*cmsg).cmsg_level = level;
            (*cmsg).cmsg_type = kind;
        }
    }

    #[test]
    fn pktinfo_round_trips_ipv4_and_ipv6() {
        let hdr = mem::size_of::<libc::cmsghdr>();
        for (src, level, kind, data) in [
            (dst("127.0.0.2", 0), libc::IPPROTO_IP, libc::IP_PKTINFO, 12),
            (
                dst("2001:db8::53", 7),
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                20,
            ),
            (
                dst("fe80::1", 3),
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                20,
            ),
        ] {
            let mut c = NO_CONTROL;
            let len = encode_src(src, &mut c);
            assert_eq!(header_of(&c), (hdr + data, level, kind), "{src:?}");
            assert_eq!(len, hdr + data.next_multiple_of(8));
            assert!(len <= CONTROL_LEN);
            assert_eq!(decode_dst(&c, len), Some(src));
            // As the kernel gives it: the length written, without the last padding.
            assert_eq!(decode_dst(&c, hdr + data), Some(src));
        }
    }

    /// IPv4: what the kernel reports as the local address (`ipi_spec_dst`) is read, and
    /// what goes out carries interface 0, whatever the query came in on.
    #[test]
    fn ipv4_pktinfo_reads_the_local_address_and_sends_no_interface() {
        let mut c = NO_CONTROL;
        let len = encode_src(dst("192.0.2.1", 9), &mut c);
        let p = unsafe {
            libc::CMSG_DATA(ptr::from_ref(&c).cast())
                .cast::<libc::in_pktinfo>()
                .read_unaligned()
        };
        assert_eq!(p.ipi_ifindex, 0);
        assert_eq!(p.ipi_spec_dst.s_addr.to_ne_bytes(), [192, 0, 2, 1]);
        // As received: header address 255.255.255.255 (a broadcast), local address
        // 192.0.2.1 on interface 4.
        let data = unsafe { libc::CMSG_DATA(ptr::from_mut(&mut c).cast()) };
        let got = libc::in_pktinfo {
            ipi_ifindex: 4,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from_ne_bytes([192, 0, 2, 1]),
            },
            ipi_addr: libc::in_addr { s_addr: u32::MAX },
        };
        unsafe { data.cast::<libc::in_pktinfo>().write_unaligned(got) };
        assert_eq!(decode_dst(&c, len), Some(dst("192.0.2.1", 4)));
    }

    #[test]
    fn odd_control_data_gives_no_destination() {
        let hdr = mem::size_of::<libc::cmsghdr>();
        let mut good = NO_CONTROL;
        let len = encode_src(dst("127.0.0.2", 0), &mut good);
        let whole = hdr + 12;
        // Every length short of the whole message: nothing (MSG_CTRUNC).
        for n in 0..whole {
            assert_eq!(decode_dst(&good, n), None, "{n} octets");
        }
        // The kernel's length past the buffer is capped at it.
        assert!(decode_dst(&good, usize::MAX).is_some());
        let cases: [(usize, i32, i32); 6] = [
            (hdr + 11, libc::IPPROTO_IP, libc::IP_PKTINFO), // data too short
            (hdr + 19, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO), // likewise
            (whole, libc::IPPROTO_IP, libc::IP_TTL),        // another kind
            (whole, libc::IPPROTO_IPV6, libc::IP_PKTINFO),  // level and type mixed
            (0, libc::IPPROTO_IP, libc::IP_PKTINFO),        // a length of 0 ends the walk
            (usize::MAX, libc::IPPROTO_IP, libc::IP_PKTINFO), // past the end
        ];
        for (cmsg_len, level, kind) in cases {
            let mut c = good;
            set_header(&mut c, cmsg_len, level, kind);
            assert_eq!(decode_dst(&c, len), None, "{cmsg_len} {level} {kind}");
        }
        // Garbage of every kind: no panic, and whatever is read lies within the buffer.
        let mut c = NO_CONTROL;
        for seed in 0..2000u32 {
            for (i, b) in c.0.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32) >> 7) as u8;
            }
            let _ = decode_dst(&c, (seed as usize) % (CONTROL_LEN + 8));
        }
    }

    /// A message of another kind first, then the PKTINFO one: the walk finds it.
    #[test]
    fn finds_pktinfo_after_another_message() {
        let hdr = mem::size_of::<libc::cmsghdr>();
        let mut c = NO_CONTROL;
        set_header(&mut c, hdr, libc::SOL_SOCKET, libc::SO_MARK); // no data
        let v4 = libc::in_pktinfo {
            ipi_ifindex: 1,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from_ne_bytes([10, 0, 0, 1]),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let second = ptr::from_mut(&mut c).cast::<u8>().wrapping_add(hdr);
        unsafe {
            let h = second.cast::<libc::cmsghdr>();
            (*h).cmsg_len = (hdr + 12) as _;
            (*h).cmsg_level = libc::IPPROTO_IP;
            (*h).cmsg_type = libc::IP_PKTINFO;
            libc::CMSG_DATA(h)
                .cast::<libc::in_pktinfo>()
                .write_unaligned(v4);
        }
        assert_eq!(decode_dst(&c, 2 * hdr + 12), Some(dst("10.0.0.1", 1)));
        assert_eq!(decode_dst(&c, 2 * hdr + 11), None, "the second cut short");
    }

    /// On a wildcard socket: each datagram's destination is read, and an answer sent
    /// from it (in a batch, and alone) comes from it; a ring on a socket bound to one
    /// address reads none.
    #[test]
    fn reads_destinations_and_sends_from_them_on_a_wildcard_socket() {
        let rx = UdpSocket::bind("0.0.0.0:0".parse().unwrap()).unwrap();
        set_recv_dst(&rx, false).unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = StdUdp::bind("127.0.0.1:0").unwrap();
        tx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for last in [2u8, 3, 1] {
            tx.send_to(&[last], SocketAddr::from(([127, 0, 0, last], port)))
                .unwrap();
        }
        let mut ring = RecvRing::with_dst(8, 64);
        assert_eq!(ring.recv(&rx).unwrap(), 3);
        let mut batch = SendBatch::new();
        let mut buf = [0u8; 8];
        for i in 0..3 {
            let d = ring.get(i).unwrap();
            let want: IpAddr = Ipv4Addr::new(127, 0, 0, d.bytes[0]).into();
            let got = ring.dst(i).unwrap();
            assert_eq!(got.ip, want);
            assert_ne!(got.ifindex, 0, "lo");
            // Two answers from each, in one sendmmsg.
            let answers: Vec<Outgoing> = (0..2)
                .map(|_| Outgoing {
                    to: d.from.unwrap(),
                    bytes: d.bytes.to_vec(),
                })
                .collect();
            let r = batch.send(&rx, &answers, Some(got));
            assert_eq!((r.sent, r.failed, r.calls), (2, 0, 1));
            for _ in 0..2 {
                let (_, from) = tx.recv_from(&mut buf).unwrap();
                assert_eq!(from, SocketAddr::from(([127, 0, 0, buf[0]], port)));
            }
        }
        // One alone (sendmsg), from another address.
        let alone = [Outgoing {
            to: tx.local_addr().unwrap(),
            bytes: vec![9],
        }];
        let r = batch.send(&rx, &alone, Some(dst("127.0.0.3", 0)));
        assert_eq!((r.sent, r.failed, r.calls), (1, 0, 1));
        let (_, from) = tx.recv_from(&mut buf).unwrap();
        assert_eq!(
            (buf[0], from),
            (9, SocketAddr::from(([127, 0, 0, 3], port)))
        );
        // No IP_PKTINFO: no destination, and the ring's next receive is not fooled by
        // what an earlier one left in its buffers.
        let plain = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        for b in [1, 2] {
            tx.send_to(&[b], plain.local_addr().unwrap()).unwrap();
        }
        assert_eq!(ring.recv(&plain).unwrap(), 2);
        assert!(ring.dst(0).is_none());
        assert!(ring.dst(1).is_none());
        assert!(ring.dst(2).is_none(), "not filled");
    }

    /// Receives of every kind and size in turn on one ring (plain, IPv4 and IPv6
    /// wildcard sockets): each header still offers its whole control buffer, so every
    /// destination is read whole, whatever an earlier receive wrote back.
    #[test]
    fn destinations_survive_receives_of_other_sizes_and_sockets() {
        let v4 = UdpSocket::bind("0.0.0.0:0".parse().unwrap()).unwrap();
        set_recv_dst(&v4, false).unwrap();
        let v6 = UdpSocket::bind("[::]:0".parse().unwrap()).unwrap();
        set_recv_dst(&v6, true).unwrap();
        let plain = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let tx4 = StdUdp::bind("127.0.0.1:0").unwrap();
        let tx6 = StdUdp::bind("[::1]:0").unwrap();
        let to4 = SocketAddr::from(([127, 0, 0, 1], v4.local_addr().unwrap().port()));
        let to6: SocketAddr = format!("[::1]:{}", v6.local_addr().unwrap().port())
            .parse()
            .unwrap();
        let to_plain = plain.local_addr().unwrap();
        let mut ring = RecvRing::with_dst(8, 64);
        // (socket, how many): a plain receive filling more than the next, then
        // wildcard ones of both families, larger than the receive before each.
        for (round, n) in [(0, 6), (0, 2), (1, 5), (2, 7), (1, 8), (0, 1), (2, 8)] {
            for b in 0..n {
                match round {
                    0 => tx4.send_to(&[b], to_plain),
                    1 => tx4.send_to(&[b], to4),
                    _ => tx6.send_to(&[b], to6),
                }
                .unwrap();
            }
            let got = match round {
                0 => ring.recv(&plain),
                1 => ring.recv(&v4),
                _ => ring.recv(&v6),
            };
            assert_eq!(got.unwrap(), n as usize, "{round} {n}");
            for i in 0..n as usize {
                let want = match round {
                    0 => None,
                    1 => Some(IpAddr::from([127, 0, 0, 1])),
                    _ => Some("::1".parse().unwrap()),
                };
                assert_eq!(ring.dst(i).map(|d| d.ip), want, "{round} {n} {i}");
            }
        }
    }
}
