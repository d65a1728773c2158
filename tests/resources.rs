//! Resources under attack, with the real binary and default flags (issue 8): a flood of
//! never-answered names from ten loopback addresses against a silent upstream fills the
//! pending table; memory stays well under 64 MiB and goes back once the flood is over,
//! and the log stays a few lines however many queries time out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::query;
use dnsfwd::wire::RType;

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_flood_of_timeouts_costs_bounded_memory_that_goes_back_and_few_log_lines() {
    // An upstream that never answers (it reads nothing; no ICMP either, the port is open).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let up = silent.local_addr().unwrap();
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dnsfwd"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &up.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    std::thread::sleep(Duration::from_millis(300));
    let (idle, _) = memory_kib(pid);
    // 10 sources × 3000 queries over ~2 s: each source holds its 1250 share until the
    // 4.5 s deadline, so the 10000-query table is full.
    let floods: Vec<_> = (2..12u8)
        .map(|n| {
            std::thread::spawn(move || {
                let s = UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, n), 0)).unwrap();
                s.set_nonblocking(true).unwrap();
                let start = Instant::now();
                let mut buf = [0u8; 512];
                for i in 0..3000u32 {
                    let q = query(i as u16, &format!("never{n}x{i}.example"), RType::A, None);
                    let _ = s.send_to(&q, server);
                    while s.recv(&mut buf).is_ok() {}
                    let due = Duration::from_micros(u64::from(i) * 666);
                    if let Some(w) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(w);
                    }
                }
            })
        })
        .collect();
    for f in floods {
        f.join().unwrap();
    }
    let (during, _) = memory_kib(pid);
    // Deadline 4.5 s, then a second for the tables to be looked at.
    let mut after = during;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        after = memory_kib(pid).0;
        if after * 2 < during {
            break;
        }
    }
    let (_, peak) = memory_kib(pid);
    terminate(pid);
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let _ = child.wait();
    let lines = log.lines().count();
    eprintln!(
        "RSS idle {idle} KiB, after the flood {during} KiB, peak {peak} KiB, 6 s later \
         {after} KiB; {lines} log lines:\n{log}"
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    assert!(during > idle + 4 * 1024, "the flood did fill the table");
    assert!(
        after * 2 < during,
        "memory went back: {during} → {after} KiB"
    );
    // Start-up, a rate-limited warning per 10 s about the silent upstream, stop lines.
    assert!(lines <= 6, "{lines} log lines for 30,000 timeouts");
}

/// SIGTERM, through `kill` (no unsafe code in tests).
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}
