//! The command line turned into a [`Config`]: each flag checked and put in its place,
//! the defaults kept for the others.
use std::time::Duration;

use super::resolv_conf_nameservers;
use super::{Config, ConfigError, TlsConfig};
use crate::cli::ServeArgs;
use crate::forward::routes;
use crate::local::LocalConfig;
use crate::policy::{loops, PolicyConfig, RateLimit};

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
    use crate::config::parse_bytes;

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
