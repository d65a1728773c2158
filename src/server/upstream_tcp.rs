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
mod close;
mod ready;

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::tcp::Framed;
use super::tls::Stream;
use super::{Server, TOKEN_SPACE, UPSTREAM_TCP};
use crate::clock::Instant;
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
        self.maybe_open = true;
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
        self.maybe_open = true;
        Ok(())
    }
}
