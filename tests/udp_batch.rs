//! The batched UDP paths of the loop (recvmmsg on listeners and upstream sockets,
//! sendmmsg of the answers): bursts larger than a batch and than a turn's budget are
//! answered whole, and a datagram too long for its receive buffer is dropped and
//! counted, never parsed from a cut prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{id_of, query, Forwarder, MockUpstream, WAIT};
use dnsfwd::wire::{parse_message, RType};
use socket2::SockRef;

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Room for a whole burst of answers while the test is still sending.
    SockRef::from(&s).set_recv_buffer_size(4 << 20).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads answers until `n` distinct IDs came or the wait ends; returns the IDs.
fn collect(sock: &UdpSocket, n: usize) -> HashSet<u16> {
    let mut ids = HashSet::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    while ids.len() < n && Instant::now() < end {
        match sock.recv(&mut buf) {
            Ok(len) => {
                let m = parse_message(&buf[..len]).unwrap();
                assert!(m.header.qr && !m.answers.is_empty(), "{m:?}");
                ids.insert(id_of(&buf[..len]));
            }
            Err(_) => break,
        }
    }
    ids
}

#[test]
fn bursts_beyond_a_batch_and_a_turn_are_answered_whole() {
    let upstream = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[upstream.addr], |c| c.cache.max_entries = 10_000);
    // Four clients, 400 queries each back to back (more than a batch of 32 and a turn's
    // 256): half cache hits after the first round, half forwarded.
    let socks: Vec<UdpSocket> = (0..4).map(|_| client()).collect();
    for round in 0..400u16 {
        for (c, s) in socks.iter().enumerate() {
            let name = if round % 2 == 0 {
                format!("hot{}.example", round % 10)
            } else {
                format!("c{c}-{round}.example")
            };
            s.send_to(&query(round, &name, RType::A, Some(1232)), fwd.addr)
                .unwrap();
        }
    }
    for (c, s) in socks.iter().enumerate() {
        let ids = collect(s, 400);
        assert_eq!(ids.len(), 400, "client {c} got {} of 400", ids.len());
    }
    let stats = fwd.stop();
    assert_eq!(stats.queries, 1600, "{stats}");
    // The 800 queries for 10 hot names: hits, or waiting on the same one in flight.
    assert!(stats.cache_hits + stats.coalesced >= 700, "{stats}");
}

#[test]
fn a_datagram_too_long_for_a_query_buffer_is_dropped_and_counted() {
    let upstream = MockUpstream::echo();
    let fwd = Forwarder::start(&[upstream.addr]);
    let sock = client();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let q = query(7, "long.example", RType::A, Some(1232));
    // A real query followed by junk, 5000 octets: more than the 4096 of a buffer. Cut
    // at 4096 it would still parse as the query with trailing bytes; it must not be
    // looked at at all.
    let mut long = q.clone();
    long.resize(5000, 0);
    sock.send_to(&long, fwd.addr).unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        sock.recv(&mut buf).is_err(),
        "no answer to an oversized datagram"
    );
    // One that fits its buffer exactly is read (and answered: FORMERR, trailing bytes).
    let mut fits = q.clone();
    fits.resize(4096, 0);
    sock.send_to(&fits, fwd.addr).unwrap();
    let n = sock
        .recv(&mut buf)
        .expect("an answer to a 4096-octet query");
    assert_eq!(id_of(&buf[..n]), 7);
    // And the socket goes on as usual.
    sock.send_to(&query(8, "next.example", RType::A, None), fwd.addr)
        .unwrap();
    let n = sock.recv(&mut buf).expect("the next query is answered");
    assert_eq!(id_of(&buf[..n]), 8);
    let stats = fwd.stop();
    assert_eq!(stats.dropped_queries, 1, "{stats}");
}
