//! Local names, blocklists and per-domain upstreams over loopback: which upstream a
//! name goes to, and what is answered without any upstream seeing the query.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::daemon::run_bounded;
use common::*;
use dnsfwd::config::Config;
use dnsfwd::forward::routes::{attach, split, UpstreamSpec};
use dnsfwd::local::BlockAnswer;
use dnsfwd::wire::{parse_message, EdnsOption, Message, Name, RData, RType, Rcode};

const BIN: &str = env!("CARGO_BIN_EXE_dnsfwd");

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("dnsfwd-test-{tag}-{}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sets `cfg`'s upstreams from `--upstream` values, as `Config::from_args` does.
fn set_upstreams(cfg: &mut Config, specs: &[String]) {
    let specs: Vec<UpstreamSpec> = specs.iter().map(|s| s.parse().unwrap()).collect();
    let (mut ups, zones) = split(&specs);
    cfg.routes = attach(&mut ups, zones);
    cfg.upstreams = ups;
}

#[track_caller]
fn ask(server: SocketAddr, name: &str, rtype: RType, edns: Option<u16>) -> Message<'static> {
    let q = query(0x4242, name, rtype, edns);
    let a: &'static [u8] = Box::leak(udp_ask(server, &q).expect("an answer").into_boxed_slice());
    let m = parse_message(a).unwrap();
    assert_eq!(m.header.id, 0x4242);
    m
}

/// Queries the mock upstream was asked, UDP and TCP (a short name such as `example`
/// goes over TCP: it offers a forger fewer than 32 bits over UDP).
fn asked(m: &MockUpstream) -> usize {
    m.udp_queries.load(Ordering::SeqCst) + m.tcp_queries.load(Ordering::SeqCst)
}

#[test]
fn zones_go_to_their_upstreams_and_the_rest_to_the_default() {
    let a = MockUpstream::echo();
    let b = MockUpstream::echo();
    let f = Forwarder::start_with(&[], |cfg| {
        set_upstreams(
            cfg,
            &[
                a.addr.to_string(),
                format!("corp.example={}", b.addr),
                format!("168.192.in-addr.arpa={}", b.addr),
            ],
        )
    });
    let cases = [
        ("www.example.org", RType::A, 1, 0),
        ("corp.example", RType::A, 1, 1),
        ("Host.CORP.example", RType::AAAA, 1, 2),
        ("notcorp.example", RType::A, 2, 2),
        ("corp.example.org", RType::A, 3, 2),
        ("5.1.168.192.in-addr.arpa", RType::PTR, 3, 3),
        ("5.1.0.10.in-addr.arpa", RType::PTR, 4, 3),
    ];
    for (name, rtype, want_a, want_b) in cases {
        let m = ask(f.addr, name, rtype, None);
        assert_eq!(m.rcode(), Rcode::NOERROR, "{name}");
        assert_eq!((asked(&a), asked(&b)), (want_a, want_b), "after {name}");
    }
}

#[test]
fn a_zone_fails_over_among_its_own_upstreams_only() {
    let a = MockUpstream::echo();
    let b = MockUpstream::echo();
    let dead = dead_port();
    let f = Forwarder::start_with(&[], |cfg| {
        set_upstreams(
            cfg,
            &[
                a.addr.to_string(),
                format!("corp.example={dead}"),
                format!("corp.example={}", b.addr),
            ],
        );
        cfg.timeout = Duration::from_millis(200);
    });
    for i in 0..6 {
        let m = ask(f.addr, &format!("h{i}.corp.example"), RType::A, None);
        assert_eq!(m.answers.len(), 1, "answered by the zone's live upstream");
    }
    assert_eq!(asked(&b), 6);
    assert_eq!(asked(&a), 0, "the default set never sees the zone's names");
}

#[test]
fn hosts_names_are_answered_without_the_upstream() {
    let up = MockUpstream::echo();
    let hosts = TempFile::new(
        "hosts",
        "# LAN\n192.168.1.5 nas.lan nas\nfd00::5 nas.lan\n192.168.1.6 printer.lan\n",
    );
    let f = Forwarder::start_with(&[up.addr], |cfg| cfg.local.hosts = vec![hosts.0.clone()]);
    let m = ask(f.addr, "NAS.lan", RType::A, Some(1232));
    assert!(m.header.aa && m.header.rd && m.header.ra);
    assert_eq!(m.questions[0].qname.to_string(), "NAS.lan.");
    assert_eq!(m.answers[0].rdata, RData::A("192.168.1.5".parse().unwrap()));
    assert!(m.edns().is_some(), "EDNS answered with EDNS");
    let m = ask(f.addr, "nas.lan", RType::AAAA, None);
    assert_eq!(m.answers[0].rdata, RData::Aaaa("fd00::5".parse().unwrap()));
    assert!(m.edns().is_none());
    let m = ask(f.addr, "6.1.168.192.in-addr.arpa", RType::PTR, None);
    assert_eq!(
        m.answers[0].rdata,
        RData::Ptr(Name::from_ascii("printer.lan").unwrap())
    );
    let m = ask(
        f.addr,
        "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
        RType::PTR,
        None,
    );
    assert_eq!(
        m.answers[0].rdata,
        RData::Ptr(Name::from_ascii("nas.lan").unwrap())
    );
    let m = ask(f.addr, "nas", RType::MX, None);
    assert_eq!(
        (m.rcode(), m.answers.len(), m.authority.len()),
        (Rcode::NOERROR, 0, 0),
        "NODATA"
    );
    assert!(m.header.aa);
    assert_eq!(asked(&up), 0, "the upstream saw nothing");
    let m = ask(f.addr, "www.example.org", RType::A, None);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(asked(&up), 1, "other names are forwarded");
    let stats = f.stop();
    assert_eq!(
        (stats.local_answers, stats.blocked, stats.forwarded),
        (5, 0, 1)
    );
}

#[test]
fn local_records_of_each_type() {
    let up = MockUpstream::echo();
    let records = [
        "nas.lan. 300 IN A 192.168.1.5",
        "nas.lan. 300 IN AAAA fd00::5",
        "www.lan. 60 IN CNAME nas.lan.",
        r#"nas.lan. 300 IN TXT "owner=ops" "rack 4""#,
        "lan. 300 IN MX 10 mail.lan.",
        "_sip._tcp.lan. 300 IN SRV 1 2 5060 sip.lan.",
        "9.1.168.192.in-addr.arpa. 300 IN PTR printer.lan.",
    ];
    let f = Forwarder::start_with(&[up.addr], |cfg| {
        cfg.local.records = records.iter().map(|s| s.to_string()).collect()
    });
    let m = ask(f.addr, "nas.lan", RType::A, None);
    assert_eq!(
        (m.answers[0].ttl, &m.answers[0].rdata),
        (300, &RData::A("192.168.1.5".parse().unwrap()))
    );
    let m = ask(f.addr, "nas.lan", RType::AAAA, None);
    assert_eq!(m.answers[0].rdata, RData::Aaaa("fd00::5".parse().unwrap()));
    let m = ask(f.addr, "www.lan", RType::A, None);
    assert_eq!(m.answers.len(), 2);
    assert_eq!(
        m.answers[0].rdata,
        RData::Cname(Name::from_ascii("nas.lan").unwrap())
    );
    assert_eq!(m.answers[1].rdata, RData::A("192.168.1.5".parse().unwrap()));
    let m = ask(f.addr, "nas.lan", RType::TXT, None);
    assert_eq!(
        m.answers[0].rdata,
        RData::Txt(vec![&b"owner=ops"[..], &b"rack 4"[..]])
    );
    let m = ask(f.addr, "lan", RType::MX, None);
    assert_eq!(
        m.answers[0].rdata,
        RData::Mx {
            preference: 10,
            exchange: Name::from_ascii("mail.lan").unwrap()
        }
    );
    let m = ask(f.addr, "_sip._tcp.lan", RType::SRV, None);
    assert_eq!(
        m.answers[0].rdata,
        RData::Srv {
            priority: 1,
            weight: 2,
            port: 5060,
            target: Name::from_ascii("sip.lan").unwrap()
        }
    );
    let m = ask(f.addr, "9.1.168.192.in-addr.arpa", RType::PTR, None);
    assert_eq!(
        m.answers[0].rdata,
        RData::Ptr(Name::from_ascii("printer.lan").unwrap())
    );
    let m = ask(f.addr, "lan", RType::A, None);
    assert_eq!((m.rcode(), m.answers.len()), (Rcode::NOERROR, 0));
    assert_eq!(asked(&up), 0);
}

#[test]
fn blocked_names_get_nxdomain_with_ede_15_and_exceptions_pass() {
    let up = MockUpstream::echo();
    let list = TempFile::new(
        "block",
        "# ads\nads.example\n0.0.0.0 tracker.example\n127.0.0.1 localhost\n*.wild.example\n",
    );
    let allow = TempFile::new("allow", "ok.ads.example\n");
    let f = Forwarder::start_with(&[up.addr], |cfg| {
        cfg.local.block = vec![list.0.clone()];
        cfg.local.allow_names = vec![allow.0.clone()];
    });
    for name in [
        "ads.example",
        "x.y.ads.example",
        "tracker.example",
        "a.wild.example",
    ] {
        let m = ask(f.addr, name, RType::A, Some(1232));
        assert_eq!((m.rcode(), m.answers.len()), (Rcode::NXDOMAIN, 0), "{name}");
        assert!(m.header.aa);
        let opts = m.edns().unwrap().options;
        assert_eq!(
            opts,
            [EdnsOption {
                code: EdnsOption::EDE,
                data: &[0, 15]
            }],
            "{name}"
        );
    }
    let m = ask(f.addr, "ads.example", RType::AAAA, None);
    assert_eq!(m.rcode(), Rcode::NXDOMAIN);
    assert!(
        m.edns().is_none(),
        "no OPT record for a client without EDNS"
    );
    assert_eq!(asked(&up), 0);
    for name in [
        "ok.ads.example",
        "deep.ok.ads.example",
        "example",
        "localhost",
    ] {
        let m = ask(f.addr, name, RType::A, None);
        assert_eq!(
            (m.rcode(), m.answers.len()),
            (Rcode::NOERROR, 1),
            "{name} is forwarded"
        );
    }
    assert_eq!(asked(&up), 4);
    let stats = f.stop();
    assert_eq!((stats.blocked, stats.forwarded), (5, 4));
}

#[test]
fn block_answer_null_gives_unspecified_addresses() {
    let up = MockUpstream::echo();
    let list = TempFile::new("null", "ads.example\n");
    let f = Forwarder::start_with(&[up.addr], |cfg| {
        cfg.local.block = vec![list.0.clone()];
        cfg.local.block_answer = BlockAnswer::Null;
    });
    let m = ask(f.addr, "x.ads.example", RType::A, Some(1232));
    assert_eq!(m.rcode(), Rcode::NOERROR);
    assert_eq!(
        m.answers[0].rdata,
        RData::A(std::net::Ipv4Addr::UNSPECIFIED)
    );
    assert_eq!(m.edns().unwrap().options[0].data, &[0, 15]);
    let m = ask(f.addr, "ads.example", RType::AAAA, None);
    assert_eq!(
        m.answers[0].rdata,
        RData::Aaaa(std::net::Ipv6Addr::UNSPECIFIED)
    );
    let m = ask(f.addr, "ads.example", RType::MX, None);
    assert_eq!((m.rcode(), m.answers.len()), (Rcode::NOERROR, 0));
    assert_eq!(asked(&up), 0);
}

#[test]
fn flags_are_in_help_and_bad_files_name_the_line() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--hosts",
        "--local-record",
        "--block",
        "--block-answer",
        "--allow-name",
        "ZONE=",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let bad = TempFile::new("badhosts", "192.168.1.5 nas.lan\nnas.lan 192.168.1.5\n");
    let path = bad.0.display().to_string();
    let out = run_bounded(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--hosts",
        &path,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{path}:2:")), "{err}");
    let out = run_bounded(&[
        "--upstream",
        "127.0.0.1:9",
        "--local-record",
        "x.lan A 1.2.3",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--local-record"),
        "{err}"
    );
    for args in [
        &["--upstream", "corp=", "--upstream", "127.0.0.1"][..],
        &["--upstream", "a..b=10.0.0.1"],
        &["--upstream", "127.0.0.1", "--block-answer", "refuse"],
    ] {
        let out = run_bounded(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
