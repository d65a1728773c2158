//! The pending table: queries sent upstream and waiting for an answer, keyed by the
//! transaction ID we gave them.
//!
//! Entries live in a slab whose slots (and their query buffers) are reused, with a
//! 65536-entry index from transaction ID to slot, so lookups are one array access and
//! a busy forwarder does not allocate per query. Deadlines sit in a min-heap; an entry
//! that was answered or re-sent leaves a stale heap item behind, recognised by its
//! attempt number.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Instant;

use super::IdSource;

/// Who asked: where the answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// A datagram from `addr` on client listener number `listener`.
    Udp { listener: usize, addr: SocketAddr },
    /// A TCP connection (the shell's connection number) from `addr`.
    Tcp { conn: usize, addr: SocketAddr },
    /// Nobody: a refresh of a cache entry before it expires.
    Prefetch,
}

impl Client {
    pub fn is_udp(&self) -> bool {
        matches!(self, Client::Udp { .. })
    }
}

/// How the current attempt went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Over UDP, on upstream socket `socket` of the chosen upstream.
    Udp { socket: usize },
    /// Over a TCP connection of its own (after a truncated UDP answer).
    Tcp,
}

/// One query in flight.
#[derive(Debug)]
pub struct Pending {
    pub client: Client,
    /// The client's own ID, restored on the answer. Never sent upstream.
    pub client_id: u16,
    /// The query as sent upstream (our transaction ID in its first two octets).
    pub query: Vec<u8>,
    /// Largest answer the client can take (its UDP size, or 65535 over TCP).
    pub max_response: usize,
    /// The whole query fails with SERVFAIL at this instant (`--deadline`).
    pub deadline: Instant,
    /// When the current attempt went out (for the upstream's RTT).
    pub sent_at: Instant,
    /// Attempt number, unique across the whole table (the table sets it on insert and
    /// on every re-send), so a timer left by an earlier query in the same slot, or by an
    /// earlier attempt, never matches.
    pub attempt: u64,
    /// Index of the upstream the current attempt went to.
    pub upstream: usize,
    pub via: Via,
    /// Upstreams tried so far, one bit each (index < 64).
    pub tried: u64,
    /// Set when this is one question of a split multi-question query.
    pub group: Option<usize>,
    /// Clients that asked the same question while this one was in flight.
    pub waiters: Vec<Waiter>,
    /// The hash this query is registered under for coalescing, if it is.
    pub inflight: Option<u64>,
    /// When its client gets a stale answer if the upstream has not answered (RFC 8767).
    pub stale_at: Option<Instant>,
}

/// A client waiting on another client's query (coalescing).
#[derive(Debug)]
pub struct Waiter {
    pub client: Client,
    /// Its own query, which shapes its answer (ID, spelling, RD, EDNS).
    pub query: Vec<u8>,
    pub max_response: usize,
}

/// A slot's key: its index and the ID it is registered under.
pub type Slot = usize;

/// The table. Valid values: every `Some` slot is indexed under exactly one ID.
pub struct PendingTable {
    slots: Vec<Option<Pending>>,
    /// Spare query buffers, kept for reuse.
    spare: Vec<Vec<u8>>,
    free: Vec<Slot>,
    /// `by_id[txid]` = slot + 1, or 0.
    by_id: Box<[u32]>,
    timers: BinaryHeap<Reverse<(Instant, Slot, u64)>>,
    /// The last attempt number handed out.
    attempts: u64,
    capacity: usize,
    len: usize,
}

impl PendingTable {
    /// A table holding at most `capacity` queries (clamped to 1..=60000 so that a free ID
    /// is always quick to find).
    pub fn new(capacity: usize) -> PendingTable {
        PendingTable {
            slots: Vec::new(),
            spare: Vec::new(),
            free: Vec::new(),
            by_id: vec![0u32; 65536].into_boxed_slice(),
            timers: BinaryHeap::new(),
            attempts: 0,
            capacity: capacity.clamp(1, 60000),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// A buffer for a new query (recycled when possible).
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }

    /// Gives a buffer back for reuse.
    pub fn recycle(&mut self, b: Vec<u8>) {
        if self.spare.len() < 1024 {
            self.spare.push(b);
        }
    }

    /// A random transaction ID that no pending query uses.
    pub fn fresh_id(&self, rng: &mut dyn IdSource) -> u16 {
        // At most 60000 of 65536 IDs are taken, so each draw succeeds with p > 8%; the
        // bound only guards against a broken generator.
        for _ in 0..512 {
            let id = rng.next_u16();
            if self.by_id.get(usize::from(id)) == Some(&0) {
                return id;
            }
        }
        (0..=u16::MAX)
            .find(|&id| self.by_id.get(usize::from(id)) == Some(&0))
            .unwrap_or(0)
    }

    /// Inserts `p` under `id` (from [`fresh_id`](Self::fresh_id)) with a timer at `timer`.
    pub fn insert(&mut self, id: u16, mut p: Pending, timer: Instant) -> Slot {
        self.attempts += 1;
        let attempt = self.attempts;
        p.attempt = attempt;
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(entry) = self.slots.get_mut(s) {
                    *entry = Some(p);
                }
                s
            }
            None => {
                self.slots.push(Some(p));
                self.slots.len() - 1
            }
        };
        if let Some(ix) = self.by_id.get_mut(usize::from(id)) {
            *ix = slot as u32 + 1;
        }
        self.timers.push(Reverse((timer, slot, attempt)));
        self.len += 1;
        slot
    }

    /// The slot registered under `id`.
    pub fn slot_of(&self, id: u16) -> Option<Slot> {
        match self.by_id.get(usize::from(id)).copied() {
            Some(0) | None => None,
            Some(n) => Some(n as usize - 1),
        }
    }

    pub fn get(&self, slot: Slot) -> Option<&Pending> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Pending> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// Moves the entry to a new ID and arms a new timer under a new attempt number (a
    /// re-send). The caller has rewritten the ID in the query.
    pub fn rekey(&mut self, slot: Slot, old_id: u16, new_id: u16, timer: Instant) {
        if let Some(ix) = self.by_id.get_mut(usize::from(old_id)) {
            *ix = 0;
        }
        if let Some(ix) = self.by_id.get_mut(usize::from(new_id)) {
            *ix = slot as u32 + 1;
        }
        self.attempts += 1;
        let attempt = self.attempts;
        if let Some(p) = self.get_mut(slot) {
            p.attempt = attempt;
            self.timers.push(Reverse((timer, slot, attempt)));
        }
        self.compact_timers();
    }

    /// Drops stale timers once they outnumber the live ones by far, so that a storm of
    /// re-sends cannot grow the heap without bound.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 4 * self.len + 1024 {
            return;
        }
        let slots = &self.slots;
        self.timers.retain(|Reverse((_, slot, attempt))| {
            slots
                .get(*slot)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.attempt == *attempt)
        });
    }

    /// Removes and returns the entry; its ID becomes free.
    pub fn remove(&mut self, slot: Slot) -> Option<Pending> {
        let p = self.slots.get_mut(slot)?.take()?;
        let id = current_id(&p);
        if let Some(ix) = self.by_id.get_mut(usize::from(id)) {
            if *ix == slot as u32 + 1 {
                *ix = 0;
            }
        }
        self.free.push(slot);
        self.len -= 1;
        Some(p)
    }

    /// The earliest armed timer that is still live.
    pub fn next_timer(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, slot, attempt))) = self.timers.peek().copied() {
            if self.get(slot).is_some_and(|p| p.attempt == attempt) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Pops one live timer that has expired at `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Slot> {
        let at = self.next_timer()?;
        if at > now {
            return None;
        }
        self.timers.pop().map(|Reverse((_, slot, _))| slot)
    }

    /// Slots of every entry (for shutdown and for failing a socket's queries).
    pub fn slots(&self) -> impl Iterator<Item = (Slot, &Pending)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(s, p)| p.as_ref().map(|p| (s, p)))
    }
}

/// The transaction ID a pending query is registered under: the one in its query bytes.
pub fn current_id(p: &Pending) -> u16 {
    match p.query.get(..2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::SeededRandom;

    fn entry(now: Instant) -> Pending {
        Pending {
            client: Client::Udp {
                listener: 0,
                addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            },
            client_id: 1,
            query: vec![0, 0],
            max_response: 512,
            deadline: now,
            sent_at: now,
            attempt: 0,
            upstream: 0,
            via: Via::Udp { socket: 0 },
            tried: 1,
            group: None,
            waiters: Vec::new(),
            inflight: None,
            stale_at: None,
        }
    }

    #[test]
    fn stale_timers_do_not_pile_up() {
        let now = Instant::now();
        let mut t = PendingTable::new(10);
        let mut rng = SeededRandom::new(1);
        let mut id = t.fresh_id(&mut rng);
        let mut p = entry(now);
        p.query = id.to_be_bytes().to_vec();
        let slot = t.insert(id, p, now);
        for n in 1..=10_000u64 {
            let new = t.fresh_id(&mut rng);
            let p = t.get_mut(slot).unwrap();
            p.query = new.to_be_bytes().to_vec();
            t.rekey(slot, id, new, now + std::time::Duration::from_millis(n));
            id = new;
        }
        assert!(t.timers.len() <= 1024 + 4 + 1, "{} timers", t.timers.len());
        assert_eq!(t.slot_of(id), Some(slot));
        // Only the live timer fires.
        assert_eq!(
            t.pop_expired(now + std::time::Duration::from_secs(60)),
            Some(slot)
        );
        assert_eq!(
            t.pop_expired(now + std::time::Duration::from_secs(60)),
            None
        );
    }

    #[test]
    fn a_finished_querys_timer_does_not_fire_for_the_next_in_its_slot() {
        let now = Instant::now();
        let mut t = PendingTable::new(10);
        let mut p = entry(now);
        p.query = 1u16.to_be_bytes().to_vec();
        let first = t.insert(1, p, now + std::time::Duration::from_secs(1));
        t.remove(first);
        let mut p = entry(now);
        p.query = 2u16.to_be_bytes().to_vec();
        let second = t.insert(2, p, now + std::time::Duration::from_secs(3));
        assert_eq!(first, second, "the slot is reused");
        assert_eq!(t.pop_expired(now + std::time::Duration::from_secs(2)), None);
        assert_eq!(
            t.next_timer(),
            Some(now + std::time::Duration::from_secs(3))
        );
    }

    #[test]
    fn ids_are_freed_on_remove() {
        let now = Instant::now();
        let mut t = PendingTable::new(2);
        let mut p = entry(now);
        p.query = 7u16.to_be_bytes().to_vec();
        let slot = t.insert(7, p, now);
        assert!(!t.is_full());
        assert_eq!(t.slot_of(7), Some(slot));
        assert!(t.remove(slot).is_some());
        assert_eq!(t.slot_of(7), None);
        assert_eq!(t.len(), 0);
        assert!(t.remove(slot).is_none());
    }
}
