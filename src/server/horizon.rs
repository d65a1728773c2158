//! The poll's sleep, timed coarsely when the next deadline is far.
use std::time::Duration;

use crate::clock::Instant;

/// The poll's sleep when the next deadline is far (see [`Horizon`]).
const FAR_WAIT: Duration = Duration::from_millis(250);

/// Spares most turns turning the next deadline into a sleep (a subtraction and a
/// division into a `Duration`, ~10 instructions; ~55 with std's `Instant`) when timing
/// the poll: while a turn begins before `until`, a deadline at or after `far` is more
/// than [`FAR_WAIT`] away, and the poll sleeps `FAR_WAIT` (waking early is harmless; it
/// is never late). Under load the next deadline is usually a query's `--timeout`
/// (1.5 s) ahead. Moved on when a turn reaches `until`.
pub(super) struct Horizon {
    until: Instant,
    far: Instant,
}

impl Horizon {
    pub(super) fn new(now: Instant) -> Horizon {
        Horizon {
            until: now + FAR_WAIT,
            far: now + 2 * FAR_WAIT,
        }
    }

    /// How long the poll may sleep at `now` (the turn's start) before `deadline`.
    #[inline]
    pub(super) fn sleep(&mut self, now: Instant, deadline: Instant) -> Duration {
        if now >= self.until {
            *self = Horizon::new(now);
        }
        if deadline >= self.far {
            return FAR_WAIT;
        }
        deadline.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse poll timeout never sleeps past a deadline: whenever it is used (a
    /// turn before `until`, a deadline at or after `far`), the deadline is further
    /// away than `FAR_WAIT`.
    #[test]
    fn horizon_never_sleeps_past_a_deadline() {
        let start = Instant::now();
        let h = Horizon::new(start);
        for now_ms in [0, 1, 100, 249] {
            let now = start + Duration::from_millis(now_ms);
            assert!(now < h.until);
            for extra_ms in [0, 1, 1000] {
                let deadline = h.far + Duration::from_millis(extra_ms);
                assert!(deadline.saturating_duration_since(now) > FAR_WAIT);
            }
        }
    }

    /// What the poll is told: never past the deadline, the exact time left when the
    /// deadline is near, and the horizon moved on once a turn reaches it.
    #[test]
    fn sleep_is_never_past_the_deadline() {
        let start = Instant::now();
        let mut h = Horizon::new(start);
        for now_ms in [0u64, 1, 100, 249, 250, 251, 499, 500, 777, 1000] {
            let now = start + Duration::from_millis(now_ms);
            for left_ms in [0u64, 1, 249, 250, 251, 499, 500, 501, 1500, 60_000] {
                let deadline = now + Duration::from_millis(left_ms);
                let left = Duration::from_millis(left_ms);
                let sleep = h.sleep(now, deadline);
                assert!(
                    sleep <= left,
                    "now {now_ms} ms, {left_ms} ms left: {sleep:?}"
                );
                if left < FAR_WAIT {
                    assert_eq!(sleep, left, "now {now_ms} ms, {left_ms} ms left");
                }
                assert!(now < h.until, "the horizon moved on at {now_ms} ms");
            }
        }
    }
}
