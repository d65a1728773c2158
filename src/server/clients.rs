//! The client side of TCP: accepting clients (with the connection cap), reading their
//! framed queries, writing their answers. Connections to upstreams are in
//! `upstream_tcp`. DNS over TLS clients (`--listen-tls`) are the same connections with
//! TLS on them ([`Stream::Tls`]): same slots, caps, fair shares, ACL and idle rules; a
//! handshake must be over within the time a message may take (a client that is not
//! speaking TLS is closed by rustls' first error, or by that timer if it says nothing).
use std::io;
use std::net::SocketAddr;

use mio::{Interest, Token};

use super::group::{self, Route};
use super::tcp::{ClientConn, Framed, ReadState, MAX_FRAMES_PER_TURN, MAX_WRITE_BACKLOG};
use super::tls::Stream;
use super::{conn_id, split_conn_id, Server, CLIENT_TCP, PADDED_QUERY, TOKEN_SPACE};
use crate::clock::Instant;
use crate::forward::Client;
use crate::policy::client_key;
use crate::wire::padding;

impl Server {
    /// Accepts on TCP listener `i`, or on TLS listener `i` when `tls`.
    pub(super) fn accept(&mut self, now: Instant, i: usize, tls: bool) {
        loop {
            let listeners = match tls {
                true => &self.tls_listeners,
                false => &self.tcp_listeners,
            };
            let Some(listener) = listeners.get(i) else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    if !self.admit_tcp_client(now, &stream, addr) {
                        continue;
                    }
                    let stream = match self.tls_server().filter(|_| tls) {
                        Some(cfg) => match Stream::server(stream, cfg) {
                            Ok(s) => s,
                            Err(e) => {
                                log::warn!("TLS for {addr}: {e}");
                                continue;
                            }
                        },
                        None if tls => continue,
                        None => Stream::Plain(stream),
                    };
                    self.add_client(now, stream, addr);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: log, and try again on the next readiness.
                    if let Some(n) = self.log.hit(now, "accept") {
                        log::warn!("accept on listener {i}: {e}{n}");
                    }
                    return;
                }
            }
        }
    }

    /// Takes a connection [`Server::admit_tcp_client`] has made room for.
    pub(super) fn add_client(&mut self, now: Instant, mut stream: Stream, addr: SocketAddr) {
        let _ = stream.sock().set_nodelay(true);
        let n = self
            .clients
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.clients.len());
        if n >= TOKEN_SPACE {
            return;
        }
        if let Err(e) =
            self.poll
                .registry()
                .register(stream.sock(), Token(CLIENT_TCP + n), Interest::READABLE)
        {
            log::debug!("register TCP client {addr}: {e}");
            return;
        }
        self.client_generation = self.client_generation.wrapping_add(1);
        let conn = ClientConn {
            stream,
            addr,
            generation: self.client_generation,
            io: Framed::default(),
            last_active: now,
            opened: now,
            partial_since: None,
            last_write: now,
            outstanding: 0,
            read_closed: false,
            want_write: false,
            read_paused: false,
        };
        self.policy.tcp.opened(client_key(addr.ip()));
        self.maybe_open = true;
        if n == self.clients.len() {
            self.clients.push(Some(conn));
        } else if let Some(slot) = self.clients.get_mut(n) {
            *slot = Some(conn);
        }
    }

    pub(super) fn client_ready(&mut self, now: Instant, n: usize) {
        if self.clients.get(n).and_then(Option::as_ref).is_none() {
            return;
        }
        self.write_client(now, n);
        self.read_client(now, n);
    }

    /// Reads framed queries from client connection `n` and hands them to the core.
    pub(super) fn read_client(&mut self, now: Instant, n: usize) {
        self.read_client_frames(now, n);
        self.send_refused(now);
    }

    fn read_client_frames(&mut self, now: Instant, n: usize) {
        let Some(Some(conn)) = self.clients.get_mut(n) else {
            return;
        };
        if conn.read_closed {
            return;
        }
        if conn.io.backlog() > MAX_WRITE_BACKLOG {
            // The client is not reading its answers: stop reading its queries.
            conn.read_paused = true;
            return;
        }
        conn.read_paused = false;
        let (id, addr) = (conn_id(n, conn.generation), conn.addr);
        let core = &mut self.core;
        // --threads: a query another loop owns goes there (group.rs).
        let mut link = self.link.as_mut();
        let (mut frames, mut outstanding) = (0, 0);
        let tls = conn.stream.is_tls();
        let state = conn.io.read_frames(
            &mut conn.stream,
            &mut self.buf,
            MAX_FRAMES_PER_TURN,
            |frame| {
                frames += 1;
                // The answer to a padded query is padded: the mark goes with the query.
                let conn = match tls && padding::is_padded(frame) {
                    true => id | PADDED_QUERY,
                    false => id,
                };
                let client = Client::Tcp { conn, addr };
                let taken = match group::route(link.as_deref_mut(), client, frame) {
                    Route::Here => core.handle_query(now, client, frame),
                    Route::Sent => true,
                    Route::Refused(reply) => group::refuse(link.as_deref_mut(), client, reply),
                };
                if taken {
                    outstanding += 1;
                }
            },
        );
        if let Some(resumed) = conn.stream.handshake_done() {
            log::debug!(
                "TLS client {}: handshake done, resumed: {resumed}",
                conn.addr
            );
            self.tls.counters.client_handshakes += 1;
        }
        conn.outstanding += outstanding;
        // Only a query the core took counts as activity: not a byte, not a junk frame.
        if outstanding > 0 {
            conn.last_active = now;
        }
        // The clock of an incomplete message starts with its first octet (read in this
        // turn if whole messages came before it).
        conn.partial_since = match conn.io.partial() {
            0 => None,
            _ if frames > 0 => Some(now),
            _ => conn.partial_since.or(Some(now)),
        };
        match state {
            Ok(ReadState::Drained) => {}
            Ok(ReadState::More) => {
                conn.read_paused = true;
                self.paused.push(n);
            }
            Ok(ReadState::Eof) => conn.read_closed = true,
            Err(e) if conn.stream.failed() => {
                if let Some(k) = self.log.hit(now, "client-tls") {
                    log::debug!("TLS client {}: {e}{k}", conn.addr);
                }
                return self.close_client(n);
            }
            Err(e) => {
                // Resets come in floods when many clients go away at once.
                if let Some(k) = self.log.hit(now, "client-tcp-read") {
                    log::debug!("TCP client {}: {e}{k}", conn.addr);
                }
                return self.close_client(n);
            }
        }
        if conn.stream.wants_write() {
            // TLS records the socket did not take while reading (handshake replies).
            return self.write_client(now, n);
        }
        self.close_if_done(n);
    }

    pub(super) fn resume_paused(&mut self, now: Instant) {
        for n in std::mem::take(&mut self.paused) {
            self.read_client(now, n);
        }
    }

    pub(super) fn send_tcp_client(&mut self, now: Instant, id: usize, bytes: &[u8]) {
        if self.answer_remote(id, bytes) {
            return; // a query handed to this loop by another (--threads)
        }
        let (n, unmarked) = split_conn_id(id);
        let Some(Some(conn)) = self.clients.get_mut(n) else {
            return;
        };
        if conn_id(n, conn.generation) != unmarked {
            return; // that connection is gone; its slot serves another client now
        }
        conn.outstanding = conn.outstanding.saturating_sub(1);
        conn.last_active = now;
        if conn.io.backlog() == 0 {
            conn.last_write = now; // the stall clock starts with the first unwritten octet
        }
        if id & PADDED_QUERY != 0 {
            // RFC 8467 §4.1: answers to padded queries, in blocks of 468 octets.
            conn.io.queue_padded(bytes, padding::RESPONSE_BLOCK);
        } else {
            conn.io.queue(bytes);
        }
        self.write_client(now, n);
    }

    /// Writes what is queued; asks for WRITABLE while some is left; resumes reading once
    /// a backlog has drained.
    pub(super) fn write_client(&mut self, now: Instant, n: usize) {
        let registry = self.poll.registry();
        let Some(Some(conn)) = self.clients.get_mut(n) else {
            return;
        };
        let before = conn.io.backlog();
        let flushed = conn.io.flush(&mut conn.stream);
        if conn.io.backlog() < before {
            conn.last_write = now;
        }
        match flushed {
            Ok(done) => {
                if done == conn.want_write {
                    conn.want_write = !done;
                    let interest = if done {
                        Interest::READABLE
                    } else {
                        Interest::READABLE | Interest::WRITABLE
                    };
                    if let Err(e) =
                        registry.reregister(conn.stream.sock(), Token(CLIENT_TCP + n), interest)
                    {
                        log::debug!("reregister TCP client {}: {e}", conn.addr);
                    }
                }
                if done && conn.read_paused && !self.paused.contains(&n) {
                    self.paused.push(n);
                }
            }
            Err(e) => {
                log::debug!("TCP client {}: {e}", conn.addr);
                return self.close_client(n);
            }
        }
        self.close_if_done(n);
    }

    pub(super) fn close_if_done(&mut self, n: usize) {
        let done = self
            .clients
            .get(n)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.read_closed && c.is_idle());
        if done {
            self.close_client(n);
        }
    }

    pub(super) fn close_client(&mut self, n: usize) {
        if let Some(slot) = self.clients.get_mut(n) {
            if let Some(mut conn) = slot.take() {
                conn.stream.close_notify();
                let _ = self.poll.registry().deregister(conn.stream.sock());
                self.policy.tcp.closed(client_key(conn.addr.ip()));
                if conn.stream.failed() || conn.stream.handshaking() {
                    self.tls.counters.client_failures += 1;
                }
            }
        }
    }
}
