//! Helpers for the integration tests: the real forwarder on an ephemeral loopback port,
//! a scriptable mock upstream (UDP and TCP), and clients. Every wait is bounded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod daemon;
pub mod dot;
pub mod forger;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dnsfwd::config::Config;
use dnsfwd::server::{Server, StopHandle};
use dnsfwd::stats::Stats;
use dnsfwd::wire::{
    parse_message, Class, Edns, Header, Message, Name, Question, RData, RType, Record,
};

pub const WAIT: Duration = Duration::from_secs(3);

/// How a mock upstream answers one query.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send these bytes (the query's ID is patched in unless `WrongId` is used).
    Answer(Vec<u8>),
    /// Send them after a pause (from another thread, so other queries go on).
    Delay(Duration, Vec<u8>),
    /// Send these bytes with a different ID (over TCP too: a stray answer).
    WrongId(Vec<u8>),
    /// Send them from another socket (wrong source port).
    FromWrongPort(Vec<u8>),
    /// Random bytes.
    Garbage(usize),
    /// Over TCP: send these bytes, then close the connection (the rest of what was
    /// read on it is dropped unanswered). Over UDP: as `Answer`.
    AnswerThenClose(Vec<u8>),
}

/// Which transport a query reached the mock on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Udp,
    Tcp,
}

type Script = dyn Fn(&[u8], Via) -> Vec<Action> + Send + Sync;

/// Told of every UDP query the mock receives, with the address it came from, before
/// the script acts on it (what an on-path attacker sees).
pub type Observer = Box<dyn FnMut(&[u8], SocketAddr) + Send>;

/// A DNS "server" on 127.0.0.1 (UDP and TCP on the same port) that answers as told.
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub tcp_accepts: Arc<AtomicUsize>,
    /// TCP connections open now (accepted and not yet closed by either side).
    pub tcp_open: Arc<AtomicUsize>,
    /// Source ports the UDP queries came from.
    pub udp_ports: Arc<Mutex<std::collections::HashSet<u16>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl MockUpstream {
    pub fn start(
        script: impl Fn(&[u8], Via) -> Vec<Action> + Send + Sync + 'static,
    ) -> MockUpstream {
        MockUpstream::start_full(script, Box::new(|_, _| {}), true)
    }

    /// As [`MockUpstream::start`], and `observe` sees each UDP query first.
    pub fn start_observed(
        script: impl Fn(&[u8], Via) -> Vec<Action> + Send + Sync + 'static,
        observe: Observer,
    ) -> MockUpstream {
        MockUpstream::start_full(script, observe, true)
    }

    /// As [`MockUpstream::start`], but nothing listens on TCP: connections are refused.
    pub fn start_udp_only(
        script: impl Fn(&[u8], Via) -> Vec<Action> + Send + Sync + 'static,
    ) -> MockUpstream {
        MockUpstream::start_full(script, Box::new(|_, _| {}), false)
    }

    fn start_full(
        script: impl Fn(&[u8], Via) -> Vec<Action> + Send + Sync + 'static,
        mut observe: Observer,
        listen_tcp: bool,
    ) -> MockUpstream {
        let script: Arc<Script> = Arc::new(script);
        let (udp, tcp) = bind_pair();
        // Closed at once when unwanted, so that connecting to the port is refused.
        let tcp = listen_tcp.then_some(tcp);
        let addr = udp.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_accepts = Arc::new(AtomicUsize::new(0));
        let tcp_open = Arc::new(AtomicUsize::new(0));
        let udp_ports = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let mut threads = Vec::new();
        {
            let (script, stop, count) = (script.clone(), stop.clone(), udp_queries.clone());
            let ports = udp_ports.clone();
            threads.push(std::thread::spawn(move || {
                serve_udp(udp, &*script, &mut observe, &stop, &count, &ports)
            }));
        }
        if let Some(tcp) = tcp {
            let (script, stop, count) = (script.clone(), stop.clone(), tcp_queries.clone());
            let conns = (tcp_accepts.clone(), tcp_open.clone());
            threads.push(std::thread::spawn(move || {
                serve_tcp(tcp, script, stop, count, conns)
            }));
        }
        MockUpstream {
            addr,
            udp_queries,
            tcp_queries,
            tcp_accepts,
            tcp_open,
            udp_ports,
            stop,
            threads,
        }
    }

    /// An upstream that answers every question with one A record derived from the name
    /// (and ignores what it cannot parse, as a real server would answer FORMERR).
    pub fn echo() -> MockUpstream {
        MockUpstream::start(|q, _| match parse_message(q) {
            Ok(m) if m.questions.len() == 1 => vec![Action::Answer(answer(q, &a_records(q, 1)))],
            _ => vec![],
        })
    }

    /// An upstream that answers every query with one A record derived from the name,
    /// `delay` after it came: long enough for identical queries to meet in flight.
    pub fn delayed(delay: Duration) -> MockUpstream {
        MockUpstream::start(move |q, _| vec![Action::Delay(delay, answer(q, &a_records(q, 1)))])
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Room for a burst of queries while the mock's thread waits for a CPU (the
        // default 208 KiB holds ~200 datagrams; the kernel caps this at rmem_max).
        let _ = socket2::SockRef::from(&udp).set_recv_buffer_size(4 << 20);
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no free port pair");
}

fn serve_udp(
    sock: UdpSocket,
    script: &Script,
    observe: &mut Observer,
    stop: &AtomicBool,
    count: &AtomicUsize,
    ports: &Mutex<std::collections::HashSet<u16>>,
) {
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let mut rng = 0x1234_5678u64;
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let query = buf[..n].to_vec();
        count.fetch_add(1, Ordering::SeqCst);
        ports.lock().unwrap().insert(from.port());
        observe(&query, from);
        for action in script(&query, Via::Udp) {
            match action {
                Action::Answer(b) | Action::AnswerThenClose(b) => {
                    let _ = sock.send_to(&with_id(&b, &query), from);
                }
                Action::Delay(d, b) => {
                    let s = sock.try_clone().unwrap();
                    let b = with_id(&b, &query);
                    std::thread::spawn(move || {
                        std::thread::sleep(d);
                        let _ = s.send_to(&b, from);
                    });
                }
                Action::WrongId(b) => {
                    let mut b = with_id(&b, &query);
                    b[0] ^= 0x5A;
                    let _ = sock.send_to(&b, from);
                }
                Action::FromWrongPort(b) => {
                    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
                    let _ = other.send_to(&with_id(&b, &query), from);
                }
                Action::Garbage(len) => {
                    let junk: Vec<u8> = (0..len)
                        .map(|_| {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            rng as u8
                        })
                        .collect();
                    let _ = sock.send_to(&junk, from);
                }
            }
        }
    }
}

fn serve_tcp(
    listener: TcpListener,
    script: Arc<Script>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    (accepts, open): (Arc<AtomicUsize>, Arc<AtomicUsize>),
) {
    listener.set_nonblocking(true).unwrap();
    let mut conns = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                accepts.fetch_add(1, Ordering::SeqCst);
                open.fetch_add(1, Ordering::SeqCst);
                let (script, stop, count) = (script.clone(), stop.clone(), count.clone());
                let open = open.clone();
                conns.push(std::thread::spawn(move || {
                    serve_tcp_conn(stream, &*script, &stop, &count);
                    open.fetch_sub(1, Ordering::SeqCst);
                }));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn serve_tcp_conn(mut stream: TcpStream, script: &Script, stop: &AtomicBool, count: &AtomicUsize) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let out = Arc::new(Mutex::new(stream.try_clone().unwrap()));
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(_) => continue,
        }
        while pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            let query: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            count.fetch_add(1, Ordering::SeqCst);
            for action in script(&query, Via::Tcp) {
                let (delay, bytes) = match action {
                    Action::Answer(b) => (Duration::ZERO, with_id(&b, &query)),
                    Action::Delay(d, b) => (d, with_id(&b, &query)),
                    Action::WrongId(b) => {
                        let mut b = with_id(&b, &query);
                        b[0] ^= 0x5A;
                        (Duration::ZERO, b)
                    }
                    Action::AnswerThenClose(b) => {
                        let b = with_id(&b, &query);
                        let mut framed = (b.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&b);
                        let mut out = out.lock().unwrap();
                        let _ = out.write_all(&framed);
                        // Shutdown, not just drop: delayed answers hold clones.
                        let _ = out.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    _ => continue,
                };
                let out = out.clone();
                let send = move || {
                    std::thread::sleep(delay);
                    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&bytes);
                    let _ = out.lock().unwrap().write_all(&framed);
                };
                if delay.is_zero() {
                    send();
                } else {
                    std::thread::spawn(send);
                }
            }
        }
    }
}

fn with_id(answer: &[u8], query: &[u8]) -> Vec<u8> {
    let mut b = answer.to_vec();
    if b.len() >= 2 && query.len() >= 2 {
        b[..2].copy_from_slice(&query[..2]);
    }
    b
}

/// The forwarder, running in a thread on 127.0.0.1:0 (UDP and TCP).
pub struct Forwarder {
    pub addr: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<Stats>>,
}

impl Forwarder {
    pub fn start(upstreams: &[SocketAddr]) -> Forwarder {
        Forwarder::start_with(upstreams, |_| {})
    }

    pub fn start_with(upstreams: &[SocketAddr], tweak: impl FnOnce(&mut Config)) -> Forwarder {
        // RUST_LOG=debug cargo test … shows the server's log.
        let _ = env_logger::builder().is_test(true).try_init();
        let mut cfg = Config {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            upstreams: upstreams.to_vec(),
            ..Config::default()
        };
        // The forwarding tests see every query reach the upstream; cache tests turn
        // the cache back on in `tweak`.
        cfg.cache.max_entries = 0;
        tweak(&mut cfg);
        let server = Server::bind(cfg).unwrap();
        let addr = server.local_addrs()[0];
        let stop = server.stop_handle();
        let thread = Some(std::thread::spawn(move || server.run().unwrap()));
        Forwarder { addr, stop, thread }
    }

    /// Stops the server (as SIGTERM would) and returns its counters.
    pub fn stop(mut self) -> Stats {
        self.stop.stop();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.stop();
            let _ = t.join();
        }
    }
}

/// A query for `name`/`rtype`, with an EDNS OPT record of `edns` octets if given.
pub fn query(id: u16, name: &str, rtype: RType, edns: Option<u16>) -> Vec<u8> {
    let m = Message {
        header: Header::from_parts(id, 0x0100, [0; 4]),
        questions: vec![Question {
            qname: Name::from_ascii(name).unwrap(),
            qtype: rtype,
            qclass: Class::IN,
        }],
        additional: edns
            .map(|udp_size| {
                Edns {
                    udp_size,
                    ext_rcode: 0,
                    version: 0,
                    dnssec_ok: false,
                    z: 0,
                    options: vec![],
                }
                .to_record()
            })
            .into_iter()
            .collect(),
        ..Message::default()
    };
    m.to_vec()
}

/// `n` A records for the query's name: 10.x.y.i, x.y from a hash of the name, so each
/// name has its own, checkable answer.
pub fn a_records(query: &[u8], n: usize) -> Vec<Record<'static>> {
    let q = parse_message(query).unwrap();
    let name = q.questions[0].qname.clone();
    let h = name_hash(&name);
    (0..n)
        .map(|i| Record {
            name: name.clone(),
            rtype: RType::A,
            class: Class::IN,
            ttl: 300,
            rdata: RData::A(Ipv4Addr::new(10, (h >> 8) as u8, h as u8, i as u8)),
        })
        .collect()
}

pub fn name_hash(name: &Name) -> u16 {
    name.to_lowercase_string()
        .bytes()
        .fold(0u16, |h, b| h.wrapping_mul(31).wrapping_add(u16::from(b)))
}

/// An answer to `query` (QR, RA set, its question and OPT echoed) with `records`.
pub fn answer(query: &[u8], records: &[Record<'_>]) -> Vec<u8> {
    let q = parse_message(query).unwrap();
    let mut m = q.clone();
    m.header.qr = true;
    m.header.ra = true;
    m.answers = records.to_vec();
    m.to_vec()
}

/// Sends a datagram and waits (bounded) for one answer.
#[track_caller]
pub fn udp_ask(server: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.send_to(q, server).unwrap();
    let mut buf = vec![0u8; 65535];
    sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// Sends one framed query over a new TCP connection and reads one framed answer.
#[track_caller]
pub fn tcp_ask(server: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, WAIT).ok()?;
    s.set_read_timeout(Some(WAIT)).unwrap();
    write_frame(&mut s, q);
    read_frame(&mut s)
}

pub fn write_frame(s: &mut TcpStream, q: &[u8]) {
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    s.write_all(&framed).unwrap();
}

pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}

pub fn id_of(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A port on 127.0.0.1 where nothing listens (UDP), for ICMP-refused tests.
pub fn dead_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// A port on 127.0.0.1 free for both UDP and TCP when asked, for a server started by
/// port number (it binds both). Checking one protocol only let another test's socket
/// hold the other half (upstream sockets take random ports from the same range).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until `f` holds, at most `limit`.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// The cache key of a query's question (folded name, type, class, RD/DO/CD): what a
/// recording is looked up by, now that the forwarder writes its own upstream queries.
pub fn question_key(query: &[u8]) -> Vec<u8> {
    let v = dnsfwd::wire::MessageView::parse(query).unwrap();
    let mut k = [0u8; dnsfwd::cache::MAX_KEY_LEN];
    let n = dnsfwd::cache::key_of(&v, &mut k).unwrap();
    k[..n].to_vec()
}

/// A recorded response turned into the answer to `query`, as a server that echoes the
/// question would send it: the query's ID and its spelling of the question name.
pub fn as_answer_to(response: &[u8], query: &[u8]) -> Vec<u8> {
    let mut r = with_id(response, query);
    let v = dnsfwd::wire::MessageView::parse(query).unwrap();
    let mut name = [0u8; 255];
    let n = v.qname_wire(&mut name, false);
    if r.len() >= 12 + n && r[12..12 + n].eq_ignore_ascii_case(&name[..n]) {
        r[12..12 + n].copy_from_slice(&name[..n]);
    }
    r
}

/// What a client should get for `query` when the upstream's answer is `source`
/// (independent of the forwarder's code): the client's ID, RD and CD, the upstream's
/// records and flags, an OPT record only if the client sent one (with DO as the client
/// asked, the upstream's extended RCODE and its Extended DNS Errors), cut to `limit`
/// octets with TC set.
pub fn shaped_for(source: &[u8], query: &[u8], limit: usize) -> Message<'static> {
    let q = parse_message(query).unwrap();
    let s: &'static [u8] = Box::leak(source.to_vec().into_boxed_slice());
    let mut m = parse_message(s).unwrap();
    let ext = m.edns().map_or(0, |e| e.ext_rcode);
    // Extended DNS Errors are for the client too; the rest of the OPT is per hop.
    let ede: Vec<_> = m
        .edns()
        .map(|e| {
            e.options
                .into_iter()
                .filter(|o| o.code == dnsfwd::wire::EdnsOption::EDE)
                .collect()
        })
        .unwrap_or_default();
    m.header.id = q.header.id;
    m.header.rd = q.header.rd;
    m.header.cd = q.header.cd;
    m.additional.retain(|r| r.rtype != RType::OPT);
    if let Some(e) = q.edns() {
        let mut opt = Edns {
            udp_size: 1232,
            ext_rcode: ext,
            version: 0,
            dnssec_ok: e.dnssec_ok,
            z: 0,
            options: ede,
        }
        .to_record();
        opt.ttl = u32::from(ext) << 24 | u32::from(e.dnssec_ok) << 15;
        m.additional.push(opt);
    }
    let bytes: &'static [u8] = Box::leak(m.write(limit).into_boxed_slice());
    parse_message(bytes).unwrap()
}
