//! How an upstream TCP connection ends: closed (its queries failed, the queue moved or
//! failed), retired by a reload, or swept when idle, stuck or not connected in time.

use super::{conn_slot, MAX_TCP_PER_UPSTREAM, TLS_FIRST_BACKOFF, TLS_MAX_BACKOFF};
use super::{UPSTREAM_TCP_IDLE, UPSTREAM_TLS_IDLE};
use crate::clock::Instant;
use crate::server::Server;

impl Server {
    /// Closes connection `k` of upstream `u` and fails its outstanding queries. The
    /// queue moves to a new connection, unless the connect failed and no other
    /// connection to the upstream is up: then it fails too.
    pub(super) fn close_upstream_tcp(
        &mut self,
        now: Instant,
        u: usize,
        k: usize,
        connect_failed: bool,
    ) {
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
    pub(in crate::server) fn retire_upstream_tcp(&mut self, now: Instant, u: usize) {
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
    pub(in crate::server) fn sweep_upstream_tcp(&mut self, now: Instant) {
        for u in 0..self.upstream_tcp.len() {
            for k in 0..MAX_TCP_PER_UPSTREAM {
                self.sweep_conn(now, u, k);
            }
            self.drain_queue(now, u);
        }
    }

    pub(super) fn sweep_conn(&mut self, now: Instant, u: usize, k: usize) {
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
