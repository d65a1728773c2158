//! TCP connections to upstreams (RFC 7766), for queries whose UDP answer came back
//! truncated ([`Dest::UpstreamTcp`](crate::forward::Dest::UpstreamTcp)).
//!
//! Each upstream has a small pool: at most [`MAX_TCP_PER_UPSTREAM`] connections, each
//! carrying up to [`MAX_OUTSTANDING_PER_CONN`] queries at once (pipelining, §6.2.1.1).
//! A query goes on the first connection with room; a second connection is opened only
//! when the first is full (§6.2.2: few connections per server). Past that, queries wait
//! in a queue of at most [`MAX_QUEUED_PER_UPSTREAM`], and beyond it fail at once.
//! Answers may come in any order (§7): every message read is handed to the core, which
//! matches it to its query by ID and question. The pool only keeps the IDs outstanding
//! on each connection, to know when it is idle and which queries a failure hits.
//!
//! Guarantees: at most `MAX_TCP_PER_UPSTREAM` descriptors per upstream; bounded buffers
//! (outstanding and queued queries are capped; `Framed` holds at most a frame and one
//! read beyond it); no allocation per query once the buffers have grown. Every query
//! handed to the pool ends with its answer reaching the core or with
//! `handle_tcp_failure` for its ID, except one past the query deadline, which the
//! core has already finished.
//!
//! A connection ends when:
//! - its connect fails, or does not complete within `--timeout`: its queries fail, and
//!   the queue too unless another connection to the upstream is up;
//! - it is reset, written to in vain, or closed by the upstream: its queries fail; the
//!   queue goes on, on a new connection. A close with nothing outstanding is the
//!   upstream ending an idle connection (§6.2.3): the next query reconnects;
//! - nothing was outstanding on it for [`UPSTREAM_TCP_IDLE`] (§6.2.3);
//! - its oldest query waited `--deadline` with nothing read since it was sent (stuck);
//! - a reload changed the TLS upstream's CA or name: it takes no new query and closes
//!   once its queries in flight are answered (at once if still in its handshake).
//!
//! We end a TLS connection with a close_notify (RFC 7858 §3.4 asks for a clean close).
//!
//! An EDNS TCP keepalive option (RFC 7828) from the upstream is ignored.
//!
//! A `tls://` upstream (RFC 7858) uses the same pool, every query of it coming here:
//! its connections carry TLS ([`Stream::Tls`]), its queries are padded (RFC 8467), a
//! connection idle for [`UPSTREAM_TLS_IDLE`] is closed (handshakes cost), and a failed
//! connect or handshake (certificate, name) makes the next connect wait
//! [`TLS_FIRST_BACKOFF`], doubling up to [`TLS_MAX_BACKOFF`]; meanwhile its queries fail
//! at once and the core tries another upstream or answers SERVFAIL at the deadline.
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::tcp::{Framed, ReadState, MAX_FRAMES_PER_TURN};
use super::tls::Stream;
use super::{Server, TOKEN_SPACE, UPSTREAM_TCP};
use crate::forward::Source;
use crate::wire::padding;

/// Most TCP connections to one upstream at once. RFC 7766 §6.2.2 asks clients to keep
/// few; a second one takes the queries the first has no room for.
pub const MAX_TCP_PER_UPSTREAM: usize = 2;
/// Most queries outstanding on one connection: the bound many servers put on pipelined
/// queries per connection, past which they stop reading or close.
pub const MAX_OUTSTANDING_PER_CONN: usize = 100;
/// Most queries waiting for room on an upstream's connections; past it, a query fails
/// at once (the core tries another upstream, or waits for its timer). A query also
/// leaves the queue after `--timeout`, so this bounds memory in a burst rather than
/// time: a pipelining client can send thousands of queries at once.
pub const MAX_QUEUED_PER_UPSTREAM: usize = 2048;
/// A connection with nothing outstanding is closed after this long (RFC 7766 §6.2.3:
/// clients close idle connections).
pub const UPSTREAM_TCP_IDLE: Duration = Duration::from_secs(5);
/// The same for a TLS connection: kept longer, as a new one costs a handshake (and
/// resumption makes that cheaper, not free).
pub const UPSTREAM_TLS_IDLE: Duration = Duration::from_secs(30);
/// Wait before connecting again to a TLS upstream after a failed connect or handshake;
/// doubles with each failure in a row, up to the maximum.
pub const TLS_FIRST_BACKOFF: Duration = Duration::from_millis(250);
pub const TLS_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The TCP connections to one upstream and the queries waiting for room on them.
#[derive(Debug, Default)]
pub struct UpstreamPool {
    /// Connection k has the token `UPSTREAM_TCP + u * MAX_TCP_PER_UPSTREAM + k`.
    conns: [Option<UpstreamConn>; MAX_TCP_PER_UPSTREAM],
    /// Oldest first. Valid lengths: 0..=MAX_QUEUED_PER_UPSTREAM.
    queue: VecDeque<Queued>,
    /// TLS only: failed connects or handshakes in a row, and no connect before then.
    failures: u32,
    retry_at: Option<Instant>,
}

/// Where the query at the head of a queue goes.
enum Place {
    /// Onto connection k.
    Conn(usize),
    /// Nowhere: it fails.
    Fail,
    /// It stays queued.
    Wait,
}

/// A query waiting for room on a connection.
#[derive(Debug)]
struct Queued {
    /// The core's buffer, given back once the query is written or failed.
    bytes: Vec<u8>,
    id: u16,
    since: Instant,
}

/// One TCP connection to an upstream.
#[derive(Debug)]
struct UpstreamConn {
    stream: Stream,
    io: Framed,
    /// The queries written or queued for writing and not answered: (ID, when sent).
    /// Valid: at most MAX_OUTSTANDING_PER_CONN, IDs distinct (answers are matched by
    /// ID, RFC 7766 §7, so one connection never carries an ID twice at once).
    outstanding: Vec<(u16, Instant)>,
    /// The non-blocking connect has completed.
    connected: bool,
    /// Registered for WRITABLE as well as READABLE.
    want_write: bool,
    opened: Instant,
    /// When a message was last read (`opened` before the first).
    last_read: Instant,
    /// When `outstanding` last became empty.
    idle_since: Instant,
    /// A reload changed the upstream's trust settings: no new query goes on it, and
    /// it closes once `outstanding` is empty.
    retiring: bool,
}

impl UpstreamConn {
    /// Retiring, with nothing left to answer or to write: closes now.
    fn retired(&self) -> bool {
        self.retiring && self.outstanding.is_empty() && self.io.backlog() == 0
    }
}

impl UpstreamPool {
    /// Whether the pool has a connection open or a query waiting.
    pub fn is_active(&self) -> bool {
        self.conns.iter().any(Option::is_some) || !self.queue.is_empty()
    }

    /// The first connection with room for a query with this ID.
    fn with_room(&self, id: u16) -> Option<usize> {
        self.conns.iter().position(|c| {
            c.as_ref().is_some_and(|c| {
                !c.retiring
                    && c.outstanding.len() < MAX_OUTSTANDING_PER_CONN
                    && c.outstanding.iter().all(|&(o, _)| o != id)
            })
        })
    }

    /// Whether a connection that takes queries is up.
    fn any_connected(&self) -> bool {
        self.conns
            .iter()
            .flatten()
            .any(|c| c.connected && !c.retiring)
    }
}

/// Connection `k` of upstream `u`, open or not.
fn conn_slot(pools: &mut [UpstreamPool], u: usize, k: usize) -> Option<&mut Option<UpstreamConn>> {
    pools.get_mut(u).and_then(|p| p.conns.get_mut(k))
}

fn token(u: usize, k: usize) -> Option<Token> {
    let n = u * MAX_TCP_PER_UPSTREAM + k;
    (n < TOKEN_SPACE).then_some(Token(UPSTREAM_TCP + n))
}

/// Whether a non-blocking connect has completed; the error if it failed (mio's
/// `TcpStream::connect` docs: on an event, `take_error`, then `peer_addr`).
fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

impl Server {
    /// Takes a query for upstream `u` (a `Dest::UpstreamTcp` transmit): it goes on a
    /// connection with room, or waits, or fails at once if too many wait. The pool
    /// keeps `bytes` while the query waits and gives it back to the core.
    pub(super) fn send_upstream_tcp(&mut self, now: Instant, u: usize, bytes: Vec<u8>) {
        let id = match bytes.get(..2) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => return self.core.release(bytes),
        };
        let mut bytes = bytes;
        if self.is_tls_upstream(u) {
            padding::pad(&mut bytes, padding::QUERY_BLOCK);
        }
        let Some(pool) = self.upstream_tcp.get_mut(u) else {
            return self.core.release(bytes);
        };
        if pool.queue.len() >= MAX_QUEUED_PER_UPSTREAM {
            log::debug!("TCP queue of upstream {u} full: query {id} fails");
            self.send_errors += 1;
            self.core.release(bytes);
            return self.core.handle_tcp_failure(now, u, id);
        }
        pool.queue.push_back(Queued {
            bytes,
            id,
            since: now,
        });
        self.drain_queue(now, u);
    }

    /// Moves waiting queries onto connections with room, opening connections up to
    /// the cap, then writes them.
    fn drain_queue(&mut self, now: Instant, u: usize) {
        let mut moved = false;
        loop {
            let k = match self.place_head(now, u) {
                Place::Conn(k) => Some(k),
                Place::Fail => None,
                Place::Wait => break,
            };
            let Some(pool) = self.upstream_tcp.get_mut(u) else {
                return;
            };
            let Some(q) = pool.queue.pop_front() else {
                break;
            };
            let conn = k
                .and_then(|k| pool.conns.get_mut(k))
                .and_then(Option::as_mut);
            let sent = conn.is_some_and(|c| {
                let framed = c.io.queue(&q.bytes);
                if framed {
                    c.outstanding.push((q.id, now));
                }
                framed
            });
            if !sent {
                self.core.handle_tcp_failure(now, u, q.id);
            }
            moved |= sent;
            self.core.release(q.bytes);
        }
        if moved {
            for k in 0..MAX_TCP_PER_UPSTREAM {
                self.write_upstream(now, u, k);
            }
        }
    }

    /// Where the query at the head of upstream `u`'s queue goes. One that waited
    /// `--timeout` fails: the core has made another attempt by then, and the upstream
    /// is behind already. The head waits while its ID is outstanding on every
    /// connection with room, until that one is answered or expires (random IDs: rare).
    fn place_head(&mut self, now: Instant, u: usize) -> Place {
        let Some(pool) = self.upstream_tcp.get(u) else {
            return Place::Wait;
        };
        let Some(&Queued { id, since, .. }) = pool.queue.front() else {
            return Place::Wait;
        };
        if now.saturating_duration_since(since) >= self.cfg.timeout {
            return Place::Fail;
        }
        if let Some(k) = pool.with_room(id) {
            return Place::Conn(k);
        }
        let Some(k) = pool.conns.iter().position(Option::is_none) else {
            return Place::Wait;
        };
        let live = pool.any_connected();
        if pool.retry_at.is_some_and(|t| now < t) {
            // A TLS upstream backing off: fail rather than wait (the core moves on).
            if !live {
                self.fail_queue(now, u);
            }
            return Place::Wait;
        }
        match self.connect(now, u, k) {
            Ok(()) => Place::Conn(k),
            Err(e) => {
                log::debug!("TCP to upstream {u}: {e}");
                // Wait for room on a live connection, if there is one.
                if !live {
                    self.fail_queue(now, u);
                }
                Place::Wait
            }
        }
    }

    /// Fails every query waiting for upstream `u`.
    fn fail_queue(&mut self, now: Instant, u: usize) {
        while let Some(q) = self
            .upstream_tcp
            .get_mut(u)
            .and_then(|p| p.queue.pop_front())
        {
            self.core.handle_tcp_failure(now, u, q.id);
            self.core.release(q.bytes);
        }
    }

    /// Starts a non-blocking connect for connection `k` of upstream `u`.
    fn connect(&mut self, now: Instant, u: usize, k: usize) -> io::Result<()> {
        let (Some(addr), Some(token)) = (self.cfg.upstreams.get(u).copied(), token(u, k)) else {
            return Err(io::Error::other("no such upstream connection"));
        };
        log::debug!("TCP to upstream {u} ({k}): connecting to {addr}");
        let sock = TcpStream::connect(addr)?;
        let _ = sock.set_nodelay(true);
        let mut stream = match self.tls.upstream(addr) {
            Some((cfg, name)) => Stream::client(sock, cfg, name)?,
            // Never in clear to an upstream configured for TLS.
            None if self.tls.is_upstream(addr) => return Err(io::Error::other("no TLS config")),
            None => Stream::Plain(sock),
        };
        self.poll.registry().register(
            stream.sock(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let Some(slot) = conn_slot(&mut self.upstream_tcp, u, k) else {
            return Err(io::Error::other("no such connection slot"));
        };
        *slot = Some(UpstreamConn {
            stream,
            io: Framed::default(),
            outstanding: Vec::with_capacity(MAX_OUTSTANDING_PER_CONN),
            connected: false,
            want_write: true,
            opened: now,
            last_read: now,
            idle_since: now,
            retiring: false,
        });
        Ok(())
    }

    /// Readiness of upstream connection number `n` (its token minus `UPSTREAM_TCP`).
    pub(super) fn upstream_tcp_ready(&mut self, now: Instant, n: usize) {
        let (u, k) = (n / MAX_TCP_PER_UPSTREAM, n % MAX_TCP_PER_UPSTREAM);
        let Some(Some(conn)) = conn_slot(&mut self.upstream_tcp, u, k) else {
            return;
        };
        if !conn.connected {
            match connect_result(conn.stream.sock_ref()) {
                Ok(true) => conn.connected = true,
                Ok(false) => return,
                Err(e) => {
                    log::debug!("TCP to upstream {u}: {e}");
                    return self.close_upstream_tcp(now, u, k, true);
                }
            }
        }
        self.write_upstream(now, u, k);
        self.read_upstream(now, u, k);
        // TLS: handshake messages or queries that the socket did not take while reading.
        let wants = conn_slot(&mut self.upstream_tcp, u, k)
            .and_then(|c| c.as_ref())
            .is_some_and(|c| c.stream.wants_write());
        if wants {
            self.write_upstream(now, u, k);
        }
    }

    /// Whether upstream `u` is reached over TLS.
    fn is_tls_upstream(&self, u: usize) -> bool {
        self.cfg
            .upstreams
            .get(u)
            .is_some_and(|&a| self.tls.is_upstream(a))
    }

    /// Counts a completed handshake, once per connection; ends the pool's back-off.
    fn note_handshake(&mut self, u: usize, k: usize) {
        let Some(pool) = self.upstream_tcp.get_mut(u) else {
            return;
        };
        let Some(Some(conn)) = pool.conns.get_mut(k) else {
            return;
        };
        if let Some(resumed) = conn.stream.handshake_done() {
            log::debug!("TLS to upstream {u} ({k}): handshake done, resumed: {resumed}");
            self.tls.counters.upstream_handshakes += 1;
            self.tls.counters.upstream_resumed += u64::from(resumed);
            pool.failures = 0;
            pool.retry_at = None;
        }
    }

    /// Hands every message read to the core; frees the room of the answered queries.
    fn read_upstream(&mut self, now: Instant, u: usize, k: usize) {
        let Some(Some(conn)) = conn_slot(&mut self.upstream_tcp, u, k) else {
            return;
        };
        let UpstreamConn {
            stream,
            io,
            outstanding,
            ..
        } = &mut *conn;
        let core = &mut self.core;
        let mut read = 0;
        let state = io.read_frames(stream, &mut self.buf, MAX_FRAMES_PER_TURN, |frame| {
            // An ID not outstanding here (a late or stray answer) still goes to the
            // core, which checks every answer.
            if let Some(&[a, b]) = frame.get(..2) {
                let id = u16::from_be_bytes([a, b]);
                if let Some(i) = outstanding.iter().position(|&(o, _)| o == id) {
                    outstanding.swap_remove(i);
                }
            }
            core.handle_response(now, Source::Tcp { upstream: u }, frame);
            read += 1;
        });
        if read > 0 {
            conn.last_read = now;
            if conn.outstanding.is_empty() {
                conn.idle_since = now;
            }
        }
        let retired = conn.retired();
        if conn.stream.is_tls() {
            self.note_handshake(u, k);
        }
        match state {
            _ if retired => return self.close_upstream_tcp(now, u, k, false),
            Ok(ReadState::Drained) => {}
            Ok(ReadState::More) => self.ready_again.extend(token(u, k)),
            Ok(ReadState::Eof) => return self.close_upstream_tcp(now, u, k, false),
            Err(e) => {
                log::debug!("TCP to upstream {u}: {e}");
                return self.close_upstream_tcp(now, u, k, false);
            }
        }
        if read > 0 {
            self.drain_queue(now, u);
        }
    }

    /// Writes what is queued on a connected connection; asks for WRITABLE while some
    /// is left.
    fn write_upstream(&mut self, now: Instant, u: usize, k: usize) {
        let registry = self.poll.registry();
        let Some(Some(conn)) = conn_slot(&mut self.upstream_tcp, u, k) else {
            return;
        };
        if !conn.connected {
            return; // the connect's event writes what was queued meanwhile
        }
        match conn.io.flush(&mut conn.stream) {
            Ok(done) if done == conn.want_write => {
                conn.want_write = !done;
                let interest = if done {
                    Interest::READABLE
                } else {
                    Interest::READABLE | Interest::WRITABLE
                };
                if let Some(t) = token(u, k) {
                    if let Err(e) = registry.reregister(conn.stream.sock(), t, interest) {
                        log::debug!("reregister TCP to upstream {u}: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                log::debug!("TCP to upstream {u}: {e}");
                self.close_upstream_tcp(now, u, k, false);
            }
        }
    }

    /// Closes connection `k` of upstream `u` and fails its outstanding queries. The
    /// queue moves to a new connection, unless the connect failed and no other
    /// connection to the upstream is up: then it fails too.
    fn close_upstream_tcp(&mut self, now: Instant, u: usize, k: usize, connect_failed: bool) {
        let Some(pool) = self.upstream_tcp.get_mut(u) else {
            return;
        };
        let Some(mut conn) = pool.conns.get_mut(k).and_then(Option::take) else {
            return;
        };
        conn.stream.close_notify();
        let _ = self.poll.registry().deregister(conn.stream.sock());
        // A TLS connection that did not get through its handshake failed like a
        // connect: certificate, name, or not TLS (unless closed for a reload).
        let tls_failed = !conn.retiring && (conn.stream.failed() || conn.stream.handshaking());
        let connect_failed = connect_failed || tls_failed;
        if conn.stream.is_tls() && connect_failed {
            self.tls.counters.upstream_failures += u64::from(tls_failed);
            pool.failures = pool.failures.saturating_add(1);
            let backoff = TLS_FIRST_BACKOFF * (1 << (pool.failures - 1).min(6));
            pool.retry_at = Some(now + backoff.min(TLS_MAX_BACKOFF));
            log::warn!(
                "TLS to upstream {u} failed ({} in a row); next try in {:?}",
                pool.failures,
                backoff.min(TLS_MAX_BACKOFF)
            );
        }
        let give_up = connect_failed && !pool.any_connected();
        log::debug!(
            "TCP to upstream {u} ({k}) closed, {} outstanding, {} waiting",
            conn.outstanding.len(),
            pool.queue.len()
        );
        let deadline = self.cfg.deadline;
        for &(id, sent) in &conn.outstanding {
            if now.saturating_duration_since(sent) < deadline {
                self.core.handle_tcp_failure(now, u, id);
            }
        }
        if give_up {
            self.fail_queue(now, u);
        } else {
            self.drain_queue(now, u);
        }
    }

    /// Upstream `u`'s trust settings changed (a reload): its connections take no new
    /// query. One not through its handshake closes now (its queries fail, and the
    /// core sends them again, under the new settings); the others close once their
    /// queries in flight are answered or expire. A back-off ends with the old settings.
    pub(super) fn retire_upstream_tcp(&mut self, now: Instant, u: usize) {
        let Some(pool) = self.upstream_tcp.get_mut(u) else {
            return;
        };
        pool.failures = 0;
        pool.retry_at = None;
        let mut close = [false; MAX_TCP_PER_UPSTREAM];
        for (conn, close) in pool.conns.iter_mut().zip(&mut close) {
            if let Some(conn) = conn {
                conn.retiring = true;
                *close = !conn.connected || conn.stream.handshaking() || conn.retired();
            }
        }
        // Closing one may open a new connection (for the queue) in a free slot: the
        // slots to close were chosen before.
        for (k, _) in close.iter().enumerate().filter(|c| *c.1) {
            log::debug!("TCP to upstream {u} ({k}): closed, its trust settings changed");
            self.close_upstream_tcp(now, u, k, false);
        }
    }

    /// Closes connections that are idle, stuck or not connected in time; forgets
    /// queries past the deadline; fails queries that waited too long.
    pub(super) fn sweep_upstream_tcp(&mut self, now: Instant) {
        for u in 0..self.upstream_tcp.len() {
            for k in 0..MAX_TCP_PER_UPSTREAM {
                self.sweep_conn(now, u, k);
            }
            self.drain_queue(now, u);
        }
    }

    fn sweep_conn(&mut self, now: Instant, u: usize, k: usize) {
        let (timeout, deadline) = (self.cfg.timeout, self.cfg.deadline);
        let Some(Some(conn)) = conn_slot(&mut self.upstream_tcp, u, k) else {
            return;
        };
        let age = |t: Instant| now.saturating_duration_since(t);
        if conn.retired() {
            return self.close_upstream_tcp(now, u, k, false);
        }
        if !conn.connected || conn.stream.handshaking() {
            if age(conn.opened) >= timeout {
                log::debug!("TCP to upstream {u}: connect or TLS handshake timed out");
                self.close_upstream_tcp(now, u, k, true);
            }
            return;
        }
        let Some(oldest) = conn.outstanding.iter().map(|&(_, t)| t).min() else {
            let idle = match conn.stream.is_tls() {
                true => UPSTREAM_TLS_IDLE,
                false => UPSTREAM_TCP_IDLE,
            };
            if conn.io.backlog() == 0 && age(conn.idle_since) >= idle {
                self.close_upstream_tcp(now, u, k, false);
            }
            return;
        };
        if age(oldest) < deadline {
            return;
        }
        if conn.last_read <= oldest {
            log::debug!("TCP to upstream {u}: no answer for {deadline:?}; closing");
            return self.close_upstream_tcp(now, u, k, false);
        }
        // The upstream answers others but left these: the core is done with them.
        conn.outstanding.retain(|&(_, t)| age(t) < deadline);
        if conn.outstanding.is_empty() {
            conn.idle_since = now;
        }
    }
}
