//! Sending datagrams: [`SendBatch`] sends a list of [`Outgoing`] datagrams on one
//! socket, in calls (sendmmsg) of up to [`BATCH`], carrying on past partial results;
//! one alone goes by sendto, as most answers below a burst do. A batch may go out from
//! a given address (a wildcard listener's reply path: pktinfo.rs writes the control
//! message).
//!
//! Guarantees: no panic; no allocation per datagram (the headers, address slots and
//! control buffer are built once); send errors are returned per datagram.
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::ptr;

use super::mmsg::{from_socket_addr, BATCH};
use super::pktinfo::{encode_src, Control, Dst, NO_CONTROL};

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
// (which never grow or move), and the iovecs into the caller's buffers: after a call
// they may dangle, but nothing reads them before `fill` or `send_one` writes them again
// for the next call.
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
            } else if n == 0 {
                // Not done by Linux for a count of 1 or more; were it done, errno would
                // be stale (EINTR would loop forever): the first datagram is dropped.
                report.failed += 1;
                1
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdp;
    use std::time::Duration;

    use mio::net::UdpSocket;

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
}
