//! The forwarder over real loopback sockets, in front of a scripted mock upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use dnsfwd::wire::{parse_message, Class, Name, RData, RType, Rcode, Record};

#[test]
fn passes_answers_through_and_restores_the_client_id() {
    let txt = |q: &[u8]| Record {
        name: parse_message(q).unwrap().questions[0].qname.clone(),
        rtype: RType::TXT,
        class: Class::IN,
        ttl: 60,
        rdata: RData::Txt(vec![b"one", b"two"]),
    };
    let up = MockUpstream::start(move |q, _| {
        let qtype = parse_message(q).unwrap().questions[0].qtype;
        let records = match qtype {
            RType::TXT => vec![txt(q)],
            RType::AAAA => vec![Record {
                rtype: RType::AAAA,
                rdata: RData::Aaaa("2001:db8::1".parse().unwrap()),
                ..a_records(q, 1).remove(0)
            }],
            RType::MX => vec![Record {
                rtype: RType::MX,
                rdata: RData::Mx {
                    preference: 10,
                    exchange: Name::from_ascii("mail.example").unwrap(),
                },
                ..a_records(q, 1).remove(0)
            }],
            _ => a_records(q, 3),
        };
        vec![Action::Answer(answer(q, &records))]
    });
    let fwd = Forwarder::start(&[up.addr]);
    for (n, rtype) in [RType::A, RType::AAAA, RType::MX, RType::TXT]
        .into_iter()
        .enumerate()
    {
        let id = 0xA000 + n as u16;
        let q = query(id, "Www.Example.COM", rtype, Some(1232));
        for r in [udp_ask(fwd.addr, &q), tcp_ask(fwd.addr, &q)] {
            let r = r.expect("an answer");
            let m = parse_message(&r).unwrap();
            assert_eq!(m.header.id, id);
            assert!(m.header.qr);
            assert_eq!(m.questions[0].qname.to_string(), "Www.Example.COM.");
            assert_eq!(m.answers[0].rtype, rtype);
            assert_eq!(m.edns().map(|e| e.udp_size), Some(1232));
        }
    }
    let stats = fwd.stop();
    assert_eq!(stats.answers, 8);
    assert_eq!(stats.dropped_responses, 0);
}

#[test]
fn answers_500_concurrent_queries_from_many_sockets() {
    let up = MockUpstream::delayed(Duration::from_millis(20));
    let fwd = Forwarder::start(&[up.addr]);
    let clients: Vec<UdpSocket> = (0..50)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (c, sock) in clients.iter().enumerate() {
        for k in 0..10 {
            let q = query(
                (c * 10 + k) as u16,
                &format!("n{c}-{k}.example"),
                RType::A,
                None,
            );
            sock.send_to(&q, fwd.addr).unwrap();
        }
    }
    let mut seen = HashSet::new();
    for (c, sock) in clients.iter().enumerate() {
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 512];
        for _ in 0..10 {
            let n = sock.recv(&mut buf).expect("all 500 answered");
            let m = parse_message(&buf[..n]).unwrap();
            let k = usize::from(m.header.id) - c * 10;
            assert!(k < 10, "answer for another socket's query");
            let name = Name::from_ascii(&format!("n{c}-{k}.example")).unwrap();
            assert_eq!(m.questions[0].qname, name);
            let RData::A(a) = m.answers[0].rdata else {
                panic!("not A")
            };
            let h = name_hash(&name);
            assert_eq!(
                a.octets(),
                [10, (h >> 8) as u8, h as u8, 0],
                "right answer for {name}"
            );
            assert!(seen.insert(m.header.id), "answered twice");
        }
    }
    assert_eq!(seen.len(), 500);
}

#[test]
fn fails_over_on_timeout_and_servfails_at_the_deadline() {
    let dark = MockUpstream::start(|_, _| vec![]);
    let good = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[dark.addr, good.addr], |c| {
        c.timeout = Duration::from_millis(150);
        c.deadline = Duration::from_millis(600);
    });
    // Whichever upstream is tried first, an answer comes back.
    for n in 0..5 {
        let r = udp_ask(
            fwd.addr,
            &query(n, &format!("f{n}.example"), RType::A, None),
        )
        .expect("answer");
        assert_eq!(parse_message(&r).unwrap().header.rcode, Rcode::NOERROR);
    }
    assert!(
        dark.udp_queries.load(Ordering::SeqCst) >= 1,
        "the dark upstream was tried"
    );
    drop(fwd);
    // Both dark: SERVFAIL, with the client's ID, after the deadline.
    let dark2 = MockUpstream::start(|_, _| vec![]);
    let fwd = Forwarder::start_with(&[dark.addr, dark2.addr], |c| {
        c.timeout = Duration::from_millis(100);
        c.deadline = Duration::from_millis(300);
    });
    let r = udp_ask(
        fwd.addr,
        &query(0x4444, "gone.example", RType::A, Some(1232)),
    )
    .expect("SERVFAIL");
    let m = parse_message(&r).unwrap();
    assert_eq!((m.header.id, m.header.rcode), (0x4444, Rcode::SERVFAIL));
    assert!(m.edns().is_some());
    let stats = fwd.stop();
    assert!(stats.timeouts >= 2 && stats.servfail == 1, "{stats}");
}

#[test]
fn icmp_refused_fails_over_without_waiting_for_the_timeout() {
    let good = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[dead_port(), good.addr], |c| {
        // Far longer than the client waits: only an immediate failover can answer.
        c.timeout = Duration::from_secs(20);
        c.deadline = Duration::from_secs(30);
    });
    for n in 0..4 {
        let r = udp_ask(fwd.addr, &query(n, "icmp.example", RType::A, None))
            .expect("failover without timeout");
        assert_eq!(parse_message(&r).unwrap().answers.len(), 1);
    }
    let stats = fwd.stop();
    assert!(stats.upstream_errors >= 1, "{stats}");
    assert_eq!(stats.timeouts, 0);
}

/// An upstream that truncates over UDP (header + question, TC=1, its OPT saying 1232)
/// and answers with 60 A records (> 512 octets) over TCP.
fn truncating_upstream() -> MockUpstream {
    MockUpstream::start(|q, via| {
        let full = answer(q, &a_records(q, 60));
        match via {
            Via::Udp => {
                let mut m = parse_message(&full).unwrap();
                m.answers.clear();
                m.header.tc = true;
                // Like knotd: it sends at most 1232 octets over UDP, and says so.
                for r in m.additional.iter_mut().filter(|r| r.rtype == RType::OPT) {
                    r.class = Class(1232);
                }
                vec![Action::Answer(m.to_vec())]
            }
            Via::Tcp => vec![Action::Answer(full)],
        }
    })
}

#[test]
fn truncated_udp_answer_is_fetched_over_tcp() {
    let up = truncating_upstream();
    let fwd = Forwarder::start(&[up.addr]);
    // A TCP client gets the whole answer.
    let r = tcp_ask(fwd.addr, &query(1, "big.example", RType::A, None)).expect("answer");
    let m = parse_message(&r).unwrap();
    assert_eq!((m.header.id, m.answers.len(), m.header.tc), (1, 60, false));
    assert!(r.len() > 512);
    // A UDP client without EDNS gets what fits in 512 octets, TC=1, to retry on TCP.
    let r = udp_ask(fwd.addr, &query(2, "big.example", RType::A, None)).expect("answer");
    assert!(r.len() <= 512);
    let m = parse_message(&r).unwrap();
    assert!(m.header.tc);
    // With EDNS 4096 it still gets at most --max-udp-size (1232), which the upstream's
    // UDP limit was: its TC answer is all it can take over UDP.
    let r = udp_ask(fwd.addr, &query(3, "big.example", RType::A, Some(4096))).expect("answer");
    let m = parse_message(&r).unwrap();
    assert!(m.header.tc);
    // Only the TCP client made the forwarder fetch over TCP.
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);
    let stats = fwd.stop();
    assert_eq!(stats.tcp_retries, 1);
}

#[test]
fn big_answers_go_whole_to_tcp_clients() {
    let up = MockUpstream::start(|q, _| vec![Action::Answer(answer(q, &a_records(q, 200)))]);
    let fwd = Forwarder::start(&[up.addr]);
    let r = tcp_ask(fwd.addr, &query(9, "huge.example", RType::A, Some(65000))).expect("answer");
    assert_eq!(parse_message(&r).unwrap().answers.len(), 200);
    assert!(r.len() > 3000);
}

#[test]
fn pipelined_tcp_queries_are_all_answered_out_of_order() {
    // Earlier names are slower: answers come back in reverse.
    let up = MockUpstream::start(|q, _| {
        let name = parse_message(q).unwrap().questions[0]
            .qname
            .to_string()
            .to_lowercase();
        let n: u64 = name
            .trim_start_matches('p')
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        vec![Action::Delay(
            Duration::from_millis(200 - n * 10),
            answer(q, &a_records(q, 1)),
        )]
    });
    let fwd = Forwarder::start(&[up.addr]);
    let mut s = TcpStream::connect(fwd.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // All 20 queries in one write, the last one split across two writes.
    let mut all = Vec::new();
    for n in 0..20u16 {
        let q = query(100 + n, &format!("p{n}.example"), RType::A, None);
        all.extend_from_slice(&(q.len() as u16).to_be_bytes());
        all.extend_from_slice(&q);
    }
    let (head, tail) = all.split_at(all.len() - 7);
    std::io::Write::write_all(&mut s, head).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    std::io::Write::write_all(&mut s, tail).unwrap();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let r = read_frame(&mut s).expect("answer on the same connection");
        let m = parse_message(&r).unwrap();
        let n = m.header.id - 100;
        assert_eq!(m.questions[0].qname.to_string(), format!("p{n}.example."));
        ids.push(m.header.id);
    }
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 20);
    assert_ne!(
        ids,
        (100..120).collect::<Vec<_>>(),
        "answered as they completed"
    );
}

#[test]
fn spoofed_answers_are_ignored_and_the_real_one_gets_through() {
    let up = MockUpstream::start(|q, _| {
        let mut forged = a_records(q, 1);
        forged[0].rdata = RData::A([6, 6, 6, 6].into());
        let forged = answer(q, &forged);
        let real = answer(q, &a_records(q, 1));
        vec![
            Action::WrongId(forged.clone()),
            Action::FromWrongPort(forged.clone()),
            Action::Garbage(40),
            Action::Delay(Duration::from_millis(50), real),
        ]
    });
    let fwd = Forwarder::start(&[up.addr]);
    for n in 0..10 {
        let r = udp_ask(
            fwd.addr,
            &query(n, &format!("s{n}.bank.example"), RType::A, None),
        )
        .expect("answer");
        let m = parse_message(&r).unwrap();
        let RData::A(a) = m.answers[0].rdata else {
            panic!()
        };
        assert_ne!(a.octets(), [6, 6, 6, 6], "forged answer accepted");
    }
    let stats = fwd.stop();
    // The wrong-port datagrams never reach us (connected sockets); the garbage is
    // dropped; each wrong-ID answer is a near miss that moved its query to TCP, where
    // the real answer came from (the real UDP one was no longer listened to).
    assert!(stats.dropped_responses >= 10, "{stats}");
    assert!(
        stats.near_misses >= 10 && stats.moved_to_tcp == 10,
        "{stats}"
    );
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 10);
}

#[test]
fn tutorial_two_question_packet_is_split_and_merged() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start(&[up.addr]);
    let q = hex::decode("123401000002000000000000037777770b727573742d7472656e647303636f6d000001000103646576c01000010001").unwrap();
    for r in [udp_ask(fwd.addr, &q), tcp_ask(fwd.addr, &q)] {
        let r = r.expect("one answer");
        let m = parse_message(&r).unwrap();
        assert_eq!(m.header.id, 0x1234);
        let qs: Vec<String> = m.questions.iter().map(|q| q.qname.to_string()).collect();
        assert_eq!(qs, ["www.rust-trends.com.", "dev.rust-trends.com."]);
        let owners: Vec<String> = m.answers.iter().map(|r| r.name.to_string()).collect();
        assert_eq!(owners, ["www.rust-trends.com.", "dev.rust-trends.com."]);
    }
    assert_eq!(
        up.udp_queries.load(Ordering::SeqCst),
        4,
        "one upstream query per question"
    );
}

#[test]
fn bad_queries_get_notimp_formerr_or_silence() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start(&[up.addr]);
    let good = query(0x5151, "ok.example", RType::A, None);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4096];
    // Silence: short packets and responses.
    let mut resp = good.clone();
    resp[2] |= 0x80;
    for junk in [&good[..5], &good[..11], &resp[..]] {
        sock.send_to(junk, fwd.addr).unwrap();
        assert!(sock.recv(&mut buf).is_err(), "answered {junk:?}");
    }
    // NOTIMP for an UPDATE, with ID, opcode and RD mirrored.
    let mut update = good.clone();
    update[2] = (5 << 3) | 0x01;
    let r = udp_ask(fwd.addr, &update).unwrap();
    let m = parse_message(&r).unwrap();
    assert_eq!(
        (m.header.id, m.header.opcode.0, m.header.rd, m.header.rcode),
        (0x5151, 5, true, Rcode::NOTIMP)
    );
    // FORMERR for no question and for a malformed one.
    let mut none = good[..12].to_vec();
    none[5] = 0;
    assert_eq!(
        parse_message(&udp_ask(fwd.addr, &none).unwrap())
            .unwrap()
            .header
            .rcode,
        Rcode::FORMERR
    );
    let mut bad = good[..12].to_vec();
    bad.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
    let r = udp_ask(fwd.addr, &bad).unwrap();
    assert_eq!(
        (id_of(&r), parse_message(&r).unwrap().header.rcode),
        (0x5151, Rcode::FORMERR)
    );
    assert_eq!(
        up.udp_queries.load(Ordering::SeqCst),
        0,
        "nothing bad went upstream"
    );
    // And the good one still works.
    assert!(udp_ask(fwd.addr, &good).is_some());
}

/// A small xorshift generator: the same packets every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn survives_10000_random_and_mutated_packets() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start(&[up.addr]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let seeds = [
        query(1, "www.example.com", RType::A, Some(1232)),
        hex::decode("123401000002000000000000037777770b727573742d7472656e647303636f6d000001000103646576c01000010001").unwrap(),
        answer(&query(2, "x.example", RType::A, None), &[]),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for n in 0..10_000usize {
        let mut p = if n.is_multiple_of(4) {
            (0..rng.next() % 600)
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>()
        } else {
            let mut p = seeds[n % seeds.len()].clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % p.len();
                p[at] = rng.next() as u8;
            }
            if rng.next().is_multiple_of(5) {
                p.truncate((rng.next() as usize) % p.len());
            }
            p
        };
        // Never send a valid-looking response: the point is hostile queries.
        if p.len() > 2 && n.is_multiple_of(3) {
            p[2] &= 0x7F;
        }
        sock.send_to(&p, fwd.addr).unwrap();
        if n.is_multiple_of(200) {
            std::thread::sleep(Duration::from_millis(2)); // let the kernel buffers drain
        }
    }
    // Some garbage over TCP too: a huge length prefix, then a close.
    if let Ok(mut s) = TcpStream::connect(fwd.addr) {
        let _ = std::io::Write::write_all(&mut s, &[0xFF, 0xFF, 1, 2, 3]);
    }
    let r = udp_ask(fwd.addr, &query(0x7777, "after.example", RType::A, None))
        .expect("still answering");
    let m = parse_message(&r).unwrap();
    assert_eq!((m.header.id, m.answers.len()), (0x7777, 1));
    let r = tcp_ask(fwd.addr, &query(0x7778, "after.example", RType::A, None))
        .expect("still answering on TCP");
    assert_eq!(id_of(&r), 0x7778);
}

#[test]
fn ipv6_loopback_works_too() {
    let Ok(probe) = UdpSocket::bind("[::1]:0") else {
        eprintln!("note: no IPv6 loopback here; skipped");
        return;
    };
    drop(probe);
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.listen = vec!["[::1]:0".parse::<SocketAddr>().unwrap()]
    });
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.send_to(&query(6, "v6.example", RType::A, None), fwd.addr)
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(id_of(&buf[..n]), 6);
}

#[test]
fn idle_tcp_connections_are_closed() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| c.tcp_idle = Duration::from_millis(200));
    let mut s = TcpStream::connect(fwd.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write_frame(&mut s, &query(1, "idle.example", RType::A, None));
    assert!(read_frame(&mut s).is_some());
    // Then nothing: the server closes within a few sweeps of the idle time.
    let mut b = [0u8; 1];
    let started = std::time::Instant::now();
    assert_eq!(
        std::io::Read::read(&mut s, &mut b).unwrap_or(0),
        0,
        "closed, not answered"
    );
    assert!(started.elapsed() < WAIT, "closed before the client gave up");
}

/// A connection that never sends: nothing else wakes the loop (no query on it, no
/// upstream connection, no timer of the core), so only the sweep, which an open
/// connection must keep the poll waking for, can close it. A query over UDP just before
/// has the loop sweep then, so that the connection opens between two sweeps.
#[test]
fn a_silent_tcp_client_is_closed_with_no_other_traffic() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| c.tcp_idle = Duration::from_millis(200));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.send_to(&query(2, "udp.example", RType::A, None), fwd.addr)
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(sock.recv(&mut buf).is_ok());
    let mut s = TcpStream::connect(fwd.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 1];
    let started = std::time::Instant::now();
    assert_eq!(std::io::Read::read(&mut s, &mut b).unwrap_or(0), 0);
    assert!(started.elapsed() < WAIT, "closed before the client gave up");
    // Stopped, not dropped: a panic in the loop (a debug assertion) fails the test.
    fwd.stop();
}

#[test]
fn connection_cap_closes_the_oldest_idle_one() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| c.max_tcp_clients = 2);
    let mut first = TcpStream::connect(fwd.addr).unwrap();
    first.set_read_timeout(Some(WAIT)).unwrap();
    write_frame(&mut first, &query(1, "a.example", RType::A, None));
    assert!(read_frame(&mut first).is_some());
    std::thread::sleep(Duration::from_millis(20));
    let mut second = TcpStream::connect(fwd.addr).unwrap();
    second.set_read_timeout(Some(WAIT)).unwrap();
    write_frame(&mut second, &query(2, "b.example", RType::A, None));
    assert!(read_frame(&mut second).is_some());
    // A third connection: the first (idle longest) makes room.
    let r = tcp_ask(fwd.addr, &query(3, "c.example", RType::A, None));
    assert_eq!(r.map(|r| id_of(&r)), Some(3));
    let mut b = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut first, &mut b).unwrap_or(0),
        0,
        "oldest idle closed"
    );
    write_frame(&mut second, &query(4, "d.example", RType::A, None));
    assert_eq!(
        read_frame(&mut second).map(|r| id_of(&r)),
        Some(4),
        "the other one lives"
    );
}

#[test]
fn a_stalled_tcp_client_does_not_stop_the_others() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start(&[up.addr]);
    // Half a length prefix, then nothing; and a client that never reads its answers.
    let mut stalled = TcpStream::connect(fwd.addr).unwrap();
    std::io::Write::write_all(&mut stalled, &[0]).unwrap();
    let mut deaf = TcpStream::connect(fwd.addr).unwrap();
    for n in 0..2000u16 {
        write_frame(
            &mut deaf,
            &query(n, &format!("deaf{n}.example"), RType::A, Some(4096)),
        );
    }
    for n in 0..20 {
        let q = query(n, &format!("live{n}.example"), RType::A, None);
        assert_eq!(udp_ask(fwd.addr, &q).map(|r| id_of(&r)), Some(n));
        assert_eq!(tcp_ask(fwd.addr, &q).map(|r| id_of(&r)), Some(n));
    }
}

#[test]
fn stopping_answers_what_is_in_flight() {
    // One slow upstream (300 ms) and one dark: the slow answer still arrives after the
    // stop, the dark one's query gets SERVFAIL within the one-second grace.
    let slow = MockUpstream::delayed(Duration::from_millis(300));
    let fwd = Forwarder::start_with(&[slow.addr], |c| {
        c.timeout = Duration::from_secs(10);
        c.deadline = Duration::from_secs(10);
    });
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.set_read_timeout(Some(WAIT)).unwrap();
    a.send_to(&query(1, "slow.example", RType::A, None), fwd.addr)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let stats = fwd.stop();
    let mut buf = [0u8; 512];
    let n = a.recv(&mut buf).expect("answered before exit");
    let m = parse_message(&buf[..n]).unwrap();
    assert_eq!(
        (m.header.id, m.header.rcode, m.answers.len()),
        (1, Rcode::NOERROR, 1)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(stats.answers, 1);

    let dark = MockUpstream::start(|_, _| vec![]);
    let fwd = Forwarder::start_with(&[dark.addr], |c| {
        c.timeout = Duration::from_secs(10);
        c.deadline = Duration::from_secs(10);
    });
    a.send_to(&query(2, "dark.example", RType::A, None), fwd.addr)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let stats = fwd.stop();
    let n = a.recv(&mut buf).expect("SERVFAIL before exit");
    let m = parse_message(&buf[..n]).unwrap();
    assert_eq!((m.header.id, m.header.rcode), (2, Rcode::SERVFAIL));
    assert_eq!(stats.servfail, 1);
}

#[test]
fn a_client_that_never_reads_its_answers_is_closed() {
    // 800 records (~13 KB) per answer over UDP from the mock: more than the kernel
    // buffers hold after a few hundred answers, so the server's own backlog stalls.
    let up = MockUpstream::start(|q, _| vec![Action::Answer(answer(q, &a_records(q, 800)))]);
    let fwd = Forwarder::start_with(&[up.addr], |c| c.tcp_idle = Duration::from_millis(300));
    let mut s = TcpStream::connect(fwd.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Paced, so that neither the mock nor the forwarder drops datagrams; never read.
    'send: for batch in 0..100u16 {
        for k in 0..10u16 {
            let n = batch * 10 + k;
            let q = query(n, &format!("w{n}.example"), RType::A, Some(65000));
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            if std::io::Write::write_all(&mut s, &framed).is_err() {
                break 'send; // the server stopped reading us: expected
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(1000));
    // Now drain: what was sent arrives, then the connection ends (EOF or reset).
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("connection still open after the idle time ({total} octets read)")
            }
            Err(_) => break, // reset: closed too
        }
        assert!(std::time::Instant::now() < deadline, "never closed");
    }
    // And the server is fine.
    assert_eq!(
        udp_ask(fwd.addr, &query(1, "after.example", RType::A, None)).map(|r| id_of(&r)),
        Some(1)
    );
}

#[test]
fn upstream_source_ports_rotate() {
    // RFC 5452 §9.2: 8 sockets per upstream, each replaced after 256 queries (once its
    // predecessor is closed): 3000 queries must come from more than 8 ports.
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| c.deadline = Duration::from_millis(300));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 512];
    for round in 0..30u16 {
        for k in 0..100u16 {
            let n = round * 100 + k;
            sock.send_to(
                &query(n, &format!("r{n}.example"), RType::A, None),
                fwd.addr,
            )
            .unwrap();
        }
        for _ in 0..100 {
            sock.recv(&mut buf).expect("answered");
        }
        // Retired sockets close after the deadline; then the slots rotate again.
        if round % 10 == 9 {
            std::thread::sleep(Duration::from_millis(350));
        }
    }
    let ports = up.udp_ports.lock().unwrap().len();
    eprintln!("{ports} source ports for 3000 queries");
    assert!(ports > 8, "only {ports} source ports for 3000 queries");
}
