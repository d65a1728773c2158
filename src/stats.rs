//! Counters: bad packets are counted, not logged one by one.
use std::fmt;

use crate::cache::Cache;

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
    /// Upstream answers for a question in flight that failed the ID, port or letter-case
    /// check: forgeries, or a broken upstream.
    pub near_misses: u64,
    /// Of those, answers with our ID and port but not our letter case (0x20).
    pub case_mismatches: u64,
    /// Queries that stopped listening on UDP after a near miss and went on over TCP.
    pub moved_to_tcp: u64,
    /// Answers to attempts of queries already finished (dropped, not forgeries).
    pub late_answers: u64,
    /// Attempts sent over TCP (truncated answers, near misses, TCP-only upstreams).
    pub tcp_queries: u64,
    /// Queries answered SERVFAIL because the random generator failed (fail closed).
    pub rng_failures: u64,
    /// Queries in flight ended to make room for another client's (fair shares).
    pub evicted_queries: u64,
    /// Client queries that came back to us: our own upstream query, looped.
    pub loops: u64,
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
    /// Cache entries evicted to make room (by count or by bytes).
    pub cache_evictions: u64,
    /// Cacheable answers not cached: bigger than 1/128 of the cache's byte budget.
    pub cache_refused: u64,
    /// Queries answered from local names (hosts files, local records).
    pub local_answers: u64,
    /// Queries for blocked names (answered NXDOMAIN or 0.0.0.0/::).
    pub blocked: u64,
    /// TLS handshakes completed with `tls://` upstreams, and of those, resumed sessions.
    pub tls_upstream_handshakes: u64,
    pub tls_upstream_resumed: u64,
    /// Connections to `tls://` upstreams that failed in TLS (certificate, name,
    /// handshake timeout, protocol error).
    pub tls_upstream_failures: u64,
    /// TLS handshakes completed by `--listen-tls` clients, and connections that failed
    /// in TLS (not TLS at all, handshake timeout, protocol error).
    pub tls_client_handshakes: u64,
    pub tls_client_failures: u64,
}

impl Stats {
    /// These counters with the cache's own (evictions, refusals) filled in.
    pub fn with_cache(self, cache: &Cache) -> Stats {
        Stats {
            cache_evictions: cache.evictions(),
            cache_refused: cache.refused(),
            ..self
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queries={} forwarded={} answers={} dropped_queries={} formerr={} notimp={} servfail={} \
             overload={} dropped_responses={} timeouts={} upstream_errors={} tcp_retries={} \
             truncated={} cache_hits={} cache_misses={} coalesced={} stale_served={} prefetches={} \
             near_misses={} case_mismatches={} moved_to_tcp={} late_answers={} tcp_queries={} \
             rng_failures={} evicted_queries={} loops={} refused_acl={} dropped_acl={} rate_limited={} slipped={} tcp_refused={} \
             tcp_capped={} tcp_evicted={} tcp_slow={} \
             cache_evictions={} cache_refused={} local_answers={} blocked={}",
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
            self.near_misses,
            self.case_mismatches,
            self.moved_to_tcp,
            self.late_answers,
            self.tcp_queries,
            self.rng_failures,
            self.evicted_queries,
            self.loops,
            self.refused_acl,
            self.dropped_acl,
            self.rate_limited,
            self.slipped,
            self.tcp_refused,
            self.tcp_capped,
            self.tcp_evicted,
            self.tcp_slow,
            self.cache_evictions,
            self.cache_refused,
            self.local_answers,
            self.blocked
        )?;
        write!(
            f,
            " tls_upstream_handshakes={} tls_upstream_resumed={} tls_upstream_failures={} \
             tls_client_handshakes={} tls_client_failures={}",
            self.tls_upstream_handshakes,
            self.tls_upstream_resumed,
            self.tls_upstream_failures,
            self.tls_client_handshakes,
            self.tls_client_failures
        )
    }
}

/// The sum of the counters of several event loops (`--threads`).
impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        // Exhaustive on purpose: a new counter that is not summed does not compile.
        let Stats {
            queries,
            forwarded,
            answers,
            dropped_queries,
            formerr,
            notimp,
            servfail,
            overload,
            dropped_responses,
            timeouts,
            upstream_errors,
            tcp_retries,
            truncated,
            cache_hits,
            cache_misses,
            coalesced,
            stale_served,
            prefetches,
            near_misses,
            case_mismatches,
            moved_to_tcp,
            late_answers,
            tcp_queries,
            rng_failures,
            evicted_queries,
            loops,
            refused_acl,
            dropped_acl,
            rate_limited,
            slipped,
            tcp_refused,
            tcp_capped,
            tcp_evicted,
            tcp_slow,
            cache_evictions,
            cache_refused,
            local_answers,
            blocked,
            tls_upstream_handshakes,
            tls_upstream_resumed,
            tls_upstream_failures,
            tls_client_handshakes,
            tls_client_failures,
        } = other;
        self.queries += queries;
        self.forwarded += forwarded;
        self.answers += answers;
        self.dropped_queries += dropped_queries;
        self.formerr += formerr;
        self.notimp += notimp;
        self.servfail += servfail;
        self.overload += overload;
        self.dropped_responses += dropped_responses;
        self.timeouts += timeouts;
        self.upstream_errors += upstream_errors;
        self.tcp_retries += tcp_retries;
        self.truncated += truncated;
        self.cache_hits += cache_hits;
        self.cache_misses += cache_misses;
        self.coalesced += coalesced;
        self.stale_served += stale_served;
        self.prefetches += prefetches;
        self.near_misses += near_misses;
        self.case_mismatches += case_mismatches;
        self.moved_to_tcp += moved_to_tcp;
        self.late_answers += late_answers;
        self.tcp_queries += tcp_queries;
        self.rng_failures += rng_failures;
        self.evicted_queries += evicted_queries;
        self.loops += loops;
        self.refused_acl += refused_acl;
        self.dropped_acl += dropped_acl;
        self.rate_limited += rate_limited;
        self.slipped += slipped;
        self.tcp_refused += tcp_refused;
        self.tcp_capped += tcp_capped;
        self.tcp_evicted += tcp_evicted;
        self.tcp_slow += tcp_slow;
        self.cache_evictions += cache_evictions;
        self.cache_refused += cache_refused;
        self.local_answers += local_answers;
        self.blocked += blocked;
        self.tls_upstream_handshakes += tls_upstream_handshakes;
        self.tls_upstream_resumed += tls_upstream_resumed;
        self.tls_upstream_failures += tls_upstream_failures;
        self.tls_client_handshakes += tls_client_handshakes;
        self.tls_client_failures += tls_client_failures;
    }
}
