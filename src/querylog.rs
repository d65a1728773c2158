//! `--log-queries`: one line per answer sent to a client, on stderr, in the layout of
//! the other log lines (env_logger's: time, level, target), with target `dnsfwd::query`
//! (so `RUST_LOG=info,dnsfwd::query=off` turns it off, checked once at start, and
//! `RUST_LOG=warn,dnsfwd::query=info` keeps only it).
//!
//! ```text
//! [2026-12-02T05:55:00Z INFO  dnsfwd::query] client=127.0.0.1:40312 proto=udp name=example.org. type=AAAA rcode=NOERROR source=upstream upstream=127.0.0.1:5300 ms=1.204
//! ```
//! Fields are `key=value` separated by single spaces (logfmt); `upstream=` only when the
//! query went upstream. Lines are gathered and written together, with one system call,
//! at most [`WRITE_EVERY`] after the first of them (or at once when 64 KiB wait, and at
//! exit): the logger's path (formatting through `core::fmt`, the time formatted per
//! line, a write per line) cost about 10,000 instructions and a system call per query. Nothing is allocated per
//! line once the buffers have grown (an unknown type or RCODE is printed as
//! `TYPEnnn`/`RCODEnnn`).
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Instant;
use crate::forward::events::{QueryLog, QueryRecord};
use crate::forward::Client;

/// The log target of the query log.
pub const TARGET: &str = "dnsfwd::query";

/// Lines waiting beyond this are written at once.
const FLUSH_AT: usize = 64 * 1024;
/// Longest a line waits to be written.
pub const WRITE_EVERY: Duration = Duration::from_millis(100);

/// Formats each record into a buffer of lines written to stderr every [`WRITE_EVERY`].
#[derive(Debug, Default)]
pub struct LogQueries {
    line: String,
    out: Vec<u8>,
    /// When `out` must be written (set by its first line).
    due: Option<Instant>,
    /// The second of the last time stamp, and its text (`2026-12-02T05:55:00Z`).
    stamp: Option<(u64, [u8; 20])>,
}

impl LogQueries {
    fn stamp(&mut self) -> [u8; 20] {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self.stamp {
            Some((s, text)) if s == secs => text,
            _ => {
                let text = utc_text(secs);
                self.stamp = Some((secs, text));
                text
            }
        }
    }
}

impl QueryLog for LogQueries {
    fn answered(&mut self, r: &QueryRecord<'_>) {
        self.line.clear();
        write_line(&mut self.line, r);
        let stamp = self.stamp();
        if self.out.is_empty() {
            self.due = Some(Instant::now() + WRITE_EVERY);
        }
        self.out.push(b'[');
        self.out.extend_from_slice(&stamp);
        self.out.extend_from_slice(b" INFO  ");
        self.out.extend_from_slice(TARGET.as_bytes());
        self.out.extend_from_slice(b"] ");
        self.out.extend_from_slice(self.line.as_bytes());
        self.out.push(b'\n');
        if self.out.len() >= FLUSH_AT {
            self.flush();
        }
    }

    fn flush_due(&self) -> Option<Instant> {
        self.due
    }

    fn flush(&mut self) {
        self.due = None;
        if self.out.is_empty() {
            return;
        }
        // A log that cannot be written (stderr closed) must not stop the forwarder.
        let _ = std::io::stderr().lock().write_all(&self.out);
        self.out.clear();
    }
}

impl Drop for LogQueries {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `secs` after the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC; years 1970 to 9999).
fn utc_text(secs: u64) -> [u8; 20] {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Days to a civil date (the proleptic Gregorian calendar), from Howard Hinnant's
    // `civil_from_days`, for days counted from 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + u64::from(month <= 2)).min(9999);
    let mut t = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            if let Some(c) = t.get_mut(i) {
                *c = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    t
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
    fn lines_wait_at_most_write_every() {
        let mut log = LogQueries::default();
        assert_eq!(log.flush_due(), None, "nothing held");
        let before = Instant::now();
        let r = QueryRecord {
            client: Client::Prefetch,
            answer: ANSWER,
            source: AnswerSource::Cache,
            upstream: None,
            elapsed: Duration::ZERO,
        };
        log.answered(&r);
        let due = log.flush_due().unwrap();
        assert!(due >= before + WRITE_EVERY && due <= Instant::now() + WRITE_EVERY);
        log.answered(&r);
        assert_eq!(log.flush_due(), Some(due), "the first line sets the time");
        assert!(log.out.ends_with(b"rcode=NOERROR source=cache ms=0.000\n"));
        assert!(log.out.starts_with(b"["));
        log.flush();
        assert_eq!(log.flush_due(), None);
        assert!(log.out.is_empty());
    }

    #[test]
    fn formats_utc_times_as_the_logger_does() {
        assert_eq!(&utc_text(0), b"1970-01-01T00:00:00Z");
        assert_eq!(&utc_text(951_782_400), b"2000-02-29T00:00:00Z");
        assert_eq!(&utc_text(1_796_189_700), b"2026-12-02T05:35:00Z");
        assert_eq!(&utc_text(4_107_542_399), b"2100-02-28T23:59:59Z");
        assert_eq!(&utc_text(4_107_542_400), b"2100-03-01T00:00:00Z");
    }

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
