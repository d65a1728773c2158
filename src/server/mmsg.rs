//! Batched UDP I/O: recvmmsg(2) and sendmmsg(2) behind a small safe interface, the
//! only `unsafe` code of the server.
//!
//! [`RecvRing`] owns a ring of receive buffers, allocated once: one call fills up to
//! its number of slots with datagrams, which are then read in place (no copy, no
//! allocation per datagram). [`SendBatch`] sends a list of [`Outgoing`] datagrams in
//! calls of up to [`BATCH`], carrying on past partial results.
//!
//! Destinations: a listener bound to a wildcard address ([`set_recv_dst`]) learns from
//! the kernel where each datagram was sent (an IP_PKTINFO or IPV6_PKTINFO control
//! message, read into a control buffer per slot of a [`RecvRing::with_dst`] ring), and
//! its answer goes out from there (the same message, given to every datagram of a
//! batch, or with [`send_from`] alone). Without that, the kernel picks the source of an
//! answer by its route, and a client that asked another of the host's addresses drops
//! it.
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
//! caller drops it, never parses a prefix); send errors are returned per datagram;
//! control data is read only within what the kernel wrote, and a destination it does
//! not report whole is `None`.
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::ptr;

/// Most datagrams one system call moves.
pub const BATCH: usize = 32;

const NAME_LEN: libc::socklen_t = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

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
struct Control([u8; CONTROL_LEN]);

const NO_CONTROL: Control = Control([0; CONTROL_LEN]);

/// Where a datagram to a wildcard listener (`0.0.0.0`, `[::]`) was sent: the local
/// address its answer must come from, and the interface it came in on (0: unknown),
/// which an IPv6 link-local address needs to mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dst {
    pub ip: IpAddr,
    pub ifindex: u32,
}

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
    /// Control buffers, one per slot (empty in a ring without destinations), reached
    /// only through `control_base` once built.
    _control: Vec<Control>,
    control_base: *const Control,
    /// The msg_controllen each receive offers. Valid values: 0 (no control buffers),
    /// or CONTROL_LEN when every header points to its slot's buffer.
    control_len: usize,
    hdrs: Vec<libc::mmsghdr>,
    /// Slots filled by the last receive. Valid values: 0..=hdrs.len().
    filled: usize,
}

// SAFETY: the raw pointers held (in `base`, `names_base`, `control_base`, `_iov` and
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
            _control: Vec::new(),
            control_base: ptr::null(),
            control_len: 0,
            hdrs,
            filled: 0,
        }
    }

    /// As [`new`](Self::new), with a control buffer per slot: after a
    /// [`recv_dst`](Self::recv_dst) on a socket set with [`set_recv_dst`],
    /// [`dst`](Self::dst) tells each datagram's destination. A plain
    /// [`recv`](Self::recv) (another socket) does as in any ring.
    pub fn with_dst(slots: usize, slot_len: usize) -> RecvRing {
        let mut ring = RecvRing::new(slots, slot_len);
        let mut control = vec![NO_CONTROL; ring.hdrs.len()];
        let control_ptr = control.as_mut_ptr();
        for (i, h) in ring.hdrs.iter_mut().enumerate() {
            // SAFETY: i < slots, the length of `control`.
            h.msg_hdr.msg_control = unsafe { control_ptr.add(i) }.cast();
        }
        ring.control_base = control_ptr;
        ring._control = control;
        ring.control_len = CONTROL_LEN;
        ring
    }

    /// Number of slots: a receive that fills fewer has emptied the socket's queue.
    pub fn slots(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives up to [`slots`](Self::slots) datagrams without blocking: `Ok(n)` with
    /// n ≥ 1, or the error (`WouldBlock` when there was nothing to read). Datagrams
    /// of an earlier receive are gone.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_with(socket, false)
    }

    /// As [`recv`](Self::recv), for a socket set with [`set_recv_dst`]: each header
    /// offers its control buffer (in a [`with_dst`](Self::with_dst) ring), where the
    /// kernel writes the datagram's destination.
    #[inline(never)]
    pub fn recv_dst(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_with(socket, true)
    }

    /// The receive. A socket without IP_PKTINFO / IPV6_RECVPKTINFO writes back a
    /// control length of 0 into each header it fills (so [`get`](Self::get) finds no
    /// destination there), whatever was offered: only a receive that wants the
    /// destinations offers the control buffers again, all of them (a header left
    /// with the length an IPv4 message took would cut an IPv6 one short).
    #[inline(always)]
    fn recv_with(&mut self, socket: &impl AsRawFd, dst: bool) -> io::Result<usize> {
        // The kernel writes back each filled header's name length and flags; the
        // first one is reset too in case a failed call touched it.
        for h in self.hdrs.iter_mut().take(self.filled.max(1)) {
            h.msg_hdr.msg_namelen = NAME_LEN;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        if dst {
            for h in &mut self.hdrs {
                h.msg_hdr.msg_controllen = self.control_len as _;
            }
        }
        self.filled = 0;
        let vlen = self.hdrs.len() as libc::c_uint;
        // SAFETY: every header points to one iovec of `slot_len` octets inside the
        // buffers and to one sockaddr_storage with its size as name length, all owned
        // by `self` and alive for the call; `vlen` is the number of headers. A header
        // with a control length (≤ `control_len`, 0 in a ring without buffers) points
        // to its slot's control buffer, owned likewise.
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

    /// Where datagram `i` was sent, if [`recv_dst`](Self::recv_dst) read it on a socket
    /// set with [`set_recv_dst`] and the kernel said (`None` otherwise).
    pub fn dst(&self, i: usize) -> Option<Dst> {
        if i >= self.filled {
            return None;
        }
        // A socket without IP_PKTINFO / IPV6_RECVPKTINFO writes no control data (and a
        // ring without buffers offers none): the length is 0, nothing to look at.
        #[allow(clippy::unnecessary_cast)] // usize with glibc, socklen_t with musl
        let len = self.hdrs.get(i)?.msg_hdr.msg_controllen as usize;
        match len {
            0 => None,
            // SAFETY: not 0, so the ring has a control buffer per slot (the kernel
            // writes at most the length offered), and i < slots; read through the
            // pointer the kernel wrote through.
            len => decode_dst(unsafe { &*self.control_base.add(i) }, len),
        }
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

/// Sends one datagram from `src` (sendmsg with its IP_PKTINFO or IPV6_PKTINFO message):
/// a lone answer to a query that came to a wildcard listener.
pub fn send_from(
    socket: &impl AsRawFd,
    bytes: &[u8],
    to: SocketAddr,
    src: Dst,
) -> io::Result<usize> {
    // SAFETY: plain data, valid when zeroed.
    let mut name = unsafe { mem::zeroed::<libc::sockaddr_storage>() };
    let mut control = NO_CONTROL;
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: plain data (null pointers, zero lengths) when zeroed.
    let mut h: libc::msghdr = unsafe { mem::zeroed() };
    h.msg_namelen = from_socket_addr(to, &mut name);
    h.msg_name = ptr::from_mut(&mut name).cast();
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    h.msg_controllen = encode_src(src, &mut control) as _;
    h.msg_control = ptr::from_mut(&mut control).cast();
    // SAFETY: the header points to one iovec over `bytes`, to an address and to a
    // control buffer with their lengths, all alive (on this stack or borrowed) for the
    // call, which only reads them.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &h, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
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
    /// `from` if given (see [`send_from`]). A call interrupted (EINTR) is made again; a
    /// partial result goes on from the first datagram not sent; an error drops the
    /// datagram it is about and the sending goes on, except `WouldBlock` (socket buffer
    /// full), which drops all the rest.
    pub fn send(
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
                let e = io::Error::last_os_error();
                let skip = match e.kind() {
                    io::ErrorKind::Interrupted => 0,
                    io::ErrorKind::WouldBlock => rest.len(),
                    _ => 1,
                };
                report.failed += skip;
                if skip > 0 {
                    report.error = Some(e);
                }
                skip
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

/// Writes into `control` the control message that makes a datagram go out from `src`,
/// as dnsmasq and Unbound do: IP_PKTINFO with `src` as `ipi_spec_dst` and interface 0
/// (the route picks it, as for any datagram), or IPV6_PKTINFO with `src` and its
/// interface (a link-local address means nothing without it). Returns the length to
/// give as msg_controllen.
fn encode_src(src: Dst, control: &mut Control) -> usize {
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
        assert_eq!(ring.recv_dst(&rx).unwrap(), 3);
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
        let alone = send_from(&rx, &[9], tx.local_addr().unwrap(), dst("127.0.0.3", 0));
        assert_eq!(alone.unwrap(), 1);
        let (_, from) = tx.recv_from(&mut buf).unwrap();
        assert_eq!(
            (buf[0], from),
            (9, SocketAddr::from(([127, 0, 0, 3], port)))
        );
        // No IP_PKTINFO: no destination, and the ring's next receive is not fooled by
        // what an earlier one left in its buffers.
        let (plain, ptx) = pair("127.0.0.1:0");
        send_n(&ptx, plain.local_addr().unwrap(), 2);
        assert_eq!(ring.recv(&plain).unwrap(), 2);
        assert!(ring.dst(0).is_none());
        assert!(ring.dst(1).is_none());
        assert!(ring.dst(2).is_none(), "not filled");
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
