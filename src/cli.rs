//! The command line (clap): the forwarder's flags, and `dnsfwd decode FILE`.
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{parse_bytes, parse_listen, parse_metrics};
use crate::forward::routes::{parse_spec, UpstreamSpec};
use crate::local::{parse_block_answer, BlockAnswer};
use crate::policy::{parse_cidr, Cidr};

/// A lightweight DNS forwarder: listens on UDP and TCP, relays queries to upstream
/// resolvers, checks their answers and returns them.
#[derive(Debug, Parser)]
#[command(name = "dnsfwd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Flags of the forwarder itself.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address and port to listen on, UDP and TCP (repeatable; IPv4 or [IPv6]:PORT).
    /// Default: 127.0.0.1:1053.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub listen: Vec<SocketAddr>,
    /// Upstream resolver to forward to, port 53 unless given (repeatable). With ZONE=,
    /// only for names in that zone (the longest zone wins; e.g. corp.example=10.0.0.1,
    /// 168.192.in-addr.arpa=10.0.0.1); the plain ones serve the rest. Default: the
    /// nameservers in /etc/resolv.conf, except this forwarder itself.
    #[arg(long, visible_alias = "resolver", value_name = "[ZONE=]ADDR[:PORT]", value_parser = parse_spec)]
    pub upstream: Vec<UpstreamSpec>,
    /// How long to wait for one upstream before trying the next, in milliseconds. Default: 1500.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,
    /// How long a query may take in all, retries included, before the client gets
    /// SERVFAIL, in milliseconds. Default: 4500.
    #[arg(long, value_name = "MS")]
    pub deadline: Option<u64>,
    /// Close a client TCP connection after this long without queries, in milliseconds.
    /// Default: 10000.
    #[arg(long, value_name = "MS")]
    pub tcp_idle: Option<u64>,
    /// Most client TCP connections at once; when full, a connection of the address
    /// holding the most (idle ones first) is closed to make room.
    /// Default: 256.
    #[arg(long, value_name = "N")]
    pub max_tcp_clients: Option<usize>,
    /// Most answers to keep in the cache (--cache-memory bounds it too; names asked for
    /// once go first); 0 turns the cache off (identical queries in flight are still sent
    /// upstream once). Default: 100000.
    #[arg(long, value_name = "N")]
    pub cache_size: Option<usize>,
    /// Most memory the cache may take, in bytes or with a suffix K, M or G (powers of
    /// 1024), everything counted; an answer bigger than 1/128 of it is not cached.
    /// Default: 32M.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub cache_memory: Option<u64>,
    /// Keep positive answers at least this long, in seconds. Default: 0.
    #[arg(long, value_name = "S")]
    pub cache_min_ttl: Option<u32>,
    /// Keep answers at most this long, in seconds. Default: 86400.
    #[arg(long, value_name = "S")]
    pub cache_max_ttl: Option<u32>,
    /// When every upstream fails, serve an answer expired up to this long ago, in
    /// seconds, with TTL 30 (RFC 8767). Default: 86400.
    #[arg(long, value_name = "S")]
    pub stale_ttl: Option<u32>,
    /// Never serve expired answers; SERVFAIL instead.
    #[arg(long)]
    pub no_serve_stale: bool,
    /// UDP payload size advertised to upstreams (512..=4096); bigger answers come over
    /// TCP. Default: 1232.
    #[arg(long, value_name = "OCTETS")]
    pub edns_size: Option<u16>,
    /// Largest UDP answer sent to a client, whatever size it advertises; bigger answers
    /// go out truncated (TC=1) so that the client retries over TCP. Default: 1232.
    #[arg(long, value_name = "OCTETS")]
    pub max_udp_size: Option<u16>,
    /// Most queries in flight upstream at once (1..=20000); past it, REFUSED (or a stale
    /// answer). Default: 10000.
    #[arg(long, value_name = "N")]
    pub max_pending: Option<usize>,
    /// Most queries in flight upstream started by one client (an IPv4 address or an
    /// IPv6 /64); when the table is full, the heaviest client's oldest query makes room
    /// for a lighter client's; 0 turns fair shares off. Default: 1250.
    #[arg(long, value_name = "N")]
    pub max_pending_per_client: Option<usize>,
    /// Answer only sources in this CIDR block (repeatable; a bare address is /32 or /128).
    /// Replaces the default: loopback, 10/8, 172.16/12, 192.168/16, 100.64/10,
    /// 169.254/16, fc00::/7, fe80::/10. Others get REFUSED (at most 100 a second).
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub allow: Vec<Cidr>,
    /// Most UDP queries per second from one client (an IPv4 address or an IPv6 /64);
    /// the excess is dropped, one in --rate-limit-slip answered TC=1. Default: no limit.
    #[arg(long, value_name = "QPS")]
    pub rate_limit: Option<u32>,
    /// Queries a client may send at once above --rate-limit. Default: 2 × QPS.
    #[arg(long, value_name = "N")]
    pub rate_limit_burst: Option<u32>,
    /// Answer every Nth query over --rate-limit with TC=1 so a real client retries over
    /// TCP; 0 never. Default: 2.
    #[arg(long, value_name = "N")]
    pub rate_limit_slip: Option<u32>,
    /// Most TCP connections from one client (an IPv4 address or an IPv6 /64).
    /// Default: 16.
    #[arg(long, value_name = "N")]
    pub max_tcp_per_client: Option<usize>,
    // Operating it (issue 9): src/config_file.rs reads FILE; its keys are these flags.
    /// Read settings from this TOML file: its keys are the long flags
    /// (`upstream = ["9.9.9.9"]`, `cache-size = 10000`); flags given here override it.
    /// SIGHUP reads it again. See dnsfwd.example.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// When started as root: after binding, switch to this user (and its group), e.g.
    /// `nobody`. Refuses to go on as root if the user does not exist.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (port 9153, CoreDNS's, unless
    /// given). Default: off.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_metrics)]
    pub metrics: Option<SocketAddr>,
    /// Log one line per answer (client, name, type, rcode, source, upstream, ms) at info
    /// level with target dnsfwd::query (RUST_LOG=info,dnsfwd::query=off hides it).
    #[arg(long)]
    pub log_queries: bool,
    /// Answer the names of this hosts(5) file locally: A/AAAA, PTR for the addresses,
    /// NODATA for other types (repeatable).
    #[arg(long, value_name = "FILE")]
    pub hosts: Vec<PathBuf>,
    /// A record answered locally, in presentation format (repeatable), e.g.
    /// "nas.lan. 300 IN A 192.168.1.5"; types A, AAAA, CNAME, TXT, MX, SRV, PTR.
    #[arg(long, value_name = "RR")]
    pub local_record: Vec<String>,
    /// Block the domains of this list and their subdomains (repeatable): one domain a
    /// line, or hosts lines "0.0.0.0 name"; # comments.
    #[arg(long, value_name = "FILE")]
    pub block: Vec<PathBuf>,
    /// How blocked names are answered: nxdomain, or null (0.0.0.0 / :: / NODATA).
    /// EDE 15 "Blocked" with EDNS either way. Default: nxdomain.
    #[arg(long, value_name = "nxdomain|null", value_parser = parse_block_answer)]
    pub block_answer: Option<BlockAnswer>,
    /// Never block the domains of this list or their subdomains (repeatable; the
    /// --block format).
    #[arg(long, value_name = "FILE")]
    pub allow_name: Vec<PathBuf>,
    // DNS over TLS (issue 11): upstreams are `--upstream tls://ADDR[:PORT]#NAME`.
    /// Trust only this CA (PEM file) for the certificates of tls:// upstreams, instead
    /// of the system's roots (/etc/ssl/certs).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Also answer DNS over TLS (RFC 7858) on this address and port, 853 unless given
    /// (repeatable); needs --tls-cert and --tls-key. Same limits as TCP clients.
    #[arg(long, value_name = "ADDR:PORT", value_parser = crate::config::parse_listen_tls)]
    pub listen_tls: Vec<SocketAddr>,
    /// The certificate chain (PEM) of --listen-tls; SIGHUP reads it again.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert; SIGHUP reads it again.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Event loops to run, each on its own thread with its own upstream sockets and a
    /// share of the cache; `auto` = one per available core. Queries are spread by
    /// question name (see README, "Threads"). Default: 1.
    #[arg(long, value_name = "N|auto", value_parser = crate::config::parse_threads)]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the DNS messages in pcap/pcapng files, or one message given as hex or as a
    /// binary file, in dig-like text (or JSON with --json); with --stats, a summary.
    Decode {
        /// Pcap/pcapng files, files holding one message (hex text or raw octets), a
        /// message in hex, or `-` for standard input; decoded one after the other.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<String>,
        /// Print one JSON object per message (the shape of the shared corpus's
        /// oracle.jsonl); with --stats, the summary as one JSON object.
        #[arg(long)]
        json: bool,
        /// Print a summary instead of the messages, per file and in total: queries and
        /// responses, transports, opcodes, rcodes, qtypes, the names most asked for and
        /// the clients asking most, EDNS, TC, malformed messages by error, and response
        /// times of queries matched with their answers.
        #[arg(long)]
        stats: bool,
        /// With --stats: how many names and clients to list. Default: 10.
        #[arg(long, value_name = "N", requires = "stats", default_value_t = 10)]
        top: usize,
        /// UDP/TCP ports that carry DNS in a capture (repeatable). Default: 53, and when
        /// nothing is found there, whatever --any-port finds.
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<u16>,
        /// Also find DNS on every other UDP/TCP port: take each payload that parses as a
        /// whole, plausible DNS message (a TCP connection: its first message).
        #[arg(long)]
        any_port: bool,
    },
}
