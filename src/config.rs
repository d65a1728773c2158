//! Settings: every default in one `impl Default`, the command line turned into a
//! [`Config`], and the fallback to the nameservers of /etc/resolv.conf.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::cache::CacheConfig;
use crate::cli::ServeArgs;
use crate::forward::routes;
use crate::local::LocalConfig;
use crate::policy::{loops, PolicyConfig, RateLimit};

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

/// Parses `--threads`: a number in 1..=MAX_THREADS, or `auto` (the cores this process
/// may run on, as `std::thread::available_parallelism` counts them).
pub fn parse_threads(s: &str) -> Result<usize, String> {
    let n = match s {
        "auto" => std::thread::available_parallelism().map_or(1, |n| n.get()),
        _ => s
            .parse::<usize>()
            .map_err(|_| format!("{s:?} is neither a number nor \"auto\""))?,
    };
    match n {
        1..=MAX_THREADS => Ok(n),
        _ => Err(format!("{n} is not in 1..={MAX_THREADS}")),
    }
}

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

/// Parses `ADDR[:PORT]` for `--listen-tls` (as `--listen`, port 853 by default).
pub fn parse_listen_tls(s: &str) -> Result<SocketAddr, String> {
    parse_listen(s).and_then(|_| parse_addr(s, 853))
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

/// Parses `ADDR[:PORT]` for `--upstream`: `9.9.9.9`, `9.9.9.9:5353`, `2620:fe::fe`,
/// `[2620:fe::fe]:53`. The port defaults to 53.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    parse_addr(s, 53)
}

/// Parses `ADDR[:PORT]` of a `tls://` upstream: as [`parse_upstream`], port 853.
pub fn parse_upstream_tls(s: &str) -> Result<SocketAddr, String> {
    parse_listen(s).and_then(|_| parse_addr(s, 853))
}

/// Parses a size for `--cache-memory`: octets, or with a suffix `K`, `M` or `G` (also
/// `KB`/`KiB` and so on; all are powers of 1024), e.g. `512K`, `32M`, `1G`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, suffix) = s.split_at(digits);
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => Some(0),
        "K" | "KB" | "KIB" => Some(10),
        "M" | "MB" | "MIB" => Some(20),
        "G" | "GB" | "GIB" => Some(30),
        _ => None,
    };
    shift
        .zip(n.parse::<u64>().ok())
        .and_then(|(shift, n)| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{s}' is not a size such as 512K, 32M or 1G"))
}

/// Parses `ADDR[:PORT]` for `--metrics` (a bare address gets CoreDNS's port 9153).
pub fn parse_metrics(s: &str) -> Result<SocketAddr, String> {
    parse_addr(s, 9153)
}

/// Parses `ADDR:PORT` for `--listen` (a bare address gets port 53). An IPv6 address
/// needs brackets: `::1:1053` is itself an IPv6 address, so it is refused with a hint.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if !s.starts_with('[') && s.matches(':').count() > 1 {
        let hint = s
            .rsplit_once(':')
            .filter(|(ip, port)| ip.parse::<IpAddr>().is_ok() && port.parse::<u16>().is_ok())
            .map_or_else(
                || format!("[{s}]:53"),
                |(ip, port)| format!("[{ip}]:{port}"),
            );
        return Err(format!(
            "'{s}': an IPv6 address goes in brackets before its port; write {hint}"
        ));
    }
    parse_addr(s, 53)
}

fn parse_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("'{s}' is not an IP address with an optional port"))
}

/// The `nameserver` lines of a resolv.conf, on port 53, without the ones that are us.
pub fn resolv_conf_nameservers(text: &str, listen: &[SocketAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // A scope suffix (fe80::1%eth0) is not something we can bind to here.
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|ns| !is_self(*ns, listen))
        .collect()
}

/// Whether sending to `ns` would reach one of our own listening sockets.
fn is_self(ns: SocketAddr, listen: &[SocketAddr]) -> bool {
    listen.iter().any(|l| {
        l.port() == ns.port()
            && (l.ip() == ns.ip() || (l.ip().is_unspecified() && ns.ip().is_loopback()))
    })
}

fn millis(flag: &'static str, ms: u64) -> Result<Duration, ConfigError> {
    if ms == 0 || ms > 3_600_000 {
        return Err(ConfigError::Invalid(
            flag,
            format!("{ms} ms is not in 1..=3600000"),
        ));
    }
    Ok(Duration::from_millis(ms))
}

impl Config {
    /// Settings from the command line; `resolv_conf` is the text of /etc/resolv.conf (or
    /// `None` if it could not be read), used when no `--upstream` is given.
    pub fn from_args(args: &ServeArgs, resolv_conf: Option<&str>) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        if !args.listen.is_empty() {
            cfg.listen = args.listen.clone();
        }
        let (defaults, zones) = routes::split(&args.upstream);
        cfg.upstreams = defaults;
        if cfg.upstreams.is_empty() {
            let text = resolv_conf.ok_or_else(|| {
                ConfigError::NoUpstreams("/etc/resolv.conf could not be read".into())
            })?;
            cfg.upstreams = resolv_conf_nameservers(text, &cfg.listen);
            if cfg.upstreams.is_empty() {
                return Err(ConfigError::NoUpstreams(
                    "/etc/resolv.conf names no nameserver other than this forwarder".into(),
                ));
            }
        }
        cfg.routes = routes::attach(&mut cfg.upstreams, zones);
        if cfg.upstreams.len() > 64 {
            return Err(ConfigError::TooManyUpstreams(cfg.upstreams.len()));
        }
        if let Some(ms) = args.timeout {
            cfg.timeout = millis("--timeout", ms)?;
        }
        if let Some(ms) = args.deadline {
            cfg.deadline = millis("--deadline", ms)?;
        }
        if let Some(ms) = args.tcp_idle {
            cfg.tcp_idle = millis("--tcp-idle", ms)?;
        }
        if let Some(n) = args.max_tcp_clients {
            if n == 0 || n > 65536 {
                return Err(ConfigError::Invalid(
                    "--max-tcp-clients",
                    format!("{n} is not in 1..=65536"),
                ));
            }
            cfg.max_tcp_clients = n;
        }
        if let Some(n) = args.cache_size {
            if n > 10_000_000 {
                return Err(ConfigError::Invalid(
                    "--cache-size",
                    format!("{n} is more than 10000000"),
                ));
            }
            cfg.cache.max_entries = n;
        }
        if let Some(n) = args.cache_memory {
            // Below 64 KiB an answer could take at most 512 octets (1/128 of the budget).
            const RANGE: std::ops::RangeInclusive<u64> = 64 << 10..=64 << 30;
            cfg.cache.max_bytes = usize::try_from(n)
                .ok()
                .filter(|_| RANGE.contains(&n))
                .ok_or_else(|| {
                    ConfigError::Invalid(
                        "--cache-memory",
                        format!("{n} bytes is not between 64K and 64G"),
                    )
                })?;
        }
        if let Some(s) = args.cache_min_ttl {
            cfg.cache.min_ttl = s;
        }
        if let Some(s) = args.cache_max_ttl {
            cfg.cache.max_ttl = s;
        }
        if cfg.cache.min_ttl > cfg.cache.max_ttl {
            return Err(ConfigError::Invalid(
                "--cache-min-ttl",
                format!(
                    "{} is above --cache-max-ttl {}",
                    cfg.cache.min_ttl, cfg.cache.max_ttl
                ),
            ));
        }
        if let Some(s) = args.stale_ttl {
            cfg.cache.stale_ttl = s;
        }
        cfg.cache.serve_stale = !args.no_serve_stale;
        if let Some(n) = args.edns_size {
            if !(512..=4096).contains(&n) {
                return Err(ConfigError::Invalid(
                    "--edns-size",
                    format!("{n} is not in 512..=4096"),
                ));
            }
            cfg.edns_size = n;
        }
        if let Some(n) = args.max_pending {
            if n == 0 || n > 20_000 {
                return Err(ConfigError::Invalid(
                    "--max-pending",
                    format!("{n} is not in 1..=20000"),
                ));
            }
            cfg.max_pending = n;
            cfg.max_pending_per_client = cfg.max_pending_per_client.min(n);
        }
        if let Some(n) = args.max_pending_per_client {
            if n > cfg.max_pending {
                return Err(ConfigError::Invalid(
                    "--max-pending-per-client",
                    format!("{n} is not in 0..={}", cfg.max_pending),
                ));
            }
            cfg.max_pending_per_client = n;
        }
        if let Some(n) = args.threads {
            cfg.threads = n;
        }
        if let Some(n) = args.max_udp_size {
            if n < 512 {
                return Err(ConfigError::Invalid(
                    "--max-udp-size",
                    format!("{n} is not in 512..=65535"),
                ));
            }
            cfg.max_udp_size = n;
        }
        if cfg.deadline < cfg.timeout {
            return Err(ConfigError::Invalid(
                "--timeout",
                format!(
                    "{} ms is above --deadline {} ms (the time all attempts of a query share)",
                    cfg.timeout.as_millis(),
                    cfg.deadline.as_millis()
                ),
            ));
        }
        cfg.user = args.user.clone();
        cfg.policy = policy_from_args(args)?;
        cfg.metrics = args.metrics;
        if let Some(m) = cfg.metrics.filter(|m| cfg.listen.contains(m)) {
            return Err(ConfigError::Invalid(
                "--metrics",
                format!("{m} is also a --listen address"),
            ));
        }
        cfg.log_queries = args.log_queries;
        cfg.local = LocalConfig::from_args(args);
        cfg.tls = tls_from_args(args)?;
        // Loopback and equal addresses; the shell checks again once the ports are bound,
        // asking the kernel which other addresses are local.
        if let Some((u, l)) = loops::find_self_loop(&cfg.listen, &cfg.upstreams, |_| false) {
            return Err(ConfigError::Invalid("--upstream", loops::describe(u, l)));
        }
        Ok(cfg)
    }
}

/// The DNS over TLS flags (`tls://` upstreams, `--tls-ca`, `--listen-tls` and its files).
fn tls_from_args(args: &ServeArgs) -> Result<TlsConfig, ConfigError> {
    let upstreams =
        routes::tls_names(&args.upstream).map_err(|e| ConfigError::Invalid("--upstream", e))?;
    let tls = TlsConfig {
        upstreams,
        ca: args.tls_ca.clone(),
        listen: args.listen_tls.clone(),
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
    };
    if !tls.listen.is_empty() && (tls.cert.is_none() || tls.key.is_none()) {
        return Err(ConfigError::Invalid(
            "--listen-tls",
            "needs --tls-cert and --tls-key".into(),
        ));
    }
    if tls.listen.is_empty() && (tls.cert.is_some() || tls.key.is_some()) {
        return Err(ConfigError::Invalid(
            "--tls-cert/--tls-key",
            "given without --listen-tls".into(),
        ));
    }
    if let Some(a) = tls.listen.iter().find(|a| args.listen.contains(a)) {
        return Err(ConfigError::Invalid(
            "--listen-tls",
            format!("{a} is also a --listen address"),
        ));
    }
    Ok(tls)
}

/// The `--allow`, `--rate-limit*` and `--max-tcp-per-client` flags.
fn policy_from_args(args: &ServeArgs) -> Result<PolicyConfig, ConfigError> {
    let mut p = PolicyConfig {
        allow: args.allow.clone(),
        ..PolicyConfig::default()
    };
    let invalid = |flag, why: String| Err(ConfigError::Invalid(flag, why));
    match (args.rate_limit, args.rate_limit_burst, args.rate_limit_slip) {
        (None, None, None) => {}
        (None, _, _) => {
            return invalid(
                "--rate-limit-burst/--rate-limit-slip",
                "given without --rate-limit".into(),
            )
        }
        (Some(qps), burst, slip) => {
            if qps == 0 || qps > 1_000_000 {
                return invalid("--rate-limit", format!("{qps} is not in 1..=1000000"));
            }
            let burst = burst.unwrap_or(qps.saturating_mul(2));
            if burst == 0 || burst > 10_000_000 {
                return invalid(
                    "--rate-limit-burst",
                    format!("{burst} is not in 1..=10000000"),
                );
            }
            let slip = slip.unwrap_or(2);
            if slip > 100 {
                return invalid("--rate-limit-slip", format!("{slip} is not in 0..=100"));
            }
            p.rate_limit = Some(RateLimit { qps, burst, slip });
        }
    }
    if let Some(n) = args.max_tcp_per_client {
        if n == 0 || n > 65536 {
            return invalid("--max-tcp-per-client", format!("{n} is not in 1..=65536"));
        }
        p.max_tcp_per_client = n;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_forms() {
        assert_eq!(parse_upstream("9.9.9.9"), Ok("9.9.9.9:53".parse().unwrap()));
        assert_eq!(
            parse_upstream("9.9.9.9:5353"),
            Ok("9.9.9.9:5353".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("2620:fe::fe"),
            Ok("[2620:fe::fe]:53".parse().unwrap())
        );
        assert_eq!(parse_upstream("[::1]:54"), Ok("[::1]:54".parse().unwrap()));
        assert_eq!(parse_upstream("[::1]"), Ok("[::1]:53".parse().unwrap()));
        assert!(parse_upstream("dns.example").is_err());
        assert!(parse_upstream("1.2.3.4:99999").is_err());
    }

    #[test]
    fn reads_resolv_conf_and_skips_itself() {
        let text = "# comment\nsearch example\nnameserver 127.0.0.1\nnameserver 192.0.2.53\n\
                    nameserver fe80::1%eth0\nnameserver ::1\noptions edns0\n";
        let listen = ["127.0.0.1:53".parse().unwrap()];
        let ns = resolv_conf_nameservers(text, &listen);
        assert_eq!(
            ns,
            [
                "192.0.2.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        let any = ["[::]:53".parse().unwrap()];
        assert_eq!(
            resolv_conf_nameservers(text, &any),
            ["192.0.2.53:53".parse().unwrap()]
        );
        // On the default port 1053 a local resolver on 53 is not us.
        let default = Config::default().listen;
        assert_eq!(resolv_conf_nameservers(text, &default).len(), 3);
    }

    #[test]
    fn no_upstream_is_a_clear_error() {
        let args = ServeArgs::default();
        let e = Config::from_args(&args, Some("nameserver 127.0.0.1\n")).map(|c| c.upstreams);
        assert_eq!(e, Ok(vec!["127.0.0.1:53".parse().unwrap()]));
        let e = Config::from_args(&args, Some("search example\n")).unwrap_err();
        assert!(matches!(e, ConfigError::NoUpstreams(_)));
        assert!(e.to_string().contains("--upstream"));
        assert!(Config::from_args(&args, None).is_err());
    }

    #[test]
    fn parses_cache_memory_sizes() {
        for (text, bytes) in [
            ("65536", 65536),
            ("512K", 512 << 10),
            ("512k", 512 << 10),
            ("32M", 32 << 20),
            ("32MiB", 32 << 20),
            ("1G", 1 << 30),
            ("1gb", 1 << 30),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "M",
            "12X",
            "1.5M",
            "-1M",
            " 1M",
            "99999999999999999999G",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
        let args = |n| ServeArgs {
            upstream: vec!["127.0.0.1:53".parse().unwrap()],
            cache_memory: Some(n),
            ..ServeArgs::default()
        };
        let cfg = Config::from_args(&args(16 << 20), None).unwrap();
        assert_eq!(cfg.cache.max_bytes, 16 << 20);
        assert_eq!(
            Config::default().cache.max_bytes,
            32 << 20,
            "the default without the flag"
        );
        for n in [0, (64 << 10) - 1, (64 << 30) + 1] {
            let e = Config::from_args(&args(n), None).unwrap_err();
            assert!(matches!(e, ConfigError::Invalid("--cache-memory", _)));
            assert!(e.to_string().contains("between 64K and 64G"), "{e}");
        }
    }

    #[test]
    fn rejects_zero_timeouts() {
        let args = ServeArgs {
            upstream: vec!["127.0.0.1:53".parse().unwrap()],
            timeout: Some(0),
            ..ServeArgs::default()
        };
        assert!(matches!(
            Config::from_args(&args, None),
            Err(ConfigError::Invalid("--timeout", _))
        ));
    }

    #[test]
    fn policy_flags_are_checked() {
        let base = || ServeArgs {
            upstream: vec!["192.0.2.53:53".parse().unwrap()],
            ..ServeArgs::default()
        };
        let p = Config::from_args(&base(), None).unwrap().policy;
        assert_eq!(p, PolicyConfig::default());
        let args = ServeArgs {
            allow: vec![crate::policy::parse_cidr("10.0.0.0/8").unwrap()],
            rate_limit: Some(50),
            max_tcp_per_client: Some(4),
            ..base()
        };
        let p = Config::from_args(&args, None).unwrap().policy;
        assert_eq!(p.allow.len(), 1);
        assert_eq!(
            p.rate_limit,
            Some(RateLimit {
                qps: 50,
                burst: 100,
                slip: 2
            })
        );
        assert_eq!(p.max_tcp_per_client, 4);
        for (args, flag) in [
            (
                ServeArgs {
                    rate_limit: Some(0),
                    ..base()
                },
                "--rate-limit",
            ),
            (
                ServeArgs {
                    rate_limit: Some(5),
                    rate_limit_burst: Some(0),
                    ..base()
                },
                "--rate-limit-burst",
            ),
            (
                ServeArgs {
                    rate_limit_burst: Some(5),
                    ..base()
                },
                "--rate-limit-burst/--rate-limit-slip",
            ),
            (
                ServeArgs {
                    max_tcp_per_client: Some(0),
                    ..base()
                },
                "--max-tcp-per-client",
            ),
        ] {
            match Config::from_args(&args, None) {
                Err(ConfigError::Invalid(f, _)) => assert_eq!(f, flag),
                other => panic!("{flag}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_upstream_that_is_our_own_listener_is_refused() {
        let args = ServeArgs {
            listen: vec!["0.0.0.0:5353".parse().unwrap()],
            upstream: vec!["127.0.0.1:5353".parse().unwrap()],
            ..ServeArgs::default()
        };
        let e = Config::from_args(&args, None).unwrap_err().to_string();
        assert!(
            e.contains("127.0.0.1:5353") && e.contains("0.0.0.0:5353"),
            "{e}"
        );
        assert!(e.contains("loop"), "{e}");
    }
}
