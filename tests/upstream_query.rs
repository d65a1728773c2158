//! The query the forwarder sends upstream is its own (issue 7), over real sockets: one
//! upstream query per question however many clients ask it and however they ask (EDNS
//! sizes, TCP, cache on or off); no client option reaches the upstream; our EDNS size
//! upstream and our UDP size limit toward clients hold whatever the client advertises;
//! and an upstream slower than the per-attempt timeout still answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use dnsfwd::wire::{parse_message, Class, Edns, EdnsOption, Message, RData, RType, Record};

/// A query for `name` with an OPT record carrying ECS and a client cookie.
fn query_with_options(id: u16, name: &str, size: u16) -> Vec<u8> {
    let plain = query(id, name, RType::TXT, None);
    let mut m = parse_message(&plain).unwrap();
    let ecs = [0u8, 1, 24, 0, 198, 51, 100];
    let cookie = [9u8, 8, 7, 6, 5, 4, 3, 2];
    m.additional.push(
        Edns {
            udp_size: size,
            ext_rcode: 0,
            version: 0,
            dnssec_ok: false,
            z: 0,
            options: vec![
                EdnsOption {
                    code: EdnsOption::CLIENT_SUBNET,
                    data: &ecs,
                },
                EdnsOption {
                    code: EdnsOption::COOKIE,
                    data: &cookie,
                },
            ],
        }
        .to_record(),
    );
    m.to_vec()
}

/// An answer with `n` TXT records of 200 octets each.
fn txt_answer(q: &[u8], n: usize) -> Vec<u8> {
    let m = parse_message(q).unwrap();
    let name = m.questions[0].qname.clone();
    let text: &'static [u8] = Box::leak(vec![0xC8u8; 201].into_boxed_slice());
    let records: Vec<Record<'_>> = (0..n)
        .map(|_| Record {
            name: name.clone(),
            rtype: RType::TXT,
            class: Class::IN,
            ttl: 300,
            rdata: RData::Opaque(text),
        })
        .collect();
    answer(q, &records)
}

#[test]
fn one_upstream_query_for_1000_identical_queries_whatever_their_transport_and_size() {
    for cache in [10_000, 0] {
        let up = MockUpstream::start(|q, _| {
            vec![Action::Delay(
                Duration::from_millis(500),
                answer(q, &a_records(q, 3)),
            )]
        });
        let fwd = Forwarder::start_with(&[up.addr], |c| {
            c.cache.max_entries = cache;
            // 100 connections from one address (above the default per-client cap).
            c.policy.max_tcp_per_client = 128;
        });
        // 900 UDP clients (no EDNS, 512, 1232, 4096) and 100 TCP connections.
        let udp: Vec<UdpSocket> = (0..900)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (n, s) in udp.iter().enumerate() {
            let edns = [None, Some(512), Some(1232), Some(4096)][n % 4];
            s.send_to(&query(n as u16, "hot.example", RType::A, edns), fwd.addr)
                .unwrap();
        }
        let mut tcp: Vec<TcpStream> = (0..100)
            .map(|n| {
                let mut s = TcpStream::connect(fwd.addr).unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                write_frame(
                    &mut s,
                    &query(1000 + n, "HOT.example", RType::A, Some(1232)),
                );
                s
            })
            .collect();
        for (n, s) in udp.iter().enumerate() {
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut buf = [0u8; 2048];
            let len = s.recv(&mut buf).expect("every UDP client answered");
            let m = parse_message(&buf[..len]).unwrap();
            assert_eq!((m.header.id, m.answers.len()), (n as u16, 3));
            assert_eq!(m.questions[0].qname.to_string(), "hot.example.");
            assert_eq!(m.edns().is_some(), n % 4 != 0, "EDNS per client");
        }
        for (n, s) in tcp.iter_mut().enumerate() {
            let r = read_frame(s).expect("every TCP client answered");
            let m = parse_message(&r).unwrap();
            assert_eq!((m.header.id, m.answers.len()), (1000 + n as u16, 3));
            assert_eq!(m.questions[0].qname.to_string(), "HOT.example.");
        }
        let sent = up.udp_queries.load(Ordering::SeqCst) + up.tcp_queries.load(Ordering::SeqCst);
        assert_eq!(
            sent, 1,
            "cache {cache}: one upstream query for 1000 clients"
        );
        let stats = fwd.stop();
        assert_eq!(stats.coalesced, 999, "{stats}");
    }
}

#[test]
fn no_client_option_goes_upstream_and_sizes_are_ours() {
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let s = seen.clone();
    // 60 kB of TXT: the amplification the issue measured (49-octet query, 60 kB answer).
    let up = MockUpstream::start(move |q, _| {
        s.lock().unwrap().push(q.to_vec());
        vec![Action::Answer(txt_answer(q, 290))]
    });
    let fwd = Forwarder::start(&[up.addr]);
    let q = query_with_options(7, "big.example", 65535);
    let r = udp_ask(fwd.addr, &q).expect("answer");
    // Toward the client: at most 1232 octets over UDP, TC set, whatever it advertised.
    assert!(r.len() <= 1232, "{} octets to a UDP client", r.len());
    let m = parse_message(&r).unwrap();
    assert!(m.header.tc);
    assert_eq!(m.header.id, 7);
    let opt = m.edns().expect("an EDNS client gets OPT");
    assert!(opt.options.is_empty(), "nothing of the upstream's hop");
    // Toward the upstream: our OPT, size 1232, no ECS, no client cookie.
    let queries = seen.lock().unwrap().clone();
    assert!(!queries.is_empty());
    for sent in &queries {
        let m = parse_message(sent).unwrap();
        let e = m.edns().expect("we always send OPT");
        assert!(e.udp_size <= 1232, "{}", e.udp_size);
        assert!(
            e.options.is_empty(),
            "client options sent upstream: {:?}",
            e.options
        );
    }
    // Over TCP the client gets all of it.
    let r = tcp_ask(fwd.addr, &query_with_options(8, "big.example", 65535)).expect("answer");
    let m = parse_message(&r).unwrap();
    assert_eq!((m.header.tc, m.answers.len()), (false, 290));
}

#[test]
fn an_upstream_slower_than_the_timeout_still_answers() {
    // Every answer takes 3 s; the per-attempt timeout is 1.5 s and the deadline 4.5 s:
    // the retries get new IDs, and the answer to the first attempt must still count.
    let up = MockUpstream::delayed(Duration::from_secs(3));
    let fwd = Forwarder::start(&[up.addr]);
    let socks: Vec<UdpSocket> = (0..50)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (n, s) in socks.iter().enumerate() {
        let name = format!("slow{n}.example");
        s.send_to(&query(n as u16, &name, RType::A, None), fwd.addr)
            .unwrap();
    }
    for (n, s) in socks.iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut buf = [0u8; 512];
        let len = s.recv(&mut buf).expect("an answer");
        let m: Message<'_> = parse_message(&buf[..len]).unwrap();
        assert_eq!(m.header.id, n as u16);
        assert_eq!(m.rcode(), dnsfwd::wire::Rcode::NOERROR, "not SERVFAIL");
        assert_eq!(m.answers.len(), 1);
    }
    let stats = fwd.stop();
    assert_eq!(stats.servfail, 0, "{stats}");
}
