//! Which upstream messages are answers to us (RFC 5452 §9.1, draft-vixie-dnsext-dns0x20):
//! the checks of an answer against its query's live attempts, the index of queries in
//! flight by question (coalescing, and telling a forgery for a question in flight from
//! a stray packet), late answers to finished attempts, and what a near miss does.

use super::key::{same_question_exact, same_question_folded, Key};
use super::pending::{Pending, Slot, Via};
use super::{Forwarder, Source, Verdict};
use crate::clock::Instant;
use crate::wire::MessageView;

impl Forwarder {
    /// What an upstream message is: see [`Verdict`].
    pub(super) fn judge(
        &mut self,
        now: Instant,
        source: Source,
        view: &MessageView<'_>,
    ) -> Verdict {
        let bytes = view.bytes();
        let id = view.header.id;
        if let Some(slot) = self.pending.slot_of(id) {
            if let Some(p) = self.pending.get(slot) {
                let found = p.attempts.find(id);
                let on_path = found.is_some_and(|(_, a)| match (source, a.via) {
                    (
                        Source::Udp {
                            upstream,
                            socket,
                            from,
                        },
                        Via::Udp { socket: s },
                    ) => {
                        upstream == a.upstream
                            && socket == s
                            && self.upstreams.is_addr(upstream, &from)
                    }
                    (Source::Tcp { upstream }, Via::Tcp) => upstream == a.upstream,
                    _ => false,
                });
                if let (true, Some((n, a))) = (on_path, found) {
                    if p.udp_closed && matches!(source, Source::Udp { .. }) {
                        // Spoofing was seen for this question: only TCP answers count.
                        return Verdict::Late;
                    }
                    if same_question_exact(bytes, &p.spelling, &p.key) {
                        return Verdict::Accept(slot, n, true);
                    }
                    if same_question_folded(bytes, &p.key) {
                        // Our ID, our port, our question, but not our letter case: a
                        // forgery over UDP, or an upstream that does not echo case.
                        // Over TCP (out of an off-path forger's reach) it is the answer.
                        self.stats.case_mismatches += 1;
                        let upstream = a.upstream;
                        self.upstreams.case_lost(upstream);
                        return match source {
                            Source::Tcp { .. } => Verdict::Accept(slot, n, false),
                            Source::Udp { .. } => Verdict::NearMiss(slot),
                        };
                    }
                }
            }
        }
        if matches!(source, Source::Tcp { .. }) {
            // Off-path forgers cannot reach our TCP connections: a mismatch there is a
            // confused upstream, not a spoofing signal.
            return Verdict::Stray;
        }
        if let Some(slot) = self.inflight_for(view) {
            // About a question in flight. A late answer to an attempt that retired is
            // not a forgery; anything else is.
            return if self.recently_freed(now, id) {
                Verdict::Late
            } else {
                Verdict::NearMiss(slot)
            };
        }
        if self.recently_freed(now, id) {
            Verdict::Late
        } else {
            Verdict::Stray
        }
    }

    /// The query in flight for the question `view` asks (letter case ignored, any
    /// flags), if any.
    pub(super) fn inflight_for(&self, view: &MessageView<'_>) -> Option<Slot> {
        let key = Key::of(view)?;
        let h = self.question_hash(&key);
        self.find_inflight(h, |p| p.key.question() == key.question())
    }

    /// The hash a question is indexed under for queries in flight.
    pub(super) fn question_hash(&self, key: &Key) -> u64 {
        self.cache.question_hash(key.question())
    }

    /// The bucket of the in-flight index for question hash `h`.
    fn bucket(&self, h: u64) -> usize {
        // The array's length is a power of two; the hash is keyed, so its low bits are
        // as good as any.
        (h as usize) & self.inflight.len().saturating_sub(1)
    }

    /// The first query of the chain at `h`'s bucket.
    fn inflight_head(&self, h: u64) -> Option<Slot> {
        match self.inflight.get(self.bucket(h)).copied() {
            Some(0) | None => None,
            Some(n) => Some(n as usize - 1),
        }
    }

    fn set_inflight_head(&mut self, h: u64, slot: Option<Slot>) {
        let b = self.bucket(h);
        if let Some(head) = self.inflight.get_mut(b) {
            *head = slot.map_or(0, |s| s as u32 + 1);
        }
    }

    /// Indexes the query in `slot` under question hash `h` (at the head of its chain).
    pub(super) fn link_inflight(&mut self, slot: Slot, h: u64) {
        let next = self.inflight_head(h);
        if let Some(p) = self.pending.get_mut(slot) {
            p.inflight = Some(h);
            p.next_inflight = next;
            self.set_inflight_head(h, Some(slot));
        }
    }

    /// The first query in flight under question hash `h` that `is` accepts.
    pub(super) fn find_inflight(&self, h: u64, is: impl Fn(&Pending) -> bool) -> Option<Slot> {
        let mut at = self.inflight_head(h);
        // A chain holds the queries in flight for one question (one per flag
        // combination) and those whose hash shares the bucket, about one at most loads;
        // the bound only guards against a bug.
        for _ in 0..64 {
            let slot = at?;
            let p = self.pending.get(slot)?;
            if p.inflight == Some(h) && is(p) {
                return Some(slot);
            }
            at = p.next_inflight;
        }
        None
    }

    /// Takes `slot` (whose question hash is `h`, followed by `next`) out of the index.
    pub(super) fn unlink_inflight(&mut self, slot: Slot, h: u64, next: Option<Slot>) {
        let Some(head) = self.inflight_head(h) else {
            return;
        };
        if head == slot {
            return self.set_inflight_head(h, next);
        }
        let mut at = Some(head);
        for _ in 0..64 {
            let Some(p) = at.and_then(|s| self.pending.get_mut(s)) else {
                return;
            };
            if p.next_inflight == Some(slot) {
                p.next_inflight = next;
                return;
            }
            at = p.next_inflight;
        }
    }

    pub(super) fn ms_since_epoch(&mut self, now: Instant) -> u32 {
        let epoch = *self.epoch.get_or_insert(now);
        (now.nanos_since(epoch) / 1_000_000) as u32
    }

    pub(super) fn mark_freed(&mut self, now: Instant, id: u16) {
        let stamp = self.freed_stamp(now);
        if let Some(at) = self.freed_at.get_mut(usize::from(id)) {
            *at = stamp;
        }
    }

    /// What `freed_at` records for an ID freed at `now` (read once for several IDs
    /// freed together).
    pub(super) fn freed_stamp(&mut self, now: Instant) -> u32 {
        self.ms_since_epoch(now).wrapping_add(1)
    }

    /// Whether `id` belonged to an attempt that ended within the last deadline.
    pub(super) fn recently_freed(&mut self, now: Instant, id: u16) -> bool {
        // Most IDs were never freed: no clock arithmetic for them.
        let at = match self.freed_at.get(usize::from(id)).copied() {
            Some(0) | None => return false,
            Some(at) => at,
        };
        let ms = self.freed_stamp(now);
        let window = self.cfg.deadline.as_millis().min(u128::from(u32::MAX)) as u32;
        ms.wrapping_sub(at) <= window
    }

    /// An answer for the question of `slot` failed a check. Every query in flight for
    /// that question (whatever its flags) stops listening on UDP and is asked again over
    /// TCP (unless it already is); the upstream counts it towards going TCP-only.
    pub(super) fn near_miss(&mut self, now: Instant, slot: Slot, upstream: usize) {
        self.stats.near_misses += 1;
        self.upstreams.near_miss(upstream, now);
        let Some(key) = self.pending.get(slot).map(|p| p.key.clone()) else {
            return;
        };
        let h = self.question_hash(&key);
        let mut at = self.inflight_head(h);
        let mut hit = vec![slot];
        // Chains are short (see `find_inflight`); the bound only guards against a bug.
        for _ in 0..64 {
            let Some(s) = at else {
                break;
            };
            let Some(p) = self.pending.get(s) else {
                break;
            };
            if s != slot
                && p.inflight == Some(h)
                && p.key.question() == key.question()
                && hit.len() < 64
            {
                hit.push(s);
            }
            at = p.next_inflight;
        }
        for s in hit {
            self.close_udp(now, s);
        }
    }

    /// A query stops listening on UDP and goes on over TCP to its current upstream.
    pub(super) fn close_udp(&mut self, now: Instant, slot: Slot) {
        let Some(p) = self.pending.get_mut(slot) else {
            return;
        };
        p.near_misses = p.near_misses.saturating_add(1);
        if p.udp_closed {
            return;
        }
        p.udp_closed = true;
        self.stats.moved_to_tcp += 1;
        let on_tcp = p.current().is_some_and(|a| a.via == Via::Tcp);
        let upstream = p.upstream();
        if !on_tcp && now < p.deadline {
            self.resend(now, slot, upstream, Via::Tcp);
        }
    }
}
