//! `--log-queries`: one line per answer sent to a client, through the `log` crate at
//! info level with target `dnsfwd::query` (so `RUST_LOG=info,dnsfwd::query=off` turns it
//! off and `RUST_LOG=warn,dnsfwd::query=info` keeps only it). The logger adds the time.
//!
//! ```text
//! client=127.0.0.1:40312 proto=udp name=example.org. type=AAAA rcode=NOERROR source=upstream upstream=127.0.0.1:5300 ms=1.204
//! ```
//! Fields are `key=value` separated by single spaces (logfmt); `upstream=` only when the
//! query went upstream. Nothing is allocated here beyond what the logger's formatting
//! does (an unknown type or RCODE is printed as `TYPEnnn`/`RCODEnnn`).
use std::fmt;

use crate::forward::events::{QueryLog, QueryRecord};
use crate::forward::Client;

/// The log target of the query log.
pub const TARGET: &str = "dnsfwd::query";

/// Writes each record as one `log::info!` line.
#[derive(Debug, Default)]
pub struct LogQueries;

impl QueryLog for LogQueries {
    fn answered(&mut self, r: &QueryRecord<'_>) {
        if log::log_enabled!(target: TARGET, log::Level::Info) {
            log::info!(target: TARGET, "{}", Line(r));
        }
    }
}

/// A record in the query log's line format.
pub struct Line<'r, 'a>(pub &'r QueryRecord<'a>);

impl fmt::Display for Line<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        match r.client {
            Client::Udp { addr, .. } => write!(f, "client={addr} proto=udp")?,
            Client::Tcp { addr, .. } => write!(f, "client={addr} proto=tcp")?,
            Client::Prefetch => f.write_str("client=- proto=-")?,
        }
        write!(f, " name={}", r.qname())?;
        match r.qtype() {
            Some(t) => write!(f, " type={}", t.name())?,
            None => f.write_str(" type=-")?,
        }
        write!(
            f,
            " rcode={} source={}",
            r.rcode().name(),
            r.source.as_str()
        )?;
        if let Some(u) = r.upstream {
            write!(f, " upstream={u}")?;
        }
        let us = r.elapsed.as_micros();
        write!(f, " ms={}.{:03}", us / 1000, us % 1000)
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
        assert_eq!(
            Line(&r).to_string(),
            "client=127.0.0.1:40312 proto=udp name=example.org. type=AAAA rcode=NOERROR \
             source=upstream upstream=127.0.0.1:5300 ms=1.204"
        );
        let cached = QueryRecord {
            source: AnswerSource::Cache,
            upstream: None,
            elapsed: Duration::ZERO,
            ..r
        };
        assert!(Line(&cached).to_string().ends_with("source=cache ms=0.000"));
    }
}
