//! `--log-queries`: one line per answer sent to a client, through the `log` crate at
//! info level with target `dnsfwd::query` (so `RUST_LOG=info,dnsfwd::query=off` turns it
//! off, checked once at start, and `RUST_LOG=warn,dnsfwd::query=info` keeps only it).
//! The logger adds the time.
//!
//! ```text
//! client=127.0.0.1:40312 proto=udp name=example.org. type=AAAA rcode=NOERROR source=upstream upstream=127.0.0.1:5300 ms=1.204
//! ```
//! Fields are `key=value` separated by single spaces (logfmt); `upstream=` only when the
//! query went upstream. Nothing is allocated here beyond what the logger's formatting
//! does (an unknown type or RCODE is printed as `TYPEnnn`/`RCODEnnn`).
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::forward::events::{QueryLog, QueryRecord};
use crate::forward::Client;

/// The log target of the query log.
pub const TARGET: &str = "dnsfwd::query";

/// Writes each record as one `log::info!` line, formatted into a buffer it keeps (no
/// allocation per line once it has grown to the longest line).
#[derive(Debug, Default)]
pub struct LogQueries {
    line: String,
}

impl QueryLog for LogQueries {
    fn answered(&mut self, r: &QueryRecord<'_>) {
        self.line.clear();
        write_line(&mut self.line, r);
        log::info!(target: TARGET, "{}", self.line);
    }
}

/// Appends the query-log line of `r` to `out`. Addresses and numbers are written by
/// hand: `core::fmt` for a socket address costs ten times as much.
pub fn write_line(out: &mut String, r: &QueryRecord<'_>) {
    let (addr, proto) = match r.client {
        Client::Udp { addr, .. } => (Some(addr), "udp"),
        Client::Tcp { addr, .. } => (Some(addr), "tcp"),
        Client::Prefetch => (None, "-"),
    };
    out.push_str("client=");
    match addr {
        Some(a) => push_addr(out, a),
        None => out.push('-'),
    }
    out.push_str(" proto=");
    out.push_str(proto);
    out.push_str(" name=");
    // Writing into a String cannot fail.
    let _ = write!(out, "{}", r.qname());
    out.push_str(" type=");
    match r.qtype() {
        Some(t) => out.push_str(&t.name()),
        None => out.push('-'),
    }
    out.push_str(" rcode=");
    out.push_str(&r.rcode().name());
    out.push_str(" source=");
    out.push_str(r.source.as_str());
    if let Some(u) = r.upstream {
        out.push_str(" upstream=");
        push_addr(out, u);
    }
    let us = r.elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
    out.push_str(" ms=");
    push_u64(out, us / 1000);
    let frac = us % 1000;
    out.push('.');
    if frac < 100 {
        out.push('0');
    }
    if frac < 10 {
        out.push('0');
    }
    push_u64(out, frac);
}

fn push_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(octet));
            }
            out.push(':');
            push_u64(out, u64::from(a.port()));
        }
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for &d in digits.get(i..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::events::AnswerSource;
    use std::time::Duration;

    #[rustfmt::skip]
    const ANSWER: &[u8] = &[
        0xAB, 0xCD, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, // header: NOERROR, QDCOUNT 1
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'o', b'r', b'g', 0, // example.org.
        0, 28, 0, 1, // AAAA IN
    ];

    #[test]
    fn formats_one_logfmt_line() {
        let r = QueryRecord {
            client: Client::Udp {
                listener: 0,
                addr: "127.0.0.1:40312".parse().unwrap(),
            },
            answer: ANSWER,
            source: AnswerSource::Upstream,
            upstream: Some("127.0.0.1:5300".parse().unwrap()),
            elapsed: Duration::from_micros(1204),
        };
        let line = |r: &QueryRecord<'_>| {
            let mut out = String::new();
            write_line(&mut out, r);
            out
        };
        assert_eq!(
            line(&r),
            "client=127.0.0.1:40312 proto=udp name=example.org. type=AAAA rcode=NOERROR \
             source=upstream upstream=127.0.0.1:5300 ms=1.204"
        );
        let cached = QueryRecord {
            source: AnswerSource::Cache,
            upstream: None,
            elapsed: Duration::ZERO,
            ..r
        };
        assert!(
            line(&cached).ends_with("source=cache ms=0.000"),
            "{}",
            line(&cached)
        );
        for (us, ms) in [
            (5, "0.005"),
            (42, "0.042"),
            (999, "0.999"),
            (1_000, "1.000"),
            (12_345_678, "12345.678"),
        ] {
            let r = QueryRecord {
                elapsed: Duration::from_micros(us),
                ..cached
            };
            assert!(line(&r).ends_with(&format!(" ms={ms}")), "{}", line(&r));
        }
        let v6 = QueryRecord {
            client: Client::Tcp {
                conn: 3,
                addr: "[::1]:853".parse().unwrap(),
            },
            ..cached
        };
        assert!(
            line(&v6).starts_with("client=[::1]:853 proto=tcp "),
            "{}",
            line(&v6)
        );
    }
}
