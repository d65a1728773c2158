//! Presentation of the typed RDATA of [`crate::wire::rdata`] as `dig +nomulti` (BIND
//! 9.18) prints it: base64 and upper-case hex split into 56-character chunks, RRSIG
//! times as `YYYYMMDDHHMMSS`, NSEC type bitmaps as mnemonics (`TYPEnnn` otherwise),
//! NSEC3 salt in hex or `-` and next owner in base32hex, SvcParams as `key=value`, LOC
//! in degrees, minutes and seconds.
use std::fmt::Write;

use crate::wire::rdata::{Loc, SvcParam, Svcb, TypeBitmap, Typed, LOC_EQUATOR};

use super::quoted;

/// dig splits base64 and hex blobs into chunks of this many characters.
const CHUNK: usize = 56;

/// The RDATA text of `t`.
pub fn typed_text(t: &Typed<'_>) -> String {
    match t {
        Typed::Dnskey(k) => blob_after(
            format!("{} {} {}", k.flags, k.protocol, k.algorithm),
            &base64(k.public_key),
        ),
        Typed::Rrsig(s) => blob_after(
            format!(
                "{} {} {} {} {} {} {} {}",
                s.type_covered.name(),
                s.algorithm,
                s.labels,
                s.original_ttl,
                time(s.expiration),
                time(s.inception),
                s.key_tag,
                s.signer
            ),
            &base64(s.signature),
        ),
        Typed::Ds(d) => blob_after(
            format!("{} {} {}", d.key_tag, d.algorithm, d.digest_type),
            &hex_upper(d.digest),
        ),
        Typed::Nsec { next, types } => with_types(next.to_string(), types),
        Typed::Nsec3(n) => with_types(
            format!(
                "{} {} {} {} {}",
                n.hash_algorithm,
                n.flags,
                n.iterations,
                salt(n.salt),
                base32hex(n.next_hashed)
            ),
            &n.types,
        ),
        Typed::Nsec3param(n) => format!(
            "{} {} {} {}",
            n.hash_algorithm,
            n.flags,
            n.iterations,
            salt(n.salt)
        ),
        Typed::Svcb(s) => svcb_text(s),
        Typed::Sshfp {
            algorithm,
            fp_type,
            fingerprint,
        } => blob_after(format!("{algorithm} {fp_type}"), &hex_upper(fingerprint)),
        Typed::Tlsa {
            usage,
            selector,
            matching_type,
            data,
        } => blob_after(
            format!("{usage} {selector} {matching_type}"),
            &hex_upper(data),
        ),
        Typed::Zonemd {
            serial,
            scheme,
            hash_algorithm,
            digest,
        } => blob_after(
            format!("{serial} {scheme} {hash_algorithm}"),
            &hex_upper(digest),
        ),
        Typed::Csync {
            serial,
            flags,
            types,
        } => with_types(format!("{serial} {flags}"), types),
        Typed::Loc(l) => loc_text(l),
        Typed::Uri {
            priority,
            weight,
            target,
        } => format!("{priority} {weight} {}", quoted(target)),
        Typed::Cert {
            cert_type,
            key_tag,
            algorithm,
            certificate,
        } => blob_after(
            format!(
                "{} {key_tag} {}",
                cert_type_name(*cert_type),
                secalg_name(*algorithm)
            ),
            &base64(certificate),
        ),
        Typed::Blob(b) => base64(b),
        Typed::Strings(strings) => strings
            .iter()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(" "),
        Typed::PrefName { preference, name } => format!("{preference} {name}"),
        Typed::Locator64 {
            preference,
            locator,
        } => {
            let groups: Vec<String> = locator
                .chunks_exact(2)
                .map(|g| format!("{:x}", g.iter().fold(0u16, |v, &b| v << 8 | u16::from(b))))
                .collect();
            format!("{preference} {}", groups.join(":"))
        }
        Typed::L32 {
            preference,
            locator,
        } => format!("{preference} {locator}"),
        Typed::Eui48(a) => dashed(a),
        Typed::Eui64(a) => dashed(a),
    }
}

/// `head`, a space and the blob; just `head` when the blob is empty.
fn blob_after(head: String, blob: &str) -> String {
    if blob.is_empty() {
        head
    } else {
        format!("{head} {blob}")
    }
}

fn with_types(head: String, types: &TypeBitmap<'_>) -> String {
    let mut out = head;
    for t in types.types() {
        out.push(' ');
        out.push_str(&t.name());
    }
    out
}

fn salt(s: &[u8]) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        hex::encode_upper(s)
    }
}

fn dashed(a: &[u8]) -> String {
    a.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join("-")
}

/// Splits `s` into chunks of [`CHUNK`] characters joined by spaces (`s` is ASCII).
fn chunked(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / CHUNK);
    for (n, c) in s.chars().enumerate() {
        if n > 0 && n % CHUNK == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn hex_upper(b: &[u8]) -> String {
    chunked(&hex::encode_upper(b))
}

fn base64(b: &[u8]) -> String {
    chunked(&base64_plain(b))
}

/// Base64 (RFC 4648 §4) with padding, in one piece.
pub(crate) fn base64_plain(b: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for group in b.chunks(3) {
        let v = group
            .iter()
            .chain(std::iter::repeat(&0))
            .take(3)
            .fold(0u32, |v, &x| v << 8 | u32::from(x));
        for n in 0..4 {
            if n <= group.len() {
                let six = (v >> (18 - 6 * n)) & 0x3F;
                out.push(char::from(
                    ALPHABET.get(six as usize).copied().unwrap_or(b'='),
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base32 with the "extended hex" alphabet (RFC 4648 §7), no padding (RFC 5155 §3.3).
fn base32hex(b: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";
    let mut out = String::with_capacity(b.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &x in b {
        acc = (acc << 8 | u32::from(x)) & 0xFFFF;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let five = (acc >> bits) & 0x1F;
            out.push(char::from(
                ALPHABET.get(five as usize).copied().unwrap_or(b'0'),
            ));
        }
    }
    if bits > 0 {
        let five = (acc << (5 - bits)) & 0x1F;
        out.push(char::from(
            ALPHABET.get(five as usize).copied().unwrap_or(b'0'),
        ));
    }
    out
}

/// A 32-bit DNSSEC time (seconds since 1970, RFC 4034 §3.2) as `YYYYMMDDHHMMSS`, UTC.
/// Read as 1970..2106, as dnspython does; BIND picks the 2^32-second period nearest to
/// now, which is the same until 2038.
pub fn time(t: u32) -> String {
    let days = i64::from(t / 86_400);
    let secs = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn cert_type_name(t: u16) -> String {
    let name = match t {
        1 => "PKIX",
        2 => "SPKI",
        3 => "PGP",
        4 => "IPKIX",
        5 => "ISPKI",
        6 => "IPGP",
        7 => "ACPKIX",
        8 => "IACPKIX",
        253 => "URI",
        254 => "OID",
        n => return n.to_string(),
    };
    name.to_string()
}

/// DNSSEC algorithm mnemonics (IANA "DNS Security Algorithm Numbers"), as dig prints
/// them in CERT.
fn secalg_name(a: u8) -> String {
    let name = match a {
        1 => "RSAMD5",
        2 => "DH",
        3 => "DSA",
        5 => "RSASHA1",
        6 => "NSEC3DSA",
        7 => "NSEC3RSASHA1",
        8 => "RSASHA256",
        10 => "RSASHA512",
        12 => "ECCGOST",
        13 => "ECDSAP256SHA256",
        14 => "ECDSAP384SHA384",
        15 => "ED25519",
        16 => "ED448",
        252 => "INDIRECT",
        253 => "PRIVATEDNS",
        254 => "PRIVATEOID",
        n => return n.to_string(),
    };
    name.to_string()
}

/// `priority target key=value…` (RFC 9460 appendix A, as dig 9.18 prints it).
fn svcb_text(s: &Svcb<'_>) -> String {
    let mut out = format!("{} {}", s.priority, s.target);
    for p in &s.params {
        out.push(' ');
        out.push_str(&SvcParam::key_name(p.key));
        if let Some(v) = param_value(p) {
            out.push('=');
            out.push_str(&v);
        }
    }
    out
}

/// The text after `key=`, or `None` for a key shown alone (an empty value).
fn param_value(p: &SvcParam<'_>) -> Option<String> {
    let v = p.value;
    let list = |size: usize, f: &dyn Fn(&[u8]) -> String| {
        v.chunks_exact(size).map(f).collect::<Vec<_>>().join(",")
    };
    Some(match p.key {
        SvcParam::MANDATORY => list(2, &|k| {
            SvcParam::key_name(k.iter().fold(0u16, |a, &b| a << 8 | u16::from(b))).into_owned()
        }),
        SvcParam::ALPN => {
            // Each alpn-id with `,` and `\` escaped, joined by `,`, then the whole as a
            // quoted character-string (RFC 9460 appendix A.1).
            let mut ids: Vec<u8> = Vec::new();
            let mut i = v;
            while let Some((&len, rest)) = i.split_first() {
                let (id, after) = rest
                    .split_at_checked(usize::from(len))
                    .unwrap_or((rest, &[]));
                if !ids.is_empty() {
                    ids.push(b',');
                }
                for &b in id {
                    if b == b',' || b == b'\\' {
                        ids.push(b'\\');
                    }
                    ids.push(b);
                }
                i = after;
            }
            quoted(&ids)
        }
        SvcParam::PORT => list(2, &|b| {
            b.iter()
                .fold(0u16, |a, &x| a << 8 | u16::from(x))
                .to_string()
        }),
        SvcParam::IPV4HINT => list(4, &|b| {
            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(b).unwrap_or_default()).to_string()
        }),
        SvcParam::IPV6HINT => list(16, &|b| {
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default()).to_string()
        }),
        SvcParam::ECH => base64_plain(v),
        _ if v.is_empty() => return None,
        _ => quoted(v),
    })
}

/// LOC as BIND prints it: `d m s.fff N d m s.fff E alt.ccm size hp vp`.
fn loc_text(l: &Loc) -> String {
    let angle = |v: u32, pos: char, neg: char| {
        let (hemi, v) = if v >= LOC_EQUATOR {
            (pos, v - LOC_EQUATOR)
        } else {
            (neg, LOC_EQUATOR - v)
        };
        let (ms, v) = (v % 1000, v / 1000);
        let (s, v) = (v % 60, v / 60);
        let (m, d) = (v % 60, v / 60);
        format!("{d} {m} {s}.{ms:03} {hemi}")
    };
    const BASE: u32 = 10_000_000;
    let (sign, alt) = if l.altitude < BASE {
        ("-", BASE - l.altitude)
    } else {
        ("", l.altitude - BASE)
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "{} {} {sign}{}.{:02}m {}m {}m {}m",
        angle(l.latitude, 'N', 'S'),
        angle(l.longitude, 'E', 'W'),
        alt / 100,
        alt % 100,
        precision(l.size),
        precision(l.horiz_pre),
        precision(l.vert_pre)
    );
    out
}

/// A size or precision octet (mantissa × 10^exponent cm) in metres: whole metres from
/// 1 m up, `0.cc` below.
fn precision(p: u8) -> String {
    let (mantissa, exponent) = (u64::from(p >> 4), u32::from(p & 0x0F));
    if exponent >= 2 {
        (mantissa * 10u64.pow(exponent - 2)).to_string()
    } else {
        format!("0.{:02}", mantissa * 10u64.pow(exponent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_base64_and_base32hex_as_rfc4648_test_vectors() {
        let cases = [("", "", ""), ("f", "Zg==", "CO"), ("fo", "Zm8=", "CPNG")];
        for (plain, b64, b32) in cases {
            assert_eq!(base64_plain(plain.as_bytes()), b64);
            assert_eq!(base32hex(plain.as_bytes()), b32);
        }
        assert_eq!(base64_plain(b"foobar"), "Zm9vYmFy");
        assert_eq!(base32hex(b"foobar"), "CPNMUOJ1E8");
        assert_eq!(base32hex(b"fooba"), "CPNMUOJ1");
    }

    #[test]
    fn prints_dnssec_times_in_utc() {
        assert_eq!(time(0), "19700101000000");
        assert_eq!(time(951_782_400), "20000229000000");
        assert_eq!(time(u32::MAX), "21060207062815");
    }

    #[test]
    fn prints_loc_precision_like_bind() {
        assert_eq!(precision(0x12), "1");
        assert_eq!(precision(0x10), "0.01");
        assert_eq!(precision(0x00), "0.00");
        assert_eq!(precision(0x99), "90000000");
    }
}
