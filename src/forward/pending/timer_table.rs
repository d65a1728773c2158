//! The pending table's timers: one armed for each attempt sent (its upstream timeout,
//! cut short by the query's deadline), under the attempt number it was armed for.
//!
//! [`TimerTable`] keeps them in a queue in the order armed while each is no earlier
//! than the one before (a query's first timer is now + `--timeout`, so nearly all are:
//! O(1) to arm and to pop), and in a min-heap otherwise (a re-send cut short by its
//! deadline, a changed `--timeout`). Deletion is lazy: an entry answered, re-sent or
//! removed leaves its timer armed. A timer is live while its slot holds a live entry of
//! the same attempt number (unique across the table, so a timer left by an earlier
//! attempt, or by an earlier query in the same slot, never is); only a live timer is
//! reported or fires. Stale ones are dropped as they come to the front, and all at once
//! when they outnumber the live ones by far, or when the table shrinks: a storm of
//! re-sends cannot grow them without bound.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::{Entry, PendingTable, Slot};
use crate::clock::Instant;

/// An armed timer: when, for which slot, for which attempt number.
pub(super) type Timer = (Instant, Slot, u64);

/// The armed timers, live and stale; which are live, the caller says.
#[derive(Default)]
pub(super) struct TimerTable {
    /// Timers armed in order, each no earlier than the one before.
    queued: VecDeque<Timer>,
    /// Timers armed out of that order.
    heap: BinaryHeap<Reverse<Timer>>,
    /// No armed timer, live or stale, is earlier than this (`None`: none is armed), so
    /// a turn before it pops nothing without looking. Valid values: at most the
    /// earliest armed timer.
    earliest: Option<Instant>,
}

impl TimerTable {
    /// Timers armed, live or stale.
    pub(super) fn len(&self) -> usize {
        self.queued.len() + self.heap.len()
    }

    /// Inlined into its two callers (once per query sent): a few comparisons and a
    /// push. LTO keeps it apart otherwise.
    #[inline(always)]
    pub(super) fn arm(&mut self, t: Timer) {
        self.earliest = Some(self.earliest.map_or(t.0, |e| e.min(t.0)));
        if self.queued.back().is_none_or(|last| last.0 <= t.0) {
            self.queued.push_back(t);
        } else {
            self.heap.push(Reverse(t));
        }
    }

    /// The earliest armed timer (live or stale), and whether it is the queue's.
    fn first(&self) -> Option<(Timer, bool)> {
        match (self.queued.front(), self.heap.peek()) {
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
            self.heap.pop();
        }
        Some(t)
    }

    /// Drops the timers that are not `live`.
    pub(super) fn retain(&mut self, live: impl Fn(Timer) -> bool) {
        self.queued.retain(|&t| live(t));
        self.heap.retain(|&Reverse(t)| live(t));
    }

    /// Gives back memory beyond room for `keep` timers in each place.
    pub(super) fn shrink_to(&mut self, keep: usize) {
        self.queued.shrink_to(keep);
        self.heap.shrink_to(keep);
    }

    /// The earliest armed timer that is `live`; the stale ones before it are dropped.
    /// Inlined into its callers as `next_timer` was (the shell asks every turn): out of
    /// line, it cost a miss about 80 instructions more.
    #[inline(always)]
    pub(super) fn next(&mut self, live: impl Fn(Timer) -> bool) -> Option<Instant> {
        let next = if self.heap.is_empty() {
            self.next_queued(live)
        } else {
            self.next_merged(live)
        };
        // Everything still armed is at or after the timer found.
        self.earliest = next;
        next
    }

    /// The usual case: every timer is in the queue, and those in front are stale only
    /// once (dropped here).
    fn next_queued(&mut self, live: impl Fn(Timer) -> bool) -> Option<Instant> {
        while let Some(&t) = self.queued.front() {
            if live(t) {
                return Some(t.0);
            }
            self.queued.pop_front();
        }
        None
    }

    /// [`next`](Self::next) with timers in the heap too.
    fn next_merged(&mut self, live: impl Fn(Timer) -> bool) -> Option<Instant> {
        while let Some((t, _)) = self.first() {
            if live(t) {
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
    pub(super) fn may_expire(&self, now: Instant) -> bool {
        self.earliest.is_some_and(|e| e <= now)
    }

    /// Pops one `live` timer that has expired at `now`.
    #[inline]
    pub(super) fn pop_expired(
        &mut self,
        now: Instant,
        live: impl Fn(Timer) -> bool,
    ) -> Option<Slot> {
        if !self.may_expire(now) {
            return None;
        }
        let at = self.next(live)?;
        if at > now {
            return None;
        }
        self.pop_first().map(|(_, slot, _)| slot)
    }
}

/// Whether a timer is live in `slots`: its slot holds a live entry of its attempt number.
#[inline]
fn live(slots: &[Entry]) -> impl Fn(Timer) -> bool + '_ {
    move |(_, slot, attempt): Timer| {
        slots
            .get(slot)
            .is_some_and(|e| e.live && e.p.attempt == attempt)
    }
}

impl PendingTable {
    /// Drops the stale timers.
    pub(super) fn retain_live_timers(&mut self) {
        self.timers.retain(live(&self.slots));
    }

    /// Drops stale timers once they outnumber the live ones by far, so that a storm of
    /// re-sends cannot grow them without bound.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.len() <= 4 * self.len + 1024 {
            return;
        }
        self.retain_live_timers();
    }

    /// The earliest armed timer that is still live.
    #[inline]
    pub fn next_timer(&mut self) -> Option<Instant> {
        self.timers.next(live(&self.slots))
    }

    /// Whether a timer may have expired at `now` (if not, [`pop_expired`] has nothing).
    ///
    /// [`pop_expired`]: Self::pop_expired
    #[inline]
    pub fn may_expire(&self, now: Instant) -> bool {
        self.timers.may_expire(now)
    }

    /// Pops one live timer that has expired at `now`.
    #[inline]
    pub fn pop_expired(&mut self, now: Instant) -> Option<Slot> {
        self.timers.pop_expired(now, live(&self.slots))
    }
}
