//! The cache over real sockets: captured traffic replayed twice (the second pass from
//! the cache), coalescing of concurrent identical queries, serve-stale when the
//! upstream goes dark, and a scan of one-off names that must not flush popular ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use dnsfwd::capture::{read_capture, Options, Transport};
use dnsfwd::wire::{parse_header, parse_message, MessageView, Opcode, RData, RType, Rcode, Record};

/// Records without their TTLs and OPT, in order, for comparing answers.
fn records(msg: &[u8]) -> Vec<Record<'_>> {
    let m = parse_message(msg).unwrap();
    m.answers
        .iter()
        .chain(&m.authority)
        .chain(&m.additional)
        .filter(|r| r.rtype != RType::OPT)
        .map(|r| Record {
            ttl: 0,
            ..r.clone()
        })
        .collect()
}

/// Whether RFC 1035/2308 let a cache keep this answer (independent of our code).
fn cacheable(msg: &[u8]) -> bool {
    let Ok(m) = parse_message(msg) else {
        return false;
    };
    let soa = m.authority.iter().find_map(|r| match &r.rdata {
        RData::Soa(s) => Some(r.ttl.min(s.minimum)),
        _ => None,
    });
    let ttls_ok = m
        .answers
        .iter()
        .chain(&m.authority)
        .all(|r| r.ttl > 0 && r.ttl < 1 << 31);
    match m.rcode() {
        _ if m.header.tc || m.questions.len() != 1 => false,
        Rcode::NOERROR if !m.answers.is_empty() => ttls_ok,
        Rcode::NOERROR | Rcode::NXDOMAIN => soa.is_some_and(|t| t > 0),
        _ => false,
    }
}

#[test]
fn second_replay_is_answered_from_the_cache_with_the_same_records() {
    // Recorded query (without ID) → recorded response, as in replay_forward.rs.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut recorded: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut queries = Vec::new();
    for f in [
        "auth-udp.pcap",
        "dnssec.pcap",
        "edns.pcap",
        "recursive.pcap",
    ] {
        let msgs = read_capture(&std::fs::read(dir.join(f)).unwrap(), &Options::default()).unwrap();
        for (i, q) in msgs.iter().enumerate() {
            let Ok((_, h)) = parse_header(&q.bytes) else {
                continue;
            };
            let Ok(v) = MessageView::parse(&q.bytes) else {
                continue;
            };
            if h.qr
                || h.opcode != Opcode::QUERY
                || h.qdcount != 1
                || q.transport != Transport::Udp
                || v.end != q.bytes.len()
            {
                continue;
            }
            let resp = msgs[i + 1..]
                .iter()
                .find(|r| r.src == q.dst && r.dst == q.src && r.bytes.get(..2) == q.bytes.get(..2));
            if let Some(r) = resp {
                recorded
                    .entry(question_key(&q.bytes))
                    .or_insert_with(|| r.bytes.clone());
                queries.push(q.bytes.clone());
            }
        }
    }
    assert!(queries.len() > 150, "{} queries", queries.len());
    let table = Arc::new(recorded);
    let t = table.clone();
    // The upstream counts what it is asked per question: a truncated answer's TCP
    // re-fetch for the cache goes on after its client was answered, so a global counter
    // would blame the next query.
    let asked_for: Arc<Mutex<HashMap<Vec<u8>, usize>>> = Arc::default();
    let counts = asked_for.clone();
    let up = MockUpstream::start(move |q, _| {
        let key = question_key(q);
        *counts.lock().unwrap().entry(key.clone()).or_default() += 1;
        match t.get(&key) {
            Some(r) => vec![Action::Answer(as_answer_to(r, q))],
            None => vec![],
        }
    });
    let asked = |q: &[u8]| {
        asked_for
            .lock()
            .unwrap()
            .get(&question_key(q))
            .copied()
            .unwrap_or(0)
    };
    let fwd = Forwarder::start_with(&[up.addr], |c| c.cache.max_entries = 10_000);
    // Pass 1: note, per cache key, the first cacheable answer (the one the cache keeps;
    // e.g. a BADCOOKIE answer before it is not).
    let mut first: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    // A query with an EDNS version above 0 is answered BADVERS by the forwarder itself
    // (RFC 6891 §6.1.3): never forwarded, never from the cache.
    let badvers = |q: &[u8]| {
        MessageView::parse(q)
            .ok()
            .and_then(|v| v.opt)
            .is_some_and(|o| o.version > 0)
    };
    for q in &queries {
        let a = udp_ask(fwd.addr, q).unwrap_or_else(|| panic!("no answer to {}", hex::encode(q)));
        if badvers(q) {
            assert_eq!(parse_message(&a).unwrap().rcode(), Rcode::BADVERS);
            continue;
        }
        let slot = first.entry(question_key(q)).or_insert_with(|| a.clone());
        if !cacheable(slot) && cacheable(&a) {
            *slot = a;
        }
    }
    // Pass 2: every cacheable answer comes from the cache (the upstream sees nothing).
    let (mut hits, mut expected_hits) = (0, 0);
    for q in queries.iter().filter(|q| !badvers(q)) {
        let before = asked(q);
        let a = udp_ask(fwd.addr, q).expect("answer");
        let from_cache = asked(q) == before;
        let source = &first[&question_key(q)];
        if cacheable(source) {
            expected_hits += 1;
            assert!(
                from_cache,
                "cacheable answer not cached: {} (source {})",
                hex::encode(q),
                hex::encode(source)
            );
        }
        if from_cache {
            hits += 1;
            assert_eq!(id_of(&a), id_of(q));
            let (m, s) = (parse_message(&a).unwrap(), parse_message(source).unwrap());
            if m.header.tc {
                // Cut to this client's size (e.g. +bufsize=512): whole RRsets from the front.
                let limit = MessageView::parse(q).unwrap().max_udp_response();
                assert!(a.len() <= limit);
                assert!(
                    records(source).starts_with(&records(&a)),
                    "{}",
                    hex::encode(q)
                );
            } else {
                assert_eq!(
                    records(&a),
                    records(source),
                    "cached records differ for {}",
                    hex::encode(q)
                );
            }
            assert_eq!(m.rcode(), s.rcode());
            assert!(!m.header.aa, "cached answers are not authoritative");
            for (x, y) in m.answers.iter().zip(&s.answers) {
                assert!(x.ttl <= y.ttl.min(86_400), "TTL grew in the cache");
            }
        }
    }
    eprintln!(
        "pass 2: {hits} of {} answered from the cache ({expected_hits} cacheable)",
        queries.len()
    );
    assert!(expected_hits > 100);
    assert_eq!(
        hits, expected_hits,
        "something not cacheable came from the cache"
    );
    let stats = fwd.stop();
    assert!(stats.cache_hits as usize >= hits, "{stats}");
}

#[test]
fn coalesces_concurrent_identical_queries() {
    let up = MockUpstream::delayed(Duration::from_millis(300));
    let fwd = Forwarder::start_with(&[up.addr], |c| c.cache.max_entries = 100);
    let socks: Vec<UdpSocket> = (0..100)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (n, s) in socks.iter().enumerate() {
        s.send_to(&query(n as u16, "hot.example", RType::A, None), fwd.addr)
            .unwrap();
    }
    for (n, s) in socks.iter().enumerate() {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 512];
        let len = s.recv(&mut buf).expect("every waiter answered");
        let m = parse_message(&buf[..len]).unwrap();
        assert_eq!((m.header.id, m.answers.len()), (n as u16, 1));
    }
    assert_eq!(
        up.udp_queries.load(Ordering::SeqCst),
        1,
        "one upstream query for 100 clients"
    );
    let stats = fwd.stop();
    assert_eq!(stats.coalesced, 99);
}

#[test]
fn serves_stale_when_the_upstream_goes_dark() {
    let dark = Arc::new(AtomicBool::new(false));
    let d = dark.clone();
    let up = MockUpstream::start(move |q, _| {
        if d.load(Ordering::SeqCst) {
            return vec![];
        }
        let mut r = a_records(q, 1);
        r[0].ttl = 1;
        vec![Action::Answer(answer(q, &r))]
    });
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.cache.max_entries = 100;
        c.timeout = Duration::from_millis(100);
        c.deadline = Duration::from_millis(300);
    });
    let r = udp_ask(fwd.addr, &query(1, "stale.example", RType::A, None)).unwrap();
    assert_eq!(parse_message(&r).unwrap().answers[0].ttl, 1);
    dark.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1100)); // let the 1 s TTL run out
    let r = udp_ask(fwd.addr, &query(2, "stale.example", RType::A, None)).expect("stale answer");
    let m = parse_message(&r).unwrap();
    assert_eq!((m.header.id, m.header.rcode), (2, Rcode::NOERROR));
    assert_eq!(m.answers[0].ttl, 30);
    // A name never cached still fails.
    let r = udp_ask(fwd.addr, &query(3, "never.example", RType::A, None)).unwrap();
    assert_eq!(parse_message(&r).unwrap().header.rcode, Rcode::SERVFAIL);
    let stats = fwd.stop();
    assert_eq!(stats.stale_served, 1);
}

/// Sends `queries` from one socket, at most `window` unanswered at a time, and returns
/// how many were answered. Every wait is bounded: a lost datagram costs at most 500 ms.
fn pipeline(server: std::net::SocketAddr, queries: &[Vec<u8>], window: usize) -> usize {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 512];
    let mut answered = 0;
    for batch in queries.chunks(window) {
        for q in batch {
            sock.send_to(q, server).unwrap();
        }
        for _ in batch {
            match sock.recv(&mut buf) {
                Ok(_) => answered += 1,
                Err(_) => break,
            }
        }
    }
    answered
}

#[test]
fn a_scan_of_one_off_names_does_not_flush_popular_ones() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| c.cache.max_entries = 1000);
    let popular = |n: usize| query(n as u16, &format!("popular{n}.example"), RType::A, None);
    // 50 names asked 5 times each: a miss, then 4 hits.
    for _ in 0..5 {
        for n in 0..50 {
            assert!(udp_ask(fwd.addr, &popular(n)).is_some());
        }
    }
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 50);
    // 20,000 names asked once, from 4 sockets with 64 queries in flight on each.
    let scan: Vec<Vec<u8>> = (0..20_000)
        .map(|n| query(n as u16, &format!("scan{n}.example"), RType::A, None))
        .collect();
    let answered: usize = std::thread::scope(|s| {
        let workers: Vec<_> = scan
            .chunks(5000)
            .map(|part| s.spawn(move || pipeline(fwd.addr, part, 64)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert!(answered > 19_000, "{answered} of the scan answered");
    // The 50 again: the upstream must not see most of them (the LRU this replaced sent
    // all 50 upstream).
    let before = up.udp_queries.load(Ordering::SeqCst);
    for n in 0..50 {
        let a = udp_ask(fwd.addr, &popular(n)).expect("answer");
        let m = parse_message(&a).unwrap();
        assert_eq!((m.header.id, m.answers.len()), (n as u16, 1));
    }
    let upstream = up.udp_queries.load(Ordering::SeqCst) - before;
    eprintln!("after the scan: {} of 50 from the cache", 50 - upstream);
    assert!(
        upstream <= 5,
        "{upstream} of 50 popular names went upstream again"
    );
    let stats = fwd.stop();
    assert!(stats.cache_hits >= 4 * 50 + 45, "{stats}");
}
