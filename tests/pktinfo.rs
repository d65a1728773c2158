//! A UDP listener on a wildcard address answers from the address each query was sent
//! to (IP_PKTINFO / IPV6_PKTINFO), whenever the answer is made: a cache hit at once, a
//! miss when the upstream answers, coalesced waiters together, a rate-limit slip, a
//! burst sent with sendmmsg. Over loopback, where all of 127.0.0.0/8 is local: a query
//! to 127.0.0.2 must not be answered from 127.0.0.1 (what the route would pick).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use dnsfwd::policy::RateLimit;
use dnsfwd::wire::{parse_message, RType};

/// A forwarder listening on `any`:0 (the wildcard), with a cache.
fn wildcard(
    any: IpAddr,
    upstream: SocketAddr,
    tweak: impl FnOnce(&mut dnsfwd::config::Config),
) -> (Forwarder, u16) {
    let fwd = Forwarder::start_with(&[upstream], |c| {
        c.listen = vec![SocketAddr::new(any, 0)];
        c.cache.max_entries = 1000;
        tweak(c);
    });
    let port = fwd.addr.port();
    assert!(fwd.addr.ip().is_unspecified());
    (fwd, port)
}

/// A client socket on `local`:0 that waits at most `WAIT` for an answer.
fn client(local: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(local, 0)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// One answer on `sock`, and where it came from.
#[track_caller]
fn answer_from(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65535];
    let (n, from) = sock.recv_from(&mut buf).expect("an answer");
    (buf[..n].to_vec(), from)
}

/// Asks `to` for `name` and checks the answer came from exactly `to`.
#[track_caller]
fn ask_checked(sock: &UdpSocket, to: SocketAddr, id: u16, name: &str) -> Vec<u8> {
    sock.send_to(&query(id, name, RType::A, None), to).unwrap();
    let (a, from) = answer_from(sock);
    assert_eq!(from, to, "the answer to a query for {to} came from {from}");
    assert_eq!(id_of(&a), id);
    a
}

#[test]
fn answers_a_miss_and_a_hit_from_the_address_asked() {
    let up = MockUpstream::echo();
    let (fwd, port) = wildcard(Ipv4Addr::UNSPECIFIED.into(), up.addr, |_| {});
    let sock = client(Ipv4Addr::LOCALHOST.into());
    for (i, last) in [2u8, 3].into_iter().enumerate() {
        let to = SocketAddr::from(([127, 0, 0, last], port));
        let name = format!("n{i}.example");
        // A miss: answered later, when the upstream's answer comes back.
        let miss = ask_checked(&sock, to, 10 + i as u16, &name);
        // The same question again: a cache hit, answered at once.
        let hit = ask_checked(&sock, to, 20 + i as u16, &name);
        let (m, h) = (parse_message(&miss).unwrap(), parse_message(&hit).unwrap());
        assert_eq!(m.answers.len(), 1);
        assert_eq!(h.answers.len(), 1);
    }
    assert_eq!(up.udp_queries.load(std::sync::atomic::Ordering::SeqCst), 2);
    let stats = fwd.stop();
    assert_eq!(stats.cache_hits, 2);
}

#[test]
fn answers_coalesced_waiters_each_from_its_address() {
    let up = MockUpstream::delayed(Duration::from_millis(300));
    let (_fwd, port) = wildcard(Ipv4Addr::UNSPECIFIED.into(), up.addr, |_| {});
    let to2 = SocketAddr::from(([127, 0, 0, 2], port));
    let to3 = SocketAddr::from(([127, 0, 0, 3], port));
    let (a, b) = (
        client(Ipv4Addr::LOCALHOST.into()),
        client(Ipv4Addr::LOCALHOST.into()),
    );
    a.send_to(&query(1, "same.example", RType::A, None), to2)
        .unwrap();
    b.send_to(&query(2, "same.example", RType::A, None), to3)
        .unwrap();
    let ((qa, from_a), (qb, from_b)) = (answer_from(&a), answer_from(&b));
    assert_eq!((from_a, id_of(&qa)), (to2, 1));
    assert_eq!((from_b, id_of(&qb)), (to3, 2));
    assert_eq!(
        up.udp_queries.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one upstream query for both"
    );
}

/// Answers gathered in one turn go out together (sendmmsg), each with its own source.
#[test]
fn answers_a_burst_each_from_its_address() {
    let up = MockUpstream::echo();
    let (_fwd, port) = wildcard(Ipv4Addr::UNSPECIFIED.into(), up.addr, |_| {});
    let sock = client(Ipv4Addr::LOCALHOST.into());
    let to = |last: u8| SocketAddr::from(([127, 0, 0, last], port));
    ask_checked(&sock, to(2), 1, "burst.example");
    let n = 40u16;
    for id in 0..n {
        let q = query(id, "burst.example", RType::A, None);
        sock.send_to(&q, to(2 + (id % 3) as u8)).unwrap();
    }
    for _ in 0..n {
        let (a, from) = answer_from(&sock);
        assert_eq!(from, to(2 + (id_of(&a) % 3) as u8), "answer {}", id_of(&a));
    }
}

/// A rate-limit slip (TC=1) is made before the core sees the query: it too goes out
/// from the address asked.
#[test]
fn answers_a_slip_from_the_address_asked() {
    let up = MockUpstream::echo();
    let (_fwd, port) = wildcard(Ipv4Addr::UNSPECIFIED.into(), up.addr, |c| {
        c.policy.rate_limit = Some(RateLimit {
            qps: 1,
            burst: 1,
            slip: 1,
        });
    });
    let sock = client(Ipv4Addr::LOCALHOST.into());
    let to = SocketAddr::from(([127, 0, 0, 3], port));
    let mut slipped = 0;
    for id in 0..4 {
        let a = ask_checked(&sock, to, id, "slip.example");
        slipped += usize::from(parse_message(&a).unwrap().header.tc);
    }
    assert!(slipped >= 2, "{slipped} slips");
}

/// A local client that sends a datagram (junk: the core drops it) to each of 1100
/// loopback addresses must not take the reply paths for good: a query to an address
/// first asked after that is still answered from that address, not from the kernel's
/// choice (127.0.0.1), which a client that asked 127.0.0.9 drops. And a path that owes
/// an answer is not taken over meanwhile: a slow miss asked at 127.0.0.2 before the
/// flood is answered from 127.0.0.2 after it.
#[test]
fn a_flood_of_destinations_does_not_take_the_reply_paths_for_good() {
    let up = MockUpstream::start(|q, _| {
        let a = answer(q, &a_records(q, 1));
        match parse_message(q).unwrap().questions[0]
            .qname
            .to_lowercase_string()
            .starts_with("slow")
        {
            true => vec![Action::Delay(Duration::from_millis(500), a)],
            false => vec![Action::Answer(a)],
        }
    });
    let (_fwd, port) = wildcard(Ipv4Addr::UNSPECIFIED.into(), up.addr, |_| {});
    let slow = client(Ipv4Addr::LOCALHOST.into());
    let slow_to = SocketAddr::from(([127, 0, 0, 2], port));
    slow.send_to(&query(3, "slow.example", RType::A, None), slow_to)
        .unwrap();
    let flood = client(Ipv4Addr::LOCALHOST.into());
    for k in 0..1100u32 {
        let to = SocketAddr::from((Ipv4Addr::from(0x7F01_0000 + k), port)); // 127.1.x.y
        flood.send_to(&[0u8], to).unwrap();
        if k % 64 == 63 {
            std::thread::sleep(Duration::from_millis(2)); // within the socket's queue
        }
    }
    // A query after them on the same socket: once it is answered, every datagram
    // before it was read.
    let last = SocketAddr::from((Ipv4Addr::from(0x7F01_0000 + 5), port));
    ask_checked(&flood, last, 7, "sentinel.example");
    let sock = client(Ipv4Addr::LOCALHOST.into());
    let to = SocketAddr::from(([127, 0, 0, 9], port));
    ask_checked(&sock, to, 1, "late.example");
    let (a, from) = answer_from(&slow);
    assert_eq!((id_of(&a), from), (3, slow_to), "the slow miss's answer");
}

/// `[::]` (IPV6_V6ONLY) reads its own destinations: loopback has one IPv6 address, so
/// this checks the path works and answers from ::1.
#[test]
fn answers_on_ipv6_wildcard_from_the_address_asked() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback: skipped");
        return;
    }
    let up = MockUpstream::echo();
    let (_fwd, port) = wildcard(Ipv6Addr::UNSPECIFIED.into(), up.addr, |_| {});
    let sock = client(Ipv6Addr::LOCALHOST.into());
    let to = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    ask_checked(&sock, to, 1, "six.example");
    ask_checked(&sock, to, 2, "six.example");
}
