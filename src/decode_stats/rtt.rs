//! Response times: queries matched with their answers, in bounded memory.
//!
//! A query waits in [`Matcher`] under its [`QueryKey`] (transport, client and server
//! addresses and ports, ID, and question) until an answer with the same key arrives, at
//! most [`MATCH_TIMEOUT`] of capture time; then it counts as unanswered and is dropped.
//! At most [`MAX_PENDING`] queries wait: past that, the oldest is counted as unanswered.
//! The times go into a [`Latencies`] histogram: exact below 2.048 ms, then with a
//! relative error of at most 1/2048, so that its memory does not grow with the capture.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use crate::capture::Transport;
use crate::wire::{Class, Name, RType};

/// How long a query waits for its answer, in seconds of capture time. Resolvers give up
/// on an upstream after a few seconds; an answer later than this is not a response time.
pub const MATCH_TIMEOUT: f64 = 10.0;

/// Most queries waiting for an answer at once.
pub const MAX_PENDING: usize = 1 << 18;

/// What a query and its answer have in common.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryKey {
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub id: u16,
    /// The first question (names compared without regard to case); `None` for none.
    pub question: Option<(Name, RType, Class)>,
}

/// How the matching went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchCounts {
    /// Answers matched with a query.
    pub matched: u64,
    /// Queries without an answer within the timeout (or by the end of the capture).
    pub unanswered: u64,
    /// Answers without a waiting query (its query was before the capture, timed out,
    /// or was already answered).
    pub unmatched_answers: u64,
    /// Queries sent again while the same query was waiting; the first one is timed.
    pub retransmitted: u64,
    /// Of the unanswered, those dropped because [`MAX_PENDING`] queries were waiting.
    pub evicted: u64,
}

impl MatchCounts {
    pub fn merge(&mut self, o: &MatchCounts) {
        self.matched += o.matched;
        self.unanswered += o.unanswered;
        self.unmatched_answers += o.unmatched_answers;
        self.retransmitted += o.retransmitted;
        self.evicted += o.evicted;
    }
}

/// Queries waiting for their answers.
#[derive(Debug, Default)]
pub struct Matcher {
    /// Key → (sequence number, time of the query).
    pending: HashMap<QueryKey, (u64, f64)>,
    /// Every query still in `pending` (and some that left it), oldest first.
    order: VecDeque<(u64, f64, QueryKey)>,
    next_seq: u64,
    /// The latest capture time seen: timestamps may go backwards a little.
    latest: f64,
    pub counts: MatchCounts,
}

impl Matcher {
    /// A query seen at `ts` (seconds).
    pub fn query(&mut self, key: QueryKey, ts: f64) {
        self.expire(ts);
        if self.pending.contains_key(&key) {
            self.counts.retransmitted += 1;
            return;
        }
        if self.order.len() >= MAX_PENDING {
            self.drop_oldest(true);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(key.clone(), (seq, ts));
        self.order.push_back((seq, ts, key));
    }

    /// An answer seen at `ts`, keyed as its query; its response time in seconds if a
    /// query was waiting for it.
    pub fn answer(&mut self, key: &QueryKey, ts: f64) -> Option<f64> {
        self.expire(ts);
        match self.pending.remove(key) {
            Some((_, asked)) => {
                self.counts.matched += 1;
                Some((ts - asked).max(0.0))
            }
            None => {
                self.counts.unmatched_answers += 1;
                None
            }
        }
    }

    /// The end of the capture: the queries still waiting were not answered.
    pub fn finish(&mut self) {
        self.counts.unanswered += self.pending.len() as u64;
        self.pending.clear();
        self.order.clear();
    }

    fn expire(&mut self, now: f64) {
        if now > self.latest {
            self.latest = now;
        }
        while let Some(&(_, ts, _)) = self.order.front() {
            if ts + MATCH_TIMEOUT >= self.latest {
                break;
            }
            self.drop_oldest(false);
        }
    }

    /// Drops the oldest entry of `order`, counting its query as unanswered if it was
    /// still waiting.
    fn drop_oldest(&mut self, evicted: bool) {
        let Some((seq, _, key)) = self.order.pop_front() else {
            return;
        };
        if self.pending.get(&key).is_some_and(|&(s, _)| s == seq) {
            self.pending.remove(&key);
            self.counts.unanswered += 1;
            if evicted {
                self.counts.evicted += 1;
            }
        }
    }
}

/// Values below this many microseconds have a bucket each.
const EXACT_BELOW: u64 = 2048;
/// Buckets per power of two above `EXACT_BELOW` (the relative error is at most 1/this/2).
const SUB_BUCKETS: u64 = 1024;

/// A histogram of response times, in microseconds, mergeable and of bounded size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latencies {
    buckets: BTreeMap<u32, u64>,
    count: u64,
    min_us: u64,
    max_us: u64,
}

/// The bucket holding `us`.
fn bucket(us: u64) -> u32 {
    if us < EXACT_BELOW {
        return us as u32;
    }
    let e = u64::from(63 - us.leading_zeros()); // 11 and more
    let m = (us >> (e - 10)) & (SUB_BUCKETS - 1);
    (EXACT_BELOW + (e - 11) * SUB_BUCKETS + m) as u32
}

/// The value a bucket stands for: its middle.
fn bucket_value(b: u32) -> u64 {
    let b = u64::from(b);
    if b < EXACT_BELOW {
        return b;
    }
    let e = (b - EXACT_BELOW) / SUB_BUCKETS + 11;
    let m = (b - EXACT_BELOW) % SUB_BUCKETS;
    let width = 1u64 << (e - 10);
    ((SUB_BUCKETS + m) << (e - 10)) + width / 2
}

impl Latencies {
    /// Adds a time in seconds.
    pub fn add(&mut self, seconds: f64) {
        // Saturating float-to-int conversion; negative times were clamped to 0.
        let us = (seconds * 1e6).round() as u64;
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.count += 1;
        *self.buckets.entry(bucket(us)).or_insert(0) += 1;
    }

    pub fn merge(&mut self, o: &Latencies) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 || o.min_us < self.min_us {
            self.min_us = o.min_us;
        }
        self.max_us = self.max_us.max(o.max_us);
        self.count += o.count;
        for (&b, &n) in &o.buckets {
            *self.buckets.entry(b).or_insert(0) += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest and largest time, in milliseconds.
    pub fn min_max_ms(&self) -> Option<(f64, f64)> {
        (self.count > 0).then(|| (self.min_us as f64 / 1e3, self.max_us as f64 / 1e3))
    }

    /// The `p`-th percentile (0 < p ≤ 100) in milliseconds, by nearest rank: the
    /// smallest time at least `p`% of the times are not above.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0 * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (&b, &n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let us = bucket_value(b).clamp(self.min_us, self.max_us);
                return Some(us as f64 / 1e3);
            }
        }
        Some(self.max_us as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16, id: u16) -> QueryKey {
        QueryKey {
            transport: Transport::Udp,
            client: SocketAddr::from(([192, 0, 2, 1], port)),
            server: SocketAddr::from(([192, 0, 2, 53], 53)),
            id,
            question: Some((
                Name::from_ascii("Example.org.").unwrap(),
                RType::A,
                Class::IN,
            )),
        }
    }

    #[test]
    fn matches_answers_and_counts_the_rest() {
        let mut m = Matcher::default();
        m.query(key(1000, 1), 100.0);
        m.query(key(1000, 1), 100.5); // retransmitted: the first is timed
        m.query(key(1001, 2), 100.0);
        let mut other_case = key(1000, 1);
        other_case.question = Some((
            Name::from_ascii("eXAMPLE.org.").unwrap(),
            RType::A,
            Class::IN,
        ));
        assert_eq!(m.answer(&other_case, 100.25), Some(0.25));
        assert_eq!(m.answer(&key(1000, 1), 100.3), None); // already answered
        assert_eq!(m.answer(&key(1001, 3), 100.3), None); // another ID
        m.query(key(1002, 4), 101.0);
        // 10 s later the queries of 1001 and 1002 are given up: the answer is late.
        m.query(key(1003, 5), 111.5);
        assert_eq!(m.answer(&key(1002, 4), 111.5), None);
        m.finish();
        let c = m.counts;
        assert_eq!(
            c,
            MatchCounts {
                matched: 1,
                unanswered: 3,
                unmatched_answers: 3,
                retransmitted: 1,
                evicted: 0
            }
        );
    }

    #[test]
    fn buckets_keep_times_within_a_fraction_of_a_percent() {
        for us in [
            0, 1, 2047, 2048, 2049, 4095, 4096, 12_345, 999_999, 10_000_000,
        ] {
            let v = bucket_value(bucket(us));
            let err = v.abs_diff(us) as f64 / (us.max(1) as f64);
            assert!(err <= 1.0 / 2048.0, "{us} -> {v}");
        }
        // Buckets are ordered as their values.
        assert!(bucket(2047) < bucket(2048) && bucket(4095) < bucket(4096));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.add(f64::from(ms) / 1e3);
        }
        let near = |got: Option<f64>, want: f64| {
            let got = got.unwrap();
            assert!((got - want).abs() <= want / 2048.0, "{got} != {want}");
        };
        near(l.percentile_ms(50.0), 50.0);
        near(l.percentile_ms(90.0), 90.0);
        near(l.percentile_ms(99.0), 99.0);
        // Exact below 2.048 ms.
        assert_eq!(l.percentile_ms(1.0), Some(1.0));
        assert_eq!(l.percentile_ms(100.0), Some(100.0));
        assert_eq!(l.min_max_ms(), Some((1.0, 100.0)));
        let mut total = Latencies::default();
        total.merge(&l);
        total.merge(&l);
        assert_eq!(total.count(), 200);
        near(total.percentile_ms(50.0), 50.0);
        near(total.percentile_ms(51.0), 51.0);
    }
}
