//! Rendering decoded messages for people and for tools.
//!
//! * [`rdata_text`]: RDATA in presentation format (RFC 1035 §5.1; RFC 3597 §5 `\# len hex`
//!   for the types kept opaque).
//! * [`dig_text`]: a whole message in the familiar `dig` layout.
//! * [`json`]: one JSON object per message with the field names and shapes of the shared
//!   corpus's `oracle.jsonl` (see `testdata/README.md`).
use std::fmt::Write;

use serde_json::{json, Value};

use crate::wire::{Edns, Header, Message, ParseError, RData, RType, Record};

/// Octets of a <character-string> in quotes: `"` and `\` escaped with a backslash,
/// octets outside 0x20..=0x7E as `\DDD`.
fn quoted(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7E => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
    out
}

/// RDATA in presentation format.
pub fn rdata_text(r: &Record<'_>) -> String {
    match &r.rdata {
        RData::A(a) => a.to_string(),
        RData::Aaaa(a) => a.to_string(),
        RData::Ns(n) | RData::Cname(n) | RData::Ptr(n) | RData::Dname(n) => n.to_string(),
        RData::Mx {
            preference,
            exchange,
        } => format!("{preference} {exchange}"),
        RData::Txt(strings) => strings
            .iter()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(" "),
        RData::Soa(s) => format!(
            "{} {} {} {} {} {} {}",
            s.mname, s.rname, s.serial, s.refresh, s.retry, s.expire, s.minimum
        ),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => format!("{priority} {weight} {port} {target}"),
        RData::Caa { flags, tag, value } => {
            format!("{flags} {} {}", String::from_utf8_lossy(tag), quoted(value))
        }
        RData::Opt(options) => options
            .iter()
            .map(|o| format!("{}:{}", o.code, hex::encode(o.data)))
            .collect::<Vec<_>>()
            .join(" "),
        RData::Opaque([]) => "\\# 0".to_string(),
        RData::Opaque(b) => format!("\\# {} {}", b.len(), hex::encode(b)),
    }
}

/// RDATA in wire form without compression (opaque RDATA exactly as received).
pub fn rdata_wire(r: &Record<'_>) -> Vec<u8> {
    if let RData::Opaque(b) = r.rdata {
        return b.to_vec();
    }
    let mut w = crate::wire::Writer::new(crate::wire::MAX_MESSAGE_LEN);
    let plain = Record {
        name: crate::wire::Name::root(),
        rtype: r.rtype,
        class: r.class,
        ttl: 0,
        rdata: r.rdata.clone(),
    };
    plain.write(&mut w);
    // Skip owner (1), type, class, ttl, rdlength: 11 octets.
    w.as_bytes().get(11..).unwrap_or_default().to_vec()
}

fn record_line(r: &Record<'_>) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        r.name,
        r.ttl,
        r.class.name(),
        r.rtype.name(),
        rdata_text(r)
    )
}

/// The message in `dig`'s layout.
pub fn dig_text(m: &Message<'_>) -> String {
    let h = &m.header;
    let mut out = String::new();
    let _ = writeln!(
        out,
        ";; ->>HEADER<<- opcode: {}, status: {}, id: {}",
        h.opcode.name(),
        m.rcode().name(),
        h.id
    );
    let _ = writeln!(
        out,
        ";; flags: {}; QUERY: {}, ANSWER: {}, AUTHORITY: {}, ADDITIONAL: {}",
        h.flags_text(),
        h.qdcount,
        h.ancount,
        h.nscount,
        h.arcount
    );
    if let Some(e) = m.edns() {
        let _ = writeln!(out, "\n;; OPT PSEUDOSECTION:");
        let flags = if e.dnssec_ok { " do" } else { "" };
        let _ = writeln!(
            out,
            "; EDNS: version: {}, flags:{}; udp: {}",
            e.version, flags, e.udp_size
        );
        for o in &e.options {
            let name = o
                .name()
                .map_or_else(|| format!("OPT={}", o.code), str::to_string);
            let _ = writeln!(out, "; {name}: {}", hex::encode(o.data));
        }
    }
    let _ = writeln!(out, "\n;; QUESTION SECTION:");
    for q in &m.questions {
        let _ = writeln!(
            out,
            ";{}\t\t{}\t{}",
            q.qname,
            q.qclass.name(),
            q.qtype.name()
        );
    }
    let sections = [
        ("ANSWER", &m.answers),
        ("AUTHORITY", &m.authority),
        ("ADDITIONAL", &m.additional),
    ];
    for (title, records) in sections {
        let shown: Vec<_> = records.iter().filter(|r| r.rtype != RType::OPT).collect();
        if shown.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n;; {title} SECTION:");
        for r in shown {
            let _ = writeln!(out, "{}", record_line(r));
        }
    }
    out
}

fn header_json(h: &Header) -> Value {
    json!({
        "id": h.id, "flags": h.flags(),
        "qr": u8::from(h.qr), "opcode": h.opcode.0, "aa": u8::from(h.aa), "tc": u8::from(h.tc),
        "rd": u8::from(h.rd), "ra": u8::from(h.ra), "z": u8::from(h.z), "ad": u8::from(h.ad),
        "cd": u8::from(h.cd), "rcode": h.rcode.0,
        "opcode_text": h.opcode.name(), "flags_text": h.flags_text().to_uppercase(),
        "qdcount": h.qdcount, "ancount": h.ancount, "nscount": h.nscount, "arcount": h.arcount,
    })
}

fn record_json(r: &Record<'_>) -> Value {
    json!([
        r.name.to_lowercase_string(),
        r.ttl,
        r.class.name(),
        r.rtype.name(),
        rdata_text(r),
        r.rtype.0,
        r.class.0,
        hex::encode(rdata_wire(r)),
    ])
}

fn edns_json(e: &Edns<'_>) -> Value {
    let options: Vec<Value> = e
        .options
        .iter()
        .map(|o| json!({"code": o.code, "name": o.name(), "hex": hex::encode(o.data)}))
        .collect();
    json!({
        "version": e.version, "udp_size": e.udp_size, "do": u8::from(e.dnssec_ok),
        "ext_rcode": e.ext_rcode, "z": e.z, "options": options,
    })
}

/// One JSON object for one message, shaped like a line of the corpus's `oracle.jsonl`.
/// `meta` (file, transport, addresses…) is merged in first.
pub fn json(bytes: &[u8], parsed: &Result<Message<'_>, ParseError>, meta: Value) -> Value {
    let mut v = match meta {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    v.insert("len".into(), bytes.len().into());
    v.insert("hex".into(), hex::encode(bytes).into());
    // The header is shown whenever there are 12 octets, even if the rest is malformed.
    let header = crate::wire::parse_header(bytes).ok().map(|(_, h)| h);
    if let Some(Value::Object(h)) = header.as_ref().map(header_json) {
        v.extend(h);
    }
    match parsed {
        Ok(m) => {
            let rcode = m.rcode();
            let section = |rs: &[Record<'_>]| rs.iter().map(record_json).collect::<Vec<_>>();
            let questions: Vec<Value> = m
                .questions
                .iter()
                .map(|q| {
                    json!([
                        q.qname.to_lowercase_string(),
                        q.qtype.name(),
                        q.qclass.name(),
                        q.qtype.0,
                        q.qclass.0,
                        q.qname.to_string()
                    ])
                })
                .collect();
            v.extend([
                ("parse_ok".into(), true.into()),
                ("error_type".into(), Value::Null),
                ("error".into(), Value::Null),
                ("rcode_ext".into(), rcode.0.into()),
                ("rcode_text".into(), rcode.name().into()),
                ("questions".into(), questions.into()),
                ("answers".into(), section(&m.answers).into()),
                ("authority".into(), section(&m.authority).into()),
                ("additional".into(), section(&m.additional).into()),
                (
                    "edns".into(),
                    m.edns().as_ref().map_or(Value::Null, edns_json),
                ),
                (
                    "tsig".into(),
                    m.additional.iter().any(|r| r.rtype == RType::TSIG).into(),
                ),
            ]);
        }
        Err(e) => {
            v.extend([
                ("parse_ok".into(), false.into()),
                ("error_type".into(), e.kind.name().into()),
                ("error".into(), e.to_string().into()),
                ("questions".into(), json!([])),
                ("answers".into(), json!([])),
                ("authority".into(), json!([])),
                ("additional".into(), json!([])),
                ("edns".into(), Value::Null),
            ]);
        }
    }
    Value::Object(v)
}
