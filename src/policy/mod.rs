//! Admission policy, in front of the forwarding core: who may ask at all (the ACL),
//! how fast (per-client token buckets), who gets a TCP slot, and the answers written
//! for queries turned away. No sockets; time comes in as an argument.
//!
//! The shell asks [`Policy::admit_udp`] for every datagram before the core sees it,
//! and [`Policy::admit_tcp`] for every accepted connection. What they guarantee:
//! * a source outside the ACL never reaches the core; it gets REFUSED (with EDE 18
//!   when it sent EDNS) at most [`PolicyConfig::refusals_per_sec`] times a second in
//!   all, whatever the number of sources, and nothing beyond that;
//! * with a rate limit, a client (IPv4 address or IPv6 /64) gets at most its rate
//!   (plus the burst) of UDP queries through; one in `slip` of the rest gets TC=1;
//! * memory is fixed: the rate table is allocated once, the TCP counts hold one entry
//!   per address with a connection, the log limiter one per cause;
//! * with `--threads N`, the rate table and the refusal bucket are one for the whole
//!   process ([`Policy::with_buckets`]), so these limits hold in all, not per loop.
pub mod acl;
pub mod conns;
pub mod loops;
pub mod ratelimit;
pub mod refuse;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

pub use acl::{parse_cidr, Acl, Cidr};
pub use conns::{ConnCounts, ConnInfo, TcpAdmit};
pub use ratelimit::{client_key, Gcra, RateTable, Verdict};

use crate::clock::Instant;
use crate::lograte::LogLimiter;
use crate::stats::Stats;

/// Policy settings (part of [`crate::config::Config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Sources answered (`--allow`); empty means [`acl::DEFAULT_ALLOW`].
    pub allow: Vec<Cidr>,
    /// Per-client UDP rate limit (`--rate-limit`); `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// REFUSED answers sent per second in all, to sources outside the ACL (a burst of as
    /// many at once); the rest are dropped.
    pub refusals_per_sec: u32,
    /// Most TCP connections from one client (IPv4 address or IPv6 /64).
    pub max_tcp_per_client: usize,
}

/// `--rate-limit QPS`, `--rate-limit-burst N`, `--rate-limit-slip N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Valid values: 1..=1_000_000.
    pub qps: u32,
    /// Valid values: 1..
    pub burst: u32,
    /// Every `slip`-th query over the rate is answered TC=1; 0 never.
    pub slip: u32,
}

impl Default for PolicyConfig {
    fn default() -> PolicyConfig {
        PolicyConfig {
            allow: Vec::new(),
            rate_limit: None,
            refusals_per_sec: 100,
            max_tcp_per_client: 16,
        }
    }
}

/// What the shell does with a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Hand it to the core.
    Pass,
    /// Send this answer back to the source instead.
    Reply(Vec<u8>),
    /// Nothing.
    Drop,
}

/// Counters of what the policy turned away; added to [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub refused_acl: u64,
    pub dropped_acl: u64,
    pub rate_limited: u64,
    pub slipped: u64,
    pub tcp_refused: u64,
    pub tcp_capped: u64,
    pub tcp_evicted: u64,
    pub tcp_slow: u64,
}

/// A log line per cause at most this often.
pub const LOG_PERIOD: Duration = Duration::from_secs(10);

/// The buckets every loop of the process draws from: the per-client rate table and
/// the refusal bucket, with the epoch their times count from.
pub struct Buckets {
    epoch: Instant,
    refusals: Gcra,
    refusal_tat: AtomicU64,
    limiter: Option<RateTable>,
}

/// The policy's state (see the module docs).
pub struct Policy {
    acl: Acl,
    /// Whether `acl` is the default (for the log lines).
    default_acl: bool,
    buckets: Arc<Buckets>,
    pub tcp: ConnCounts,
    pub max_tcp_per_client: usize,
    log: LogLimiter,
    pub counters: Counters,
}

impl Buckets {
    /// The buckets of `cfg`: the refusal bucket, and the rate table if a rate limit is
    /// set. `secret` keys the table's hash (from the OS CSPRNG in the shell).
    pub fn new(cfg: &PolicyConfig, now: Instant, secret: [u64; 4]) -> Buckets {
        Buckets {
            epoch: now,
            refusals: Gcra::new(cfg.refusals_per_sec, cfg.refusals_per_sec),
            refusal_tat: AtomicU64::new(0),
            limiter: cfg
                .rate_limit
                .map(|r| RateTable::new(r.qps, r.burst, r.slip, secret)),
        }
    }
}

impl Policy {
    /// A policy with buckets of its own; `secret` keys the rate table's hash (from
    /// the OS CSPRNG in the shell).
    pub fn new(cfg: &PolicyConfig, now: Instant, secret: [u64; 4]) -> Policy {
        Policy::with_buckets(cfg, Arc::new(Buckets::new(cfg, now, secret)))
    }

    /// A policy drawing from `buckets` (another loop's, made from the same settings):
    /// one rate limit and one refusal pace for the whole process. It builds no rate
    /// table of its own.
    pub fn with_buckets(cfg: &PolicyConfig, buckets: Arc<Buckets>) -> Policy {
        let default_acl = cfg.allow.is_empty();
        Policy {
            acl: if default_acl {
                Acl::private()
            } else {
                Acl::new(&cfg.allow)
            },
            default_acl,
            buckets,
            tcp: ConnCounts::default(),
            max_tcp_per_client: cfg.max_tcp_per_client.max(1),
            log: LogLimiter::new(LOG_PERIOD),
            counters: Counters::default(),
        }
    }

    /// This policy's buckets, for the other loops of the process to share
    /// ([`Policy::with_buckets`], [`Policy::share`]).
    pub fn buckets(&self) -> Arc<Buckets> {
        Arc::clone(&self.buckets)
    }

    /// Draws from `buckets` (another loop's, made from the same settings) instead of
    /// the ones this policy has now. [`Policy::with_buckets`] is the way to start
    /// sharing (it builds no table); this is for a policy already running.
    pub fn share(&mut self, buckets: Arc<Buckets>) {
        self.buckets = buckets;
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.nanos_since(self.buckets.epoch)
    }

    /// Whether `ip` may be answered at all.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.acl.allows(ip)
    }

    /// Decides on one datagram from `src` before the core sees it.
    pub fn admit_udp(&mut self, now: Instant, src: SocketAddr, query: &[u8]) -> Admit {
        if !self.acl.allows(src.ip()) {
            return self.refuse(now, src, query);
        }
        // No clock arithmetic unless a rate limit is set (off by default).
        let Some(limiter) = self.buckets.limiter.as_ref() else {
            return Admit::Pass;
        };
        let verdict = limiter.check(client_key(src.ip()), self.nanos(now));
        if verdict == Verdict::Pass {
            return Admit::Pass;
        }
        self.counters.rate_limited += 1;
        if let Some(n) = self.log.hit(now, "rate-limited") {
            log::info!("queries over --rate-limit dropped, latest from {src}{n}");
        }
        match verdict {
            Verdict::Slip => match refuse::truncated(query) {
                Some(r) => {
                    self.counters.slipped += 1;
                    Admit::Reply(r)
                }
                None => Admit::Drop,
            },
            _ => Admit::Drop,
        }
    }

    fn refuse(&mut self, now: Instant, src: SocketAddr, query: &[u8]) -> Admit {
        let t = self.nanos(now);
        let b = &self.buckets;
        let reply = if b.refusals.take_shared(&b.refusal_tat, t) {
            refuse::refused(query)
        } else {
            None
        };
        if let Some(n) = self.log.hit(now, "acl-udp") {
            log::info!(
                "queries from outside {} refused, latest from {src}{n}",
                self.acl_name()
            );
        }
        match reply {
            Some(r) => {
                self.counters.refused_acl += 1;
                Admit::Reply(r)
            }
            None => {
                self.counters.dropped_acl += 1;
                Admit::Drop
            }
        }
    }

    fn acl_name(&self) -> &'static str {
        if self.default_acl {
            "the private ranges (no --allow given)"
        } else {
            "--allow"
        }
    }

    /// Decides on a TCP connection from `src`: `None` if the ACL refuses it (close it
    /// at once), else what [`ConnCounts::admit`] says. `conns` describes the open
    /// connections; it is read only when the caps are reached.
    pub fn admit_tcp(
        &mut self,
        now: Instant,
        src: SocketAddr,
        max_total: usize,
        conns: impl Iterator<Item = ConnInfo>,
    ) -> Option<TcpAdmit> {
        if !self.acl.allows(src.ip()) {
            self.counters.tcp_refused += 1;
            if let Some(n) = self.log.hit(now, "acl-tcp") {
                let acl = self.acl_name();
                log::info!("TCP connections from outside {acl} closed, latest from {src}{n}");
            }
            return None;
        }
        let key = client_key(src.ip());
        let per = self.max_tcp_per_client;
        let verdict = self.tcp.admit(now, key, max_total, per, conns);
        let why = match verdict {
            TcpAdmit::Accept => return Some(verdict),
            TcpAdmit::Evict(_) => {
                self.counters.tcp_evicted += 1;
                return Some(verdict);
            }
            TcpAdmit::OverCap => "already holds --max-tcp-per-client connections",
            TcpAdmit::Full => "--max-tcp-clients reached, no connection may give way",
        };
        self.counters.tcp_capped += 1;
        if let Some(n) = self.log.hit(now, "tcp-cap") {
            log::info!("TCP connection from {src} refused: {why}{n}");
        }
        Some(verdict)
    }

    /// Counts a client connection closed for sending too slowly (a partial message
    /// held past the frame time).
    pub fn slow_tcp(&mut self, now: Instant, src: SocketAddr) {
        self.counters.tcp_slow += 1;
        if let Some(n) = self.log.hit(now, "tcp-slow") {
            log::info!("TCP client {src} closed: a message took too long to arrive{n}");
        }
    }

    /// Octets of the rate table (0 without a rate limit).
    pub fn rate_table_memory(&self) -> usize {
        self.buckets.limiter.as_ref().map_or(0, RateTable::memory)
    }

    /// Adds the policy's counters to the core's.
    pub fn add_to(&self, s: &mut Stats) {
        let c = &self.counters;
        s.refused_acl += c.refused_acl;
        s.dropped_acl += c.dropped_acl;
        s.rate_limited += c.rate_limited;
        s.slipped += c.slipped;
        s.tcp_refused += c.tcp_refused;
        s.tcp_capped += c.tcp_capped;
        s.tcp_evicted += c.tcp_evicted;
        s.tcp_slow += c.tcp_slow;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_message, Rcode};

    fn query() -> Vec<u8> {
        // header: ID 1, RD, QDCOUNT 1; question: a. A IN
        #[rustfmt::skip]
        let q = vec![
            0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
            1, b'a', 0, 0, 1, 0, 1,
        ];
        q
    }

    fn policy(cfg: PolicyConfig) -> (Policy, Instant) {
        let now = Instant::now();
        (Policy::new(&cfg, now, [1, 2, 3, 4]), now)
    }

    #[test]
    fn refusals_are_paced_globally() {
        let (mut p, t0) = policy(PolicyConfig {
            allow: vec![parse_cidr("127.0.0.2").unwrap()],
            refusals_per_sec: 10,
            ..PolicyConfig::default()
        });
        let ok: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        assert_eq!(p.admit_udp(t0, ok, &query()), Admit::Pass);
        let mut replies = 0;
        for i in 0..1000u32 {
            // Each from another (spoofed) source: the bucket is global.
            let src = SocketAddr::from(([203, 0, (i >> 8) as u8, i as u8], 53));
            if let Admit::Reply(r) = p.admit_udp(t0, src, &query()) {
                assert_eq!(parse_message(&r).unwrap().rcode(), Rcode::REFUSED);
                replies += 1;
            }
        }
        assert_eq!(replies, 10);
        assert_eq!((p.counters.refused_acl, p.counters.dropped_acl), (10, 990));
        let later = t0 + Duration::from_secs(1);
        let src = SocketAddr::from(([203, 0, 113, 1], 53));
        assert!(matches!(p.admit_udp(later, src, &query()), Admit::Reply(_)));
    }

    #[test]
    fn loops_sharing_buckets_share_the_limits() {
        let cfg = PolicyConfig {
            allow: vec![parse_cidr("10.0.0.0/8").unwrap()],
            rate_limit: Some(RateLimit {
                qps: 1,
                burst: 10,
                slip: 0,
            }),
            refusals_per_sec: 5,
            ..PolicyConfig::default()
        };
        let c: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let outside: SocketAddr = "198.51.100.1:1".parse().unwrap();
        // What two loops let through, with their own buckets or with loop 0's.
        let through = |shared: bool| {
            let t0 = Instant::now();
            let mut a = Policy::new(&cfg, t0, [1, 2, 3, 4]);
            let mut b = if shared {
                Policy::with_buckets(&cfg, a.buckets())
            } else {
                Policy::new(&cfg, t0, [5, 6, 7, 8])
            };
            let mut passed = 0;
            let mut refused = 0;
            for p in [&mut a, &mut b] {
                passed += (0..30)
                    .filter(|_| p.admit_udp(t0, c, &query()) == Admit::Pass)
                    .count();
                refused += (0..30)
                    .filter(|_| matches!(p.admit_udp(t0, outside, &query()), Admit::Reply(_)))
                    .count();
            }
            (passed, refused)
        };
        assert_eq!(through(true), (10, 5));
        // The control: two separate tables give the client (and the refusals) twice.
        assert_eq!(through(false), (20, 10));
    }

    #[test]
    fn a_sharing_policy_builds_no_table_of_its_own() {
        let cfg = PolicyConfig {
            rate_limit: Some(RateLimit {
                qps: 1,
                burst: 10,
                slip: 0,
            }),
            ..PolicyConfig::default()
        };
        let a = Policy::new(&cfg, Instant::now(), [1, 2, 3, 4]);
        let b = Policy::with_buckets(&cfg, a.buckets());
        // One set of buckets, held by the two policies and nothing else: `b` made none.
        assert!(Arc::ptr_eq(&a.buckets, &b.buckets));
        assert_eq!(Arc::strong_count(&a.buckets), 2);
        assert_eq!(b.rate_table_memory(), a.rate_table_memory());
        assert!(a.rate_table_memory() > 0);
    }

    #[test]
    fn default_acl_and_no_limit_pass_private_sources() {
        let (mut p, t0) = policy(PolicyConfig::default());
        let lan: SocketAddr = "192.168.1.20:40000".parse().unwrap();
        for _ in 0..10_000 {
            assert_eq!(p.admit_udp(t0, lan, &query()), Admit::Pass);
        }
        assert_eq!(p.rate_table_memory(), 0);
        let public: SocketAddr = "198.51.100.1:40000".parse().unwrap();
        assert!(matches!(p.admit_udp(t0, public, &query()), Admit::Reply(_)));
        assert!(p.admit_tcp(t0, public, 10, std::iter::empty()).is_none());
        assert_eq!(p.counters.tcp_refused, 1);
    }

    #[test]
    fn rate_limit_drops_and_slips() {
        let (mut p, t0) = policy(PolicyConfig {
            rate_limit: Some(RateLimit {
                qps: 5,
                burst: 10,
                slip: 2,
            }),
            ..PolicyConfig::default()
        });
        let c: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let got: Vec<Admit> = (0..30).map(|_| p.admit_udp(t0, c, &query())).collect();
        assert_eq!(got.iter().filter(|a| **a == Admit::Pass).count(), 10);
        let tc = got
            .iter()
            .filter_map(|a| match a {
                Admit::Reply(r) => Some(parse_message(r).unwrap().header.tc),
                _ => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(tc, [true; 10]);
        assert_eq!((p.counters.rate_limited, p.counters.slipped), (20, 10));
        // Another port of the same address is the same client; another address is not.
        let same: SocketAddr = "10.0.0.1:2".parse().unwrap();
        assert_ne!(p.admit_udp(t0, same, &query()), Admit::Pass);
        let other: SocketAddr = "10.0.0.2:1".parse().unwrap();
        assert_eq!(p.admit_udp(t0, other, &query()), Admit::Pass);
    }
}
