//! Replay through the forwarder: every query captured in `testdata/*.pcap` is sent
//! (over the transport it was captured on) through the real forwarder to a mock
//! upstream that answers the forwarder's own query (looked up by its question) with
//! the response recorded in the captures, echoing the question as a server does. Each
//! client must get the recorded answer made for it: its ID, RD and CD, the records and
//! flags as recorded, EDNS per hop, and never more than its size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use dnsfwd::capture::{read_capture, CapturedMessage, Options, Transport};
use dnsfwd::wire::{parse_header, parse_message, MessageView, Opcode, RType};

/// Recorded question (its cache key) → recorded response, first seen wins.
type Recorded = HashMap<Vec<u8>, Vec<u8>>;

fn is_query(m: &CapturedMessage) -> bool {
    parse_header(&m.bytes).is_ok_and(|(_, h)| !h.qr)
}

/// Pairs each query with the response that came back on the same path with its ID.
fn pairs(msgs: &[CapturedMessage]) -> Vec<(&CapturedMessage, &CapturedMessage)> {
    let mut out = Vec::new();
    for (i, q) in msgs.iter().enumerate().filter(|(_, m)| is_query(m)) {
        let resp = msgs[i + 1..].iter().find(|r| {
            !is_query(r)
                && r.transport == q.transport
                && r.src == q.dst
                && r.dst == q.src
                && r.bytes.get(..2) == q.bytes.get(..2)
        });
        if let Some(r) = resp {
            out.push((q, r));
        }
    }
    out
}

/// Whether the forwarder relays this query as is (one question, opcode QUERY, no zone
/// transfer, which takes several messages on one connection).
fn relayable(q: &[u8]) -> bool {
    let Ok(v) = MessageView::parse(q) else {
        return false;
    };
    let xfr = matches!(v.qtype_qclass(), Some((RType(251 | 252), _)));
    v.header.opcode == Opcode::QUERY && v.header.qdcount == 1 && !xfr && v.end == q.len()
}

/// What the recorded server would send over UDP: the answer if it fits the query's
/// size, else its truncated form.
fn over_udp(query: &[u8], response: &[u8]) -> Vec<u8> {
    let limit = MessageView::parse(query)
        .map(|v| v.max_udp_response())
        .unwrap_or(512);
    if response.len() <= limit {
        return response.to_vec();
    }
    parse_message(response).unwrap().write(limit)
}

#[test]
fn captured_queries_get_their_recorded_answers_through_the_forwarder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut cases: Vec<(Transport, Vec<u8>)> = Vec::new();
    let mut recorded = Recorded::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
    {
        let msgs = read_capture(&std::fs::read(path).unwrap(), &Options::default()).unwrap();
        for (q, r) in pairs(&msgs) {
            if relayable(&q.bytes) {
                recorded
                    .entry(question_key(&q.bytes))
                    .or_insert_with(|| r.bytes.clone());
                cases.push((q.transport, q.bytes.clone()));
            }
        }
    }
    assert!(cases.len() > 200, "only {} replayable queries", cases.len());
    let recorded = Arc::new(recorded);
    let table = recorded.clone();
    let up = MockUpstream::start(move |q, via| {
        let Some(r) = table.get(&question_key(q)) else {
            return vec![];
        };
        let r = as_answer_to(r, q);
        match via {
            Via::Udp => vec![Action::Answer(over_udp(q, &r))],
            Via::Tcp => vec![Action::Answer(r)],
        }
    });
    let fwd = Forwarder::start(&[up.addr]);
    let (mut udp, mut tcp) = (0, 0);
    for (transport, q) in &cases {
        // The upstream answers our query (EDNS 1232) over UDP, truncated if bigger; a
        // client that can take more than that gets it fetched over TCP.
        let source = &recorded[&question_key(q)];
        let limit = match transport {
            Transport::Udp => MessageView::parse(q).unwrap().max_udp_response().min(1232),
            Transport::Tcp => 65535,
        };
        let over_udp = {
            let m = parse_message(source).unwrap();
            if source.len() > 1232 {
                m.write(1232)
            } else {
                source.clone()
            }
        };
        let truncated = parse_message(&over_udp).unwrap().header.tc;
        let base = if truncated && limit > 1232 {
            source.clone()
        } else {
            over_udp
        };
        let want = shaped_for(&base, q, limit);
        let got = match transport {
            Transport::Udp => {
                udp += 1;
                udp_ask(fwd.addr, q)
            }
            Transport::Tcp => {
                tcp += 1;
                tcp_ask(fwd.addr, q)
            }
        };
        let got = got.unwrap_or_else(|| panic!("no answer to {}", hex::encode(q)));
        if MessageView::parse(q)
            .ok()
            .and_then(|v| v.opt)
            .is_some_and(|o| o.version > 0)
        {
            // An EDNS version above 0: BADVERS from the forwarder itself (RFC 6891
            // §6.1.3), with an OPT record of version 0.
            let m = parse_message(&got).unwrap();
            assert_eq!(m.rcode(), dnsfwd::wire::Rcode::BADVERS);
            assert_eq!(m.edns().map(|e| e.version), Some(0));
            continue;
        }
        assert!(got.len() <= limit);
        assert_eq!(
            parse_message(&got).unwrap(),
            want,
            "answer to {:?} query {}",
            transport,
            hex::encode(q)
        );
    }
    eprintln!("replayed {udp} UDP and {tcp} TCP queries through the forwarder");
    assert!(tcp > 20, "too few TCP queries: {tcp}");
    let stats = fwd.stop();
    assert_eq!(stats.dropped_responses, 0, "{stats}");
}
