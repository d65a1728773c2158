//! The UDP path of the loop: client listeners and upstream sockets read in batches
//! (recvmmsg), past the admission policy to the core; what the core asks for carried
//! out, answers to UDP clients gathered and sent in batches (sendmmsg; a lone answer
//! with sendto); upstream sockets replaced after `ROTATE_AFTER` queries and closed
//! once their grace is over.
//!
//! Wildcard listeners (`0.0.0.0`, `[::]`): the kernel says where each query was sent
//! (pktinfo.rs), and its answer must come from there, or a client that asked another of
//! the host's addresses drops it. The core knows a UDP client by a number: for a query
//! on listener `i`, `i` if the listener is bound to one address (its sending is right
//! as it is) or the kernel did not say, else a reply path's (reply_paths.rs): the
//! listener and the address to answer from, made on the first query to it. Every answer, whenever it is
//! made (a miss when the upstream answers, each coalesced waiter, a rate-limit slip),
//! thus leaves from the address its query was sent to; the other listeners' path is
//! unchanged (they never look at destinations).
use std::io;

use mio::{Interest, Token};

use super::mmsg;
use super::pktinfo::Dst;
use super::reply_paths::MAX_REPLY_PATHS;
use super::send::{Outgoing, SendReport};
use super::{udp, upstream_token, Server, MAX_DATAGRAMS_PER_TURN, UDP_LISTENER};
use crate::clock::Instant;
use crate::forward::{Client, Dest, Source, Transmit};
use crate::policy::Admit;

/// A queue of gathered answers: listener `i`'s, or reply path `k`'s.
#[derive(Clone, Copy)]
enum Queue {
    Listener(usize),
    Path(usize),
}

impl Server {
    /// Reads a client listener in batches until a batch comes back short (the socket
    /// is then empty: see mmsg.rs for why no read until EAGAIN is needed) or the
    /// per-turn limit is reached (then it is read again next turn).
    pub(super) fn read_udp_listener(&mut self, now: Instant, i: usize) {
        if self.shutdown_at.is_some() {
            return; // no new queries once stopping (a re-queued read included)
        }
        let wildcard = self.udp_wildcard.get(i).copied().unwrap_or(false);
        let mut read = 0;
        while read < MAX_DATAGRAMS_PER_TURN {
            let Some(sock) = self.udp_listeners.get(i) else {
                return;
            };
            match self.client_ring.recv(sock) {
                Ok(n) => {
                    read += n;
                    for d in 0..n {
                        self.take_query(now, i, d, wildcard);
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
    /// to the core, as a client of listener `i` or, on a wildcard listener, of the
    /// reply path of its destination.
    fn take_query(&mut self, now: Instant, i: usize, d: usize, wildcard: bool) {
        let to = if wildcard {
            self.reply_to(now, i, d)
        } else {
            i
        };
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
                let client = Client::Udp { listener: to, addr };
                if self.core.handle_query(now, client, dgram.bytes) {
                    self.owe_answer(to);
                }
            }
            Admit::Reply(bytes) => {
                self.owe_answer(to);
                self.queue_udp(to, Outgoing { to: addr, bytes })
            }
            Admit::Drop => {}
        }
    }

    /// An answer will go to client number `to`: owed by its reply path, if it is one
    /// (numbers past the listeners').
    #[inline(always)]
    fn owe_answer(&mut self, to: usize) {
        if let Some(k) = to.checked_sub(self.udp_out.len()) {
            self.reply_paths.owe(k);
        }
    }

    /// The number the core knows the sender of datagram `d` (on wildcard listener `i`)
    /// by: its reply path's, or `i` if the kernel did not say where it was sent or
    /// every path owes answers. Kept out of `take_query`, which other listeners run.
    #[inline(never)]
    fn reply_to(&mut self, now: Instant, i: usize, d: usize) -> usize {
        let Some(dst) = self.client_ring.dst(d) else {
            return i;
        };
        match self.reply_paths.path(i, dst) {
            Some(k) => self.udp_out.len() + k,
            None => {
                if let Some(n) = self.log.hit(now, "reply-paths-full") {
                    log::warn!(
                        "{MAX_REPLY_PATHS} local addresses with answers owed: answering from the kernel's choice{n}"
                    );
                }
                i
            }
        }
    }

    /// Reads an upstream socket in batches, as a client listener. An error (ICMP port
    /// unreachable: ECONNREFUSED) fails the queries on it; datagrams queued behind the
    /// error are read next.
    pub(super) fn read_upstream_udp(
        &mut self,
        now: Instant,
        u: usize,
        s: usize,
        generation: usize,
    ) {
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
    pub(super) fn flush(&mut self, now: Instant) {
        if self.core.has_transmit() {
            self.take_transmits(now);
        }
        if self.udp_queued != 0 {
            self.send_udp_batches();
        }
    }

    /// Sends every listener's and reply path's gathered answers.
    fn send_udp_batches(&mut self) {
        for i in 0..self.udp_out.len() {
            if self.udp_out.get(i).is_some_and(|q| !q.is_empty()) {
                self.send_udp_batch(i);
            }
        }
        if !self.reply_paths.waiting.is_empty() {
            self.send_path_batches();
        }
    }

    /// Sends the gathered answers of every reply path listed as waiting. Kept out of
    /// line: listeners bound to one address never get here.
    #[cold]
    #[inline(never)]
    fn send_path_batches(&mut self) {
        while let Some(k) = self.reply_paths.waiting.pop() {
            self.reply_paths.sent(k);
            self.send_path_batch(k);
        }
    }

    /// Carries out what the core asked for; answers to UDP clients are only gathered
    /// (a full batch goes out at once).
    pub(super) fn take_transmits(&mut self, now: Instant) {
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
    /// Inlined (LTO keeps it apart otherwise): it runs once per answer, and a call
    /// passes the datagram through the stack.
    #[inline(always)]
    fn queue_udp(&mut self, i: usize, out: Outgoing) {
        let Some(queue) = self.udp_out.get_mut(i) else {
            let k = i.saturating_sub(self.udp_out.len());
            self.queue_path(k, out);
            return;
        };
        queue.push(out);
        self.udp_queued += 1;
        if queue.len() >= mmsg::BATCH {
            self.send_udp_batch(i);
        }
    }

    /// Sends listener `i`'s gathered answers.
    fn send_udp_batch(&mut self, i: usize) {
        self.send_queue(Queue::Listener(i));
    }

    /// Sends reply path `k`'s gathered answers, from its address.
    #[cold]
    fn send_path_batch(&mut self, k: usize) {
        self.send_queue(Queue::Path(k));
    }

    /// Sends the answers gathered in `q` (sendmmsg; one alone with sendto, or sendmsg
    /// from a reply path's address), counts those not sent, and gives their buffers
    /// back. Inlined into the two callers above, so that each has only its own case
    /// (a listener's answers have no source to look at).
    #[inline(always)]
    fn send_queue(&mut self, q: Queue) {
        let (l, from, queue) = match q {
            Queue::Listener(i) => match self.udp_out.get_mut(i) {
                Some(queue) => (i, None, queue),
                None => return,
            },
            Queue::Path(k) => match self.reply_paths.paths.get_mut(k) {
                Some(path) => (path.listener, Some(path.from), &mut path.queue),
                None => return,
            },
        };
        if queue.is_empty() {
            return;
        }
        self.udp_queued = self.udp_queued.saturating_sub(queue.len());
        if let Some(sock) = self.udp_listeners.get(l) {
            // Taken apart so that only the cold path drops an error.
            let SendReport { failed, error, .. } = self.sender.send(sock, queue, from);
            self.send_errors += failed as u64;
            if let Some(e) = error {
                log_unsent(l, from, failed, e);
            }
        }
        while let Some(out) = queue.pop() {
            self.core.release(out.bytes);
        }
    }

    /// [`queue_udp`](Self::queue_udp) for reply path `k`.
    #[cold]
    fn queue_path(&mut self, k: usize, out: Outgoing) {
        let Some(path) = self.reply_paths.paths.get_mut(k) else {
            self.core.release(out.bytes);
            return;
        };
        // Queued: owed no longer (it leaves from this path's address).
        path.owed = path.owed.saturating_sub(1);
        path.queue.push(out);
        self.udp_queued += 1;
        if !path.waiting {
            path.waiting = true;
            self.reply_paths.waiting.push(k);
        }
        if path.queue.len() >= mmsg::BATCH {
            self.send_path_batch(k);
        }
    }

    fn send_upstream_udp(&mut self, now: Instant, u: usize, s: usize, bytes: &[u8]) {
        let (result, rotate) = match self.upstream_udp.get_mut(u).and_then(|p| p.get_mut(s)) {
            Some(slot) => {
                slot.uses = slot.uses.saturating_add(1);
                // Looked at here, where the slot is in hand: most sends rotate nothing.
                let rotate = slot.rotation_due();
                (slot.current.send(bytes), rotate)
            }
            None => return,
        };
        match result {
            Ok(_) if rotate => self.maybe_rotate(now, u, s),
            Ok(_) => {}
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
        if !slot.rotation_due() {
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

    /// Closes the retired upstream sockets whose grace time is over.
    pub(super) fn close_retired_udp(&mut self, now: Instant) {
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

/// Logs the error of `n` answers not sent on listener `l` (from `from`, if a reply
/// path's).
#[cold]
fn log_unsent(l: usize, from: Option<Dst>, n: usize, e: io::Error) {
    match from {
        Some(from) => log::debug!(
            "{n} answer(s) from {} not sent on listener {l}: {e}",
            from.ip
        ),
        None => log::debug!("{n} answer(s) not sent on listener {l}: {e}"),
    }
}
