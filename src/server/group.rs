//! `--threads N`: N identical event loops, each a [`Server`] with its own core (pending
//! table, 1/N of the cache, upstream sockets) on its own thread, sharing nothing on the
//! hot path.
//!
//! - UDP: each loop has its own client socket on every `--listen` address, the N of
//!   an address in one SO_REUSEPORT group whose BPF program ([`super::steer`]) gives
//!   each query to the loop owning its question name. Identical questions, in any
//!   letter case and from any client, thus meet in one loop: coalescing (one upstream
//!   query per key) and the cache are exact, the cache sharded by name.
//! - TCP and DNS over TLS: one listener per address, accepted and read by loop 0 (so
//!   the per-client TCP limits stay exact). A query another loop owns is handed to it
//!   through a bounded channel and a [`mio::Waker`]; its answer comes back the same
//!   way. A full channel answers SERVFAIL at once (counted), as do as many handoffs
//!   waiting for their answers as loop 0's channel holds (so none is lost coming
//!   back); nothing blocks.
//! - A second process: the TCP listener on each address is bound first, without
//!   SO_REUSEPORT, so a second dnsfwd fails there and never joins the UDP group. (A
//!   process of the same user that binds only UDP with SO_REUSEPORT could join it.)
//! - Signals, `--metrics` and SIGHUP: loop 0's. A stop of any loop stops them all; a
//!   reload is applied by loop 0 and, once it succeeded there, by each other loop. Each
//!   loop publishes its counters every sweep (100 ms); the metrics and SIGUSR1 show the
//!   sum.
//! - `--rate-limit` and the pace of ACL refusals hold for the process: the loops draw
//!   from loop 0's buckets ([`crate::policy::Policy::with_buckets`]; a lock per set of four
//!   buckets, taken only when a limit is set). Per loop, a client asking many names
//!   would reach every loop and get N times its rate. `--max-pending` and
//!   `--max-pending-per-client` stay per loop: they bound each loop's table.
//! - `--threads 1` does not come here: the server runs as it always did.
mod board;
mod handoff;

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Token};

use super::{bind_tcp_listener, hints, steer, udp, Server, StopHandle};
use super::{TCP_LISTENER, TLS_LISTENER, UDP_LISTENER};
use crate::config::Config;
use crate::stats::Stats;

pub(super) use handoff::{refuse, route, Link, Route};

/// Loop `i`'s settings of `n`: its share of the cache; only loop 0 serves metrics.
pub fn per_loop(cfg: &Config, i: usize, n: usize) -> Config {
    let n = n.max(1);
    let mut c = cfg.clone();
    c.cache.max_entries = cfg.cache.max_entries.div_ceil(n);
    c.cache.max_bytes = cfg.cache.max_bytes.div_ceil(n);
    if i > 0 {
        c.metrics = None;
    }
    c
}

/// The sockets a loop is given instead of binding its own.
pub(super) struct Listeners {
    pub(super) udp: Vec<UdpSocket>,
    pub(super) tcp: Vec<TcpListener>,
    pub(super) tls: Vec<TcpListener>,
}

impl Server {
    /// Registers sockets bound for this loop by [`Group::bind`].
    pub(super) fn adopt(&mut self, given: Listeners) -> io::Result<()> {
        let registry = self.poll.registry();
        for (i, mut s) in given.udp.into_iter().enumerate() {
            registry.register(&mut s, Token(UDP_LISTENER + i), Interest::READABLE)?;
            self.udp_wildcard
                .push(s.local_addr()?.ip().is_unspecified());
            self.udp_listeners.push(s);
            // Its answers' batch (sendmmsg), as `bind_listeners` makes for each.
            self.udp_out.push(Vec::with_capacity(super::mmsg::BATCH));
        }
        for (i, mut l) in given.tcp.into_iter().enumerate() {
            registry.register(&mut l, Token(TCP_LISTENER + i), Interest::READABLE)?;
            self.tcp_listeners.push(l);
        }
        for (i, mut l) in given.tls.into_iter().enumerate() {
            registry.register(&mut l, Token(TLS_LISTENER + i), Interest::READABLE)?;
            self.tls_listeners.push(l);
        }
        Ok(())
    }
}

/// The TCP listener of `addr` (exclusive: bound first, no SO_REUSEPORT), then `n` UDP
/// sockets on the same address and port, in loop order, with the steering program.
fn bind_shared(addr: SocketAddr, n: usize) -> io::Result<(Vec<UdpSocket>, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let tcp = bind_tcp_listener(addr).map_err(|e| hints::listen(addr, "TCP", e))?;
        let actual = tcp.local_addr()?;
        let udp: io::Result<Vec<UdpSocket>> =
            (0..n).map(|_| udp::bind_shared_listener(actual)).collect();
        match udp {
            Ok(udp) => {
                let first = udp.first().ok_or_else(|| io::Error::other("no loop"))?;
                let n = u32::try_from(n).map_err(|_| io::Error::other("too many loops"))?;
                steer::attach(first, n).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("--threads: cannot attach the steering program: {e}"),
                    )
                })?;
                return Ok((udp, tcp));
            }
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(hints::listen(actual, "UDP", e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("no free port"));
    Err(hints::listen(addr, "UDP", e))
}

/// N loops bound and linked; [`Group::run`] runs them.
pub struct Group {
    loops: Vec<Server>,
}

impl Group {
    /// Binds every socket of `cfg.threads` loops (TCP first, then UDP in loop order),
    /// and builds each loop. `threads = 1` is one plain [`Server`].
    pub fn bind(cfg: Config) -> io::Result<Group> {
        let n = cfg.threads.max(1);
        if n == 1 {
            return Ok(Group {
                loops: vec![Server::bind(cfg)?],
            });
        }
        let mut given: Vec<Listeners> = (0..n)
            .map(|_| Listeners {
                udp: Vec::new(),
                tcp: Vec::new(),
                tls: Vec::new(),
            })
            .collect();
        for &addr in &cfg.listen {
            let (udp, tcp) = bind_shared(addr, n)?;
            for (l, s) in given.iter_mut().zip(udp) {
                l.udp.push(s);
            }
            if let Some(first) = given.first_mut() {
                first.tcp.push(tcp);
            }
        }
        for &addr in &cfg.tls.listen {
            let l = bind_tcp_listener(addr).map_err(|e| hints::listen(addr, "TLS", e))?;
            if let Some(first) = given.first_mut() {
                first.tls.push(l);
            }
        }
        let mut loops: Vec<Server> = Vec::with_capacity(n);
        for (i, g) in given.into_iter().enumerate() {
            let c = per_loop(&cfg, i, n);
            // One rate limit and one refusal pace for the process, not one per loop.
            let s = match loops.first() {
                None => Server::build(c, Some(g), None)?,
                Some(first) => Server::build(c, Some(g), Some(first.policy.buckets()))?,
            };
            loops.push(s);
        }
        handoff::link(&mut loops);
        Ok(Group { loops })
    }

    fn first(&self) -> Option<&Server> {
        self.loops.first()
    }

    /// The UDP (and TCP) addresses listened on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.first().map(Server::local_addrs).unwrap_or_default()
    }

    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.first().map(Server::tls_addrs).unwrap_or_default()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.first().and_then(Server::metrics_addr)
    }

    /// Stops every loop (loop 0 passes the stop on).
    pub fn stop_handle(&self) -> Option<StopHandle> {
        self.first().map(Server::stop_handle)
    }

    /// Signals go to loop 0.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        match self.loops.first_mut() {
            Some(s) => s.handle_signals(),
            None => Ok(()),
        }
    }

    /// What SIGHUP calls (loop 0 reads, every loop applies).
    pub fn set_reload(&mut self, load: super::LoadConfig) {
        if let Some(s) = self.loops.first_mut() {
            s.set_reload(load);
        }
    }

    /// See [`Server::exit_after_run`]: for every loop.
    pub fn exit_after_run(&mut self) {
        self.loops.iter_mut().for_each(Server::exit_after_run);
    }

    /// Runs loop 0 on this thread and each other loop on a thread of its own until a
    /// stop; returns each loop's counters, in loop order.
    pub fn run(mut self) -> io::Result<Vec<Stats>> {
        if self.loops.is_empty() {
            return Ok(Vec::new());
        }
        let stops: Vec<StopHandle> = self.loops.iter().map(Server::stop_handle).collect();
        let stop_all = || stops.iter().for_each(StopHandle::stop);
        let first = self.loops.remove(0);
        let mut threads = Vec::new();
        for (i, s) in self.loops.into_iter().enumerate() {
            let t = std::thread::Builder::new()
                .name(format!("dnsfwd-loop-{}", i + 1))
                .spawn(move || s.run());
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop_all();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        let mut result = vec![first.run()];
        // A loop 0 that failed must not leave the others running.
        stop_all();
        for t in threads {
            result.push(
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a loop panicked"))),
            );
        }
        result.into_iter().collect()
    }
}
