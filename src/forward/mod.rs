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
pub mod events;
mod ids;
pub mod key;
mod local_data;
mod pending;
pub mod reconfigure;
pub mod reply;
mod resolve;
pub mod routes;
mod shares;
mod split;
#[cfg(test)]
mod tests;
mod upstream;
mod validate;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::{AnswerSource, Events, FailKind};
pub use ids::{BrokenRandom, IdSource, OsRandom, SeededRandom};
use key::{write_query, Key, Spelling};
pub use pending::Client;
use pending::{Attempt, Attempts, Pending, PendingTable, Slot, Via, Waiter};
use upstream::Upstreams;

use crate::cache::{Cache, CacheConfig};
use crate::local::LocalData;
use crate::stats::Stats;
use crate::wire::{parse_header, MessageView, Opcode, Rcode, MAX_MESSAGE_LEN};

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
    /// Most queries in flight; past it, new queries get REFUSED (or a stale answer).
    pub max_pending: usize,
    /// The answer cache; `max_entries: 0` turns storing answers off (not coalescing).
    pub cache: CacheConfig,
    /// UDP payload size we advertise upstream (`--edns-size`, 512..=4096).
    pub edns_size: u16,
    /// Largest UDP answer we send a client, whatever it advertises (`--max-udp-size`,
    /// 512..=65535); bigger answers go out truncated (TC=1).
    pub max_udp_size: u16,
    /// Fewest bits an off-path forger who knows our ports must guess for an answer to be
    /// taken over UDP: 16 (ID) + log2 of the socket pool + one per letter of the name in
    /// random case. A query that offers fewer (a short name, an upstream that does not
    /// echo case, a small pool) is asked over TCP. 0 turns the floor off.
    pub min_guess_bits: u32,
    /// Most queries in flight started by one client (an IPv4 address or an IPv6 /64);
    /// 0 turns fair shares off (and the eviction of the heaviest client's queries).
    pub max_pending_per_client: usize,
    /// Per-domain upstreams: zone → addresses, each one of `upstreams`; the root zone
    /// is the default set (see [`routes`]). Empty: every upstream serves every name.
    pub routes: Vec<(crate::wire::Name, Vec<SocketAddr>)>,
    /// Local names and blocklists, answered before the cache ([`crate::local`]).
    pub local: Arc<LocalData>,
    /// Upstreams reached over a stream only (DNS over TLS): every attempt to them is
    /// a [`Dest::UpstreamTcp`] (the shell's TLS pool), and their names go in the case
    /// asked (no 0x20: nothing off-path can forge an answer inside TLS).
    pub stream_only: Vec<SocketAddr>,
}

impl ForwarderConfig {
    /// Defaults for everything but the upstreams (as `crate::config::Config`'s).
    pub fn new(upstreams: Vec<SocketAddr>) -> ForwarderConfig {
        ForwarderConfig {
            upstreams,
            sockets_per_upstream: 256,
            timeout: Duration::from_millis(1500),
            deadline: Duration::from_millis(4500),
            max_pending: 10_000,
            cache: CacheConfig::default(),
            edns_size: reply::OUR_UDP_SIZE,
            max_udp_size: reply::OUR_UDP_SIZE,
            max_pending_per_client: 1_250,
            min_guess_bits: 32,
            routes: Vec::new(),
            local: Arc::default(),
            stream_only: Vec::new(),
        }
    }
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
    /// The answer to live attempt number `attempt` of the query in `slot`; `true` if it
    /// repeats our letter case (a TCP answer may not).
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
            shares: shares::Shares::new(cfg.max_pending_per_client),
            serial: 0,
            next_shrink: None,
            gave_back: false,
            events: Events::new(&cfg.upstreams, cfg.deadline),
            cfg,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats.with_cache(&self.cache)
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
        let view = match MessageView::parse(bytes) {
            Ok(v) => v,
            Err(_) => {
                self.refuse(client, bytes, None, Rcode::FORMERR);
                return true;
            }
        };
        if header.opcode != Opcode::QUERY {
            self.refuse(client, bytes, Some(&view), Rcode::NOTIMP);
        } else if view.opt.is_some_and(|o| o.version > 0) {
            // RFC 6891 §6.1.3: an EDNS version we do not implement gets BADVERS, with an
            // OPT record of the version we do (0).
            self.refuse(client, bytes, Some(&view), Rcode::BADVERS);
        } else {
            match header.qdcount {
                0 => self.refuse(client, bytes, Some(&view), Rcode::FORMERR),
                1 => self.resolve(now, client, &view, None),
                _ => self.split(now, client, &view),
            }
        }
        true
    }

    /// Call when an upstream sent `bytes` (a UDP datagram on one of its sockets, or a
    /// message on a TCP connection to it).
    pub fn handle_response(&mut self, now: Instant, source: Source, bytes: &[u8]) {
        let Ok(view) = MessageView::parse(bytes) else {
            self.stats.dropped_responses += 1;
            return;
        };
        if !view.header.qr {
            self.stats.dropped_responses += 1;
            return;
        }
        let (slot, attempt, exact) = match self.judge(now, source, &view) {
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
        let Some(a) = p.attempts.get(attempt).copied() else {
            return;
        };
        let rtt = now.saturating_duration_since(a.sent_at);
        self.upstreams.success(a.upstream, rtt);
        self.events
            .upstream_answered(a.upstream, rtt, view.header.rcode);
        if exact && !p.spelling.is_lower() {
            self.upstreams.case_echoed(a.upstream);
        }
        if view.header.tc && matches!(source, Source::Udp { .. }) {
            return self.truncated(now, slot, &view);
        }
        let rcode = view.header.rcode;
        let retryable =
            rcode == Rcode::SERVFAIL || rcode == Rcode::REFUSED || rcode == Rcode::NOTIMP;
        if retryable && self.has_untried(slot) && now < p.deadline {
            // Another upstream may do better. This answer is dropped: if none answers in
            // time, the waiters get SERVFAIL (or a stale answer).
            return self.retry(now, slot);
        }
        self.complete(now, slot, Some(&view));
    }

    /// Call when a UDP socket of an upstream reported an error (ECONNREFUSED from an
    /// ICMP port unreachable): every query whose current attempt used that socket fails
    /// over at once.
    pub fn handle_upstream_error(&mut self, now: Instant, upstream: usize, socket: usize) {
        let hit: Vec<Slot> = self
            .pending
            .slots()
            .filter(|(_, p)| {
                p.current()
                    .is_some_and(|a| a.upstream == upstream && a.via == Via::Udp { socket })
            })
            .map(|(s, _)| s)
            .collect();
        if !hit.is_empty() {
            self.upstreams.failure(upstream, now, self.cfg.timeout);
        }
        for slot in hit {
            self.stats.upstream_errors += 1;
            if let Some(p) = self.pending.get_mut(slot) {
                p.network_error = true;
            }
            self.events.upstream_failed(upstream, FailKind::Unreachable);
            self.fail_over(now, slot);
        }
    }

    /// Call when the TCP query with ID `id` to `upstream` failed (refused, reset,
    /// closed before the answer, or not sent).
    pub fn handle_tcp_failure(&mut self, now: Instant, upstream: usize, id: u16) {
        let Some(slot) = self.pending.slot_of(id) else {
            return;
        };
        let current = self.pending.get(slot).and_then(Pending::current).copied();
        if current.is_some_and(|a| a.id == id && a.upstream == upstream && a.via == Via::Tcp) {
            self.stats.upstream_errors += 1;
            self.events.upstream_failed(upstream, FailKind::Tcp);
            self.upstreams.failure(upstream, now, self.cfg.timeout);
            if let Some(p) = self.pending.get_mut(slot) {
                p.network_error = true;
            }
            self.fail_over(now, slot);
        }
    }

    /// Call when the instant from [`poll_timeout`](Self::poll_timeout) has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_stale_timers(now);
        if self.next_shrink.is_none_or(|t| now >= t) {
            self.next_shrink = Some(now + SHRINK_EVERY);
            if self.worth_shrinking() {
                self.give_memory_back();
            }
        }
        while let Some(slot) = self.pending.pop_expired(now) {
            let Some(p) = self.pending.get(slot) else {
                continue;
            };
            self.stats.timeouts += 1;
            self.events.upstream_failed(p.upstream(), FailKind::Timeout);
            self.upstreams.failure(p.upstream(), now, self.cfg.timeout);
            self.retry_or_fail(now, slot);
        }
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let stale = self.next_stale_timer();
        // After a burst, a look at the memory to give back once it has emptied out.
        let shrink = self.worth_shrinking().then_some(self.next_shrink).flatten();
        [self.pending.next_timer(), stale, shrink]
            .into_iter()
            .flatten()
            .min()
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

    /// Forgets the cache without freeing its entries (the process is about to exit, which
    /// takes the memory back at once); the cache is off from here on.
    pub fn leak_cache(&mut self) {
        let off = Cache::new(CacheConfig {
            max_entries: 0,
            ..CacheConfig::default()
        });
        std::mem::forget(std::mem::replace(&mut self.cache, off));
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

    /// Sends a new upstream query for `key`, with `waiters` to answer; registered for
    /// coalescing under `hash` if given. If it cannot be sent, the waiters get a stale
    /// answer (with `stale`) or REFUSED when the table is full, and SERVFAIL when there
    /// is no fresh randomness (fail closed).
    fn start(
        &mut self,
        now: Instant,
        key: &Key,
        hash: Option<u64>,
        waiters: Vec<Waiter>,
        stale: bool,
    ) -> Option<Slot> {
        let owner = waiters
            .first()
            .filter(|_| self.cfg.max_pending_per_client > 0)
            .and_then(|w| owner_of(w.client));
        let admitted = match owner {
            _ if self.upstreams.is_empty() => None,
            None => (!self.pending.is_full()).then_some(None),
            Some(addr) => self.admit_client(now, addr),
        };
        let Some(share) = admitted else {
            self.overloaded(now, key, &waiters, stale);
            self.recycle_waiters(waiters);
            return None;
        };
        let allowed = self.routes.allowed(key.name());
        let upstream = self.upstreams.pick_in(now, 0, allowed, self.cfg.timeout);
        let mix = self.upstreams.mixes_case(upstream);
        let letters = key::Letters::of(key.name());
        let guess_bits = self.guess_bits(&letters, mix);
        let drawn = Spelling::random_for(&letters, mix, self.rng.as_mut()).and_then(|s| {
            let id = self.fresh_id(now)?;
            let via = self.via(now, upstream, false, guess_bits)?;
            Some((s, id, via))
        });
        let Some((spelling, id, via)) = drawn else {
            self.stats.rng_failures += 1;
            self.answer_with_error(key, &waiters, Rcode::SERVFAIL, NO_RANDOMNESS);
            self.recycle_waiters(waiters);
            return None;
        };
        let deadline = now + self.cfg.deadline;
        let p = Pending {
            key: key.clone(),
            inflight: None,
            next_inflight: None,
            spelling,
            attempts: Attempts::one(Attempt {
                id,
                upstream,
                via,
                sent_at: now,
            }),
            deadline,
            attempt: 0,
            tried: 1u64 << upstream.min(63),
            waiters,
            stale_at: None,
            near_misses: 0,
            network_error: false,
            evicted: false,
            guess_bits,
            owner,
            share,
            serial: self.serial + 1,
            // An upstream under attack is asked over TCP only, answers included.
            udp_closed: via == Via::Tcp,
        };
        let slot = self.pending.insert(p, self.attempt_timer(now, deadline));
        self.serial += 1;
        if let Some(who) = share {
            let pending = &self.pending;
            let live = |(slot, serial): shares::Started| {
                pending.get(slot).is_some_and(|p| p.serial == serial)
            };
            self.shares.started(who, (slot, self.serial), live);
        }
        if let Some(h) = hash {
            self.link_inflight(slot, h);
        }
        self.stats.forwarded += 1;
        self.transmit_query(slot);
        Some(slot)
    }

    /// Fair shares for a new query of the client `addr`: `None` if it may not start,
    /// else the client's key in the counts if queries are counted now (see `shares`).
    /// A query of the heaviest client may be ended to make room.
    fn admit_client(&mut self, now: Instant, addr: u128) -> Option<Option<u64>> {
        let capacity = self.pending.capacity();
        if self.shares.must_start(self.pending.len(), capacity) {
            self.start_counting();
        }
        if !self.shares.counting() {
            // No client can hold a share's worth, and the table is not full.
            return Some(None);
        }
        let who = self.shares.client(addr);
        let pending = &self.pending;
        let live =
            |(slot, serial): shares::Started| pending.get(slot).is_some_and(|p| p.serial == serial);
        let admitted = match self.shares.admit(now, who, pending.is_full(), live) {
            shares::Admit::Yes => true,
            shares::Admit::No => false,
            shares::Admit::Evict((slot, _)) => {
                self.evict(now, slot);
                !self.pending.is_full()
            }
        };
        admitted.then_some(Some(who))
    }

    /// Fair shares start counting: every query in flight with a client is counted.
    fn start_counting(&mut self) {
        let shares = &self.shares;
        let live: Vec<(u64, shares::Started)> = self
            .pending
            .slots_mut()
            .filter_map(|(slot, p)| {
                let who = shares.client(p.owner?);
                p.share = Some(who);
                Some((who, (slot, p.serial)))
            })
            .collect();
        self.shares.start_counting(live);
    }

    /// Bits a blind forger must guess for a UDP answer to `key`'s query: the ID, which
    /// socket of the pool, and the case of each letter if the name goes in random case.
    fn guess_bits(&self, letters: &key::Letters, mix_case: bool) -> u32 {
        let pool = self.cfg.sockets_per_upstream.max(1).ilog2();
        let case = if mix_case { letters.count() } else { 0 };
        16 + pool + case
    }

    /// How the next attempt to `upstream` goes: TCP if the query's UDP path is closed,
    /// the upstream is under attack, or a UDP answer would offer a forger fewer than
    /// `min_guess_bits` to guess; else a random socket of its pool. `None` if the
    /// generator failed.
    fn via(&mut self, now: Instant, upstream: usize, udp_closed: bool, bits: u32) -> Option<Via> {
        if udp_closed || self.upstreams.tcp_only(upstream, now) || bits < self.cfg.min_guess_bits {
            return Some(Via::Tcp);
        }
        let socket = self.rng.below(self.cfg.sockets_per_upstream)?;
        Some(Via::Udp { socket })
    }

    /// A transaction ID no live attempt uses, preferably one not freed within the last
    /// deadline either (a late answer to a finished attempt must not fit a new query of
    /// the same question); `None` if the generator failed.
    fn fresh_id(&mut self, now: Instant) -> Option<u16> {
        let mut id = self.pending.fresh_id(self.rng.as_mut())?;
        for _ in 0..8 {
            if !self.recently_freed(now, id) {
                break;
            }
            id = self.pending.fresh_id(self.rng.as_mut())?;
        }
        Some(id)
    }

    fn attempt_timer(&self, now: Instant, deadline: Instant) -> Instant {
        (now + self.cfg.timeout).min(deadline)
    }

    /// Queues our query for the pending entry's current attempt.
    fn transmit_query(&mut self, slot: Slot) {
        let mut bytes = self.pending.buffer();
        let Some(p) = self.pending.get(slot) else {
            return self.pending.recycle(bytes);
        };
        let Some(a) = p.current().copied() else {
            return self.pending.recycle(bytes);
        };
        write_query(&mut bytes, a.id, &p.key, &p.spelling, self.cfg.edns_size);
        let to = match a.via {
            Via::Udp { socket } => Dest::Upstream {
                upstream: a.upstream,
                socket,
            },
            Via::Tcp => {
                self.stats.tcp_queries += 1;
                Dest::UpstreamTcp {
                    upstream: a.upstream,
                }
            }
        };
        log::trace!("slot {slot}: query {:#06x} to {to:?}", a.id);
        self.out.push_back(Transmit { to, bytes });
    }

    fn has_untried(&self, slot: Slot) -> bool {
        let live = self.upstreams.live_mask();
        self.pending.get(slot).is_some_and(|p| {
            let all = live & self.routes.allowed(p.key.name());
            p.tried & all != all
        })
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

    /// Sends the query again to the best upstream not tried yet (over UDP unless its UDP
    /// path is closed or that upstream is TCP-only).
    fn retry(&mut self, now: Instant, slot: Slot) {
        let Some(p) = self.pending.get(slot) else {
            return;
        };
        let (tried, udp_closed, bits) = (p.tried, p.udp_closed, p.guess_bits);
        let allowed = self.routes.allowed(p.key.name());
        let upstream = self
            .upstreams
            .pick_in(now, tried, allowed, self.cfg.timeout);
        match self.via(now, upstream, udp_closed, bits) {
            Some(via) => self.resend(now, slot, upstream, via),
            None => {
                self.stats.rng_failures += 1;
                self.complete(now, slot, None);
            }
        }
    }

    /// A new attempt: a new ID and timer, the given path. Earlier attempts stay live.
    fn resend(&mut self, now: Instant, slot: Slot, upstream: usize, via: Via) {
        let Some(id) = self.fresh_id(now) else {
            self.stats.rng_failures += 1;
            return self.complete(now, slot, None);
        };
        let Some(p) = self.pending.get_mut(slot) else {
            return;
        };
        p.tried |= 1u64 << upstream.min(63);
        let timer = (now + self.cfg.timeout).min(p.deadline);
        let a = Attempt {
            id,
            upstream,
            via,
            sent_at: now,
        };
        if let Some(old) = self.pending.add_attempt(slot, a, timer) {
            self.mark_freed(now, old.id);
        }
        self.transmit_query(slot);
    }

    /// Whether the tables shrank since the last call (the shell then asks the allocator
    /// to return the memory: `crate::server`).
    pub fn take_shrunk(&mut self) -> bool {
        std::mem::take(&mut self.gave_back)
    }

    /// Whether the pending table has emptied out after a burst.
    fn worth_shrinking(&self) -> bool {
        let slab = self.pending.slab_len();
        slab > 1024 && self.pending.len() * 4 < slab
    }

    /// After a burst: the pending table, the spare lists and the indexes shrink back.
    fn give_memory_back(&mut self) {
        self.gave_back |= self.pending.shrink();
        self.spare_waiters.truncate(64);
        self.spare_waiters.shrink_to_fit();
        self.shares.shrink();
    }

    fn waiter_list(&mut self) -> Vec<Waiter> {
        self.spare_waiters.pop().unwrap_or_default()
    }

    fn recycle_waiters(&mut self, mut w: Vec<Waiter>) {
        if self.spare_waiters.len() < 1024 && w.capacity() <= 64 {
            w.clear();
            self.spare_waiters.push(w);
        }
    }
}
