//! Start-up loop detection: an upstream that is one of our own listening sockets would
//! send every query back to us, forever.
//!
//! An upstream is us when its port is a listen port and its address is that listen
//! address, or the listen address is the wildcard (0.0.0.0 or ::) of its family and the
//! upstream address is loopback or otherwise local to this host. An unspecified
//! upstream address reaches the local host, so it is read as loopback; an IPv4-mapped
//! one as the IPv4 address. The wildcard listeners are IPv6-only or IPv4-only
//! (IPV6_V6ONLY), so `[::]:53` never loops with `127.0.0.1:53`.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The first upstream that is one of our listening sockets, with that listen address.
/// `is_local` says whether an address belongs to this host (the shell asks the
/// kernel; loopback and equal addresses need no asking).
pub fn find_self_loop(
    listen: &[SocketAddr],
    upstreams: &[SocketAddr],
    is_local: impl Fn(IpAddr) -> bool,
) -> Option<(SocketAddr, SocketAddr)> {
    for &u in upstreams {
        let ip = upstream_ip(u.ip());
        for &l in listen {
            let lip = unmapped(l.ip());
            let same_family = ip.is_ipv4() == lip.is_ipv4();
            let hit = l.port() == u.port()
                && same_family
                && (lip == ip || (lip.is_unspecified() && (ip.is_loopback() || is_local(ip))));
            if hit {
                return Some((u, l));
            }
        }
    }
    None
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where packets sent to `ip` go: an unspecified address means this host.
fn upstream_ip(ip: IpAddr) -> IpAddr {
    match unmapped(ip) {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The error for a loop found by [`find_self_loop`], naming both addresses.
pub fn describe(upstream: SocketAddr, listen: SocketAddr) -> String {
    format!(
        "{upstream} is this forwarder's own listen address {listen} \
         (every query would loop back to it)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn find(listen: &[&str], up: &[&str]) -> Option<(SocketAddr, SocketAddr)> {
        let l: Vec<SocketAddr> = listen.iter().map(|s| sa(s)).collect();
        let u: Vec<SocketAddr> = up.iter().map(|s| sa(s)).collect();
        // 192.0.2.10 plays an address of this host's interfaces.
        find_self_loop(&l, &u, |ip| ip == "192.0.2.10".parse::<IpAddr>().unwrap())
    }

    #[test]
    fn finds_an_upstream_equal_to_a_listen_address() {
        assert_eq!(
            find(&["127.0.0.1:5353"], &["9.9.9.9:53", "127.0.0.1:5353"]),
            Some((sa("127.0.0.1:5353"), sa("127.0.0.1:5353")))
        );
        assert!(find(&["[::1]:53"], &["[::1]:53"]).is_some());
        assert!(find(&["127.0.0.1:53"], &["[::ffff:127.0.0.1]:53"]).is_some());
    }

    #[test]
    fn finds_a_local_upstream_behind_a_wildcard_listener() {
        assert!(find(&["0.0.0.0:53"], &["127.0.0.1:53"]).is_some());
        assert!(find(&["0.0.0.0:53"], &["127.0.0.53:53"]).is_some());
        assert!(find(&["0.0.0.0:53"], &["192.0.2.10:53"]).is_some());
        assert!(find(&["[::]:53"], &["[::1]:53"]).is_some());
        // An unspecified upstream is the local host.
        assert!(find(&["127.0.0.1:53"], &["0.0.0.0:53"]).is_some());
        assert!(find(&["0.0.0.0:53"], &["0.0.0.0:53"]).is_some());
    }

    #[test]
    fn other_ports_hosts_and_families_are_fine() {
        assert_eq!(find(&["127.0.0.1:1053"], &["127.0.0.1:53"]), None);
        assert_eq!(find(&["127.0.0.1:53"], &["127.0.0.2:53"]), None);
        assert_eq!(find(&["0.0.0.0:53"], &["192.0.2.11:53"]), None);
        assert_eq!(
            find(&["[::]:53"], &["127.0.0.1:53"]),
            None,
            "v6-only wildcard"
        );
        assert_eq!(find(&["0.0.0.0:53"], &["[::1]:53"]), None);
        assert_eq!(find(&[], &["127.0.0.1:53"]), None);
    }

    #[test]
    fn the_message_names_both() {
        let m = describe(sa("127.0.0.1:5353"), sa("0.0.0.0:5353"));
        assert!(
            m.contains("127.0.0.1:5353") && m.contains("0.0.0.0:5353"),
            "{m}"
        );
    }
}
