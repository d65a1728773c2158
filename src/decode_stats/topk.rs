//! The most frequent keys of a stream in bounded memory.
//!
//! Counting is exact until [`TopCounter`] holds `cap` distinct keys. From then on it is
//! the Space-Saving algorithm (Metwally, Agrawal, El Abbadi, "Efficient computation of
//! frequent and top-k elements in data streams", 2005): a key not held takes the place of
//! the key with the smallest count and inherits that count plus one, remembered as its
//! possible overcount (`error`). Every key seen more than `total / cap` times is then
//! held, and no held count is more than `error` above the truth.
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// A key's count, and how much of it may belong to keys it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub count: u64,
    /// 0 while counting is exact.
    pub error: u64,
}

/// Counts of keys, exact up to `cap` distinct keys, then Space-Saving.
#[derive(Debug)]
pub struct TopCounter<K> {
    /// Key → its slot in `slots`.
    index: HashMap<K, usize>,
    slots: Vec<(K, Counted)>,
    /// (count, slot), smallest first; kept only once the counter is full.
    by_count: BTreeSet<(u64, usize)>,
    /// Valid values: 1 and more.
    cap: usize,
    /// Keys counted in all, with repeats.
    total: u64,
}

impl<K: Hash + Eq + Clone> TopCounter<K> {
    /// A counter holding at most `cap` keys (at least 1).
    pub fn new(cap: usize) -> Self {
        TopCounter {
            index: HashMap::new(),
            slots: Vec::new(),
            by_count: BTreeSet::new(),
            cap: cap.max(1),
            total: 0,
        }
    }

    /// True while every count is exact (fewer than `cap` distinct keys were ever seen).
    pub fn is_exact(&self) -> bool {
        self.by_count.is_empty()
    }

    /// Counts one more `key`.
    pub fn add(&mut self, key: K) {
        self.add_counted(key, Counted { count: 1, error: 0 });
    }

    /// Counts `key` `c.count` more times, of which up to `c.error` may be other keys'
    /// (weighted Space-Saving: how another counter's entries are merged in).
    pub fn add_counted(&mut self, key: K, c: Counted) {
        self.total = self.total.saturating_add(c.count);
        if let Some(&at) = self.index.get(&key) {
            self.bump(at, c);
        } else if self.slots.len() < self.cap {
            self.index.insert(key.clone(), self.slots.len());
            self.slots.push((key, c));
            if self.slots.len() == self.cap {
                // Full: from now on the smallest count must be found quickly.
                self.by_count = (0..self.slots.len())
                    .filter_map(|i| self.slots.get(i).map(|s| (s.1.count, i)))
                    .collect();
            }
        } else {
            self.replace_smallest(key, c);
        }
    }

    /// Adds every key of `other` with its count and possible overcount.
    pub fn merge(&mut self, other: &TopCounter<K>) {
        for (k, c) in &other.slots {
            self.add_counted(k.clone(), *c);
        }
        // The counts held always add up to the total (a replaced key's count is
        // inherited), so the total grows by exactly `other.total`.
    }

    fn bump(&mut self, at: usize, c: Counted) {
        let Some(slot) = self.slots.get_mut(at) else {
            return;
        };
        let old = slot.1.count;
        slot.1.count = old.saturating_add(c.count);
        slot.1.error = slot.1.error.saturating_add(c.error);
        if !self.by_count.is_empty() {
            self.by_count.remove(&(old, at));
            self.by_count.insert((slot.1.count, at));
        }
    }

    fn replace_smallest(&mut self, key: K, c: Counted) {
        let Some((min, at)) = self.by_count.pop_first() else {
            return;
        };
        let Some(slot) = self.slots.get_mut(at) else {
            return;
        };
        self.index.remove(&slot.0);
        self.index.insert(key.clone(), at);
        let counted = Counted {
            count: min.saturating_add(c.count),
            error: min.saturating_add(c.error),
        };
        *slot = (key, counted);
        self.by_count.insert((counted.count, at));
    }

    /// The `n` keys with the highest counts, highest first; ties in the order of
    /// `order(key)`.
    pub fn top<O: Ord>(&self, n: usize, order: impl Fn(&K) -> O) -> Vec<(K, Counted)> {
        let mut all: Vec<(O, &(K, Counted))> =
            self.slots.iter().map(|s| (order(&s.0), s)).collect();
        all.sort_by(|a, b| b.1 .1.count.cmp(&a.1 .1.count).then_with(|| a.0.cmp(&b.0)));
        all.into_iter().take(n).map(|(_, s)| s.clone()).collect()
    }

    /// Keys counted, with repeats.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Distinct keys held (all distinct keys seen while exact).
    pub fn distinct(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exactly_below_the_cap() {
        let mut t = TopCounter::new(10);
        for k in [3, 1, 3, 2, 3, 1] {
            t.add(k);
        }
        assert!(t.is_exact());
        let top = t.top(2, |k| *k);
        assert_eq!(top[0], (3, Counted { count: 3, error: 0 }));
        assert_eq!(top[1], (1, Counted { count: 2, error: 0 }));
        assert_eq!(t.total(), 6);
        assert_eq!(t.distinct(), 3);
    }

    #[test]
    fn keeps_the_heavy_keys_past_the_cap() {
        // 1000 one-off keys interleaved with three heavy ones, in a counter of 16.
        let mut t = TopCounter::new(16);
        for i in 0..1000u32 {
            t.add(10_000 + i);
            if i % 2 == 0 {
                t.add(1);
            }
            if i % 3 == 0 {
                t.add(2);
            }
            if i % 4 == 0 {
                t.add(3);
            }
        }
        assert!(!t.is_exact());
        let top = t.top(3, |k| *k);
        let keys: Vec<u32> = top.iter().map(|e| e.0).collect();
        assert_eq!(keys, vec![1, 2, 3]);
        // Never an undercount, and the overcount is bounded by the error.
        for (k, c) in top {
            let truth = match k {
                1 => 500,
                2 => 334,
                _ => 250,
            };
            assert!(c.count >= truth && c.count - c.error <= truth, "{k}: {c:?}");
        }
        assert_eq!(t.distinct(), 16);
    }
}
