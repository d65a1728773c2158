//! What the core tells the operator: counters of answers by RCODE and source, queries
//! by transport, per-upstream RTT histograms and failures (read by `--metrics` on a
//! scrape), and an optional query-log sink called once per answer (`--log-queries`).
//!
//! Guarantees: on the hot path only fixed-size arrays of `u64` are touched (no lock, no
//! allocation); with no sink installed the query log costs one branch. The sink gets a
//! borrowed [`QueryRecord`] and decides itself what to format.
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use super::Client;
use crate::clock::Instant;
use crate::wire::{RType, Rcode, HEADER_LEN};

/// Where an answer to a client came from.
///
/// How the core says it: the entry points set the provenance of what they answer
/// ([`Events::arrived`]: an error of ours until said otherwise; [`Events::finishing`]:
/// the upstream's answer to a pending query), and whoever renders an answer from
/// elsewhere says so just before handing it over, e.g. for a hosts or blocklist answer:
/// `self.events.source(AnswerSource::Local); self.deliver(&waiter, bytes);`. Every answer
/// then passes `send_to_client`, which counts it and calls the query log. A query split
/// into several questions is counted once, with the source of its last part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSource {
    /// A fresh cache entry.
    Cache,
    /// An upstream's answer (shaped for the client).
    Upstream,
    /// A local answer (hosts file, local zone data).
    Local,
    /// A blocklist's answer.
    Blocked,
    /// An expired cache entry (RFC 8767), because the upstreams failed or were slow.
    Stale,
    /// An error of our own: FORMERR, NOTIMP, REFUSED (overload), SERVFAIL (every
    /// upstream failed, or no randomness).
    Error,
}

impl AnswerSource {
    /// Every source, in index order. Valid values of `self as usize`: 0..SOURCES.
    pub const ALL: [AnswerSource; SOURCES] = [
        AnswerSource::Cache,
        AnswerSource::Upstream,
        AnswerSource::Local,
        AnswerSource::Blocked,
        AnswerSource::Stale,
        AnswerSource::Error,
    ];

    /// The label value (`source="cache"`) and the word in the query log.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerSource::Cache => "cache",
            AnswerSource::Upstream => "upstream",
            AnswerSource::Local => "local",
            AnswerSource::Blocked => "blocked",
            AnswerSource::Stale => "stale",
            AnswerSource::Error => "error",
        }
    }
}

pub const SOURCES: usize = 6;
/// RCODEs as counted: the header's four bits (extended RCODEs count as their low bits).
pub const RCODES: usize = 16;

/// Why an attempt to an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// No answer within `--timeout`.
    Timeout,
    /// ICMP port unreachable (ECONNREFUSED on the UDP socket).
    Unreachable,
    /// The TCP connection was refused, reset or closed before the answer.
    Tcp,
    /// It answered SERVFAIL.
    Servfail,
    /// It answered REFUSED.
    Refused,
    /// It answered NOTIMP.
    Notimp,
}

impl FailKind {
    pub const ALL: [FailKind; KINDS] = [
        FailKind::Timeout,
        FailKind::Unreachable,
        FailKind::Tcp,
        FailKind::Servfail,
        FailKind::Refused,
        FailKind::Notimp,
    ];

    /// The label value (`kind="timeout"`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailKind::Timeout => "timeout",
            FailKind::Unreachable => "unreachable",
            FailKind::Tcp => "tcp",
            FailKind::Servfail => "servfail",
            FailKind::Refused => "refused",
            FailKind::Notimp => "notimp",
        }
    }

    /// The failure an answer with `rcode` is, if any.
    pub fn of_rcode(rcode: Rcode) -> Option<FailKind> {
        match rcode {
            Rcode::SERVFAIL => Some(FailKind::Servfail),
            Rcode::REFUSED => Some(FailKind::Refused),
            Rcode::NOTIMP => Some(FailKind::Notimp),
            _ => None,
        }
    }
}

pub const KINDS: usize = 6;

/// Upper bounds of the RTT histogram buckets: 250 µs × 2^i (CoreDNS's
/// `ExponentialBuckets(0.00025, 2, 16)`), up to 8.192 s.
pub const RTT_BUCKETS: usize = 16;
const RTT_FIRST_US: u64 = 250;

/// The upper bound of RTT bucket `i`, in seconds.
pub fn rtt_bucket_le(i: usize) -> f64 {
    (RTT_FIRST_US << i.min(63)) as f64 / 1e6
}

/// What one upstream did. Valid values: `rtt[RTT_BUCKETS]` counts the answers slower
/// than the last bound; `rtt_count` is the sum of `rtt`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamCounters {
    /// Answers by RTT bucket (not cumulative).
    pub rtt: [u64; RTT_BUCKETS + 1],
    pub rtt_count: u64,
    pub rtt_sum_us: u64,
    /// Failed attempts by [`FailKind`].
    pub failures: [u64; KINDS],
}

impl UpstreamCounters {
    fn observe(&mut self, us: u64) {
        // Bucket i holds (250·2^(i-1), 250·2^i] µs: i = ⌈log2(⌈us/250⌉)⌉.
        let b = us.saturating_sub(1) / RTT_FIRST_US;
        let i = (64 - b.leading_zeros()) as usize;
        if let Some(n) = self.rtt.get_mut(i.min(RTT_BUCKETS)) {
            *n += 1;
        }
        self.rtt_count += 1;
        self.rtt_sum_us = self.rtt_sum_us.saturating_add(us);
    }
}

/// One answer sent to a client, as the query log sees it.
#[derive(Debug, Clone, Copy)]
pub struct QueryRecord<'a> {
    pub client: Client,
    /// The answer as sent: ID, flags, RCODE and the question (the client's spelling).
    pub answer: &'a [u8],
    pub source: AnswerSource,
    /// The upstream asked (its current attempt), for answers of a query that went upstream.
    pub upstream: Option<SocketAddr>,
    /// From the query's arrival (or, when it joined a query in flight, that query's
    /// start) to this answer.
    pub elapsed: Duration,
}

impl QueryRecord<'_> {
    pub fn rcode(&self) -> Rcode {
        Rcode(u16::from(self.answer.get(3).map_or(0, |b| b & 0x0F)))
    }

    /// The question name as text (`example.org.`), read from the answer without copying.
    pub fn qname(&self) -> QnameText<'_> {
        QnameText(self.answer.get(HEADER_LEN..).unwrap_or_default())
    }

    /// The question type, if the answer has a question.
    pub fn qtype(&self) -> Option<RType> {
        let qd = self.answer.get(4..6)?;
        if qd == [0, 0] {
            return None;
        }
        let end = HEADER_LEN + QnameText(self.answer.get(HEADER_LEN..)?).wire_len()?;
        let t = self.answer.get(end..end + 2)?;
        Some(RType(u16::from_be_bytes([t[0], t[1]])))
    }
}

/// A name in uncompressed wire form (the first question of a message we wrote),
/// displayed in presentation form with RFC 4343 escapes; `?` if it is malformed.
pub struct QnameText<'a>(&'a [u8]);

impl QnameText<'_> {
    /// Its length in octets (terminating zero included), if it is a plain name.
    fn wire_len(&self) -> Option<usize> {
        let mut at = 0;
        loop {
            let len = usize::from(*self.0.get(at)?);
            if len == 0 {
                return Some(at + 1);
            }
            if len > 63 || at + 1 + len > 255 {
                return None;
            }
            at += 1 + len;
        }
    }
}

impl fmt::Display for QnameText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(end) = self.wire_len() else {
            return f.write_str("?");
        };
        if end == 1 {
            return f.write_str(".");
        }
        let mut at = 0;
        while let Some(&len) = self.0.get(at).filter(|&&l| l != 0) {
            let label = self
                .0
                .get(at + 1..at + 1 + usize::from(len))
                .unwrap_or_default();
            // The usual label is plain: one write for it (this runs once per logged query).
            match std::str::from_utf8(label) {
                Ok(plain) if label.iter().all(|&c| is_plain(c)) => f.write_str(plain)?,
                _ => {
                    for &c in label {
                        match c {
                            _ if is_plain(c) => f.write_char(char::from(c))?,
                            0x21..=0x7E => write!(f, "\\{}", char::from(c))?,
                            _ => write!(f, "\\{c:03}")?,
                        }
                    }
                }
            }
            f.write_str(".")?;
            at += 1 + usize::from(len);
        }
        Ok(())
    }
}

impl super::Forwarder {
    /// The counters for `--metrics`.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Installs (or removes, with `None`) the sink of `--log-queries`.
    pub fn set_query_log(&mut self, log: Option<Box<dyn QueryLog + Send>>) {
        self.events.set_query_log(log);
    }

    /// Has the `--log-queries` sink write out its lines if they are due at `now`;
    /// returns when the lines it holds will be due (for the loop's timeout).
    pub fn flush_query_log(&mut self, now: Instant) -> Option<Instant> {
        self.events.flush_query_log(now)
    }

    /// Entries in the answer cache now.
    pub fn cache_entries(&self) -> usize {
        self.cache.len()
    }
}

/// Printable and needing no escape in a name's presentation form (RFC 4343 §2.1).
fn is_plain(c: u8) -> bool {
    matches!(c, 0x21..=0x7E) && !matches!(c, b'.' | b'\\' | b'"' | b';' | b'(' | b')' | b'@' | b'$')
}

/// Receives one record per answer sent to a client (`--log-queries`).
pub trait QueryLog {
    fn answered(&mut self, record: &QueryRecord<'_>);
    /// When the lines `answered` buffered must be written ([`QueryLog::flush`]).
    fn flush_due(&self) -> Option<Instant> {
        None
    }
    /// Writes out what `answered` buffered.
    fn flush(&mut self) {}
}

/// The provenance of the answers about to be sent: set where a query is finished (on
/// arrival, on completion, on a stale timer), read as each answer goes out.
#[derive(Debug, Clone, Copy)]
struct Answering {
    now: Instant,
    /// The query started `less` before `since` (worked out only for the query log: a
    /// pending query knows its deadline, and the subtraction is not paid per query).
    since: Instant,
    less: Duration,
    upstream: Option<usize>,
    source: AnswerSource,
}

/// The core's counters for the operator and its query-log sink.
pub struct Events {
    /// Answers sent, by header RCODE and [`AnswerSource`].
    pub answers: [[u64; SOURCES]; RCODES],
    /// Queries received (as `Stats::queries`) over UDP and over TCP.
    pub queries_udp: u64,
    pub queries_tcp: u64,
    /// By upstream index.
    pub upstreams: Vec<UpstreamCounters>,
    /// The upstreams' addresses, by index (for the log and the labels).
    pub upstream_addrs: Vec<SocketAddr>,
    log: Option<Box<dyn QueryLog + Send>>,
    answering: Option<Answering>,
    /// `--deadline`: a pending query started this long before its deadline.
    deadline: Duration,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("queries_udp", &self.queries_udp)
            .field("queries_tcp", &self.queries_tcp)
            .field("query_log", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

impl Events {
    pub fn new(upstreams: &[SocketAddr], deadline: Duration) -> Events {
        Events {
            answers: [[0; SOURCES]; RCODES],
            queries_udp: 0,
            queries_tcp: 0,
            upstreams: vec![UpstreamCounters::default(); upstreams.len()],
            upstream_addrs: upstreams.to_vec(),
            log: None,
            answering: None,
            deadline,
        }
    }

    /// Installs (or removes) the query-log sink.
    pub fn set_query_log(&mut self, log: Option<Box<dyn QueryLog + Send>>) {
        self.log = log;
    }

    /// Has the query-log sink write out the lines it holds if they are due at `now`;
    /// returns when they will be due next.
    pub fn flush_query_log(&mut self, now: Instant) -> Option<Instant> {
        let log = self.log.as_mut()?;
        if log.flush_due().is_some_and(|due| due <= now) {
            log.flush();
        }
        log.flush_due()
    }

    /// A query arrived from `client` (counted by transport); what is answered now is
    /// an error of ours unless said otherwise.
    pub fn arrived(&mut self, now: Instant, client: Client) {
        match client {
            Client::Udp { .. } => self.queries_udp += 1,
            Client::Tcp { .. } => self.queries_tcp += 1,
            Client::Prefetch => {}
        }
        self.answering(now, now, None, AnswerSource::Error);
    }

    /// The answers sent from now on finish the pending query with `deadline` whose
    /// current attempt went to `upstream`.
    pub fn finishing(&mut self, now: Instant, deadline: Instant, upstream: usize) {
        self.answering = Some(Answering {
            now,
            since: deadline,
            less: self.deadline,
            upstream: Some(upstream),
            source: AnswerSource::Upstream,
        });
    }

    /// The answers sent from now on are for a query that started at `started` and
    /// went to `upstream` (if it did), by default from `source`.
    pub fn answering(
        &mut self,
        now: Instant,
        started: Instant,
        upstream: Option<usize>,
        source: AnswerSource,
    ) {
        self.answering = Some(Answering {
            now,
            since: started,
            less: Duration::ZERO,
            upstream,
            source,
        });
    }

    /// The next answers come from `source` (the rest of the provenance unchanged).
    pub fn source(&mut self, source: AnswerSource) {
        if let Some(a) = &mut self.answering {
            a.source = source;
        }
    }

    /// An upstream answered after `rtt_us` microseconds with `rcode` (SERVFAIL, REFUSED
    /// and NOTIMP count as failures too).
    pub fn upstream_answered(&mut self, upstream: usize, rtt_us: u64, rcode: Rcode) {
        if let Some(u) = self.upstreams.get_mut(upstream) {
            u.observe(rtt_us);
        }
        if let Some(kind) = FailKind::of_rcode(rcode) {
            self.upstream_failed(upstream, kind);
        }
    }

    /// An attempt to `upstream` failed.
    pub fn upstream_failed(&mut self, upstream: usize, kind: FailKind) {
        if let Some(n) = self
            .upstreams
            .get_mut(upstream)
            .and_then(|u| u.failures.get_mut(kind as usize))
        {
            *n += 1;
        }
    }

    /// An answer is going to `client`: counted, and logged if a sink is installed.
    pub fn answered(&mut self, client: Client, answer: &[u8]) {
        // The provenance is copied only for the query log: counting needs its source.
        let source = self
            .answering
            .as_ref()
            .map_or(AnswerSource::Error, |a| a.source);
        let rcode = answer.get(3).map_or(0, |b| usize::from(b & 0x0F));
        if let Some(n) = self
            .answers
            .get_mut(rcode)
            .and_then(|r| r.get_mut(source as usize))
        {
            *n += 1;
        }
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let a = self.answering;
        let upstream = a
            .and_then(|a| a.upstream)
            .and_then(|u| self.upstream_addrs.get(u).copied());
        let elapsed = a.map_or(Duration::ZERO, |a| {
            let started = a.since.checked_sub(a.less).unwrap_or(a.now);
            a.now.saturating_duration_since(started)
        });
        log.answered(&QueryRecord {
            client,
            answer,
            source,
            upstream: upstream.filter(|_| source != AnswerSource::Cache),
            elapsed,
        });
    }
}

#[cfg(test)]
mod tests;
