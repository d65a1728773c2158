//! Upstream choice: prefer the one that answered fastest lately, skip the ones that
//! keep failing, and probe those again after a back-off (as Unbound's infra cache and
//! dnsmasq's server selection do, much simplified).
use std::net::SocketAddr;
use std::time::Duration;

use crate::clock::Instant;

/// Consecutive failures after which an upstream is set aside.
const DOWN_AFTER: u32 = 3;
/// First back-off before a set-aside upstream is tried again; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Answers with our ID but without our letter case, in a row and with none right, after
/// which an upstream is taken not to echo case and is sent names as they are (0x20 off).
const CASE_FAILURES_TO_GIVE_UP: u32 = 5;
/// Near misses (answers for a question in flight that fail the ID, port or case check)
/// counted per window; past `UNDER_ATTACK_AFTER` in one window the upstream is taken to
/// be under a spoofing attack and every query to it goes over TCP for `TCP_ONLY_FOR`
/// (Unbound's unwanted-reply-threshold, PowerDNS's spoof-nearmiss-max).
const NEAR_MISS_WINDOW: Duration = Duration::from_secs(10);
const UNDER_ATTACK_AFTER: u32 = 10;
const TCP_ONLY_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Upstream {
    addr: SocketAddr,
    /// Smoothed RTT in microseconds; 0 until the first answer (so untried ones go first).
    srtt_us: u64,
    failures: u32,
    /// While set and in the future, the upstream is only used when nothing else is left.
    down_until: Option<Instant>,
    /// Sent names in random letter case (until it shows it does not echo them).
    mix_case: bool,
    /// Answers in a row with our ID but not our case.
    case_failures: u32,
    /// An answer has come back with our case.
    case_echoed: bool,
    /// Near misses in the window that started at `window_start`.
    near_misses: u32,
    window_start: Option<Instant>,
    /// Queries go over TCP until then (spoofing seen).
    tcp_until: Option<Instant>,
    /// Near misses not yet reported in the log (reported at most once a window).
    unlogged: u64,
    logged_at: Option<Instant>,
    /// Failures not yet reported in the log, and when the last report was.
    fail_unlogged: u64,
    fail_logged_at: Option<Instant>,
    /// Removed by a reload: never picked again; its slot (and its index in attempts
    /// in flight) stays until the shell sees it drained (see `reconfigure.rs`).
    retired: bool,
    /// Reached over a stream only (DNS over TLS): no UDP, no 0x20.
    stream_only: bool,
}

/// The upstreams and what we know of each. Valid values: at most 64 upstreams (the
/// pending table tracks the ones tried in a 64-bit mask).
#[derive(Debug, Clone)]
pub struct Upstreams {
    list: Vec<Upstream>,
}

impl Upstreams {
    pub fn new(addrs: &[SocketAddr]) -> Upstreams {
        let list = addrs.iter().take(64).map(|&a| Upstream::fresh(a)).collect();
        Upstreams { list }
    }
}

impl Upstream {
    fn fresh(addr: SocketAddr) -> Upstream {
        Upstream {
            addr,
            srtt_us: 0,
            failures: 0,
            down_until: None,
            mix_case: true,
            case_failures: 0,
            case_echoed: false,
            near_misses: 0,
            window_start: None,
            tcp_until: None,
            unlogged: 0,
            logged_at: None,
            fail_unlogged: 0,
            fail_logged_at: None,
            retired: false,
            stream_only: false,
        }
    }
}

impl Upstreams {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether upstream `i` is at `addr` (compared in place: no copy of the address).
    pub fn is_addr(&self, i: usize, addr: &SocketAddr) -> bool {
        self.list.get(i).is_some_and(|u| u.addr == *addr)
    }

    /// The upstream for the next attempt of a query that already tried the ones in
    /// `tried` (bit i = upstream i). A set-aside upstream whose back-off is over gets
    /// exactly one query as a probe (and is held back for `hold` while it is out), so a
    /// recovered upstream wins its traffic back without every client paying for a dead
    /// one. Otherwise: the fastest untried one that is up; else the untried one due
    /// back soonest; once all were tried, the fastest that is up.
    #[cfg(test)]
    pub fn pick(&mut self, now: Instant, tried: u64, hold: Duration) -> usize {
        self.pick_in(now, tried, u64::MAX, hold)
    }

    /// [`pick`](Self::pick) among the upstreams in `allowed` (a zone's route) only.
    #[inline]
    pub fn pick_in(&mut self, now: Instant, tried: u64, allowed: u64, hold: Duration) -> usize {
        let tried = tried | !allowed;
        if let [only] = self.list.as_mut_slice() {
            // One upstream (a common setup): it is the choice whatever its state (as
            // `choose` falls back to 0); only a probe's hold is to be set. Inlined into
            // the caller, apart from the choice among several.
            if due(now, tried, 0, only) {
                only.down_until = Some(now + hold);
            }
            return 0;
        }
        self.pick_among(now, tried, allowed, hold)
    }

    /// [`pick_in`](Self::pick_in) with more than one upstream (`tried` includes those
    /// outside `allowed`).
    #[inline(never)]
    fn pick_among(&mut self, now: Instant, tried: u64, allowed: u64, hold: Duration) -> usize {
        let probe = self
            .list
            .iter_mut()
            .enumerate()
            .find(|(i, u)| due(now, tried, *i, u));
        if let Some((i, u)) = probe {
            u.down_until = Some(now + hold);
            return i;
        }
        self.choose(now, tried, allowed)
    }

    fn choose(&self, now: Instant, tried: u64, allowed: u64) -> usize {
        let is_up = |u: &Upstream| u.down_until.is_none_or(|t| t <= now);
        let untried = |i: &usize| tried & (1u64 << i) == 0;
        let allowed = |i: &usize| allowed & (1u64 << i) != 0;
        let by_rtt = |(i, u): (usize, &Upstream)| (u.srtt_us, i);
        // Retired upstreams (removed by a reload) and those outside the zone's route
        // are never chosen.
        let live = || {
            self.list
                .iter()
                .enumerate()
                .filter(|(i, u)| !u.retired && allowed(i))
        };
        let fastest = |only_untried: bool| {
            live()
                .filter(|(i, u)| is_up(u) && (!only_untried || untried(i)))
                .min_by_key(|&p| by_rtt(p))
                .map(|(i, _)| i)
        };
        fastest(true)
            .or_else(|| {
                live()
                    .filter(|(i, _)| untried(i))
                    .min_by_key(|(_, u)| u.down_until)
                    .map(|(i, _)| i)
            })
            .or_else(|| fastest(false))
            .or_else(|| live().min_by_key(|(_, u)| u.down_until).map(|(i, _)| i))
            .unwrap_or(0)
    }

    /// An answer came back after `rtt_us` microseconds (capped at `u32::MAX`).
    pub fn success(&mut self, i: usize, rtt_us: u64) {
        if let Some(u) = self.list.get_mut(i) {
            let rtt = rtt_us.min(u64::from(u32::MAX));
            // After failures the smoothed value holds penalties, not measurements: start
            // again from this answer.
            u.srtt_us = if u.srtt_us == 0 || u.failures > 0 {
                rtt.max(1)
            } else {
                (u.srtt_us * 7 + rtt) / 8
            };
            u.failures = 0;
            u.down_until = None;
        }
    }

    /// Marks the upstreams at `addrs` as reached over a stream only (TLS).
    pub fn stream_only(mut self, addrs: &[SocketAddr]) -> Upstreams {
        self.set_stream_only(addrs);
        self
    }

    /// Marks the upstreams at `addrs`, and only those, as reached over a stream only.
    pub fn set_stream_only(&mut self, addrs: &[SocketAddr]) {
        for u in &mut self.list {
            u.stream_only = addrs.contains(&u.addr);
        }
    }

    /// Whether names sent to upstream `i` get random letter case (never over TLS: the
    /// case protects UDP answers, and an upstream need not echo it).
    pub fn mixes_case(&self, i: usize) -> bool {
        self.list
            .get(i)
            .is_some_and(|u| u.mix_case && !u.stream_only)
    }

    /// An answer with our ID came back with our letter case.
    pub fn case_echoed(&mut self, i: usize) {
        if let Some(u) = self.list.get_mut(i) {
            u.case_echoed = true;
            u.case_failures = 0;
        }
    }

    /// An answer with our ID came back without our letter case. After a few in a row
    /// from an upstream that never echoed it, names go to it as they are.
    pub fn case_lost(&mut self, i: usize) {
        if let Some(u) = self.list.get_mut(i) {
            u.case_failures = u.case_failures.saturating_add(1);
            if u.mix_case && !u.case_echoed && u.case_failures >= CASE_FAILURES_TO_GIVE_UP {
                u.mix_case = false;
                log::warn!(
                    "upstream {} does not echo the letter case of questions: random case \
                     (0x20) is off for it; its answers are checked by ID and port, and any \
                     mismatch moves the query to TCP",
                    u.addr
                );
            }
        }
    }

    /// Whether queries to upstream `i` must go over TCP at `now` (spoofing seen).
    pub fn tcp_only(&self, i: usize, now: Instant) -> bool {
        self.list
            .get(i)
            .is_some_and(|u| u.stream_only || u.tcp_until.is_some_and(|t| now < t))
    }

    /// An answer for a question in flight to upstream `i` failed a check. Past a
    /// threshold in a window, the upstream goes TCP-only for a while; logged at most
    /// once a window, with the count.
    pub fn near_miss(&mut self, i: usize, now: Instant) {
        let Some(u) = self.list.get_mut(i) else {
            return;
        };
        if u.window_start
            .is_none_or(|t| now.saturating_duration_since(t) >= NEAR_MISS_WINDOW)
        {
            u.window_start = Some(now);
            u.near_misses = 0;
        }
        u.near_misses = u.near_misses.saturating_add(1);
        u.unlogged += 1;
        if u.near_misses >= UNDER_ATTACK_AFTER {
            u.tcp_until = Some(now + TCP_ONLY_FOR);
        }
        let due = u
            .logged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= NEAR_MISS_WINDOW);
        if due {
            let tcp = if u.tcp_until.is_some_and(|t| now < t) {
                "; queries to it go over TCP for 60 s"
            } else {
                ""
            };
            log::warn!(
                "upstream {}: {} answers failed the ID/port/case check for a question in \
                 flight in the last {} s (possible spoofing){tcp}",
                u.addr,
                u.unlogged,
                NEAR_MISS_WINDOW.as_secs()
            );
            u.unlogged = 0;
            u.logged_at = Some(now);
        }
    }

    /// An attempt timed out or was refused.
    pub fn failure(&mut self, i: usize, now: Instant, timeout: Duration) {
        if let Some(u) = self.list.get_mut(i) {
            u.failures = u.failures.saturating_add(1);
            let penalty = timeout.as_micros().min(u128::from(u32::MAX)) as u64;
            u.srtt_us = u.srtt_us.max(1).saturating_add(penalty / 2);
            if u.failures >= DOWN_AFTER {
                let doublings = (u.failures - DOWN_AFTER).min(5);
                let backoff = (FIRST_BACKOFF * (1 << doublings)).min(MAX_BACKOFF);
                u.down_until = Some(now + backoff);
                // At most one line per window however many queries time out.
                u.fail_unlogged += 1;
                let due = u
                    .fail_logged_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= NEAR_MISS_WINDOW);
                if due {
                    log::warn!(
                        "upstream {}: {} failed attempts ({} in a row); set aside for {:?}",
                        u.addr,
                        u.fail_unlogged,
                        u.failures,
                        backoff
                    );
                    u.fail_unlogged = 0;
                    u.fail_logged_at = Some(now);
                }
            }
        }
    }
}

/// Whether upstream `i` (`u`) is due a probe at `now`: live, not in `tried`, down, and
/// past its hold.
fn due(now: Instant, tried: u64, i: usize, u: &Upstream) -> bool {
    !u.retired
        && tried & (1u64 << i) == 0
        && u.failures >= DOWN_AFTER
        && u.down_until.is_some_and(|t| t <= now)
}

/// Changing the list at run time (a reload): upstreams keep their index while queries
/// in flight may refer to it. See `reconfigure.rs`.
impl Upstreams {
    /// Bit i set for every upstream that may be picked.
    pub fn live_mask(&self) -> u64 {
        self.list
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, u)| !u.retired)
            .fold(0, |m, (i, _)| m | 1u64 << i)
    }

    pub fn is_live(&self, i: usize) -> bool {
        self.list.get(i).is_some_and(|u| !u.retired)
    }

    /// Index `i` is picked no more (`false`), or again (`true`, keeping what was learnt).
    pub fn set_live(&mut self, i: usize, live: bool) {
        if let Some(u) = self.list.get_mut(i) {
            u.retired = !live;
        }
    }

    /// A new upstream at index `i` (a drained one's, or one past the end); `false` if
    /// that would make more than 64.
    pub fn put(&mut self, i: usize, addr: SocketAddr) -> bool {
        let len = self.list.len();
        match self.list.get_mut(i) {
            Some(u) => *u = Upstream::fresh(addr),
            None if i == len && i < 64 => self.list.push(Upstream::fresh(addr)),
            None => return false,
        }
        true
    }

    /// Every index and address, the retired ones included.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.list.iter().map(|u| u.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(1);

    fn three() -> Upstreams {
        let a: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        Upstreams::new(&a)
    }

    #[test]
    fn tries_untried_first_then_prefers_fastest() {
        let now = Instant::now();
        let mut u = three();
        assert_eq!(u.pick(now, 0, HOLD), 0);
        u.success(0, 30_000);
        assert_eq!(u.pick(now, 0, HOLD), 1, "untried upstreams get a turn");
        u.success(1, 5_000);
        u.success(2, 50_000);
        assert_eq!(u.pick(now, 0, HOLD), 1);
        assert_eq!(u.pick(now, 0b010, HOLD), 0, "next fastest when 1 was tried");
        assert_eq!(u.pick(now, 0b111, HOLD), 1, "all tried: fastest again");
    }

    #[test]
    fn picks_only_among_the_allowed() {
        let now = Instant::now();
        let mut u = three();
        u.success(0, 1_000);
        assert_eq!(u.pick_in(now, 0, 0b110, HOLD), 1);
        assert_eq!(u.pick_in(now, 0b010, 0b110, HOLD), 2);
        for _ in 0..DOWN_AFTER {
            u.failure(1, now, Duration::from_secs(1));
            u.failure(2, now, Duration::from_secs(1));
        }
        let p = u.pick_in(now, 0b110, 0b110, HOLD);
        assert!(
            p == 1 || p == 2,
            "all allowed tried and down: still one of them, not {p}"
        );
    }

    #[test]
    fn sets_aside_a_failing_upstream_and_probes_it_later() {
        let now = Instant::now();
        let mut u = three();
        for n in 0..3 {
            u.success(n, (10 + n as u64) * 1000);
        }
        for _ in 0..DOWN_AFTER {
            u.failure(0, now, Duration::from_secs(1));
        }
        assert_eq!(u.pick(now, 0, HOLD), 1);
        assert_eq!(
            u.pick(now, 0b110, HOLD),
            0,
            "a down upstream is still used when nothing else is left"
        );
        let later = now + FIRST_BACKOFF + Duration::from_millis(1);
        // Back-off over: exactly one query probes it, even though 1 is faster now.
        assert_eq!(u.pick(later, 0, HOLD), 0, "the probe");
        assert_eq!(
            u.pick(later, 0, HOLD),
            1,
            "held back while the probe is out"
        );
        // The probe answers fast: its RTT starts again from the measurement.
        u.success(0, 1_000);
        assert_eq!(u.list[0].failures, 0);
        assert_eq!(u.pick(later, 0, HOLD), 0, "recovered and fastest again");
    }
}
