//! Monotonic time for the whole crate: [`Instant`], a `Copy` count of nanoseconds on
//! `CLOCK_MONOTONIC`, with the part of `std::time::Instant`'s API the crate uses.
//!
//! Why not std's: its `Instant` is a `(seconds, nanoseconds)` pair, so every comparison,
//! `+ Duration` and `duration_since` carries and borrows between the two fields
//! (`Timespec::sub_timespec` alone was ~75 instructions of a forwarded miss). Here
//! each is one integer operation: cachegrind counted a miss ~260 instructions cheaper
//! (4,883 -> 4,622), a cache hit ~135 (2,137 -> 2,000).
//!
//! The name is std's on purpose, as smoltcp's `time::Instant` is: the core's signatures
//! read `now: Instant` as before, most files only changed their `use` line, and a file
//! that reads std's clock for its own ends (the tests' wall-clock waits) keeps doing so.
//! The two cannot be mixed by accident: passing one where the other is expected does not
//! compile.
//!
//! # Guarantees
//! * Same clock as std's `Instant` on Linux (`CLOCK_MONOTONIC`, read with one
//!   `clock_gettime`), so timers fire when they did.
//! * No arithmetic panics. An `Instant` is nanoseconds since boot in a `u64`, which lasts
//!   584 years of uptime: `+` saturates at that end and `-` at boot; `duration_since`
//!   is zero for an earlier `self` (as std's has been since Rust 1.60); `checked_*`
//!   return `None` where the value would leave that range.
//! * [`Instant::now`] is the only reading of the clock; only the shell (`server`) and
//!   tests call it. Everything else takes `now` as an input.
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A reading of the monotonic clock.
///
/// Valid values: nanoseconds since an unspecified start (boot on Linux), `0..=u64::MAX`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock now: one `clock_gettime(CLOCK_MONOTONIC)` (a vDSO call, no syscall).
    ///
    /// Linux fails that call only for an unknown clock or a bad pointer, neither possible
    /// here (std's `Instant::now` panics then); should it fail anyway, this returns the
    /// earliest instant: no deadline falls due at it and durations up to it are zero, so
    /// the loop idles a turn rather than stop.
    pub fn now() -> Instant {
        clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(Instant(0), |t| {
            let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
            Instant(secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos))
        })
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later (as std's).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Nanoseconds from `earlier` to `self`, zero if `earlier` is later: what
    /// [`saturating_duration_since`](Self::saturating_duration_since) holds, as the one
    /// integer it is. A `Duration` built to be read in milli- or microseconds costs a
    /// division to split it into seconds and nanoseconds and more to join them again.
    pub fn nanos_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `self` + `ns` nanoseconds, saturating as `+ Duration` does: for a duration
    /// worked out once in nanoseconds (`+ Duration` multiplies its seconds out and
    /// checks for overflow each time).
    pub fn add_nanos(self, ns: u64) -> Instant {
        Instant(self.0.saturating_add(ns))
    }

    /// The time from `earlier` to `self`, `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// `self + d`, `None` past the end of the range (584 years of uptime).
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        let d = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(d).map(Instant)
    }

    /// `self - d`, `None` before the clock's start.
    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        let d = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_sub(d).map(Instant)
    }
}

/// `d` in nanoseconds, `u64::MAX` for any longer `d` (which saturates the sum anyway).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(NANOS_PER_SEC)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// Saturates at the end of the range instead of panicking as std's does.
impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

/// Saturates at the clock's start instead of panicking as std's does.
impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(nanos(d)))
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

/// `self.duration_since(earlier)`: zero if `earlier` is later.
impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Seconds since the clock's start, as `Instant(12.000000345s)`.
impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({:?})", Duration::from_nanos(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn reads_the_clock_monotonically() {
        let a = Instant::now();
        let b = Instant::now();
        assert!(a > Instant(0) && b >= a);
    }

    #[test]
    fn nanos_since_and_add_nanos_saturate() {
        let t = Instant::now();
        assert_eq!(t.add_nanos(1_500).nanos_since(t), 1_500);
        assert_eq!(t.nanos_since(t.add_nanos(1)), 0);
        assert_eq!(t.add_nanos(u64::MAX), Instant(u64::MAX));
        assert_eq!(Instant(u64::MAX).nanos_since(Instant(0)), u64::MAX);
        assert_eq!(t.add_nanos(2_000_000_000), t + 2 * SEC);
    }

    #[test]
    fn adds_and_subtracts_durations() {
        let t = Instant::now();
        let mut u = t + Duration::from_millis(1500);
        assert_eq!(u.duration_since(t), Duration::from_millis(1500));
        assert_eq!(u - t, Duration::from_millis(1500));
        u -= SEC;
        assert_eq!(u.saturating_duration_since(t), Duration::from_millis(500));
        u += SEC;
        assert_eq!(u - SEC - Duration::from_millis(500), t);
        assert_eq!(t.checked_add(SEC), Some(t + SEC));
        assert_eq!((t + SEC).checked_sub(SEC), Some(t));
        assert_eq!((t + SEC).checked_duration_since(t), Some(SEC));
        assert!(t < t + Duration::from_nanos(1));
    }

    #[test]
    fn saturates_instead_of_panicking() {
        let start = Instant(0);
        let end = Instant(u64::MAX);
        assert_eq!(start - SEC, start);
        assert_eq!(end + SEC, end);
        assert_eq!(start + Duration::MAX, end);
        assert_eq!(end - Duration::MAX, start);
        assert_eq!(start.duration_since(end), Duration::ZERO);
        assert_eq!(start - end, Duration::ZERO);
        assert_eq!(start.checked_duration_since(end), None);
        assert_eq!(start.checked_sub(SEC), None);
        assert_eq!(end.checked_add(SEC), None);
        assert_eq!(start.checked_add(Duration::MAX), None);
        assert_eq!(end.duration_since(start), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn debug_shows_the_duration_since_the_start() {
        let t = Instant(12 * NANOS_PER_SEC + 345);
        assert_eq!(format!("{t:?}"), "Instant(12.000000345s)");
    }
}
