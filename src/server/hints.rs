//! Socket errors that name their address and say what to do about the common ones.
use std::io;
use std::net::SocketAddr;

/// Binding listener `addr` (`proto` is "UDP" or "TCP") failed with `e`.
pub(super) fn listen(addr: SocketAddr, proto: &str, e: io::Error) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => {
            "; another program (or another dnsfwd) holds this port: stop it or choose \
             another --listen"
        }
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
            "; ports below 1024 need root or CAP_NET_BIND_SERVICE (setcap \
             cap_net_bind_service=+ep on the binary, or AmbientCapabilities=\
             CAP_NET_BIND_SERVICE in a systemd unit; see dist/dnsfwd.service), or use a \
             port above 1023"
        }
        io::ErrorKind::AddrNotAvailable => "; no interface of this host has that address",
        _ => "",
    };
    io::Error::new(
        e.kind(),
        format!("cannot listen on {addr} ({proto}): {e}{hint}"),
    )
}

/// Opening a socket to upstream `addr` failed with `e`.
pub(super) fn upstream(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot open a socket to upstream {addr}: {e}"),
    )
}
