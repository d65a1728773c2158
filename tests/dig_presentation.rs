//! Our presentation against dig's, for the same wire messages.
//!
//! `testdata/rdata/dig.jsonl` (made by `testdata/rdata/regen.sh`: knotd serving
//! `rdata.test.zone`, dig 9.18 asking through a recording proxy) holds, for each dig
//! run, the messages on the wire and what dig printed. Here:
//! * every record dig printed (a zone transfer with every type of the zone, and single
//!   queries whose answers knotd compresses) has the owner, TTL, class, type and RDATA
//!   text we print for the same record of the same message;
//! * every OPT PSEUDOSECTION dig printed (queries with `+qr`, and answers) has the lines
//!   we print for the same message (matched by ID and QR);
//! * every typed RDATA writes back to the octets it was read from.
//!
//! Known, deliberate differences, normalised before comparing: dig 9.18 names the
//! SvcParamKeys 7 and 8 `key7` and `key8` where we print `dohpath` and `ohttp` (RFC 9461,
//! RFC 9540; dig 9.20 names them too); dig marks a server cookie that matches its own
//! client cookie `(good)`, which needs the query and is left out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::BTreeSet;

use dnsfwd::present::{dig_text, rdata_text};
use dnsfwd::wire::{parse_message, parse_typed, RData, Record};
use serde_json::Value;

struct Run {
    cmd: Vec<String>,
    /// (is a response, transport, bytes)
    messages: Vec<(bool, Vec<u8>)>,
    dig: String,
}

fn runs() -> Vec<Run> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/rdata/dig.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Run {
                cmd: v["cmd"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
                messages: v["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        (
                            m["dir"] == "response",
                            hex::decode(m["hex"].as_str().unwrap()).unwrap(),
                        )
                    })
                    .collect(),
                dig: v["dig"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// owner, TTL, class, type and the RDATA text (the rest of the line, trimmed).
fn split_record(line: &str) -> [String; 5] {
    let mut rest = line;
    let mut fields: Vec<String> = Vec::new();
    for _ in 0..4 {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        fields.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    fields.push(rest.trim().to_string());
    fields.try_into().unwrap()
}

fn ours(r: &Record<'_>) -> [String; 5] {
    [
        r.name.to_lowercase_string(),
        r.ttl.to_string(),
        r.class.name().into_owned(),
        r.rtype.name().into_owned(),
        rdata_text(r)
            .replace(" dohpath=", " key7=")
            .replace(" ohttp", " key8"),
    ]
}

#[test]
fn rdata_text_matches_dig_for_every_record_of_the_zone() {
    let mut types = BTreeSet::new();
    let mut compared = 0;
    for run in runs()
        .iter()
        .filter(|r| !r.cmd.contains(&"+qr".to_string()))
    {
        let theirs: Vec<[String; 5]> = run
            .dig
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(split_record)
            .collect();
        let mut mine = Vec::new();
        for (_, bytes) in run.messages.iter().filter(|(response, _)| *response) {
            let m = parse_message(bytes).unwrap_or_else(|e| panic!("{:?}: {e}", run.cmd));
            for r in &m.answers {
                mine.push(ours(r));
                types.insert(r.rtype.name().into_owned());
                // A typed RDATA writes back to what it was read from.
                if let RData::Opaque(b) = r.rdata {
                    if let Some(t) = parse_typed(r.rtype, b) {
                        let t = t.unwrap_or_else(|e| panic!("{:?}: {e}", run.cmd));
                        assert_eq!(t.to_vec(), b, "{:?} {} round trip", run.cmd, r.rtype.name());
                    }
                }
            }
        }
        assert_eq!(mine.len(), theirs.len(), "{:?}: record count", run.cmd);
        for (a, b) in mine.iter().zip(&theirs) {
            assert_eq!(a, b, "{:?}", run.cmd);
            compared += 1;
        }
    }
    eprintln!(
        "{compared} records compared with dig, of {} types",
        types.len()
    );
    for t in [
        "DNSKEY",
        "RRSIG",
        "DS",
        "NSEC",
        "NSEC3",
        "NSEC3PARAM",
        "CDS",
        "CDNSKEY",
        "SVCB",
        "HTTPS",
        "SSHFP",
        "TLSA",
        "SMIMEA",
        "OPENPGPKEY",
        "CERT",
        "DHCID",
        "ZONEMD",
        "CSYNC",
        "NAPTR",
        "URI",
        "HINFO",
        "RP",
        "AFSDB",
        "KX",
        "MINFO",
        "RT",
        "MB",
        "MG",
        "MR",
        "PX",
        "X25",
        "ISDN",
        "SPF",
        "EUI48",
        "EUI64",
        "NID",
        "L32",
        "L64",
        "LP",
        "NULL",
        "LOC",
    ] {
        assert!(types.contains(t), "no {t} record compared");
    }
}

/// The OPT PSEUDOSECTION lines (`; ...`) of each message in a dig-style text, with the
/// message's ID and whether it is a response.
fn opt_blocks(text: &str) -> Vec<(u16, bool, Vec<String>)> {
    let mut out = Vec::new();
    let (mut id, mut response) = (0u16, false);
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some(at) = l.find(", id: ") {
            id = l[at + 6..].trim().parse().unwrap();
        }
        if let Some(flags) = l.strip_prefix(";; flags:") {
            response = flags
                .split(';')
                .next()
                .unwrap()
                .split_whitespace()
                .any(|f| f == "qr");
        }
        if l == ";; OPT PSEUDOSECTION:" {
            let block = lines
                .by_ref()
                .take_while(|l| !l.is_empty() && !l.starts_with(";; QUESTION"))
                .filter(|l| l.starts_with("; "))
                .map(|l| l.trim_end_matches(" (good)").to_string())
                .collect();
            out.push((id, response, block));
        }
    }
    out
}

#[test]
fn edns_options_match_dig_for_queries_and_answers() {
    let mut compared = 0;
    for run in runs().iter().filter(|r| r.cmd.contains(&"+qr".to_string())) {
        let theirs = opt_blocks(&run.dig);
        assert!(!theirs.is_empty(), "{:?}: no OPT section printed", run.cmd);
        for (id, response, lines) in theirs {
            let bytes = run
                .messages
                .iter()
                .find(|(r, b)| *r == response && b.get(..2) == Some(&id.to_be_bytes()[..]))
                .map(|(_, b)| b)
                .unwrap_or_else(|| panic!("{:?}: no message {id}", run.cmd));
            let m = parse_message(bytes).unwrap();
            let mine = opt_blocks(&dig_text(&m));
            assert_eq!(mine.len(), 1, "{:?}", run.cmd);
            assert_eq!(mine[0].2, lines, "{:?} message {id}", run.cmd);
            compared += lines.len();
        }
    }
    eprintln!("{compared} OPT lines compared with dig");
    assert!(compared >= 40, "only {compared} OPT lines compared");
}
