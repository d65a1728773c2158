//! Counters: bad packets are counted, not logged one by one.
use std::fmt;

/// What the forwarder has seen. Every field only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Queries received from clients and not dropped (answered, or to be answered).
    pub queries: u64,
    /// Queries sent upstream (each question of a split query, and each prefetch, once;
    /// retries not counted).
    pub forwarded: u64,
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
    /// Queries answered from the cache.
    pub cache_hits: u64,
    /// Queries the cache could not answer (sent upstream, or coalesced).
    pub cache_misses: u64,
    /// Queries that waited on an identical one in flight instead of going upstream.
    pub coalesced: u64,
    /// Answers served stale (RFC 8767) because the upstreams failed.
    pub stale_served: u64,
    /// Cache entries refreshed before they expired.
    pub prefetches: u64,
    /// Queries from sources outside the ACL answered REFUSED (EDE 18 with EDNS).
    pub refused_acl: u64,
    /// Queries from sources outside the ACL dropped (over the refusal rate, or not queries).
    pub dropped_acl: u64,
    /// UDP queries over their client's --rate-limit (dropped or slipped).
    pub rate_limited: u64,
    /// Of those, answered with TC=1 so that the client retries over TCP.
    pub slipped: u64,
    /// TCP connections from sources outside the ACL, closed at accept.
    pub tcp_refused: u64,
    /// TCP connections turned away: their address at --max-tcp-per-client, or every
    /// slot busy.
    pub tcp_capped: u64,
    /// TCP connections closed to make room for another address's.
    pub tcp_evicted: u64,
    /// TCP connections closed for a message that took too long to arrive (slowloris).
    pub tcp_slow: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queries={} forwarded={} answers={} dropped_queries={} formerr={} notimp={} servfail={} \
             overload={} dropped_responses={} timeouts={} upstream_errors={} tcp_retries={} \
             truncated={} cache_hits={} cache_misses={} coalesced={} stale_served={} prefetches={} \
             refused_acl={} dropped_acl={} rate_limited={} slipped={} tcp_refused={} \
             tcp_capped={} tcp_evicted={} tcp_slow={}",
            self.queries,
            self.forwarded,
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
            self.truncated,
            self.cache_hits,
            self.cache_misses,
            self.coalesced,
            self.stale_served,
            self.prefetches,
            self.refused_acl,
            self.dropped_acl,
            self.rate_limited,
            self.slipped,
            self.tcp_refused,
            self.tcp_capped,
            self.tcp_evicted,
            self.tcp_slow
        )
    }
}
