//! Settings: every default in one `impl Default`, the command line turned into a
//! [`Config`], and the fallback to the nameservers of /etc/resolv.conf.
mod args;
mod parse;

use std::net::SocketAddr;
use std::time::Duration;

use crate::cache::CacheConfig;
use crate::local::LocalConfig;
use crate::policy::PolicyConfig;

pub use parse::{parse_bytes, parse_listen, parse_listen_tls, parse_metrics, parse_threads};
pub use parse::{parse_upstream, parse_upstream_tls, resolv_conf_nameservers};

/// Everything the server needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses to listen on, UDP and TCP each.
    pub listen: Vec<SocketAddr>,
    /// Every upstream address: the default set, then those only zones use.
    pub upstreams: Vec<SocketAddr>,
    /// Per-domain upstreams (`--upstream ZONE=ADDR`), the root zone (the default set)
    /// first; empty when no zone is given.
    pub routes: Vec<(crate::wire::Name, Vec<SocketAddr>)>,
    /// Per attempt.
    pub timeout: Duration,
    /// Per query, all attempts together.
    pub deadline: Duration,
    /// A client TCP connection with nothing in flight is closed after this long.
    pub tcp_idle: Duration,
    /// Most client TCP connections at once; the oldest idle one makes room.
    pub max_tcp_clients: usize,
    /// Most queries in flight upstream at once.
    pub max_pending: usize,
    /// UDP sockets (each on a random port) per upstream.
    pub sockets_per_upstream: usize,
    pub cache: CacheConfig,
    /// UDP payload size advertised to upstreams in our queries (512..=4096).
    pub edns_size: u16,
    /// Largest UDP answer sent to a client, whatever it advertises (512..=65535).
    pub max_udp_size: u16,
    /// Most queries in flight started by one client (IPv4 address, IPv6 /64).
    pub max_pending_per_client: usize,
    /// Fewest bits a blind forger must guess for a UDP answer; queries offering fewer go
    /// over TCP (see `ForwarderConfig::min_guess_bits`).
    pub min_guess_bits: u32,
    /// Who may ask and how fast: ACL, rate limit, TCP per-client cap.
    pub policy: PolicyConfig,
    /// Switch to this user after binding, when started as root (`--user`).
    pub user: Option<String>,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// One log line per answer (target `dnsfwd::query`).
    pub log_queries: bool,
    /// Hosts files, local records, blocklists (read by `crate::local::LocalData::load`).
    pub local: LocalConfig,
    /// DNS over TLS: upstreams, the DoT listener and its certificate.
    pub tls: TlsConfig,
    /// Event loops (`--threads`), 1..=MAX_THREADS.
    pub threads: usize,
}

/// Most event loops `--threads` may ask for.
pub const MAX_THREADS: usize = 256;

/// DNS over TLS settings (`--upstream tls://…`, `--tls-ca`, `--listen-tls`,
/// `--tls-cert`, `--tls-key`); the files are read by `server::tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The upstreams reached over TLS (each also in `Config::upstreams`) and the name
    /// each one's certificate must carry.
    pub upstreams: Vec<(SocketAddr, String)>,
    /// Trust only this CA (PEM) for upstream certificates; `None`: the system's roots.
    pub ca: Option<std::path::PathBuf>,
    /// Where to answer DNS over TLS.
    pub listen: Vec<SocketAddr>,
    /// The listener's certificate chain and private key (PEM); set when `listen` is not
    /// empty.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1053))],
            upstreams: Vec::new(),
            routes: Vec::new(),
            timeout: Duration::from_millis(1500),
            deadline: Duration::from_millis(4500),
            tcp_idle: Duration::from_secs(10),
            max_tcp_clients: 256,
            // Unbound's num-queries-per-thread is 1024 (dnsmasq's dns-forward-max, 150):
            // 10000 in flight carries ~100k q/s at 100 ms, in ~10 MiB when full.
            max_pending: 10_000,
            // 8 bits of the 32 a blind forger must guess (see `min_guess_bits`).
            sockets_per_upstream: 256,
            cache: CacheConfig::default(),
            // The DNS Flag Day 2020 value: no IP fragmentation on common paths, and a
            // small amplification factor for spoofed-source queries.
            edns_size: 1232,
            max_udp_size: 1232,
            // An eighth of the table: a flood from one source leaves the rest to others,
            // and 1250 in flight still carries ten thousand queries a second at 100 ms.
            max_pending_per_client: 1_250,
            min_guess_bits: 32,
            policy: PolicyConfig::default(),
            user: None,
            metrics: None,
            log_queries: false,
            local: LocalConfig::default(),
            tls: TlsConfig::default(),
            threads: 1,
        }
    }
}

/// Why the settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// No `--upstream` and no usable nameserver in resolv.conf.
    NoUpstreams(String),
    TooManyUpstreams(usize),
    /// A value out of range (flag, reason).
    Invalid(&'static str, String),
    /// The `--config` file is unreadable or wrong: where, and why (src/config_file.rs).
    File {
        path: String,
        line: Option<usize>,
        key: Option<String>,
        why: String,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NoUpstreams(why) => {
                write!(f, "no upstream resolver: give --upstream ADDR ({why})")
            }
            ConfigError::TooManyUpstreams(n) => write!(f, "{n} upstreams given; at most 64"),
            ConfigError::Invalid(flag, why) => write!(f, "invalid {flag}: {why}"),
            ConfigError::File {
                path,
                line,
                key,
                why,
            } => {
                write!(f, "{path}")?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                }
                if let Some(key) = key {
                    write!(f, ": {key}")?;
                }
                write!(f, ": {}", why.lines().next().unwrap_or(why))
            }
        }
    }
}

impl std::error::Error for ConfigError {}
