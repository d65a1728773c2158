//! dnsfwd: a lightweight DNS forwarder.
//!
//! Layers, each knowing only the ones below it:
//! * `wire`: bytes ↔ DNS messages (nom parser, writer, hot-path view);
//! * `forward`: the forwarding state machine, no I/O;
//! * `server`: the mio event loop, the only code that touches sockets or the clock.
//!
//! Beside them: `clock` (the monotonic `Instant` that `now` is, everywhere), `config`
//! (settings and the command line), `stats` (counters), `policy` (who may ask and how
//! fast: ACL, rate limits, TCP slots; no I/O), `lograte` (a log line per cause per
//! period), `metrics` (the Prometheus exposition of the counters), `querylog` (the
//! `--log-queries` line), and the `decode` tool (`capture` reads pcap files, `present`
//! prints messages).
pub mod cache;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_file;
pub mod decode;
pub mod decode_stats;
pub mod forward;
pub mod local;
pub mod lograte;
pub mod metrics;
pub mod policy;
pub mod present;
pub mod querylog;
pub mod server;
pub mod service;
pub mod stats;
pub mod wire;
