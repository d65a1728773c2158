//! Who gets a TCP connection slot: a per-address cap, and when every slot is taken,
//! which connection makes room for a newcomer, so that a flood of connections from one
//! address cannot push out an established client of another.
//!
//! The rule, for a newcomer from address A that would then hold `w = count(A) + 1`
//! connections:
//! 1. A already holds its cap: one of A's own idle connections (idle longest) makes
//!    room, or the newcomer is turned away.
//! 2. A free slot: taken.
//! 3. All slots taken: the victim comes only from an address holding at least `w`
//!    connections (A counts as `w`), so a newcomer can never displace a smaller
//!    holder. Among those, the largest holder first; then an idle connection (the one
//!    idle longest) before a busy one; a busy one only from an address over its fair
//!    share (slots / addresses) and never one of A's own; among busy ones the newest.
//!    No victim: the newcomer is turned away.
use std::collections::HashMap;

use crate::clock::Instant;

/// What the shell knows of one client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The connection's slot in the shell.
    pub slot: usize,
    /// Its address's [`super::client_key`].
    pub key: u128,
    /// A query in flight or an answer not yet written.
    pub busy: bool,
    pub opened: Instant,
    /// The last complete query or answer.
    pub last_active: Instant,
}

/// The answer to a newcomer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpAdmit {
    Accept,
    /// Close the connection in this slot, then accept.
    Evict(usize),
    /// Turn the newcomer away: its address holds its cap.
    OverCap,
    /// Turn the newcomer away: every slot is held by a busy connection it may not take.
    Full,
}

/// Connections per address, kept as they open and close (one entry per address with
/// a connection, so bounded by the connection cap).
#[derive(Debug, Default)]
pub struct ConnCounts {
    per_key: HashMap<u128, u32>,
    total: usize,
}

impl ConnCounts {
    pub fn opened(&mut self, key: u128) {
        *self.per_key.entry(key).or_insert(0) += 1;
        self.total += 1;
    }

    pub fn closed(&mut self, key: u128) {
        if let Some(n) = self.per_key.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_key.remove(&key);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    pub fn count(&self, key: u128) -> usize {
        self.per_key.get(&key).map_or(0, |&n| n as usize)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Decides on a newcomer from `key` (see the module docs). `conns` is read only
    /// when a victim has to be found.
    pub fn admit(
        &self,
        now: Instant,
        key: u128,
        max_total: usize,
        per_client: usize,
        conns: impl Iterator<Item = ConnInfo>,
    ) -> TcpAdmit {
        let mine = self.count(key);
        if mine >= per_client {
            let own_idle = conns
                .filter(|c| c.key == key && !c.busy)
                .max_by_key(|c| now.nanos_since(c.last_active));
            return own_idle.map_or(TcpAdmit::OverCap, |c| TcpAdmit::Evict(c.slot));
        }
        if self.total < max_total {
            return TcpAdmit::Accept;
        }
        let w = mine + 1;
        let addresses = self.per_key.len() + usize::from(mine == 0);
        let share = (max_total / addresses.max(1)).max(1);
        let victim = conns
            .filter_map(|c| {
                let own = c.key == key;
                let held = if own { w } else { self.count(c.key) };
                let evictable = !c.busy || (!own && held > share);
                (held >= w && evictable).then(|| {
                    // Idle: the longest idle first. Busy: the newest first.
                    let order = if c.busy {
                        u64::MAX - now.nanos_since(c.opened)
                    } else {
                        now.nanos_since(c.last_active)
                    };
                    ((held, !c.busy, order), c.slot)
                })
            })
            .max();
        victim.map_or(TcpAdmit::Full, |(_, slot)| TcpAdmit::Evict(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: u128 = 0xA;
    const B: u128 = 0xB;
    const C: u128 = 0xC;

    struct World {
        t0: Instant,
        conns: Vec<ConnInfo>,
        counts: ConnCounts,
    }

    impl World {
        fn new() -> World {
            World {
                t0: Instant::now(),
                conns: Vec::new(),
                counts: ConnCounts::default(),
            }
        }

        /// A connection opened `at` ms, last active `active` ms, busy or not.
        fn add(&mut self, key: u128, busy: bool, at: u64, active: u64) -> usize {
            let slot = self.conns.len();
            self.conns.push(ConnInfo {
                slot,
                key,
                busy,
                opened: self.t0 + Duration::from_millis(at),
                last_active: self.t0 + Duration::from_millis(active),
            });
            self.counts.opened(key);
            slot
        }

        fn admit(&self, key: u128, max: usize, per: usize) -> TcpAdmit {
            let now = self.t0 + Duration::from_secs(100);
            self.counts
                .admit(now, key, max, per, self.conns.iter().copied())
        }
    }

    #[test]
    fn counts_follow_opens_and_closes() {
        let mut c = ConnCounts::default();
        c.opened(A);
        c.opened(A);
        c.opened(B);
        assert_eq!((c.count(A), c.count(B), c.total()), (2, 1, 3));
        c.closed(A);
        c.closed(B);
        c.closed(B); // not there any more: ignored
        assert_eq!((c.count(A), c.count(B), c.total()), (1, 0, 1));
        assert_eq!(
            c.per_key.len(),
            1,
            "no entry kept for an address without connections"
        );
    }

    #[test]
    fn per_address_cap_evicts_own_idle_or_refuses() {
        let mut w = World::new();
        let old_idle = w.add(A, false, 0, 10);
        w.add(A, false, 0, 50);
        w.add(A, true, 0, 0);
        assert_eq!(w.admit(A, 100, 3), TcpAdmit::Evict(old_idle));
        assert_eq!(w.admit(B, 100, 3), TcpAdmit::Accept);
        let mut busy = World::new();
        for _ in 0..3 {
            busy.add(A, true, 0, 0);
        }
        assert_eq!(busy.admit(A, 100, 3), TcpAdmit::OverCap);
    }

    #[test]
    fn a_flood_of_busy_connections_gives_way_to_another_address() {
        let mut w = World::new();
        for i in 0..10 {
            w.add(A, true, i, i);
        }
        // B is new: A is over its share (10 > 10/2) and gives up its newest busy one.
        assert_eq!(w.admit(B, 10, 100), TcpAdmit::Evict(9));
        // A itself gets nothing: it would only displace its own busy ones.
        assert_eq!(w.admit(A, 10, 100), TcpAdmit::Full);
    }

    #[test]
    fn idle_churn_does_not_evict_an_established_client_of_another_address() {
        let mut w = World::new();
        let legit = w.add(B, false, 0, 0); // idle the longest of all
        for i in 1..10 {
            w.add(A, false, i, i + 10);
        }
        // A's newcomer may only take A's own (oldest idle) connection, never B's.
        assert_eq!(w.admit(A, 10, 100), TcpAdmit::Evict(1));
        // A third address takes from the largest holder (A), not from B.
        assert_eq!(w.admit(C, 10, 100), TcpAdmit::Evict(1));
        assert_ne!(w.admit(C, 10, 100), TcpAdmit::Evict(legit));
    }

    #[test]
    fn idle_before_busy_and_busy_only_over_share() {
        let mut w = World::new();
        for i in 0..5 {
            w.add(A, true, i, i);
        }
        let a_idle = w.add(A, false, 1, 2);
        for i in 0..4 {
            w.add(B, true, i, i);
        }
        // Full at 10: C takes A's idle connection before any busy one.
        assert_eq!(w.admit(C, 10, 100), TcpAdmit::Evict(a_idle));
        // Within their shares and all busy: nothing can be taken.
        let mut fair = World::new();
        for i in 0..5 {
            fair.add(A, true, i, i);
            fair.add(B, true, i, i);
        }
        // Share with C is 10/3 = 3: A and B are both over it; the newest of a largest.
        assert!(matches!(fair.admit(C, 10, 100), TcpAdmit::Evict(_)));
        // Without C (A asks again), A's newcomer would displace only its own: refused.
        assert_eq!(fair.admit(A, 10, 100), TcpAdmit::Full);
        // Likewise B's newcomer cannot take from A (5 < 6).
        assert_eq!(fair.admit(B, 10, 100), TcpAdmit::Full);
    }

    #[test]
    fn oldest_idle_of_the_same_address_goes_first() {
        // The behaviour the connection cap had before: all from one address.
        let mut w = World::new();
        let first = w.add(A, false, 0, 5);
        w.add(A, false, 10, 20);
        assert_eq!(w.admit(A, 2, 16), TcpAdmit::Evict(first));
    }
}
