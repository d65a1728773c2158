//! Readiness of an upstream TCP connection: its connect completing, the TLS handshake,
//! writing the queries queued on it and handing every message read to the core.

use mio::Interest;

use super::{conn_slot, connect_result, token, UpstreamConn, MAX_TCP_PER_UPSTREAM};
use crate::clock::Instant;
use crate::forward::Source;
use crate::server::tcp::{ReadState, MAX_FRAMES_PER_TURN};
use crate::server::Server;

impl Server {
    /// Readiness of upstream connection number `n` (its token minus `UPSTREAM_TCP`).
    pub(in crate::server) fn upstream_tcp_ready(&mut self, now: Instant, n: usize) {
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
    pub(super) fn is_tls_upstream(&self, u: usize) -> bool {
        self.cfg
            .upstreams
            .get(u)
            .is_some_and(|&a| self.tls.is_upstream(a))
    }

    /// Counts a completed handshake, once per connection; ends the pool's back-off.
    pub(super) fn note_handshake(&mut self, u: usize, k: usize) {
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
    pub(super) fn read_upstream(&mut self, now: Instant, u: usize, k: usize) {
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
    pub(super) fn write_upstream(&mut self, now: Instant, u: usize, k: usize) {
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
}
