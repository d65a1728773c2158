//! UDP sockets: client listeners, and the per-upstream pools of connected sockets on
//! random ports (RFC 5452 §9.2), rotated so that no port is used for long.
use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};

use super::pktinfo;

/// Kernel receive buffer asked for on every UDP socket: bursts of small datagrams
/// queue here while the loop is busy.
const RECV_BUFFER: usize = 4 << 20;

/// A bound, non-blocking UDP socket for clients (IPV6_V6ONLY on IPv6 so that `[::]`
/// and `0.0.0.0` can both be used). Neither SO_REUSEADDR nor SO_REUSEPORT: a port
/// another program (or another dnsfwd) holds is an error, not a shared socket. On a
/// wildcard address the kernel reports each query's destination, which its answer
/// goes out from (see pktinfo.rs).
pub fn bind_listener(addr: SocketAddr) -> io::Result<UdpSocket> {
    client_socket(addr, false)
}

/// One of the `--threads` client UDP sockets of `addr`: as [`bind_listener`], with
/// SO_REUSEPORT so that each loop has its own socket (and kernel queue) on the same
/// address. Only sockets of the same user can join the group; another dnsfwd is kept
/// out by the TCP listener on the same port, bound first and without SO_REUSEPORT.
pub fn bind_shared_listener(addr: SocketAddr) -> io::Result<UdpSocket> {
    client_socket(addr, true)
}

/// The client socket both of the above bind, SO_REUSEPORT set if `shared`.
fn client_socket(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if addr.ip().is_unspecified() {
        pktinfo::set_recv_dst(&socket, addr.is_ipv6())?;
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// A socket on a random ephemeral port (chosen by the kernel, which randomises it),
/// connected to `upstream`: the kernel then delivers only datagrams from that address
/// and port, and reports ICMP port unreachable as ECONNREFUSED.
pub fn upstream_socket(upstream: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(upstream),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.set_nonblocking(true)?;
    let any: SocketAddr = if upstream.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    socket.bind(&any.into())?;
    socket.connect(&upstream.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}
