//! Batched UDP I/O: recvmmsg(2) and sendmmsg(2) behind a small safe interface.
//!
//! [`RecvRing`] owns a ring of receive buffers, allocated once: one call fills up to
//! its number of slots with datagrams, which are then read in place (no copy, no
//! allocation per datagram). [`SendBatch`] sends a list of [`Outgoing`] datagrams in
//! calls of up to [`BATCH`] (one alone with sendto), carrying on past partial results.
//!
//! Destinations: a [`RecvRing::with_dst`] ring has a control buffer per slot, where
//! the kernel says where each datagram to a wildcard listener was sent, and a batch
//! can go out from such an address; the control messages are pktinfo.rs's.
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
//! caller drops it, never parses a prefix); send errors are returned per datagram.
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::ptr;

use super::pktinfo::{encode_src, Control, Controls, Dst, NO_CONTROL};

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

/// A datagram to send.
#[derive(Debug)]
pub struct Outgoing {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// What [`SendBatch::send`] did.
#[derive(Debug, Default)]
pub struct SendReport {
    pub sent: usize,
    /// Datagrams not sent (each counts as a send error).
    pub failed: usize,
    /// The last error met.
    pub error: Option<io::Error>,
    /// System calls made.
    pub calls: usize,
}

/// Notes in `report` the error of a call that sent nothing (errno set), given the
/// `left` datagrams still to send: returns how many of them are dropped, 0 if the call
/// is to be made again (EINTR), all for `WouldBlock`, else the one it was about.
#[cold]
fn failed(report: &mut SendReport, left: usize) -> usize {
    let e = io::Error::last_os_error();
    let skip = match e.kind() {
        io::ErrorKind::Interrupted => 0,
        io::ErrorKind::WouldBlock => left,
        _ => 1,
    };
    report.failed += skip;
    if skip > 0 {
        report.error = Some(e);
    }
    skip
}

/// Headers for sendmmsg, built once: each points to its own iovec and address slot,
/// and all to the one control buffer; a send only writes the buffer, the address, the
/// source if any and their lengths into them.
pub struct SendBatch {
    _iov: Vec<libc::iovec>,
    iov_base: *mut libc::iovec,
    _names: Vec<libc::sockaddr_storage>,
    names_base: *mut libc::sockaddr_storage,
    /// One buffer: the source of the datagrams of a call, if they have one, reached
    /// only through `control_ptr` once built.
    _control: Vec<Control>,
    control_ptr: *mut Control,
    /// `BATCH` headers. Valid values: header i points to iovec i, name i and the
    /// control buffer.
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers held point only into the vectors owned by the same value
// (which never grow or move) and, during a call only, into the caller's buffers.
unsafe impl Send for SendBatch {}

impl Default for SendBatch {
    fn default() -> SendBatch {
        SendBatch::new()
    }
}

impl SendBatch {
    pub fn new() -> SendBatch {
        let empty = libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = vec![empty; BATCH];
        // SAFETY: plain data, valid when zeroed.
        let mut names = vec![unsafe { mem::zeroed::<libc::sockaddr_storage>() }; BATCH];
        let mut control = vec![NO_CONTROL];
        let (iov_base, names_base) = (iov.as_mut_ptr(), names.as_mut_ptr());
        let control_ptr = control.as_mut_ptr();
        let hdrs = (0..BATCH)
            .map(|i| {
                // SAFETY: plain data when zeroed; i < BATCH, the length of the vectors.
                let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
                h.msg_hdr.msg_name = unsafe { names_base.add(i) }.cast();
                h.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = control_ptr.cast();
                h
            })
            .collect();
        SendBatch {
            _iov: iov,
            iov_base,
            _names: names,
            names_base,
            _control: control,
            control_ptr,
            hdrs,
        }
    }

    /// Sends every datagram of `msgs` on `socket`, in order, [`BATCH`] per call, from
    /// `from` if given (an IP_PKTINFO or IPV6_PKTINFO message, the same for all: see
    /// pktinfo.rs); one alone goes by sendto (sendmsg with a source). A call
    /// interrupted (EINTR) is made again; a partial result goes on from the first
    /// datagram not sent; an error drops the datagram it is about and the sending goes
    /// on, except `WouldBlock` (socket buffer full), which drops all the rest.
    #[inline(always)]
    pub fn send(
        &mut self,
        socket: &impl AsRawFd,
        msgs: &[Outgoing],
        from: Option<Dst>,
    ) -> SendReport {
        match msgs {
            // One answer (most turns below a burst): no batch call.
            [one] => self.send_one(socket, one, from),
            _ => self.send_all(socket, msgs, from),
        }
    }

    /// [`send`](Self::send) for one datagram: sendto, or sendmsg with header 0 when it
    /// has a source. Inlined, so that a caller without a source has only the sendto.
    #[inline(always)]
    fn send_one(&mut self, socket: &impl AsRawFd, m: &Outgoing, from: Option<Dst>) -> SendReport {
        let mut report = SendReport::default();
        let control_len = match from {
            // SAFETY: the buffer is owned by `self` and nothing else refers to it now.
            Some(src) => encode_src(src, unsafe { &mut *self.control_ptr }),
            None => 0,
        };
        let name_len = if control_len > 0 {
            self.fill(std::slice::from_ref(m), control_len);
            0
        } else {
            // SAFETY: name 0 lies inside `names`; written through the pointer header 0
            // holds.
            from_socket_addr(m.to, unsafe { &mut *self.names_base })
        };
        loop {
            report.calls += 1;
            let n = if control_len > 0 {
                let h = self.hdrs.as_ptr();
                // SAFETY: `hdrs` holds BATCH (≥ 1) headers; header 0 points to iovec 0
                // over the datagram (borrowed for the call), to name 0 and to the
                // control message encoded above, with their lengths (filled above); the
                // call only reads them.
                unsafe { libc::sendmsg(socket.as_raw_fd(), &(*h).msg_hdr, libc::MSG_DONTWAIT) }
            } else {
                // SAFETY: the datagram is borrowed for the call and name 0 holds an
                // address of `name_len` octets; the call only reads them.
                unsafe {
                    libc::sendto(
                        socket.as_raw_fd(),
                        m.bytes.as_ptr().cast(),
                        m.bytes.len(),
                        libc::MSG_DONTWAIT,
                        self.names_base.cast(),
                        name_len,
                    )
                }
            };
            // Any length, 0 included (an empty datagram), is the datagram sent.
            if n >= 0 {
                report.sent = 1;
                return report;
            }
            if failed(&mut report, 1) > 0 {
                return report;
            }
        }
    }

    /// [`send`](Self::send) for a batch (sendmmsg). Kept out of line: most sends are
    /// one datagram alone.
    #[inline(never)]
    fn send_all(
        &mut self,
        socket: &impl AsRawFd,
        msgs: &[Outgoing],
        from: Option<Dst>,
    ) -> SendReport {
        let mut report = SendReport::default();
        let control_len = match from {
            // SAFETY: the buffer is owned by `self` and nothing else refers to it now.
            Some(src) => encode_src(src, unsafe { &mut *self.control_ptr }),
            None => 0,
        };
        let mut rest = msgs;
        while !rest.is_empty() {
            let count = self.fill(rest, control_len);
            report.calls += 1;
            // SAFETY: the first `count` headers point to iovecs over buffers of `rest`
            // (borrowed for this call), to addresses encoded in `names` and to the
            // control message encoded above (length 0: none), with their lengths;
            // nothing else touches them until the call returns.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT as _,
                )
            };
            let skip = if n > 0 {
                report.sent += n as usize;
                n as usize
            } else {
                failed(&mut report, rest.len())
            };
            rest = rest.get(skip..).unwrap_or_default();
        }
        report
    }

    /// Points the first headers at the first [`BATCH`] datagrams of `msgs`, with
    /// `control_len` octets of the control buffer; returns their number.
    fn fill(&mut self, msgs: &[Outgoing], control_len: usize) -> usize {
        let mut count = 0;
        for (i, (m, h)) in msgs.iter().zip(self.hdrs.iter_mut()).enumerate() {
            // SAFETY: i < BATCH (the zip with `hdrs` stops there), inside both vectors;
            // written through the pointers the headers hold.
            unsafe {
                *self.iov_base.add(i) = libc::iovec {
                    iov_base: m.bytes.as_ptr().cast_mut().cast(),
                    iov_len: m.bytes.len(),
                };
                h.msg_hdr.msg_namelen = from_socket_addr(m.to, &mut *self.names_base.add(i));
            }
            h.msg_hdr.msg_controllen = control_len as _;
            count += 1;
        }
        count
    }
}

/// Writes `addr` as a sockaddr_in or sockaddr_in6 into `out`; returns its length.
fn from_socket_addr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
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
    fn sends_more_than_a_batch_in_order_ipv4_and_ipv6() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let rx = StdUdp::bind(local).unwrap();
            rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let tx = UdpSocket::bind(local.parse().unwrap()).unwrap();
            let to = rx.local_addr().unwrap();
            let msgs: Vec<Outgoing> = (0..BATCH + 8)
                .map(|i| Outgoing {
                    to,
                    bytes: vec![i as u8; 1 + i],
                })
                .collect();
            let mut batch = SendBatch::new();
            let r = batch.send(&tx, &msgs, None);
            assert_eq!((r.sent, r.failed, r.calls), (BATCH + 8, 0, 2), "{local}");
            let mut buf = [0u8; 128];
            for i in 0..BATCH + 8 {
                let (n, from) = rx.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &vec![i as u8; 1 + i][..]);
                assert_eq!(from, tx.local_addr().unwrap());
            }
        }
    }

    #[test]
    fn a_datagram_that_fails_is_skipped_and_the_rest_sent() {
        let rx = StdUdp::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = rx.local_addr().unwrap();
        // An IPv6 destination on an IPv4 socket cannot be sent to.
        let bad: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        let msgs = [
            Outgoing { to, bytes: vec![1] },
            Outgoing {
                to: bad,
                bytes: vec![2],
            },
            Outgoing { to, bytes: vec![3] },
        ];
        let r = SendBatch::new().send(&tx, &msgs, None);
        assert_eq!((r.sent, r.failed), (2, 1));
        assert!(r.error.is_some());
        let mut buf = [0u8; 8];
        assert_eq!(rx.recv(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 1);
        assert_eq!(rx.recv(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 3);
    }

    /// One datagram alone goes by sendto, in one call, and its error is reported as a
    /// batch's would be.
    #[test]
    fn sends_one_alone_and_reports_its_error() {
        let rx = StdUdp::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut batch = SendBatch::new();
        let to = rx.local_addr().unwrap();
        let r = batch.send(
            &tx,
            &[Outgoing {
                to,
                bytes: vec![5; 3],
            }],
            None,
        );
        assert_eq!((r.sent, r.failed, r.calls), (1, 0, 1));
        assert!(r.error.is_none());
        let mut buf = [0u8; 8];
        assert_eq!(
            rx.recv_from(&mut buf).unwrap(),
            (3, tx.local_addr().unwrap())
        );
        let bad: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        let r = batch.send(
            &tx,
            &[Outgoing {
                to: bad,
                bytes: vec![1],
            }],
            None,
        );
        assert_eq!((r.sent, r.failed, r.calls), (0, 1, 1));
        assert!(r.error.is_some());
        assert_eq!(batch.send(&tx, &[], None).calls, 0, "nothing to send");
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
