//! EDNS options as `dig` 9.18 prints them in its OPT PSEUDOSECTION (one line each).
//!
//! An option whose data do not have its wire format (an ECS of 3 octets, an EXPIRE of
//! 3) is shown as dig shows it, its octets in hex, and [`option_problem`] says what is
//! wrong with it.
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::EdnsOption;

/// INFO-CODE names of Extended DNS Errors (RFC 8914 §4) that dig 9.18 prints.
const EDE_NAMES: [&str; 25] = [
    "Other",
    "Unsupported DNSKEY Algorithm",
    "Unsupported DS Digest Type",
    "Stale Answer",
    "Forged Answer",
    "DNSSEC Indeterminate",
    "DNSSEC Bogus",
    "Signature Expired",
    "Signature Not Yet Valid",
    "DNSKEY Missing",
    "RRSIGs Missing",
    "No Zone Key Bit Set",
    "NSEC Missing",
    "Cached Error",
    "Not Ready",
    "Blocked",
    "Censored",
    "Filtered",
    "Prohibited",
    "Stale NXDOMAIN Answer",
    "Not Authoritative",
    "Not Supported",
    "No Reachable Authority",
    "Network Error",
    "Invalid Data",
];

/// The option's line without its leading `; `, e.g. `CLIENT-SUBNET: 192.0.2.0/24/0`.
pub fn option_text(o: &EdnsOption<'_>) -> String {
    let d = o.data;
    let typed = match o.code {
        EdnsOption::NSID => return format!("NSID:{}", generic(d)),
        EdnsOption::CLIENT_SUBNET => {
            return match ecs(d) {
                Some(text) => format!("CLIENT-SUBNET: {text}"),
                // dig's own fallback for ECS: each octet followed by a space.
                None => {
                    let hex: String = d.iter().map(|b| format!("{b:02x} ")).collect();
                    format!("CLIENT-SUBNET: {hex}")
                }
            };
        }
        EdnsOption::EXPIRE => (
            "EXPIRE",
            u32_of(d).map(|s| format!(" {s} ({})", duration(s))),
        ),
        EdnsOption::COOKIE => ("COOKIE", Some(blob(d))),
        EdnsOption::TCP_KEEPALIVE => (
            "TCP KEEPALIVE",
            match d {
                [] => Some(String::new()),
                &[hi, lo] => {
                    let t = u16::from_be_bytes([hi, lo]);
                    Some(format!(" {}.{} secs", t / 10, t % 10))
                }
                _ => None,
            },
        ),
        EdnsOption::PADDING => (
            "PAD",
            Some(if d.is_empty() {
                String::new()
            } else {
                format!(" ({} bytes)", d.len())
            }),
        ),
        EdnsOption::KEY_TAG => ("KEY-TAG", key_tags(d)),
        EdnsOption::EDE => ("EDE", ede(d)),
        EdnsOption::CLIENT_TAG => ("CLIENT-TAG", u16_of(d)),
        EdnsOption::SERVER_TAG => ("SERVER-TAG", u16_of(d)),
        code => return format!("OPT={code}:{}", generic(d)),
    };
    match typed {
        (name, Some(text)) => format!("{name}:{text}"),
        (name, None) => format!("{name}:{}", generic(d)),
    }
}

/// What is wrong with an option of a known code, if anything (for `decode`).
pub fn option_problem(o: &EdnsOption<'_>) -> Option<&'static str> {
    let d = o.data;
    match o.code {
        EdnsOption::CLIENT_SUBNET if ecs(d).is_none() => {
            Some("CLIENT-SUBNET: bad family, prefix length or address length")
        }
        EdnsOption::EXPIRE if !(d.is_empty() || d.len() == 4) => Some("EXPIRE: not 4 octets"),
        EdnsOption::COOKIE if !(d.len() == 8 || (16..=40).contains(&d.len())) => {
            Some("COOKIE: not 8 or 16 to 40 octets (RFC 7873 §4)")
        }
        EdnsOption::TCP_KEEPALIVE if !(d.is_empty() || d.len() == 2) => {
            Some("TCP KEEPALIVE: not 0 or 2 octets")
        }
        EdnsOption::KEY_TAG if d.is_empty() || !d.len().is_multiple_of(2) => {
            Some("KEY-TAG: not a list of 16-bit tags")
        }
        EdnsOption::EDE if d.len() < 2 => Some("EDE: shorter than its INFO-CODE"),
        EdnsOption::CHAIN if crate::wire::Name::from_wire(d).is_err() => {
            Some("CHAIN: not an uncompressed domain name")
        }
        _ => None,
    }
}

/// dig's generic form: ` 0a 0b ("..")`, nothing when empty.
fn generic(d: &[u8]) -> String {
    if d.is_empty() {
        return String::new();
    }
    let mut out: String = d.iter().map(|b| format!(" {b:02x}")).collect();
    out.push_str(" (\"");
    out.extend(d.iter().map(|&b| {
        if b.is_ascii_graphic() || b == b' ' {
            char::from(b)
        } else {
            '.'
        }
    }));
    out.push_str("\")");
    out
}

/// ` hex` in one piece (COOKIE), nothing when empty.
fn blob(d: &[u8]) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" {}", hex::encode(d))
    }
}

fn u32_of(d: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(d).ok().map(u32::from_be_bytes)
}

fn u16_of(d: &[u8]) -> Option<String> {
    <[u8; 2]>::try_from(d)
        .ok()
        .map(|b| format!(" {}", u16::from_be_bytes(b)))
}

/// RFC 7871 §6: FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH, ADDRESS (the
/// octets the source prefix needs; more are ignored, as dig does).
fn ecs(d: &[u8]) -> Option<String> {
    let (&[f0, f1, source, scope], address) = d.split_first_chunk::<4>()?;
    let needed = usize::from(source).div_ceil(8);
    let mut addr = [0u8; 16];
    for (a, b) in addr.iter_mut().zip(address.get(..needed)?) {
        *a = *b;
    }
    let text = match u16::from_be_bytes([f0, f1]) {
        0 if source == 0 && scope == 0 => "0".to_string(),
        1 if source <= 32 && scope <= 32 => {
            let [a, b, c, d, ..] = addr;
            Ipv4Addr::new(a, b, c, d).to_string()
        }
        2 if source <= 128 && scope <= 128 => Ipv6Addr::from(addr).to_string(),
        _ => return None,
    };
    Some(format!("{text}/{source}/{scope}"))
}

/// A duration in words, as BIND's verbose TTL: `2 weeks`, `1 minute 1 second`.
fn duration(s: u32) -> String {
    let units = [
        ("week", 604_800),
        ("day", 86_400),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ];
    let mut left = s;
    let mut parts = Vec::new();
    for (name, size) in units {
        let n = left / size;
        left %= size;
        if n > 0 {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
        }
    }
    if parts.is_empty() {
        "0 seconds".to_string()
    } else {
        parts.join(" ")
    }
}

fn key_tags(d: &[u8]) -> Option<String> {
    if d.is_empty() {
        return Some(String::new());
    }
    if !d.len().is_multiple_of(2) {
        return None;
    }
    let tags: Vec<String> = d
        .chunks_exact(2)
        .map(|p| {
            p.iter()
                .fold(0u16, |v, &b| v << 8 | u16::from(b))
                .to_string()
        })
        .collect();
    Some(format!(" {}", tags.join(", ")))
}

/// RFC 8914 §2: INFO-CODE, then EXTRA-TEXT (UTF-8); dig shows control octets as `.`.
fn ede(d: &[u8]) -> Option<String> {
    let (&[hi, lo], text) = d.split_first_chunk::<2>()?;
    let code = u16::from_be_bytes([hi, lo]);
    let mut out = format!(" {code}");
    if let Some(name) = EDE_NAMES.get(usize::from(code)) {
        out.push_str(&format!(" ({name})"));
    }
    if !text.is_empty() {
        let shown: Vec<u8> = text
            .iter()
            .map(|&b| if b < 0x20 || b == 0x7F { b'.' } else { b })
            .collect();
        out.push_str(&format!(": ({})", String::from_utf8_lossy(&shown)));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(code: u16, data: &[u8]) -> String {
        option_text(&EdnsOption { code, data })
    }

    // Each expected line is what dig 9.18.49 printed for the same option (see
    // testdata/rdata/README.md); the capture-driven test covers the rest.
    #[test]
    fn prints_options_as_dig() {
        assert_eq!(
            text(8, &[0, 1, 25, 0, 192, 0, 2, 128]),
            "CLIENT-SUBNET: 192.0.2.128/25/0"
        );
        assert_eq!(text(8, &[0, 1]), "CLIENT-SUBNET: 00 01 ");
        assert_eq!(text(8, &[0, 0, 0, 0]), "CLIENT-SUBNET: 0/0/0");
        assert_eq!(
            text(8, &[0, 1, 33, 0, 192, 0, 2, 0, 1]),
            "CLIENT-SUBNET: 00 01 21 00 c0 00 02 00 01 "
        );
        assert_eq!(text(3, b"gns1"), "NSID: 67 6e 73 31 (\"gns1\")");
        assert_eq!(
            text(3, &[0x7f, 0x20, b'\\', b'"']),
            "NSID: 7f 20 5c 22 (\". \\\"\")"
        );
        assert_eq!(text(9, &[0, 0x12, 0x75, 0]), "EXPIRE: 1209600 (2 weeks)");
        assert_eq!(
            text(9, &[5, 0xf5, 0xe1, 0]),
            "EXPIRE: 100000000 (165 weeks 2 days 9 hours 46 minutes 40 seconds)"
        );
        assert_eq!(text(9, &[0, 0x0e, 0x10]), "EXPIRE: 00 0e 10 (\"...\")");
        assert_eq!(text(11, &[0, 100]), "TCP KEEPALIVE: 10.0 secs");
        assert_eq!(text(11, &[]), "TCP KEEPALIVE:");
        assert_eq!(text(12, &[0, 0]), "PAD: (2 bytes)");
        assert_eq!(
            text(15, &[0, 21, 10, b'A']),
            "EDE: 21 (Not Supported): (.A)"
        );
        assert_eq!(text(15, &[0, 25]), "EDE: 25");
        assert_eq!(text(15, &[0]), "EDE: 00 (\".\")");
        assert_eq!(text(14, &[0, 1, 0, 2]), "KEY-TAG: 1, 2");
        assert_eq!(text(14, &[0, 1, 2]), "KEY-TAG: 00 01 02 (\"...\")");
        assert_eq!(text(10, &[1]), "COOKIE: 01");
        assert_eq!(text(5, &[8, 13]), "OPT=5: 08 0d (\"..\")");
        assert_eq!(text(65001, &[]), "OPT=65001:");
    }

    #[test]
    fn names_malformed_options() {
        let problem = |code, data| option_problem(&EdnsOption { code, data });
        assert!(problem(8, &[0, 1, 24, 0, 192]).is_some());
        assert!(problem(9, &[0, 0, 1]).is_some());
        assert!(problem(15, &[0]).is_some());
        assert!(problem(13, &[3, b'c', b'o']).is_some());
        assert!(problem(8, &[0, 1, 24, 0, 192, 0, 2]).is_none());
        assert!(problem(10, &[1; 8]).is_none());
    }
}
