//! The forwarding state machine, with no I/O (sans-IO, as quinn-proto's `Endpoint`).
//!
//! The shell (`crate::server`) feeds it what happens — a query from a client, a
//! datagram or TCP message from an upstream, a socket error, the passing of time — and
//! carries out what it asks for, which it collects with [`Forwarder::poll_transmit`].
//! Time and randomness are inputs, so every behaviour is testable without sockets.
//!
//! Per query: the client's bytes are copied once, given a fresh random transaction ID
//! (RFC 5452 §9.2) and sent to the chosen upstream on a random socket of its pool. An
//! answer is accepted only from that upstream, on that socket, with that ID, QR set and
//! the same question (RFC 5452 §9.1); the client gets it with its own ID back.
#[cfg(test)]
mod cache_tests;
mod ids;
mod pending;
pub mod reply;
mod resolve;
mod split;
#[cfg(test)]
mod tests;
mod upstream;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use ids::{IdSource, OsRandom, SeededRandom};
pub use pending::Client;
use pending::{current_id, Pending, PendingTable, Slot, Via, Waiter};
use upstream::Upstreams;

use crate::cache::{key_of, Cache, CacheConfig, Lookup, MAX_KEY_LEN};
use crate::stats::Stats;
use crate::wire::{parse_header, set_id, MessageView, Opcode, Rcode, MAX_MESSAGE_LEN};

/// Whether a truncated UDP answer was cut at the client's own limit, so that the full
/// answer could not reach this UDP client either: the query went upstream with the
/// client's EDNS size, and the upstream says (in its OPT, or by sending none: 512) that
/// it can send at least that much. Then the TC answer is relayed as it is, and the
/// client retries over TCP; fetching the answer over TCP first would be wasted.
fn truncated_for_client(answer: &MessageView<'_>, p: &Pending) -> bool {
    let upstream_limit = answer.opt.map_or(crate::wire::CLASSIC_UDP_LEN, |o| {
        usize::from(o.udp_size).max(crate::wire::CLASSIC_UDP_LEN)
    });
    p.client.is_udp() && upstream_limit >= p.max_response
}

/// Largest answer `client` can take for `query`: its UDP size, or 65535 over TCP.
fn max_response(client: Client, query: &MessageView<'_>) -> usize {
    if client.is_udp() {
        query.max_udp_response()
    } else {
        MAX_MESSAGE_LEN
    }
}

/// What the core needs to know (the shell's settings are in `crate::config`).
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    pub upstreams: Vec<SocketAddr>,
    /// UDP sockets per upstream, each on its own random port. Valid values: 1..=256.
    pub sockets_per_upstream: usize,
    /// Per attempt (`--timeout`).
    pub timeout: Duration,
    /// Per query, all attempts together (`--deadline`).
    pub deadline: Duration,
    /// Most queries in flight; past it, new queries get REFUSED.
    pub max_pending: usize,
    /// The answer cache; `max_entries: 0` turns it and query coalescing off.
    pub cache: CacheConfig,
}

/// Where a [`Transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Client(Client),
    /// Over UDP, on socket number `socket` of upstream number `upstream`.
    Upstream {
        upstream: usize,
        socket: usize,
    },
    /// Over a new TCP connection to upstream number `upstream` (a truncated UDP answer's
    /// retry). The shell reports the answer with [`Source::Tcp`], or the failure with
    /// [`Forwarder::handle_tcp_failure`] and the ID in the first two octets.
    UpstreamTcp {
        upstream: usize,
    },
}

/// Bytes to send. Give the buffer back with [`Forwarder::release`] once sent.
#[must_use]
#[derive(Debug)]
pub struct Transmit {
    pub to: Dest,
    pub bytes: Vec<u8>,
}

/// Where an upstream message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Udp {
        upstream: usize,
        socket: usize,
        from: SocketAddr,
    },
    Tcp {
        upstream: usize,
    },
}

/// A query that asked several questions, answered once all its parts are.
#[derive(Debug)]
struct Group {
    client: Client,
    query: Vec<u8>,
    max_response: usize,
    parts: Vec<Option<Vec<u8>>>,
    remaining: usize,
}

/// The forwarder core. See the module docs.
pub struct Forwarder {
    cfg: ForwarderConfig,
    upstreams: Upstreams,
    pending: PendingTable,
    groups: Vec<Option<Group>>,
    out: VecDeque<Transmit>,
    rng: Box<dyn IdSource>,
    stats: Stats,
    cache: Cache,
    /// Queries in flight by the hash of their cache key, for coalescing.
    inflight: HashMap<u64, Slot>,
    /// RFC 8767 client response timers: (when, slot), checked against `stale_at`.
    stale_timers: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, Slot)>>,
}

impl Forwarder {
    pub fn new(mut cfg: ForwarderConfig, rng: Box<dyn IdSource>) -> Forwarder {
        cfg.sockets_per_upstream = cfg.sockets_per_upstream.clamp(1, 256);
        Forwarder {
            upstreams: Upstreams::new(&cfg.upstreams),
            pending: PendingTable::new(cfg.max_pending),
            groups: Vec::new(),
            out: VecDeque::new(),
            rng,
            stats: Stats::default(),
            cache: Cache::new(cfg.cache),
            inflight: HashMap::new(),
            stale_timers: std::collections::BinaryHeap::new(),
            cfg,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Queries in flight upstream.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Call when a client sent `bytes` (one UDP datagram, or one TCP message without its
    /// length prefix). Returns whether the client will get an answer (exactly one, now
    /// or later); `false` means the packet was dropped.
    pub fn handle_query(&mut self, now: Instant, client: Client, bytes: &[u8]) -> bool {
        let Ok((_, header)) = parse_header(bytes) else {
            self.stats.dropped_queries += 1;
            return false;
        };
        if header.qr {
            // A response sent to a server port: never answer it (no reflection loops).
            self.stats.dropped_queries += 1;
            return false;
        }
        self.stats.queries += 1;
        let view = match MessageView::parse(bytes) {
            Ok(v) => v,
            Err(_) => {
                self.refuse(client, bytes, None, Rcode::FORMERR);
                return true;
            }
        };
        if header.opcode != Opcode::QUERY {
            self.refuse(client, bytes, Some(&view), Rcode::NOTIMP);
        } else {
            match header.qdcount {
                0 => self.refuse(client, bytes, Some(&view), Rcode::FORMERR),
                1 => self.resolve(now, client, &view),
                _ => self.split(now, client, &view),
            }
        }
        true
    }

    /// Call when an upstream sent `bytes` (a UDP datagram on one of its sockets, or a
    /// message on a TCP connection opened for a [`Dest::UpstreamTcp`]).
    pub fn handle_response(&mut self, now: Instant, source: Source, bytes: &[u8]) {
        let Some((slot, view)) = self.validate(source, bytes) else {
            self.stats.dropped_responses += 1;
            return;
        };
        let Some(p) = self.pending.get(slot) else {
            return;
        };
        let upstream = p.upstream;
        self.upstreams
            .success(upstream, now.saturating_duration_since(p.sent_at));
        if view.header.tc && matches!(source, Source::Udp { .. }) && !truncated_for_client(&view, p)
        {
            self.stats.tcp_retries += 1;
            return self.resend(now, slot, upstream, Via::Tcp);
        }
        let rcode = view.header.rcode;
        let retryable =
            rcode == Rcode::SERVFAIL || rcode == Rcode::REFUSED || rcode == Rcode::NOTIMP;
        if retryable && self.has_untried(slot) && now < p.deadline {
            // Another upstream may do better. This answer is dropped: if none answers in
            // time, the client gets SERVFAIL (or a stale answer).
            return self.retry(now, slot);
        }
        let answer = bytes.get(..view.end).unwrap_or(bytes);
        self.complete(now, slot, Some(answer));
    }

    /// Call when a UDP socket of an upstream reported an error (ECONNREFUSED from an
    /// ICMP port unreachable): every query waiting on that socket fails over at once.
    pub fn handle_upstream_error(&mut self, now: Instant, upstream: usize, socket: usize) {
        let hit: Vec<Slot> = self
            .pending
            .slots()
            .filter(|(_, p)| p.upstream == upstream && p.via == Via::Udp { socket })
            .map(|(s, _)| s)
            .collect();
        if !hit.is_empty() {
            self.upstreams.failure(upstream, now, self.cfg.timeout);
        }
        for slot in hit {
            self.stats.upstream_errors += 1;
            self.fail_over(now, slot);
        }
    }

    /// Call when the TCP connection for query `id` to `upstream` failed (refused, reset,
    /// closed before the answer).
    pub fn handle_tcp_failure(&mut self, now: Instant, upstream: usize, id: u16) {
        let Some(slot) = self.pending.slot_of(id) else {
            return;
        };
        if self
            .pending
            .get(slot)
            .is_some_and(|p| p.upstream == upstream && p.via == Via::Tcp)
        {
            self.stats.upstream_errors += 1;
            self.upstreams.failure(upstream, now, self.cfg.timeout);
            self.fail_over(now, slot);
        }
    }

    /// Call when the instant from [`poll_timeout`](Self::poll_timeout) has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_stale_timers(now);
        while let Some(slot) = self.pending.pop_expired(now) {
            let Some(p) = self.pending.get(slot) else {
                continue;
            };
            self.stats.timeouts += 1;
            self.upstreams.failure(p.upstream, now, self.cfg.timeout);
            self.retry_or_fail(now, slot);
        }
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let stale = self.next_stale_timer();
        [self.pending.next_timer(), stale]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next thing to send, if any. Call until `None` after every `handle_*`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Gives a sent buffer back for reuse (saves an allocation per query).
    pub fn release(&mut self, bytes: Vec<u8>) {
        self.pending.recycle(bytes);
    }

    /// Answers every query in flight with SERVFAIL (shutdown).
    pub fn fail_all(&mut self, now: Instant) {
        let all: Vec<Slot> = self.pending.slots().map(|(s, _)| s).collect();
        for slot in all {
            self.complete(now, slot, None);
        }
    }

    fn refuse(
        &mut self,
        client: Client,
        query: &[u8],
        view: Option<&MessageView<'_>>,
        rcode: Rcode,
    ) {
        match rcode {
            Rcode::FORMERR => self.stats.formerr += 1,
            Rcode::NOTIMP => self.stats.notimp += 1,
            Rcode::SERVFAIL => self.stats.servfail += 1,
            _ => self.stats.overload += 1,
        }
        if let Some(bytes) = reply::error_reply(query, view, rcode) {
            self.send_to_client(client, bytes);
        }
    }

    fn send_to_client(&mut self, client: Client, bytes: Vec<u8>) {
        if client == Client::Prefetch {
            return self.pending.recycle(bytes);
        }
        self.stats.answers += 1;
        self.out.push_back(Transmit {
            to: Dest::Client(client),
            bytes,
        });
    }

    /// Sends a one-question query upstream (`group`: its place in a split query).
    fn forward(
        &mut self,
        now: Instant,
        client: Client,
        view: &MessageView<'_>,
        group: Option<usize>,
    ) -> Option<Slot> {
        if self.pending.is_full() || self.upstreams.is_empty() {
            self.refuse(client, view.bytes(), Some(view), Rcode::REFUSED);
            return None;
        }
        self.stats.forwarded += 1;
        let bytes = view.bytes().get(..view.end).unwrap_or(view.bytes());
        let mut query = self.pending.buffer();
        query.extend_from_slice(bytes);
        let id = self.pending.fresh_id(self.rng.as_mut());
        set_id(&mut query, id);
        let upstream = self.upstreams.pick(now, 0, self.cfg.timeout);
        let socket = self.rng.below(self.cfg.sockets_per_upstream);
        let max_response = max_response(client, view);
        let p = Pending {
            client,
            client_id: view.header.id,
            query,
            max_response,
            deadline: now + self.cfg.deadline,
            sent_at: now,
            attempt: 0,
            upstream,
            via: Via::Udp { socket },
            tried: 1u64 << upstream,
            group,
            waiters: Vec::new(),
            inflight: None,
            stale_at: None,
        };
        let timer = self.attempt_timer(now, p.deadline);
        let slot = self.pending.insert(id, p, timer);
        self.transmit_query(slot);
        Some(slot)
    }

    fn attempt_timer(&self, now: Instant, deadline: Instant) -> Instant {
        (now + self.cfg.timeout).min(deadline)
    }

    /// Queues the pending query's bytes for its current upstream and transport.
    fn transmit_query(&mut self, slot: Slot) {
        let Some(p) = self.pending.get(slot) else {
            return;
        };
        let to = match p.via {
            Via::Udp { socket } => Dest::Upstream {
                upstream: p.upstream,
                socket,
            },
            Via::Tcp => Dest::UpstreamTcp {
                upstream: p.upstream,
            },
        };
        let (upstream, query_len) = (p.upstream, p.query.len());
        let mut bytes = self.pending.buffer();
        if let Some(p) = self.pending.get(slot) {
            bytes.extend_from_slice(&p.query);
        }
        log::debug!("query {slot} ({query_len} octets) to upstream {upstream} via {to:?}");
        self.out.push_back(Transmit { to, bytes });
    }

    /// Which pending query an upstream message answers, if it passes every check, with
    /// the message's view (parsed once per packet).
    fn validate<'b>(&self, source: Source, bytes: &'b [u8]) -> Option<(Slot, MessageView<'b>)> {
        let view = MessageView::parse(bytes).ok()?;
        if !view.header.qr {
            return None;
        }
        let slot = self.pending.slot_of(view.header.id)?;
        let p = self.pending.get(slot)?;
        let right_path = match (source, p.via) {
            (
                Source::Udp {
                    upstream,
                    socket,
                    from,
                },
                Via::Udp { socket: s },
            ) => {
                upstream == p.upstream && socket == s && Some(from) == self.upstreams.addr(upstream)
            }
            (Source::Tcp { upstream }, Via::Tcp) => upstream == p.upstream,
            _ => false,
        };
        let query = MessageView::parse(&p.query).ok()?;
        (right_path && view.same_question(&query)).then_some((slot, view))
    }

    fn has_untried(&self, slot: Slot) -> bool {
        let n = self.upstreams.len().min(64);
        let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        self.pending.get(slot).is_some_and(|p| p.tried & all != all)
    }

    /// After an immediate failure (ICMP refused, TCP reset): try an upstream this query
    /// has not tried yet, at once. If there is none, the attempt's timer stays armed and
    /// decides; re-sending at once to an upstream that just refused would only spin.
    fn fail_over(&mut self, now: Instant, slot: Slot) {
        let in_time = self.pending.get(slot).is_some_and(|p| now < p.deadline);
        if in_time && self.has_untried(slot) {
            self.retry(now, slot);
        }
    }

    fn retry_or_fail(&mut self, now: Instant, slot: Slot) {
        match self.pending.get(slot) {
            Some(p) if now < p.deadline => self.retry(now, slot),
            Some(_) => self.complete(now, slot, None),
            None => {}
        }
    }

    /// Sends the query again, over UDP to the best upstream not tried yet.
    fn retry(&mut self, now: Instant, slot: Slot) {
        let Some(p) = self.pending.get(slot) else {
            return;
        };
        let upstream = self.upstreams.pick(now, p.tried, self.cfg.timeout);
        let socket = self.rng.below(self.cfg.sockets_per_upstream);
        self.resend(now, slot, upstream, Via::Udp { socket });
    }

    /// A new attempt of a pending query: a new ID, a new timer, the given path.
    fn resend(&mut self, now: Instant, slot: Slot, upstream: usize, via: Via) {
        let new_id = self.pending.fresh_id(self.rng.as_mut());
        let timer_base = now;
        let Some(p) = self.pending.get_mut(slot) else {
            return;
        };
        let old_id = current_id(p);
        set_id(&mut p.query, new_id);
        p.upstream = upstream;
        p.via = via;
        p.sent_at = now;
        p.tried |= 1u64 << upstream.min(63);
        let deadline = p.deadline;
        let timer = self.attempt_timer(timer_base, deadline);
        self.pending.rekey(slot, old_id, new_id, timer);
        self.transmit_query(slot);
    }

    /// Finishes a pending query with an answer (`None`: it failed). The answer is
    /// cached if it may be; a failure (or a final SERVFAIL) is answered from a stale
    /// cache entry if there is one (RFC 8767), else with SERVFAIL. Clients that waited
    /// on this query get the same answer, shaped for each.
    fn complete(&mut self, now: Instant, slot: Slot, answer: Option<&[u8]>) {
        let Some(mut p) = self.pending.remove(slot) else {
            return;
        };
        if let Some(h) = p.inflight {
            if self.inflight.get(&h) == Some(&slot) {
                self.inflight.remove(&h);
            }
        }
        if let Some(g) = p.group {
            self.part_done(g, &p, answer);
            self.pending.recycle(p.query);
            return;
        }
        let mut kb = [0u8; MAX_KEY_LEN];
        let key_len = match MessageView::parse(&p.query) {
            Ok(v) if self.cache.enabled() => key_of(&v, &mut kb).unwrap_or(0),
            _ => 0,
        };
        let key = kb.get(..key_len).unwrap_or_default();
        let cached = match answer {
            Some(a) if key_len > 0 => self.cache.insert(key, a, now),
            _ => false,
        };
        let failed =
            answer.is_none_or(|a| parse_header(a).is_ok_and(|(_, h)| h.rcode == Rcode::SERVFAIL));
        let stale = failed && key_len > 0 && matches!(self.cache.get(key, now), Lookup::Stale(_));
        let waiters = std::mem::take(&mut p.waiters);
        let main = Waiter {
            client: p.client,
            query: Vec::new(),
            max_response: p.max_response,
        };
        for (n, w) in std::iter::once(&main).chain(&waiters).enumerate() {
            if w.client == Client::Prefetch {
                continue; // nobody to answer: a refresh, or a client already answered stale
            }
            // The first is the client that sent the query we forwarded: its query is ours
            // with its own ID; answers it gets are relayed as the upstream sent them.
            let query: &[u8] = if n == 0 { &p.query } else { &w.query };
            let id = if n == 0 {
                p.client_id
            } else {
                parse_header(query).map_or(0, |(_, h)| h.id)
            };
            let bytes = if stale {
                self.stats.stale_served += 1;
                self.render_cached(now, key, query, id, w.max_response, true)
            } else if let (Some(a), true) = (answer, n == 0) {
                self.client_answer(&p, a)
            } else if let (Some(_), true) = (answer, cached) {
                self.render_cached(now, key, query, id, w.max_response, false)
            } else if let Some(a) = answer {
                self.relay_to(a, query, id, w.max_response)
            } else {
                self.stats.servfail += 1;
                let view = MessageView::parse(query).ok();
                let mut bytes = reply::error_reply(query, view.as_ref(), Rcode::SERVFAIL);
                if let Some(b) = bytes.as_mut() {
                    set_id(b, id);
                }
                bytes
            };
            if let Some(bytes) = bytes {
                self.send_to_client(w.client, bytes);
            }
        }
        self.pending.recycle(p.query);
    }

    /// The upstream's answer made fit for the client: its ID, and its size limit.
    fn client_answer(&mut self, p: &Pending, answer: &[u8]) -> Option<Vec<u8>> {
        let mut bytes = if answer.len() > p.max_response {
            self.stats.truncated += 1;
            let query = MessageView::parse(&p.query).ok()?;
            reply::fit(answer, p.max_response, &query)
        } else {
            let mut b = self.pending.buffer();
            b.extend_from_slice(answer);
            b
        };
        set_id(&mut bytes, p.client_id);
        Some(bytes)
    }
}
