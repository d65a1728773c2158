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
mod ids;
mod pending;
pub mod reply;
#[cfg(test)]
mod tests;
mod upstream;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use ids::{IdSource, OsRandom, SeededRandom};
pub use pending::Client;
use pending::{current_id, Pending, PendingTable, Slot, Via};
use upstream::Upstreams;

use crate::stats::Stats;
use crate::wire::{
    parse_header, parse_message, set_id, Message, MessageView, Opcode, Rcode, MAX_MESSAGE_LEN,
};

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
                1 => self.forward(now, client, &view, None),
                _ => self.split(now, client, &view),
            }
        }
        true
    }

    /// Call when an upstream sent `bytes` (a UDP datagram on one of its sockets, or a
    /// message on a TCP connection opened for a [`Dest::UpstreamTcp`]).
    pub fn handle_response(&mut self, now: Instant, source: Source, bytes: &[u8]) {
        let Some(slot) = self.validate(source, bytes) else {
            self.stats.dropped_responses += 1;
            return;
        };
        let Ok(view) = MessageView::parse(bytes) else {
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
            // Another upstream may do better; this answer is kept only if none does.
            return self.retry(now, slot);
        }
        let answer = bytes.get(..view.end).unwrap_or(bytes);
        self.complete(slot, Some(answer));
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
        self.pending.next_timer()
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
    pub fn fail_all(&mut self) {
        let all: Vec<Slot> = self.pending.slots().map(|(s, _)| s).collect();
        for slot in all {
            self.complete(slot, None);
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
    ) {
        if self.pending.is_full() || self.upstreams.is_empty() {
            return self.refuse(client, view.bytes(), Some(view), Rcode::REFUSED);
        }
        self.stats.queries += 1;
        let bytes = view.bytes().get(..view.end).unwrap_or(view.bytes());
        let mut query = self.pending.buffer();
        query.extend_from_slice(bytes);
        let id = self.pending.fresh_id(self.rng.as_mut());
        set_id(&mut query, id);
        let upstream = self.upstreams.pick(now, 0);
        let socket = self.rng.below(self.cfg.sockets_per_upstream);
        let max_response = if client.is_udp() {
            view.max_udp_response()
        } else {
            MAX_MESSAGE_LEN
        };
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
        };
        let timer = self.attempt_timer(now, p.deadline);
        let slot = self.pending.insert(id, p, timer);
        self.transmit_query(slot);
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

    /// Which pending query an upstream message answers, if it passes every check.
    fn validate(&self, source: Source, bytes: &[u8]) -> Option<Slot> {
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
        (right_path && view.same_question(&query)).then_some(slot)
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
            Some(_) => self.complete(slot, None),
            None => {}
        }
    }

    /// Sends the query again, over UDP to the best upstream not tried yet.
    fn retry(&mut self, now: Instant, slot: Slot) {
        let Some(p) = self.pending.get(slot) else {
            return;
        };
        let upstream = self.upstreams.pick(now, p.tried);
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
        p.attempt = p.attempt.wrapping_add(1);
        p.upstream = upstream;
        p.via = via;
        p.sent_at = now;
        p.tried |= 1u64 << upstream.min(63);
        let deadline = p.deadline;
        let timer = self.attempt_timer(timer_base, deadline);
        self.pending.rekey(slot, old_id, new_id, timer);
        self.transmit_query(slot);
    }

    /// Finishes a pending query with an answer (`None`: it failed, SERVFAIL).
    fn complete(&mut self, slot: Slot, answer: Option<&[u8]>) {
        let Some(p) = self.pending.remove(slot) else {
            return;
        };
        if let Some(g) = p.group {
            self.part_done(g, &p, answer);
            self.pending.recycle(p.query);
            return;
        }
        let out = match answer {
            Some(answer) => self.client_answer(&p, answer),
            None => {
                self.stats.servfail += 1;
                let view = MessageView::parse(&p.query).ok();
                let mut bytes = reply::error_reply(&p.query, view.as_ref(), Rcode::SERVFAIL);
                if let Some(b) = bytes.as_mut() {
                    set_id(b, p.client_id);
                }
                bytes
            }
        };
        if let Some(bytes) = out {
            self.send_to_client(p.client, bytes);
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

    /// Splits a query with several questions into one upstream query per question.
    fn split(&mut self, now: Instant, client: Client, view: &MessageView<'_>) {
        let bytes = view.bytes();
        let Ok(m) = parse_message(bytes) else {
            return self.refuse(client, bytes, Some(view), Rcode::FORMERR);
        };
        if self.pending.len() + m.questions.len() > self.cfg.max_pending.max(1) {
            return self.refuse(client, bytes, Some(view), Rcode::REFUSED);
        }
        let max_response = if client.is_udp() {
            view.max_udp_response()
        } else {
            MAX_MESSAGE_LEN
        };
        let g = self
            .groups
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                self.groups.push(None);
                self.groups.len() - 1
            });
        let parts: Vec<Vec<u8>> = m
            .questions
            .iter()
            .map(|q| {
                let mut part = Message {
                    header: m.header,
                    questions: vec![q.clone()],
                    additional: m
                        .additional
                        .iter()
                        .filter(|r| r.rtype == crate::wire::RType::OPT)
                        .cloned()
                        .collect(),
                    ..Message::default()
                };
                part.header.qdcount = 1;
                part.to_vec()
            })
            .collect();
        if let Some(entry) = self.groups.get_mut(g) {
            *entry = Some(Group {
                client,
                query: bytes.to_vec(),
                max_response,
                parts: vec![None; parts.len()],
                remaining: parts.len(),
            });
        }
        for (n, part) in parts.iter().enumerate() {
            match MessageView::parse(part) {
                Ok(v) => self.forward_part(now, client, &v, g, n),
                Err(_) => self.part_failed(g, n),
            }
        }
    }

    fn forward_part(
        &mut self,
        now: Instant,
        client: Client,
        view: &MessageView<'_>,
        g: usize,
        n: usize,
    ) {
        // The part number rides in the group field: group * 256 + part (≤ 255 parts per
        // query, far above any real QDCOUNT; more are answered as failed).
        if n > 255 {
            return self.part_failed(g, n);
        }
        self.forward(now, client, view, Some(g * 256 + n));
    }

    fn part_failed(&mut self, g: usize, n: usize) {
        if let Some(Some(group)) = self.groups.get_mut(g) {
            if n < group.parts.len() {
                group.remaining = group.remaining.saturating_sub(1);
            }
        }
        self.finish_group(g);
    }

    fn part_done(&mut self, key: usize, _p: &Pending, answer: Option<&[u8]>) {
        let (g, n) = (key / 256, key % 256);
        if let Some(Some(group)) = self.groups.get_mut(g) {
            if let Some(slot) = group.parts.get_mut(n) {
                *slot = answer.map(<[u8]>::to_vec);
            }
            group.remaining = group.remaining.saturating_sub(1);
        }
        self.finish_group(g);
    }

    fn finish_group(&mut self, g: usize) {
        let done = matches!(self.groups.get(g), Some(Some(group)) if group.remaining == 0);
        if !done {
            return;
        }
        let Some(group) = self.groups.get_mut(g).and_then(Option::take) else {
            return;
        };
        if let Some(bytes) = reply::merge(&group.query, &group.parts, group.max_response) {
            self.send_to_client(group.client, bytes);
        }
    }
}
