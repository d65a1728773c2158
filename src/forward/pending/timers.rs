//! The pending table's timers: one armed for each attempt sent (its upstream timeout,
//! cut short by the query's deadline), under the attempt number it was armed for.
//!
//! Timers sit in a queue in the order armed while each is no earlier than the one
//! before (a query's first timer is now + `--timeout`, so nearly all are: O(1) to arm
//! and to pop), and in a min-heap otherwise (a re-send cut short by its deadline, a
//! changed `--timeout`). Deletion is lazy: an entry answered, re-sent or removed leaves
//! its timer armed. A timer is live while its slot holds a live entry of the same
//! attempt number (unique across the table, so a timer left by an earlier attempt, or
//! by an earlier query in the same slot, never is); only a live timer is reported or
//! fires. Stale ones are dropped as they come to the front, and all at once when they
//! outnumber the live ones by far, or when the table shrinks: a storm of re-sends
//! cannot grow them without bound. `earliest` is at most the earliest armed timer, so
//! that a turn before it pops nothing without looking.

use std::cmp::Reverse;

use super::{PendingTable, Slot};
use crate::clock::Instant;

/// An armed timer: when, for which slot, for which attempt number.
pub(super) type Timer = (Instant, Slot, u64);

impl PendingTable {
    /// Inlined into its two callers (once per query sent): a few comparisons and a
    /// push. LTO keeps it apart otherwise.
    #[inline(always)]
    pub(super) fn arm(&mut self, t: Timer) {
        self.earliest = Some(self.earliest.map_or(t.0, |e| e.min(t.0)));
        if self.queued.back().is_none_or(|last| last.0 <= t.0) {
            self.queued.push_back(t);
        } else {
            self.timers.push(Reverse(t));
        }
    }

    /// The earliest armed timer (live or stale), and whether it is the queue's.
    fn first(&self) -> Option<(Timer, bool)> {
        match (self.queued.front(), self.timers.peek()) {
            (Some(&q), Some(&Reverse(h))) if h.0 < q.0 => Some((h, false)),
            (Some(&q), _) => Some((q, true)),
            (None, Some(&Reverse(h))) => Some((h, false)),
            (None, None) => None,
        }
    }

    fn pop_first(&mut self) -> Option<Timer> {
        let (t, queued) = self.first()?;
        if queued {
            self.queued.pop_front();
        } else {
            self.timers.pop();
        }
        Some(t)
    }

    #[inline]
    fn is_live(&self, (_, slot, attempt): Timer) -> bool {
        self.get(slot).is_some_and(|p| p.attempt == attempt)
    }

    /// Drops the stale timers.
    pub(super) fn retain_live_timers(&mut self) {
        let slots = &self.slots;
        let live = |&(_, slot, attempt): &Timer| {
            slots
                .get(slot)
                .is_some_and(|e| e.live && e.p.attempt == attempt)
        };
        self.queued.retain(live);
        self.timers.retain(|Reverse(t)| live(t));
    }

    /// Drops stale timers once they outnumber the live ones by far, so that a storm of
    /// re-sends cannot grow the heap without bound.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.len() + self.queued.len() <= 4 * self.len + 1024 {
            return;
        }
        self.retain_live_timers();
    }

    /// The earliest armed timer that is still live.
    #[inline]
    pub fn next_timer(&mut self) -> Option<Instant> {
        let next = if self.timers.is_empty() {
            self.next_queued()
        } else {
            self.next_timer_merged()
        };
        // Everything still armed is at or after the timer found.
        self.earliest = next;
        next
    }

    /// The usual case: every timer is in the queue, and those in front are stale only
    /// once (dropped here).
    fn next_queued(&mut self) -> Option<Instant> {
        while let Some(&t) = self.queued.front() {
            if self.is_live(t) {
                return Some(t.0);
            }
            self.queued.pop_front();
        }
        None
    }

    /// [`next_timer`](Self::next_timer) with timers in the heap too.
    fn next_timer_merged(&mut self) -> Option<Instant> {
        while let Some((t, _)) = self.first() {
            if self.is_live(t) {
                return Some(t.0);
            }
            self.pop_first();
        }
        None
    }

    /// Whether a timer may have expired at `now` (if not, [`pop_expired`] has nothing).
    ///
    /// [`pop_expired`]: Self::pop_expired
    #[inline]
    pub fn may_expire(&self, now: Instant) -> bool {
        self.earliest.is_some_and(|e| e <= now)
    }

    /// Pops one live timer that has expired at `now`.
    #[inline]
    pub fn pop_expired(&mut self, now: Instant) -> Option<Slot> {
        if !self.may_expire(now) {
            return None;
        }
        let at = self.next_timer()?;
        if at > now {
            return None;
        }
        self.pop_first().map(|(_, slot, _)| slot)
    }
}
