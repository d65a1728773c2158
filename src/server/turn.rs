//! The loop's turn: poll with the timeout the core, the shutdown, the query log and
//! the sweep ask for; hand each ready socket to its reader; then the core's timers,
//! the answers to send and, every [`SWEEP_EVERY`], the sweep of idle connections.
//! A turn never blocks but in the poll, and ends the loop only when the poll itself
//! fails or a shutdown is finished.
use std::io;
use std::time::Duration;

use mio::{Events, Token};

use super::metrics_http::{MetricsHttp, MAX_SCRAPERS, METRICS_CONN, METRICS_LISTENER};
use super::tokens::{
    split_upstream_token, CLIENT_TCP, MAX_LISTENERS, SIGNALS, TCP_LISTENER, TLS_LISTENER,
    TOKEN_SPACE, UDP_LISTENER, UPSTREAM_TCP, WAKER,
};
use super::upstream_tcp::UpstreamPool;
use super::{memory, Server};
use crate::clock::Instant;
use crate::forward::earlier;
use crate::stats::Stats;

/// How often idle connections and retired sockets are looked at.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

impl Server {
    /// Runs until a signal or [`StopHandle::stop`](super::StopHandle::stop), then gives
    /// the queries in flight a second, answers the rest with SERVFAIL and returns the
    /// counters.
    pub fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(1024);
        log::info!(
            "listening on {:?}, forwarding to {:?}",
            self.local_addrs(),
            self.cfg.upstreams
        );
        // The clock as the last turn began: the next sleep is timed from it rather than
        // from a second reading (one more `clock_gettime` a turn). A timer then fires
        // late by at most that turn's work (microseconds; epoll's timeout is in whole
        // milliseconds, rounded up, anyway).
        let mut began = Instant::now();
        loop {
            let timeout = self.poll_timeout(began);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            began = Instant::now();
            if self.turn(began, &events) {
                break;
            }
        }
        Ok(self.stopped())
    }

    /// One turn's work once the poll has returned `events` at `now`: the ready sockets,
    /// the core's timers, the answers, the sweep when due and the query log. Whether
    /// the loop is finished (a shutdown is over).
    fn turn(&mut self, now: Instant, events: &Events) -> bool {
        for event in events.iter() {
            self.dispatch(now, event.token());
        }
        // Answers gathered from the upstream sockets ready in this turn.
        self.flush(now);
        // Both lists are empty on nearly every turn: looked at before being taken
        // (taking one builds and drops a vector).
        if !self.ready_again.is_empty() {
            for token in std::mem::take(&mut self.ready_again) {
                self.dispatch(now, token);
            }
        }
        if !self.paused.is_empty() {
            self.resume_paused(now);
        }
        self.core.handle_timeout(now);
        if self.core.take_shrunk() {
            memory::trim();
        }
        self.flush(now);
        if now >= self.next_sweep {
            self.sweep(now);
            // Failures found by the sweep have the core send again at once.
            self.flush(now);
            self.next_sweep = now + SWEEP_EVERY;
        }
        // The query-log lines, in one write every querylog::WRITE_EVERY at most.
        self.log_due = self.core.flush_query_log(now);
        self.finished(now)
    }

    /// The loop has ended: logs the counters and returns them. With
    /// [`exit_after_run`](Server::exit_after_run), leaves the cache to the exit.
    fn stopped(&mut self) -> Stats {
        let stats = self.stats();
        log::info!("stopped: {stats} send_errors={}", self.send_errors);
        self.log_handoffs();
        if self.exits {
            self.core.leak_cache();
        }
        stats
    }

    /// How long the next poll may sleep, counted from `now` (when the turn that just
    /// ended began).
    fn poll_timeout(&mut self, now: Instant) -> Option<Duration> {
        if !self.paused.is_empty() || !self.ready_again.is_empty() {
            return Some(Duration::ZERO);
        }
        // Folded by hand: an array of four options, flattened, costs several times the
        // comparisons (this runs every turn).
        let mut next = self.core.poll_timeout();
        // Both are `None` on nearly every turn (no shutdown, no query log).
        if self.shutdown_at.is_some() || self.log_due.is_some() {
            next = earlier(earlier(next, self.shutdown_at), self.log_due);
        }
        if self.has_connections() {
            next = earlier(next, Some(self.next_sweep));
        }
        Some(self.horizon.sleep(now, next?))
    }

    /// Whether the sweep has work: a connection may be open, retired sockets wait to
    /// be closed, or the loop publishes its counters every sweep (`link`). Flags only:
    /// this runs every turn, and the walk of the tables is left to the sweep.
    fn has_connections(&self) -> bool {
        debug_assert!(
            self.maybe_open || !self.open_connections(),
            "a connection opened without setting maybe_open"
        );
        self.maybe_open || self.retired_udp || self.reload.is_retiring() || self.link.is_some()
    }

    /// Whether a TCP client, an upstream connection or a scrape is open, or a query
    /// waits for an upstream connection (a walk of their tables: the sweep's question).
    fn open_connections(&self) -> bool {
        self.clients.iter().any(Option::is_some)
            || self.upstream_tcp.iter().any(UpstreamPool::is_active)
            || self
                .metrics
                .as_ref()
                .is_some_and(MetricsHttp::has_connections)
    }

    /// One readiness event. The UDP sockets (client listeners, upstream sockets) are
    /// tested first and handled here; every other token goes to an outlined function,
    /// so that this one stays small (it runs once or twice per query).
    fn dispatch(&mut self, now: Instant, token: Token) {
        let t = token.0;
        if let Some((u, s, generation)) = split_upstream_token(t) {
            self.read_upstream_udp(now, u, s, generation);
            // Answers to what the upstream sockets bring wait for the end of the turn's
            // events (or a full batch), to go out together.
            if self.core.has_transmit() {
                self.take_transmits(now);
            }
            return;
        }
        if t.wrapping_sub(UDP_LISTENER) < TCP_LISTENER - UDP_LISTENER {
            self.read_udp_listener(now, t - UDP_LISTENER);
        } else {
            self.dispatch_other(now, t);
        }
        // Answers go out as soon as they exist, so a burst does not pile them up.
        self.flush(now);
    }

    /// [`dispatch`](Self::dispatch) for every token but the UDP sockets'.
    #[cold]
    #[inline(never)]
    fn dispatch_other(&mut self, now: Instant, t: usize) {
        match t {
            t if t == SIGNALS.0 => self.on_signal(now),
            t if t == WAKER.0 => self.on_wake(now),
            METRICS_LISTENER => self.metrics_accept(now),
            t if (METRICS_CONN..METRICS_CONN + MAX_SCRAPERS).contains(&t) => {
                self.metrics_ready(t - METRICS_CONN)
            }
            t if (TCP_LISTENER..TCP_LISTENER + MAX_LISTENERS).contains(&t) => {
                self.accept(now, t - TCP_LISTENER, false)
            }
            t if (TLS_LISTENER..TLS_LISTENER + MAX_LISTENERS).contains(&t) => {
                self.accept(now, t - TLS_LISTENER, true)
            }
            t if (CLIENT_TCP..CLIENT_TCP + TOKEN_SPACE).contains(&t) => {
                self.client_ready(now, t - CLIENT_TCP)
            }
            t if (UPSTREAM_TCP..UPSTREAM_TCP + TOKEN_SPACE).contains(&t) => {
                self.upstream_tcp_ready(now, t - UPSTREAM_TCP)
            }
            // Spurious or stale: a socket closed earlier in this turn.
            _ => {}
        }
    }

    /// Closes idle client connections, idle or failed upstream connections, and
    /// retired upstream sockets whose grace time is over.
    fn sweep(&mut self, now: Instant) {
        self.sweep_clients(now);
        self.sweep_upstream_tcp(now);
        self.close_drained_upstreams();
        self.sweep_metrics(now);
        if self.retired_udp {
            self.close_retired_udp(now);
        }
        self.publish();
        self.maybe_open = self.open_connections();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_ignores_none() {
        let a = Instant::now();
        let b = a + Duration::from_secs(1);
        assert_eq!(earlier(Some(b), Some(a)), Some(a));
        assert_eq!(earlier(None, Some(b)), Some(b));
        assert_eq!(earlier(Some(a), None), Some(a));
        assert_eq!(earlier(None, None), None);
    }
}
