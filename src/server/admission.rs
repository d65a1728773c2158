//! The shell's side of the admission policy for TCP clients: the ACL and the slot
//! caps at accept, and the sweep that closes idle, deaf and slow connections. The
//! decisions themselves are in [`crate::policy`]; this file carries them out.
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;

use super::Server;
use crate::clock::Instant;
use crate::policy::{client_key, loops, ConnInfo, TcpAdmit};

/// Longest a client may take to send one whole message once its first octet arrived
/// (capped by `--tcp-idle`). A query is a few hundred octets, one segment: even with
/// two retransmissions it arrives within a few seconds. A client that dribbles it (a
/// "slowloris") holds a slot for nothing and is closed.
pub const MAX_FRAME_TIME: Duration = Duration::from_secs(3);

/// A random key for the rate table's hash, from the OS CSPRNG.
pub fn hash_secret() -> [u64; 4] {
    let mut b = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut b) {
        // The table still works; only its sets become predictable.
        log::warn!("getrandom failed: {e}; the rate-limit table hash is not keyed");
    }
    let mut k = [0u64; 4];
    for (k, chunk) in k.iter_mut().zip(b.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        *k = u64::from_le_bytes(w);
    }
    k
}

/// Fails if an upstream is one of the bound listening sockets (checked with the real
/// ports, once bound, and asking the kernel which addresses are this host's).
pub fn check_self_loop(listen: &[SocketAddr], upstreams: &[SocketAddr]) -> io::Result<()> {
    match loops::find_self_loop(listen, upstreams, is_local_address) {
        Some((u, l)) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid --upstream: {}", loops::describe(u, l)),
        )),
        None => Ok(()),
    }
}

/// Whether `ip` is an address of this host: only those can be bound.
fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Closes a connection we will not serve with a reset (SO_LINGER 0), so that neither
/// side keeps it in TIME_WAIT.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

impl Server {
    /// Whether to take the connection just accepted from `addr`; makes room for it if
    /// the policy names a connection to evict. A connection turned away is reset when
    /// the caller drops it.
    pub(super) fn admit_tcp_client(
        &mut self,
        now: Instant,
        stream: &TcpStream,
        addr: SocketAddr,
    ) -> bool {
        let conns = self.clients.iter().enumerate().filter_map(|(slot, c)| {
            c.as_ref().map(|c| ConnInfo {
                slot,
                key: client_key(c.addr.ip()),
                busy: !c.is_idle(),
                opened: c.opened,
                last_active: c.last_active,
            })
        });
        let max = self.cfg.max_tcp_clients;
        match self.policy.admit_tcp(now, addr, max, conns) {
            Some(TcpAdmit::Accept) => true,
            Some(TcpAdmit::Evict(n)) => {
                if let Some(Some(c)) = self.clients.get(n) {
                    log::debug!("TCP client {} closed to make room for {addr}", c.addr);
                }
                self.close_client(n);
                true
            }
            Some(TcpAdmit::OverCap | TcpAdmit::Full) | None => {
                reset(stream);
                false
            }
        }
    }

    /// Closes client connections idle for `--tcp-idle` (measured from the last whole
    /// query or answer), not reading their answers for as long, or taking longer than
    /// [`MAX_FRAME_TIME`] to send one message.
    pub(super) fn sweep_clients(&mut self, now: Instant) {
        let idle = self.cfg.tcp_idle;
        let frame_time = idle.min(MAX_FRAME_TIME);
        let mut stale = Vec::new();
        for (n, c) in self.clients.iter().enumerate() {
            let Some(c) = c else { continue };
            // A TLS handshake gets the time of one message: a client that does not
            // speak TLS, or stalls in it, holds no slot for long.
            let slow = c
                .partial_since
                .or(c.stream.handshaking().then_some(c.opened))
                .is_some_and(|t| now.duration_since(t) >= frame_time);
            let unused = c.is_idle() && now.duration_since(c.last_active) >= idle;
            let deaf = c.io.backlog() > 0 && now.duration_since(c.last_write) >= idle;
            if slow || unused || deaf {
                stale.push((n, slow, c.addr));
            }
        }
        for (n, slow, addr) in stale {
            if slow {
                self.policy.slow_tcp(now, addr);
            }
            self.close_client(n);
        }
    }
}
