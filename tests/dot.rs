//! DNS over TLS (RFC 7858), both ways, over loopback:
//! - dnsfwd → a real DoT server (unbound, `tls-port`, with a certificate from a
//!   throwaway CA made here with rcgen): answers over TLS, many queries pipelined on
//!   one connection, a name mismatch failing (SERVFAIL, nothing sent in clear), and a
//!   server restart followed by a reconnect;
//! - a TLS client (rustls, blocking) → dnsfwd's `--listen-tls`: answers, padding of
//!   answers to padded queries, and a plaintext client on the TLS port that neither
//!   hangs the loop nor keeps its slot.
//!
//! The unbound tests print SKIPPED and pass when unbound is not installed (CI installs
//! it: .ci/run). Every wait is bounded; unbound is killed when its guard drops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::dot::{make_pki, TempDir};
use common::{id_of, query, read_frame, write_frame, MockUpstream};
use dnsfwd::config::{Config, TlsConfig};
use dnsfwd::server::{Server, StopHandle};
use dnsfwd::stats::Stats;
use dnsfwd::wire::{parse_message, RData, RType, Rcode};

const WAIT: Duration = Duration::from_secs(5);

fn unbound_bin() -> Option<PathBuf> {
    [
        "/usr/sbin/unbound",
        "/usr/bin/unbound",
        "/usr/local/sbin/unbound",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Names n0.test … n{NAMES-1}.test, each with one A record 10.0.x.y.
const NAMES: usize = 300;

fn addr_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, (i / 256) as u8, (i % 256) as u8)
}

/// unbound serving DNS over TLS on 127.0.0.1:`port` from local data only (it needs
/// no upstream of its own), in the foreground, killed on drop.
struct Unbound {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Unbound {
    /// unbound on a free port. A port can still be taken between the look and
    /// unbound's bind; then unbound exits at once and another port is tried.
    fn start_anywhere(bin: &Path, dir: &TempDir) -> Unbound {
        for _ in 0..4 {
            if let Some(u) = Unbound::try_start(bin, dir, common::free_port()) {
                return u;
            }
        }
        Unbound::start(bin, dir, common::free_port())
    }

    /// unbound on `port` (tried three times, as another test's socket on it is
    /// short-lived), or a panic with what it printed.
    fn start(bin: &Path, dir: &TempDir, port: u16) -> Unbound {
        for _ in 0..3 {
            if let Some(u) = Unbound::try_start(bin, dir, port) {
                return u;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "unbound did not start on port {port}: {}{}",
            std::fs::read_to_string(dir.path("unbound.err")).unwrap_or_default(),
            std::fs::read_to_string(dir.path("unbound.log")).unwrap_or_default(),
        )
    }

    /// unbound on `port`, or None when it exited or did not accept within WAIT.
    fn try_start(bin: &Path, dir: &TempDir, port: u16) -> Option<Unbound> {
        let mut conf = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  tls-port: {port}\n  \
             tls-service-key: \"{key}\"\n  tls-service-pem: \"{cert}\"\n  \
             do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  \
             pidfile: \"\"\n  use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  \
             log-queries: yes\n  verbosity: 1\n  num-threads: 1\n  do-ip6: no\n  \
             module-config: \"iterator\"\n  access-control: 127.0.0.0/8 allow\n  \
             incoming-num-tcp: 64\n  local-zone: \"test.\" static\n",
            key = dir.path("key.pem").display(),
            cert = dir.path("cert.pem").display(),
            d = dir.0.display(),
        );
        for i in 0..NAMES {
            conf.push_str(&format!(
                "  local-data: \"n{i}.test. 300 IN A {}\"\n",
                addr_of(i)
            ));
        }
        std::fs::write(dir.path("unbound.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(dir.path("unbound.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Errors before its log file is open (a port it cannot bind) go here.
            .stderr(std::fs::File::create(dir.path("unbound.err")).unwrap())
            .spawn()
            .unwrap();
        let mut u = Unbound {
            child,
            port,
            dir: dir.0.clone(),
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let up = common::wait_until(WAIT, || {
            matches!(u.child.try_wait(), Ok(Some(_)))
                || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        let exited = matches!(u.child.try_wait(), Ok(Some(_)));
        (up && !exited).then_some(u)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("unbound.log")).unwrap_or_default()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsfwd in a thread, with its plain and TLS addresses.
struct Fwd {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    stop: StopHandle,
    thread: Option<JoinHandle<Stats>>,
}

impl Fwd {
    fn start(upstreams: &[SocketAddr], tweak: impl FnOnce(&mut Config)) -> Fwd {
        let _ = env_logger::builder().is_test(true).try_init();
        let mut cfg = Config {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            upstreams: upstreams.to_vec(),
            timeout: Duration::from_millis(500),
            deadline: Duration::from_millis(1500),
            ..Config::default()
        };
        cfg.cache.max_entries = 0;
        tweak(&mut cfg);
        Fwd::run(Server::bind(cfg).unwrap())
    }

    /// Runs `server` in a thread.
    fn run(server: Server) -> Fwd {
        let addr = server.local_addrs()[0];
        let tls_addr = server.tls_addrs().first().copied();
        let stop = server.stop_handle();
        let thread = Some(std::thread::spawn(move || server.run().unwrap()));
        Fwd {
            addr,
            tls_addr,
            stop,
            thread,
        }
    }

    fn stop(mut self) -> Stats {
        self.stop.stop();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Fwd {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.stop();
            let _ = t.join();
        }
    }
}

/// Settings for one `tls://127.0.0.1:port#name` upstream trusting the test CA only.
fn tls_upstream(dir: &TempDir, port: u16, name: &str) -> (SocketAddr, TlsConfig) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let tls = TlsConfig {
        upstreams: vec![(addr, name.to_string())],
        ca: Some(dir.path("ca.pem")),
        ..TlsConfig::default()
    };
    (addr, tls)
}

/// The A address in an answer, if it has exactly one.
fn the_a(r: &[u8]) -> Option<Ipv4Addr> {
    let m = parse_message(r).ok()?;
    match m.answers.as_slice() {
        [rr] => match rr.rdata {
            RData::A(a) => Some(a),
            _ => None,
        },
        _ => None,
    }
}

macro_rules! need_unbound {
    () => {
        match unbound_bin() {
            Some(b) => b,
            None => {
                eprintln!("SKIPPED: unbound is not installed (apt-get install unbound)");
                return;
            }
        }
    };
}

#[test]
fn answers_over_tls_with_queries_pipelined_on_one_connection() {
    let bin = need_unbound!();
    let dir = TempDir::new("pipe");
    make_pki(&dir);
    let unbound = Unbound::start_anywhere(&bin, &dir);
    let (up, tls) = tls_upstream(&dir, unbound.port, "dns.test");
    let fwd = Fwd::start(&[up], |c| c.tls = tls);
    // One client connection, 90 queries written before any answer is read: they go
    // upstream pipelined on one TLS connection (at most 100 outstanding on one).
    let mut s = TcpStream::connect(fwd.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let n = 90;
    for i in 0..n {
        write_frame(
            &mut s,
            &query(i as u16, &format!("n{i}.test"), RType::A, Some(1232)),
        );
    }
    let mut seen = vec![false; n];
    for _ in 0..n {
        let r = read_frame(&mut s).expect("an answer");
        let i = usize::from(id_of(&r));
        assert_eq!(the_a(&r), Some(addr_of(i)), "answer to n{i}.test");
        assert!(!std::mem::replace(&mut seen[i], true), "one answer each");
    }
    // And a name unbound does not have: its NXDOMAIN comes through as it is.
    let r = common::udp_ask(fwd.addr, &query(7, "missing.test", RType::A, None)).unwrap();
    assert_eq!(parse_message(&r).unwrap().header.rcode, Rcode::NXDOMAIN);
    let stats = fwd.stop();
    assert_eq!(stats.tls_upstream_handshakes, 1, "{stats}");
    assert_eq!(stats.tls_upstream_failures, 0, "{stats}");
    assert_eq!(
        stats.tcp_queries,
        n as u64 + 1,
        "every attempt over the TLS pool"
    );
    assert_eq!(stats.servfail, 0, "{stats}");
    let log = unbound.log();
    assert!(log.contains("n0.test."), "unbound saw the queries: {log}");
}

#[test]
fn name_mismatch_fails_with_servfail_and_nothing_relayed() {
    let bin = need_unbound!();
    let dir = TempDir::new("mismatch");
    make_pki(&dir);
    let unbound = Unbound::start_anywhere(&bin, &dir);
    let (up, tls) = tls_upstream(&dir, unbound.port, "other.test");
    let fwd = Fwd::start(&[up], |c| c.tls = tls);
    let t0 = Instant::now();
    let r = common::udp_ask(fwd.addr, &query(9, "n1.test", RType::A, None)).unwrap();
    let m = parse_message(&r).unwrap();
    assert_eq!(m.header.rcode, Rcode::SERVFAIL);
    assert!(m.answers.is_empty(), "nothing relayed");
    assert!(t0.elapsed() < WAIT, "SERVFAIL by the deadline");
    let stats = fwd.stop();
    assert!(stats.tls_upstream_failures >= 1, "{stats}");
    assert_eq!(stats.tls_upstream_handshakes, 0, "{stats}");
    // Nothing reached unbound in clear (or at all): it logs every query it gets.
    let log = unbound.log();
    assert!(!log.contains("n1.test"), "the query leaked: {log}");
    // The CA is right, so only the name was wrong: the same upstream with its real
    // name works (the failure above is the name check, not a broken setup).
    let (up, tls) = tls_upstream(&dir, unbound.port, "dns.test");
    let fwd = Fwd::start(&[up], |c| c.tls = tls);
    let r = common::udp_ask(fwd.addr, &query(9, "n1.test", RType::A, None)).unwrap();
    assert_eq!(the_a(&r), Some(addr_of(1)));
}

#[test]
fn untrusted_certificate_fails_over_to_the_next_upstream() {
    let bin = need_unbound!();
    let dir = TempDir::new("failover");
    make_pki(&dir);
    let unbound = Unbound::start_anywhere(&bin, &dir);
    // Trusting another CA: the handshake fails, and the plain upstream answers.
    let other = TempDir::new("other-ca");
    make_pki(&other);
    let (up, mut tls) = tls_upstream(&dir, unbound.port, "dns.test");
    tls.ca = Some(other.path("ca.pem"));
    let mock = MockUpstream::echo();
    let fwd = Fwd::start(&[up, mock.addr], |c| c.tls = tls);
    for i in 0..5u16 {
        let r = common::udp_ask(fwd.addr, &query(i, "n2.test", RType::A, None)).unwrap();
        assert_eq!(parse_message(&r).unwrap().header.rcode, Rcode::NOERROR);
        assert_eq!(parse_message(&r).unwrap().answers.len(), 1);
    }
    let stats = fwd.stop();
    assert!(stats.tls_upstream_failures >= 1, "{stats}");
    assert!(!unbound.log().contains("n2.test"), "never in clear");
}

#[test]
fn reconnects_after_the_server_restarts() {
    let bin = need_unbound!();
    let dir = TempDir::new("restart");
    make_pki(&dir);
    let port = common::free_port();
    let unbound = Unbound::start(&bin, &dir, port);
    let (up, tls) = tls_upstream(&dir, port, "dns.test");
    let fwd = Fwd::start(&[up], |c| c.tls = tls);
    let ask = |i: usize| {
        common::udp_ask(
            fwd.addr,
            &query(i as u16, &format!("n{i}.test"), RType::A, None),
        )
        .and_then(|r| the_a(&r))
    };
    assert_eq!(ask(3), Some(addr_of(3)));
    unbound.stop();
    // Down: the query fails (SERVFAIL), it does not hang.
    let r = common::udp_ask(fwd.addr, &query(4, "n4.test", RType::A, None)).unwrap();
    assert_eq!(parse_message(&r).unwrap().header.rcode, Rcode::SERVFAIL);
    let _unbound = Unbound::start(&bin, &dir, port);
    // Back: a new connection (after the back-off) answers again.
    let back = common::wait_until(Duration::from_secs(15), || ask(5) == Some(addr_of(5)));
    assert!(back, "no answer after the restart");
    let stats = fwd.stop();
    assert!(stats.tls_upstream_handshakes >= 2, "{stats}");
}

// ---------------------------------------------------------------- the listener

/// A blocking rustls client trusting the test CA, connected to `addr` as `dns.test`.
fn tls_client(
    dir: &TempDir,
    addr: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("dns.test").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let sock = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

fn tls_ask(s: &mut impl ReadWrite, q: &[u8]) -> Vec<u8> {
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    s.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).unwrap();
    msg
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A query with an OPT record carrying a Padding option (RFC 7830) of `n` octets.
fn padded_query(id: u16, name: &str, n: usize) -> Vec<u8> {
    let mut q = query(id, name, RType::A, Some(1232));
    let rdlen_at = q.len() - 2;
    q[rdlen_at..].copy_from_slice(&((4 + n) as u16).to_be_bytes());
    q.extend_from_slice(&12u16.to_be_bytes());
    q.extend_from_slice(&(n as u16).to_be_bytes());
    q.resize(q.len() + n, 0);
    q
}

fn listener(dir: &TempDir, upstream: SocketAddr, tweak: impl FnOnce(&mut Config)) -> Fwd {
    Fwd::start(&[upstream], |c| {
        c.tls = TlsConfig {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            cert: Some(dir.path("cert.pem")),
            key: Some(dir.path("key.pem")),
            ..TlsConfig::default()
        };
        tweak(c);
    })
}

#[test]
fn tls_listener_answers_and_pads_answers_to_padded_queries() {
    let dir = TempDir::new("listen");
    make_pki(&dir);
    let mock = MockUpstream::echo();
    let fwd = listener(&dir, mock.addr, |_| {});
    let mut c = tls_client(&dir, fwd.tls_addr.unwrap());
    // Unpadded query: a plain answer.
    let r = tls_ask(&mut c, &query(1, "a.example", RType::A, Some(1232)));
    let m = parse_message(&r).unwrap();
    assert_eq!((m.header.id, m.answers.len()), (1, 1));
    assert_ne!(r.len() % 468, 0, "not padded: {}", r.len());
    // Padded queries (as a stub following RFC 8467 sends) get answers in blocks of
    // 468 octets; an unpadded query on the same connection gets a plain answer (the
    // rule is per query, RFC 8467 §4.1), also when both are pipelined.
    for id in 2..5u16 {
        let r = tls_ask(&mut c, &padded_query(id, &format!("p{id}.example"), 40));
        assert_eq!(r.len() % 468, 0, "padded to 468: {}", r.len());
        let m = parse_message(&r).unwrap();
        assert_eq!((m.header.id, m.answers.len()), (id, 1));
        let r = tls_ask(
            &mut c,
            &query(id + 10, "plain.example", RType::A, Some(1232)),
        );
        assert_ne!(
            r.len() % 468,
            0,
            "unpadded query, unpadded answer: {}",
            r.len()
        );
        assert!(r.len() < 468, "{}", r.len());
    }
    let mut both = Vec::new();
    for q in [
        padded_query(20, "pp.example", 8),
        query(21, "pq.example", RType::A, Some(1232)),
    ] {
        both.extend_from_slice(&(q.len() as u16).to_be_bytes());
        both.extend_from_slice(&q);
    }
    c.write_all(&both).unwrap();
    for _ in 0..2 {
        let mut len = [0u8; 2];
        c.read_exact(&mut len).unwrap();
        let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut r).unwrap();
        match id_of(&r) {
            20 => assert_eq!(r.len(), 468, "padded query 20"),
            21 => assert!(r.len() < 468, "unpadded query 21: {}", r.len()),
            id => panic!("unexpected answer {id}"),
        }
    }
    drop(c);
    let stats = fwd.stop();
    assert_eq!(stats.tls_client_handshakes, 1, "{stats}");
    assert_eq!(stats.tls_client_failures, 0, "{stats}");
}

#[test]
fn plaintext_client_on_the_tls_port_does_not_hang_the_loop() {
    let dir = TempDir::new("plain");
    make_pki(&dir);
    let mock = MockUpstream::echo();
    let fwd = listener(&dir, mock.addr, |c| {
        c.tcp_idle = Duration::from_millis(1000)
    });
    let tls_addr = fwd.tls_addr.unwrap();
    // A client speaking DNS in clear on the TLS port: closed at its first message.
    let mut plain = TcpStream::connect(tls_addr).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    write_frame(&mut plain, &query(1, "clear.example", RType::A, None));
    let mut buf = [0u8; 512];
    let t0 = Instant::now();
    loop {
        match plain.read(&mut buf) {
            Ok(0) | Err(_) => break, // closed (after a TLS alert, perhaps)
            Ok(_) => assert!(t0.elapsed() < WAIT, "never closed"),
        }
    }
    assert!(t0.elapsed() < WAIT, "closed at once, not by a read timeout");
    // A client that says nothing: closed after the handshake time (here --tcp-idle).
    let mut silent = TcpStream::connect(tls_addr).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    // Meanwhile the loop serves others: UDP, and TLS.
    let r = common::udp_ask(fwd.addr, &query(2, "udp.example", RType::A, None)).unwrap();
    assert_eq!(parse_message(&r).unwrap().answers.len(), 1);
    let mut c = tls_client(&dir, tls_addr);
    let r = tls_ask(&mut c, &query(3, "tls.example", RType::A, None));
    assert_eq!(parse_message(&r).unwrap().answers.len(), 1);
    let t1 = Instant::now();
    let n = silent.read(&mut buf);
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(
        t1.elapsed() < Duration::from_secs(4),
        "silent client closed in time"
    );
    drop(c);
    let stats = fwd.stop();
    assert_eq!(stats.tls_client_handshakes, 1, "{stats}");
    assert!(stats.tls_client_failures >= 2, "{stats}");
}

#[test]
fn kdig_gets_answers_from_the_tls_listener() {
    let Some(kdig) = ["/usr/bin/kdig", "/usr/local/bin/kdig"]
        .iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIPPED: kdig is not installed (apt-get install knot-dnsutils)");
        return;
    };
    let dir = TempDir::new("kdig");
    make_pki(&dir);
    let mock = MockUpstream::echo();
    let fwd = listener(&dir, mock.addr, |_| {});
    let a = fwd.tls_addr.unwrap();
    let out = Command::new(kdig)
        .args([
            "+tls",
            &format!("+tls-ca={}", dir.path("ca.pem").display()),
            "+tls-hostname=dns.test",
            "+timeout=3",
            "+retry=0",
            &format!("@{}", a.ip()),
            "-p",
            &a.port().to_string(),
            "k.example",
            "A",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("status: NOERROR"), "{text}");
    assert!(text.contains("TLS"), "{text}");
    let stats = fwd.stop();
    assert_eq!(stats.tls_client_handshakes, 1, "{stats}");
}

/// A one-connection DoT server (rustls, blocking) that reads `n` queries before
/// answering any, then answers them in reverse order; returns the query lengths.
fn reverse_server(dir: &TempDir, listener: TcpListener, n: usize) -> JoinHandle<Vec<usize>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<_> = CertificateDer::pem_file_iter(dir.path("cert.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.path("key.pem")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(cfg)).unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        let mut queries = Vec::new();
        for _ in 0..n {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut q).unwrap();
            queries.push(q);
        }
        for q in queries.iter().rev() {
            let a = common::answer(q, &common::a_records(q, 1));
            let mut framed = (a.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&a);
            s.write_all(&framed).unwrap();
        }
        s.flush().unwrap();
        // Keep the connection until the forwarder is done with it.
        let mut rest = [0u8; 64];
        let _ = s.read(&mut rest);
        queries.iter().map(Vec::len).collect()
    })
}

#[test]
fn queries_go_padded_and_answers_are_taken_out_of_order() {
    let dir = TempDir::new("ooo");
    make_pki(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let n = 16;
    let server = reverse_server(&dir, listener, n);
    let (up, tls) = tls_upstream(&dir, port, "dns.test");
    let fwd = Fwd::start(&[up], |c| {
        c.tls = tls;
        c.timeout = Duration::from_millis(3000);
        c.deadline = Duration::from_millis(4000);
    });
    let addr = fwd.addr;
    let clients: Vec<_> = (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                let name = format!("q{i}.example");
                let r = common::udp_ask(addr, &query(i as u16, &name, RType::A, None)).unwrap();
                let m = parse_message(&r).unwrap();
                assert_eq!(m.header.id, i as u16);
                assert_eq!(m.questions[0].qname.to_string(), format!("{name}."));
                assert_eq!(m.answers.len(), 1, "answer for {name}");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let stats = fwd.stop();
    let lens = server.join().unwrap();
    assert_eq!(lens.len(), n);
    assert!(
        lens.iter().all(|l| l % 128 == 0),
        "queries padded to 128 octets (RFC 8467): {lens:?}"
    );
    assert_eq!(stats.tls_upstream_handshakes, 1, "{stats}");
}

// ------------------------------------------------- resumption, reload, close, garbage

/// `queries` queries, one after the other, through dnsfwd to a DoT server that ends
/// each connection after `every` answers (with a close_notify, sent with the last
/// answer): every one answered; returns dnsfwd's counters and the server's accepts.
fn through_closing_server(tls12_only: bool, queries: usize, every: usize) -> (Stats, usize) {
    use common::dot::{DotOpts, DotServer};
    let dir = TempDir::new("resume");
    make_pki(&dir);
    let opts = DotOpts {
        close_after: Some(every),
        tls12_only,
    };
    let server = DotServer::start(&dir, opts);
    let (up, tls) = tls_upstream(&dir, server.addr.port(), "dns.test");
    let fwd = Fwd::start(&[up], |c| {
        c.tls = tls;
        c.timeout = Duration::from_millis(2000);
        c.deadline = Duration::from_millis(4000);
    });
    for i in 0..queries {
        let name = format!("r{i}.example");
        let r = common::udp_ask(fwd.addr, &query(i as u16, &name, RType::A, None)).unwrap();
        let m = parse_message(&r).unwrap();
        assert_eq!(
            (m.header.rcode, m.answers.len()),
            (Rcode::NOERROR, 1),
            "{name}"
        );
    }
    let stats = fwd.stop();
    (stats, server.accepts.load(Ordering::SeqCst))
}

#[test]
fn reconnects_to_a_server_that_closes_resume_the_session() {
    // TLS 1.3 (tickets) and TLS 1.2 (session IDs): the server keeps sessions (rustls'
    // default cache), so every connection after the first is a resumed handshake.
    for (tls12_only, version) in [(false, "1.3"), (true, "1.2")] {
        let (stats, accepts) = through_closing_server(tls12_only, 1000, 100);
        eprintln!(
            "TLS {version}, 1000 queries, the server closing every 100 answers: \
             handshakes={} resumed={} failures={}",
            stats.tls_upstream_handshakes, stats.tls_upstream_resumed, stats.tls_upstream_failures
        );
        assert_eq!(stats.tls_upstream_handshakes, 10, "TLS {version}: {stats}");
        assert_eq!(stats.tls_upstream_handshakes as usize, accepts);
        assert_eq!(stats.tls_upstream_resumed, 9, "TLS {version}: {stats}");
        assert_eq!(stats.tls_upstream_failures, 0, "TLS {version}: {stats}");
        assert_eq!(stats.servfail, 0, "TLS {version}: {stats}");
    }
}

/// dnsfwd with a `--listen-tls` from `dir`'s cert.pem and key.pem and `upstream`, bound,
/// with `before_run` done to it before its loop starts.
fn listener_with(
    dir: &TempDir,
    upstream: SocketAddr,
    before_run: impl FnOnce(&mut Server, &Config),
) -> Fwd {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut cfg = Config {
        listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        upstreams: vec![upstream],
        timeout: Duration::from_millis(500),
        deadline: Duration::from_millis(1500),
        ..Config::default()
    };
    cfg.cache.max_entries = 0;
    cfg.tls = TlsConfig {
        listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        cert: Some(dir.path("cert.pem")),
        key: Some(dir.path("key.pem")),
        ..TlsConfig::default()
    };
    let mut server = Server::bind(cfg.clone()).unwrap();
    // Port 0 was asked for: the same ports from now on.
    cfg.listen = server.local_addrs();
    cfg.tls.listen = server.tls_addrs();
    before_run(&mut server, &cfg);
    Fwd::run(server)
}

#[test]
fn a_reload_that_fails_in_part_changes_nothing() {
    use common::dot::{cert_der, client_config, make_pki_as, served_cert, tls_connect};
    let dir = TempDir::new("atomic");
    make_pki(&dir);
    make_pki_as(&dir, "new-", "dns.test, the new one");
    std::fs::write(
        dir.path("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
    )
    .unwrap();
    let (old, new) = (MockUpstream::echo(), MockUpstream::echo());
    let fwd = listener_with(&dir, old.addr, |server, cfg| {
        // The new certificate loads, the rest does not (a hosts file is missing).
        let mut half = cfg.clone();
        half.upstreams = vec![new.addr];
        half.tls.cert = Some(dir.path("new-cert.pem"));
        half.tls.key = Some(dir.path("new-key.pem"));
        half.local.hosts = vec![dir.path("no-such-hosts")];
        let e = server.reload(half).unwrap_err();
        assert!(e.contains("no-such-hosts"), "{e}");
        // Again, with no upstream at all (the core refuses it, last of all).
        let mut half = cfg.clone();
        half.upstreams = vec![];
        half.tls.cert = Some(dir.path("new-cert.pem"));
        half.tls.key = Some(dir.path("new-key.pem"));
        assert!(server.reload(half).is_err());
        // The reverse: the rest would do, the certificate does not load.
        let mut half = cfg.clone();
        half.upstreams = vec![new.addr];
        half.tls.cert = Some(dir.path("broken.pem"));
        let e = server.reload(half).unwrap_err();
        assert!(e.contains("broken.pem"), "{e}");
    });
    // Still the old certificate (shown to a client trusting both CAs), and the old
    // upstream.
    let both = [dir.path("ca.pem"), dir.path("new-ca.pem")]
        .map(|p| std::fs::read_to_string(p).unwrap())
        .concat();
    std::fs::write(dir.path("both-ca.pem"), both).unwrap();
    let c = tls_connect(
        &client_config(&dir.path("both-ca.pem")),
        fwd.tls_addr.unwrap(),
    );
    assert!(
        served_cert(&c) == cert_der(&dir.path("cert.pem")),
        "a failed reload changed the certificate"
    );
    let r = common::udp_ask(fwd.addr, &query(1, "which.example", RType::A, None)).unwrap();
    assert_eq!(parse_message(&r).unwrap().answers.len(), 1);
    assert_eq!(old.udp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(new.udp_queries.load(Ordering::SeqCst), 0);
    drop(c);
    let stats = fwd.stop();
    assert_eq!(stats.tls_client_failures, 0, "{stats}");
}

#[test]
fn an_idle_tls_client_is_closed_with_close_notify() {
    use common::dot::{client_config, tls_ask, tls_connect};
    let dir = TempDir::new("notify");
    make_pki(&dir);
    let mock = MockUpstream::echo();
    let fwd = listener(&dir, mock.addr, |c| c.tcp_idle = Duration::from_millis(300));
    let mut c = tls_connect(&client_config(&dir.path("ca.pem")), fwd.tls_addr.unwrap());
    let r = tls_ask(&mut c, &query(1, "idle.example", RType::A, None)).unwrap();
    assert_eq!(parse_message(&r).unwrap().answers.len(), 1);
    // Idle: dnsfwd closes. rustls reads 0 only after a close_notify (a bare FIN is an
    // UnexpectedEof error: the client could not tell it from a cut connection).
    let mut buf = [0u8; 16];
    let t0 = Instant::now();
    let n = c.read(&mut buf);
    assert!(t0.elapsed() < WAIT, "closed by the idle timer");
    assert!(matches!(n, Ok(0)), "a clean TLS close: {n:?}");
    drop(c);
    fwd.stop();
}

/// A TCP server on 127.0.0.1 that, for each of up to `conns` connections, does
/// `serve` (in its own thread); the connections are kept until the test ends.
fn raw_server(conns: usize, serve: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((sock, _)) = listener.accept() else {
                return;
            };
            sock.set_read_timeout(Some(WAIT)).unwrap();
            std::thread::spawn(move || serve(sock));
        }
    });
    addr
}

#[test]
fn an_upstream_speaking_garbage_fails_without_a_word_in_clear() {
    let dir = TempDir::new("garbage");
    make_pki(&dir);
    // Not TLS at all: whatever the client says, it gets 4 KiB of junk back, then the
    // server reads what more comes (a query in clear would show here).
    static CLEAR: AtomicUsize = AtomicUsize::new(0);
    let junk = raw_server(8, |mut s| {
        let mut seen = vec![0u8; 4096];
        let n = s.read(&mut seen).unwrap_or(0);
        seen.truncate(n);
        let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        let _ = s.write_all(&junk);
        let _ = s.read_to_end(&mut seen);
        if seen.windows(12).any(|w| w == b"clear-or-not") {
            CLEAR.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (up, tls) = tls_upstream(&dir, junk.port(), "dns.test");
    let fwd = Fwd::start(&[up], |c| c.tls = tls);
    let t0 = Instant::now();
    let r = common::udp_ask(fwd.addr, &query(1, "clear-or-not.example", RType::A, None))
        .expect("an answer, not silence");
    let m = parse_message(&r).unwrap();
    assert_eq!(m.header.rcode, Rcode::SERVFAIL);
    assert!(t0.elapsed() < WAIT);
    let stats = fwd.stop();
    assert!(stats.tls_upstream_failures >= 1, "{stats}");
    assert_eq!(stats.tls_upstream_handshakes, 0, "{stats}");
    assert_eq!(CLEAR.load(Ordering::SeqCst), 0, "a query went out in clear");
}

#[test]
fn an_upstream_that_stalls_in_the_handshake_is_given_up_at_the_timeout() {
    let dir = TempDir::new("stall");
    make_pki(&dir);
    // Accepts, reads the ClientHello, says nothing.
    let mute = raw_server(8, |mut s| {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        std::thread::sleep(WAIT);
    });
    let (up, tls) = tls_upstream(&dir, mute.port(), "dns.test");
    let fwd = Fwd::start(&[up], |c| c.tls = tls);
    let t0 = Instant::now();
    let r = common::udp_ask(fwd.addr, &query(1, "stall.example", RType::A, None)).unwrap();
    assert_eq!(parse_message(&r).unwrap().header.rcode, Rcode::SERVFAIL);
    assert!(t0.elapsed() < WAIT, "{:?}", t0.elapsed());
    // The sweep closes the connection once --timeout (500 ms) has passed.
    std::thread::sleep(Duration::from_millis(800));
    let stats = fwd.stop();
    assert!(stats.tls_upstream_failures >= 1, "{stats}");
    assert_eq!(stats.tls_upstream_handshakes, 0, "{stats}");
}

#[test]
fn garbage_after_the_handshake_ends_the_connection_not_the_loop() {
    let dir = TempDir::new("late-garbage");
    make_pki(&dir);
    let cfg = common::dot::server_config(&dir, false);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A proper handshake, one query read, then junk in place of TLS records.
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let junk: Vec<u8> = (0..2000u32).map(|i| (i * 13 + 5) as u8).collect();
        s.sock.write_all(&junk).unwrap();
        let mut rest = Vec::new();
        let _ = s.sock.read_to_end(&mut rest);
    });
    let mock = MockUpstream::echo();
    let (up, tls) = tls_upstream(&dir, port, "dns.test");
    let fwd = Fwd::start(&[up, mock.addr], |c| c.tls = tls);
    // The TLS connection fails at the junk; the query is answered by the other upstream
    // (or SERVFAIL), never hangs, and the loop goes on answering.
    let r = common::udp_ask(fwd.addr, &query(1, "junk.example", RType::A, None)).unwrap();
    assert_eq!(parse_message(&r).unwrap().header.id, 1);
    for i in 2..6u16 {
        let r = common::udp_ask(fwd.addr, &query(i, "after.example", RType::A, None)).unwrap();
        assert_eq!(parse_message(&r).unwrap().answers.len(), 1);
    }
    let stats = fwd.stop();
    assert_eq!(stats.tls_upstream_handshakes, 1, "{stats}");
    assert!(stats.tls_upstream_failures >= 1, "the junk counts: {stats}");
}
