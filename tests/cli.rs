//! The `dnsfwd` binary itself: flags, start-up, SIGTERM, and `decode`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::run_bounded;
use common::*;
use dnsfwd::wire::{parse_message, RType};

const BIN: &str = env!("CARGO_BIN_EXE_dnsfwd");

#[test]
fn bad_flags_give_one_line_and_status_2() {
    for args in [
        &["--timeout", "soon"][..],
        &["--upstream", "dns.example"],
        &["--listen", "127.0.0.1:99999"],
        &["--upstream", "127.0.0.1", "--timeout", "0"],
        &["--max-tcp-clients", "0", "--upstream", "127.0.0.1"],
        &["--frobnicate"],
        &[
            "--upstream",
            "127.0.0.1",
            "--cache-min-ttl",
            "100",
            "--cache-max-ttl",
            "10",
        ],
        &["--upstream", "127.0.0.1", "--cache-size", "many"],
        &["--upstream", "127.0.0.1", "--cache-memory", "12X"],
        &["--upstream", "127.0.0.1", "--cache-memory", "1K"],
    ] {
        let out = run_bounded(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("dnsfwd: "), "{err}");
    }
    // --listen without a port is IPv4 with port 53; this one must be a parse error.
    let out = run_bounded(&["--listen", "nowhere:53"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--upstream",
        "--resolver",
        "--timeout",
        "--deadline",
        "--tcp-idle",
        "--max-tcp-clients",
        "--cache-size",
        "--cache-memory",
        "--cache-min-ttl",
        "--cache-max-ttl",
        "--stale-ttl",
        "--no-serve-stale",
        "--config",
        "--user",
        "decode",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn serves_then_exits_0_on_sigterm() {
    let up = MockUpstream::echo();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &up.addr.to_string(),
        ])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let startup = lines.next().unwrap().unwrap();
    let addr: std::net::SocketAddr = startup
        .split("listening on [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("startup line names the listen address")
        .parse()
        .unwrap();
    assert!(
        startup.contains(&up.addr.to_string()),
        "startup line names the upstream: {startup}"
    );
    let r = udp_ask(addr, &query(42, "bin.example", RType::A, None)).expect("answer");
    assert_eq!(parse_message(&r).unwrap().header.id, 42);
    // The second time the answer comes from the cache (forwarded=1 below).
    let r = tcp_ask(addr, &query(43, "bin.example", RType::A, None)).expect("answer");
    assert_eq!(parse_message(&r).unwrap().header.id, 43);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("stopped: queries=2 forwarded=1 answers=2")),
        "{rest:?}"
    );
}

#[test]
fn decode_lists_every_message_of_a_capture() {
    let pcap = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/auth-udp.pcap");
    let expect = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/auth-udp.expect.jsonl"
    ))
    .unwrap();
    let out = Command::new(BIN)
        .args(["decode", "--json", pcap])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), expect.lines().count());
    for (ours, theirs) in lines.iter().zip(expect.lines()) {
        let theirs: serde_json::Value = serde_json::from_str(theirs).unwrap();
        assert_eq!(ours["parse_ok"], true);
        for key in [
            "frame", "id", "flags", "qdcount", "ancount", "nscount", "arcount",
        ] {
            assert_eq!(ours[key], theirs[key], "{key}");
        }
        assert_eq!(ours["transport"], "udp");
        assert!(ours["hex"].as_str().unwrap().len() >= 24);
    }
    let text = Command::new(BIN).args(["decode", pcap]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches(";; ->>HEADER<<-").count(), lines.len());
    assert!(text.contains("ANSWER SECTION"));
}

#[test]
fn decode_takes_hex_and_rejects_bad_files_cleanly() {
    let out = Command::new(BIN)
        .args(["decode", "123401000002000000000000037777770b727573742d7472656e647303636f6d000001000103646576c01000010001"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(";dev.rust-trends.com.") && text.contains("QUERY: 2"),
        "{text}"
    );
    // A message that does not parse is listed with its error.
    let out = Command::new(BIN)
        .args(["decode", "--json", "123401000001000000000000c00c00010001"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["parse_ok"].as_bool(), v["error_type"].as_str()),
        (Some(false), Some("BadPointer"))
    );
    // A missing file and a broken capture: a clear error and a non-zero status.
    let out = Command::new(BIN)
        .args(["decode", "/nonexistent/x.pcap"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let dir = std::env::temp_dir().join(format!("dnsfwd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.pcap");
    let mut bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/auth-udp.pcap"
    ))
    .unwrap();
    bytes.truncate(20);
    std::fs::write(&broken, &bytes).unwrap();
    let out = Command::new(BIN)
        .args(["decode", broken.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    std::fs::remove_dir_all(&dir).unwrap();
}
