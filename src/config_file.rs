//! The config file (`--config FILE`): TOML whose keys are the long flags
//! (`listen = ["127.0.0.1:1053"]`, `cache-size = 10000`, `no-serve-stale = true`).
//!
//! The file is read into [`FileArgs`], merged under the command line (a flag given on
//! the command line wins; a repeatable flag given there replaces the file's list), and
//! the result goes through [`Config::from_args`] like flags alone do, so both are
//! checked by the same code. Every error names the file, and where it can the line and
//! the key: unknown keys and values of the wrong type from the TOML spans, values out
//! of range by finding the key that supplied them.
//!
//! **Adding a key**: add the field to `ServeArgs` (cli.rs), the same field to
//! [`FileArgs`] (an `Option`, with a `deserialize_with` if the flag has a
//! `value_parser`), and one line to [`merge`]; the exhaustive destructuring there makes
//! the compiler point at the missing line. `dnsfwd.example.toml` documents every key
//! (the test `example_config_parses` reads it).
mod locate;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::ServeArgs;
use crate::config::{Config, ConfigError};
use crate::forward::routes::UpstreamSpec;
use crate::local::BlockAnswer;
use crate::policy::Cidr;
use locate::{file_error, key_before, key_line, line_of};
use values::{de_allow, de_block_answer, de_bytes, de_listen, de_listen_tls, de_metrics};
use values::{de_paths, de_threads, de_upstream};

/// The keys of a config file, one per flag of [`ServeArgs`].
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileArgs {
    #[serde(default, deserialize_with = "de_listen")]
    pub listen: Option<Vec<SocketAddr>>,
    #[serde(default, alias = "resolver", deserialize_with = "de_upstream")]
    pub upstream: Option<Vec<UpstreamSpec>>,
    pub timeout: Option<u64>,
    pub deadline: Option<u64>,
    pub tcp_idle: Option<u64>,
    pub max_tcp_clients: Option<usize>,
    pub cache_size: Option<usize>,
    #[serde(default, deserialize_with = "de_bytes")]
    pub cache_memory: Option<u64>,
    pub cache_min_ttl: Option<u32>,
    pub cache_max_ttl: Option<u32>,
    pub stale_ttl: Option<u32>,
    pub no_serve_stale: Option<bool>,
    pub edns_size: Option<u16>,
    pub max_udp_size: Option<u16>,
    pub max_pending: Option<usize>,
    pub max_pending_per_client: Option<usize>,
    #[serde(default, deserialize_with = "de_allow")]
    pub allow: Option<Vec<Cidr>>,
    pub rate_limit: Option<u32>,
    pub rate_limit_burst: Option<u32>,
    pub rate_limit_slip: Option<u32>,
    pub max_tcp_per_client: Option<usize>,
    pub user: Option<String>,
    #[serde(default, deserialize_with = "de_metrics")]
    pub metrics: Option<SocketAddr>,
    pub log_queries: Option<bool>,
    #[serde(default, deserialize_with = "de_paths")]
    pub hosts: Option<Vec<PathBuf>>,
    pub local_record: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_paths")]
    pub block: Option<Vec<PathBuf>>,
    #[serde(default, deserialize_with = "de_block_answer")]
    pub block_answer: Option<BlockAnswer>,
    #[serde(default, deserialize_with = "de_paths")]
    pub allow_name: Option<Vec<PathBuf>>,
    pub tls_ca: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_listen_tls")]
    pub listen_tls: Option<Vec<SocketAddr>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_threads")]
    pub threads: Option<usize>,
}

/// The settings of `args` with its `--config` file (if any) under them, read now: the
/// start-up path and SIGHUP's both come here. Also reads /etc/resolv.conf when no
/// upstream is given either way.
pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
    let Some(path) = &args.config else {
        let resolv = std::fs::read_to_string("/etc/resolv.conf").ok();
        return Config::from_args(args, resolv.as_deref());
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, None, None, e))?;
    let file = parse(path, &text)?;
    let (merged, from_file) = merge(args.clone(), file);
    let resolv = std::fs::read_to_string("/etc/resolv.conf").ok();
    Config::from_args(&merged, resolv.as_deref()).map_err(|e| match e {
        // A value out of range that came from the file: say where it is.
        ConfigError::Invalid(flag, why) => {
            let key = flag
                .trim_start_matches("--")
                .split('/')
                .next()
                .unwrap_or("");
            match from_file.iter().find(|k| **k == key) {
                Some(key) => file_error(path, key_line(&text, key), Some(key), why),
                None => ConfigError::Invalid(flag, why),
            }
        }
        other => other,
    })
}

/// Parses the text of a config file (`path` is for the messages).
pub fn parse(path: &Path, text: &str) -> Result<FileArgs, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| s.start);
        let line = at.map(|at| line_of(text, at));
        let key = at.and_then(|at| key_before(text, at));
        file_error(path, line, key.as_deref(), e.message())
    })
}

/// `cli` with the file's values filled in where the command line gave none, and the
/// keys that were taken from the file.
pub fn merge(cli: ServeArgs, file: FileArgs) -> (ServeArgs, Vec<&'static str>) {
    let mut used = Vec::new();
    let u = &mut used;
    // Exhaustive on purpose: a new flag without its key does not compile.
    let FileArgs {
        listen,
        upstream,
        timeout,
        deadline,
        tcp_idle,
        max_tcp_clients,
        cache_size,
        cache_memory,
        cache_min_ttl,
        cache_max_ttl,
        stale_ttl,
        no_serve_stale,
        edns_size,
        max_udp_size,
        max_pending,
        max_pending_per_client,
        allow,
        rate_limit,
        rate_limit_burst,
        rate_limit_slip,
        max_tcp_per_client,
        user,
        metrics,
        log_queries,
        hosts,
        local_record,
        block,
        block_answer,
        allow_name,
        tls_ca,
        listen_tls,
        tls_cert,
        tls_key,
        threads,
    } = file;
    let merged = ServeArgs {
        listen: list(u, "listen", cli.listen, listen),
        upstream: list(u, "upstream", cli.upstream, upstream),
        timeout: opt(u, "timeout", cli.timeout, timeout),
        deadline: opt(u, "deadline", cli.deadline, deadline),
        tcp_idle: opt(u, "tcp-idle", cli.tcp_idle, tcp_idle),
        max_tcp_clients: opt(u, "max-tcp-clients", cli.max_tcp_clients, max_tcp_clients),
        cache_size: opt(u, "cache-size", cli.cache_size, cache_size),
        cache_memory: opt(u, "cache-memory", cli.cache_memory, cache_memory),
        cache_min_ttl: opt(u, "cache-min-ttl", cli.cache_min_ttl, cache_min_ttl),
        cache_max_ttl: opt(u, "cache-max-ttl", cli.cache_max_ttl, cache_max_ttl),
        stale_ttl: opt(u, "stale-ttl", cli.stale_ttl, stale_ttl),
        no_serve_stale: cli.no_serve_stale || no_serve_stale.unwrap_or(false),
        edns_size: opt(u, "edns-size", cli.edns_size, edns_size),
        max_udp_size: opt(u, "max-udp-size", cli.max_udp_size, max_udp_size),
        max_pending: opt(u, "max-pending", cli.max_pending, max_pending),
        max_pending_per_client: opt(
            u,
            "max-pending-per-client",
            cli.max_pending_per_client,
            max_pending_per_client,
        ),
        allow: list(u, "allow", cli.allow, allow),
        rate_limit: opt(u, "rate-limit", cli.rate_limit, rate_limit),
        rate_limit_burst: opt(
            u,
            "rate-limit-burst",
            cli.rate_limit_burst,
            rate_limit_burst,
        ),
        rate_limit_slip: opt(u, "rate-limit-slip", cli.rate_limit_slip, rate_limit_slip),
        max_tcp_per_client: opt(
            u,
            "max-tcp-per-client",
            cli.max_tcp_per_client,
            max_tcp_per_client,
        ),
        user: opt(u, "user", cli.user, user),
        metrics: opt(u, "metrics", cli.metrics, metrics),
        log_queries: cli.log_queries || log_queries.unwrap_or(false),
        hosts: list(u, "hosts", cli.hosts, hosts),
        local_record: list(u, "local-record", cli.local_record, local_record),
        block: list(u, "block", cli.block, block),
        block_answer: opt(u, "block-answer", cli.block_answer, block_answer),
        allow_name: list(u, "allow-name", cli.allow_name, allow_name),
        tls_ca: opt(u, "tls-ca", cli.tls_ca, tls_ca),
        listen_tls: list(u, "listen-tls", cli.listen_tls, listen_tls),
        tls_cert: opt(u, "tls-cert", cli.tls_cert, tls_cert),
        tls_key: opt(u, "tls-key", cli.tls_key, tls_key),
        threads: opt(u, "threads", cli.threads, threads),
        config: cli.config,
    };
    (merged, used)
}

/// The command line's value, else the file's (noting that `key` came from the file).
fn opt<T>(
    used: &mut Vec<&'static str>,
    key: &'static str,
    cli: Option<T>,
    file: Option<T>,
) -> Option<T> {
    if cli.is_none() && file.is_some() {
        used.push(key);
    }
    cli.or(file)
}

/// A repeatable flag: the command line's list if it gave one, else the file's.
fn list<T>(
    used: &mut Vec<&'static str>,
    key: &'static str,
    cli: Vec<T>,
    file: Option<Vec<T>>,
) -> Vec<T> {
    if !cli.is_empty() {
        return cli;
    }
    opt(used, key, None, file).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::locate::assigned_key;
    use super::*;

    fn parse_str(text: &str) -> Result<FileArgs, ConfigError> {
        parse(Path::new("t.toml"), text)
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dnsfwd.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let file = parse(&path, &text).unwrap();
        // Every key is in the example (commented out or not): the keys it sets...
        let (args, used) = merge(ServeArgs::default(), file);
        let cfg = Config::from_args(&args, None).unwrap();
        assert!(!cfg.upstreams.is_empty(), "{used:?}");
        // ...and each key of FileArgs appears in it, so the example documents them all.
        let fields = format!("{:?}", FileArgs::default());
        for field in fields
            .split(['{', ',', '}'])
            .filter_map(|f| f.split(':').next())
        {
            let key = field.trim().replace('_', "-");
            if key.is_empty() || key == "FileArgs" {
                continue;
            }
            assert!(
                text.lines()
                    .any(|l| assigned_key(l.trim_start_matches('#')) == Some(&key)),
                "the example does not document `{key}`"
            );
        }
    }

    #[test]
    fn threads_is_a_number_or_auto() {
        assert_eq!(parse_str("threads = 2\n").unwrap().threads, Some(2));
        let auto = parse_str("threads = \"auto\"\n").unwrap().threads;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(auto, Some(cores));
        for bad in [
            "threads = 0\n",
            "threads = \"many\"\n",
            "threads = 100000\n",
        ] {
            let e = parse_str(bad).unwrap_err().to_string();
            assert!(e.starts_with("t.toml:1: threads"), "{bad}: {e}");
        }
        // The command line wins over the file.
        let cli = ServeArgs {
            threads: Some(3),
            ..ServeArgs::default()
        };
        let (args, _) = merge(cli, parse_str("threads = 2\n").unwrap());
        assert_eq!(args.threads, Some(3));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse_str("timeout = 100\n\ncache-sise = 5\n").unwrap_err();
        match &e {
            ConfigError::File {
                path, line, key, ..
            } => {
                assert_eq!(
                    (path.as_str(), *line, key.as_deref()),
                    ("t.toml", Some(3), Some("cache-sise"))
                );
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.starts_with("t.toml:3: cache-sise: unknown field"),
            "{text}"
        );
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        for (text, line, key) in [
            ("cache-size = \"many\"\n", 1, "cache-size"),
            // A list is one value: its first line (the message quotes the bad item).
            (
                "timeout = 1\nlisten = [\n  \"127.0.0.1:53\",\n  \"::1:1053\",\n]\n",
                2,
                "listen",
            ),
            ("upstream = [\"dns.example\"]\n", 1, "upstream"),
            ("allow = [\"10.0.0.0/33\"]\n", 1, "allow"),
            ("cache-memory = \"12X\"\n", 1, "cache-memory"),
            ("edns-size = 70000\n", 1, "edns-size"),
        ] {
            match parse_str(text) {
                Err(ConfigError::File {
                    line: l, key: k, ..
                }) => {
                    assert_eq!((l, k.as_deref()), (Some(line), Some(key)), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse_str(
            "upstream = [\"192.0.2.1\"]\ntimeout = 100\ncache-size = 5\nno-serve-stale = true\n",
        )
        .unwrap();
        let cli = ServeArgs {
            upstream: vec!["192.0.2.9:53".parse().unwrap()],
            cache_size: Some(7),
            ..ServeArgs::default()
        };
        let (args, used) = merge(cli, file);
        assert_eq!(args.upstream, ["192.0.2.9:53".parse().unwrap()]);
        assert_eq!((args.timeout, args.cache_size), (Some(100), Some(7)));
        assert!(args.no_serve_stale);
        assert_eq!(used, ["timeout"]);
    }

    #[test]
    fn range_errors_from_the_file_name_the_line() {
        let dir = std::env::temp_dir().join(format!("dnsfwd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("range.toml");
        std::fs::write(
            &path,
            "upstream = [\"192.0.2.1\"]\n\ncache-size = 99999999999\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let e = load(&args).unwrap_err().to_string();
        assert!(e.contains("range.toml:3: cache-size:"), "{e}");
        // The same value from the command line is the flag's error.
        let args = ServeArgs {
            cache_size: Some(99_999_999_999),
            ..args
        };
        let e = load(&args).unwrap_err().to_string();
        assert!(e.starts_with("invalid --cache-size"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
