//! `--metrics`: the counters in the Prometheus text exposition format (0.0.4), as
//! CoreDNS serves them on :9153. The core and the shell keep plain `u64` counters
//! ([`crate::stats::Stats`], [`crate::forward::events::Events`]); a scrape copies them
//! into a [`Snapshot`] and only then encodes it with `prometheus-client`, so nothing on
//! the query path knows about Prometheus.
use std::fmt;
use std::net::SocketAddr;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::forward::events::{
    rtt_bucket_le, AnswerSource, Events, FailKind, UpstreamCounters, RCODES, RTT_BUCKETS,
};
use crate::stats::Stats;
use crate::wire::Rcode;

/// The `Content-Type` of the exposition.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Everything a scrape shows, copied out of the running server.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub stats: Stats,
    /// Answers not sent because a socket refused them (the shell's count).
    pub send_errors: u64,
    pub queries_udp: u64,
    pub queries_tcp: u64,
    pub answers: [[u64; crate::forward::events::SOURCES]; RCODES],
    pub upstreams: Vec<(SocketAddr, UpstreamCounters)>,
    pub cache_entries: usize,
    pub pending: usize,
}

impl Snapshot {
    pub fn new(stats: Stats, events: &Events) -> Snapshot {
        Snapshot {
            stats,
            send_errors: 0,
            queries_udp: events.queries_udp,
            queries_tcp: events.queries_tcp,
            answers: events.answers,
            upstreams: events
                .upstream_addrs
                .iter()
                .copied()
                .zip(events.upstreams.iter().cloned())
                .collect(),
            cache_entries: 0,
            pending: 0,
        }
    }
}

/// The exposition of `snap` (Prometheus text format 0.0.4).
pub fn render(snap: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snap));
    let mut out = String::with_capacity(16 << 10);
    // Writing into a String cannot fail; an error here would be a bug in the encoder.
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
        log::warn!("metrics: the exposition could not be encoded");
    }
    out
}

type Field = fn(&Stats) -> u64;

/// The counters of [`Stats`] shown as `dnsfwd_<name>_total` (the encoder adds `_total`).
const STATS: &[(&str, &str, Field)] = &[
    ("cache_hits", "Queries answered from the cache.", |s| s.cache_hits),
    ("cache_misses", "Queries the cache could not answer.", |s| s.cache_misses),
    ("forwarded", "Questions sent upstream (retries not counted).", |s| s.forwarded),
    ("dropped_queries", "Client packets dropped: shorter than a header, or QR=1.", |s| s.dropped_queries),
    ("dropped_responses", "Upstream packets dropped: unparseable, unknown ID, wrong source or question.", |s| s.dropped_responses),
    ("overload", "Queries refused because the pending table was full.", |s| s.overload),
    ("timeouts", "Upstream attempts that timed out.", |s| s.timeouts),
    ("upstream_errors", "Upstream attempts that failed at once (ICMP unreachable, TCP refused or reset).", |s| s.upstream_errors),
    ("tcp_retries", "Truncated UDP answers fetched again over TCP.", |s| s.tcp_retries),
    ("truncated", "Answers cut to the client's UDP size (TC=1).", |s| s.truncated),
    ("coalesced", "Queries that waited on an identical one in flight.", |s| s.coalesced),
    ("stale_served", "Answers served stale (RFC 8767).", |s| s.stale_served),
    ("prefetches", "Cache entries refreshed before they expired.", |s| s.prefetches),
    ("near_misses", "Upstream answers for a question in flight that failed the ID, port or case check (forgeries).", |s| s.near_misses),
    ("case_mismatches", "Answers with our ID and port but not our letter case (0x20).", |s| s.case_mismatches),
    ("moved_to_tcp", "Queries moved from UDP to TCP after a near miss.", |s| s.moved_to_tcp),
    ("late_answers", "Answers to attempts of queries already finished.", |s| s.late_answers),
    ("upstream_tcp_queries", "Attempts sent to upstreams over TCP.", |s| s.tcp_queries),
    ("rng_failures", "Queries answered SERVFAIL because the random generator failed.", |s| s.rng_failures),
    ("evicted_queries", "Queries in flight ended to make room for another client's (fair shares).", |s| s.evicted_queries),
    ("loops", "Our own upstream queries that came back as client queries (forwarding loops).", |s| s.loops),
    ("local_answers", "Queries answered from hosts files and local records.", |s| s.local_answers),
    ("blocked", "Queries answered for a blocklisted name.", |s| s.blocked),
    ("refused_acl", "Queries from sources outside the ACL answered REFUSED.", |s| s.refused_acl),
    ("dropped_acl", "Packets from sources outside the ACL dropped.", |s| s.dropped_acl),
    ("rate_limited", "UDP queries over their client's --rate-limit.", |s| s.rate_limited),
    ("slipped", "Rate-limited queries answered TC=1.", |s| s.slipped),
    ("tcp_refused", "TCP connections from outside the ACL closed at accept.", |s| s.tcp_refused),
    ("tcp_capped", "TCP connections turned away at the per-client or total cap.", |s| s.tcp_capped),
    ("tcp_evicted", "TCP connections closed to make room for another client's.", |s| s.tcp_evicted),
    ("tcp_slow", "TCP connections closed for a message that took too long (slowloris).", |s| s.tcp_slow),
    ("cache_evictions", "Cache entries evicted to make room.", |s| s.cache_evictions),
    ("cache_refused", "Cacheable answers too big to cache.", |s| s.cache_refused),
    ("tls_upstream_handshakes", "TLS handshakes completed with tls:// upstreams.", |s| s.tls_upstream_handshakes),
    ("tls_upstream_resumed", "Of those, resumed sessions.", |s| s.tls_upstream_resumed),
    ("tls_upstream_failures", "Connections to tls:// upstreams that failed in TLS (certificate, name, handshake).", |s| s.tls_upstream_failures),
    ("tls_client_handshakes", "TLS handshakes completed by --listen-tls clients.", |s| s.tls_client_handshakes),
    ("tls_client_failures", "--listen-tls connections that failed in TLS (not TLS, timeout, protocol error).", |s| s.tls_client_failures),
];

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.encode_traffic(&mut enc)?;
        for (name, help, field) in STATS {
            let name = format!("dnsfwd_{name}");
            let m = enc.encode_descriptor(&name, help, None, MetricType::Counter)?;
            counter(m, field(&self.stats))?;
        }
        let m = enc.encode_descriptor(
            "dnsfwd_send_errors",
            "Datagrams not sent: socket buffer full or similar local failures.",
            None,
            MetricType::Counter,
        )?;
        counter(m, self.send_errors)?;
        let m = enc.encode_descriptor(
            "dnsfwd_cache_entries",
            "Entries in the answer cache.",
            None,
            MetricType::Gauge,
        )?;
        gauge(m, self.cache_entries)?;
        let m = enc.encode_descriptor(
            "dnsfwd_pending",
            "Queries in flight upstream.",
            None,
            MetricType::Gauge,
        )?;
        gauge(m, self.pending)?;
        self.encode_upstreams(&mut enc)
    }
}

impl Snapshot {
    /// `dnsfwd_queries_total{transport}` and `dnsfwd_responses_total{rcode,source}`.
    fn encode_traffic(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut m = enc.encode_descriptor(
            "dnsfwd_queries",
            "Queries received from clients (not dropped), by transport.",
            None,
            MetricType::Counter,
        )?;
        for (transport, n) in [("udp", self.queries_udp), ("tcp", self.queries_tcp)] {
            counter(m.encode_family(&[("transport", transport)])?, n)?;
        }
        let mut m = enc.encode_descriptor(
            "dnsfwd_responses",
            "Answers sent to clients, by RCODE (header bits) and source.",
            None,
            MetricType::Counter,
        )?;
        for (rcode, by_source) in self.answers.iter().enumerate() {
            let name = Rcode(rcode as u16).name();
            for (source, &n) in AnswerSource::ALL.iter().zip(by_source) {
                // NOERROR/NXDOMAIN/SERVFAIL... from every source are always shown (so
                // that rate() works from the first answer); other RCODEs once seen.
                if n == 0 && rcode > 5 {
                    continue;
                }
                let labels = [("rcode", name.as_ref()), ("source", source.as_str())];
                counter(m.encode_family(&labels)?, n)?;
            }
        }
        Ok(())
    }

    /// `dnsfwd_upstream_rtt_seconds{upstream}` and
    /// `dnsfwd_upstream_failures_total{upstream,kind}`.
    fn encode_upstreams(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let addrs: Vec<String> = self.upstreams.iter().map(|(a, _)| a.to_string()).collect();
        let mut m = enc.encode_descriptor(
            "dnsfwd_upstream_rtt_seconds",
            "Time from sending an attempt to its accepted answer, by upstream.",
            None,
            MetricType::Histogram,
        )?;
        for (addr, (_, u)) in addrs.iter().zip(&self.upstreams) {
            let buckets: Vec<(f64, u64)> = (0..RTT_BUCKETS)
                .map(|i| (rtt_bucket_le(i), u.rtt.get(i).copied().unwrap_or(0)))
                .collect();
            let sum = u.rtt_sum_us as f64 / 1e6;
            m.encode_family(&[("upstream", addr.as_str())])?
                .encode_histogram::<NoLabelSet>(sum, u.rtt_count, &buckets, None)?;
        }
        let mut m = enc.encode_descriptor(
            "dnsfwd_upstream_failures",
            "Failed attempts by upstream and kind (timeout, unreachable, tcp, or the \
             upstream's servfail, refused, notimp).",
            None,
            MetricType::Counter,
        )?;
        for (addr, (_, u)) in addrs.iter().zip(&self.upstreams) {
            for (kind, &n) in FailKind::ALL.iter().zip(&u.failures) {
                let labels = [("upstream", addr.as_str()), ("kind", kind.as_str())];
                counter(m.encode_family(&labels)?, n)?;
            }
        }
        Ok(())
    }
}

fn counter(mut m: prometheus_client::encoding::MetricEncoder<'_>, n: u64) -> fmt::Result {
    m.encode_counter::<NoLabelSet, _, u64>(&n, None)
}

fn gauge(mut m: prometheus_client::encoding::MetricEncoder<'_>, n: usize) -> fmt::Result {
    m.encode_gauge(&(n as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let up: SocketAddr = "127.0.0.1:5300".parse().unwrap();
        let mut events = Events::new(&[up], Duration::from_secs(4));
        events.upstream_answered(0, 300, Rcode::NOERROR);
        events.upstream_answered(0, 3_000, Rcode::SERVFAIL);
        let stats = Stats {
            cache_hits: 7,
            near_misses: 2,
            ..Stats::default()
        };
        let mut snap = Snapshot::new(stats, &events);
        snap.cache_entries = 5;
        snap.pending = 1;
        let text = render(snap);
        for line in [
            "# TYPE dnsfwd_cache_hits_total counter",
            "dnsfwd_cache_hits_total 7",
            "dnsfwd_near_misses_total 2",
            "dnsfwd_queries_total{transport=\"udp\"} 0",
            "dnsfwd_responses_total{rcode=\"NXDOMAIN\",source=\"cache\"} 0",
            "dnsfwd_cache_entries 5",
            "dnsfwd_pending 1",
            "dnsfwd_upstream_rtt_seconds_bucket{upstream=\"127.0.0.1:5300\",le=\"0.00025\"} 0",
            "dnsfwd_upstream_rtt_seconds_bucket{upstream=\"127.0.0.1:5300\",le=\"0.0005\"} 1",
            "dnsfwd_upstream_rtt_seconds_bucket{upstream=\"127.0.0.1:5300\",le=\"+Inf\"} 2",
            "dnsfwd_upstream_rtt_seconds_count{upstream=\"127.0.0.1:5300\"} 2",
            "dnsfwd_upstream_failures_total{upstream=\"127.0.0.1:5300\",kind=\"servfail\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }
}
