//! Counters: bad packets are counted, not logged one by one.
use std::fmt;

/// What the forwarder has seen. Every field only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Queries accepted from clients (each question of a split query counts once).
    pub queries: u64,
    /// Answers sent to clients, errors included.
    pub answers: u64,
    /// Client packets dropped: shorter than a header, or QR=1.
    pub dropped_queries: u64,
    pub formerr: u64,
    pub notimp: u64,
    pub servfail: u64,
    /// Queries refused because the pending table was full.
    pub overload: u64,
    /// Upstream packets dropped: unparseable, unknown ID, wrong source, wrong question.
    pub dropped_responses: u64,
    /// Attempts that timed out.
    pub timeouts: u64,
    /// Attempts that failed at once (ICMP port unreachable, TCP refused or reset).
    pub upstream_errors: u64,
    /// Truncated UDP answers retried over TCP.
    pub tcp_retries: u64,
    /// Answers cut down to the client's UDP size (TC=1).
    pub truncated: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queries={} answers={} dropped_queries={} formerr={} notimp={} servfail={} \
             overload={} dropped_responses={} timeouts={} upstream_errors={} tcp_retries={} \
             truncated={}",
            self.queries,
            self.answers,
            self.dropped_queries,
            self.formerr,
            self.notimp,
            self.servfail,
            self.overload,
            self.dropped_responses,
            self.timeouts,
            self.upstream_errors,
            self.tcp_retries,
            self.truncated
        )
    }
}
