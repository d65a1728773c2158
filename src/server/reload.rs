//! What an operator does to a running server: signals, and reloading the settings.
//!
//! - SIGHUP reads the settings again (the `--config` file, and /etc/resolv.conf when
//!   no upstream is given) through the loader given to [`Server::set_reload`], and
//!   applies them with [`Server::reload`]. A config that does not load or apply leaves
//!   the running one in place; either way one line is logged.
//! - SIGUSR1 logs the counters (one line); SIGUSR2 is logged and ignored (logs go to
//!   stderr, so there is nothing to reopen). SIGPIPE stays ignored as the Rust runtime
//!   set it (a closed peer is an EPIPE error on that socket).
//! - SIGINT and SIGTERM stop gracefully.
//!
//! What a reload changes at once: the upstream list (sockets for new upstreams are
//! opened before anything changes; a removed upstream is retired, and its sockets are
//! closed once no query in flight uses it), `--timeout`, `--deadline` (for attempts
//! and queries started afterwards), `--edns-size`, `--max-udp-size`, `--tcp-idle`,
//! `--max-tcp-clients`, the ACL, rate limit and per-client TCP cap (the rate buckets
//! start empty when the rate settings change; the TCP connection counts are kept). The
//! cache, its entries and the queries in flight are kept. What needs a restart, and is
//! logged as such and left as it was: the listen addresses (the ports may be below
//! 1024 and privileges dropped; answers in flight name their listener), `--user`, and
//! the cache settings (the cache is sized at start).
//!
//! DNS over TLS: the `--tls-cert`/`--tls-key` files, `--tls-ca` (or the system roots)
//! and the `tls://` upstreams' names are read again. New client connections get the
//! new certificate; open ones keep theirs (the session cache is kept when the
//! certificate did not change, so clients resume across a reload). Connections to an upstream whose trust
//! changed (other roots, another name) take no new query and close once their
//! queries in flight are answered, so that the new settings apply to every query
//! sent from the reload on. `--listen-tls` addresses need a restart.
//!
//! A reload is all or nothing: see [`Server::reload`].
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::UdpSocket;
use mio::Interest;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

use super::upstream_tcp::UpstreamPool;
use super::{admission, udp, upstream_token, Server, UpstreamSocket};
use crate::clock::Instant;
use crate::config::{Config, ConfigError};
use crate::forward::ForwarderConfig;
use crate::policy::{Buckets, Policy};

/// The signals the loop handles (see the module docs).
pub(super) const SIGNALS: [std::ffi::c_int; 5] = [SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2];

/// Reads the settings again (the start-up path: file, flags, resolv.conf).
pub type LoadConfig = Box<dyn FnMut() -> Result<Config, ConfigError> + Send>;

/// The server's reload state.
#[derive(Default)]
pub(super) struct Reloader {
    load: Option<LoadConfig>,
    /// Upstreams were removed and some of their sockets may still be open.
    retiring: bool,
}

/// What the core gets of the settings. Settings derived from files (hosts, blocklists,
/// zone routes) that the core holds go here too, so that start-up and reload build
/// them the same way.
pub(super) fn forwarder_config(cfg: &Config) -> std::io::Result<ForwarderConfig> {
    let local = crate::local::LocalData::load(&cfg.local)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok(ForwarderConfig {
        upstreams: cfg.upstreams.clone(),
        sockets_per_upstream: cfg.sockets_per_upstream,
        timeout: cfg.timeout,
        deadline: cfg.deadline,
        max_pending: cfg.max_pending,
        cache: cfg.cache,
        edns_size: cfg.edns_size,
        max_udp_size: cfg.max_udp_size,
        max_pending_per_client: cfg.max_pending_per_client,
        min_guess_bits: cfg.min_guess_bits,
        routes: cfg.routes.clone(),
        local: std::sync::Arc::new(local),
        stream_only: cfg.tls.upstreams.iter().map(|u| u.0).collect(),
    })
}

impl Reloader {
    /// Removed upstreams still have sockets open (the sweep must run).
    pub(super) fn is_retiring(&self) -> bool {
        self.retiring
    }
}

impl Server {
    /// What SIGHUP calls to read the settings again.
    pub fn set_reload(&mut self, load: LoadConfig) {
        self.reload.load = Some(load);
    }

    pub(super) fn on_os_signal(&mut self, now: Instant, sig: std::ffi::c_int) {
        match sig {
            SIGHUP => self.on_hangup(),
            SIGUSR1 => log::info!(
                "stats: {} send_errors={}",
                self.group_stats(),
                self.send_errors
            ),
            SIGUSR2 => log::info!("SIGUSR2 ignored (SIGHUP reloads, SIGUSR1 logs the stats)"),
            _ => {
                log::info!("signal received; shutting down");
                self.begin_shutdown(now);
            }
        }
    }

    fn on_hangup(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        let Some(load) = self.reload.load.as_mut() else {
            return log::info!("SIGHUP ignored: no settings to read again");
        };
        match load()
            .map_err(|e| e.to_string())
            .and_then(|cfg| self.reload_group(cfg))
        {
            Ok(summary) => log::info!("reloaded: {summary}"),
            Err(e) => log::error!("reload failed, still running the previous settings: {e}"),
        }
    }

    /// Applies `new` to the running server (see the module docs for what changes).
    /// Returns a summary for the log, or why nothing changed.
    ///
    /// To make data read from files (hosts, blocklists, local records, zone routes)
    /// follow a reload: read it in `config_file::load` (or `Config::from_args`) into
    /// `Config`, so that a file that fails to read fails the whole reload; carry it to
    /// the core in [`forwarder_config`]; and swap it in `Forwarder::reconfigure`
    /// (forward/reconfigure.rs), which already runs here. Nothing else is needed.
    ///
    /// All or nothing: everything that can fail (files read, sockets opened, the
    /// core's checks) is done before anything is applied, and the core's reconfigure,
    /// the last step that can fail, changes nothing when it does. So a reload whose
    /// certificate loads but whose upstreams do not (or the reverse) leaves no mix.
    pub fn reload(&mut self, new: Config) -> Result<String, String> {
        self.reload_sharing(new, None)
    }

    /// [`Server::reload`]; with `shared`, a new policy draws from those buckets (loop
    /// 0's, made from the same settings, in a group) and builds none of its own.
    pub(super) fn reload_sharing(
        &mut self,
        mut new: Config,
        shared: Option<Arc<Buckets>>,
    ) -> Result<String, String> {
        let notes = self.keep_restart_only(&mut new);
        admission::check_self_loop(&self.local_addrs(), &new.upstreams)
            .map_err(|e| e.to_string())?;
        // Read and checked here, applied below once nothing else can fail.
        let tls = self.prepare_tls(&new.tls)?;
        let mut fresh = self.open_new_upstreams(&new.upstreams, &tls)?;
        let core_cfg = forwarder_config(&new).map_err(|e| e.to_string())?;
        self.core.reconfigure(core_cfg).map_err(|e| e.to_string())?;
        let now = Instant::now();
        self.apply_tls(now, tls);
        let slots = self.core.upstream_slots();
        for (u, &(addr, live)) in slots.iter().enumerate() {
            if let Some(socks) = fresh.remove(&addr).filter(|_| live) {
                self.install_upstream(u, addr, socks);
            }
            self.reload.retiring |= !live;
        }
        if new.policy != self.cfg.policy {
            let mut policy = match shared {
                Some(buckets) => Policy::with_buckets(&new.policy, buckets),
                None => Policy::new(&new.policy, now, admission::hash_secret()),
            };
            policy.tcp = std::mem::take(&mut self.policy.tcp);
            policy.counters = std::mem::take(&mut self.policy.counters);
            self.policy = policy;
        }
        let live: Vec<SocketAddr> = slots.iter().filter(|s| s.1).map(|s| s.0).collect();
        // From here on indexed like the core's upstreams (retired ones included).
        new.upstreams = slots.iter().map(|s| s.0).collect();
        self.cfg = new;
        let mut summary = format!("forwarding to {live:?}");
        for n in notes {
            summary.push_str("; ");
            summary.push_str(&n);
        }
        Ok(summary)
    }

    /// Puts back into `new` what cannot change without a restart, saying what was asked.
    fn keep_restart_only(&self, new: &mut Config) -> Vec<String> {
        let old = &self.cfg;
        let mut notes = Vec::new();
        if new.listen != old.listen {
            notes.push(format!(
                "listen addresses change only on restart (still {:?})",
                old.listen
            ));
        }
        if new.user != old.user {
            notes.push("--user changes only on restart".into());
        }
        if new.cache != old.cache {
            notes.push("cache settings change only on restart (the cache is kept)".into());
        }
        if new.tls.listen != old.tls.listen {
            notes.push(format!(
                "--listen-tls addresses change only on restart (still {:?})",
                old.tls.listen
            ));
            new.tls.listen.clone_from(&old.tls.listen);
        }
        if new.threads != old.threads {
            notes.push(format!(
                "--threads changes only on restart (still {})",
                old.threads
            ));
            new.threads = old.threads;
        }
        new.listen.clone_from(&old.listen);
        new.user.clone_from(&old.user);
        new.cache = old.cache;
        new.sockets_per_upstream = old.sockets_per_upstream;
        new.max_pending = old.max_pending;
        notes
    }

    /// A socket pool for each upstream of `want` that has none open now.
    fn open_new_upstreams(
        &self,
        want: &[SocketAddr],
        tls: &super::tls::TlsState,
    ) -> Result<HashMap<SocketAddr, Vec<UdpSocket>>, String> {
        let slots = self.core.upstream_slots();
        let open = |addr: &SocketAddr| {
            slots.iter().enumerate().any(|(u, s)| {
                s.0 == *addr && self.upstream_udp.get(u).is_some_and(|p| !p.is_empty())
            })
        };
        let mut fresh = HashMap::new();
        for &addr in want.iter().filter(|a| !open(a)) {
            let socks = (0..tls.udp_pool_size(addr, self.cfg.sockets_per_upstream))
                .map(|_| udp::upstream_socket(addr))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot open a socket to upstream {addr}: {e}"))?;
            fresh.insert(addr, socks);
        }
        Ok(fresh)
    }

    /// Gives upstream index `u` (new, or a drained one's) the sockets `socks` for `addr`.
    fn install_upstream(&mut self, u: usize, addr: SocketAddr, socks: Vec<UdpSocket>) {
        self.close_upstream(u);
        while self.upstream_udp.len() <= u {
            self.upstream_udp.push(Vec::new());
            self.upstream_tcp.push(UpstreamPool::default());
        }
        let registry = self.poll.registry();
        let mut pool = Vec::with_capacity(socks.len());
        for (s, mut current) in socks.into_iter().enumerate() {
            if let Err(e) =
                registry.register(&mut current, upstream_token(u, s, 0), Interest::READABLE)
            {
                // Its slot stays empty: a query sent there times out and moves on.
                log::warn!("upstream {addr}: cannot watch a socket: {e}");
                break;
            }
            pool.push(UpstreamSocket {
                current,
                generation: 0,
                uses: 0,
                retired: None,
            });
        }
        if let Some(p) = self.upstream_udp.get_mut(u) {
            *p = pool;
        }
    }

    /// Closes every socket of upstream index `u`, UDP and TCP.
    fn close_upstream(&mut self, u: usize) {
        let registry = self.poll.registry();
        if let Some(pool) = self.upstream_udp.get_mut(u) {
            for mut slot in pool.drain(..) {
                let _ = registry.deregister(&mut slot.current);
                if let Some((mut r, _)) = slot.retired.take() {
                    let _ = registry.deregister(&mut r);
                }
            }
        }
        if let Some(p) = self.upstream_tcp.get_mut(u) {
            // Dropping the connections closes them (and takes them out of the poll).
            *p = UpstreamPool::default();
        }
    }

    /// Closes the sockets of removed upstreams once no query in flight uses them
    /// (called by the sweep).
    pub(super) fn close_drained_upstreams(&mut self) {
        if !self.reload.retiring {
            return;
        }
        let mut left = false;
        for (u, (_, live)) in self.core.upstream_slots().into_iter().enumerate() {
            let open = self.upstream_udp.get(u).is_some_and(|p| !p.is_empty());
            if live || !open {
                continue;
            }
            if self.core.upstream_busy(u) {
                left = true;
            } else {
                self.close_upstream(u);
            }
        }
        self.reload.retiring = left;
    }

    pub(super) fn on_signal(&mut self, now: Instant) {
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
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
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
        self.shutdown_at = Some(now + super::SHUTDOWN_GRACE);
    }

    pub(super) fn finished(&mut self, now: Instant) -> bool {
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
}
