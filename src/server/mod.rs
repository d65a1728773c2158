//! The event loop: the only code that touches sockets or the clock.
//!
//! One `mio::Poll` owns every socket: client UDP listeners, client TCP listeners and
//! connections, the upstream UDP socket pools and the TCP connections to upstreams.
//! Each turn: poll (timeout = the core's next deadline) → drain every ready socket
//! until it would block → let the core handle timers → carry out what the core asks
//! for → sweep idle connections. Nothing blocks; no error ends the loop except failing
//! to poll at all. Every datagram and every accepted connection passes the admission
//! policy ([`crate::policy`]: ACL, rate limit, TCP slots) before the core sees it.
mod admission;
mod bind;
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
mod send;
pub mod steer;
mod tcp;
mod tls;
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
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;

use crate::clock::Instant;
use crate::config::Config;
use crate::forward::{earlier, Forwarder, OsRandom};
use crate::lograte::LogLimiter;
use crate::policy::Policy;
use crate::stats::Stats;
use metrics_http::{MetricsHttp, MAX_SCRAPERS, METRICS_CONN, METRICS_LISTENER};
use mmsg::RecvRing;
use send::{Outgoing, SendBatch};
use tcp::ClientConn;
use upstream_tcp::UpstreamPool;

use bind::bind_tcp_listener;

const SIGNALS: Token = Token(0);
const WAKER: Token = Token(1);
/// Client UDP listener `i` is `UDP_LISTENER + i`; at most `MAX_LISTENERS` of each kind.
const UDP_LISTENER: usize = 16;
const TCP_LISTENER: usize = 16 + MAX_LISTENERS;
const MAX_LISTENERS: usize = 64;
/// DNS over TLS listener `i` (`--listen-tls`) is `TLS_LISTENER + i`.
const TLS_LISTENER: usize = TCP_LISTENER + MAX_LISTENERS;
/// Upstream socket (upstream u, slot s, generation g) is `UPSTREAM_UDP + (u*256 + s)*2 + g`.
const UPSTREAM_UDP: usize = 1 << 10;
/// Client TCP connection in slot i.
const CLIENT_TCP: usize = 1 << 16;
/// TCP connection k to upstream u is `UPSTREAM_TCP + u * MAX_TCP_PER_UPSTREAM + k`.
const UPSTREAM_TCP: usize = 1 << 17;
const TOKEN_SPACE: usize = 1 << 16;

/// An upstream socket is replaced after this many queries (RFC 5452 §9.2: the source
/// port should be as unpredictable as the ID); the old one is kept open for the query
/// deadline so that late answers still arrive, and a slot rotates again only once its
/// old socket is closed.
const ROTATE_AFTER: u32 = 256;
/// Most datagrams read from one UDP socket per loop turn (clients, or an upstream):
/// a flood on one socket must not starve the others, the timers or the answers. The
/// socket is read again next turn (edge-triggered readiness does not repeat).
const MAX_DATAGRAMS_PER_TURN: usize = 256;
/// Receive buffer per client datagram. A UDP query is a header, one question and an
/// OPT record with a few options: far below this. A longer datagram is no query, and is
/// dropped and counted whole (never parsed from a cut prefix).
const CLIENT_SLOT: usize = 4096;
/// Receive buffer per upstream datagram: the largest UDP payload, so that an answer
/// larger than the size we advertise (an upstream may ignore it) still arrives whole.
const UPSTREAM_SLOT: usize = 65535;
/// Upstream datagrams per receive: each query goes out on one of many sockets, so
/// few answers wait on any one of them.
const UPSTREAM_BATCH: usize = 8;
/// How often idle connections and retired sockets are looked at.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
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
    reply_paths: datagrams::ReplyPaths,
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
    /// Binds every listening and upstream socket. A listen port of 0 picks a free port,
    /// the same for UDP and TCP.
    pub fn bind(cfg: Config) -> io::Result<Server> {
        Server::build(cfg, None, None)
    }

    /// [`Server::bind`], or with the client sockets `given` (a loop of a [`Group`]).
    /// A loop other than loop 0 draws from loop 0's rate `buckets`: one rate limit and
    /// one refusal pace for the process, and no table of its own built to be dropped.
    fn build(
        mut cfg: Config,
        given: Option<group::Listeners>,
        buckets: Option<Arc<crate::policy::Buckets>>,
    ) -> io::Result<Server> {
        // Room for the upstream socket pools: raise the descriptor limit, and size the
        // pools to it (the core's guessing floor then sends more over TCP if they shrink).
        let fd_limit = limits::raise_fd_limit();
        let reserved = 256 + 2 * cfg.max_tcp_clients + 64 * cfg.listen.len();
        let per = limits::pool_size(
            cfg.sockets_per_upstream,
            cfg.upstreams.len(),
            fd_limit,
            reserved,
        );
        if per < cfg.sockets_per_upstream {
            log::warn!(
                "descriptor limit {fd_limit}: {per} UDP sockets per upstream instead of {}",
                cfg.sockets_per_upstream
            );
            cfg.sockets_per_upstream = per;
        }
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = StopHandle {
            waker,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let core_cfg = reload::forwarder_config(&cfg)?;
        let mut server = Server {
            core: Forwarder::new(core_cfg, Box::new(OsRandom::new())),
            udp_listeners: Vec::new(),
            tcp_listeners: Vec::new(),
            upstream_udp: Vec::new(),
            clients: Vec::new(),
            client_generation: 0,
            upstream_tcp: Vec::new(),
            paused: Vec::new(),
            ready_again: Vec::new(),
            buf: vec![0; 65535],
            client_ring: RecvRing::with_dst(mmsg::BATCH, CLIENT_SLOT),
            upstream_ring: RecvRing::new(UPSTREAM_BATCH, UPSTREAM_SLOT),
            udp_out: Vec::new(),
            reply_paths: datagrams::ReplyPaths::default(),
            udp_wildcard: Vec::new(),
            udp_queued: 0,
            sender: SendBatch::new(),
            oversize: (0, 0),
            signals: None,
            stop,
            shutdown_at: None,
            next_sweep: Instant::now(),
            maybe_open: false,
            horizon: horizon::Horizon::new(Instant::now()),
            send_errors: 0,
            retired_udp: false,
            policy: match buckets {
                Some(b) => Policy::with_buckets(&cfg.policy, b),
                None => Policy::new(&cfg.policy, Instant::now(), admission::hash_secret()),
            },
            log: LogLimiter::new(crate::policy::LOG_PERIOD),
            reload: reload::Reloader::default(),
            metrics: None,
            log_due: None,
            tls_listeners: Vec::new(),
            tls: tls::TlsState::new(&cfg.tls)?,
            link: None,
            exits: false,
            poll,
            cfg,
        };
        match given {
            None => {
                server.bind_listeners()?;
                server.bind_tls_listeners()?;
            }
            Some(given) => server.adopt(given)?,
        }
        admission::check_self_loop(&server.local_addrs(), &server.cfg.upstreams)?;
        server.bind_upstreams()?;
        if let Some(addr) = server.cfg.metrics {
            server.metrics = Some(MetricsHttp::bind(addr, server.poll.registry())?);
        }
        if server.cfg.log_queries {
            // Decided once: env_logger's filter does not change while running, and a
            // query log that RUST_LOG hides should cost nothing per query.
            if log::log_enabled!(target: crate::querylog::TARGET, log::Level::Info) {
                let sink = Box::<crate::querylog::LogQueries>::default();
                server.core.set_query_log(Some(sink));
            } else {
                log::warn!("--log-queries: RUST_LOG hides dnsfwd::query; no query is logged");
            }
        }
        Ok(server)
    }

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

    /// Runs until a signal or [`StopHandle::stop`], then gives the queries in flight a
    /// second, answers the rest with SERVFAIL and returns the counters.
    pub fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(1024);
        log::info!(
            "listening on {:?}, forwarding to {:?}",
            self.local_addrs(),
            self.cfg.upstreams
        );
        // The clock as the last turn began: the next sleep is timed from it rather than
        // from a second reading (one more `clock_gettime` a turn). A timer then fires
        // late by at most that turn's work (microseconds; epoll's timeout is in whole
        // milliseconds, rounded up, anyway).
        let mut turn = Instant::now();
        loop {
            let timeout = self.poll_timeout(turn);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            turn = now;
            for event in events.iter() {
                self.dispatch(now, event.token());
            }
            // Answers gathered from the upstream sockets ready in this turn.
            self.flush(now);
            // Both lists are empty on nearly every turn: looked at before being taken
            // (taking one builds and drops a vector).
            if !self.ready_again.is_empty() {
                for token in std::mem::take(&mut self.ready_again) {
                    self.dispatch(now, token);
                }
            }
            if !self.paused.is_empty() {
                self.resume_paused(now);
            }
            self.core.handle_timeout(now);
            if self.core.take_shrunk() {
                memory::trim();
            }
            self.flush(now);
            if now >= self.next_sweep {
                self.sweep(now);
                // Failures found by the sweep have the core send again at once.
                self.flush(now);
                self.next_sweep = now + SWEEP_EVERY;
            }
            // The query-log lines, in one write every querylog::WRITE_EVERY at most.
            self.log_due = self.core.flush_query_log(now);
            if self.finished(now) {
                break;
            }
        }
        let stats = self.stats();
        log::info!("stopped: {stats} send_errors={}", self.send_errors);
        self.log_handoffs();
        if self.exits {
            self.core.leak_cache();
        }
        Ok(stats)
    }

    /// The process ends when [`run`](Self::run) returns (the binary's case): the cache's
    /// entries are then left for the exit to take back at once instead of being freed one
    /// by one (one allocation per entry: a few hundred instructions per query of a short
    /// run). Everything else is dropped as usual (the query log flushes).
    pub fn exit_after_run(&mut self) {
        self.exits = true;
    }

    /// How long the next poll may sleep, counted from `now` (when the turn that just
    /// ended began).
    fn poll_timeout(&mut self, now: Instant) -> Option<Duration> {
        if !self.paused.is_empty() || !self.ready_again.is_empty() {
            return Some(Duration::ZERO);
        }
        // Folded by hand: an array of four options, flattened, costs several times the
        // comparisons (this runs every turn).
        let mut next = self.core.poll_timeout();
        // Both are `None` on nearly every turn (no shutdown, no query log).
        if self.shutdown_at.is_some() || self.log_due.is_some() {
            next = earlier(earlier(next, self.shutdown_at), self.log_due);
        }
        if self.has_connections() {
            next = earlier(next, Some(self.next_sweep));
        }
        Some(self.horizon.sleep(now, next?))
    }

    /// Whether the sweep has work: a connection may be open, retired sockets wait to
    /// be closed, or the loop publishes its counters every sweep (`link`). Flags only:
    /// this runs every turn, and the walk of the tables is left to the sweep.
    fn has_connections(&self) -> bool {
        debug_assert!(
            self.maybe_open || !self.open_connections(),
            "a connection opened without setting maybe_open"
        );
        self.maybe_open || self.retired_udp || self.reload.is_retiring() || self.link.is_some()
    }

    /// Whether a TCP client, an upstream connection or a scrape is open, or a query
    /// waits for an upstream connection (a walk of their tables: the sweep's question).
    fn open_connections(&self) -> bool {
        self.clients.iter().any(Option::is_some)
            || self.upstream_tcp.iter().any(UpstreamPool::is_active)
            || self
                .metrics
                .as_ref()
                .is_some_and(MetricsHttp::has_connections)
    }

    /// One readiness event. The UDP sockets (client listeners, upstream sockets) are
    /// tested first and handled here; every other token goes to an outlined function,
    /// so that this one stays small (it runs once or twice per query).
    fn dispatch(&mut self, now: Instant, token: Token) {
        let t = token.0;
        if t.wrapping_sub(UPSTREAM_UDP) < CLIENT_TCP - UPSTREAM_UDP {
            let n = t - UPSTREAM_UDP;
            self.read_upstream_udp(now, n / 2 / 256, n / 2 % 256, n % 2);
            // Answers to what the upstream sockets bring wait for the end of the turn's
            // events (or a full batch), to go out together.
            if self.core.has_transmit() {
                self.take_transmits(now);
            }
            return;
        }
        if t.wrapping_sub(UDP_LISTENER) < TCP_LISTENER - UDP_LISTENER {
            self.read_udp_listener(now, t - UDP_LISTENER);
        } else {
            self.dispatch_other(now, t);
        }
        // Answers go out as soon as they exist, so a burst does not pile them up.
        self.flush(now);
    }

    /// [`dispatch`](Self::dispatch) for every token but the UDP sockets'.
    #[cold]
    #[inline(never)]
    fn dispatch_other(&mut self, now: Instant, t: usize) {
        match t {
            0 => self.on_signal(now),
            1 => self.on_wake(now),
            METRICS_LISTENER => self.metrics_accept(now),
            t if (METRICS_CONN..METRICS_CONN + MAX_SCRAPERS).contains(&t) => {
                self.metrics_ready(t - METRICS_CONN)
            }
            t if (TCP_LISTENER..TCP_LISTENER + MAX_LISTENERS).contains(&t) => {
                self.accept(now, t - TCP_LISTENER, false)
            }
            t if (TLS_LISTENER..TLS_LISTENER + MAX_LISTENERS).contains(&t) => {
                self.accept(now, t - TLS_LISTENER, true)
            }
            t if (CLIENT_TCP..CLIENT_TCP + TOKEN_SPACE).contains(&t) => {
                self.client_ready(now, t - CLIENT_TCP)
            }
            t if (UPSTREAM_TCP..UPSTREAM_TCP + TOKEN_SPACE).contains(&t) => {
                self.upstream_tcp_ready(now, t - UPSTREAM_TCP)
            }
            // Spurious or stale: a socket closed earlier in this turn.
            _ => {}
        }
    }

    /// Closes idle client connections, idle or failed upstream connections, and
    /// retired upstream sockets whose grace time is over.
    fn sweep(&mut self, now: Instant) {
        self.sweep_clients(now);
        self.sweep_upstream_tcp(now);
        self.close_drained_upstreams();
        self.sweep_metrics(now);
        if self.retired_udp {
            self.close_retired_udp(now);
        }
        self.publish();
        self.maybe_open = self.open_connections();
    }
}

fn upstream_token(u: usize, s: usize, generation: usize) -> Token {
    Token(UPSTREAM_UDP + (u * 256 + s) * 2 + generation)
}

/// A client connection's identity for the core: its slot and its generation (as many
/// of its bits as fit).
fn conn_id(n: usize, generation: u32) -> usize {
    // 31 bits of the generation (bits 17 to 47): a query handed to another loop
    // (--threads, group.rs) carries the identity in 48 bits. A slot's generation
    // repeats after 2^31 connections to it, long after any query of the first is over.
    ((generation & 0x7FFF_FFFF) as usize) << 17 | n
}

/// Set in the identity the core is given with a query that carried EDNS Padding: the
/// core hands it back with the answer, which is padded then (RFC 8467 §4.1: per query,
/// not per connection).
const PADDED_QUERY: usize = 1 << 16;

/// The slot of a connection identity, and the identity without [`PADDED_QUERY`].
fn split_conn_id(id: usize) -> (usize, usize) {
    (id & 0xFFFF, id & !PADDED_QUERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_ignores_none() {
        let a = Instant::now();
        let b = a + Duration::from_secs(1);
        assert_eq!(earlier(Some(b), Some(a)), Some(a));
        assert_eq!(earlier(None, Some(b)), Some(b));
        assert_eq!(earlier(Some(a), None), Some(a));
        assert_eq!(earlier(None, None), None);
    }
}
