//! Access control: which source addresses are answered at all.
//!
//! An [`Acl`] is a set of CIDR blocks, kept per family as sorted, disjoint, merged
//! ranges of integers, so a check is one binary search over a few entries (no
//! allocation, no hashing). IPv4-mapped IPv6 sources (`::ffff:a.b.c.d`) are judged as
//! the IPv4 address they carry, and an IPv6 block inside `::ffff:0:0/96` is stored as
//! the IPv4 block it names, so the two spellings always agree. An IPv6 block never
//! covers IPv4 sources: `::/0` allows every IPv6 source and no IPv4 one.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One CIDR block: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address; its host bits are zero.
    pub addr: IpAddr,
    /// Valid values: 0..=32 for IPv4, 0..=128 for IPv6.
    pub len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Parses `ADDR/LEN` or a bare address (`/32` or `/128`) for `--allow`. Host bits set
/// below the prefix (`10.0.0.1/8`) are an error: the block meant is ambiguous.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{s}' is not an IP address or CIDR block (ADDR/LEN)"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("'{s}': the prefix length must be 0..={max}")),
        },
    };
    let net = network(addr, len);
    if net != addr {
        return Err(format!(
            "'{s}' has bits set past the /{len} prefix; did you mean {net}/{len}?"
        ));
    }
    Ok(Cidr { addr, len })
}

/// `addr` with the bits past the first `len` cleared.
fn network(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(len))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(len))),
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// The sources answered when no `--allow` is given: loopback, RFC 1918 private,
/// RFC 6598 shared (carrier-grade NAT), link-local, and IPv6 unique-local (RFC 4193).
/// None of them is routable on the public Internet, so the default is never an open
/// resolver, even listening on 0.0.0.0.
pub const DEFAULT_ALLOW: [&str; 9] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// A set of allowed source blocks (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    /// Disjoint, non-adjacent inclusive ranges, sorted by start.
    v4: Vec<(u32, u32)>,
    /// The same for IPv6 sources that are not IPv4-mapped.
    v6: Vec<(u128, u128)>,
}

impl Acl {
    /// The set of the given blocks (empty: nobody is allowed).
    pub fn new(blocks: &[Cidr]) -> Acl {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for b in blocks {
            match b.addr {
                IpAddr::V4(a) => {
                    let start = u32::from(a) & mask32(b.len);
                    v4.push((start, start | !mask32(b.len)));
                }
                IpAddr::V6(a) => match (a.to_ipv4_mapped(), b.len >= 96) {
                    (Some(m), true) => {
                        let len = b.len - 96;
                        let start = u32::from(m) & mask32(len);
                        v4.push((start, start | !mask32(len)));
                    }
                    _ => {
                        let start = u128::from(a) & mask128(b.len);
                        v6.push((start, start | !mask128(b.len)));
                    }
                },
            }
        }
        Acl {
            v4: merge(v4, |x| x.checked_add(1)),
            v6: merge(v6, |x| x.checked_add(1)),
        }
    }

    /// The default set ([`DEFAULT_ALLOW`]).
    pub fn private() -> Acl {
        let blocks: Vec<Cidr> = DEFAULT_ALLOW
            .iter()
            .filter_map(|s| parse_cidr(s).ok())
            .collect();
        Acl::new(&blocks)
    }

    /// Whether `ip` may be answered.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => contains(&self.v4, u32::from(a)),
            IpAddr::V6(a) => {
                let x = u128::from(a);
                // ::ffff:a.b.c.d, tested on the integer (cheaper than to_ipv4_mapped).
                if x >> 32 == 0xFFFF {
                    contains(&self.v4, x as u32)
                } else {
                    contains(&self.v6, x)
                }
            }
        }
    }

    /// Number of disjoint ranges (after merging), for the benchmark and the log.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Sorts ranges and merges the ones that overlap or touch (`next` is the successor).
fn merge<T: Copy + Ord>(mut r: Vec<(T, T)>, next: fn(T) -> Option<T>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (start, end) in r {
        match out.last_mut() {
            Some(last) if last.1 >= start || next(last.1) == Some(start) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}

fn contains<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    if ranges.len() <= 8 {
        // A few ranges (the default has six IPv4 ones): a scan costs less than a search.
        // The ranges before the first one ending at or after x end before it, so that
        // one is the only one that can hold it.
        return ranges
            .iter()
            .find(|&&(_, end)| x <= end)
            .is_some_and(|&(start, _)| start <= x);
    }
    // The last range starting at or before x is the only one that can hold it.
    let i = ranges.partition_point(|&(start, _)| start <= x);
    i.checked_sub(1)
        .and_then(|i| ranges.get(i))
        .is_some_and(|&(_, end)| x <= end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(blocks: &[&str]) -> Acl {
        let b: Vec<Cidr> = blocks.iter().map(|s| parse_cidr(s).unwrap()).collect();
        Acl::new(&b)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cidr_forms() {
        let c = parse_cidr("10.1.0.0/16").unwrap();
        assert_eq!((c.addr, c.len), (ip("10.1.0.0"), 16));
        assert_eq!(parse_cidr("192.0.2.7").unwrap().len, 32);
        assert_eq!(parse_cidr("2001:db8::/32").unwrap().len, 32);
        assert_eq!(parse_cidr("2001:db8::1").unwrap().len, 128);
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().len, 0);
        assert_eq!(parse_cidr("::/0").unwrap().len, 0);
        assert_eq!(parse_cidr("::ffff:10.0.0.0/104").unwrap().len, 104);
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn rejects_bad_cidrs_clearly() {
        for (s, says) in [
            ("10.0.0.0/33", "0..=32"),
            ("::/129", "0..=128"),
            ("10.0.0.0/", "0..=32"),
            ("10.0.0.0/-1", "0..=32"),
            ("10.0.0.0/8/8", "0..=32"),
            ("ten.example/8", "not an IP address"),
            ("", "not an IP address"),
            ("[::1]/128", "not an IP address"),
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("2001:db8::1/32", "did you mean 2001:db8::/32"),
        ] {
            let e = parse_cidr(s).unwrap_err();
            assert!(e.contains(says), "{s}: {e}");
        }
    }

    #[test]
    fn matches_ipv4_blocks_at_their_edges() {
        let a = acl(&["10.0.0.0/8", "192.0.2.128/25", "198.51.100.7"]);
        for (s, want) in [
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("9.255.255.255", false),
            ("11.0.0.0", false),
            ("192.0.2.127", false),
            ("192.0.2.128", true),
            ("192.0.2.255", true),
            ("198.51.100.7", true),
            ("198.51.100.6", false),
            ("198.51.100.8", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
        ] {
            assert_eq!(a.allows(ip(s)), want, "{s}");
        }
    }

    #[test]
    fn matches_ipv6_blocks_and_keeps_families_apart() {
        let a = acl(&["2001:db8::/32", "::1"]);
        assert!(a.allows(ip("2001:db8::1")));
        assert!(a.allows(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!a.allows(ip("2001:db9::")));
        assert!(a.allows(ip("::1")));
        assert!(!a.allows(ip("::2")));
        assert!(!a.allows(ip("127.0.0.1")));
        let all6 = acl(&["::/0"]);
        assert!(all6.allows(ip("2001:db8::1")));
        assert!(!all6.allows(ip("192.0.2.1")), "::/0 is IPv6 only");
        assert!(
            !all6.allows(ip("::ffff:192.0.2.1")),
            "mapped sources are IPv4"
        );
        let all4 = acl(&["0.0.0.0/0"]);
        assert!(all4.allows(ip("203.0.113.9")));
        assert!(all4.allows(ip("::ffff:203.0.113.9")));
        assert!(!all4.allows(ip("2001:db8::1")));
    }

    #[test]
    fn judges_mapped_sources_as_ipv4() {
        let a = acl(&["192.0.2.0/24"]);
        assert!(a.allows(ip("::ffff:192.0.2.5")));
        assert!(!a.allows(ip("::ffff:192.0.3.5")));
        // A mapped block is the IPv4 block it names.
        let m = acl(&["::ffff:192.0.2.0/120"]);
        assert_eq!(m, a);
        assert!(m.allows(ip("192.0.2.200")));
    }

    #[test]
    fn merges_overlapping_and_adjacent_blocks() {
        let a = acl(&[
            "10.0.0.0/9",
            "10.128.0.0/9",
            "10.1.0.0/16",
            "10.0.0.0/8",
            "11.0.0.0/8",
        ]);
        assert_eq!(a.v4, [(0x0A00_0000, 0x0BFF_FFFF)]);
        let all = acl(&["0.0.0.0/1", "128.0.0.0/1"]);
        assert_eq!(all.v4, [(0, u32::MAX)]);
        assert!(all.allows(ip("255.255.255.255")));
        assert_eq!(acl(&[]).ranges(), 0);
        assert!(!acl(&[]).allows(ip("127.0.0.1")));
    }

    #[test]
    fn default_allows_private_sources_only() {
        let a = Acl::private();
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.1.1",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf:ffff::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(a.allows(ip(s)), "{s} should be allowed by default");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "128.0.0.1",
            "126.255.255.255",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::",
            "::2",
            "2001:db8::1",
            "2606:4700::1111",
            "fbff:ffff::1",
            "fe00::1",
            "fec0::1",
            "ff02::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!a.allows(ip(s)), "{s} should be refused by default");
        }
    }

    /// Up to 8 ranges are scanned, more are searched: every count either side of that
    /// matches the same addresses (each block's edges, and the gaps between them).
    #[test]
    fn scan_and_search_agree_at_every_count() {
        for n in 1..=12u32 {
            let blocks: Vec<Cidr> = (0..n)
                .map(|k| parse_cidr(&format!("10.0.{}.0/24", 2 * k + 1)).unwrap())
                .collect();
            let a = Acl::new(&blocks);
            assert_eq!(a.ranges(), n as usize);
            for k in 0..=2 * n + 1 {
                for host in [0, 77, 255] {
                    let s = format!("10.0.{k}.{host}");
                    assert_eq!(a.allows(ip(&s)), k % 2 == 1 && k < 2 * n, "{n} blocks: {s}");
                }
            }
        }
    }

    #[test]
    fn many_blocks_still_match_exactly() {
        // Every other /24 of 10.0.0.0/16: 128 disjoint ranges, binary-searched.
        let blocks: Vec<Cidr> = (0..256u32)
            .step_by(2)
            .map(|k| parse_cidr(&format!("10.0.{k}.0/24")).unwrap())
            .collect();
        let a = Acl::new(&blocks);
        assert_eq!(a.ranges(), 128);
        for k in 0..256u32 {
            for host in [0, 77, 255] {
                let s = format!("10.0.{k}.{host}");
                assert_eq!(a.allows(ip(&s)), k % 2 == 0, "{s}");
            }
        }
    }
}
