//! Batched UDP receive: recvmmsg(2) behind a small safe interface (sending is
//! send.rs's), and the socket address conversions both use.
//!
//! [`RecvRing`] owns a ring of receive buffers, allocated once: one call fills up to
//! its number of slots with datagrams, which are then read in place (no copy, no
//! allocation per datagram).
//!
//! Destinations: a [`RecvRing::with_dst`] ring has a control buffer per slot, where
//! the kernel says where each datagram to a wildcard listener was sent; the control
//! messages are pktinfo.rs's.
//!
//! Why a short batch ends the reading of a socket: mio registers every socket
//! edge-triggered (EPOLLET), and the kernel reports an edge-triggered socket again
//! whenever its wait queue is woken after `epoll_wait` collected it, i.e. for every
//! datagram (and every ICMP error) that arrives later, whether or not the queue was
//! empty. recvmmsg with MSG_DONTWAIT stops early only when its next receive finds the
//! queue empty (EAGAIN) or an error pending; a datagram arriving after that wakes the
//! queue and is reported by the next poll, and an error found after some datagrams is
//! kept on the socket (sk_err) and returned, before any datagram, by the next call.
//! Reading until EAGAIN would only add one system call per turn. The tests below check
//! both halves on real sockets.
//!
//! Guarantees: no panic; a datagram longer than its slot is reported `truncated` (the
//! caller drops it, never parses a prefix).
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::ptr;

use super::pktinfo::{Controls, Dst};

/// Most datagrams one system call moves.
pub const BATCH: usize = 32;

const NAME_LEN: libc::socklen_t = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// One received datagram, read in place.
#[derive(Debug)]
pub struct Datagram<'a> {
    pub bytes: &'a [u8],
    /// The sender (`None` for an address family other than IPv4 and IPv6).
    pub from: Option<SocketAddr>,
    /// Longer than the slot: `bytes` is only its beginning, and must be dropped.
    pub truncated: bool,
}

/// Receive buffers and the headers that point into them, built once.
pub struct RecvRing {
    slot_len: usize,
    /// The buffers, `slot_len` octets per slot, reached only through `base` once built.
    _bufs: Vec<u8>,
    base: *mut u8,
    _iov: Vec<libc::iovec>,
    _names: Vec<libc::sockaddr_storage>,
    names_base: *const libc::sockaddr_storage,
    /// Control buffers, one per slot (none in a ring without destinations).
    control: Controls,
    hdrs: Vec<libc::mmsghdr>,
    /// Slots filled by the last receive. Valid values: 0..=hdrs.len(); every header
    /// past the first `filled.max(1)` holds the sizes `recv` gives.
    filled: usize,
}

// SAFETY: the raw pointers held (in `base`, `names_base`, `control`, `_iov` and
// `hdrs`) point only into the heap blocks of the vectors owned by the same value, which
// never grow or move; nothing else refers to them.
unsafe impl Send for RecvRing {}

impl RecvRing {
    /// A ring of `slots` (1..=[`BATCH`]) buffers of `slot_len` (≥ 1) octets each.
    pub fn new(slots: usize, slot_len: usize) -> RecvRing {
        let slots = slots.clamp(1, BATCH);
        let slot_len = slot_len.max(1);
        let mut bufs = vec![0u8; slots * slot_len];
        let base = bufs.as_mut_ptr();
        // SAFETY: sockaddr_storage is plain data, valid when zeroed.
        let mut names = vec![unsafe { mem::zeroed::<libc::sockaddr_storage>() }; slots];
        let names_ptr = names.as_mut_ptr();
        let mut iov: Vec<libc::iovec> = (0..slots)
            .map(|i| libc::iovec {
                // SAFETY: i * slot_len < slots * slot_len, inside `bufs`.
                iov_base: unsafe { base.add(i * slot_len) }.cast(),
                iov_len: slot_len,
            })
            .collect();
        let iov_ptr = iov.as_mut_ptr();
        let hdrs = (0..slots)
            .map(|i| {
                // SAFETY: mmsghdr is plain data (null pointers, zero lengths) when zeroed.
                let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
                // SAFETY: i < slots, the length of `names` and `iov`.
                h.msg_hdr.msg_name = unsafe { names_ptr.add(i) }.cast();
                h.msg_hdr.msg_namelen = NAME_LEN;
                h.msg_hdr.msg_iov = unsafe { iov_ptr.add(i) };
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        RecvRing {
            slot_len,
            _bufs: bufs,
            base,
            _iov: iov,
            names_base: names.as_ptr(),
            _names: names,
            control: Controls::none(),
            hdrs,
            filled: 0,
        }
    }

    /// As [`new`](Self::new), with a control buffer per slot: after a
    /// [`recv`](Self::recv) on a socket set with
    /// [`set_recv_dst`](super::pktinfo::set_recv_dst), [`dst`](Self::dst) tells each
    /// datagram's destination (on another socket, none).
    pub fn with_dst(slots: usize, slot_len: usize) -> RecvRing {
        let mut ring = RecvRing::new(slots, slot_len);
        ring.control = Controls::attach(&mut ring.hdrs);
        ring
    }

    /// Number of slots: a receive that fills fewer has emptied the socket's queue.
    pub fn slots(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives up to [`slots`](Self::slots) datagrams without blocking: `Ok(n)` with
    /// n ≥ 1, or the error (`WouldBlock` when there was nothing to read). Datagrams
    /// of an earlier receive are gone.
    ///
    /// The kernel writes back each filled header's name length, flags and control
    /// length (0 on a socket that reports no destination, else what the message
    /// took), and leaves the others as they were: only the headers the last receive
    /// filled are given their sizes back (the first too, in case a failed call touched
    /// it), so that every header offers its whole control buffer to each receive, in a
    /// ring with them, without rewriting all of them each time.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        let control_len = self.control.len();
        for h in self.hdrs.iter_mut().take(self.filled.max(1)) {
            h.msg_hdr.msg_namelen = NAME_LEN;
            h.msg_hdr.msg_flags = 0;
            h.msg_hdr.msg_controllen = control_len as _;
            h.msg_len = 0;
        }
        self.filled = 0;
        let vlen = self.hdrs.len() as libc::c_uint;
        // SAFETY: every header points to one iovec of `slot_len` octets inside the
        // buffers and to one sockaddr_storage with its size as name length, all owned
        // by `self` and alive for the call; `vlen` is the number of headers. A header
        // with a control length (≤ CONTROL_LEN, 0 in a ring without buffers) points
        // to its slot's control buffer, owned likewise (pktinfo.rs).
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT as _,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = (n as usize).min(self.hdrs.len());
        Ok(self.filled)
    }

    /// Datagram `i` (< the count the last [`recv`](Self::recv) returned).
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.filled {
            return None;
        }
        let h = self.hdrs.get(i)?;
        let len = (h.msg_len as usize).min(self.slot_len);
        // SAFETY: slot i lies inside the buffers (i < slots); the kernel wrote `len`
        // ≤ slot_len octets of it, and the rest is initialised (zeroed at creation).
        // The shared borrow of `self` keeps `recv` from writing while this lives.
        let bytes = unsafe { std::slice::from_raw_parts(self.base.add(i * self.slot_len), len) };
        // SAFETY: i < slots, the length of `names`; read through the pointer the
        // kernel wrote through.
        let name = unsafe { &*self.names_base.add(i) };
        Some(Datagram {
            bytes,
            from: to_socket_addr(name, h.msg_hdr.msg_namelen),
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }

    /// Where datagram `i` was sent, if it was read on a socket set with
    /// [`set_recv_dst`](super::pktinfo::set_recv_dst) by a ring with control buffers
    /// and the kernel said (`None` otherwise).
    pub fn dst(&self, i: usize) -> Option<Dst> {
        if i >= self.filled {
            return None;
        }
        self.control.dst(i, self.hdrs.get(i)?)
    }
}

/// Writes `addr` as a sockaddr_in or sockaddr_in6 into `out`; returns its length.
pub(super) fn from_socket_addr(
    addr: SocketAddr,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { ptr::from_mut(out).cast::<libc::sockaddr_in>().write(sin) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { ptr::from_mut(out).cast::<libc::sockaddr_in6>().write(sin6) };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a sockaddr_in or sockaddr_in6 the kernel wrote (`len` octets of it).
fn to_socket_addr(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(name.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says sockaddr_in, which the storage is large and
            // aligned enough for.
            let sin = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            let flow = u32::from_be(sin6.sin6_flowinfo);
            Some(SocketAddrV6::new(ip, port, flow, sin6.sin6_scope_id).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdp;
    use std::time::Duration;

    use mio::net::UdpSocket;
    use mio::{Events, Interest, Poll, Token};

    fn pair(local: &str) -> (UdpSocket, StdUdp) {
        let rx = UdpSocket::bind(local.parse().unwrap()).unwrap();
        let tx = StdUdp::bind(local).unwrap();
        (rx, tx)
    }

    fn send_n(tx: &StdUdp, to: SocketAddr, n: usize) {
        for i in 0..n {
            tx.send_to(&[i as u8; 20], to).unwrap();
        }
    }

    /// Polls until `token` is reported readable or `limit` passes.
    fn readable(poll: &mut Poll, token: Token, limit: Duration) -> bool {
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(limit)).unwrap();
        events.iter().any(|e| e.token() == token && e.is_readable())
    }

    #[test]
    fn receives_datagrams_and_senders_ipv4_and_ipv6() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let (rx, tx) = pair(local);
            send_n(&tx, rx.local_addr().unwrap(), 3);
            let mut ring = RecvRing::new(8, 512);
            assert_eq!(ring.recv(&rx).unwrap(), 3, "{local}");
            for i in 0..3 {
                let d = ring.get(i).unwrap();
                assert_eq!(d.bytes, &[i as u8; 20]);
                assert_eq!(d.from, Some(tx.local_addr().unwrap()));
                assert!(!d.truncated);
            }
            assert!(ring.get(3).is_none());
            let e = ring.recv(&rx).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            assert!(
                ring.get(0).is_none(),
                "a failed receive leaves nothing to read"
            );
        }
    }

    #[test]
    fn flags_a_datagram_longer_than_its_slot() {
        let (rx, tx) = pair("127.0.0.1:0");
        let to = rx.local_addr().unwrap();
        tx.send_to(&[7; 100], to).unwrap();
        tx.send_to(&[8; 16], to).unwrap();
        let mut ring = RecvRing::new(4, 16);
        assert_eq!(ring.recv(&rx).unwrap(), 2);
        let long = ring.get(0).unwrap();
        assert!(long.truncated);
        assert_eq!(long.bytes, &[7; 16], "only the slot's worth is there");
        let fits = ring.get(1).unwrap();
        assert!(!fits.truncated);
        assert_eq!(fits.bytes, &[8; 16]);
        // The flag does not stick to the slot.
        tx.send_to(&[9; 3], to).unwrap();
        assert_eq!(ring.recv(&rx).unwrap(), 1);
        assert!(!ring.get(0).unwrap().truncated);
    }

    #[test]
    fn a_full_batch_leaves_the_rest_for_the_next_receive() {
        let (rx, tx) = pair("127.0.0.1:0");
        send_n(&tx, rx.local_addr().unwrap(), 6);
        let mut ring = RecvRing::new(4, 64);
        assert_eq!(ring.slots(), 4);
        assert_eq!(ring.recv(&rx).unwrap(), 4);
        assert_eq!(ring.recv(&rx).unwrap(), 2);
        assert_eq!(ring.get(1).unwrap().bytes, &[5; 20]);
    }

    /// The reasoning of the module docs: after a short batch, no read until EAGAIN is
    /// needed, because a datagram arriving later is reported by the next poll.
    #[test]
    fn edge_triggered_poll_reports_data_arriving_after_a_short_batch() {
        let (mut rx, tx) = pair("127.0.0.1:0");
        let to = rx.local_addr().unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut rx, Token(3), Interest::READABLE)
            .unwrap();
        let mut ring = RecvRing::new(8, 64);
        for round in 0..20 {
            send_n(&tx, to, 1 + round % 3);
            assert!(
                readable(&mut poll, Token(3), Duration::from_secs(2)),
                "{round}"
            );
            let n = ring.recv(&rx).unwrap();
            assert_eq!(n, 1 + round % 3, "all queued datagrams in one short batch");
            // Stopped without reading EAGAIN: nothing new, so no event...
            assert!(!readable(&mut poll, Token(3), Duration::from_millis(20)));
        }
        // ...and a datagram sent from another thread while the loop waits wakes it.
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            send_n(&tx, to, 1);
        });
        assert!(readable(&mut poll, Token(3), Duration::from_secs(2)));
        assert_eq!(ring.recv(&rx).unwrap(), 1);
        t.join().unwrap();
    }

    /// An ICMP error on a connected socket is returned before the datagrams queued
    /// with it, which stay for the next receive.
    #[test]
    fn a_pending_error_comes_first_and_keeps_the_datagrams() {
        let peer = StdUdp::bind("127.0.0.1:0").unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let mut sock = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        sock.connect(peer_addr).unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut sock, Token(5), Interest::READABLE)
            .unwrap();
        send_n(&peer, sock.local_addr().unwrap(), 2);
        drop(peer); // the port is closed: the next datagram to it draws an ICMP error
        sock.send(b"ping").unwrap();
        assert!(readable(&mut poll, Token(5), Duration::from_secs(2)));
        let mut ring = RecvRing::new(8, 64);
        let e = ring.recv(&sock).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(ring.recv(&sock).unwrap(), 2);
        assert_eq!(ring.get(0).unwrap().from, Some(peer_addr));
    }

    #[test]
    fn addresses_round_trip() {
        let mut s = unsafe { mem::zeroed::<libc::sockaddr_storage>() };
        for a in ["192.0.2.7:5353", "[2001:db8::1]:53", "[fe80::1%3]:853"] {
            let a: SocketAddr = a.parse().unwrap();
            let len = from_socket_addr(a, &mut s);
            assert_eq!(to_socket_addr(&s, len), Some(a));
            assert_eq!(to_socket_addr(&s, len - 1), None, "short name");
        }
    }
}
