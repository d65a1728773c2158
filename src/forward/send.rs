//! Sending upstream: a new query for a key (past the table's bound and the client's
//! fair share), its attempts (a fresh random ID, socket and letter case each, RFC 5452
//! §9), and what happens when one fails (another upstream, or TCP).

use super::events::FailKind;
use super::key::{self, write_query, Key, Spelling};
use super::pending::{Attempt, Fresh, Pending, Slot, Via, Waiter};
use super::{owner_of, shares, Dest, Forwarder, Transmit, NO_RANDOMNESS};
use crate::clock::Instant;
use crate::wire::Rcode;

impl Forwarder {
    /// Sends a new upstream query for `key`, with `waiters` to answer; registered for
    /// coalescing under `hash` if given. If it cannot be sent, the waiters get a stale
    /// answer (with `stale`) or REFUSED when the table is full, and SERVFAIL when there
    /// is no fresh randomness (fail closed).
    pub(super) fn start(
        &mut self,
        now: Instant,
        key: &Key,
        hash: Option<u64>,
        waiters: Vec<Waiter>,
        stale: bool,
    ) -> Option<Slot> {
        let Some((owner, share)) = self.admit(now, &waiters) else {
            self.overloaded(now, key, &waiters, stale);
            self.recycle_waiters(waiters);
            return None;
        };
        let allowed = self.routes.allowed(key.name());
        let upstream = self.upstreams.pick_in(now, 0, allowed, self.cfg.timeout);
        let Some((spelling, first, guess_bits)) = self.draw(now, key, upstream) else {
            self.stats.rng_failures += 1;
            self.answer_with_error(key, &waiters, Rcode::SERVFAIL, NO_RANDOMNESS);
            self.recycle_waiters(waiters);
            return None;
        };
        let deadline = now.add_nanos(self.times.deadline_ns);
        self.serial += 1;
        // Written from what is in hand, not read back from the table once inserted.
        let mut bytes = self.pending.buffer();
        write_query(&mut bytes, first.id, key, &spelling, self.cfg.edns_size);
        let fresh = Fresh {
            spelling,
            first,
            deadline,
            waiters,
            guess_bits,
            owner,
            share,
            serial: self.serial,
        };
        let timer = self.first_timer(now);
        let slot = self.pending.insert_new(key, fresh, timer);
        self.register(slot, share, hash);
        self.stats.forwarded += 1;
        self.queue_query(slot, first, bytes);
        Some(slot)
    }

    /// Whether a new query for `waiters` may start (`None` if not: no upstream, a full
    /// table, or a client past its fair share): the client it counts against for fair
    /// shares (its first waiter's, with fair shares on), and that client's key in the
    /// counts if queries are counted now.
    fn admit(&mut self, now: Instant, waiters: &[Waiter]) -> Option<(Option<u128>, Option<u64>)> {
        let owner = waiters
            .first()
            .filter(|_| self.cfg.max_pending_per_client > 0)
            .and_then(|w| owner_of(w.client));
        let share = match owner {
            _ if self.upstreams.is_empty() => None,
            None => (!self.pending.is_full()).then_some(None),
            Some(addr) => self.admit_client(now, addr),
        }?;
        Some((owner, share))
    }

    /// Registers the query just started in `slot` with the fair shares (`share`: its
    /// client's key, if counted) and, under `hash` if given, for coalescing.
    fn register(&mut self, slot: Slot, share: Option<u64>, hash: Option<u64>) {
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

    /// The random parts of a new query for `key` to `upstream`: its letter case, its
    /// first attempt's ID and path (RFC 5452 §9, 0x20), and the bits a blind forger must
    /// guess for a UDP answer (see [`guess_bits`](Self::guess_bits)). One 64-bit draw
    /// serves them all (its low 16 bits the ID, the next 16 the socket, the top 32 the
    /// case of a name of up to 32 octets); a used ID or a longer name draws more. `None`
    /// if the generator failed.
    fn draw(
        &mut self,
        now: Instant,
        key: &Key,
        upstream: usize,
    ) -> Option<(Spelling, Attempt, u32)> {
        let r = self.rng.next_u64()?;
        let name = key.name();
        let (spelling, letters) = if self.upstreams.mixes_case(upstream) {
            let bits = key::case_bits(name.len(), (r >> 32) as u32, self.rng.as_mut())?;
            Spelling::random_case(name, &bits)
        } else {
            (Spelling::default(), 0)
        };
        let guess_bits = self.guess_bits(letters);
        let id = self.fresh_id(now, Some(r as u16))?;
        let via = self.via(now, upstream, false, guess_bits, Some((r >> 16) as u16))?;
        let first = Attempt {
            id,
            upstream,
            via,
            sent_at: now,
        };
        Some((spelling, first, guess_bits))
    }

    /// Bits a blind forger must guess for a UDP answer to a query: the ID, which socket
    /// of the pool, and the case of each of its `letters` if the name goes in random
    /// case (0 if not).
    fn guess_bits(&self, letters: u32) -> u32 {
        let pool = self.cfg.sockets_per_upstream.max(1).ilog2();
        16 + pool + letters
    }

    /// How the next attempt to `upstream` goes: TCP if the query's UDP path is closed,
    /// the upstream is under attack, or a UDP answer would offer a forger fewer than
    /// `min_guess_bits` to guess; else a random socket of its pool, chosen by `random`
    /// if given (16 bits drawn already), else by a new draw. `None` if the generator
    /// failed.
    fn via(
        &mut self,
        now: Instant,
        upstream: usize,
        udp_closed: bool,
        bits: u32,
        random: Option<u16>,
    ) -> Option<Via> {
        if udp_closed || self.upstreams.tcp_only(upstream, now) || bits < self.cfg.min_guess_bits {
            return Some(Via::Tcp);
        }
        let n = self.cfg.sockets_per_upstream;
        let socket = match random {
            Some(r) => usize::from(r) % n.max(1),
            None => self.rng.below(n)?,
        };
        Some(Via::Udp { socket })
    }

    /// A transaction ID no live attempt uses, preferably one not freed within the last
    /// deadline either (a late answer to a finished attempt must not fit a new query of
    /// the same question); `first` is the first candidate if given (16 bits drawn
    /// already), then new draws. `None` if the generator failed.
    #[inline]
    fn fresh_id(&mut self, now: Instant, first: Option<u16>) -> Option<u16> {
        let id = match first {
            Some(id) if self.pending.is_free(id) => id,
            _ => self.pending.fresh_id(self.rng.as_mut())?,
        };
        // The usual case on its own, so that the clock arithmetic of the loop below is
        // not done before it is needed (the compiler hoists it out of the loop).
        if !self.recently_freed(now, id) {
            return Some(id);
        }
        self.fresh_id_again(now)
    }

    /// [`fresh_id`](Self::fresh_id) after a draw that was freed too recently.
    #[inline(never)]
    fn fresh_id_again(&mut self, now: Instant) -> Option<u16> {
        let mut id = self.pending.fresh_id(self.rng.as_mut())?;
        for _ in 0..7 {
            if !self.recently_freed(now, id) {
                break;
            }
            id = self.pending.fresh_id(self.rng.as_mut())?;
        }
        Some(id)
    }

    /// The timer of a new query's first attempt: `--timeout` from `now`, cut short by
    /// its deadline (`--deadline` from `now`); one addition of nanoseconds.
    fn first_timer(&self, now: Instant) -> Instant {
        now.add_nanos(self.times.first_timer_ns)
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
        self.queue_query(slot, a, bytes);
    }

    /// Queues `bytes`, our query for attempt `a` of `slot`, to go out its way.
    #[inline(always)]
    fn queue_query(&mut self, slot: Slot, a: Attempt, bytes: Vec<u8>) {
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

    pub(super) fn has_untried(&self, slot: Slot) -> bool {
        let live = self.upstreams.live_mask();
        self.pending.get(slot).is_some_and(|p| {
            let all = live & self.routes.allowed(p.key.name());
            p.tried & all != all
        })
    }

    /// After an immediate failure (ICMP refused, TCP reset): try an upstream this query
    /// has not tried yet, at once. If there is none, the attempt's timer stays armed and
    /// decides; re-sending at once to an upstream that just refused would only spin.
    pub(super) fn fail_over(&mut self, now: Instant, slot: Slot) {
        let in_time = self.pending.get(slot).is_some_and(|p| now < p.deadline);
        if in_time && self.has_untried(slot) {
            self.retry(now, slot);
        }
    }

    pub(super) fn retry_or_fail(&mut self, now: Instant, slot: Slot) {
        match self.pending.get(slot) {
            Some(p) if now < p.deadline => self.retry(now, slot),
            Some(_) => self.complete(now, slot, None),
            None => {}
        }
    }

    /// Sends the query again to the best upstream not tried yet (over UDP unless its UDP
    /// path is closed or that upstream is TCP-only).
    pub(super) fn retry(&mut self, now: Instant, slot: Slot) {
        let Some(p) = self.pending.get(slot) else {
            return;
        };
        let (tried, udp_closed, bits) = (p.tried, p.udp_closed, p.guess_bits);
        let allowed = self.routes.allowed(p.key.name());
        let upstream = self
            .upstreams
            .pick_in(now, tried, allowed, self.cfg.timeout);
        match self.via(now, upstream, udp_closed, bits, None) {
            Some(via) => self.resend(now, slot, upstream, via),
            None => {
                self.stats.rng_failures += 1;
                self.complete(now, slot, None);
            }
        }
    }

    /// A new attempt: a new ID and timer, the given path. Earlier attempts stay live.
    pub(super) fn resend(&mut self, now: Instant, slot: Slot, upstream: usize, via: Via) {
        let Some(id) = self.fresh_id(now, None) else {
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
}
