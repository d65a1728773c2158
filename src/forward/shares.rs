//! Fair shares of the pending table: one client (an IPv4 address, or an IPv6 /64) can
//! hold at most `per_client` queries in flight, and when the table is full a client
//! with fewer queries in flight than the heaviest one takes the heaviest one's oldest
//! slot (its waiters get SERVFAIL). So a flood of never-answered names from one source
//! costs that source its own queries, not everybody's.
//!
//! Neither rule can bind while the table holds fewer queries than one share (a client
//! would need `per_client` in flight) and is not full, so below half of that bound no
//! query is counted: no keyed hash, no map update per query on a lightly loaded
//! forwarder. Crossing it, the counts are rebuilt from the queries in flight, oldest
//! first ([`Shares::start_counting`]), which is exactly what counting all along would
//! have left; they are dropped again once the table is nearly empty.
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::time::Duration;

use super::pending::Slot;
use crate::clock::Instant;

/// A query in flight as a share sees it: its slot and the serial it was started under
/// (slots are reused).
pub type Started = (Slot, u64);

#[derive(Debug, Default)]
struct Owner {
    in_flight: u32,
    /// Idle (nothing in flight) and counted in `Shares::idle`.
    kept: bool,
    /// Its queries, oldest first; finished ones are skipped lazily.
    started: VecDeque<Started>,
}

/// What to do with a new query of a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, once this query of the heaviest client is ended to make room.
    Evict(Started),
    /// No room for this client: it holds its share, or the table is full and it holds
    /// as many as anybody.
    No,
}

/// Clients with nothing in flight whose entry (and its queue's memory) is kept for their
/// next query, at least: a client asking one name at a time would otherwise cost a map
/// insertion, a removal and an allocation a query. Past this many (or half the map),
/// the idle ones are swept at once (amortised O(1) a query).
const IDLE_KEPT: usize = 256;

/// How often the heaviest client may be looked for by a full scan.
const RESCAN_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Shares {
    /// By the keyed hash of the client (see [`Shares::client`]): hashed once a query.
    owners: HashMap<u64, Owner, BuildHasherDefault<super::Prehashed>>,
    hasher: crate::cache::Keyed,
    per_client: u32,
    /// The client with the most queries in flight, as last seen (kept cheaply: updated
    /// when a client passes it, rescanned at most every `RESCAN_EVERY`).
    heaviest: Option<u64>,
    rescanned: Option<Instant>,
    /// Entries of `owners` with nothing in flight.
    idle: usize,
    /// Queries are being counted; when not, `owners` is empty (as the forwarder drives it).
    counting: bool,
}

impl Shares {
    pub fn new(per_client: usize) -> Shares {
        Shares {
            owners: HashMap::default(),
            hasher: crate::cache::Keyed::random(),
            per_client: u32::try_from(per_client.max(1)).unwrap_or(u32::MAX),
            heaviest: None,
            rescanned: None,
            idle: 0,
            counting: false,
        }
    }

    /// Whether queries are counted now (see the module docs).
    pub fn counting(&self) -> bool {
        self.counting
    }

    /// Whether counting must start before a query is admitted, with `in_flight`
    /// queries in a table of `capacity`: at half the fewest in flight at which a rule
    /// could bind (a whole share, or a full table).
    pub fn must_start(&self, in_flight: usize, capacity: usize) -> bool {
        !self.counting && in_flight >= self.bound(capacity) / 2
    }

    fn bound(&self, capacity: usize) -> usize {
        usize::try_from(self.per_client)
            .unwrap_or(usize::MAX)
            .min(capacity)
    }

    /// Starts counting with the queries in flight: `live` holds each one's client
    /// (its key from [`Shares::client`]) and how it was started, in any order.
    pub fn start_counting(&mut self, mut live: Vec<(u64, Started)>) {
        self.owners.clear();
        self.idle = 0;
        live.sort_unstable_by_key(|&(_, (_, serial))| serial);
        for (who, s) in live {
            let o = self.owners.entry(who).or_default();
            o.in_flight += 1;
            o.started.push_back(s);
        }
        self.heaviest = self
            .owners
            .iter()
            .max_by_key(|(_, o)| o.in_flight)
            .map(|(&k, _)| k);
        self.counting = true;
    }

    /// Stops counting once the table holds few queries (`in_flight`, of `capacity`):
    /// an eighth of the bound, far enough below where counting starts that the rebuild
    /// is paid at most once per several hundred queries.
    pub fn stop_if_quiet(&mut self, in_flight: usize, capacity: usize) {
        if self.counting && in_flight < self.bound(capacity) / 8 {
            self.owners.clear();
            self.idle = 0;
            self.heaviest = None;
            self.counting = false;
        }
    }

    /// A new share (a reload); queries in flight keep counting.
    pub fn set_per_client(&mut self, per_client: usize) {
        self.per_client = u32::try_from(per_client.max(1)).unwrap_or(u32::MAX);
    }

    /// The key a client (an address, IPv6 by /64) is counted under: a keyed hash, so
    /// spoofed sources cannot aim at one bucket of the map.
    pub fn client(&self, addr: u128) -> u64 {
        self.hasher.hash(&addr.to_le_bytes())
    }

    fn in_flight(&self, who: u64) -> u32 {
        self.owners.get(&who).map_or(0, |o| o.in_flight)
    }

    /// Whether `who` may start a query now; `table_full`: no free slot. `live` says
    /// whether a started query is still in flight.
    pub fn admit(
        &mut self,
        now: Instant,
        who: u64,
        table_full: bool,
        live: impl Fn(Started) -> bool,
    ) -> Admit {
        let mine = self.in_flight(who);
        if mine >= self.per_client {
            return Admit::No;
        }
        if !table_full {
            return Admit::Yes;
        }
        let heavy = |s: &Shares| s.heaviest.map_or(0, |h| s.in_flight(h));
        if heavy(self) <= mine + 1
            && self
                .rescanned
                .is_none_or(|t| now.saturating_duration_since(t) >= RESCAN_EVERY)
        {
            self.rescanned = Some(now);
            self.heaviest = self
                .owners
                .iter()
                .max_by_key(|(_, o)| o.in_flight)
                .map(|(&k, _)| k);
        }
        if heavy(self) <= mine + 1 {
            return Admit::No;
        }
        let Some(victim) = self.heaviest.and_then(|h| self.owners.get_mut(&h)) else {
            return Admit::No;
        };
        while let Some(s) = victim.started.pop_front() {
            if live(s) {
                return Admit::Evict(s);
            }
        }
        Admit::No
    }

    /// `who` started the query `s`.
    pub fn started(&mut self, who: u64, s: Started, live: impl Fn(Started) -> bool) {
        let o = self.owners.entry(who).or_default();
        if o.in_flight == 0 && o.kept {
            self.idle -= 1;
            o.kept = false;
        }
        o.in_flight += 1;
        o.started.push_back(s);
        // Finished queries are dropped from the front as they go; a long-lived one at
        // the front keeps the rest, so trim the whole queue once it is far too long.
        while o.started.front().is_some_and(|&f| !live(f)) {
            o.started.pop_front();
        }
        if o.started.len() > 4 * o.in_flight as usize + 64 {
            o.started.retain(|&f| live(f));
        }
        let n = o.in_flight;
        if self
            .heaviest
            .is_none_or(|h| h != who && self.in_flight(h) < n)
        {
            self.heaviest = Some(who);
        }
    }

    /// Gives back the memory of an emptied map: idle entries go.
    pub fn shrink(&mut self) {
        self.sweep();
        self.owners.shrink_to(2 * self.owners.len());
    }

    /// Drops the entries of clients with nothing in flight.
    fn sweep(&mut self) {
        self.owners.retain(|_, o| o.in_flight > 0);
        self.idle = 0;
    }

    /// A query of `who` ended.
    pub fn finished(&mut self, who: u64) {
        // Unknown, or idle already (nothing to end): nothing to count.
        let Some(o) = self.owners.get_mut(&who).filter(|o| o.in_flight > 0) else {
            return;
        };
        o.in_flight -= 1;
        if o.in_flight > 0 {
            return;
        }
        // Kept for its next query (its queue's memory too), until too many are idle.
        o.started.clear();
        o.kept = true;
        self.idle += 1;
        if self.heaviest == Some(who) {
            self.heaviest = None;
        }
        if self.idle > IDLE_KEPT.max(self.owners.len() / 2) {
            self.sweep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_and_the_heaviest_gives_way_when_full() {
        let now = Instant::now();
        let mut s = Shares::new(3);
        let all_live = |_: Started| true;
        for n in 0..3 {
            assert_eq!(s.admit(now, 1, false, all_live), Admit::Yes);
            s.started(1, (n, n as u64), all_live);
        }
        assert_eq!(s.admit(now, 1, false, all_live), Admit::No, "its share");
        // Table full: client 2 (none in flight) takes client 1's oldest.
        assert_eq!(s.admit(now, 2, true, all_live), Admit::Evict((0, 0)));
        s.finished(1);
        s.started(2, (0, 10), all_live);
        // Client 2 (1 in flight) against client 1 (2): not heavier by more than one.
        assert_eq!(s.admit(now, 2, true, all_live), Admit::No);
        s.finished(1);
        s.finished(1);
        s.finished(2);
        assert!(s
            .owners
            .values()
            .all(|o| o.in_flight == 0 && o.started.is_empty()));
        s.shrink();
        assert!(
            s.owners.is_empty(),
            "nothing kept for clients with nothing in flight after a shrink"
        );
    }

    #[test]
    fn idle_clients_are_kept_only_up_to_a_bound() {
        let live = |_: Started| true;
        let mut s = Shares::new(10);
        // One busy client throughout, and 10,000 clients passing through one query each.
        s.started(u64::MAX, (0, 0), live);
        for n in 0..10_000u64 {
            s.started(n, (1, n + 1), live);
            s.finished(n);
            assert!(
                s.owners.len() <= IDLE_KEPT + 2,
                "{} entries",
                s.owners.len()
            );
        }
        assert_eq!(s.in_flight(u64::MAX), 1);
        // A client that comes back after going idle counts from zero again.
        s.started(9_999, (2, 20_000), live);
        assert_eq!(s.in_flight(9_999), 1);
        s.finished(9_999);
        assert_eq!(s.in_flight(9_999), 0);
        assert_eq!(
            s.idle,
            s.owners.values().filter(|o| o.in_flight == 0).count()
        );
    }

    #[test]
    fn finished_queries_are_skipped_and_queues_stay_bounded() {
        let now = Instant::now();
        let mut s = Shares::new(1000);
        // Serial 0 lives forever; everything after it finishes at once.
        for n in 0..10_000u64 {
            s.started(7, (n as usize, n), |(_, serial)| serial == 0 || serial == n);
            if n > 0 {
                s.finished(7);
            }
        }
        let o = &s.owners[&7];
        assert_eq!(o.in_flight, 1);
        assert!(o.started.len() <= 4 + 64 + 1, "{}", o.started.len());
        let live = |(_, serial): Started| serial == 0;
        s.started(8, (1, 20_000), live);
        assert_eq!(
            s.admit(now, 9, true, live),
            Admit::No,
            "1 vs 0: not heavier by 2"
        );
    }

    #[test]
    fn counting_starts_from_the_queries_in_flight_oldest_first_and_stops_when_quiet() {
        let now = Instant::now();
        let all_live = |_: Started| true;
        let mut s = Shares::new(16);
        // Half a share (or half the table, if smaller) in flight: time to count.
        assert!(!s.must_start(7, 1000));
        assert!(s.must_start(8, 1000));
        assert!(s.must_start(2, 4), "a table of 4 binds first");
        // Uncounted in flight: client 1's serials 5 and 3, client 2's serial 4.
        s.start_counting(vec![(1, (0, 5)), (2, (1, 4)), (1, (2, 3))]);
        assert!(s.counting());
        assert!(!s.must_start(100, 1000), "once");
        assert_eq!((s.in_flight(1), s.in_flight(2)), (2, 1));
        // Table full: client 3 takes client 1's oldest query (serial 3, slot 2).
        assert_eq!(s.admit(now, 3, true, all_live), Admit::Evict((2, 3)));
        s.finished(1);
        s.stop_if_quiet(2, 1000);
        assert!(s.counting(), "2 in flight: not below an eighth of 16");
        s.stop_if_quiet(1, 1000);
        assert!(!s.counting());
        assert!(s.owners.is_empty() && s.heaviest.is_none());
    }
}
