//! Replays every DNS message captured in `testdata/*.pcap` (UDP, and TCP reassembled
//! and split on the length prefix) through our reader and parser, and compares what we
//! decode with tshark's decoding of the same packet (`X.expect.jsonl`, made by
//! `testdata/expect.py`). Then encodes each message and parses it back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::path::{Path, PathBuf};

use dnsfwd::capture::{read_capture, Options, Transport};
use dnsfwd::present::rdata_text;
use dnsfwd::wire::{parse_message, MessageView, RData, Record};
use serde_json::Value;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn pcaps() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

fn expected(pcap: &Path) -> Vec<Value> {
    let path = pcap.with_extension("expect.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Our rendering of RDATA in the canonical form `expect.py` writes (see the README).
fn canonical_rdata(r: &Record<'_>) -> Value {
    match &r.rdata {
        RData::Txt(strings) => Value::from(
            strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>(),
        ),
        RData::Caa { flags, tag, value } => Value::from(format!(
            "{flags} {} {}",
            String::from_utf8_lossy(tag),
            String::from_utf8_lossy(value)
        )),
        RData::Opaque(_) | RData::Opt(_) => Value::Null,
        _ => Value::from(rdata_text(r).to_ascii_lowercase()),
    }
}

fn check_section(what: &str, ours: &[Record<'_>], theirs: &Value) {
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{what}: record count");
    for (n, (r, t)) in ours.iter().zip(theirs).enumerate() {
        let what = format!("{what}[{n}]");
        assert_eq!(
            r.name.to_lowercase_string(),
            t[0].as_str().unwrap(),
            "{what} owner"
        );
        assert_eq!(u64::from(r.ttl), u(&t[1]), "{what} ttl");
        assert_eq!(u64::from(r.rtype.0), u(&t[2]), "{what} type");
        assert_eq!(u64::from(r.class.0), u(&t[3]), "{what} class");
        if !t[4].is_null() {
            assert_eq!(canonical_rdata(r), t[4], "{what} rdata");
        }
    }
}

#[test]
fn every_captured_message_decodes_as_tshark_does() {
    let files = pcaps();
    assert!(files.len() >= 6, "testdata lost its captures: {files:?}");
    let mut total = 0;
    let mut tcp = 0;
    for pcap in files {
        let name = pcap.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&pcap).unwrap();
        let msgs = read_capture(&data, &Options::default()).unwrap();
        let expect = expected(&pcap);
        assert_eq!(msgs.len(), expect.len(), "{name}: message count");
        for (n, (m, e)) in msgs.iter().zip(&expect).enumerate() {
            let what = format!("{name}#{n} (frame {})", m.frame);
            assert_eq!(u64::from(m.frame), u(&e["frame"]), "{what} frame");
            let transport = if m.transport == Transport::Tcp {
                "tcp"
            } else {
                "udp"
            };
            assert_eq!(transport, e["transport"].as_str().unwrap(), "{what}");
            assert!(!m.truncated, "{what} cut short");
            let msg = parse_message(&m.bytes).unwrap_or_else(|err| panic!("{what}: {err}"));
            let h = &msg.header;
            assert_eq!(u64::from(h.id), u(&e["id"]), "{what} id");
            assert_eq!(u64::from(h.flags()), u(&e["flags"]), "{what} flags");
            let counts = [h.qdcount, h.ancount, h.nscount, h.arcount].map(u64::from);
            let theirs = ["qdcount", "ancount", "nscount", "arcount"].map(|k| u(&e[k]));
            assert_eq!(counts, theirs, "{what} counts");
            let qs = e["questions"].as_array().unwrap();
            assert_eq!(msg.questions.len(), qs.len(), "{what} questions");
            for (q, t) in msg.questions.iter().zip(qs) {
                assert_eq!(
                    q.qname.to_lowercase_string(),
                    t[0].as_str().unwrap(),
                    "{what} qname"
                );
                assert_eq!(u64::from(q.qtype.0), u(&t[1]), "{what} qtype");
                assert_eq!(u64::from(q.qclass.0), u(&t[2]), "{what} qclass");
            }
            check_section(&format!("{what} answer"), &msg.answers, &e["answers"]);
            check_section(
                &format!("{what} authority"),
                &msg.authority,
                &e["authority"],
            );
            check_section(
                &format!("{what} additional"),
                &msg.additional,
                &e["additional"],
            );
            match (msg.edns(), e["edns"].as_object()) {
                (None, None) => {}
                (Some(ours), Some(t)) => {
                    assert_eq!(
                        u64::from(ours.udp_size),
                        u(&t["udp_size"]),
                        "{what} udp size"
                    );
                    assert_eq!(
                        u64::from(ours.ext_rcode),
                        u(&t["ext_rcode"]),
                        "{what} ext rcode"
                    );
                    assert_eq!(u64::from(ours.version), u(&t["version"]), "{what} version");
                    assert_eq!(u64::from(ours.dnssec_ok), u(&t["do"]), "{what} DO");
                    let opts: Vec<(u64, String)> = t["options"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|o| (u(&o[0]), o[1].as_str().unwrap().to_string()))
                        .collect();
                    let mine: Vec<(u64, String)> = ours
                        .options
                        .iter()
                        .map(|o| (u64::from(o.code), hex::encode(o.data)))
                        .collect();
                    assert_eq!(mine, opts, "{what} options");
                }
                (ours, theirs) => panic!("{what} edns: ours {ours:?}, tshark {theirs:?}"),
            }
            // The hot-path view agrees, and encode → parse gives the same message.
            let view = MessageView::parse(&m.bytes).unwrap();
            assert_eq!(view.header, msg.header, "{what} view");
            assert_eq!(
                view.opt.map(|o| o.udp_size),
                msg.edns().map(|e| e.udp_size),
                "{what} view opt"
            );
            let again = msg.to_vec();
            assert_eq!(parse_message(&again).unwrap(), msg, "{what} round trip");
            assert!(
                again.len() <= m.bytes.len() + 64,
                "{what} re-encoding grew: {} -> {}",
                m.bytes.len(),
                again.len()
            );
            total += 1;
            tcp += usize::from(m.transport == Transport::Tcp);
        }
    }
    eprintln!("replayed {total} captured messages ({tcp} over TCP)");
    assert!(
        total > 500 && tcp > 50,
        "too few messages: {total}, {tcp} over TCP"
    );
}

#[test]
fn every_prefix_of_every_captured_message_fails_cleanly() {
    for pcap in pcaps() {
        let data = std::fs::read(&pcap).unwrap();
        for m in read_capture(&data, &Options::default()).unwrap() {
            for n in 0..m.bytes.len() {
                assert!(
                    parse_message(&m.bytes[..n]).is_err(),
                    "{} frame {} prefix {n}",
                    pcap.display(),
                    m.frame
                );
                let _ = MessageView::parse(&m.bytes[..n]);
            }
        }
    }
}
