//! One-question queries meet the cache and the table of queries in flight here:
//! answered from the cache, attached to the one upstream query in flight for their key
//! (coalescing, with the cache on or off), or sent upstream; and cache entries are
//! refreshed before they expire (prefetch).

use super::key::{Key, Spelling};
use super::pending::Waiter;
use super::{Client, Forwarder, Slot};
use crate::cache::{Asker, Cache, Lookup};
use crate::clock::Instant;
use crate::wire::{MessageView, Rcode};

/// RFC 8767 §5: "The client response timer ... 1.8 seconds".
const STALE_ANSWER_AFTER: std::time::Duration = std::time::Duration::from_millis(1800);

/// Places of a full list of waiters whose clients are counted when a newcomer asks for
/// one (see `join_full`): the shares in a window of the list, not the whole of it.
const JOIN_SAMPLE: usize = 64;

impl Forwarder {
    /// A one-question query (`group`: its place in a split query): answered from the
    /// cache, attached to the query in flight for its key, or sent upstream.
    pub(super) fn resolve(
        &mut self,
        now: Instant,
        client: Client,
        view: &MessageView<'_>,
        group: Option<usize>,
    ) {
        // The key is read into the last query's: a new one would be 260 octets zeroed
        // first, for the few a name uses.
        let mut key = self.spare_key.take().unwrap_or_default();
        self.resolve_key(now, client, view, group, &mut key);
        self.spare_key = Some(key);
    }

    /// [`resolve`](Self::resolve), with `key` to read the question into.
    fn resolve_key(
        &mut self,
        now: Instant,
        client: Client,
        view: &MessageView<'_>,
        group: Option<usize>,
        key: &mut Key,
    ) {
        let Some(spelling) = key.read_spelled(view) else {
            // A question the view could not read into a key (it parsed, so this is a
            // name the key cannot hold): FORMERR, as for any unreadable question.
            return self.fail_question(client, view, group, Rcode::FORMERR);
        };
        if self.is_our_own(view, key, &spelling) {
            // A forwarding loop: our upstream query came back as a client query. Answer
            // it SERVFAIL at once (so the query in flight fails over instead of looping).
            self.count_loop(client);
            return self.fail_question(client, view, group, Rcode::SERVFAIL);
        }
        let waiter = self.waiter(client, view, group, spelling);
        if self.answer_locally(key, &waiter) {
            return;
        }
        // One keyed hash a query: the question's, for the queries in flight, and with
        // the flags folded in, for the cache.
        let hash = self.question_hash(key);
        let Some(stale) = self.answer_cached(now, key, hash, &waiter) else {
            return;
        };
        if self.join_inflight(now, key, hash, &waiter, stale) {
            return;
        }
        let mut waiters = self.waiter_list();
        // Copied straight from `waiter` (a push stages another copy of it first).
        waiters.extend_from_slice(std::slice::from_ref(&waiter));
        if let (Some(slot), true) = (self.start(now, key, Some(hash), waiters, stale), stale) {
            self.arm_stale_timer(now, slot);
        }
    }

    /// Answers a question that goes no further with `rcode`: the whole query, or (with
    /// `group`) its part of a split one.
    fn fail_question(
        &mut self,
        client: Client,
        view: &MessageView<'_>,
        group: Option<usize>,
        rcode: Rcode,
    ) {
        match group {
            Some(part) => self.part_done(part, None),
            None => self.refuse(client, view.bytes(), Some(view), rcode),
        }
    }

    /// Counts a forwarding loop (our own query back from `client`), with a warning at
    /// each power of two.
    fn count_loop(&mut self, client: Client) {
        self.stats.loops += 1;
        if self.stats.loops.is_power_of_two() {
            log::warn!(
                "forwarding loop: our own query came back from {client:?} ({} so far); \
                 check that no upstream forwards to us",
                self.stats.loops
            );
        }
    }

    /// `client`'s query `view` as a waiter for its answer (`group`: its place in a split
    /// query, which takes an answer of any size; `spelling`: its question name's).
    fn waiter(
        &self,
        client: Client,
        view: &MessageView<'_>,
        group: Option<usize>,
        spelling: Spelling,
    ) -> Waiter {
        let max = match group {
            Some(_) => crate::wire::MAX_MESSAGE_LEN,
            None => self.max_response(client, view),
        };
        Waiter {
            client,
            group,
            id: view.header.id,
            rd: view.header.rd,
            cd: view.header.cd,
            edns: view.opt.map(|o| o.dnssec_ok),
            max_response: max,
            spelling,
        }
    }

    /// Answers `waiter` from the cache if it holds a fresh answer for `key` (`hash`: the
    /// question's), and has that entry refreshed if it is due. `None` if it answered,
    /// else whether the cache holds a stale answer (RFC 8767) to fall back on.
    fn answer_cached(
        &mut self,
        now: Instant,
        key: &Key,
        hash: u64,
        waiter: &Waiter,
    ) -> Option<bool> {
        if !self.cache.enabled() {
            return Some(false);
        }
        let cache_hash = crate::cache::key_hash(hash, key.flags());
        let stale = match self.cache.get_hashed(key.as_bytes(), cache_hash, now) {
            Lookup::Fresh(mut e) => {
                let buf = self.pending.buffer();
                let bytes = Cache::render_into(&e, now, &waiter.asker(key), false, buf);
                let refresh = e.wants_prefetch(now).then(|| {
                    e.prefetching = true;
                    e.key_bytes().to_vec()
                });
                self.stats.cache_hits += 1;
                self.events.source(super::events::AnswerSource::Cache);
                self.deliver(waiter, bytes);
                if let Some(k) = refresh.as_deref().and_then(Key::from_bytes) {
                    self.prefetch(now, k);
                }
                return None;
            }
            Lookup::Stale(_) => true,
            Lookup::Miss => false,
        };
        self.stats.cache_misses += 1;
        Some(stale)
    }

    /// Attaches `waiter` to the query in flight for `key` (`hash`: the question's), if
    /// there is one; past [`MAX_WAITERS`](super::MAX_WAITERS) it is answered as
    /// [`overloaded`](Self::overloaded). Returns whether there was one.
    fn join_inflight(
        &mut self,
        now: Instant,
        key: &Key,
        hash: u64,
        waiter: &Waiter,
        stale: bool,
    ) -> bool {
        let Some(slot) = self.find_inflight(hash, |p| p.key == *key) else {
            return false;
        };
        let Some(p) = self.pending.get_mut(slot) else {
            return false;
        };
        if p.waiters.len() < super::MAX_WAITERS {
            p.waiters.push(*waiter);
            self.seated(now, slot, stale);
        } else {
            self.join_full(now, slot, key, waiter, stale);
        }
        true
    }

    /// `waiter` for the query in `slot`, whose waiters are [`MAX_WAITERS`](super::MAX_WAITERS):
    /// it takes the place of a waiter picked at random if that one's client holds more
    /// than one place more on this query than `waiter`'s does (the place's waiter is then
    /// answered as [`overloaded`](Self::overloaded)); otherwise `waiter` is. A client
    /// holding most of the places is thus the likeliest to give one up, and one client
    /// asking one name over and over cannot keep others from its answer (fair shares do
    /// the same for the table). Clients are counted as fair shares count them (an
    /// address, IPv6 by /64), over the [`JOIN_SAMPLE`] places from the one picked (an
    /// estimate of their shares at a bounded cost). Only a full list pays for it.
    #[cold]
    #[inline(never)]
    fn join_full(&mut self, now: Instant, slot: Slot, key: &Key, waiter: &Waiter, stale: bool) {
        let places = self.pending.get(slot).map_or(0, |p| p.waiters.len());
        let pick = super::owner_of(waiter.client).zip(self.rng.below(places));
        let given_up = pick.and_then(|(newcomer, i)| {
            let p = self.pending.get_mut(slot)?;
            let holder = super::owner_of(p.waiters.get(i)?.client)?;
            // Its own place: a client does not take from itself (and a flood of its
            // own, picking its own places, costs no walk).
            if holder == newcomer {
                return None;
            }
            // Shares counted over a window of the list from the place picked, not the
            // whole list: a walk of all 4096 waiters cost ~15 µs a query (release), paid
            // by every query from a client not holding the place picked (a flood from
            // many addresses), nearly twice a whole miss.
            let (mut theirs, mut ours) = (0usize, 0usize);
            let n = p.waiters.len();
            for k in 0..JOIN_SAMPLE.min(n) {
                let w = p.waiters.get((i + k) % n)?;
                match super::owner_of(w.client) {
                    Some(o) if o == holder => theirs += 1,
                    Some(o) if o == newcomer => ours += 1,
                    _ => {}
                }
            }
            if theirs <= ours + 1 {
                return None;
            }
            Some(std::mem::replace(p.waiters.get_mut(i)?, *waiter))
        });
        match given_up {
            Some(old) => {
                self.seated(now, slot, stale);
                self.overloaded(now, key, std::slice::from_ref(&old), stale);
            }
            None => self.overloaded(now, key, std::slice::from_ref(waiter), stale),
        }
    }

    /// A waiter is seated on the query in `slot` (`stale`: a stale answer to fall back
    /// on): counted as coalesced, and if the query had no stale answer to fall back on
    /// (a prefetch, say), this client gets one after 1.8 s all the same.
    #[inline]
    fn seated(&mut self, now: Instant, slot: Slot, stale: bool) {
        self.stats.coalesced += 1;
        if stale && self.pending.get(slot).is_some_and(|p| p.stale_at.is_none()) {
            self.arm_stale_timer(now, slot);
        }
    }

    /// Whether `view` is one of our own upstream queries: the ID of a live attempt, the
    /// same question spelled in the same random case, and our EDNS size. A spelling all
    /// in lower case proves nothing (an ordinary client asks so), and such a loop breaks
    /// anyway: the looped query joins itself and times out.
    fn is_our_own(&self, view: &MessageView<'_>, key: &Key, spelling: &Spelling) -> bool {
        let ours =
            !spelling.is_lower() && view.opt.is_some_and(|o| o.udp_size == self.cfg.edns_size);
        ours && self
            .pending
            .slot_of(view.header.id)
            .and_then(|slot| self.pending.get(slot))
            .is_some_and(|p| p.key == *key && p.spelling == *spelling)
    }

    /// No room for another query: a stale answer if there is one, else REFUSED. Kept
    /// out of line: inlined into `resolve` (and `start`), it cost hits instructions.
    #[inline(never)]
    pub(super) fn overloaded(&mut self, now: Instant, key: &Key, waiters: &[Waiter], stale: bool) {
        if stale {
            self.answer_waiters(now, key, waiters, super::Outcome::Stale);
        } else {
            self.answer_with_error(key, waiters, Rcode::REFUSED, super::OVERLOADED);
        }
    }

    /// RFC 8767 §5 "client response timer": with a stale answer in the cache, a client
    /// whose query has not been answered after 1.8 s gets the stale answer, and the
    /// query goes on to refresh the cache.
    fn arm_stale_timer(&mut self, now: Instant, slot: Slot) {
        let Some(p) = self.pending.get_mut(slot) else {
            return;
        };
        let at = (now + STALE_ANSWER_AFTER).min(p.deadline);
        p.stale_at = Some(at);
        self.stale_timers.push(std::cmp::Reverse((at, slot)));
    }

    /// Answers, from the stale cache entry, the waiters of every query whose client
    /// response timer has expired; their queries carry on with nobody waiting.
    pub(super) fn handle_stale_timers(&mut self, now: Instant) {
        while let Some(&std::cmp::Reverse((at, slot))) = self.stale_timers.peek() {
            if at > now {
                return;
            }
            self.stale_timers.pop();
            let Some(p) = self.pending.get_mut(slot) else {
                continue;
            };
            if p.stale_at != Some(at) {
                continue; // answered, or a later query in this slot
            }
            p.stale_at = None;
            self.events.finishing(now, p.deadline, p.upstream());
            let waiters = std::mem::take(&mut p.waiters);
            let key = p.key.clone();
            self.answer_waiters(now, &key, &waiters, super::Outcome::Stale);
            self.recycle_waiters(waiters);
        }
    }

    /// The earliest client response timer.
    pub(super) fn next_stale_timer(&mut self) -> Option<Instant> {
        while let Some(&std::cmp::Reverse((at, slot))) = self.stale_timers.peek() {
            if self
                .pending
                .get(slot)
                .is_some_and(|p| p.stale_at == Some(at))
            {
                return Some(at);
            }
            self.stale_timers.pop();
        }
        None
    }

    /// Refreshes a cache entry before it expires: its key sent upstream with nobody
    /// waiting (unless that key is in flight already). Kept out of line: inlined into
    /// `resolve`'s cache hit, it cost each hit instructions.
    #[inline(never)]
    pub(super) fn prefetch(&mut self, now: Instant, key: Key) {
        let hash = self.question_hash(&key);
        if self.find_inflight(hash, |p| p.key == key).is_some() {
            return;
        }
        self.stats.prefetches += 1;
        if self
            .start(now, &key, Some(hash), Vec::new(), false)
            .is_none()
        {
            // Not sent (table full): let a later hit try again.
            if let Lookup::Fresh(mut e) | Lookup::Stale(mut e) = self.cache.get(key.as_bytes(), now)
            {
                e.prefetching = false;
            }
        }
    }

    /// The cache's answer for `asker` (fresh, or stale with TTL 30).
    pub(super) fn render_cached(
        &mut self,
        now: Instant,
        key: &Key,
        asker: &Asker,
        stale: bool,
    ) -> Option<Vec<u8>> {
        match self.cache.get(key.as_bytes(), now) {
            Lookup::Fresh(e) | Lookup::Stale(e) => {
                let buf = self.pending.buffer();
                Some(Cache::render_into(&e, now, asker, stale, buf))
            }
            Lookup::Miss => None,
        }
    }
}
