//! The forwarding state machine, with no I/O (sans-IO, as quinn-proto's `Endpoint`).
//!
//! The shell (`crate::server`) feeds it what happens — a query from a client, a
//! datagram or TCP message from an upstream, a socket error, the passing of time — and
//! carries out what it asks for, which it collects with [`Forwarder::poll_transmit`].
//! Time and randomness are inputs, so every behaviour is testable without sockets.
//!
//! Per question: the client's query is decoded once into a [`key::Key`]; there is
//! exactly one upstream query in flight per key, whatever the clients' transports, EDNS
//! sizes or options, and every client asking it waits on that one. The upstream query
//! is written by us ([`key::write_query`]): a fresh random ID (RFC 5452 §9.2), the name
//! in random letter case (0x20), our own OPT record and none of the client's options. It
//! goes to a random socket of the upstream's pool. An answer is accepted only from that
//! upstream, on the socket of one of the query's live attempts, with that attempt's ID,
//! QR set, and the question exactly as sent, letter case included (RFC 5452 §9.1).
//! Answers that fail a check but ask a question in flight are near misses: the query
//! stops listening on UDP and is asked again over TCP, which an off-path forger cannot
//! reach; many near misses put the whole upstream on TCP for a while.
#[cfg(test)]
mod cache_tests;
mod complete;
mod config;
pub mod events;
mod ids;
pub mod key;
mod local_data;
mod memory;
mod pending;
pub mod reconfigure;
pub mod reply;
mod resolve;
pub mod routes;
mod send;
mod shares;
mod split;
#[cfg(test)]
mod tests;
mod timers;
mod upstream;
mod validate;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

pub use config::ForwarderConfig;
use events::{AnswerSource, Events};
pub use ids::{BrokenRandom, IdSource, OsRandom, SeededRandom};
use key::Key;
pub use pending::Client;
use pending::{PendingTable, Slot, Waiter};
use upstream::Upstreams;

use crate::cache::Cache;
use crate::clock::Instant;
use crate::stats::Stats;
use crate::wire::{parse_header, MessageView, Opcode, Rcode, MAX_MESSAGE_LEN};

/// Where a [`Transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Client(Client),
    /// Over UDP, on socket number `socket` of upstream number `upstream`.
    Upstream {
        upstream: usize,
        socket: usize,
    },
    /// Over TCP to upstream number `upstream`. The shell reports answers with
    /// [`Source::Tcp`], or a failure with [`Forwarder::handle_tcp_failure`] and the ID
    /// in the first two octets.
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

impl Source {
    fn upstream(&self) -> usize {
        match *self {
            Source::Udp { upstream, .. } | Source::Tcp { upstream } => upstream,
        }
    }
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

/// What an upstream message is to us.
enum Verdict {
    /// The answer to the live attempt in place `attempt` (see [`pending::Attempts::at`])
    /// of the query in `slot`; `true` if it repeats our letter case (a TCP answer may
    /// not).
    Accept(Slot, usize, bool),
    /// For a question in flight, but failing a check: a forgery, or a broken upstream.
    NearMiss(Slot),
    /// An answer to an attempt that is no longer live (its query is done).
    Late,
    /// Nothing we asked.
    Stray,
}

/// The forwarder core. See the module docs.
pub struct Forwarder {
    cfg: ForwarderConfig,
    /// What a new query adds to the clock, from `cfg` (set with it).
    times: config::QueryTimes,
    upstreams: Upstreams,
    /// Which upstreams each zone may use (from `cfg.routes`).
    routes: routes::Routes,
    pending: PendingTable,
    groups: Vec<Option<Group>>,
    out: VecDeque<Transmit>,
    rng: Box<dyn IdSource>,
    stats: Stats,
    cache: Cache,
    /// The queries in flight by the hash of their question (whether or not the cache
    /// stores answers): `inflight[hash & mask]` is the slot + 1 (0: none) heading a chain
    /// through `Pending::next_inflight` of the queries whose hash falls in that bucket.
    /// For each key the one upstream query every client asking it waits on; for an
    /// answer, the query it claims to answer, whatever its flags, in one lookup. A fixed
    /// array (twice the table's capacity, so chains hold about one query; the hash is
    /// keyed, so nobody can aim at one bucket) costs no hashing, probing or growing.
    inflight: Box<[u32]>,
    /// RFC 8767 client response timers: (when, slot), checked against `stale_at`.
    stale_timers: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, Slot)>>,
    /// When each transaction ID was last freed, in ms since `epoch` (+1; 0 = never), so
    /// that a late answer to a finished query is told apart from a forgery.
    freed_at: Box<[u32]>,
    epoch: Option<Instant>,
    /// Waiter lists of finished queries, kept for reuse.
    spare_waiters: Vec<Vec<Waiter>>,
    /// The key the last query was read into, kept for the next (see `resolve`).
    spare_key: Option<Box<Key>>,
    /// Each client's share of the pending table.
    shares: shares::Shares,
    /// Serial of the last query started (slots are reused; shares tell them apart).
    serial: u64,
    /// When memory is next looked at for giving back (`SHRINK_EVERY` after the last
    /// look; kept as the instant itself so that no turn adds a duration to compare).
    next_shrink: Option<Instant>,
    /// Tables shrank since the shell last asked.
    gave_back: bool,
    /// Counters for `--metrics` and the `--log-queries` sink.
    events: Events,
    /// `--threads`: this loop's index and the number of loops, which own the names by
    /// `crate::server::steer` (`None`: one loop, which owns them all). See `split`.
    loop_of: Option<(u32, u32)>,
}

/// Most clients waiting on one query in flight; more get REFUSED (or a stale answer).
const MAX_WAITERS: usize = 4096;
/// How often the tables are looked at for memory to give back after a burst.
const SHRINK_EVERY: Duration = Duration::from_secs(1);

/// An Extended DNS Error (RFC 8914) for an answer we make: INFO-CODE and EXTRA-TEXT.
type Ede = (u16, &'static str);
const NO_ANSWER: Ede = (
    reply::ede::NO_REACHABLE_AUTHORITY,
    "no upstream answered in time",
);
const UNREACHABLE: Ede = (reply::ede::NETWORK_ERROR, "upstream unreachable");
const UNDECODABLE: Ede = (reply::ede::OTHER, "undecodable upstream answer");
const NO_RANDOMNESS: Ede = (reply::ede::OTHER, "no randomness for a query ID");
const OVERLOADED: Ede = (reply::ede::OTHER, "too many queries in flight");
const EVICTED: Ede = (
    reply::ede::OTHER,
    "ended to make room for another client's query",
);

/// The client a query counts against for fair shares: its address (IPv6 by /64).
fn owner_of(client: Client) -> Option<u128> {
    match client {
        Client::Udp { addr, .. } | Client::Tcp { addr, .. } => {
            Some(crate::policy::client_key(addr.ip()))
        }
        Client::Prefetch => None,
    }
}

/// An upstream's answer as looked at on arrival: the view (its octets up to `end`), and
/// what the cache noted of it on the same walk (with the cache on).
#[derive(Clone, Copy)]
struct Answer<'a> {
    view: &'a MessageView<'a>,
    noted: Option<crate::cache::Noted<'a>>,
}

/// How a query in flight ended, for its waiters.
#[derive(Clone, Copy)]
enum Outcome<'a> {
    /// The upstream's answer, as looked at once on arrival (its octets up to `end`).
    Answer(&'a MessageView<'a>),
    /// Failed, with a stale cache entry to serve (RFC 8767).
    Stale,
    Failed(Ede),
}

/// Buckets of the in-flight index for a table of `max_pending`: a power of two, at
/// least twice as many.
fn inflight_buckets(max_pending: usize) -> usize {
    (2 * max_pending.clamp(1, pending::MAX_PENDING)).next_power_of_two()
}

/// Keys that are already a keyed hash (SipHash of a question or a client) are not
/// hashed again (the cache's hasher for its index).
pub(crate) use crate::cache::Prehashed;
pub(crate) use timers::earlier;

impl Forwarder {
    pub fn new(mut cfg: ForwarderConfig, rng: Box<dyn IdSource>) -> Forwarder {
        cfg.sockets_per_upstream = cfg.sockets_per_upstream.clamp(1, 256);
        cfg.edns_size = cfg.edns_size.clamp(512, 4096);
        cfg.max_udp_size = cfg.max_udp_size.max(512);
        Forwarder {
            upstreams: Upstreams::new(&cfg.upstreams).stream_only(&cfg.stream_only),
            routes: routes::Routes::new(&cfg.upstreams, &cfg.routes),
            pending: PendingTable::new(cfg.max_pending),
            groups: Vec::new(),
            out: VecDeque::new(),
            rng,
            stats: Stats::default(),
            cache: Cache::new(cfg.cache),
            inflight: vec![0u32; inflight_buckets(cfg.max_pending)].into_boxed_slice(),
            stale_timers: std::collections::BinaryHeap::new(),
            freed_at: vec![0u32; 65536].into_boxed_slice(),
            epoch: None,
            spare_waiters: Vec::new(),
            spare_key: None,
            shares: shares::Shares::new(cfg.max_pending_per_client),
            serial: 0,
            next_shrink: None,
            gave_back: false,
            loop_of: None,
            events: Events::new(&cfg.upstreams, cfg.deadline),
            times: config::QueryTimes::of(&cfg),
            cfg,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats.with_cache(&self.cache)
    }

    /// Makes this core loop `index` of `n` (`--threads`): it is given only the queries
    /// whose first question it owns, and answers FORMERR to one that also asks a
    /// question another loop owns (see `split`).
    pub fn set_loop(&mut self, index: u32, n: u32) {
        self.loop_of = (n > 1).then_some((index, n));
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
        self.events.arrived(now, client);
        if self.next_shrink.is_none() {
            // The memory check's clock starts with the first query.
            self.next_shrink = Some(now + SHRINK_EVERY);
        }
        // The view is used where it was returned (matched by reference): moving it out
        // of the `Result` cost a copy of it per query.
        let parsed = MessageView::parse(bytes);
        let Ok(view) = &parsed else {
            self.refuse(client, bytes, None, Rcode::FORMERR);
            return true;
        };
        if header.opcode != Opcode::QUERY {
            self.refuse(client, bytes, Some(view), Rcode::NOTIMP);
        } else if view.opt.is_some_and(|o| o.version > 0) {
            // RFC 6891 §6.1.3: an EDNS version we do not implement gets BADVERS, with an
            // OPT record of the version we do (0).
            self.refuse(client, bytes, Some(view), Rcode::BADVERS);
        } else {
            match header.qdcount {
                0 => self.refuse(client, bytes, Some(view), Rcode::FORMERR),
                1 => self.resolve(now, client, view, None),
                _ => self.split(now, client, view),
            }
        }
        true
    }

    /// Call when an upstream sent `bytes` (a UDP datagram on one of its sockets, or a
    /// message on a TCP connection to it).
    pub fn handle_response(&mut self, now: Instant, source: Source, bytes: &[u8]) {
        // With the cache on, what storing the answer needs is noted on the view's walk.
        // The view is used where it was returned (matched by reference): moving it out
        // of its `Result` into a tuple with the notes cost a copy of it per answer.
        if self.cache.enabled() {
            match &self.cache.parse_answer(bytes) {
                Ok((view, noted)) => self.take_response(now, source, view, Some(*noted)),
                Err(_) => self.stats.dropped_responses += 1,
            }
        } else {
            match &MessageView::parse(bytes) {
                Ok(view) => self.take_response(now, source, view, None),
                Err(_) => self.stats.dropped_responses += 1,
            }
        }
    }

    /// [`handle_response`](Self::handle_response) once the message is looked at.
    fn take_response(
        &mut self,
        now: Instant,
        source: Source,
        view: &MessageView<'_>,
        noted: Option<crate::cache::Noted<'_>>,
    ) {
        let answer = Answer { view, noted };
        if !view.header.qr {
            self.stats.dropped_responses += 1;
            return;
        }
        let (slot, attempt, exact) = match self.judge(now, source, view) {
            Verdict::Accept(slot, attempt, exact) => (slot, attempt, exact),
            Verdict::NearMiss(slot) => return self.near_miss(now, slot, source.upstream()),
            Verdict::Late => {
                self.stats.late_answers += 1;
                return;
            }
            Verdict::Stray => {
                self.stats.dropped_responses += 1;
                return;
            }
        };
        let Some(p) = self.pending.get(slot) else {
            return;
        };
        let Some(a) = p.attempts.at(attempt).copied() else {
            return;
        };
        // In microseconds, as both keep it (not through a `Duration`: see `nanos_since`).
        let rtt_us = now.nanos_since(a.sent_at) / 1_000;
        self.upstreams.success(a.upstream, rtt_us);
        self.events
            .upstream_answered(a.upstream, rtt_us, view.header.rcode);
        if exact && !p.spelling.is_lower() {
            self.upstreams.case_echoed(a.upstream);
        }
        if view.header.tc && matches!(source, Source::Udp { .. }) {
            return self.truncated(now, slot, answer);
        }
        let rcode = view.header.rcode;
        let retryable =
            rcode == Rcode::SERVFAIL || rcode == Rcode::REFUSED || rcode == Rcode::NOTIMP;
        if retryable && self.has_untried(slot) && now < p.deadline {
            // Another upstream may do better. This answer is dropped: if none answers in
            // time, the waiters get SERVFAIL (or a stale answer).
            return self.retry(now, slot);
        }
        self.complete(now, slot, Some(answer));
    }

    /// The next thing to send, if any. Call until `None` after every `handle_*`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has something (a shell may skip
    /// its sending path when not).
    #[inline]
    pub fn has_transmit(&self) -> bool {
        !self.out.is_empty()
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
        self.count_error(rcode);
        self.events.source(AnswerSource::Error);
        if let Some(bytes) = reply::error_reply(query, view, rcode) {
            self.send_to_client(client, bytes);
        }
    }

    fn count_error(&mut self, rcode: Rcode) {
        match rcode {
            Rcode::FORMERR | Rcode::BADVERS => self.stats.formerr += 1,
            Rcode::NOTIMP => self.stats.notimp += 1,
            Rcode::SERVFAIL => self.stats.servfail += 1,
            _ => self.stats.overload += 1,
        }
    }

    fn send_to_client(&mut self, client: Client, bytes: Vec<u8>) {
        if client == Client::Prefetch {
            return self.pending.recycle(bytes);
        }
        self.stats.answers += 1;
        self.events.answered(client, &bytes);
        self.out.push_back(Transmit {
            to: Dest::Client(client),
            bytes,
        });
    }

    /// Hands an answer to a waiter: its client, or its part of a split query.
    fn deliver(&mut self, w: &Waiter, bytes: Vec<u8>) {
        match w.group {
            Some(part) => self.part_done(part, Some(&bytes)),
            None => self.send_to_client(w.client, bytes),
        }
    }

    /// Answers `waiters` with an error of our own (`rcode`).
    fn answer_with_error(&mut self, key: &Key, waiters: &[Waiter], rcode: Rcode, ede: Ede) {
        self.events.source(AnswerSource::Error);
        for w in waiters {
            self.count_error(rcode);
            let bytes = reply::error_for(&w.asker(key), key.type_class(), rcode, ede);
            self.deliver(w, bytes);
        }
    }

    /// Largest answer `client` can take for `query`: its UDP size capped at
    /// `--max-udp-size`, or 65535 over TCP.
    fn max_response(&self, client: Client, query: &MessageView<'_>) -> usize {
        if client.is_udp() {
            query
                .max_udp_response()
                .min(usize::from(self.cfg.max_udp_size))
        } else {
            MAX_MESSAGE_LEN
        }
    }
}
