//! TCP to upstreams (truncated UDP answers fetched again over TCP): a small pool of
//! connections per upstream, reused and pipelined (RFC 7766 §6.2.1), with the queries
//! beyond it queued; connections the upstream closes, resets or refuses fail their
//! queries cleanly. Over loopback; every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use dnsfwd::server::MAX_TCP_PER_UPSTREAM;
use dnsfwd::wire::{parse_message, Class, RData, RType, Rcode, Record};

/// The first test counts the process's descriptors, so the tests of this file run one
/// at a time (each test file is its own process).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// 1020 octets of TXT filler: with the name in front, 58 records make about 60 kB.
static FILL: [u8; 255] = [b'x'; 255];
const BIG_RECORDS: usize = 58;

/// An answer of about 60 kB whose every TXT record starts with the query's name, so a
/// client can tell its answer from another's.
fn big_answer(q: &[u8]) -> Vec<u8> {
    let qname = parse_message(q).unwrap().questions[0].qname.clone();
    let text = qname.to_lowercase_string();
    let records: Vec<Record<'_>> = (0..BIG_RECORDS)
        .map(|_| Record {
            name: qname.clone(),
            rtype: RType::TXT,
            class: Class::IN,
            ttl: 300,
            rdata: RData::Txt(vec![text.as_bytes(), &FILL, &FILL, &FILL, &FILL]),
        })
        .collect();
    answer(q, &records)
}

/// Header and question with TC set: the forwarder must ask again over TCP.
fn truncated(q: &[u8]) -> Vec<u8> {
    let empty = answer(q, &[]);
    let mut m = parse_message(&empty).unwrap();
    m.header.tc = true;
    m.to_vec()
}

/// Checks that `r` is the whole big answer to the query for `name` with ID `id`.
#[track_caller]
fn assert_big_answer(r: &[u8], id: u16, name: &str) {
    let m = parse_message(r).unwrap();

    assert_eq!(
        (m.header.id, m.header.tc, m.answers.len()),
        (id, false, BIG_RECORDS)
    );
    assert_eq!(m.questions[0].qname.to_string(), name);
    let RData::Txt(strings) = &m.answers[0].rdata else {
        panic!("not TXT")
    };
    assert_eq!(strings[0], name.as_bytes(), "another client's answer");
}

/// Sends `queries` on one connection at once, then reads as many answers (each read
/// bounded by `wait`). Returns the answers in the order they came.
fn pipeline(server: std::net::SocketAddr, queries: &[Vec<u8>], wait: Duration) -> Vec<Vec<u8>> {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut all = Vec::new();
    for q in queries {
        all.extend_from_slice(&(q.len() as u16).to_be_bytes());
        all.extend_from_slice(q);
    }
    std::io::Write::write_all(&mut s, &all).unwrap();
    (0..queries.len())
        .map_while(|_| read_frame(&mut s))
        .collect()
}

#[test]
fn many_big_answers_share_a_few_upstream_connections() {
    let _serial = serial();
    let up = MockUpstream::start(|q, via| match via {
        Via::Udp => vec![Action::Answer(truncated(q))],
        Via::Tcp => vec![Action::Answer(big_answer(q))],
    });
    assert!(big_answer(&query(1, "c0-q0.big.example", RType::TXT, None)).len() > 59_000);
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        // 120 MB through a debug build takes seconds: queries wait in the forwarder's
        // queue past an attempt's timeout and are asked again. This test is about
        // descriptors, not about a loaded machine's speed.
        c.deadline = Duration::from_secs(30);
        // 2000 queries in flight from one address: more than its fair share (1250).
        c.max_pending_per_client = 0;
    });
    let baseline = open_fds();
    let peak = Arc::new(AtomicUsize::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(open_fds(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 250;
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = fwd.addr;
            std::thread::spawn(move || {
                let names: Vec<String> = (0..PER_CLIENT)
                    .map(|i| format!("c{c}-q{i}.big.example."))
                    .collect();
                let queries: Vec<Vec<u8>> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| query(i as u16, n, RType::TXT, None))
                    .collect();
                let answers = pipeline(addr, &queries, Duration::from_secs(30));
                let servfails = answers
                    .iter()
                    .filter(|r| parse_message(r).unwrap().header.rcode == Rcode::SERVFAIL)
                    .count();
                (answers, names, servfails)
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let answered: usize = results.iter().map(|(a, _, _)| a.len()).sum();
    let servfails: usize = results.iter().map(|(_, _, s)| s).sum();
    let accepts = up.tcp_accepts.load(Ordering::SeqCst);
    let extra_fds = peak.load(Ordering::SeqCst) - baseline;
    eprintln!(
        "{answered} answers ({servfails} SERVFAIL) in {:?}; upstream TCP connections \
         accepted: {accepts}; descriptors above the baseline at the peak: {extra_fds}",
        started.elapsed()
    );
    assert_eq!((answered, servfails), (CLIENTS * PER_CLIENT, 0));
    for (answers, names, _) in &results {
        for r in answers {
            let id = id_of(r);
            assert_big_answer(r, id, &names[usize::from(id)]);
        }
    }
    assert!(
        accepts <= MAX_TCP_PER_UPSTREAM,
        "{accepts} upstream connections"
    );
    // The 8 clients (both ends: 16), the pool (both ends: 2 + 2 clones in the mock: 6),
    // rotated upstream UDP sockets kept for late answers (8), with room to spare.
    assert!(extra_fds <= 48, "{extra_fds} descriptors");
    eprintln!("{}", fwd.stop());
}

/// Over TCP, the answer to `o<n>.example` comes after (20 - n) * 15 ms, after a stray
/// answer with a wrong ID: on one connection, the answers come back in reverse.
fn reversing_upstream() -> MockUpstream {
    MockUpstream::start(|q, via| match via {
        Via::Udp => vec![Action::Answer(truncated(q))],
        Via::Tcp => {
            let name = parse_message(q).unwrap().questions[0].qname.to_string();
            let n: u64 = name[1..name.find('.').unwrap()].parse().unwrap();
            vec![
                Action::WrongId(big_answer(q)),
                Action::Delay(Duration::from_millis((20 - n) * 15), big_answer(q)),
            ]
        }
    })
}

#[test]
fn pipelined_upstream_answers_out_of_order_reach_the_right_clients() {
    let _serial = serial();
    let up = reversing_upstream();
    let fwd = Forwarder::start(&[up.addr]);
    let names: Vec<String> = (0..20).map(|n| format!("o{n}.example.")).collect();
    let queries: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(n, name)| query(100 + n as u16, name, RType::TXT, None))
        .collect();
    let answers = pipeline(fwd.addr, &queries, WAIT);
    assert_eq!(answers.len(), 20);
    let ids: Vec<u16> = answers.iter().map(|r| id_of(r)).collect();
    for r in &answers {
        let n = usize::from(id_of(r) - 100);
        assert_big_answer(r, 100 + n as u16, &names[n]);
    }
    assert_ne!(ids, (100..120).collect::<Vec<_>>(), "answered as they came");
    // All 20 went on one connection: the first one had room for them.
    assert_eq!(up.tcp_accepts.load(Ordering::SeqCst), 1);
    let stats = fwd.stop();
    // The stray answers were handed to the core, which dropped them.
    assert!(stats.dropped_responses >= 20, "{stats}");
    assert_eq!(stats.timeouts, 0, "{stats}");
}

#[test]
fn idle_upstream_connection_is_closed() {
    let _serial = serial();
    let up = reversing_upstream();
    let fwd = Forwarder::start(&[up.addr]);
    let q = query(7, "o19.example", RType::TXT, None);
    let r = tcp_ask(fwd.addr, &q).expect("answer");
    assert_big_answer(&r, 7, "o19.example.");
    assert_eq!(up.tcp_open.load(Ordering::SeqCst), 1);
    // Closed by the forwarder a few seconds after its last answer.
    assert!(wait_until(Duration::from_secs(10), || up
        .tcp_open
        .load(Ordering::SeqCst)
        == 0));
}

/// An upstream that closes its TCP connection after each answer (a reset when it left
/// pipelined queries unread). Its TCP answers are 60 A records.
fn closing_upstream() -> MockUpstream {
    MockUpstream::start(|q, via| match via {
        Via::Udp => vec![Action::Answer(truncated(q))],
        Via::Tcp => vec![Action::AnswerThenClose(answer(q, &a_records(q, 60)))],
    })
}

#[test]
fn upstream_closing_an_idle_connection_means_reconnecting() {
    let _serial = serial();
    let up = closing_upstream();
    let fwd = Forwarder::start(&[up.addr]);
    for n in 0..4u16 {
        let r = tcp_ask(
            fwd.addr,
            &query(n, &format!("i{n}.example"), RType::A, None),
        )
        .expect("answer");
        let m = parse_message(&r).unwrap();
        assert_eq!((m.header.id, m.answers.len()), (n, 60));
        // The forwarder sees the close before the next query (RFC 7766 §6.2.3).
        assert!(wait_until(WAIT, || up.tcp_open.load(Ordering::SeqCst) == 0));
    }
    assert_eq!(up.tcp_accepts.load(Ordering::SeqCst), 4);
    let stats = fwd.stop();
    assert_eq!((stats.timeouts, stats.upstream_errors), (0, 0), "{stats}");
}

#[test]
fn upstream_closing_after_each_answer_fails_the_rest_cleanly() {
    let _serial = serial();
    let up = closing_upstream();
    let deadline = Duration::from_millis(1500);
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.timeout = Duration::from_millis(300);
        c.deadline = deadline;
    });
    let started = Instant::now();
    // 240 queries: more than the two connections take, so some wait in the queue
    // when a connection closes.
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let addr = fwd.addr;
            std::thread::spawn(move || {
                let queries: Vec<Vec<u8>> = (0..60u16)
                    .map(|i| query(i, &format!("c{c}-r{i}.example"), RType::A, None))
                    .collect();
                pipeline(addr, &queries, WAIT)
            })
        })
        .collect();
    let (mut answers, mut servfails) = (0, 0);
    for c in clients {
        let got = c.join().unwrap();
        assert_eq!(got.len(), 60, "every query gets a response");
        for r in got {
            let m = parse_message(&r).unwrap();
            match m.header.rcode {
                Rcode::NOERROR => {
                    assert_eq!(m.answers.len(), 60);
                    answers += 1;
                }
                Rcode::SERVFAIL => servfails += 1,
                other => panic!("rcode {other:?}"),
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{answers} answers, {servfails} SERVFAIL in {elapsed:?}; {} connections",
        up.tcp_accepts.load(Ordering::SeqCst)
    );
    assert!(elapsed < deadline + Duration::from_secs(2), "{elapsed:?}");
    assert!(answers >= 2, "reconnected for the queries left behind");
    assert!(up.tcp_accepts.load(Ordering::SeqCst) >= 2);
    // The loop is alive and answers the next query.
    let r = tcp_ask(fwd.addr, &query(99, "after.example", RType::A, None)).expect("answer");
    assert_eq!(parse_message(&r).unwrap().answers.len(), 60);
    let stats = fwd.stop();
    assert!(stats.upstream_errors >= 1, "{stats}");
}

/// Truncates over UDP, and nothing listens on its TCP port.
fn tcp_refusing_upstream() -> MockUpstream {
    MockUpstream::start_udp_only(|q, _| vec![Action::Answer(truncated(q))])
}

#[test]
fn refused_tcp_gives_servfail_at_the_deadline() {
    let _serial = serial();
    let up = tcp_refusing_upstream();
    let deadline = Duration::from_millis(800);
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.timeout = Duration::from_millis(200);
        c.deadline = deadline;
    });
    let started = Instant::now();
    let queries: Vec<Vec<u8>> = (0..5u16)
        .map(|i| query(i, &format!("r{i}.example"), RType::A, None))
        .collect();
    let got = pipeline(fwd.addr, &queries, WAIT);
    assert_eq!(got.len(), 5);
    for r in &got {
        assert_eq!(parse_message(r).unwrap().header.rcode, Rcode::SERVFAIL);
    }
    assert!(started.elapsed() < deadline + Duration::from_secs(1));
    let stats = fwd.stop();
    assert!(stats.upstream_errors >= 5, "{stats}");
}

#[test]
fn refused_tcp_fails_over_to_another_upstream_at_once() {
    let _serial = serial();
    let refusing = tcp_refusing_upstream();
    let good = MockUpstream::start(|q, via| match via {
        Via::Udp => vec![Action::Answer(truncated(q))],
        Via::Tcp => vec![Action::Answer(big_answer(q))],
    });
    // Long timers: only an immediate failover answers in time.
    let fwd = Forwarder::start_with(&[refusing.addr, good.addr], |c| {
        c.timeout = Duration::from_secs(5);
        c.deadline = Duration::from_secs(10);
    });
    let started = Instant::now();
    for n in 0..10u16 {
        let name = format!("f{n}.example.");
        let r = tcp_ask(fwd.addr, &query(n, &name, RType::TXT, None)).expect("answer");
        assert_big_answer(&r, n, &name);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for a timer"
    );
    // The first queries went to the refusing upstream (same RTT, first in the list).
    assert!(refusing.udp_queries.load(Ordering::SeqCst) >= 1);
    let stats = fwd.stop();
    assert_eq!(stats.timeouts, 0, "{stats}");
}
