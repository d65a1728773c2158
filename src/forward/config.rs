//! The core's settings, with their defaults (as `crate::config::Config`'s).
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::reply;
use crate::cache::CacheConfig;
use crate::local::LocalData;

/// What the core needs to know (the shell's settings are in `crate::config`).
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    pub upstreams: Vec<SocketAddr>,
    /// UDP sockets per upstream, each on its own random port. Valid values: 1..=256.
    pub sockets_per_upstream: usize,
    /// Per attempt (`--timeout`).
    pub timeout: Duration,
    /// Per query, all attempts together (`--deadline`).
    pub deadline: Duration,
    /// Most queries in flight; past it, new queries get REFUSED (or a stale answer).
    pub max_pending: usize,
    /// The answer cache; `max_entries: 0` turns storing answers off (not coalescing).
    pub cache: CacheConfig,
    /// UDP payload size we advertise upstream (`--edns-size`, 512..=4096).
    pub edns_size: u16,
    /// Largest UDP answer we send a client, whatever it advertises (`--max-udp-size`,
    /// 512..=65535); bigger answers go out truncated (TC=1).
    pub max_udp_size: u16,
    /// Fewest bits an off-path forger who knows our ports must guess for an answer to be
    /// taken over UDP: 16 (ID) + log2 of the socket pool + one per letter of the name in
    /// random case. A query that offers fewer (a short name, an upstream that does not
    /// echo case, a small pool) is asked over TCP. 0 turns the floor off.
    pub min_guess_bits: u32,
    /// Most queries in flight started by one client (an IPv4 address or an IPv6 /64);
    /// 0 turns fair shares off (and the eviction of the heaviest client's queries).
    pub max_pending_per_client: usize,
    /// Per-domain upstreams: zone → addresses, each one of `upstreams`; the root zone
    /// is the default set (see [`routes`]). Empty: every upstream serves every name.
    pub routes: Vec<(crate::wire::Name, Vec<SocketAddr>)>,
    /// Local names and blocklists, answered before the cache ([`crate::local`]).
    pub local: Arc<LocalData>,
    /// Upstreams reached over a stream only (DNS over TLS): every attempt to them is
    /// a [`Dest::UpstreamTcp`] (the shell's TLS pool), and their names go in the case
    /// asked (no 0x20: nothing off-path can forge an answer inside TLS).
    pub stream_only: Vec<SocketAddr>,
}

/// A new query's two clock additions, in nanoseconds, worked out once from a config:
/// `now + Duration` multiplies the seconds out and checks for overflow, and the first
/// timer also took the `min` of two durations, each time a query starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueryTimes {
    /// `deadline`, in nanoseconds (saturating).
    pub deadline_ns: u64,
    /// The first attempt's timer: `timeout`, cut short by `deadline`.
    pub first_timer_ns: u64,
}

impl QueryTimes {
    pub fn of(cfg: &ForwarderConfig) -> QueryTimes {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        QueryTimes {
            deadline_ns: ns(cfg.deadline),
            first_timer_ns: ns(cfg.timeout.min(cfg.deadline)),
        }
    }
}

impl ForwarderConfig {
    /// Defaults for everything but the upstreams (as `crate::config::Config`'s).
    pub fn new(upstreams: Vec<SocketAddr>) -> ForwarderConfig {
        ForwarderConfig {
            upstreams,
            sockets_per_upstream: 256,
            timeout: Duration::from_millis(1500),
            deadline: Duration::from_millis(4500),
            max_pending: 10_000,
            cache: CacheConfig::default(),
            edns_size: reply::OUR_UDP_SIZE,
            max_udp_size: reply::OUR_UDP_SIZE,
            max_pending_per_client: 1_250,
            min_guess_bits: 32,
            routes: Vec::new(),
            local: Arc::default(),
            stream_only: Vec::new(),
        }
    }
}
