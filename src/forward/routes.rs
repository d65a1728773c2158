//! Per-domain upstreams (`--upstream ZONE=ADDR[:PORT]`, as dnsmasq's
//! `server=/corp/10.0.0.1` and CoreDNS's per-zone `forward`): the longest zone that the
//! question name is in, on label boundaries, names the set of upstreams it may go to;
//! names in no zone go to the plain `--upstream`s.
//!
//! Every upstream address is one entry of the flat list the core and the shell share
//! (a socket pool per index); a route is a zone and a bit mask over that list, so a
//! zone with several addresses gets the same failover among them as the default set.
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::wire::Name;

/// One `--upstream` value: `ADDR[:PORT]` for names in no zone, or `ZONE=ADDR[:PORT]`;
/// the address may be `tls://ADDR[:PORT][#NAME]` (DNS over TLS, RFC 7858).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// `None`: the default set (also for the root zone, `.=ADDR`).
    pub zone: Option<Name>,
    pub addr: SocketAddr,
    /// Over TLS: the name its certificate must carry (the address itself, as an IP
    /// SAN, when no `#NAME` is given). `None`: plain DNS over UDP and TCP.
    pub tls: Option<String>,
}

/// Parses an upstream address, plain (`ADDR[:PORT]`, port 53) or over TLS
/// (`tls://ADDR[:PORT][#NAME]`, port 853, Unbound's `addr@port#name` as a URL).
fn parse_addr_spec(s: &str) -> Result<(SocketAddr, Option<String>), String> {
    let Some(rest) = s.strip_prefix("tls://") else {
        return crate::config::parse_upstream(s).map(|a| (a, None));
    };
    let (addr, name) = match rest.split_once('#') {
        Some((a, n)) => (a, Some(n)),
        None => (rest, None),
    };
    let addr = crate::config::parse_upstream_tls(addr)
        .map_err(|e| format!("{e} (in '{s}': tls://ADDR[:PORT]#NAME)"))?;
    let name = match name {
        None => addr.ip().to_string(),
        Some(n) => {
            let ok = !n.is_empty()
                && n.len() <= 253
                && n.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return Err(format!(
                    "'{n}' is not a host name for the certificate (in '{s}')"
                ));
            }
            n.to_ascii_lowercase()
        }
    };
    Ok((addr, Some(name)))
}

impl std::str::FromStr for UpstreamSpec {
    type Err = String;

    /// `9.9.9.9`, `[::1]:53`, `corp.example=10.0.0.1`,
    /// `168.192.in-addr.arpa=10.0.0.1:5353`, `corp=[fd00::1]:53`.
    fn from_str(s: &str) -> Result<UpstreamSpec, String> {
        let Some((zone, addr)) = s.split_once('=') else {
            let (addr, tls) = parse_addr_spec(s)?;
            return Ok(UpstreamSpec {
                zone: None,
                addr,
                tls,
            });
        };
        let zone = Name::from_ascii(zone.trim())
            .ok()
            .filter(|_| !zone.trim().is_empty())
            .ok_or_else(|| format!("'{zone}' is not a domain name (in '{s}')"))?;
        let (addr, tls) = parse_addr_spec(addr.trim())?;
        let zone = (!zone.is_root()).then_some(zone);
        Ok(UpstreamSpec { zone, addr, tls })
    }
}

impl From<SocketAddr> for UpstreamSpec {
    fn from(addr: SocketAddr) -> UpstreamSpec {
        UpstreamSpec {
            zone: None,
            addr,
            tls: None,
        }
    }
}

/// The TLS upstreams among `specs`: each address with the name its certificate must
/// carry. An address given both plain and over TLS, or over TLS with two names, is
/// refused (one index per address: it cannot be both).
pub fn tls_names(specs: &[UpstreamSpec]) -> Result<Vec<(SocketAddr, String)>, String> {
    let mut out: Vec<(SocketAddr, String)> = Vec::new();
    for s in specs {
        let clash = specs.iter().find(|o| o.addr == s.addr && o.tls != s.tls);
        if let Some(o) = clash {
            let how =
                |t: &Option<String>| t.as_deref().map_or("plain".into(), |n| format!("TLS #{n}"));
            return Err(format!(
                "{} is given as {} and as {}",
                s.addr,
                how(&s.tls),
                how(&o.tls)
            ));
        }
        if let Some(name) = &s.tls {
            if !out.iter().any(|(a, _)| *a == s.addr) {
                out.push((s.addr, name.clone()));
            }
        }
    }
    Ok(out)
}

/// `--upstream`'s value parser.
pub fn parse_spec(s: &str) -> Result<UpstreamSpec, String> {
    s.parse()
}

/// Splits `--upstream` values into the default set and the zones' addresses.
pub fn split(specs: &[UpstreamSpec]) -> (Vec<SocketAddr>, Vec<(Name, Vec<SocketAddr>)>) {
    let mut defaults = Vec::new();
    let mut zones: Vec<(Name, Vec<SocketAddr>)> = Vec::new();
    for s in specs {
        match &s.zone {
            None => defaults.push(s.addr),
            Some(z) => match zones.iter_mut().find(|(n, _)| n == z) {
                Some((_, addrs)) if !addrs.contains(&s.addr) => addrs.push(s.addr),
                Some(_) => {}
                None => zones.push((z.clone(), vec![s.addr])),
            },
        }
    }
    (defaults, zones)
}

/// With zones given: appends their addresses to `upstreams` (the defaults) unless
/// already there, and returns the routes, the root zone (the defaults) first.
pub fn attach(
    upstreams: &mut Vec<SocketAddr>,
    zones: Vec<(Name, Vec<SocketAddr>)>,
) -> Vec<(Name, Vec<SocketAddr>)> {
    if zones.is_empty() {
        return zones;
    }
    let mut routes = vec![(Name::root(), upstreams.clone())];
    for (zone, addrs) in zones {
        for a in &addrs {
            if !upstreams.contains(a) {
                upstreams.push(*a);
            }
        }
        routes.push((zone, addrs));
    }
    routes
}

/// Zones and the upstreams each may use. Valid values: at most 64 upstreams.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Zone (folded wire form) → mask over the upstream list. The root is not in it.
    zones: HashMap<Vec<u8>, u64>,
    /// For names in no zone: the root route's mask, or every upstream.
    default: u64,
}

impl Routes {
    /// The routes over `upstreams` (the flat list). Addresses not in it are ignored; a
    /// zone left with none, like no routes at all, uses the default set.
    pub fn new(upstreams: &[SocketAddr], routes: &[(Name, Vec<SocketAddr>)]) -> Routes {
        let n = upstreams.len().min(64);
        let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let mask = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .filter_map(|a| upstreams.iter().take(64).position(|u| u == a))
                .fold(0u64, |m, i| m | 1 << i)
        };
        let mut r = Routes {
            zones: HashMap::new(),
            default: all,
        };
        for (zone, addrs) in routes {
            let m = mask(addrs);
            if m == 0 {
                continue;
            }
            if zone.is_root() {
                r.default = m;
            } else {
                let key = zone.as_wire().to_ascii_lowercase();
                *r.zones.entry(key).or_default() |= m;
            }
        }
        r
    }

    /// The upstreams (bit i = upstream i) a query for `name` (folded wire form) may go
    /// to: the longest zone it is in, else the default set.
    #[inline]
    pub fn allowed(&self, name: &[u8]) -> u64 {
        // Without routes (the usual setup) this is one comparison, inlined at the call.
        if self.zones.is_empty() {
            return self.default;
        }
        self.allowed_by_zone(name)
    }

    /// [`allowed`](Self::allowed) with routes: the longest zone `name` is in.
    fn allowed_by_zone(&self, name: &[u8]) -> u64 {
        let mut at = 0usize;
        while let Some(&len) = name.get(at) {
            if len == 0 {
                break;
            }
            if let Some(&m) = name.get(at..).and_then(|s| self.zones.get(s)) {
                return m;
            }
            at += 1 + usize::from(len);
        }
        self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(s: &str) -> Vec<u8> {
        Name::from_ascii(s).unwrap().as_wire().to_ascii_lowercase()
    }

    fn spec(s: &str) -> UpstreamSpec {
        s.parse().unwrap()
    }

    #[test]
    fn parses_zone_and_address() {
        assert_eq!(
            spec("9.9.9.9"),
            UpstreamSpec::from("9.9.9.9:53".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(spec("[::1]:5353").addr, "[::1]:5353".parse().unwrap());
        let s = spec("Corp.Example=10.0.0.1");
        assert_eq!(s.zone, Some(Name::from_ascii("corp.example").unwrap()));
        assert_eq!(s.addr, "10.0.0.1:53".parse().unwrap());
        let s = spec("168.192.in-addr.arpa.=[fd00::1]:54");
        assert_eq!(s.zone.unwrap().to_string(), "168.192.in-addr.arpa.");
        assert_eq!(s.addr, "[fd00::1]:54".parse().unwrap());
        assert_eq!(
            spec(".=10.0.0.9").zone,
            None,
            "the root zone is the default set"
        );
        for bad in [
            "=10.0.0.1",
            "corp=",
            "corp=host.example",
            "a..b=10.0.0.1",
            "x",
        ] {
            assert!(bad.parse::<UpstreamSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_tls_upstreams() {
        let s = spec("tls://9.9.9.9#dns.quad9.net");
        assert_eq!(
            s.addr,
            "9.9.9.9:853".parse().unwrap(),
            "port 853 by default"
        );
        assert_eq!(s.tls.as_deref(), Some("dns.quad9.net"));
        let s = spec("tls://[::1]:8853#Local.Test");
        assert_eq!(s.addr, "[::1]:8853".parse().unwrap());
        assert_eq!(s.tls.as_deref(), Some("local.test"));
        let s = spec("corp=tls://10.0.0.1");
        assert_eq!(s.zone, Some(Name::from_ascii("corp").unwrap()));
        assert_eq!(s.addr, "10.0.0.1:853".parse().unwrap());
        assert_eq!(s.tls.as_deref(), Some("10.0.0.1"), "no name: the IP SAN");
        assert_eq!(spec("10.0.0.1").tls, None);
        for bad in [
            "tls://",
            "tls://dns.example#x",
            "tls://9.9.9.9#",
            "tls://9.9.9.9#bad name",
            "tls://9.9.9.9#a..b",
            "tls://::1:853#x",
        ] {
            assert!(bad.parse::<UpstreamSpec>().is_err(), "{bad}");
        }
        let specs = [spec("tls://10.0.0.1:853#a"), spec("10.0.0.1:853")];
        assert!(tls_names(&specs).is_err(), "plain and TLS on one address");
        let specs = [spec("tls://10.0.0.1#a"), spec("tls://10.0.0.1#b")];
        assert!(tls_names(&specs).is_err(), "two names for one address");
        let specs = [
            spec("tls://10.0.0.1#a"),
            spec("x=tls://10.0.0.1#a"),
            spec("1.1.1.1"),
        ];
        assert_eq!(
            tls_names(&specs).unwrap(),
            [("10.0.0.1:853".parse().unwrap(), "a".to_string())]
        );
    }

    #[test]
    fn longest_zone_wins_on_label_boundaries() {
        let specs: Vec<UpstreamSpec> = [
            "192.0.2.1",
            "192.0.2.2",
            "corp.example=10.0.0.1",
            "corp.example=10.0.0.2",
            "lab.corp.example=10.0.0.3",
            "168.192.in-addr.arpa=10.0.0.1",
            "corp.example=192.0.2.1",
        ]
        .iter()
        .map(|s| spec(s))
        .collect();
        let (mut ups, zones) = split(&specs);
        let routes = attach(&mut ups, zones);
        let addrs: Vec<String> = ups.iter().map(ToString::to_string).collect();
        assert_eq!(
            addrs,
            [
                "192.0.2.1:53",
                "192.0.2.2:53",
                "10.0.0.1:53",
                "10.0.0.2:53",
                "10.0.0.3:53"
            ],
            "one flat list, each address once"
        );
        let r = Routes::new(&ups, &routes);
        assert_eq!(r.allowed(&wire("www.example.org")), 0b00011);
        assert_eq!(r.allowed(&wire("corp.example")), 0b01101);
        assert_eq!(
            r.allowed(&wire("HOST.corp.example").to_ascii_lowercase()),
            0b01101
        );
        assert_eq!(r.allowed(&wire("x.lab.corp.example")), 0b10000);
        assert_eq!(r.allowed(&wire("notcorp.example")), 0b00011);
        assert_eq!(r.allowed(&wire("5.1.168.192.in-addr.arpa")), 0b00100);
        assert_eq!(r.allowed(&wire("5.1.10.in-addr.arpa")), 0b00011);
        assert_eq!(r.allowed(&wire(".")), 0b00011);
    }

    #[test]
    fn the_command_line_makes_one_flat_list_and_the_routes() {
        use crate::cli::ServeArgs;
        use crate::config::Config;
        let args = ServeArgs {
            upstream: vec![
                spec("corp=10.0.0.1"),
                spec("[::1]:5353"),
                spec("corp=10.0.0.2"),
            ],
            ..ServeArgs::default()
        };
        let cfg = Config::from_args(&args, None).unwrap();
        let ups: Vec<String> = cfg.upstreams.iter().map(ToString::to_string).collect();
        assert_eq!(ups, ["[::1]:5353", "10.0.0.1:53", "10.0.0.2:53"]);
        assert_eq!(cfg.routes.len(), 2);
        assert!(cfg.routes[0].0.is_root());
        let r = Routes::new(&cfg.upstreams, &cfg.routes);
        assert_eq!(
            (r.allowed(&wire("a.corp")), r.allowed(&wire("a.org"))),
            (0b110, 0b001)
        );
        // Zones only: the rest goes to resolv.conf's nameservers.
        let args = ServeArgs {
            upstream: vec![spec("corp=10.0.0.1")],
            ..ServeArgs::default()
        };
        let cfg = Config::from_args(&args, Some("nameserver 192.0.2.53\n")).unwrap();
        assert_eq!(cfg.upstreams.len(), 2);
        assert!(
            Config::from_args(&args, Some("")).is_err(),
            "nothing for the rest"
        );
    }

    #[test]
    fn without_zones_every_upstream_serves_every_name() {
        let ups: Vec<SocketAddr> = vec!["192.0.2.1:53".parse().unwrap(); 3];
        let (mut list, zones) = split(&[]);
        assert!(attach(&mut list, zones).is_empty());
        let r = Routes::new(&ups, &[]);
        assert_eq!(r.allowed(&wire("a.example")), 0b111);
        assert_eq!(Routes::new(&[], &[]).allowed(&wire("a")), 0);
    }
}
