//! Building a [`Server`]: the descriptor limit and the socket pools sized to it, the
//! core, the policy and the loop's buffers, then every socket bound (bind.rs) or
//! adopted from a [`Group`](super::Group) (group.rs). Either every socket is bound and
//! registered with the poll, or the build returns the first error (nothing half-built
//! is returned).
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mio::{Poll, Waker};

use super::metrics_http::MetricsHttp;
use super::mmsg::{self, RecvRing};
use super::send::SendBatch;
use super::tokens::WAKER;
use super::{admission, group, horizon, limits, reload, reply_paths, tls, Server, StopHandle};
use crate::clock::Instant;
use crate::config::Config;
use crate::forward::{Forwarder, OsRandom};
use crate::lograte::LogLimiter;
use crate::policy::Policy;

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

impl Server {
    /// Binds every listening and upstream socket. A listen port of 0 picks a free port,
    /// the same for UDP and TCP.
    pub fn bind(cfg: Config) -> io::Result<Server> {
        Server::build(cfg, None, None)
    }

    /// [`Server::bind`], or with the client sockets `given` (a loop of a
    /// [`Group`](super::Group)). A loop other than loop 0 draws from loop 0's rate
    /// `buckets`: one rate limit and one refusal pace for the process, and no table of
    /// its own built to be dropped.
    pub(super) fn build(
        mut cfg: Config,
        given: Option<group::Listeners>,
        buckets: Option<Arc<crate::policy::Buckets>>,
    ) -> io::Result<Server> {
        fit_pools_to_fd_limit(&mut cfg);
        let mut server = Server::unbound(cfg, buckets)?;
        server.open_sockets(given)?;
        server.start_query_log();
        Ok(server)
    }

    /// The server before its sockets: the poll, the core, the policy (with loop 0's
    /// `buckets` if given), the buffers and empty socket tables.
    fn unbound(cfg: Config, buckets: Option<Arc<crate::policy::Buckets>>) -> io::Result<Server> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = StopHandle {
            waker,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let core_cfg = reload::forwarder_config(&cfg)?;
        Ok(Server {
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
            reply_paths: reply_paths::ReplyPaths::default(),
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
        })
    }

    /// Binds the client listeners (or adopts those `given`), fails if an upstream is one
    /// of them, then binds the upstream socket pools and the metrics listener.
    fn open_sockets(&mut self, given: Option<group::Listeners>) -> io::Result<()> {
        match given {
            None => {
                self.bind_listeners()?;
                self.bind_tls_listeners()?;
            }
            Some(given) => self.adopt(given)?,
        }
        admission::check_self_loop(&self.local_addrs(), &self.cfg.upstreams)?;
        self.bind_upstreams()?;
        if let Some(addr) = self.cfg.metrics {
            self.metrics = Some(MetricsHttp::bind(addr, self.poll.registry())?);
        }
        Ok(())
    }

    /// `--log-queries`: gives the core its query log, unless RUST_LOG hides the lines.
    fn start_query_log(&mut self) {
        if !self.cfg.log_queries {
            return;
        }
        // Decided once: env_logger's filter does not change while running, and a
        // query log that RUST_LOG hides should cost nothing per query.
        if log::log_enabled!(target: crate::querylog::TARGET, log::Level::Info) {
            let sink = Box::<crate::querylog::LogQueries>::default();
            self.core.set_query_log(Some(sink));
        } else {
            log::warn!("--log-queries: RUST_LOG hides dnsfwd::query; no query is logged");
        }
    }
}

/// Room for the upstream socket pools: raises the descriptor limit, and sizes the pools
/// in `cfg` to it (the core's guessing floor then sends more over TCP if they shrink).
fn fit_pools_to_fd_limit(cfg: &mut Config) {
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
}
