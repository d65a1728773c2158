//! What the loops of a group send each other: TCP queries handed to the loop that owns
//! them and their answers (see the [`super`] docs), reloads, and stops.
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use super::per_loop;
use crate::clock::Instant;
use crate::config::Config;
use crate::forward::reply::error_reply;
use crate::forward::Client;
use crate::policy::Buckets;
use crate::server::{steer, Server, StopHandle, WAKER};
use crate::wire::Rcode;

/// Queries (or answers) waiting for one loop; past this, a handoff fails. Also the
/// most queries a loop has handed off and not had back, so that their answers always
/// fit its own channel.
const HANDOFF_QUEUE: usize = 4096;
/// Messages a loop takes from its channel per turn (then it reads its sockets again).
const MESSAGES_PER_TURN: usize = 1024;
/// A handed-off query's connection id at its owner: this bit, the loop it came from
/// (bits 48..56) and its id there (48 bits: see `conn_id`).
const REMOTE: usize = 1 << 62;
const FROM_SHIFT: u32 = 48;
const CONN_MASK: usize = (1 << FROM_SHIFT) - 1;

/// What loops send each other.
pub(in crate::server) enum Msg {
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
pub(in crate::server) struct Link {
    pub(super) index: usize,
    peers: Vec<Peer>,
    inbox: Receiver<Msg>,
    /// Every loop's last published snapshot (by index).
    pub(super) board: Arc<Mutex<Vec<Option<crate::metrics::Snapshot>>>>,
    /// Queries handed off whose answers have not come back. Valid values: at most
    /// HANDOFF_QUEUE (see `route`).
    waiting: usize,
    /// Handed off, and refused because a channel was full, too many were waiting, or
    /// its loop was gone.
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
pub(in crate::server) enum Route {
    /// This loop's: give it to the core.
    Here,
    /// Handed to its owner; the answer will come back.
    Sent,
    /// Its owner cannot take it now: answer this (SERVFAIL), if anything.
    Refused(Option<Vec<u8>>),
}

/// Hands the TCP query `frame` of `client` to the loop that owns it, unless that is
/// this loop (or no loop owns it: a malformed name, which this loop's core answers).
pub(in crate::server) fn route(link: Option<&mut Link>, client: Client, frame: &[u8]) -> Route {
    let (Some(link), Client::Tcp { conn, addr }) = (link, client) else {
        return Route::Here;
    };
    let n = u32::try_from(link.n()).unwrap_or(1);
    let owner = match steer::steer(frame, n) {
        Some(o) if o as usize != link.index => o as usize,
        _ => return Route::Here,
    };
    // Each query handed off comes back, answered or dropped, through this loop's own
    // channel, which holds HANDOFF_QUEUE messages: with no more than that many waiting,
    // none finds it full. (One that did was lost: its client never answered, and its
    // connection, owed an answer, never idle and never closed.)
    let room = link.waiting < HANDOFF_QUEUE;
    if room {
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
    } else {
        link.handoff_failures += 1; // as `send` counts a full channel
    }
    Route::Refused(error_reply(frame, None, Rcode::SERVFAIL))
}

/// Keeps `reply` for [`Server::send_refused`]; true if there is one (the query then
/// counts as taken: its answer will be written).
pub(in crate::server) fn refuse(
    link: Option<&mut Link>,
    client: Client,
    reply: Option<Vec<u8>>,
) -> bool {
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
    pub(in crate::server) fn send_refused(&mut self, now: Instant) {
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
    pub(in crate::server) fn on_wake(&mut self, now: Instant) {
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
                    let (n, unmarked) = crate::server::split_conn_id(conn);
                    if let Some(Some(c)) = self.clients.get_mut(n) {
                        if crate::server::conn_id(n, c.generation) == unmarked {
                            c.outstanding = c.outstanding.saturating_sub(1);
                        }
                    }
                }
            }
        }
    }

    /// One line at exit: what this loop handed to others (`--threads`).
    pub(in crate::server) fn log_handoffs(&self) {
        if let Some(l) = &self.link {
            log::info!(
                "loop {}: {} TCP queries handed to their loops, {} refused (channel full, too many waiting, or loop gone)",
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
    pub(in crate::server) fn answer_remote(&mut self, id: usize, bytes: &[u8]) -> bool {
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
    pub(in crate::server) fn handoffs_done(&self) -> bool {
        self.link.as_ref().is_none_or(|l| l.waiting == 0)
    }

    /// Asks the other loops to stop (any loop stopping stops the group).
    pub(in crate::server) fn stop_peers(&self) {
        let Some(link) = &self.link else {
            return;
        };
        for (j, peer) in link.peers.iter().enumerate() {
            if j != link.index && !peer.stop.stop.swap(true, Ordering::SeqCst) {
                let _ = peer.stop.waker.wake();
            }
        }
    }

    /// SIGHUP in a group: `cfg` is applied here first and, if that worked, handed to
    /// the other loops (each with its share of the cache).
    pub(in crate::server) fn reload_group(&mut self, cfg: Config) -> Result<String, String> {
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

/// Links `loops` (in loop order): a channel and a reload slot for each, the board
/// their counters are published on, and each core told which loop it is (the names it
/// owns).
pub(super) fn link(loops: &mut [Server]) {
    let n = loops.len();
    let mut inboxes = Vec::with_capacity(n);
    let mut peers = Vec::with_capacity(n);
    for s in loops.iter() {
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
        // The loops are at most MAX_THREADS (256): both fit.
        let (i, of) = (u32::try_from(index), u32::try_from(n));
        if let (Ok(i), Ok(of)) = (i, of) {
            s.core.set_loop(i, of);
        }
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
}
