//! Rate-limited logging: a cause that can happen once per packet logs at most one line
//! per period, and that line says how often it happened meanwhile.
//!
//! ```
//! # use std::time::Duration;
//! # use dnsfwd::clock::Instant;
//! # use dnsfwd::lograte::LogLimiter;
//! let mut log = LogLimiter::new(Duration::from_secs(10));
//! let now = Instant::now();
//! if let Some(n) = log.hit(now, "accept") {
//!     // "accept failed: … (1,234 times in the last 10 s)" once the cause repeats.
//!     eprintln!("accept failed: EMFILE{n}");
//! }
//! ```
//!
//! Time is an input, as everywhere outside the shell. Causes are `&'static str`s, so
//! their number is bounded by the code; memory is one small entry per cause.
use std::fmt;
use std::time::Duration;

use crate::clock::Instant;

/// Most causes tracked; past this, further causes share one entry (never reached by
/// the code as written, it keeps the bound independent of callers).
const MAX_CAUSES: usize = 64;

/// A limiter of log lines per cause.
#[derive(Debug)]
pub struct LogLimiter {
    period: Duration,
    causes: Vec<Cause>,
}

#[derive(Debug)]
struct Cause {
    name: &'static str,
    /// When this cause last logged.
    logged: Instant,
    /// Hits since then that did not log.
    suppressed: u64,
}

/// What a logged line should add: how many times the cause happened since the last
/// line, and over how long. Displays as nothing for a first or lone occurrence, else as
/// ` (1,234 times in the last 10 s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hits {
    /// Occurrences since the last line, this one included.
    pub times: u64,
    /// Time since the last line (zero for a first line).
    pub over: Duration,
}

impl fmt::Display for Hits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.times <= 1 {
            return Ok(());
        }
        write!(
            f,
            " ({} times in the last {} s)",
            thousands(self.times),
            self.over.as_secs().max(1)
        )
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl LogLimiter {
    /// At most one line per cause per `period`.
    pub fn new(period: Duration) -> LogLimiter {
        LogLimiter {
            period,
            causes: Vec::new(),
        }
    }

    /// Counts one occurrence of `cause` at `now`. `Some` means "log it now", with what
    /// to append to the line; `None` means it was counted and is to stay quiet.
    pub fn hit(&mut self, now: Instant, cause: &'static str) -> Option<Hits> {
        let at = match self.causes.iter().position(|c| c.name == cause) {
            Some(at) => at,
            None if self.causes.len() < MAX_CAUSES => {
                self.causes.push(Cause {
                    name: cause,
                    logged: now,
                    suppressed: 0,
                });
                return Some(Hits {
                    times: 1,
                    over: Duration::ZERO,
                });
            }
            None => self.causes.len() - 1,
        };
        let c = self.causes.get_mut(at)?;
        let over = now.saturating_duration_since(c.logged);
        if over < self.period {
            c.suppressed += 1;
            return None;
        }
        let times = c.suppressed + 1;
        c.logged = now;
        c.suppressed = 0;
        Some(Hits { times, over })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_period_with_the_count() {
        let mut log = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let first = log.hit(t0, "accept").unwrap();
        assert_eq!(first.to_string(), "");
        for ms in 1..1234 {
            assert_eq!(log.hit(t0 + Duration::from_millis(ms), "accept"), None);
        }
        let next = log.hit(t0 + Duration::from_secs(10), "accept").unwrap();
        assert_eq!(next.times, 1234);
        assert_eq!(next.to_string(), " (1,234 times in the last 10 s)");
        // A lone occurrence much later says nothing more.
        let lone = log.hit(t0 + Duration::from_secs(100), "accept").unwrap();
        assert_eq!((lone.times, lone.to_string()), (1, String::new()));
    }

    #[test]
    fn causes_are_limited_apart() {
        let mut log = LogLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(log.hit(t0, "a").is_some());
        assert!(log.hit(t0, "b").is_some());
        assert!(log.hit(t0, "a").is_none());
        assert!(log.hit(t0, "b").is_none());
        assert!(log.hit(t0 + Duration::from_secs(1), "a").is_some());
        // Time going backwards (a caller's mistake) only keeps it quiet.
        assert!(log.hit(t0, "b").is_none());
    }

    #[test]
    fn memory_is_bounded_by_the_cause_cap() {
        let mut log = LogLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let names: Vec<&'static str> = (0..100)
            .map(|i| &*Box::leak(format!("cause{i}").into_boxed_str()))
            .collect();
        for n in &names {
            log.hit(t0, n);
        }
        assert_eq!(log.causes.len(), MAX_CAUSES);
    }

    #[test]
    fn formats_thousands() {
        for (n, s) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (123_456, "123,456"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), s);
        }
    }
}
