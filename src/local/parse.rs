//! The text formats of local data: hosts(5) lines, blocklist lines (bare domains or
//! hosts-style `0.0.0.0 name`) and records in presentation format (RFC 1035 §5.1).
//! Each parser reads one line and allocates only what it returns.
use std::net::IpAddr;

use crate::wire::{Name, RType, MAX_LABEL_LEN, MAX_NAME_LEN};

/// TTL of a `--local-record` written without one (Unbound's local-data default).
pub const DEFAULT_TTL: u32 = 3600;

/// One record of local data: type, TTL and RDATA in wire form (names uncompressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRr {
    pub rtype: RType,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

/// A record line: its owner (folded wire form) and the record.
pub type Parsed = (Vec<u8>, LocalRr);

/// The line without its `#` comment, trimmed.
pub fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

/// A domain in presentation form (no escapes; a trailing dot optional) as folded wire
/// form into `out`; returns its length. `None` if it is not a name: an empty label, a
/// label over 63 octets, over 255 in all, or a character outside `!`..=`~`.
pub fn domain_wire(s: &[u8], out: &mut [u8; MAX_NAME_LEN]) -> Option<usize> {
    let s = s.strip_suffix(b".").unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    let mut at = 0usize;
    for label in s.split(|&b| b == b'.') {
        if label.is_empty()
            || label.len() > MAX_LABEL_LEN
            || !label
                .iter()
                .all(|b| (b'!'..=b'~').contains(b) && *b != b'\\')
        {
            return None;
        }
        let end = at + 1 + label.len();
        let dst = out.get_mut(at..end)?;
        let (len, rest) = dst.split_first_mut()?;
        *len = label.len() as u8;
        rest.copy_from_slice(label);
        rest.make_ascii_lowercase();
        at = end;
    }
    *out.get_mut(at)? = 0;
    Some(at + 1)
}

/// The folded wire form of a domain, allocated.
pub fn domain(s: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; MAX_NAME_LEN];
    let n = domain_wire(s.as_bytes(), &mut buf)?;
    buf.get(..n).map(<[u8]>::to_vec)
}

/// Names in hosts files that are the host's own, never something to block.
fn is_hosts_boilerplate(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "localhost"
        || n == "localhost.localdomain"
        || n == "local"
        || n == "broadcasthost"
        || n.starts_with("ip6-")
        || n.parse::<IpAddr>().is_ok()
}

/// The names a blocklist line lists, handed to `each`: a bare domain (`*.` and a
/// leading `.` allowed: subdomains are blocked anyway), or a hosts line whose address
/// is 0.0.0.0, 127.0.0.1, :: or ::1 (the host's own names, such as `localhost`, are
/// skipped, as are lines for other addresses). False for a line of neither shape.
pub fn block_line(line: &str, mut each: impl FnMut(&str)) -> bool {
    let line = strip_comment(line);
    let mut words = line.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return true;
    };
    let Some(second) = words.next() else {
        let bare = first.strip_prefix("*.").unwrap_or(first);
        each(bare.strip_prefix('.').unwrap_or(bare));
        return true;
    };
    if first.contains('%') {
        return true; // a scoped address such as fe80::1%lo0: the host's own
    }
    let Ok(addr) = first.parse::<IpAddr>() else {
        return false;
    };
    let null = match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_loopback(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_loopback(),
    };
    if null {
        for name in std::iter::once(second).chain(words) {
            if !is_hosts_boilerplate(name) {
                each(name);
            }
        }
    }
    true
}

/// A hosts(5) line: its address and names (canonical name first), `None` for a blank
/// or comment line. Scoped addresses (`fe80::1%lo0`) are skipped as `None`.
pub fn hosts_line(line: &str) -> Result<Option<(IpAddr, Vec<&str>)>, String> {
    let line = strip_comment(line);
    let mut words = line.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return Ok(None);
    };
    if first.contains('%') {
        return Ok(None);
    }
    let addr: IpAddr = first
        .parse()
        .map_err(|_| format!("'{first}' is not an IP address"))?;
    let names: Vec<&str> = words.collect();
    if names.is_empty() {
        return Err(format!("no name for {addr}"));
    }
    Ok(Some((addr, names)))
}

/// The reverse-lookup name of `addr` (RFC 1035 §3.5 in-addr.arpa, RFC 3596 §2.5
/// ip6.arpa nibbles), folded wire form.
pub fn reverse_name(addr: IpAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(74);
    match addr {
        IpAddr::V4(a) => {
            for o in a.octets().iter().rev() {
                let s = o.to_string();
                out.push(s.len() as u8);
                out.extend_from_slice(s.as_bytes());
            }
            out.extend_from_slice(b"\x07in-addr\x04arpa\x00");
        }
        IpAddr::V6(a) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for o in a.octets().iter().rev() {
                for nibble in [o & 0xF, o >> 4] {
                    out.push(1);
                    out.push(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
                }
            }
            out.extend_from_slice(b"\x03ip6\x04arpa\x00");
        }
    }
    out
}

/// Splits a record line into words: runs of non-blanks, or `"quoted strings"` (with
/// `\"`, `\\` and `\DDD` escapes) returned unquoted.
/// A word of a record line: its octets, and whether it was quoted.
type Word = (Vec<u8>, bool);

fn words(s: &str) -> Result<Vec<Word>, String> {
    let mut out = Vec::new();
    let mut b = s.bytes().peekable();
    while let Some(&c) = b.peek() {
        if c.is_ascii_whitespace() {
            b.next();
            continue;
        }
        let quoted = c == b'"';
        if quoted {
            b.next();
        }
        let mut word = Vec::new();
        let mut closed = !quoted;
        while let Some(c) = b.next() {
            match c {
                b'"' if quoted => {
                    closed = true;
                    break;
                }
                b'\\' if quoted => {
                    let e = b.next().ok_or("a backslash ends the line")?;
                    if e.is_ascii_digit() {
                        let d: String = [Some(e), b.next(), b.next()]
                            .iter()
                            .map(|d| d.map_or('x', char::from))
                            .collect();
                        word.push(d.parse::<u8>().map_err(|_| format!("bad escape \\{d}"))?);
                    } else {
                        word.push(e);
                    }
                }
                c if !quoted && c.is_ascii_whitespace() => break,
                c => word.push(c),
            }
        }
        if !closed {
            return Err("a quoted string is not closed".into());
        }
        out.push((word, quoted));
    }
    Ok(out)
}

/// A record in presentation format: `OWNER [TTL] [IN] TYPE RDATA`, TTL and class in
/// either order; types A, AAAA, CNAME, TXT, MX, SRV and PTR. Names are absolute.
pub fn record(line: &str) -> Result<Parsed, String> {
    let words = words(line)?;
    let text = |w: &Word| String::from_utf8_lossy(&w.0).into_owned();
    let mut it = words.iter();
    let owner = it.next().ok_or("empty record")?;
    let owner = domain(&text(owner)).ok_or_else(|| format!("'{}' is not a name", text(owner)))?;
    let mut ttl = None;
    let mut rtype = None;
    for w in it.by_ref() {
        let t = text(w);
        if let (None, Ok(n)) = (ttl, t.parse::<u32>()) {
            ttl = Some(n.min(i32::MAX as u32));
        } else if t.eq_ignore_ascii_case("IN") {
            continue;
        } else {
            rtype = Some(t.to_ascii_uppercase());
            break;
        }
    }
    let rtype = rtype.ok_or("no type")?;
    let rest: Vec<&Word> = it.collect();
    let (rtype, rdata) = rdata(&rtype, &rest)?;
    let ttl = ttl.unwrap_or(DEFAULT_TTL);
    Ok((owner, LocalRr { rtype, ttl, rdata }))
}

/// The RDATA of type `rtype` (upper case) from the words after it.
fn rdata(rtype: &str, rest: &[&Word]) -> Result<(RType, Vec<u8>), String> {
    let args: Vec<String> = rest
        .iter()
        .map(|w| String::from_utf8_lossy(&w.0).into_owned())
        .collect();
    let want = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("{rtype} takes {n} value(s), got {}", args.len()))
        }
    };
    let name = |s: &str| domain(s).ok_or_else(|| format!("'{s}' is not a name"));
    let num = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("'{s}' is not a number 0..=65535"))
    };
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    let mut out = Vec::new();
    let t = match rtype {
        "A" => {
            want(1)?;
            let a: std::net::Ipv4Addr = arg(0)
                .parse()
                .map_err(|_| format!("'{}' is not an IPv4 address", arg(0)))?;
            out.extend_from_slice(&a.octets());
            RType::A
        }
        "AAAA" => {
            want(1)?;
            let a: std::net::Ipv6Addr = arg(0)
                .parse()
                .map_err(|_| format!("'{}' is not an IPv6 address", arg(0)))?;
            out.extend_from_slice(&a.octets());
            RType::AAAA
        }
        "CNAME" | "PTR" => {
            want(1)?;
            out = name(arg(0))?;
            if rtype == "PTR" {
                RType::PTR
            } else {
                RType::CNAME
            }
        }
        "MX" => {
            want(2)?;
            out.extend_from_slice(&num(arg(0))?.to_be_bytes());
            out.extend(name(arg(1))?);
            RType::MX
        }
        "SRV" => {
            want(4)?;
            for i in 0..3 {
                out.extend_from_slice(&num(arg(i))?.to_be_bytes());
            }
            out.extend(name(arg(3))?);
            RType::SRV
        }
        "TXT" => {
            if rest.is_empty() {
                return Err("TXT needs at least one string".into());
            }
            for w in rest {
                let len = u8::try_from(w.0.len())
                    .map_err(|_| "a TXT string is longer than 255 octets".to_string())?;
                out.push(len);
                out.extend_from_slice(&w.0);
            }
            RType::TXT
        }
        other => {
            return Err(format!(
                "type {other} is not one of A, AAAA, CNAME, TXT, MX, SRV, PTR"
            ))
        }
    };
    Ok((t, out))
}

/// A name for messages: the wire form in presentation format.
pub fn show(wire: &[u8]) -> String {
    Name::from_wire(wire).map_or_else(|_| "?".into(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(line: &str) -> Option<Vec<String>> {
        let mut v = Vec::new();
        block_line(line, |n| v.push(n.to_string())).then_some(v)
    }

    #[test]
    fn reads_blocklist_lines_of_both_shapes() {
        assert_eq!(
            collect("ads.example.com"),
            Some(vec!["ads.example.com".into()])
        );
        assert_eq!(
            collect("  t.example  # tracker"),
            Some(vec!["t.example".into()])
        );
        assert_eq!(collect("*.wild.example"), Some(vec!["wild.example".into()]));
        assert_eq!(collect("# only a comment"), Some(vec![]));
        assert_eq!(collect(""), Some(vec![]));
        assert_eq!(
            collect("0.0.0.0 a.example b.example"),
            Some(vec!["a.example".into(), "b.example".into()])
        );
        assert_eq!(
            collect("127.0.0.1\tc.example"),
            Some(vec!["c.example".into()])
        );
        assert_eq!(collect(":: d.example"), Some(vec!["d.example".into()]));
        for boilerplate in [
            "127.0.0.1 localhost",
            "127.0.0.1 localhost.localdomain",
            "::1 ip6-localhost ip6-loopback",
            "255.255.255.255 broadcasthost",
            "fe80::1%lo0 localhost",
            "0.0.0.0 0.0.0.0",
            "192.168.1.1 router.example",
        ] {
            assert_eq!(collect(boilerplate), Some(vec![]), "{boilerplate}");
        }
        assert_eq!(collect("block this please"), None);
    }

    #[test]
    fn folds_domains_into_wire_form() {
        assert_eq!(
            domain("WWW.Example.COM."),
            Some(b"\x03www\x07example\x03com\x00".to_vec())
        );
        assert_eq!(
            domain("a_b.example"),
            Some(b"\x03a_b\x07example\x00".to_vec())
        );
        for bad in [
            "",
            ".",
            "a..b",
            "a b",
            "x\\.y",
            &"a".repeat(64),
            &["abc"; 64].join("."),
        ] {
            assert_eq!(domain(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_hosts_lines() {
        let (a, names) = hosts_line("192.168.1.5  nas.lan nas  # the NAS")
            .unwrap()
            .unwrap();
        assert_eq!(a, "192.168.1.5".parse::<IpAddr>().unwrap());
        assert_eq!(names, ["nas.lan", "nas"]);
        assert_eq!(hosts_line("   # nothing").unwrap(), None);
        assert_eq!(hosts_line("fe80::1%lo0 localhost").unwrap(), None);
        assert!(hosts_line("nas.lan 192.168.1.5")
            .unwrap_err()
            .contains("not an IP"));
        assert!(hosts_line("192.168.1.5").unwrap_err().contains("no name"));
    }

    #[test]
    fn reverse_names() {
        let v4 = reverse_name("192.168.1.5".parse().unwrap());
        assert_eq!(show(&v4), "5.1.168.192.in-addr.arpa.");
        let v6 = reverse_name("2001:db8::1".parse().unwrap());
        assert_eq!(
            show(&v6),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }

    #[test]
    fn reads_records_in_presentation_format() {
        let (owner, rr) = record("nas.lan. 300 IN A 192.168.1.5").unwrap();
        assert_eq!(owner, b"\x03nas\x03lan\x00");
        assert_eq!(
            rr,
            LocalRr {
                rtype: RType::A,
                ttl: 300,
                rdata: vec![192, 168, 1, 5]
            }
        );
        let (_, rr) = record("v6.lan IN 60 AAAA ::1").unwrap();
        assert_eq!((rr.rtype, rr.ttl, rr.rdata[15]), (RType::AAAA, 60, 1));
        let (_, rr) = record("www.lan CNAME nas.lan.").unwrap();
        assert_eq!((rr.rtype, rr.ttl), (RType::CNAME, DEFAULT_TTL));
        assert_eq!(rr.rdata, b"\x03nas\x03lan\x00");
        let (_, rr) = record(r#"t.lan TXT "hello world" x "q\"\065""#).unwrap();
        assert_eq!(rr.rdata, b"\x0bhello world\x01x\x03q\"A");
        let (_, rr) = record("lan MX 10 mail.lan").unwrap();
        assert_eq!(rr.rdata, b"\x00\x0a\x04mail\x03lan\x00");
        let (_, rr) = record("_sip._tcp.lan SRV 1 2 5060 sip.lan").unwrap();
        assert_eq!(rr.rdata, b"\x00\x01\x00\x02\x13\xc4\x03sip\x03lan\x00");
        let (_, rr) = record("5.1.168.192.in-addr.arpa PTR nas.lan").unwrap();
        assert_eq!(rr.rtype, RType::PTR);
        for (bad, why) in [
            ("", "empty"),
            ("nas.lan", "no type"),
            ("nas.lan A", "takes 1"),
            ("nas.lan A 1.2.3", "IPv4"),
            ("nas.lan HINFO a b", "not one of"),
            ("nas.lan MX x mail.lan", "number"),
            ("t.lan TXT \"open", "not closed"),
            ("t.lan TXT", "at least one"),
        ] {
            let e = record(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
