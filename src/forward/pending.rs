//! The pending table: one entry per question in flight upstream, keyed by the
//! transaction IDs of its attempts.
//!
//! Entries live in a slab whose slots are reused, with a 65536-entry index from
//! transaction ID to slot ([`by_id`]), so lookups are one array access and a busy
//! forwarder does not allocate per query. Every attempt of a query (a re-send after a
//! timeout, the TCP re-fetch of a truncated answer) has its own ID, and all of them stay
//! registered until the query is done: an upstream slower than `--timeout` still
//! answers it. Each attempt arms a timer ([`timer_table`]); an entry that was answered or
//! re-sent leaves a stale timer behind, recognised by its attempt number.
use super::key::{Key, Spelling};
use crate::clock::Instant;

/// Most attempts of one query whose answers are still accepted; a further attempt
/// retires the oldest one's ID.
pub const MAX_ATTEMPTS: usize = 3;

mod by_id;
mod fresh;
mod parts;
mod timer_table;

use by_id::{index, unindex};
use timer_table::TimerTable;

pub use fresh::Fresh;
pub use parts::{Attempt, Attempts, Client, Via, Waiter};

/// One question in flight.
#[derive(Debug)]
pub struct Pending {
    pub key: Key,
    /// The hash of the question (key without its flags) this query is registered under
    /// in the in-flight index, if it is.
    pub inflight: Option<u64>,
    /// The next query in flight under the same question hash (other flags, or a
    /// collision): the index keeps a short chain per hash.
    pub next_inflight: Option<Slot>,
    /// The name as sent upstream (random letter case); answers must repeat it exactly.
    pub spelling: Spelling,
    /// Live attempts, oldest first; the last is the current one.
    pub attempts: Attempts,
    /// The whole query fails at this instant (`--deadline`).
    pub deadline: Instant,
    /// Timer generation, unique across the whole table (the table sets it on insert and
    /// on every re-send), so a timer left by an earlier query in the same slot, or by an
    /// earlier attempt, never matches.
    pub attempt: u64,
    /// Upstreams tried so far, one bit each (index < 64).
    pub tried: u64,
    /// The clients to answer (none for a prefetch, or once all were answered stale).
    pub waiters: Vec<Waiter>,
    /// When the waiters get a stale answer if the upstream has not answered (RFC 8767).
    pub stale_at: Option<Instant>,
    /// Answers for this question that failed a check (wrong ID, port or case).
    pub near_misses: u32,
    /// Bits a blind forger must guess for a UDP answer (see `ForwarderConfig`).
    pub guess_bits: u32,
    /// Ended to make room for another client's query (fair shares).
    pub evicted: bool,
    /// The client it counts against for fair shares (`policy::client_key`); `None`
    /// for a prefetch, or with fair shares off.
    pub owner: Option<u128>,
    /// Its client's key in the fair shares' counts, if it is counted there (see
    /// `shares`: queries are counted only while the table is busy).
    pub share: Option<u64>,
    /// Unique per query started (slots are reused).
    pub serial: u64,
    /// An attempt failed at once (ICMP unreachable, TCP refused or reset): if the query
    /// fails, the reason is the network (EDE 23), not silence (EDE 22).
    pub network_error: bool,
    /// Set after a near miss: no UDP answer is accepted any more; the query goes on
    /// over TCP, which an off-path forger cannot reach.
    pub udp_closed: bool,
}

impl Pending {
    pub fn current(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// The current attempt's upstream.
    pub fn upstream(&self) -> usize {
        self.current().map_or(0, |a| a.upstream)
    }
}

/// A slot's key: its index in the slab.
pub type Slot = usize;

/// A slot of the table. A free slot keeps its last entry (not live, never handed out;
/// its waiter list emptied), for the next query to be written over in place.
struct Entry {
    live: bool,
    p: Pending,
}

/// The table. Valid values: every live attempt's ID is indexed to its slot, and no
/// other ID is.
pub struct PendingTable {
    slots: Vec<Entry>,
    /// Spare buffers, kept for reuse.
    spare: Vec<Vec<u8>>,
    free: Vec<Slot>,
    /// `by_id[txid]` = slot + 1, or 0.
    by_id: Box<[u32]>,
    /// One timer per attempt sent, live or stale.
    timers: TimerTable,
    /// The last attempt number handed out.
    attempts: u64,
    capacity: usize,
    len: usize,
}

impl PendingTable {
    /// A table holding at most `capacity` queries (clamped to 1..=20000 so that, with
    /// every query at its most attempts, 5536 IDs stay free and one is quick to find).
    /// Memory grows with use (about 1 KiB a query in flight, buffers included) and goes
    /// back with [`shrink`](Self::shrink).
    pub fn new(capacity: usize) -> PendingTable {
        PendingTable {
            slots: Vec::new(),
            spare: Vec::new(),
            free: Vec::new(),
            by_id: vec![0u32; 65536].into_boxed_slice(),
            timers: TimerTable::default(),
            attempts: 0,
            capacity: capacity.clamp(1, MAX_PENDING),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated (in use or free): the high-water mark since the last shrink.
    pub fn slab_len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Most queries it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A buffer (recycled when possible).
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }

    /// Gives a buffer back for reuse.
    pub fn recycle(&mut self, b: Vec<u8>) {
        if self.spare.len() < 1024 && b.capacity() <= 4096 {
            self.spare.push(b);
        }
    }

    /// Inserts `p` (whose attempts have IDs from [`fresh_id`](Self::fresh_id)) with a
    /// timer at `timer`.
    #[cfg(test)]
    pub fn insert(&mut self, p: Pending, timer: Instant) -> Slot {
        let slot = self.insert_with(timer, |slot| *slot = p);
        if let Some(e) = self.slots.get(slot) {
            for a in e.p.attempts.iter() {
                index(&mut self.by_id, a.id, slot);
            }
        }
        slot
    }

    /// Inserts the new query `f` for `key` (its first attempt's ID from
    /// [`fresh_id`](Self::fresh_id)) with a timer at `timer`, written into its slot in
    /// place.
    pub fn insert_new(&mut self, key: &Key, f: Fresh, timer: Instant) -> Slot {
        // Its one attempt is indexed from `f` (a walk of the entry's attempts would
        // look at all `MAX_ATTEMPTS` places for it).
        let id = f.first.id;
        let slot = self.insert_with(timer, |p| p.renew(key, f));
        index(&mut self.by_id, id, slot);
        slot
    }

    /// Takes a free slot (or a new one), has `fill` write the entry there, and arms its
    /// timer; the caller indexes its attempts' IDs.
    #[inline]
    fn insert_with(&mut self, timer: Instant, fill: impl FnOnce(&mut Pending)) -> Slot {
        let slot = match self.free.pop() {
            Some(s) if s < self.slots.len() => s,
            _ => {
                self.slots.push(Entry {
                    live: false,
                    p: Pending::vacant(timer),
                });
                self.slots.len() - 1
            }
        };
        self.attempts += 1;
        let attempt = self.attempts;
        let Some(e) = self.slots.get_mut(slot) else {
            return slot; // just taken or pushed: there
        };
        fill(&mut e.p);
        e.p.attempt = attempt;
        e.live = true;
        self.timers.arm((timer, slot, attempt));
        self.len += 1;
        slot
    }

    pub fn get(&self, slot: Slot) -> Option<&Pending> {
        self.slots.get(slot).filter(|e| e.live).map(|e| &e.p)
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Pending> {
        self.slots
            .get_mut(slot)
            .filter(|e| e.live)
            .map(|e| &mut e.p)
    }

    /// Adds an attempt (a re-send, with an ID from `fresh_id`) and arms its timer under
    /// a new attempt number. Earlier attempts stay valid, except the oldest once there
    /// are `MAX_ATTEMPTS`, which is returned (its ID is no longer indexed).
    pub fn add_attempt(&mut self, slot: Slot, a: Attempt, timer: Instant) -> Option<Attempt> {
        let p = self
            .slots
            .get_mut(slot)
            .filter(|e| e.live)
            .map(|e| &mut e.p)?;
        let retired = p.attempts.push(a);
        self.attempts += 1;
        p.attempt = self.attempts;
        let attempt = self.attempts;
        self.timers.arm((timer, slot, attempt));
        if let Some(old) = retired {
            self.unindex(old.id, slot);
        }
        self.index(a.id, slot);
        self.compact_timers();
        retired
    }

    /// Removes and returns the entry; the IDs of all its attempts become free (the
    /// forwarder uses [`discard_with`](Self::discard_with), which does not move it out).
    #[cfg(test)]
    pub fn remove(&mut self, slot: Slot) -> Option<Pending> {
        let e = self.slots.get_mut(slot).filter(|e| e.live)?;
        e.live = false;
        let vacant = Pending::vacant(e.p.deadline);
        let p = std::mem::replace(&mut e.p, vacant);
        for a in p.attempts.iter() {
            self.unindex(a.id, slot);
        }
        self.free.push(slot);
        self.len -= 1;
        Some(p)
    }

    /// [`discard_with`](Self::discard_with), calling back on nothing.
    #[cfg(test)]
    pub fn discard(&mut self, slot: Slot) -> bool {
        self.discard_with(slot, |_| {})
    }

    /// Removes the entry in place (not moved out: the next query in its slot writes
    /// over it); the IDs of all its attempts become free, and `freed` is called on each
    /// as it does (the forwarder stamps them there: one walk of the attempts, not two).
    /// Returns whether there was one.
    #[inline]
    pub fn discard_with(&mut self, slot: Slot, mut freed: impl FnMut(u16)) -> bool {
        let Some(e) = self.slots.get_mut(slot).filter(|e| e.live) else {
            return false;
        };
        e.live = false;
        // The rest stays for the next query in this slot to write over.
        drop(std::mem::take(&mut e.p.waiters));
        for a in e.p.attempts.iter() {
            unindex(&mut self.by_id, a.id, slot);
            freed(a.id);
        }
        self.free.push(slot);
        self.len -= 1;
        true
    }

    /// Gives memory back once the table has emptied out after a burst (an attack, or a
    /// dead upstream): free slots at the end of the slab go, spare buffers beyond a few
    /// go, and the timer heap drops its stale items. Slots in use keep their indices.
    /// Returns whether it gave anything back.
    pub fn shrink(&mut self) -> bool {
        let keep = self
            .slots
            .iter()
            .rposition(|e| e.live)
            .map_or(0, |last| last + 1);
        if self.slots.capacity() <= 2 * keep + 256 {
            return false;
        }
        self.slots.truncate(keep);
        self.slots.shrink_to(2 * keep);
        self.free.retain(|&s| s < keep);
        self.free.shrink_to(2 * keep);
        self.spare.truncate(64);
        self.spare.shrink_to_fit();
        self.retain_live_timers();
        self.timers.shrink_to(2 * self.len + 64);
        true
    }

    /// Slots of every entry (for shutdown and for failing a socket's queries).
    pub fn slots(&self) -> impl Iterator<Item = (Slot, &Pending)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(s, e)| (s, &e.p))
    }

    /// [`slots`](Self::slots), to change the entries.
    pub fn slots_mut(&mut self) -> impl Iterator<Item = (Slot, &mut Pending)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(s, e)| (s, &mut e.p))
    }
}

/// Most queries in flight at once (see [`PendingTable::new`]).
pub const MAX_PENDING: usize = 20_000;

#[cfg(test)]
mod tests;
