//! `--metrics` and `--log-queries` over loopback: counters read back through a real
//! scrape and an independent Prometheus text parser; a slowloris scraper does not stall
//! DNS; other paths get 404; the query log's fields for a cached and an upstream answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{dead_port, id_of, query, tcp_ask, udp_ask, MockUpstream, WAIT};
use dnsfwd::config::Config;
use dnsfwd::server::{Server, StopHandle};
use dnsfwd::wire::{parse_message, RType, Rcode};
use prometheus_parse::{Scrape, Value};

/// A forwarder with the cache and `--metrics` on, on ephemeral loopback ports.
struct Running {
    dns: SocketAddr,
    metrics: SocketAddr,
    stop: StopHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(upstreams: &[SocketAddr], tweak: impl FnOnce(&mut Config)) -> Running {
        let mut cfg = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            upstreams: upstreams.to_vec(),
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        tweak(&mut cfg);
        let server = Server::bind(cfg).unwrap();
        let dns = server.local_addrs()[0];
        let metrics = server.metrics_addr().unwrap();
        let stop = server.stop_handle();
        let thread = Some(std::thread::spawn(move || {
            server.run().unwrap();
        }));
        Running {
            dns,
            metrics,
            stop,
            thread,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `request` and reads the whole response (the server closes after it).
#[track_caller]
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_string(), body.to_string())
}

#[track_caller]
fn scrape(addr: SocketAddr) -> Scrape {
    let (head, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: dnsfwd\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` whose labels include `labels` (0 if absent).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Value> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| &x.value)
        .collect();
    match found.as_slice() {
        [] => 0.0,
        [Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)] => *v,
        [Value::Histogram(h)] => h.iter().map(|b| b.count).fold(0.0, f64::max),
        more => panic!("{name} {labels:?}: {more:?}"),
    }
}

#[test]
fn scrape_counts_hits_misses_transports_and_rtt() {
    let up = MockUpstream::echo();
    let fwd = Running::start(&[up.addr], |_| {});
    let q = query(0x1111, "www.example.org", RType::A, Some(1232));
    assert!(udp_ask(fwd.dns, &q).is_some(), "miss");
    assert!(udp_ask(fwd.dns, &q).is_some(), "hit over UDP");
    assert!(tcp_ask(fwd.dns, &q).is_some(), "hit over TCP");
    let nx = query(0x2222, "other.example.org", RType::AAAA, None);
    assert!(udp_ask(fwd.dns, &nx).is_some(), "second miss");

    let s = scrape(fwd.metrics);
    let upstream = up.addr.to_string();
    let up_label = [("upstream", upstream.as_str())];
    for (name, labels, want) in [
        ("dnsfwd_queries_total", &[("transport", "udp")][..], 3.0),
        ("dnsfwd_queries_total", &[("transport", "tcp")], 1.0),
        (
            "dnsfwd_responses_total",
            &[("rcode", "NOERROR"), ("source", "cache")],
            2.0,
        ),
        (
            "dnsfwd_responses_total",
            &[("rcode", "NOERROR"), ("source", "upstream")],
            2.0,
        ),
        (
            "dnsfwd_responses_total",
            &[("rcode", "SERVFAIL"), ("source", "error")],
            0.0,
        ),
        ("dnsfwd_cache_hits_total", &[], 2.0),
        ("dnsfwd_cache_misses_total", &[], 2.0),
        ("dnsfwd_forwarded_total", &[], 2.0),
        ("dnsfwd_cache_entries", &[], 2.0),
        ("dnsfwd_pending", &[], 0.0),
        ("dnsfwd_near_misses_total", &[], 0.0),
        // The +Inf bucket: every answer.
        ("dnsfwd_upstream_rtt_seconds", &up_label, 2.0),
        (
            "dnsfwd_upstream_failures_total",
            &[("upstream", upstream.as_str()), ("kind", "timeout")],
            0.0,
        ),
    ] {
        assert_eq!(value(&s, name, labels), want, "{name} {labels:?}");
    }
    // Every hardening counter is there, and every source label.
    for name in [
        "moved_to_tcp",
        "late_answers",
        "refused_acl",
        "rate_limited",
        "slipped",
        "tcp_refused",
        "tcp_capped",
        "tcp_evicted",
        "tcp_slow",
        "cache_evictions",
        "rng_failures",
        "case_mismatches",
    ] {
        let full = format!("dnsfwd_{name}_total");
        assert!(s.samples.iter().any(|x| x.metric == full), "{full}");
    }
    for source in ["cache", "upstream", "local", "blocked", "stale", "error"] {
        assert!(
            s.samples
                .iter()
                .any(|x| x.metric == "dnsfwd_responses_total"
                    && x.labels.get("source") == Some(source)),
            "{source}"
        );
    }
}

#[test]
fn a_dead_upstream_shows_as_servfail_and_failures() {
    let dead = dead_port();
    let fwd = Running::start(&[dead], |c| {
        c.timeout = Duration::from_millis(100);
        c.deadline = Duration::from_millis(300);
    });
    let q = query(0x3333, "dead.example", RType::A, None);
    let a = udp_ask(fwd.dns, &q).expect("an answer");
    assert_eq!(parse_message(&a).unwrap().header.rcode, Rcode::SERVFAIL);
    let s = scrape(fwd.metrics);
    let labels = [("rcode", "SERVFAIL"), ("source", "error")];
    assert_eq!(value(&s, "dnsfwd_responses_total", &labels), 1.0);
    let upstream = dead.to_string();
    let failed: f64 = ["timeout", "unreachable"]
        .iter()
        .map(|kind| {
            let labels = [("upstream", upstream.as_str()), ("kind", *kind)];
            value(&s, "dnsfwd_upstream_failures_total", &labels)
        })
        .sum();
    assert!(failed >= 1.0, "{failed}");
    assert!(value(&s, "dnsfwd_timeouts_total", &[]) >= 1.0);
}

#[test]
fn other_paths_and_methods_are_refused() {
    let up = MockUpstream::echo();
    let fwd = Running::start(&[up.addr], |_| {});
    let (head, _) = http(fwd.metrics, "GET / HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let (head, _) = http(fwd.metrics, "GET /metrics/x HTTP/1.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let (head, _) = http(fwd.metrics, "POST /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
    // A head longer than the cap gets 400, not an ever-growing buffer.
    let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    let mut s = TcpStream::connect(fwd.metrics).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.write_all(long.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.starts_with(b"HTTP/1.1 400 "), "{out:?}");
}

#[test]
fn slowloris_scrapers_do_not_stall_dns() {
    let up = MockUpstream::echo();
    let fwd = Running::start(&[up.addr], |_| {});
    // More connections than there are slots, each sending half a request line and
    // then nothing.
    let mut slow: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = TcpStream::connect(fwd.metrics).unwrap();
            s.write_all(b"GET /met").unwrap();
            s
        })
        .collect();
    let start = Instant::now();
    for i in 0..200u16 {
        let q = query(i, &format!("n{}.example", i % 20), RType::A, None);
        let a = udp_ask(fwd.dns, &q).expect("DNS answered while scrapers stall");
        assert_eq!(id_of(&a), i);
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // The slow connections are closed within the scrape timeout (5 s), after which a
    // real scrape gets through.
    let closed_by = Instant::now() + Duration::from_secs(8);
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without a response");
        assert!(Instant::now() < closed_by);
    }
    let s = scrape(fwd.metrics);
    assert_eq!(
        value(&s, "dnsfwd_queries_total", &[("transport", "udp")]),
        200.0
    );
}

/// The `dnsfwd::query` lines of a `dnsfwd --log-queries` child, as they come.
struct Child {
    child: std::process::Child,
    dns: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Child {
    fn start(upstream: SocketAddr, extra: &[&str]) -> Child {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dnsfwd"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &upstream.to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let end = Instant::now() + WAIT;
        let dns = loop {
            let line = rx
                .recv_timeout(end.saturating_duration_since(Instant::now()))
                .expect("a 'listening on' line");
            if let Some(rest) = line.split("listening on [").nth(1) {
                break rest.split(']').next().unwrap().parse().unwrap();
            }
        };
        Child {
            child,
            dns,
            lines: rx,
        }
    }

    /// The next query-log line, within `WAIT`.
    #[track_caller]
    fn next_query_line(&self) -> String {
        let end = Instant::now() + WAIT;
        loop {
            let line = self
                .lines
                .recv_timeout(end.saturating_duration_since(Instant::now()))
                .expect("a query-log line");
            if line.contains("dnsfwd::query") {
                return line;
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `key=value` fields of a query-log line.
fn fields(line: &str) -> std::collections::HashMap<String, String> {
    let body = line.split("] ").nth(1).unwrap_or(line);
    body.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn query_log_has_a_line_per_answer_with_its_fields() {
    let up = MockUpstream::echo();
    let child = Child::start(up.addr, &["--log-queries"]);
    let q = query(0x4444, "WWW.Example.org", RType::AAAA, None);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let me = sock.local_addr().unwrap().to_string();
    let mut buf = [0u8; 1500];
    for _ in 0..2 {
        sock.send_to(&q, child.dns).unwrap();
        sock.recv(&mut buf).unwrap();
    }
    let first = child.next_query_line();
    assert!(first.contains(" INFO "), "{first}");
    let f = fields(&first);
    assert_eq!(f["client"], me, "{first}");
    assert_eq!(f["proto"], "udp");
    assert_eq!(f["name"], "WWW.Example.org.", "the client's spelling");
    assert_eq!(f["type"], "AAAA");
    assert_eq!(f["rcode"], "NOERROR");
    assert_eq!(f["source"], "upstream");
    assert_eq!(f["upstream"], up.addr.to_string());
    let ms: f64 = f["ms"].parse().unwrap();
    assert!((0.0..3000.0).contains(&ms), "{first}");

    let second = child.next_query_line();
    let f = fields(&second);
    assert_eq!(f["client"], me, "{second}");
    assert_eq!(f["name"], "WWW.Example.org.");
    assert_eq!(f["type"], "AAAA");
    assert_eq!(f["rcode"], "NOERROR");
    assert_eq!(f["source"], "cache");
    assert!(!f.contains_key("upstream"), "{second}");
    assert_eq!(f["ms"], "0.000");
}

#[test]
fn no_query_log_without_the_flag() {
    let up = MockUpstream::echo();
    let child = Child::start(up.addr, &[]);
    let q = query(0x5555, "quiet.example", RType::A, None);
    assert!(udp_ask(child.dns, &q).is_some());
    assert!(udp_ask(child.dns, &q).is_some());
    std::thread::sleep(Duration::from_millis(200));
    let logged: Vec<String> = child.lines.try_iter().collect();
    assert!(
        logged.iter().all(|l| !l.contains("dnsfwd::query")),
        "{logged:?}"
    );
}

#[test]
fn flags_are_in_help_and_checked() {
    let bin = env!("CARGO_BIN_EXE_dnsfwd");
    let out = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--metrics", "--log-queries", "dnsfwd::query"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    for args in [
        &["--upstream", "127.0.0.1", "--metrics", "nowhere"][..],
        &[
            "--upstream",
            "127.0.0.2",
            "--listen",
            "127.0.0.1:9153",
            "--metrics",
            "127.0.0.1",
        ],
    ] {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a flag meant to be refused must not leave a server running.
        let end = Instant::now() + Duration::from_secs(5);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                panic!("dnsfwd {args:?} is still running");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--metrics") || err.contains("nowhere"),
            "{err}"
        );
    }
}
