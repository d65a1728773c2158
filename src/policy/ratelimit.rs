//! Token buckets: the per-client query rate limit, in a table of fixed size, and the
//! one global bucket that paces refusals.
//!
//! A bucket is kept as GCRA state (the "generic cell rate algorithm" of ATM, the form
//! of a token bucket that needs one number): its theoretical arrival time `tat`. A
//! query at `now` conforms if `tat - now` is at most the burst tolerance; it then moves
//! `tat` one interval (1/rate) on from `max(tat, now)`. A `tat` at or before `now` is
//! a full bucket, so an unused slot (tat 0) and a fresh bucket are the same thing.
//!
//! [`RateTable`] holds [`RATE_TABLE_SLOTS`] buckets in a boxed slice allocated once:
//! memory is fixed whatever the number of sources. A client hashes (keyed with a random
//! secret, so that nobody can aim at a set) to a set of [`WAYS`] slots; a client not in
//! its set takes the slot whose `tat` is smallest, i.e. the bucket holding the most
//! tokens. Evicting a full bucket loses nothing, so a flood of random sources (each
//! seen once, each left nearly full) displaces the buckets of busy, limited clients
//! last. A source the table forgot starts again with a full burst; that is the
//! fail-open side of a bounded table, as in BIND's RRL.
//!
//! With `--threads N` the N loops share one table (and one refusal bucket): a loop
//! gets the queries of the names it owns, so a client asking many names reaches every
//! loop, and N tables would give it N times its rate. Each set has its own lock, held
//! for the few instructions of one check; with one loop it is never contended (an
//! uncontended futex lock is two atomic operations, no system call).
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Slots in the per-client table: 16384 × 32 octets, and a lock per set of [`WAYS`]:
/// 576 KiB.
pub const RATE_TABLE_SLOTS: usize = 1 << 14;
/// Slots per set: a new client evicts the fullest bucket among these.
pub const WAYS: usize = 4;
const SETS: usize = RATE_TABLE_SLOTS / WAYS;
const SET_BITS: u32 = SETS.trailing_zeros();

/// Rate and burst of a token bucket, as GCRA parameters in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time one token takes to come back: 1 s / rate.
    interval: u64,
    /// How far `tat` may run ahead of now: (burst - 1) intervals.
    tolerance: u64,
}

impl Gcra {
    /// `rate` per second (at least 1), and up to `burst` at once (at least 1).
    pub fn new(rate: u32, burst: u32) -> Gcra {
        let interval = 1_000_000_000 / u64::from(rate.max(1));
        Gcra {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1)) - 1),
        }
    }

    /// Takes a token from the bucket whose state is `tat`, if there is one. `now` and
    /// `tat` are nanoseconds since the same epoch.
    pub fn take(&self, tat: &mut u64, now: u64) -> bool {
        let t = (*tat).max(now);
        if t - now > self.tolerance {
            return false;
        }
        *tat = t.saturating_add(self.interval);
        true
    }

    /// [`Gcra::take`] on a bucket several threads share.
    pub fn take_shared(&self, tat: &AtomicU64, now: u64) -> bool {
        let mut seen = tat.load(Ordering::Relaxed);
        loop {
            let mut next = seen;
            if !self.take(&mut next, now) {
                return false;
            }
            match tat.compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(current) => seen = current,
            }
        }
    }
}

/// The key a client is limited (and its TCP connections counted) under: an IPv4
/// address (mapped IPv6 sources included) as `::ffff:a.b.c.d`, an IPv6 address by its
/// /64, since one host or site usually holds a whole /64. The two never collide: a /64
/// key has its low 64 bits clear, a mapped one has 0xffff in bits 32..48.
pub fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) => u128::from(m.to_ipv6_mapped()),
            None => u128::from(a) & !u128::from(u64::MAX),
        },
    }
}

/// What to do with a query, by its client's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: hand it to the core.
    Pass,
    /// Over the rate: drop it.
    Drop,
    /// Over the rate, but one in `slip`: answer TC=1 so a real client retries on TCP.
    Slip,
}

/// One bucket: a client key, its GCRA state and its count of queries over the rate.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: u128,
    tat: u64,
    over: u32,
}

/// Per-client buckets in fixed memory, shareable between threads (see the module
/// docs).
pub struct RateTable {
    sets: Box<[Mutex<[Slot; WAYS]>]>,
    gcra: Gcra,
    /// Every `slip`-th query over the rate gets a TC answer. Valid values: 0 (never), 1..
    slip: u32,
    /// Secret of the keyed hash: four odd multipliers.
    secret: [u64; 4],
}

impl RateTable {
    /// A table for `rate` queries per second per client, `burst` at once; `secret`
    /// keys the hash (random in production, fixed in tests).
    pub fn new(rate: u32, burst: u32, slip: u32, secret: [u64; 4]) -> RateTable {
        RateTable {
            sets: (0..SETS)
                .map(|_| Mutex::new([Slot::default(); WAYS]))
                .collect(),
            gcra: Gcra::new(rate, burst),
            slip,
            secret: secret.map(|k| k | 1),
        }
    }

    /// Octets the buckets take; the same from start to end.
    pub fn memory(&self) -> usize {
        std::mem::size_of_val(&*self.sets)
    }

    /// Multiply-shift hashing (Dietzfelbinger) of each half of the key.
    fn set_of(&self, key: u128) -> usize {
        let [a, b, c, d] = self.secret;
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let h = (lo ^ c)
            .wrapping_mul(a)
            .wrapping_add((hi ^ d).wrapping_mul(b));
        (h >> (64 - SET_BITS)) as usize
    }

    /// Counts one query from `key` at `now` (nanoseconds since the caller's epoch).
    pub fn check(&self, key: u128, now: u64) -> Verdict {
        let Some(lock) = self.sets.get(self.set_of(key)) else {
            return Verdict::Pass;
        };
        // A thread that panicked holding the lock left a bucket state, not a broken
        // invariant: carry on with it.
        let mut set = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut found = None;
        let mut fullest = 0;
        let mut least = u64::MAX;
        for (w, s) in set.iter().enumerate() {
            if s.key == key {
                found = Some(w);
                break;
            }
            if s.tat < least {
                (fullest, least) = (w, s.tat);
            }
        }
        let slot = match found.and_then(|w| set.get_mut(w)) {
            Some(s) => s,
            None => match set.get_mut(fullest) {
                Some(s) => {
                    *s = Slot {
                        key,
                        ..Slot::default()
                    };
                    s
                }
                None => return Verdict::Pass,
            },
        };
        if self.gcra.take(&mut slot.tat, now) {
            return Verdict::Pass;
        }
        slot.over = slot.over.wrapping_add(1);
        if self.slip != 0 && slot.over % self.slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn table(rate: u32, burst: u32, slip: u32) -> RateTable {
        RateTable::new(rate, burst, slip, [0x9E37_79B9_7F4A_7C15, 3, 5, 7])
    }

    fn v4(n: u32) -> u128 {
        client_key(IpAddr::V4(n.into()))
    }

    #[test]
    fn gcra_gives_the_burst_then_the_rate() {
        let g = Gcra::new(10, 5);
        let mut tat = 0;
        let t0 = 5 * SEC;
        let burst = (0..100).filter(|_| g.take(&mut tat, t0)).count();
        assert_eq!(burst, 5);
        // Then one token per 100 ms: 10 in the next second, whatever is asked.
        let mut got = 0;
        for ms in 1..=1000u64 {
            if g.take(&mut tat, t0 + ms * 1_000_000) {
                got += 1;
            }
        }
        assert_eq!(got, 10);
        // Idle for a while: the bucket refills to the burst, no more.
        let later = t0 + 60 * SEC;
        assert_eq!((0..100).filter(|_| g.take(&mut tat, later)).count(), 5);
    }

    #[test]
    fn gcra_of_one_allows_no_burst() {
        let g = Gcra::new(1, 1);
        let mut tat = 0;
        assert!(g.take(&mut tat, SEC));
        assert!(!g.take(&mut tat, SEC + 999_999_999));
        assert!(g.take(&mut tat, 2 * SEC));
        // Rate and burst 0 are read as 1, never as a division by zero.
        let z = Gcra::new(0, 0);
        let mut tat = 0;
        assert!(z.take(&mut tat, SEC));
        assert!(!z.take(&mut tat, SEC));
    }

    #[test]
    fn client_keys_group_ipv6_by_64_and_mapped_as_ipv4() {
        let ip = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("192.0.2.1"), ip("::ffff:192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_ne!(ip("::ffff:0:0"), ip("::"));
    }

    #[test]
    fn limits_each_client_alone_and_slips_every_second() {
        let t = table(50, 100, 2);
        let now = 10 * SEC;
        let verdicts: Vec<Verdict> = (0..300).map(|_| t.check(v4(1), now)).collect();
        let pass = verdicts.iter().filter(|v| **v == Verdict::Pass).count();
        let slip = verdicts.iter().filter(|v| **v == Verdict::Slip).count();
        assert_eq!((pass, slip), (100, 100));
        assert_eq!(
            verdicts.get(100..102),
            Some(&[Verdict::Drop, Verdict::Slip][..])
        );
        // Another client is untouched.
        assert_eq!(t.check(v4(2), now), Verdict::Pass);
        // A second later: 50 more tokens for the first.
        let next = now + SEC;
        assert_eq!(
            (0..300)
                .filter(|_| t.check(v4(1), next) == Verdict::Pass)
                .count(),
            50
        );
        let never = table(1, 1, 0);
        let v: Vec<Verdict> = (0..10).map(|_| never.check(v4(1), now)).collect();
        assert!(!v.contains(&Verdict::Slip));
    }

    #[test]
    fn memory_stays_fixed_under_a_million_random_sources() {
        let t = table(50, 100, 2);
        let before = (t.memory(), t.sets.as_ptr());
        // 4 slots of 32 octets and a lock, per set: 144 octets (aligned for the u128).
        assert_eq!(before.0, SETS * 144);
        let hot = v4(0x0A00_0001);
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut hot_pass = 0;
        let mut random_pass = 0;
        let start = 10 * SEC;
        // 1M random spoofed sources over 10 s, and a hot client asking 2000 times a
        // second among them.
        for i in 0..1_000_000u64 {
            let now = start + i * 10_000;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = if rng & 1 == 0 {
                v4(rng as u32 >> 1)
            } else {
                client_key(IpAddr::V6((u128::from(rng) << 64).into()))
            };
            if t.check(key, now) == Verdict::Pass {
                random_pass += 1;
            }
            if i % 50 == 0 && t.check(hot, now) == Verdict::Pass {
                hot_pass += 1;
            }
        }
        assert_eq!((t.memory(), t.sets.as_ptr()), before, "no growth, no move");
        // Random sources are each seen about once: all pass.
        assert!(random_pass > 999_000, "{random_pass}");
        // The hot client keeps its bucket among them: burst + 10 s × 50/s.
        assert!((590..=610).contains(&hot_pass), "hot client got {hot_pass}");
    }

    #[test]
    fn threads_sharing_a_table_share_each_clients_budget() {
        // Four threads (the loops of --threads 4) check the same client at the same
        // instant: the burst is given once in all, not once per thread.
        let t = table(1, 100, 0);
        let g = Gcra::new(1, 50);
        let refusal_tat = AtomicU64::new(0);
        let now = 10 * SEC;
        let (passed, refusals) = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let pass = (0..1000)
                            .filter(|_| t.check(v4(7), now) == Verdict::Pass)
                            .count();
                        let refused = (0..1000)
                            .filter(|_| g.take_shared(&refusal_tat, now))
                            .count();
                        (pass, refused)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap())
                .fold((0, 0), |(a, b), (p, r)| (a + p, b + r))
        });
        assert_eq!(passed, 100);
        assert_eq!(refusals, 50);
    }

    #[test]
    fn a_new_client_evicts_the_fullest_bucket_of_its_set() {
        let t = table(1, 2, 0);
        // Find WAYS + 1 keys in one set.
        let set = t.set_of(v4(0));
        let keys: Vec<u128> = (0..u32::MAX)
            .map(v4)
            .filter(|k| t.set_of(*k) == set)
            .take(WAYS + 1)
            .collect();
        let now = 100 * SEC;
        // The first key is drained (limited); the others have used one token each.
        for _ in 0..5 {
            t.check(keys[0], now);
        }
        for k in &keys[1..WAYS] {
            t.check(*k, now - SEC / 2);
        }
        // A newcomer takes the slot of the fullest bucket (an older one), not the
        // drained one, which stays limited.
        assert_eq!(t.check(keys[WAYS], now), Verdict::Pass);
        assert_eq!(t.check(keys[0], now), Verdict::Drop);
    }
}
