//! Fair shares over real sockets (issue 8): a client flooding never-answered names
//! cannot take the pending table from another client asking ordinary names; and the
//! same flood against a forwarder with no per-client share (the control) does starve
//! the other client, which shows the test can fail. Clients are distinct loopback
//! addresses (127.0.0.2 floods, 127.0.0.3 asks).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dnsfwd::wire::{parse_message, RType, Rcode};

/// Floods `server` from 127.0.0.2 with never-answered names at about `rate` per second
/// until `stop`; returns how many it sent.
fn flood(server: SocketAddr, rate: u64, stop: Arc<AtomicBool>, sent: Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    let start = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
        let q = query(n as u16, &format!("flood{n}.example"), RType::A, None);
        let _ = sock.send_to(&q, server);
        n += 1;
        sent.fetch_add(1, Ordering::SeqCst);
        // Pace: n queries should take n / rate seconds.
        let due = Duration::from_micros(n * 1_000_000 / rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// The share of 150 ordinary queries from 127.0.0.3 answered NOERROR while 127.0.0.2
/// floods at 6000 q/s, against a table of 2000 with `per_client` for each client (0:
/// no fair shares at all).
fn answered_under_flood(per_client: usize) -> (usize, dnsfwd::stats::Stats) {
    let up = MockUpstream::start(|q, _| {
        let m = parse_message(q).unwrap();
        if m.questions[0]
            .qname
            .to_lowercase_string()
            .starts_with("flood")
        {
            vec![]
        } else {
            vec![Action::Answer(answer(q, &a_records(q, 1)))]
        }
    });
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.max_pending = 2000;
        c.max_pending_per_client = per_client;
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flooder = {
        let (stop, sent, addr) = (stop.clone(), sent.clone(), fwd.addr);
        std::thread::spawn(move || flood(addr, 6000, stop, sent))
    };
    // Let the flood fill what it can (2000 slots at 6000 q/s: a third of a second).
    std::thread::sleep(Duration::from_millis(700));
    let sock = UdpSocket::bind("127.0.0.3:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut answered = 0;
    let mut buf = [0u8; 1500];
    for n in 0..150u16 {
        sock.send_to(
            &query(n, &format!("ok{n}.example"), RType::A, None),
            fwd.addr,
        )
        .unwrap();
        // Answers to earlier (timed out) queries may still come: read until ours.
        while let Ok(len) = sock.recv(&mut buf) {
            let m = parse_message(&buf[..len]).unwrap();
            if m.header.id == n {
                if m.rcode() == Rcode::NOERROR && m.answers.len() == 1 {
                    answered += 1;
                }
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    flooder.join().unwrap();
    let stats = fwd.stop();
    eprintln!(
        "per-client share {per_client}: {answered}/150 answered while {} flood queries were \
         sent; {stats}",
        sent.load(Ordering::SeqCst)
    );
    (answered, stats)
}

#[test]
fn a_flood_of_never_answered_names_does_not_starve_another_client() {
    let (answered, stats) = answered_under_flood(250);
    assert!(answered >= 143, "{answered}/150 answered (want ≥ 95%)");
    assert!(
        stats.overload > 1000,
        "the flood was held to its share: {stats}"
    );
}

#[test]
fn control_without_a_share_the_flood_starves_the_other_client() {
    let (answered, _) = answered_under_flood(0);
    assert!(
        answered < 143,
        "{answered}/150 answered: the control should show starvation"
    );
}

/// One client that joins a query in flight 4200 times (the same name, its own IDs)
/// must not take every waiter's place on it: another client asking the same name
/// while it is in flight should get the answer, not REFUSED ("too many queries in
/// flight"), and keep it while the flood goes on: a full list of waiters (4096) gives a
/// place of the client holding more to a newcomer holding fewer. (Control: with the
/// newcomer always refused when the list is full, as before, the other client gets
/// REFUSED.)
#[test]
fn one_client_cannot_take_every_waiters_place_on_a_query() {
    let up = MockUpstream::delayed(Duration::from_millis(500));
    let fwd = Forwarder::start(&[up.addr]);
    let hog = UdpSocket::bind("127.0.0.2:0").unwrap();
    for id in 0..4200u16 {
        hog.send_to(&query(id, "shared.example", RType::A, None), fwd.addr)
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let other = UdpSocket::bind("127.0.0.3:0").unwrap();
    other.set_read_timeout(Some(WAIT)).unwrap();
    other
        .send_to(&query(1, "shared.example", RType::A, None), fwd.addr)
        .unwrap();
    // Nor take that place back: the hog holds far more than the other client.
    std::thread::sleep(Duration::from_millis(20));
    for id in 4200..4700u16 {
        hog.send_to(&query(id, "shared.example", RType::A, None), fwd.addr)
            .unwrap();
    }
    let mut buf = [0u8; 512];
    let n = other.recv(&mut buf).expect("an answer");
    let m = parse_message(&buf[..n]).unwrap();
    assert_eq!(
        (m.rcode(), m.answers.len()),
        (Rcode::NOERROR, 1),
        "another client's query for the name in flight"
    );
}
