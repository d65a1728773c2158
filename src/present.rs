//! Rendering decoded messages for people and for tools.
//!
//! * [`rdata_text`]: RDATA in presentation format as `dig +nomulti` prints it (RFC 1035
//!   §5.1; the types of [`crate::wire::rdata`] decoded on demand, see [`rdata`]; RFC 3597
//!   §5 `\# len hex` for unknown types and for malformed RDATA of known ones, which
//!   [`rdata_problem`] names).
//! * EDNS options as dig's OPT PSEUDOSECTION shows them ([`edns`]).
//! * [`dig_text`]: a whole message in the familiar `dig` layout.
//! * [`json`]: one JSON object per message with the field names and shapes of the shared
//!   corpus's `oracle.jsonl` (see `testdata/README.md`).
use std::fmt::Write;

use serde_json::{json, Value};

use crate::wire::{
    parse_typed, Edns, Header, Message, ParseError, RData, RType, RdataError, Record,
};

pub mod edns;
pub mod rdata;

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
        RData::Ns(n) | RData::Cname(n) | RData::Ptr(n) | RData::Dname(n) | RData::Mailbox(n) => {
            n.to_string()
        }
        RData::Minfo(m) => format!("{} {}", m.rmailbx, m.emailbx),
        RData::Rp(rp) => format!("{} {}", rp.mbox, rp.txt),
        RData::PrefName { preference, host } => format!("{preference} {host}"),
        RData::Px(px) => format!("{} {} {}", px.preference, px.map822, px.mapx400),
        RData::Naptr(n) => format!(
            "{} {} {} {} {} {}",
            n.order,
            n.preference,
            quoted(n.flags),
            quoted(n.services),
            quoted(n.regexp),
            n.replacement
        ),
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
        RData::Opaque(b) => match parse_typed(r.rtype, b) {
            Some(Ok(t)) => rdata::typed_text(&t),
            _ => opaque_text(b),
        },
    }
}

/// RFC 3597 §5: `\# len hex`.
fn opaque_text(b: &[u8]) -> String {
    if b.is_empty() {
        "\\# 0".to_string()
    } else {
        format!("\\# {} {}", b.len(), hex::encode(b))
    }
}

/// What is wrong with the RDATA of `r`, if it is of a type decoded on demand
/// ([`crate::wire::rdata`]) and does not decode. The forwarder relays such RDATA as is;
/// `decode` shows it in `\# len hex` form with this error.
pub fn rdata_problem(r: &Record<'_>) -> Option<RdataError> {
    match r.rdata {
        RData::Opaque(b) => parse_typed(r.rtype, b)?.err(),
        _ => None,
    }
}

/// The first malformed typed RDATA or EDNS option of `m`, as a one-line error.
pub fn message_problem(m: &Message<'_>) -> Option<(&'static str, String)> {
    let sections = [
        ("answer", &m.answers),
        ("authority", &m.authority),
        ("additional", &m.additional),
    ];
    for (name, records) in sections {
        for (n, r) in records.iter().enumerate() {
            if let Some(e) = rdata_problem(r) {
                return Some(("BadRdata", format!("{e} in {name} record {n}")));
            }
        }
    }
    let e = m.edns()?;
    let what = e.options.iter().find_map(edns::option_problem)?;
    Some(("BadEdnsOption", format!("malformed EDNS option {what}")))
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
        // dig: flag bits other than DO as "MBZ" (must be zero, RFC 6891 §6.1.4).
        let mbz = if e.z != 0 {
            format!("; MBZ: 0x{:04x},", e.z)
        } else {
            ";".to_string()
        };
        let _ = writeln!(
            out,
            "; EDNS: version: {}, flags:{flags}{mbz} udp: {}",
            e.version, e.udp_size
        );
        for o in &e.options {
            let _ = writeln!(out, "; {}", edns::option_text(o));
            if let Some(problem) = edns::option_problem(o) {
                let _ = writeln!(out, ";; malformed EDNS option {problem}");
            }
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
            if let Some(e) = rdata_problem(r) {
                let _ = writeln!(out, ";; {e}");
            }
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
        .map(|o| {
            json!({
                "code": o.code, "name": o.name(), "hex": hex::encode(o.data),
                "text": edns::option_text(o),
            })
        })
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
    // A typed RDATA or an EDNS option that does not decode makes the message malformed
    // for display, as it does for the oracle's decoder (the forwarder relays it as is).
    let problem = parsed.as_ref().ok().and_then(message_problem);
    match parsed {
        Ok(m) if problem.is_none() => {
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
        _ => {
            let (error_type, error) = match (parsed, problem) {
                (Err(e), _) => (e.kind.name(), e.to_string()),
                (Ok(_), Some((kind, text))) => (kind, text),
                (Ok(_), None) => ("", String::new()),
            };
            v.extend([
                ("parse_ok".into(), false.into()),
                ("error_type".into(), error_type.into()),
                ("error".into(), error.into()),
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
