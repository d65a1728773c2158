//! Safe to expose on a network: the ACL, the per-client rate limit, the TCP slot caps,
//! slow and idle TCP clients, and loop detection, over real loopback sockets. Clients
//! bind 127.0.0.2, 127.0.0.3 … as distinct sources (Linux routes all of 127/8 to lo).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::run_bounded;
use common::*;
use dnsfwd::config::Config;
use dnsfwd::policy::{parse_cidr, RateLimit};
use dnsfwd::server::Server;
use dnsfwd::wire::{parse_message, EdnsOption, RType, Rcode};

fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn udp_from(n: u8) -> UdpSocket {
    let s = UdpSocket::bind((lo(n), 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// A TCP connection from 127.0.0.n.
fn tcp_from(n: u8, server: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::new(lo(n), 0).into())?;
    s.connect_timeout(&server.into(), WAIT)?;
    Ok(s.into())
}

/// Whether the server closed (or reset) the connection within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 512];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn default_acl_answers_loopback() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start(&[up.addr]);
    let q = query(1, "lo.example", RType::A, Some(1232));
    let r = udp_ask(fwd.addr, &q).expect("127.0.0.1 is answered by default");
    assert_eq!(parse_message(&r).unwrap().rcode(), Rcode::NOERROR);
    let stats = fwd.stop();
    assert_eq!((stats.refused_acl, stats.dropped_acl), (0, 0));
}

#[test]
fn allow_list_replaces_the_default_and_refuses_with_ede_18() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.policy.allow = vec![parse_cidr("127.0.0.2/32").unwrap()];
    });
    let ask = |n: u8, id: u16, edns: Option<u16>| {
        let s = udp_from(n);
        s.send_to(&query(id, "acl.example", RType::A, edns), fwd.addr)
            .unwrap();
        let mut buf = [0u8; 1500];
        let len = s.recv(&mut buf).expect("an answer");
        buf[..len].to_vec()
    };
    let ok = ask(2, 1, Some(1232));
    let m = parse_message(&ok).unwrap();
    assert_eq!(
        (m.header.id, m.rcode(), m.answers.len()),
        (1, Rcode::NOERROR, 1)
    );

    for n in [3, 1] {
        let r = ask(n, 2, Some(1232));
        let m = parse_message(&r).unwrap();
        assert_eq!((m.header.id, m.rcode()), (2, Rcode::REFUSED), "127.0.0.{n}");
        assert_eq!(m.questions[0].qname.to_string(), "acl.example.");
        let ede = m.edns().expect("OPT echoed").options;
        assert_eq!(
            ede,
            [EdnsOption {
                code: EdnsOption::EDE,
                data: &[0, 18]
            }],
            "EDE 18 Prohibited"
        );
    }
    let plain = ask(3, 3, None);
    let plain = parse_message(&plain).unwrap();
    assert_eq!(plain.rcode(), Rcode::REFUSED);
    assert!(
        plain.additional.is_empty(),
        "no OPT to a client that sent none"
    );

    // Over TCP: 127.0.0.3 is closed at once, 127.0.0.2 answered.
    // (The reset may already come during the connect.)
    if let Ok(mut refused) = tcp_from(3, fwd.addr) {
        let _ = refused.write_all(&[0, 12]);
        assert!(closed_within(&mut refused, WAIT), "closed at accept");
    }
    let mut s = tcp_from(2, fwd.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write_frame(&mut s, &query(4, "tcp.example", RType::A, None));
    assert_eq!(read_frame(&mut s).map(|r| id_of(&r)), Some(4));

    let stats = fwd.stop();
    assert_eq!(stats.refused_acl, 3);
    assert_eq!(stats.tcp_refused, 1, "{stats}");
    assert_eq!(
        up.udp_queries.load(Ordering::SeqCst),
        2,
        "refused never forwarded"
    );
}

#[test]
fn refusals_are_limited_to_a_global_rate() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.policy.allow = vec![parse_cidr("127.0.0.2/32").unwrap()];
        c.policy.refusals_per_sec = 100;
    });
    // 2000 queries from three refused sources, about 10,000 a second.
    let socks: Vec<UdpSocket> = [3, 4, 5].map(udp_from).into();
    let started = Instant::now();
    for i in 0..2000u16 {
        let s = &socks[usize::from(i) % 3];
        s.send_to(&query(i, "flood.example", RType::A, None), fwd.addr)
            .unwrap();
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let elapsed = started.elapsed();
    let mut got = 0;
    let mut buf = [0u8; 512];
    for s in &socks {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        while s.recv(&mut buf).is_ok() {
            got += 1;
        }
    }
    let stats = fwd.stop();
    // The burst, the rate over the sending time, and a little for the last reads.
    let most = 100 + (elapsed.as_secs_f64() * 100.0).ceil() as u64 + 5;
    eprintln!(
        "refusals: {got} answered of 2000 in {elapsed:?} (at most {most}); {} dropped",
        stats.dropped_acl
    );
    assert!(got >= 100 && got as u64 <= most, "{got} refusals");
    assert_eq!(stats.refused_acl, got as u64, "{stats}");
    // All 2000 unless the kernel dropped some on the way in.
    assert!(stats.refused_acl + stats.dropped_acl >= 1800, "{stats}");
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 0);
}

/// Sends `rate` queries a second from `sock` for `secs`, paced by the clock.
fn paced(sock: &UdpSocket, to: SocketAddr, rate: u32, secs: f64, name: &str) -> u32 {
    let started = Instant::now();
    let total = (f64::from(rate) * secs) as u32;
    let mut sent = 0;
    while sent < total {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u32;
        while sent < due.min(total) {
            let q = query(
                sent as u16,
                &format!("{name}{sent}.example"),
                RType::A,
                None,
            );
            let _ = sock.send_to(&q, to);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    sent
}

/// Counts answers on `sock` until `stop` and a quiet read: (answers, TC=1 answers).
fn count_answers(sock: UdpSocket, stop: Arc<AtomicBool>) -> (u32, u32) {
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let (mut full, mut tc) = (0, 0);
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => match parse_message(&buf[..n]) {
                Ok(m) if m.header.tc => tc += 1,
                Ok(_) => full += 1,
                Err(_) => {}
            },
            Err(_) if stop.load(Ordering::SeqCst) => return (full, tc),
            Err(_) => {}
        }
    }
}

#[test]
fn rate_limit_holds_a_client_to_its_rate_and_spares_another() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.policy.rate_limit = Some(RateLimit {
            qps: 50,
            burst: 100,
            slip: 2,
        });
    });
    let (heavy, light) = (udp_from(2), udp_from(3));
    let stop = Arc::new(AtomicBool::new(false));
    let heavy_rx = {
        let (s, stop) = (heavy.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || count_answers(s, stop))
    };
    let light_rx = {
        let (s, stop) = (light.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || count_answers(s, stop))
    };
    let secs = 3.0;
    let addr = fwd.addr;
    let light_tx = std::thread::spawn(move || paced(&light, addr, 10, secs, "light"));
    let started = Instant::now();
    let sent = paced(&heavy, addr, 1000, secs, "heavy");
    let elapsed = started.elapsed().as_secs_f64();
    let light_sent = light_tx.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    let (answered, slipped) = heavy_rx.join().unwrap();
    let (light_answered, light_tc) = light_rx.join().unwrap();
    let stats = fwd.stop();
    let rate = (f64::from(answered) - 100.0) / elapsed;
    eprintln!(
        "rate limit 50/s burst 100: heavy sent {sent} in {elapsed:.2} s, {answered} answered \
         ({rate:.1}/s after the burst), {slipped} TC; light {light_answered}/{light_sent}; {stats}"
    );
    assert!((35.0..=80.0).contains(&rate), "{rate:.1} q/s got through");
    // Half of what was over the rate comes back TC=1 (slip 2).
    let over = f64::from(sent - answered);
    assert!(
        (f64::from(slipped) - over / 2.0).abs() <= over * 0.1 + 5.0,
        "{slipped} slips of {over} over the rate"
    );
    assert_eq!(
        (light_answered, light_tc),
        (light_sent, 0),
        "the other client"
    );
    // Every query over the rate was counted (a datagram lost on loopback aside).
    let limited = u64::from(sent - answered);
    assert!(stats.rate_limited <= limited && stats.rate_limited + 10 >= limited);
    assert_eq!(u64::from(slipped), stats.slipped);
}

/// Keeps up to `live` connections from 127.0.0.2 open, each holding an unanswered
/// query, reconnecting as the server closes or refuses them, until `stop`.
fn tcp_flood(server: SocketAddr, live: usize, stop: Arc<AtomicBool>, opened: Arc<AtomicUsize>) {
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut k = 0u16;
    while !stop.load(Ordering::SeqCst) {
        // Drop what the server closed or reset, then top up (at most 10 per 10 ms).
        conns.retain_mut(|s| {
            let mut b = [0u8; 64];
            s.set_nonblocking(true).unwrap();
            match s.read(&mut b) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == ErrorKind::WouldBlock,
            }
        });
        let mut burst = 0;
        while conns.len() < live && burst < 10 && !stop.load(Ordering::SeqCst) {
            burst += 1;
            let Ok(mut s) = tcp_from(2, server) else {
                break;
            };
            k = k.wrapping_add(1);
            let q = query(k, &format!("hold{k}.example"), RType::A, None);
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            if s.write_all(&framed).is_ok() {
                conns.push(s);
                opened.fetch_add(1, Ordering::SeqCst);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// 300 connections from 127.0.0.2 hold unanswered queries; 127.0.0.3 asks 100 times
/// over new connections. Returns how many of the 100 were answered.
fn tcp_fairness(tweak: impl FnOnce(&mut Config)) -> (usize, dnsfwd::stats::Stats) {
    // "hold" queries are never answered; the others are.
    let up = MockUpstream::start(|q, _| {
        let m = parse_message(q).unwrap();
        if m.questions[0]
            .qname
            .to_lowercase_string()
            .starts_with("hold")
        {
            vec![]
        } else {
            vec![Action::Answer(answer(q, &a_records(q, 1)))]
        }
    });
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.timeout = Duration::from_secs(20);
        c.deadline = Duration::from_secs(20);
        tweak(c);
    });
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (stop, opened, addr) = (stop.clone(), opened.clone(), fwd.addr);
        std::thread::spawn(move || tcp_flood(addr, 300, stop, opened))
    };
    assert!(wait_until(Duration::from_secs(5), || opened
        .load(Ordering::SeqCst)
        >= 300));
    std::thread::sleep(Duration::from_millis(200));
    let mut answered = 0;
    for n in 0..100u16 {
        let Ok(mut s) = tcp_from(3, fwd.addr) else {
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let q = query(n, &format!("probe{n}.example"), RType::A, None);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        if s.write_all(&framed).is_ok() && read_frame(&mut s).map(|r| id_of(&r)) == Some(n) {
            answered += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    flood.join().unwrap();
    let opened = opened.load(Ordering::SeqCst);
    let stats = fwd.stop();
    eprintln!("TCP fairness: {answered}/100 answered; flood opened {opened}; {stats}");
    (answered, stats)
}

#[test]
fn a_tcp_flood_from_one_address_does_not_lock_out_another() {
    // No per-address cap: the global cap (256) is reached and the flood must give way.
    let (answered, stats) = tcp_fairness(|c| c.policy.max_tcp_per_client = 65536);
    assert!(answered >= 95, "{answered}/100 answered");
    assert!(stats.tcp_evicted >= 1, "{stats}");
}

#[test]
fn the_per_address_cap_keeps_a_flood_to_16_connections() {
    let (answered, stats) = tcp_fairness(|_| {});
    assert!(answered >= 95, "{answered}/100 answered");
    assert!(stats.tcp_capped >= 284, "{stats}");
}

#[test]
fn idle_churn_does_not_evict_an_established_connection_of_another_address() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| {
        c.max_tcp_clients = 8;
        c.policy.max_tcp_per_client = 65536;
    });
    let mut legit = tcp_from(3, fwd.addr).unwrap();
    legit.set_read_timeout(Some(WAIT)).unwrap();
    write_frame(&mut legit, &query(1, "legit.example", RType::A, None));
    assert_eq!(read_frame(&mut legit).map(|r| id_of(&r)), Some(1));
    // 50 connections from 127.0.0.2, each asking once and then idle, kept open: the
    // cap (8) is passed again and again; the legit connection is idle the longest.
    let mut churn = Vec::new();
    for n in 0..50u16 {
        let mut s = tcp_from(2, fwd.addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        write_frame(&mut s, &query(n, "churn.example", RType::A, None));
        let _ = read_frame(&mut s);
        churn.push(s);
    }
    write_frame(&mut legit, &query(2, "legit.example", RType::A, None));
    assert_eq!(
        read_frame(&mut legit).map(|r| id_of(&r)),
        Some(2),
        "the established connection survived"
    );
    let stats = fwd.stop();
    assert!(stats.tcp_evicted >= 40, "{stats}");
}

#[test]
fn slowloris_is_closed_after_the_idle_time() {
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| c.tcp_idle = Duration::from_secs(2));
    let mut s = tcp_from(2, fwd.addr).unwrap();
    // A 64-octet message announced, then one octet a second.
    s.write_all(&[0, 64]).unwrap();
    let started = Instant::now();
    let mut closed_at = None;
    for _ in 0..8 {
        if closed_within(&mut s, Duration::from_secs(1)) {
            closed_at = Some(started.elapsed());
            break;
        }
        if s.write_all(&[0]).is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
    }
    let t = closed_at.expect("a byte a second must not keep a connection open");
    eprintln!("slowloris closed after {t:?} (--tcp-idle 2 s)");
    assert!(t >= Duration::from_millis(1800) && t < Duration::from_millis(3500));
    assert_eq!(fwd.stop().tcp_slow, 1);
}

#[test]
fn a_message_dribbled_past_the_frame_time_is_cut_off_even_with_a_query_in_flight() {
    // The first query is never answered (so the connection is not idle); the next one
    // arrives an octet every 400 ms: closed 3 s after its first octet, well before
    // --tcp-idle (10 s) or the query's deadline (8 s).
    let dark = MockUpstream::start(|_, _| vec![]);
    let fwd = Forwarder::start_with(&[dark.addr], |c| {
        c.timeout = Duration::from_secs(8);
        c.deadline = Duration::from_secs(8);
    });
    let mut s = tcp_from(2, fwd.addr).unwrap();
    write_frame(&mut s, &query(1, "dark.example", RType::A, None));
    s.write_all(&[0, 200]).unwrap();
    let started = Instant::now();
    let mut closed_at = None;
    for _ in 0..15 {
        if closed_within(&mut s, Duration::from_millis(400)) || s.write_all(&[0]).is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
    }
    let t = closed_at.expect("closed");
    eprintln!("dribbled message cut off after {t:?}");
    assert!(t >= Duration::from_millis(2800) && t < Duration::from_millis(4500));
    assert_eq!(fwd.stop().tcp_slow, 1);
}

#[test]
fn idle_is_measured_from_the_last_whole_query() {
    // Whole queries every 600 ms keep a connection open past --tcp-idle (1 s).
    let up = MockUpstream::echo();
    let fwd = Forwarder::start_with(&[up.addr], |c| c.tcp_idle = Duration::from_secs(1));
    let mut s = tcp_from(2, fwd.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    for n in 0..4u16 {
        write_frame(&mut s, &query(n, "busy.example", RType::A, None));
        assert_eq!(read_frame(&mut s).map(|r| id_of(&r)), Some(n));
        std::thread::sleep(Duration::from_millis(600));
    }
    // Then silence: closed about a second later.
    assert!(closed_within(&mut s, Duration::from_secs(3)));
}

#[test]
fn an_upstream_that_is_our_own_listen_address_is_refused() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let me = SocketAddr::from(([127, 0, 0, 1], port));
    // The library: Server::bind checks the addresses it bound.
    let cfg = Config {
        listen: vec![me],
        upstreams: vec!["192.0.2.1:53".parse().unwrap(), me],
        ..Config::default()
    };
    let e = Server::bind(cfg).err().expect("refused").to_string();
    assert!(e.contains(&me.to_string()) && e.contains("loop"), "{e}");
    // The binary: one line naming both, exit status 2, before binding anything. (The
    // wildcard cases, 0.0.0.0 with a loopback upstream, are unit tests of the config:
    // they are not bound here, loopback only.)
    let out = run_bounded(&["--listen", &me.to_string(), "--upstream", &me.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(err.matches(&me.to_string()).count(), 2, "names both: {err}");
}

#[test]
fn exposure_flags_are_explained_and_checked() {
    let help = run_bounded(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--allow",
        "--rate-limit",
        "--rate-limit-burst",
        "--rate-limit-slip",
        "--max-tcp-per-client",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    for (args, says) in [
        (&["--allow", "10.0.0.1/8"][..], "10.0.0.0/8"),
        (&["--allow", "10.0.0.0/40"], "0..=32"),
        (&["--allow", "lan"], "CIDR"),
        (&["--rate-limit", "0"], "--rate-limit"),
        (&["--rate-limit-burst", "10"], "without --rate-limit"),
        (&["--max-tcp-per-client", "0"], "--max-tcp-per-client"),
    ] {
        let mut all = args.to_vec();
        all.extend(["--upstream", "192.0.2.1", "--listen", "127.0.0.1:0"]);
        let out = run_bounded(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
