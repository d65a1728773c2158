//! The parsers of the flags' values (addresses with their default ports, sizes,
//! `--threads`), and the nameservers of /etc/resolv.conf.
use std::net::{IpAddr, SocketAddr};

use super::MAX_THREADS;

/// Parses `--threads`: a number in 1..=MAX_THREADS, or `auto` (the cores this process
/// may run on, as `std::thread::available_parallelism` counts them).
pub fn parse_threads(s: &str) -> Result<usize, String> {
    let n = match s {
        "auto" => std::thread::available_parallelism().map_or(1, |n| n.get()),
        _ => s
            .parse::<usize>()
            .map_err(|_| format!("{s:?} is neither a number nor \"auto\""))?,
    };
    match n {
        1..=MAX_THREADS => Ok(n),
        _ => Err(format!("{n} is not in 1..={MAX_THREADS}")),
    }
}

/// Parses `ADDR[:PORT]` for `--listen-tls` (as `--listen`, port 853 by default).
pub fn parse_listen_tls(s: &str) -> Result<SocketAddr, String> {
    parse_listen(s).and_then(|_| parse_addr(s, 853))
}

/// Parses `ADDR[:PORT]` for `--upstream`: `9.9.9.9`, `9.9.9.9:5353`, `2620:fe::fe`,
/// `[2620:fe::fe]:53`. The port defaults to 53.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    parse_addr(s, 53)
}

/// Parses `ADDR[:PORT]` of a `tls://` upstream: as [`parse_upstream`], port 853.
pub fn parse_upstream_tls(s: &str) -> Result<SocketAddr, String> {
    parse_listen(s).and_then(|_| parse_addr(s, 853))
}

/// Parses a size for `--cache-memory`: octets, or with a suffix `K`, `M` or `G` (also
/// `KB`/`KiB` and so on; all are powers of 1024), e.g. `512K`, `32M`, `1G`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, suffix) = s.split_at(digits);
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => Some(0),
        "K" | "KB" | "KIB" => Some(10),
        "M" | "MB" | "MIB" => Some(20),
        "G" | "GB" | "GIB" => Some(30),
        _ => None,
    };
    shift
        .zip(n.parse::<u64>().ok())
        .and_then(|(shift, n)| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{s}' is not a size such as 512K, 32M or 1G"))
}

/// Parses `ADDR[:PORT]` for `--metrics` (a bare address gets CoreDNS's port 9153).
pub fn parse_metrics(s: &str) -> Result<SocketAddr, String> {
    parse_addr(s, 9153)
}

/// Parses `ADDR:PORT` for `--listen` (a bare address gets port 53). An IPv6 address
/// needs brackets: `::1:1053` is itself an IPv6 address, so it is refused with a hint.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if !s.starts_with('[') && s.matches(':').count() > 1 {
        let hint = s
            .rsplit_once(':')
            .filter(|(ip, port)| ip.parse::<IpAddr>().is_ok() && port.parse::<u16>().is_ok())
            .map_or_else(
                || format!("[{s}]:53"),
                |(ip, port)| format!("[{ip}]:{port}"),
            );
        return Err(format!(
            "'{s}': an IPv6 address goes in brackets before its port; write {hint}"
        ));
    }
    parse_addr(s, 53)
}

fn parse_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("'{s}' is not an IP address with an optional port"))
}

/// The `nameserver` lines of a resolv.conf, on port 53, without the ones that are us.
pub fn resolv_conf_nameservers(text: &str, listen: &[SocketAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // A scope suffix (fe80::1%eth0) is not something we can bind to here.
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|ns| !is_self(*ns, listen))
        .collect()
}

/// Whether sending to `ns` would reach one of our own listening sockets.
fn is_self(ns: SocketAddr, listen: &[SocketAddr]) -> bool {
    listen.iter().any(|l| {
        l.port() == ns.port()
            && (l.ip() == ns.ip() || (l.ip().is_unspecified() && ns.ip().is_loopback()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn parses_upstream_forms() {
        assert_eq!(parse_upstream("9.9.9.9"), Ok("9.9.9.9:53".parse().unwrap()));
        assert_eq!(
            parse_upstream("9.9.9.9:5353"),
            Ok("9.9.9.9:5353".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("2620:fe::fe"),
            Ok("[2620:fe::fe]:53".parse().unwrap())
        );
        assert_eq!(parse_upstream("[::1]:54"), Ok("[::1]:54".parse().unwrap()));
        assert_eq!(parse_upstream("[::1]"), Ok("[::1]:53".parse().unwrap()));
        assert!(parse_upstream("dns.example").is_err());
        assert!(parse_upstream("1.2.3.4:99999").is_err());
    }

    #[test]
    fn reads_resolv_conf_and_skips_itself() {
        let text = "# comment\nsearch example\nnameserver 127.0.0.1\nnameserver 192.0.2.53\n\
                    nameserver fe80::1%eth0\nnameserver ::1\noptions edns0\n";
        let listen = ["127.0.0.1:53".parse().unwrap()];
        let ns = resolv_conf_nameservers(text, &listen);
        assert_eq!(
            ns,
            [
                "192.0.2.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        let any = ["[::]:53".parse().unwrap()];
        assert_eq!(
            resolv_conf_nameservers(text, &any),
            ["192.0.2.53:53".parse().unwrap()]
        );
        // On the default port 1053 a local resolver on 53 is not us.
        let default = Config::default().listen;
        assert_eq!(resolv_conf_nameservers(text, &default).len(), 3);
    }
}
