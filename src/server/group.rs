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
//!   way. A full channel answers SERVFAIL at once (counted); nothing blocks.
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
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Token};

use super::{bind_tcp_listener, hints, steer, udp, Server, StopHandle};
use super::{TCP_LISTENER, TLS_LISTENER, UDP_LISTENER, WAKER};
use crate::config::Config;
use crate::forward::reply::error_reply;
use crate::forward::Client;
use crate::metrics::Snapshot;
use crate::policy::{Buckets, Policy};
use crate::stats::Stats;
use crate::wire::Rcode;

/// Queries (or answers) waiting for one loop; past this, a handoff fails.
const HANDOFF_QUEUE: usize = 4096;
/// Messages a loop takes from its channel per turn (then it reads its sockets again).
const MESSAGES_PER_TURN: usize = 1024;
/// A handed-off query's connection id at its owner: this bit, the loop it came from
/// (bits 48..56) and its id there (48 bits: see `conn_id`).
const REMOTE: usize = 1 << 62;
const FROM_SHIFT: u32 = 48;
const CONN_MASK: usize = (1 << FROM_SHIFT) - 1;

/// What loops send each other.
pub(super) enum Msg {
    /// A TCP query for the loop that owns it, from loop `from`'s connection `conn`.
    Query {
        from: usize,
        conn: usize,
        addr: SocketAddr,
        bytes: Vec<u8>,
    },
    /// The answer to a query handed off, for connection `conn` of the loop it came from.
    Answer { conn: usize, bytes: Vec<u8> },
    /// A query handed off that the core dropped without an answer.
    Dropped { conn: usize },
}

/// A reload for a loop: its settings and loop 0's rate-limit buckets to share.
type Reload = (Config, Arc<Buckets>);

/// Another loop as one loop sees it.
#[derive(Clone)]
struct Peer {
    tx: SyncSender<Msg>,
    stop: StopHandle,
    /// The settings of the latest reload, for that loop to apply, with loop 0's
    /// rate-limit buckets to share.
    reload: Arc<Mutex<Option<Reload>>>,
}

/// A loop's place in the group.
pub(super) struct Link {
    index: usize,
    peers: Vec<Peer>,
    inbox: Receiver<Msg>,
    /// Every loop's last published snapshot (by index).
    board: Arc<Mutex<Vec<Option<Snapshot>>>>,
    /// Queries handed off whose answers have not come back.
    waiting: usize,
    /// Handed off, and refused because a channel was full or its loop gone.
    handoffs: u64,
    handoff_failures: u64,
    /// SERVFAILs for queries that could not be handed off, by connection, to send
    /// once the connection's read is over.
    refused: Vec<(usize, Vec<u8>)>,
}

impl Link {
    fn n(&self) -> usize {
        self.peers.len()
    }

    fn send(&mut self, to: usize, msg: Msg) -> bool {
        let Some(peer) = self.peers.get(to) else {
            return false;
        };
        match peer.tx.try_send(msg) {
            Ok(()) => {
                let _ = peer.stop.waker.wake();
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.handoff_failures += 1;
                false
            }
        }
    }
}

/// The client id of a query handed off from loop `from`, and back.
fn remote_id(from: usize, conn: usize) -> usize {
    REMOTE | (from & 0xFF) << FROM_SHIFT | (conn & CONN_MASK)
}

fn split_remote(id: usize) -> Option<(usize, usize)> {
    (id & REMOTE != 0).then_some(((id >> FROM_SHIFT) & 0xFF, id & CONN_MASK))
}

/// What the read of a TCP query does with it in a group.
pub(super) enum Route {
    /// This loop's: give it to the core.
    Here,
    /// Handed to its owner; the answer will come back.
    Sent,
    /// Its owner cannot take it now: answer this (SERVFAIL), if anything.
    Refused(Option<Vec<u8>>),
}

/// Hands the TCP query `frame` of `client` to the loop that owns it, unless that is
/// this loop (or no loop owns it: a malformed name, which this loop's core answers).
pub(super) fn route(link: Option<&mut Link>, client: Client, frame: &[u8]) -> Route {
    let (Some(link), Client::Tcp { conn, addr }) = (link, client) else {
        return Route::Here;
    };
    let n = u32::try_from(link.n()).unwrap_or(1);
    let owner = match steer::steer(frame, n) {
        Some(o) if o as usize != link.index => o as usize,
        _ => return Route::Here,
    };
    let msg = Msg::Query {
        from: link.index,
        conn,
        addr,
        bytes: frame.to_vec(),
    };
    if link.send(owner, msg) {
        link.handoffs += 1;
        link.waiting += 1;
        return Route::Sent;
    }
    Route::Refused(error_reply(frame, None, Rcode::SERVFAIL))
}

/// Keeps `reply` for [`Server::send_refused`]; true if there is one (the query then
/// counts as taken: its answer will be written).
pub(super) fn refuse(link: Option<&mut Link>, client: Client, reply: Option<Vec<u8>>) -> bool {
    match (link, client, reply) {
        (Some(link), Client::Tcp { conn, .. }, Some(r)) => {
            link.refused.push((conn, r));
            true
        }
        _ => false,
    }
}

impl Server {
    /// Writes the SERVFAILs of queries that could not be handed off.
    pub(super) fn send_refused(&mut self, now: Instant) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if link.refused.is_empty() {
            return;
        }
        for (conn, reply) in std::mem::take(&mut link.refused) {
            self.send_tcp_client(now, conn, &reply);
        }
    }

    /// Token `WAKER`: a stop asked for, a reload, or messages from other loops.
    pub(super) fn on_wake(&mut self, now: Instant) {
        if self.stop.stop.load(Ordering::SeqCst) {
            self.begin_shutdown(now);
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let reload = link
            .peers
            .get(link.index)
            .and_then(|me| me.reload.lock().ok().and_then(|mut r| r.take()));
        let msgs: Vec<Msg> = link.inbox.try_iter().take(MESSAGES_PER_TURN).collect();
        if msgs.len() == MESSAGES_PER_TURN {
            self.ready_again.push(WAKER);
        }
        if let Some((cfg, buckets)) = reload {
            // A new policy draws from loop 0's buckets at once (no table of its own).
            match self.reload_sharing(cfg, Some(Arc::clone(&buckets))) {
                Ok(summary) => log::info!("reloaded (loop {}): {summary}", self.loop_index()),
                Err(e) => log::error!("reload failed in loop {}: {e}", self.loop_index()),
            }
            // Loop 0 applied the same policy settings: one set of buckets again, also
            // when the reload failed here (a no-op when it made a policy above).
            self.policy.share(buckets);
        }
        for msg in msgs {
            match msg {
                Msg::Query {
                    from,
                    conn,
                    addr,
                    bytes,
                } => {
                    let client = Client::Tcp {
                        conn: remote_id(from, conn),
                        addr,
                    };
                    if !self.core.handle_query(now, client, &bytes) {
                        if let Some(link) = self.link.as_mut() {
                            link.send(from, Msg::Dropped { conn });
                        }
                    }
                }
                Msg::Answer { conn, bytes } => {
                    self.came_back();
                    self.send_tcp_client(now, conn, &bytes);
                }
                Msg::Dropped { conn } => {
                    self.came_back();
                    let (n, unmarked) = super::split_conn_id(conn);
                    if let Some(Some(c)) = self.clients.get_mut(n) {
                        if super::conn_id(n, c.generation) == unmarked {
                            c.outstanding = c.outstanding.saturating_sub(1);
                        }
                    }
                }
            }
        }
    }

    /// One line at exit: what this loop handed to others (`--threads`).
    pub(super) fn log_handoffs(&self) {
        if let Some(l) = &self.link {
            log::info!(
                "loop {}: {} TCP queries handed to their loops, {} refused (channel full)",
                l.index,
                l.handoffs,
                l.handoff_failures
            );
        }
    }

    fn came_back(&mut self) {
        if let Some(link) = self.link.as_mut() {
            link.waiting = link.waiting.saturating_sub(1);
        }
    }

    fn loop_index(&self) -> usize {
        self.link.as_ref().map_or(0, |l| l.index)
    }

    /// Sends the answer `bytes` for client `id` back to the loop whose TCP client asked,
    /// if `id` is a query handed off; false for this loop's own clients.
    pub(super) fn answer_remote(&mut self, id: usize, bytes: &[u8]) -> bool {
        let Some((from, conn)) = split_remote(id) else {
            return false;
        };
        if let Some(link) = self.link.as_mut() {
            let answer = Msg::Answer {
                conn,
                bytes: bytes.to_vec(),
            };
            link.send(from, answer);
        }
        true
    }

    /// Every answer to a query handed off has come back (or there was none).
    pub(super) fn handoffs_done(&self) -> bool {
        self.link.as_ref().is_none_or(|l| l.waiting == 0)
    }

    /// Asks the other loops to stop (any loop stopping stops the group).
    pub(super) fn stop_peers(&self) {
        let Some(link) = &self.link else {
            return;
        };
        for (j, peer) in link.peers.iter().enumerate() {
            if j != link.index && !peer.stop.stop.swap(true, Ordering::SeqCst) {
                let _ = peer.stop.waker.wake();
            }
        }
    }

    /// Puts this loop's counters where the others (loop 0's metrics) can read them.
    pub(super) fn publish(&self) {
        let Some(link) = &self.link else {
            return;
        };
        let snap = self.own_snapshot();
        if let Ok(mut board) = link.board.lock() {
            if let Some(slot) = board.get_mut(link.index) {
                *slot = Some(snap);
            }
        }
    }

    /// This loop's metrics and the other loops' last published ones, summed.
    pub(super) fn group_snapshot(&self, mut snap: Snapshot) -> Snapshot {
        let Some(link) = &self.link else {
            return snap;
        };
        let Ok(board) = link.board.lock() else {
            return snap;
        };
        for (j, other) in board.iter().enumerate() {
            if let Some(other) = other.as_ref().filter(|_| j != link.index) {
                add_snapshot(&mut snap, other);
            }
        }
        snap
    }

    /// The counters of every loop of the group, summed (this loop's live).
    pub(super) fn group_stats(&self) -> Stats {
        self.group_snapshot(self.own_snapshot()).stats
    }

    /// SIGHUP in a group: `cfg` is applied here first and, if that worked, handed to
    /// the other loops (each with its share of the cache).
    pub(super) fn reload_group(&mut self, cfg: Config) -> Result<String, String> {
        let Some(n) = self.link.as_ref().map(Link::n) else {
            return self.reload(cfg);
        };
        let summary = self.reload(per_loop(&cfg, 0, n))?;
        if let Some(link) = &self.link {
            for (j, peer) in link.peers.iter().enumerate().skip(1) {
                if let Ok(mut slot) = peer.reload.lock() {
                    *slot = Some((per_loop(&cfg, j, n), self.policy.buckets()));
                }
                let _ = peer.stop.waker.wake();
            }
        }
        Ok(format!("{summary} ({n} loops)"))
    }
}

/// `snap` plus `other` (the upstream counters are summed by address).
fn add_snapshot(snap: &mut Snapshot, other: &Snapshot) {
    snap.stats += other.stats;
    snap.send_errors += other.send_errors;
    snap.queries_udp += other.queries_udp;
    snap.queries_tcp += other.queries_tcp;
    for (row, o) in snap.answers.iter_mut().zip(other.answers.iter()) {
        for (a, b) in row.iter_mut().zip(o.iter()) {
            *a += b;
        }
    }
    for (addr, o) in &other.upstreams {
        match snap.upstreams.iter_mut().find(|(a, _)| a == addr) {
            Some((_, c)) => {
                for (a, b) in c.rtt.iter_mut().zip(o.rtt.iter()) {
                    *a += b;
                }
                c.rtt_count += o.rtt_count;
                c.rtt_sum_us += o.rtt_sum_us;
                for (a, b) in c.failures.iter_mut().zip(o.failures.iter()) {
                    *a += b;
                }
            }
            None => snap.upstreams.push((*addr, o.clone())),
        }
    }
    snap.cache_entries += other.cache_entries;
    snap.pending += other.pending;
}

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

/// A loop other than loop 0, drawing from loop 0's `buckets`. [`Server::build`] makes
/// a policy from `cfg`; it is given no rate limit there, so that it builds no rate
/// table only to drop it (576 KiB a loop), and the policy is then made with `buckets`
/// from the settings as they are.
fn build_sharing(cfg: Config, given: Listeners, buckets: Arc<Buckets>) -> io::Result<Server> {
    let policy = cfg.policy.clone();
    let mut without_table = cfg;
    without_table.policy.rate_limit = None;
    let mut s = Server::build(without_table, Some(given))?;
    s.policy = Policy::with_buckets(&policy, buckets);
    s.cfg.policy = policy;
    Ok(s)
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
                None => Server::build(c, Some(g))?,
                Some(first) => build_sharing(c, g, first.policy.buckets())?,
            };
            loops.push(s);
        }
        let mut inboxes = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        for s in &loops {
            let (tx, rx) = sync_channel(HANDOFF_QUEUE);
            inboxes.push(rx);
            peers.push(Peer {
                tx,
                stop: s.stop_handle(),
                reload: Arc::new(Mutex::new(None)),
            });
        }
        let board = Arc::new(Mutex::new(vec![None; n]));
        for (index, (s, inbox)) in loops.iter_mut().zip(inboxes).enumerate() {
            s.link = Some(Link {
                index,
                peers: peers.clone(),
                inbox,
                board: Arc::clone(&board),
                waiting: 0,
                handoffs: 0,
                handoff_failures: 0,
                refused: Vec::new(),
            });
        }
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
