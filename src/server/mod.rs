//! The event loop: the only code that touches sockets or the clock.
//!
//! One `mio::Poll` owns every socket: client UDP listeners, client TCP listeners and
//! connections, the upstream UDP socket pools and the TCP connections to upstreams.
//! Each turn: poll (timeout = the core's next deadline) → drain every ready socket
//! until it would block → let the core handle timers → carry out what the core asks
//! for → sweep idle connections. Nothing blocks; no error ends the loop except failing
//! to poll at all. Every datagram and every accepted connection passes the admission
//! policy ([`crate::policy`]: ACL, rate limit, TCP slots) before the core sees it.
//!
//! Here: the [`Server`], its [`StopHandle`] and small accessors. [`Server::bind`] is
//! in build.rs with the rest of building a server, [`Server::run`] in turn.rs with the
//! loop's turn, and the layout of the poll's tokens in tokens.rs.
mod admission;
mod bind;
mod build;
mod clients;
mod datagrams;
mod group;
mod hints;
mod horizon;
mod limits;
mod memory;
mod metrics_http;
mod mmsg;
mod pktinfo;
mod reload;
mod reply_paths;
mod send;
pub mod steer;
mod tcp;
mod tls;
mod tokens;
mod turn;
mod udp;
mod upstream_tcp;

pub use group::{per_loop, Group};
pub use reload::LoadConfig;
pub use upstream_tcp::MAX_TCP_PER_UPSTREAM;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;

use crate::clock::Instant;
use crate::config::Config;
use crate::forward::Forwarder;
use crate::lograte::LogLimiter;
use crate::policy::Policy;
use crate::stats::Stats;
use metrics_http::MetricsHttp;
use mmsg::RecvRing;
use send::{Outgoing, SendBatch};
use tcp::ClientConn;
use upstream_tcp::UpstreamPool;

use bind::bind_tcp_listener;

// The token layout, for the other files of the shell (`use super::…`).
use tokens::{
    conn_id, split_conn_id, upstream_token, CLIENT_TCP, MAX_LISTENERS, PADDED_QUERY, SIGNALS,
    TCP_LISTENER, TLS_LISTENER, TOKEN_SPACE, UDP_LISTENER, UPSTREAM_TCP, WAKER,
};

/// An upstream socket is replaced after this many queries (RFC 5452 §9.2: the source
/// port should be as unpredictable as the ID); the old one is kept open for the query
/// deadline so that late answers still arrive, and a slot rotates again only once its
/// old socket is closed.
const ROTATE_AFTER: u32 = 256;
/// Most datagrams read from one UDP socket per loop turn (clients, or an upstream):
/// a flood on one socket must not starve the others, the timers or the answers. The
/// socket is read again next turn (edge-triggered readiness does not repeat).
const MAX_DATAGRAMS_PER_TURN: usize = 256;
/// Time given to queries in flight when a shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// One slot of an upstream's socket pool.
struct UpstreamSocket {
    current: UdpSocket,
    /// Which of the slot's two tokens `current` is registered under.
    generation: usize,
    uses: u32,
    /// The socket replaced last, open until the instant given.
    retired: Option<(UdpSocket, Instant)>,
}

impl UpstreamSocket {
    /// Whether it has carried enough queries to be replaced, and is free to be (the
    /// one it replaced last is closed).
    fn rotation_due(&self) -> bool {
        self.uses >= ROTATE_AFTER && self.retired.is_none()
    }
}

/// Stops a running server from another thread (tests, embedding).
#[derive(Clone)]
pub struct StopHandle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl StopHandle {
    /// Asks the loop to shut down as on SIGTERM.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::warn!("cannot wake the event loop: {e}");
        }
    }
}

/// The forwarder with its sockets. [`Server::bind`], then [`Server::run`].
pub struct Server {
    poll: Poll,
    cfg: Config,
    core: Forwarder,
    udp_listeners: Vec<UdpSocket>,
    tcp_listeners: Vec<TcpListener>,
    upstream_udp: Vec<Vec<UpstreamSocket>>,
    clients: Vec<Option<ClientConn>>,
    client_generation: u32,
    /// By upstream: its TCP connections and the queries waiting for them.
    upstream_tcp: Vec<UpstreamPool>,
    /// Client connections to read again next turn (frame limit or backlog).
    paused: Vec<usize>,
    /// Sockets (by token) left with datagrams or messages at the per-turn limit.
    ready_again: Vec<Token>,
    /// TCP reads.
    buf: Vec<u8>,
    /// Datagrams from clients, read in batches (recvmmsg) into buffers owned here.
    client_ring: RecvRing,
    /// Datagrams from upstreams, likewise.
    upstream_ring: RecvRing,
    /// Answers to clients over UDP, by listener, gathered during a dispatch (or a turn)
    /// and sent together (sendmmsg, or sendto for one alone); their buffers then go
    /// back to the core.
    udp_out: Vec<Vec<Outgoing>>,
    /// Answers to queries on wildcard listeners, by the address they were sent to.
    reply_paths: reply_paths::ReplyPaths,
    /// By listener: bound to a wildcard address (its datagrams' destinations are read).
    udp_wildcard: Vec<bool>,
    /// Answers waiting in `udp_out`, all listeners together (so that a flush with
    /// nothing to send looks at one number). Valid values: the sum of their lengths.
    udp_queued: usize,
    sender: SendBatch,
    /// Datagrams dropped for not fitting their receive buffer, from clients and from
    /// upstreams (counted with the core's dropped queries and responses).
    oversize: (u64, u64),
    signals: Option<Signals>,
    stop: StopHandle,
    shutdown_at: Option<Instant>,
    next_sweep: Instant,
    /// A connection may be open, or a query wait for one: the poll must wake for the
    /// sweep. Set where a TCP client, a scrape or an upstream connection opens and where
    /// a query is queued for one; recomputed by the sweep. Valid values: true whenever
    /// [`open_connections`](Self::open_connections) is (checked every turn in debug
    /// builds), so that the turn need not walk the tables to know.
    maybe_open: bool,
    horizon: horizon::Horizon,
    /// Datagrams we could not send (socket buffer full) and similar local failures.
    send_errors: u64,
    /// Some upstream socket was replaced and is kept open for late answers (the sweep
    /// must run to close it): set on rotation, recomputed by the sweep.
    retired_udp: bool,
    /// Who may ask and how fast; consulted before the core sees a query.
    policy: Policy,
    /// Per-cause limits on the log lines of per-packet and per-connection errors.
    log: LogLimiter,
    /// SIGHUP: how to read the settings again, and removed upstreams to close.
    reload: reload::Reloader,
    /// The `--metrics` HTTP listener and its connections, if on.
    metrics: Option<MetricsHttp>,
    /// When the query-log lines held must be written.
    log_due: Option<Instant>,
    /// `--listen-tls` listeners; their clients are in `clients` with the others.
    tls_listeners: Vec<TcpListener>,
    /// DNS over TLS: the configs for upstreams and clients, and its counters.
    tls: tls::TlsState,
    /// With `--threads` above 1: the other loops (see group.rs).
    link: Option<group::Link>,
    /// The process ends once `run` returns ([`Server::exit_after_run`]).
    exits: bool,
}

impl Server {
    /// The UDP addresses the server listens on (the TCP listeners use the same ones).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp_listeners
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.core.stats();
        self.policy.add_to(&mut stats);
        self.tls.add_to(&mut stats);
        stats.dropped_queries += self.oversize.0;
        stats.dropped_responses += self.oversize.1;
        stats
    }

    /// Makes SIGINT and SIGTERM shut the server down gracefully, SIGHUP reload and
    /// SIGUSR1 log the counters (see reload.rs).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new(reload::SIGNALS)?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The process ends when [`run`](Self::run) returns (the binary's case): the cache's
    /// entries are then left for the exit to take back at once instead of being freed one
    /// by one (one allocation per entry: a few hundred instructions per query of a short
    /// run). Everything else is dropped as usual (the query log flushes).
    pub fn exit_after_run(&mut self) {
        self.exits = true;
    }
}
