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
mod clients;
mod group;
mod hints;
mod limits;
mod memory;
mod metrics_http;
mod mmsg;
mod reload;
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
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::forward::{Client, Dest, Forwarder, OsRandom, Source, Transmit};
use crate::lograte::LogLimiter;
use crate::policy::{Admit, Policy};
use crate::stats::Stats;
use metrics_http::{MetricsHttp, MAX_SCRAPERS, METRICS_CONN, METRICS_LISTENER};
use mmsg::{Outgoing, RecvRing, SendBatch};
use tcp::ClientConn;
use upstream_tcp::UpstreamPool;

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
    /// and sent together (sendmmsg); their buffers then go back to the core.
    udp_out: Vec<Vec<Outgoing>>,
    sender: SendBatch,
    /// Datagrams dropped for not fitting their receive buffer, from clients and from
    /// upstreams (counted with the core's dropped queries and responses).
    oversize: (u64, u64),
    signals: Option<Signals>,
    stop: StopHandle,
    shutdown_at: Option<Instant>,
    next_sweep: Instant,
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
        Server::build(cfg, None)
    }

    /// [`Server::bind`], or with the client sockets `given` (a loop of a [`Group`]).
    fn build(mut cfg: Config, given: Option<group::Listeners>) -> io::Result<Server> {
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
            client_ring: RecvRing::new(mmsg::BATCH, CLIENT_SLOT),
            upstream_ring: RecvRing::new(UPSTREAM_BATCH, UPSTREAM_SLOT),
            udp_out: Vec::new(),
            sender: SendBatch::new(),
            oversize: (0, 0),
            signals: None,
            stop,
            shutdown_at: None,
            next_sweep: Instant::now(),
            send_errors: 0,
            retired_udp: false,
            policy: Policy::new(&cfg.policy, Instant::now(), admission::hash_secret()),
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

    fn bind_listeners(&mut self) -> io::Result<()> {
        let listen = self.cfg.listen.clone();
        if listen.len() > MAX_LISTENERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many --listen addresses",
            ));
        }
        for addr in listen {
            let (mut udp, mut tcp) = bind_pair(addr)?;
            let i = self.udp_listeners.len();
            self.poll
                .registry()
                .register(&mut udp, Token(UDP_LISTENER + i), Interest::READABLE)?;
            self.poll
                .registry()
                .register(&mut tcp, Token(TCP_LISTENER + i), Interest::READABLE)?;
            self.udp_listeners.push(udp);
            self.udp_out.push(Vec::with_capacity(mmsg::BATCH));
            self.tcp_listeners.push(tcp);
        }
        Ok(())
    }

    fn bind_upstreams(&mut self) -> io::Result<()> {
        for (u, &addr) in self.cfg.upstreams.iter().enumerate() {
            let per = self.udp_pool_size(addr);
            let mut pool = Vec::with_capacity(per);
            for s in 0..per {
                let mut current =
                    udp::upstream_socket(addr).map_err(|e| hints::upstream(addr, e))?;
                self.poll.registry().register(
                    &mut current,
                    upstream_token(u, s, 0),
                    Interest::READABLE,
                )?;
                pool.push(UpstreamSocket {
                    current,
                    generation: 0,
                    uses: 0,
                    retired: None,
                });
            }
            self.upstream_udp.push(pool);
            self.upstream_tcp.push(UpstreamPool::default());
        }
        Ok(())
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
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for event in events.iter() {
                self.dispatch(now, event.token());
            }
            // Answers gathered from the upstream sockets ready in this turn.
            self.flush(now);
            for token in std::mem::take(&mut self.ready_again) {
                self.dispatch(now, token);
            }
            self.resume_paused(now);
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

    /// How long the next poll may sleep. The clock is read only when some timer is
    /// armed: a loop with nothing in flight (most turns at a moderate rate, once an
    /// answer has gone out) sleeps without one.
    fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.paused.is_empty() || !self.ready_again.is_empty() {
            return Some(Duration::ZERO);
        }
        let sweep = (self.has_connections()).then_some(self.next_sweep);
        [
            self.core.poll_timeout(),
            sweep,
            self.shutdown_at,
            self.log_due,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.saturating_duration_since(Instant::now()))
    }

    fn has_connections(&self) -> bool {
        self.reload.is_retiring()
            || self.link.is_some() // publishes its counters every sweep
            || self.clients.iter().any(Option::is_some)
            || self.upstream_tcp.iter().any(UpstreamPool::is_active)
            || self.retired_udp
            || self
                .metrics
                .as_ref()
                .is_some_and(MetricsHttp::has_connections)
    }

    fn dispatch(&mut self, now: Instant, token: Token) {
        match token.0 {
            0 => self.on_signal(now),
            1 => self.on_wake(now),
            METRICS_LISTENER => self.metrics_accept(now),
            t if (METRICS_CONN..METRICS_CONN + MAX_SCRAPERS).contains(&t) => {
                self.metrics_ready(t - METRICS_CONN)
            }
            t if (UDP_LISTENER..TCP_LISTENER).contains(&t) => {
                self.read_udp_listener(now, t - UDP_LISTENER)
            }
            t if (TCP_LISTENER..TCP_LISTENER + MAX_LISTENERS).contains(&t) => {
                self.accept(now, t - TCP_LISTENER, false)
            }
            t if (TLS_LISTENER..TLS_LISTENER + MAX_LISTENERS).contains(&t) => {
                self.accept(now, t - TLS_LISTENER, true)
            }
            t if (UPSTREAM_UDP..CLIENT_TCP).contains(&t) => {
                let n = t - UPSTREAM_UDP;
                self.read_upstream_udp(now, n / 2 / 256, n / 2 % 256, n % 2);
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
        // Answers go out as soon as they exist, so a burst does not pile them up; but
        // those to answers read from upstream sockets wait for the end of the turn's
        // events (or a full batch), to go out together.
        if (UPSTREAM_UDP..CLIENT_TCP).contains(&token.0) {
            if self.core.has_transmit() {
                self.take_transmits(now);
            }
        } else {
            self.flush(now);
        }
    }

    fn on_signal(&mut self, now: Instant) {
        let got: Vec<_> = self
            .signals
            .as_mut()
            .map_or_else(Vec::new, |s| s.pending().collect());
        for sig in got {
            self.on_os_signal(now, sig);
        }
    }

    /// Stops accepting: TCP listeners are closed and UDP listeners no longer read
    /// (they stay open to send the answers still due); what is in flight gets a second.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_at.is_some() {
            return;
        }
        self.stop_peers();
        for l in &mut self.udp_listeners {
            let _ = self.poll.registry().deregister(l);
        }
        for mut l in self.tcp_listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for mut l in self.tls_listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.shutdown_at = Some(now + SHUTDOWN_GRACE);
    }

    fn finished(&mut self, now: Instant) -> bool {
        let Some(at) = self.shutdown_at else {
            return false;
        };
        let flushed = self.clients.iter().flatten().all(|c| c.io.backlog() == 0);
        if self.core.pending() == 0 && flushed && self.handoffs_done() {
            return true;
        }
        if now < at {
            return false;
        }
        // Out of time: SERVFAIL for the rest, one last write attempt, done.
        self.core.fail_all(now);
        self.flush(now);
        true
    }

    /// Reads a client listener in batches until a batch comes back short (the socket
    /// is then empty: see mmsg.rs for why no read until EAGAIN is needed) or the
    /// per-turn limit is reached (then it is read again next turn).
    fn read_udp_listener(&mut self, now: Instant, i: usize) {
        if self.shutdown_at.is_some() {
            return; // no new queries once stopping (a re-queued read included)
        }
        let mut read = 0;
        while read < MAX_DATAGRAMS_PER_TURN {
            let Some(sock) = self.udp_listeners.get(i) else {
                return;
            };
            match self.client_ring.recv(sock) {
                Ok(n) => {
                    read += n;
                    for d in 0..n {
                        self.take_query(now, i, d);
                    }
                    if n < self.client_ring.slots() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Not expected on an unconnected socket; the datagrams queued
                    // behind it are read on (counted as one read, so this stays bounded).
                    read += 1;
                    if let Some(n) = self.log.hit(now, "client-udp-recv") {
                        log::debug!("client UDP socket {i}: {e}{n}");
                    }
                }
            }
        }
        self.ready_again.push(Token(UDP_LISTENER + i));
    }

    /// Datagram `d` of the client ring, read on listener `i`: past the admission policy
    /// to the core.
    fn take_query(&mut self, now: Instant, i: usize, d: usize) {
        let Some(dgram) = self.client_ring.get(d) else {
            return;
        };
        let Some(addr) = dgram.from else {
            return;
        };
        if dgram.truncated {
            self.oversize.0 += 1;
            return;
        }
        match self.policy.admit_udp(now, addr, dgram.bytes) {
            Admit::Pass => {
                let client = Client::Udp { listener: i, addr };
                self.core.handle_query(now, client, dgram.bytes);
            }
            Admit::Reply(bytes) => self.queue_udp(i, Outgoing { to: addr, bytes }),
            Admit::Drop => {}
        }
    }

    /// Reads an upstream socket in batches, as a client listener. An error (ICMP port
    /// unreachable: ECONNREFUSED) fails the queries on it; datagrams queued behind the
    /// error are read next.
    fn read_upstream_udp(&mut self, now: Instant, u: usize, s: usize, generation: usize) {
        let Some(addr) = self.cfg.upstreams.get(u).copied() else {
            return;
        };
        let source = Source::Udp {
            upstream: u,
            socket: s,
            from: addr,
        };
        let mut read = 0;
        while read < MAX_DATAGRAMS_PER_TURN {
            let Some(slot) = self.upstream_udp.get(u).and_then(|p| p.get(s)) else {
                return;
            };
            let sock = if slot.generation == generation {
                &slot.current
            } else {
                match &slot.retired {
                    Some((r, _)) => r,
                    None => return,
                }
            };
            match self.upstream_ring.recv(sock) {
                Ok(n) => {
                    read += n;
                    for d in 0..n {
                        match self.upstream_ring.get(d) {
                            Some(g) if g.truncated => self.oversize.1 += 1,
                            Some(g) => self.core.handle_response(now, source, g.bytes),
                            None => {}
                        }
                    }
                    if n < self.upstream_ring.slots() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("upstream {addr} socket {s}: {e}");
                    self.core.handle_upstream_error(now, u, s);
                    if e.kind() != io::ErrorKind::ConnectionRefused {
                        return;
                    }
                }
            }
        }
        self.ready_again.push(upstream_token(u, s, generation));
    }

    /// Carries out everything the core asked for, and sends the gathered answers.
    /// Checked here, inlined, before anything is called: most turns have nothing to
    /// carry out or send, and entering the senders costs a stack frame each time.
    #[inline]
    fn flush(&mut self, now: Instant) {
        if self.core.has_transmit() {
            self.take_transmits(now);
        }
        for i in 0..self.udp_out.len() {
            if self.udp_out.get(i).is_some_and(|q| !q.is_empty()) {
                self.send_udp_batch(i);
            }
        }
    }

    /// Carries out what the core asked for; answers to UDP clients are only gathered
    /// (a full batch goes out at once).
    fn take_transmits(&mut self, now: Instant) {
        while let Some(t) = self.core.poll_transmit() {
            let Transmit { to, bytes } = t;
            match to {
                Dest::Client(Client::Udp { listener, addr }) => {
                    self.queue_udp(listener, Outgoing { to: addr, bytes });
                    continue;
                }
                Dest::Client(Client::Tcp { conn, .. }) => self.send_tcp_client(now, conn, &bytes),
                // The core never sends to nobody; nothing to do if it did.
                Dest::Client(Client::Prefetch) => {}
                Dest::Upstream { upstream, socket } => {
                    self.send_upstream_udp(now, upstream, socket, &bytes)
                }
                Dest::UpstreamTcp { upstream } => {
                    // The pool keeps the buffer while the query waits, then releases it.
                    self.send_upstream_tcp(now, upstream, bytes);
                    continue;
                }
            }
            self.core.release(bytes);
        }
    }

    /// Adds an answer to listener `i`'s batch, sending the batch once it is full.
    fn queue_udp(&mut self, i: usize, out: Outgoing) {
        let Some(queue) = self.udp_out.get_mut(i) else {
            self.core.release(out.bytes);
            return;
        };
        queue.push(out);
        if queue.len() >= mmsg::BATCH {
            self.send_udp_batch(i);
        }
    }

    /// Sends listener `i`'s gathered answers (sendmmsg) and gives their buffers back.
    fn send_udp_batch(&mut self, i: usize) {
        let Some(queue) = self.udp_out.get_mut(i) else {
            return;
        };
        if queue.is_empty() {
            return;
        }
        if let Some(sock) = self.udp_listeners.get(i) {
            let report = self.sender.send(sock, queue);
            if report.failed > 0 {
                self.send_errors += report.failed as u64;
                if let Some(e) = report.error {
                    log::debug!("{} answers not sent on listener {i}: {e}", report.failed);
                }
            }
        }
        while let Some(out) = queue.pop() {
            self.core.release(out.bytes);
        }
    }

    fn send_upstream_udp(&mut self, now: Instant, u: usize, s: usize, bytes: &[u8]) {
        let result = match self.upstream_udp.get_mut(u).and_then(|p| p.get_mut(s)) {
            Some(slot) => {
                slot.uses = slot.uses.saturating_add(1);
                slot.current.send(bytes)
            }
            None => return,
        };
        match result {
            Ok(_) => self.maybe_rotate(now, u, s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The query is lost locally; its timer will move it to another attempt.
                self.send_errors += 1;
            }
            Err(e) => {
                log::debug!("send to upstream {u} socket {s}: {e}");
                self.core.handle_upstream_error(now, u, s);
            }
        }
    }

    /// Replaces an upstream socket that has carried enough queries with a new one on a
    /// new random port; the old one stays open until the query deadline has passed.
    fn maybe_rotate(&mut self, now: Instant, u: usize, s: usize) {
        let Some(addr) = self.cfg.upstreams.get(u).copied() else {
            return;
        };
        let registry = self.poll.registry();
        let Some(slot) = self.upstream_udp.get_mut(u).and_then(|p| p.get_mut(s)) else {
            return;
        };
        if slot.uses < ROTATE_AFTER || slot.retired.is_some() {
            return;
        }
        let keep_until = now + self.cfg.deadline;
        let next_gen = 1 - slot.generation;
        let fresh = udp::upstream_socket(addr).and_then(|mut sock| {
            registry.register(
                &mut sock,
                upstream_token(u, s, next_gen),
                Interest::READABLE,
            )?;
            Ok(sock)
        });
        match fresh {
            Ok(sock) => {
                let old = std::mem::replace(&mut slot.current, sock);
                slot.retired = Some((old, keep_until));
                self.retired_udp = true;
                slot.generation = next_gen;
                slot.uses = 0;
            }
            Err(e) => log::warn!("cannot open a new socket for upstream {addr}: {e}"),
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
    }

    /// Closes the retired upstream sockets whose grace time is over.
    fn close_retired_udp(&mut self, now: Instant) {
        let registry = self.poll.registry();
        let mut still_retired = false;
        for slot in self.upstream_udp.iter_mut().flatten() {
            if slot
                .retired
                .as_ref()
                .is_some_and(|(_, until)| now >= *until)
            {
                if let Some((mut sock, _)) = slot.retired.take() {
                    let _ = registry.deregister(&mut sock);
                }
            }
            still_retired |= slot.retired.is_some();
        }
        self.retired_udp = still_retired;
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

/// A UDP and a TCP listener on the same address; with port 0, the TCP listener takes
/// the port the kernel gave the UDP socket (retried a few times if it is taken).
fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = udp::bind_listener(addr).map_err(|e| hints::listen(addr, "UDP", e))?;
        let actual = udp.local_addr()?;
        match bind_tcp_listener(actual) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(hints::listen(actual, "TCP", e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("no free port"));
    Err(hints::listen(addr, "TCP", e))
}

fn bind_tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // SO_REUSEADDR (TCP only) allows a restart while old connections are in TIME_WAIT,
    // and never two listeners on one port. No SO_REUSEPORT: with it a second dnsfwd on
    // the same port would silently share the traffic instead of failing (until a
    // `--threads` asks for several loops on one port).
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}
