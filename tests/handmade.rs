//! The hand-made edge cases of `testdata/handmade/cases.txt`: each must parse, or fail
//! with exactly the error it names; valid ones round-trip and fail on every prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use dnsfwd::wire::{parse_message, ErrorKind, MessageView, Name, RType};

struct Case {
    name: String,
    expect: String,
    wire: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let text = include_str!("../testdata/handmade/cases.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let wire = f.get(2).map_or_else(Vec::new, |h| hex::decode(h).unwrap());
            Case {
                name: f[0].to_string(),
                expect: f[1].to_string(),
                wire,
            }
        })
        .collect()
}

#[test]
fn every_case_gives_its_expected_verdict() {
    let all = cases();
    assert!(all.len() >= 20, "cases.txt lost lines: {}", all.len());
    let mut kinds = std::collections::HashSet::new();
    for c in &all {
        let got = parse_message(&c.wire);
        match (&got, c.expect.as_str()) {
            (Ok(_), "ok") => {}
            (Err(e), want) => {
                assert_eq!(e.kind.name(), want, "{}: {e}", c.name);
                assert!(e.offset <= c.wire.len(), "{}: offset past the end", c.name);
                kinds.insert(e.kind.name());
            }
            (Ok(m), want) => panic!("{} parsed ({m:?}) but should fail with {want}", c.name),
        }
    }
    // One negative case at least for each way a message can be malformed.
    for k in [
        ErrorKind::Truncated,
        ErrorKind::BadLabelType(0x40),
        ErrorKind::NameTooLong,
        ErrorKind::BadPointer { target: 0 },
        ErrorKind::RdataLength,
        ErrorKind::TrailingBytes,
        ErrorKind::BadOpt,
        ErrorKind::BadEdnsOption,
        ErrorKind::MisplacedTsig,
    ] {
        assert!(kinds.contains(k.name()), "no case for {}", k.name());
    }
}

#[test]
fn tutorial_packet_decodes_both_questions() {
    let c = cases()
        .into_iter()
        .find(|c| c.name == "tutorial-two-questions")
        .unwrap();
    let m = parse_message(&c.wire).unwrap();
    assert_eq!(m.header.id, 0x1234);
    assert!(m.header.rd && !m.header.qr);
    let names: Vec<String> = m.questions.iter().map(|q| q.qname.to_string()).collect();
    assert_eq!(names, ["www.rust-trends.com.", "dev.rust-trends.com."]);
    assert!(m.questions.iter().all(|q| q.qtype == RType::A));
    assert_eq!(
        m.questions[1].qname,
        Name::from_ascii("DEV.Rust-Trends.com").unwrap()
    );
    // Re-encoding compresses the second name the same way: the same 49 octets.
    assert_eq!(m.to_vec(), c.wire);
}

#[test]
fn valid_cases_round_trip_and_every_prefix_fails() {
    for c in cases().iter().filter(|c| c.expect == "ok") {
        let m = parse_message(&c.wire).unwrap();
        let again = m.to_vec();
        assert_eq!(parse_message(&again).unwrap(), m, "{}", c.name);
        let view = MessageView::parse(&c.wire).unwrap();
        assert_eq!(view.header, m.header);
        assert_eq!(view.end, c.wire.len());
        for n in 0..c.wire.len() {
            let e = parse_message(&c.wire[..n]).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Truncated, "{} cut at {n}", c.name);
            assert!(
                MessageView::parse(&c.wire[..n]).is_err(),
                "{} view cut at {n}",
                c.name
            );
        }
    }
}

#[test]
fn view_follows_the_first_qname_through_its_pointers() {
    // Found by the `view` fuzz target: QNAME is a pointer to offset 0, whose octet 0xad
    // has the reserved label type 10. The view must refuse it as the parser does.
    for hex_msg in [
        "ad6001000001000000000000c00003030001",
        // A pointer into the middle of a label of an earlier name.
        "1234010000020000000000000361626300000100010178c00d00010001",
    ] {
        let wire = hex::decode(hex_msg).unwrap();
        assert!(parse_message(&wire).is_err());
        if let Ok(v) = MessageView::parse(&wire) {
            // Names after the first question are stepped over, not followed: accepted
            // here, but the first QNAME must then read back whole.
            let mut out = [0u8; 255];
            assert!(v.qname_wire(&mut out, false) > 0, "{hex_msg}");
        }
    }
    assert!(
        MessageView::parse(&hex::decode("ad6001000001000000000000c00003030001").unwrap()).is_err()
    );
}

#[test]
fn view_finds_an_opt_whose_owner_is_a_pointer_to_the_root() {
    let c = cases()
        .into_iter()
        .find(|c| c.name == "opt-owner-pointer-to-root")
        .unwrap();
    let v = MessageView::parse(&c.wire).unwrap();
    assert_eq!(v.opt.map(|o| o.udp_size), Some(1232));
    assert_eq!(
        parse_message(&c.wire).unwrap().edns().map(|e| e.udp_size),
        Some(1232)
    );
}
