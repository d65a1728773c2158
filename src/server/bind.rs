//! Binding: the client listeners (a UDP and a TCP socket on each address) and the
//! upstream socket pools, each socket registered with the poll.
use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Token};

use super::upstream_tcp::UpstreamPool;
use super::{
    hints, mmsg, udp, upstream_token, Server, UpstreamSocket, MAX_LISTENERS, TCP_LISTENER,
    UDP_LISTENER,
};

impl Server {
    pub(super) fn bind_listeners(&mut self) -> io::Result<()> {
        let listen = self.cfg.listen.clone();
        if listen.len() > MAX_LISTENERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many --listen addresses",
            ));
        }
        for addr in listen {
            let (mut udp, mut tcp) = bind_pair(addr)?;
            let i = self.udp_listeners.len();
            self.poll
                .registry()
                .register(&mut udp, Token(UDP_LISTENER + i), Interest::READABLE)?;
            self.poll
                .registry()
                .register(&mut tcp, Token(TCP_LISTENER + i), Interest::READABLE)?;
            self.udp_listeners.push(udp);
            self.udp_out.push(Vec::with_capacity(mmsg::BATCH));
            self.udp_wildcard.push(addr.ip().is_unspecified());
            self.tcp_listeners.push(tcp);
        }
        Ok(())
    }

    pub(super) fn bind_upstreams(&mut self) -> io::Result<()> {
        for (u, &addr) in self.cfg.upstreams.iter().enumerate() {
            let per = self.udp_pool_size(addr);
            let mut pool = Vec::with_capacity(per);
            for s in 0..per {
                let mut current =
                    udp::upstream_socket(addr).map_err(|e| hints::upstream(addr, e))?;
                self.poll.registry().register(
                    &mut current,
                    upstream_token(u, s, 0),
                    Interest::READABLE,
                )?;
                pool.push(UpstreamSocket {
                    current,
                    generation: 0,
                    uses: 0,
                    retired: None,
                });
            }
            self.upstream_udp.push(pool);
            self.upstream_tcp.push(UpstreamPool::default());
        }
        Ok(())
    }
}

/// A UDP and a TCP listener on the same address; with port 0, the TCP listener takes
/// the port the kernel gave the UDP socket (retried a few times if it is taken).
fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = udp::bind_listener(addr).map_err(|e| hints::listen(addr, "UDP", e))?;
        let actual = udp.local_addr()?;
        match bind_tcp_listener(actual) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(hints::listen(actual, "TCP", e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("no free port"));
    Err(hints::listen(addr, "TCP", e))
}

pub(super) fn bind_tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // SO_REUSEADDR (TCP only) allows a restart while old connections are in TIME_WAIT,
    // and never two listeners on one port. No SO_REUSEPORT: with it a second dnsfwd on
    // the same port would silently share the traffic instead of failing (until a
    // `--threads` asks for several loops on one port).
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}
