//! The core's timers: each query's upstream timeout and deadline (the pending table's),
//! the stale-answer timers, and the periodic look at memory to give back; and the
//! instant the shell's poll is told to wake at.

use super::events::FailKind;
use super::{Forwarder, SHRINK_EVERY};
use crate::clock::Instant;

impl Forwarder {
    /// Call when the instant from [`poll_timeout`](Self::poll_timeout) has come (the
    /// shell may call it every turn: most turns it only compares three instants).
    #[inline]
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = self.pending.may_expire(now)
            || self.next_shrink.is_none_or(|t| now >= t)
            || self
                .stale_timers
                .peek()
                .is_some_and(|&std::cmp::Reverse((at, _))| at <= now);
        if due {
            self.run_timers(now);
        }
    }

    fn run_timers(&mut self, now: Instant) {
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
        // Folded by hand, the usual empty cases first: an array of three options,
        // flattened, cost several times the comparisons (the shell asks every turn).
        let mut next = self.pending.next_timer();
        if !self.stale_timers.is_empty() {
            next = earlier(next, self.next_stale_timer());
        }
        // After a burst, a look at the memory to give back once it has emptied out.
        if self.worth_shrinking() {
            next = earlier(next, self.next_shrink);
        }
        next
    }
}

/// The earlier of two optional instants (`None`: never); the loop's too.
#[inline]
pub(crate) fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
