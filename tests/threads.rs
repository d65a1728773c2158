//! `--threads N`: N loops on one address. The kernel steers each UDP query to the loop
//! owning its question name (the same hash as `steer`), a TCP query is handed to its
//! owner, and so coalescing and the cache stay exact across loops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use dnsfwd::config::Config;
use dnsfwd::server::steer::{attach, steer};
use dnsfwd::server::{Group, StopHandle};
use dnsfwd::stats::Stats;
use dnsfwd::wire::{parse_message, RType};

/// A group of `n` loops on an ephemeral loopback port.
struct Loops {
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    stop: StopHandle,
    thread: Option<JoinHandle<Vec<Stats>>>,
}

impl Loops {
    fn start(n: usize, upstream: SocketAddr, tweak: impl FnOnce(&mut Config)) -> Loops {
        let _ = env_logger::builder().is_test(true).try_init();
        let mut cfg = Config {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            upstreams: vec![upstream],
            threads: n,
            sockets_per_upstream: 8,
            ..Config::default()
        };
        cfg.cache.max_entries = 0;
        tweak(&mut cfg);
        let group = Group::bind(cfg).unwrap();
        let addr = group.local_addrs()[0];
        let stop = group.stop_handle().unwrap();
        let metrics = group.metrics_addr();
        let thread = Some(std::thread::spawn(move || group.run().unwrap()));
        Loops {
            addr,
            metrics,
            stop,
            thread,
        }
    }

    /// Stops every loop; each one's counters, in loop order.
    fn stop(mut self) -> Vec<Stats> {
        self.stop.stop();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.stop();
            let _ = t.join();
        }
    }
}

/// `name` with its letters' case flipped by the bits of `k`.
fn mixed_case(name: &str, k: usize) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| match (k >> (i % 16)) & 1 {
            1 => c.to_ascii_uppercase(),
            _ => c,
        })
        .collect()
}

/// The first name of the form `{prefix}{i}.example` that loop `owner` of `n` owns.
fn name_owned_by(prefix: &str, owner: u32, n: u32) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}.example"))
        .find(|name| steer(&query(1, name, RType::A, None), n) == Some(owner))
        .unwrap()
}

#[test]
fn the_kernel_and_steer_agree_on_the_owner() {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
    let has_v6 = UdpSocket::bind(v6).is_ok();
    if !has_v6 {
        eprintln!("\n*** SKIPPED: the IPv6 half of the steering test: no ::1 here ***");
    }
    for (n, local) in [(2usize, v4), (3, v4), (2, v6)] {
        if local.is_ipv6() && !has_v6 {
            continue;
        }
        let first = reuseport_socket(local);
        let addr = first.local_addr().unwrap();
        let mut socks = vec![first];
        socks.extend((1..n).map(|_| reuseport_socket(addr)));
        attach(&socks[0], n as u32).unwrap();
        for s in &socks {
            s.set_read_timeout(Some(WAIT)).unwrap();
        }
        let client = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).unwrap();
        let mut seen = vec![0usize; n];
        for i in 0..300 {
            let name = mixed_case(&format!("host-{i}.Some.Example.NET"), i * 7);
            let q = query(i as u16, &name, RType::A, None);
            client.send_to(&q, addr).unwrap();
            let owner = steer(&q, n as u32).unwrap() as usize;
            // The datagram is in the owner's queue, and in no other.
            let mut buf = [0u8; 512];
            let len = socks[owner].recv(&mut buf).expect("the owner got it");
            assert_eq!(&buf[..len], &q[..], "{name}");
            seen[owner] += 1;
        }
        // Too short for the walk: cBPF's out-of-bounds rule returns 0, socket 0. A
        // name too long to end: the program returns u32::MAX (>= n), and the kernel
        // picks by its own hash; delivered all the same.
        let short = &query(1, "example.com", RType::A, None)[..15];
        let mut long = query(1, "a", RType::A, None)[..12].to_vec();
        for _ in 0..5 {
            long.push(63);
            long.extend([b'a'; 63]);
        }
        long.extend([0, 0, 1, 0, 1]);
        assert_eq!(steer(&long, n as u32), None);
        for k in 0..10 {
            let c = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).unwrap();
            c.send_to(short, addr).unwrap();
            let mut buf = [0u8; 512];
            assert_eq!(socks[0].recv(&mut buf).unwrap(), short.len(), "short {k}");
            c.send_to(&long, addr).unwrap();
            let got = socks.iter().any(|s| {
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                s.recv(&mut [0u8; 512]).is_ok()
            });
            assert!(got, "a datagram without owner is still delivered");
        }
        for (i, s) in socks.iter().enumerate() {
            s.set_nonblocking(true).unwrap();
            assert!(s.recv(&mut [0u8; 512]).is_err(), "socket {i} got a stray");
        }
        assert!(seen.iter().all(|&c| c > 300 / n / 2), "{seen:?}");
    }
}

fn reuseport_socket(addr: SocketAddr) -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&addr.into()).unwrap();
    let s: UdpSocket = s.into();
    assert!(s.as_raw_fd() > 0);
    s
}

/// N loops answer N× the queries side by side, each exactly the queries whose names
/// it owns (no cross-talk), and every answer is the right one.
#[test]
fn each_loop_answers_the_names_it_owns() {
    for n in [2usize, 4] {
        let up = MockUpstream::echo();
        let loops = Loops::start(n, up.addr, |_| {});
        let mut expected = vec![0u64; n];
        let socks: Vec<UdpSocket> = (0..8)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for round in 0..25 {
            // 8 clients at once, so that the loops work side by side.
            let mut sent = Vec::new();
            for (c, s) in socks.iter().enumerate() {
                let id = (round * 8 + c) as u16;
                let q = query(id, &format!("n{id}.loops.example"), RType::A, None);
                expected[steer(&q, n as u32).unwrap() as usize] += 1;
                s.send_to(&q, loops.addr).unwrap();
                sent.push(q);
            }
            for (s, q) in socks.iter().zip(&sent) {
                s.set_read_timeout(Some(WAIT)).unwrap();
                let mut buf = [0u8; 512];
                let len = s.recv(&mut buf).expect("an answer");
                let m = parse_message(&buf[..len]).unwrap();
                assert_eq!(m.header.id, id_of(q));
                assert_eq!(m.answers, a_records(q, 1), "the answer for this name");
            }
        }
        let stats = loops.stop();
        let got: Vec<u64> = stats.iter().map(|s| s.queries).collect();
        assert_eq!(got, expected, "{n} loops: queries by loop");
        assert!(got.iter().all(|&q| q > 0), "every loop worked: {got:?}");
        let forwarded: Vec<u64> = stats.iter().map(|s| s.forwarded).collect();
        assert_eq!(forwarded, expected, "each loop sent its own upstream");
        assert_eq!(up.udp_queries.load(Ordering::SeqCst), 200);
    }
}

/// Identical questions in any case, from many sockets and over UDP and TCP, while
/// the upstream is slow: one upstream query in the whole process.
#[test]
fn coalescing_is_exact_across_loops() {
    let up = MockUpstream::delayed(Duration::from_millis(400));
    let loops = Loops::start(2, up.addr, |c| c.cache.max_entries = 100);
    // Owned by loop 1, so that the TCP queries (read by loop 0) cross over.
    let name = name_owned_by("hot", 1, 2);
    let socks: Vec<UdpSocket> = (0..60)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (k, s) in socks.iter().enumerate() {
        let q = query(k as u16, &mixed_case(&name, k * 13), RType::A, None);
        s.send_to(&q, loops.addr).unwrap();
    }
    let tcp: Vec<TcpStream> = (0..10)
        .map(|k| {
            let mut s = TcpStream::connect(loops.addr).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            let q = query(1000 + k, &mixed_case(&name, k as usize * 5), RType::A, None);
            write_frame(&mut s, &q);
            s
        })
        .collect();
    for (k, s) in socks.iter().enumerate() {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 512];
        let len = s.recv(&mut buf).expect("every UDP waiter answered");
        let m = parse_message(&buf[..len]).unwrap();
        assert_eq!((m.header.id, m.answers.len()), (k as u16, 1));
    }
    for (k, mut s) in tcp.into_iter().enumerate() {
        let a = read_frame(&mut s).expect("every TCP waiter answered");
        let m = parse_message(&a).unwrap();
        assert_eq!((m.header.id, m.answers.len()), (1000 + k as u16, 1));
    }
    let upstream = up.udp_queries.load(Ordering::SeqCst) + up.tcp_queries.load(Ordering::SeqCst);
    assert_eq!(upstream, 1, "one upstream query (short names go over TCP)");
    let stats = loops.stop();
    assert_eq!(stats[0].queries, 0, "loop 0 handed every TCP query over");
    assert_eq!((stats[1].queries, stats[1].coalesced), (70, 69));
}

/// A query of two questions, the second owned by the other loop, while that loop has
/// the second question in flight: still one upstream query for it in the whole process
/// (coalescing exact across loops; the answer is never cached by a loop that does not
/// own the name).
#[test]
fn a_query_of_two_questions_does_not_ask_the_other_loops_name_again() {
    let asked = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let seen = Arc::clone(&asked);
    let up = MockUpstream::start(move |q, _| {
        let m = parse_message(q).unwrap();
        let name = m.questions[0].qname.to_lowercase_string();
        *seen.lock().unwrap().entry(name).or_default() += 1;
        let a = answer(q, &a_records(q, 1));
        vec![Action::Delay(Duration::from_millis(400), a)]
    });
    let loops = Loops::start(2, up.addr, |c| c.cache.max_entries = 100);
    let first = name_owned_by("firstname", 0, 2);
    let second = name_owned_by("secondname", 1, 2);
    let times = |name: &str| {
        let key = format!("{name}.");
        asked.lock().unwrap().get(&key).copied().unwrap_or(0)
    };
    // The second name alone: its owner, loop 1, asks the upstream.
    let alone = UdpSocket::bind("127.0.0.1:0").unwrap();
    alone.set_read_timeout(Some(WAIT)).unwrap();
    let q = query(1, &second, RType::A, None);
    alone.send_to(&q, loops.addr).unwrap();
    assert!(wait_until(WAIT, || times(&second) == 1), "asked by loop 1");
    // Both names in one query while the second is in flight: the kernel hands it to
    // loop 0, the owner of the first.
    let (q1, q2) = (
        query(2, &first, RType::A, None),
        query(2, &second, RType::A, None),
    );
    let mut both = parse_message(&q1).unwrap();
    both.questions
        .push(parse_message(&q2).unwrap().questions[0].clone());
    let answer = udp_ask(loops.addr, &both.to_vec()).expect("an answer to the two questions");
    assert_eq!(id_of(&answer), 2);
    let mut buf = [0u8; 512];
    let n = alone.recv(&mut buf).expect("the second name answered");
    assert_eq!(parse_message(&buf[..n]).unwrap().answers.len(), 1);
    assert_eq!(
        times(&second),
        1,
        "one upstream query per question in the whole process: loop 0 asked the \
         second name again"
    );
}

/// An answer cached by the owner loop serves the name asked again through any
/// socket, over UDP or TCP, in any case.
#[test]
fn the_cache_serves_a_name_whichever_way_it_comes() {
    let up = MockUpstream::echo();
    let loops = Loops::start(2, up.addr, |c| c.cache.max_entries = 100);
    for owner in 0..2 {
        let name = name_owned_by("cached", owner, 2);
        let first = udp_ask(loops.addr, &query(1, &name, RType::A, None)).unwrap();
        let q = query(2, &name.to_ascii_uppercase(), RType::A, None);
        let again = udp_ask(loops.addr, &q).unwrap();
        let q = query(3, &mixed_case(&name, 9), RType::A, None);
        let by_tcp = tcp_ask(loops.addr, &q).unwrap();
        for a in [&first, &again, &by_tcp] {
            assert_eq!(parse_message(a).unwrap().answers.len(), 1);
        }
    }
    let upstream = up.udp_queries.load(Ordering::SeqCst) + up.tcp_queries.load(Ordering::SeqCst);
    assert_eq!(upstream, 2, "one miss per name");
    let stats = loops.stop();
    let hits: Vec<u64> = stats.iter().map(|s| s.cache_hits).collect();
    assert_eq!(hits, [2, 2], "both hits of each name in its owner loop");
}

/// TCP queries owned by the other loop are handed over and their answers come back on
/// the same connection, mixed with the reading loop's own answers.
#[test]
fn tcp_queries_cross_loops_and_come_back() {
    let up = MockUpstream::echo();
    let loops = Loops::start(2, up.addr, |_| {});
    let mut s = TcpStream::connect(loops.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut want = std::collections::HashMap::new();
    let mut expected = [0u64; 2];
    for k in 0..20u16 {
        let q = query(k, &format!("tcp{k}.example"), RType::A, None);
        expected[steer(&q, 2).unwrap() as usize] += 1;
        write_frame(&mut s, &q);
        want.insert(k, q);
    }
    for _ in 0..20 {
        let a = read_frame(&mut s).expect("an answer for each query");
        let m = parse_message(&a).unwrap();
        let q = want
            .remove(&m.header.id)
            .expect("an answer to a query asked once");
        assert_eq!(m.answers, a_records(&q, 1));
    }
    let stats = loops.stop();
    let got: Vec<u64> = stats.iter().map(|s| s.queries).collect();
    assert_eq!(got, expected, "each query answered by its owner");
    assert!(got.iter().all(|&q| q > 0), "{got:?}");
}

/// Clients pipelining TCP queries that loop 1 owns and answers at once (OPCODE STATUS:
/// NOTIMP, no upstream), so that answers come back to loop 0 faster than it takes them
/// from its channel: every query still gets its answer (NOTIMP, or SERVFAIL for a
/// handoff refused), none is lost on its way back, and each connection, idle once
/// answered, is closed after --tcp-idle.
#[test]
fn answers_handed_back_are_never_lost() {
    const CONNS: usize = 32;
    const PER_CONN: usize = 2000;
    let up = MockUpstream::echo();
    let loops = Loops::start(2, up.addr, |c| {
        c.tcp_idle = Duration::from_millis(1000);
        c.policy.max_tcp_per_client = CONNS;
    });
    let name = name_owned_by("status", 1, 2);
    let addr = loops.addr;
    let clients: Vec<JoinHandle<(usize, bool)>> = (0..CONNS)
        .map(|_| {
            let name = name.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                let mut w = s.try_clone().unwrap();
                let writer = std::thread::spawn(move || {
                    let mut frames = Vec::new();
                    for k in 0..PER_CONN {
                        let mut q = query(k as u16, &name, RType::A, None);
                        q[2] |= 2 << 3; // OPCODE 2 (STATUS)
                        frames.extend_from_slice(&(q.len() as u16).to_be_bytes());
                        frames.extend_from_slice(&q);
                    }
                    w.write_all(&frames).unwrap();
                });
                let mut answered = 0;
                while answered < PER_CONN && read_frame(&mut s).is_some() {
                    answered += 1;
                }
                writer.join().unwrap();
                // Idle from here: the server closes it after --tcp-idle.
                s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
                let closed = match s.read(&mut [0u8; 1]) {
                    Ok(n) => n == 0,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                };
                (answered, closed)
            })
        })
        .collect();
    let results: Vec<(usize, bool)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let answered: usize = results.iter().map(|r| r.0).sum();
    let open = results.iter().filter(|r| !r.1).count();
    assert_eq!(
        (answered, open),
        (CONNS * PER_CONN, 0),
        "answers lost on their way back to loop 0 ({} of {}), and connections left \
         open past --tcp-idle ({open} of {CONNS}): each waits for an answer forever",
        CONNS * PER_CONN - answered,
        CONNS * PER_CONN
    );
}

/// `--metrics` (served by loop 0) shows the sum over the loops.
#[test]
fn metrics_are_the_sum_over_the_loops() {
    let up = MockUpstream::echo();
    let loops = Loops::start(2, up.addr, |c| {
        c.cache.max_entries = 100;
        c.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    let mut owners = [0; 2];
    for i in 0..20 {
        let q = query(i, &format!("m{i}.example"), RType::A, None);
        owners[steer(&q, 2).unwrap() as usize] += 1;
        assert!(udp_ask(loops.addr, &q).is_some());
    }
    assert!(owners.iter().all(|&n| n > 0), "{owners:?}");
    for i in 0..2 {
        let q = query(100 + i, &format!("t{i}.example"), RType::A, None);
        assert!(tcp_ask(loops.addr, &q).is_some());
    }
    // Each loop publishes its counters every 100 ms.
    std::thread::sleep(Duration::from_millis(350));
    let mut s = TcpStream::connect(loops.metrics.unwrap()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: dnsfwd\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let value = |metric: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(metric)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {metric} in {text}"))
    };
    assert_eq!(value("dnsfwd_queries_total{transport=\"udp\"}"), 20.0);
    assert_eq!(value("dnsfwd_queries_total{transport=\"tcp\"}"), 2.0);
    assert_eq!(value("dnsfwd_forwarded_total"), 22.0);
    assert_eq!(value("dnsfwd_cache_entries"), 22.0);
    let stats = loops.stop();
    let by_loop: Vec<u64> = stats.iter().map(|s| s.queries).collect();
    assert_eq!(by_loop.iter().sum::<u64>(), 22);
}

/// `--rate-limit` holds for the process, not per loop: a client asking names owned by
/// every loop gets its burst once in all. (Per-loop tables would let 2 × 10 through:
/// `policy::tests::loops_sharing_buckets_share_the_limits` is the control.)
#[test]
fn the_rate_limit_holds_across_loops() {
    use dnsfwd::policy::RateLimit;
    let up = MockUpstream::echo();
    let loops = Loops::start(2, up.addr, |c| {
        c.policy.rate_limit = Some(RateLimit {
            qps: 1,
            burst: 10,
            slip: 0,
        });
    });
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut owners = [0; 2];
    for i in 0..40u16 {
        let q = query(i, &format!("r{i}.example"), RType::A, None);
        owners[steer(&q, 2).unwrap() as usize] += 1;
        s.send_to(&q, loops.addr).unwrap();
    }
    // More than the burst to each loop: if both loops let none through beyond it,
    // both must have limited some.
    assert!(
        owners.iter().all(|&n| n > 11),
        "both loops asked: {owners:?}"
    );
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 512];
    let mut answers = 0u64;
    while s.recv(&mut buf).is_ok() {
        answers += 1;
    }
    let stats = loops.stop();
    let limited: u64 = stats.iter().map(|s| s.rate_limited).sum();
    // The burst, plus at most one token that came back while the test ran.
    assert!((10..=11).contains(&answers), "{answers} answered");
    assert_eq!(limited, 40 - answers);
    assert!(
        stats.iter().all(|s| s.rate_limited > 0),
        "both loops limited"
    );
}
