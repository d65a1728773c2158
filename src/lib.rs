//! dnsfwd: a lightweight DNS forwarder.
//!
//! Layers, each knowing only the ones below it:
//! * `wire`: bytes ↔ DNS messages (nom parser, writer, hot-path view);
//! * `forward`: the forwarding state machine, no I/O;
//! * `server`: the mio event loop, the only code that touches sockets or the clock.
//!
//! Beside them: `config` (settings and the command line), `stats` (counters), `policy`
//! (who may ask and how fast: ACL, rate limits, TCP slots; no I/O), `lograte` (a log
//! line per cause per period), and the `decode` tool (`capture` reads pcap files,
//! `present` prints messages).
pub mod cache;
pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod forward;
pub mod local;
pub mod lograte;
pub mod policy;
pub mod present;
pub mod server;
pub mod stats;
pub mod wire;
