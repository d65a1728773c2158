//! Where the entries live and which one goes when room is needed: S3-FIFO (Yang et al.,
//! "FIFO queues are all you need for cache eviction", SOSP 2023).
//!
//! A new entry joins the small FIFO, a tenth of the room. Asked for again before it
//! reaches the end, it moves to the main FIFO; if not, it is evicted and its hash goes
//! to the ghost table, so that asked for again soon it is admitted straight to main. At
//! the end of main, an entry asked for since it last got there goes round again with its
//! count lowered by one; one that was not is evicted. Names asked for once — a scan, a
//! random-subdomain flood, a run of large answers — thus pass through the small queue
//! and cannot flush the main one. A hit only raises a 2-bit count: no list is touched,
//! nothing is allocated. Eviction is amortised O(1): each hit pays for at most one turn.
//!
//! An entry expired past the serve-stale window is evicted when reached, whatever its
//! count. Both bounds (entries, octets) hold after every insertion; every entry is
//! charged its node, index slot and octets (`Stored::size`: its block, or its own
//! allocation), the slab its pages as allocated, and the ghost its fixed size.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::elapsed_secs;
use super::entry::{key_of, Entry, Place, Stored};
use super::ghost::Ghost;
use super::slab::Slab;
use crate::clock::Instant;

mod queues;

/// Which FIFO an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    Small,
    Main,
}

/// Highest access count: two bits, as in the paper.
const MAX_FREQ: u8 = 3;
/// The small queue's share of each bound: one tenth.
const SMALL_SHARE: usize = 10;
/// The ghost remembers as many keys as the main queue holds entries of this size (at
/// most the entry bound): the paper sizes it as main.
const TYPICAL_ENTRY: usize = 256;
/// The index's cost per entry: a (u64, u32) bucket of 16 octets and one control octet,
/// in a table between 7/16 and 7/8 full (hashbrown), so at most 39.
const INDEX_BYTES: usize = 40;
/// What an entry costs besides its octets.
pub(super) const PER_ENTRY: usize = std::mem::size_of::<Node>() + INDEX_BYTES;

const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Node {
    entry: Option<Stored>,
    /// The octets of an entry too long for a block (`Place::Heap`); else empty.
    heap: Box<[u8]>,
    /// The hash the entry is indexed under (so that evicting it hashes nothing).
    hash: u64,
    /// Neighbours in its queue towards the head (newer) and the tail (older); NIL at the
    /// ends. A free node's `older` is the next free node.
    newer: u32,
    older: u32,
}

/// One FIFO: a doubly linked list through `Store::nodes`, with its totals.
#[derive(Debug, Clone, Copy)]
struct Fifo {
    head: u32,
    tail: u32,
    len: usize,
    bytes: usize,
}

impl Fifo {
    const EMPTY: Fifo = Fifo {
        head: NIL,
        tail: NIL,
        len: 0,
        bytes: 0,
    };
}

impl Stored {
    /// Counts a hit: all a hit does to the eviction state.
    pub(super) fn asked(&mut self) {
        self.freq = (self.freq + 1).min(MAX_FREQ);
    }
}

/// The index's keys are already keyed SipHash values: hashing them again is wasted time.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The hash of a key from its question's hash and its flags octet. The question's hash
/// is keyed, so these are as unpredictable; keys that differ only in flags get different
/// hashes (an odd multiplier is a bijection).
pub fn key_hash(question_hash: u64, flags: u8) -> u64 {
    question_hash ^ (u64::from(flags) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The entries. Valid values: each entry is in `index` under the hash of its key and in
/// the queue its `queue` names exactly once; the queues' totals add up to `len` and
/// `bytes`; after an insertion `len ≤ max_entries` and `bytes ≤ max_bytes`.
pub(super) struct Store {
    hasher: super::Keyed,
    index: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    nodes: Vec<Node>,
    /// The octets of entries that fit in a block.
    slab: Slab,
    /// First free node, or NIL.
    free: u32,
    small: Fifo,
    main: Fifo,
    ghost: Ghost,
    max_entries: usize,
    /// The octet budget less the ghost's table.
    max_bytes: usize,
    /// The most one entry may be charged (its `Stored::size`): bigger ones are refused.
    max_entry: usize,
    /// Seconds past expiry an entry may still be served (0 without serve-stale).
    stale_window: u32,
    len: usize,
    /// Octets of nodes, index slots and entries' own allocations (the slab's are its own).
    bytes: usize,
    /// Entries evicted to make room.
    pub(super) evictions: u64,
}

impl Store {
    /// A store of at most `max_entries` entries and `max_bytes` octets, none of them
    /// charged (`Stored::size`) more than `max_entry`.
    pub(super) fn new(
        max_entries: usize,
        max_bytes: usize,
        max_entry: usize,
        stale_window: u32,
    ) -> Store {
        let ghost = Ghost::new(max_entries.min(max_bytes / TYPICAL_ENTRY) / SMALL_SHARE * 9);
        // The index and the nodes sized at the start for as many entries as the bounds
        // allow, so that they never grow while the cache fills (cachegrind: growing them
        // cost a cold cache ~100 instructions a miss). Only what is written is resident:
        // the index's control octets (one a slot), and the nodes as they are used.
        // One more than the bound: an insertion takes its node before it evicts.
        let most = max_entries.min(max_bytes / (PER_ENTRY + super::slab::GRAIN)) + 1;
        Store {
            hasher: super::Keyed::random(),
            index: HashMap::with_capacity_and_hasher(most, Default::default()),
            nodes: Vec::with_capacity(most),
            slab: Slab::new(max_bytes),
            free: NIL,
            small: Fifo::EMPTY,
            main: Fifo::EMPTY,
            max_entries,
            max_bytes: max_bytes.saturating_sub(ghost.bytes()),
            max_entry,
            ghost,
            stale_window,
            len: 0,
            bytes: 0,
            evictions: 0,
        }
    }

    /// The hash `key` is indexed under: its question's keyed hash (what the forwarder
    /// indexes its queries in flight by, so one hash a query serves both) with the
    /// flags octet folded in ([`key_hash`]).
    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        match key.split_last() {
            Some((&flags, question)) => key_hash(self.question_hash(question), flags),
            None => self.question_hash(key),
        }
    }

    /// The keyed hash (SipHash, random key per process) of a question: name, type, class.
    pub(super) fn question_hash(&self, question: &[u8]) -> u64 {
        self.hasher.hash(question)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Octets held: the entries and the ghost table.
    pub(super) fn bytes(&self) -> usize {
        self.held() + self.ghost.bytes()
    }

    /// Octets held by entries: nodes, index slots, blocks' pages, own allocations.
    fn held(&self) -> usize {
        self.bytes + self.slab.held()
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        self.find_hashed(key, self.hash(key))
    }

    /// [`find`](Self::find) with the key's hash already known.
    fn find_hashed(&self, key: &[u8], hash: u64) -> Option<u32> {
        let i = *self.index.get(&hash)?;
        let node = self.nodes.get(i as usize)?;
        let e = node.entry.as_ref()?;
        (key_of(e, octets(&self.slab, node, e)) == key).then_some(i)
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&Stored> {
        let i = self.find(key)?;
        self.nodes.get(i as usize)?.entry.as_ref()
    }

    /// The entry under `key`, whose hash is `hash` (from [`hash`](Self::hash)), looked
    /// up at `now`. The hit path: one probe, and the octets and the age found once.
    #[inline]
    pub(super) fn get_mut(&mut self, key: &[u8], hash: u64, now: Instant) -> Option<Entry<'_>> {
        let i = *self.index.get(&hash)?;
        let Node { entry, heap, .. } = self.nodes.get_mut(i as usize)?;
        let stored = entry.as_mut()?;
        let octets = match stored.place {
            Place::Block(b) => self.slab.get(b, stored.len())?,
            Place::Heap => heap.get(..stored.len())?,
        };
        if key_of(stored, octets) != key {
            return None;
        }
        Some(Entry {
            age: elapsed_secs(stored.stored, now),
            meta: stored,
            octets,
            looked_up: now,
        })
    }

    /// Stores an entry (replacing one under the same key, which keeps its queue and
    /// count), evicting what must go; false if it cannot fit or is charged more than
    /// `max_entry`. `entry` says what it is (its `place` is chosen here), `fill` writes
    /// its answer and TTL table into the octets after the key (`entry.len()` in all; the
    /// key is written here). `hash` is the key's, from [`hash`](Self::hash).
    pub(super) fn insert(
        &mut self,
        key: &[u8],
        mut entry: Stored,
        hash: u64,
        now: Instant,
        fill: impl Fn(&mut [u8]),
    ) -> bool {
        let len = entry.len();
        // The class is found once; what the entry is charged follows from it.
        let class = Slab::class_of(len);
        let charge = match class {
            Some(c) => Slab::block_bytes(c),
            None => super::entry::heap_bytes(len),
        };
        if charge + PER_ENTRY > self.max_entry {
            return false;
        }
        // The node is taken and indexed first, so that the index is probed once: an entry
        // already under this hash comes back from the insertion. Until the entry is in
        // place the node is in no queue (nor written), so the evictions below cannot
        // reach it.
        let Some(i) = self.alloc() else {
            return false;
        };
        if let Some(old) = self.index.insert(hash, i) {
            let same = self.nodes.get(old as usize).is_some_and(|n| {
                n.entry
                    .as_ref()
                    .is_some_and(|e| key_of(e, octets(&self.slab, n, e)) == key)
            });
            match self.remove(old) {
                Some(e) if same => (entry.queue, entry.freq) = (e.queue, e.freq),
                _ => {}
            }
        } else if self.ghost.take(hash) {
            entry.queue = Queue::Main;
        }
        // What the entry adds: its node and index slot, and a page if its class has no
        // room (else its block costs nothing more), or its own allocation.
        let extra = PER_ENTRY
            + match class {
                Some(c) => self.slab.cost(c),
                None => charge,
            };
        if (self.len >= self.max_entries || self.held() + extra > self.max_bytes)
            && !self.make_room(class, len, now)
        {
            self.unindex(hash, i);
            self.release(i);
            return false;
        }
        let write = |out: &mut [u8]| {
            if let Some((k, rest)) = out.split_at_mut_checked(key.len()) {
                k.copy_from_slice(key);
                fill(rest);
            }
        };
        let block = class.and_then(|c| self.slab.take(c, i, len, write));
        let heap = match block {
            Some(b) => {
                entry.place = Place::Block(b);
                Box::default()
            }
            None => {
                entry.place = Place::Heap;
                self.bytes += super::entry::heap_bytes(len);
                let mut own = vec![0; len].into_boxed_slice();
                write(&mut own);
                own
            }
        };
        // The node written once, already linked at the head of its queue; built where it
        // goes (a free node, or a new one) rather than moved there.
        let (queue, size) = (entry.queue, entry.size());
        let head = self.fifo(queue).head;
        let node = move || Node {
            entry: Some(entry),
            heap,
            hash,
            newer: NIL,
            older: head,
        };
        match self.nodes.get_mut(i as usize) {
            Some(n) => *n = node(),
            None => self.nodes.push(node()),
        }
        self.became_head(i, queue, size);
        self.len += 1;
        self.bytes += PER_ENTRY;
        true
    }

    /// A node for an entry: a free one (taken off the free list), or the next new one
    /// (pushed when its entry is in place). Its contents are not touched.
    fn alloc(&mut self) -> Option<u32> {
        if let Some(n) = self.nodes.get(self.free as usize) {
            let i = self.free;
            self.free = n.older;
            return Some(i);
        }
        u32::try_from(self.nodes.len()).ok().filter(|&i| i != NIL)
    }

    /// Takes `hash` out of the index if it names node `i` (one probe).
    fn unindex(&mut self, hash: u64, i: u32) {
        if let std::collections::hash_map::Entry::Occupied(o) = self.index.entry(hash) {
            if *o.get() == i {
                o.remove();
            }
        }
    }

    /// Gives back node `i`, taken by [`alloc`](Self::alloc) and holding no entry (a new
    /// one, never pushed, needs nothing).
    fn release(&mut self, i: u32) {
        let free = self.free;
        if let Some(n) = self.nodes.get_mut(i as usize) {
            (n.newer, n.older) = (NIL, free);
            self.free = i;
        }
    }

    /// Removes the entry in node `i`, frees the node and the entry's octets.
    fn remove(&mut self, i: u32) -> Option<Stored> {
        self.unlink(i);
        let free = self.free;
        let n = self.nodes.get_mut(i as usize)?;
        let entry = n.entry.take()?;
        (n.newer, n.older) = (NIL, free);
        let hash = n.hash;
        self.free = i;
        self.unindex(hash, i);
        self.len -= 1;
        self.bytes -= PER_ENTRY;
        match entry.place {
            Place::Block(b) => {
                // The class's last block moved into this one: its node is told.
                let moved = self.slab.free(b);
                if let Some(e) = moved
                    .and_then(|m| self.nodes.get_mut(m as usize))
                    .and_then(|m| m.entry.as_mut())
                {
                    e.place = Place::Block(b);
                }
            }
            Place::Heap => {
                self.bytes -= super::entry::heap_bytes(entry.len());
                if let Some(n) = self.nodes.get_mut(i as usize) {
                    n.heap = Box::default();
                }
            }
        }
        Some(entry)
    }

    /// Capacity of the node array (review test: it was sized at the start not to grow).
    #[cfg(test)]
    pub(super) fn node_capacity(&self) -> usize {
        self.nodes.capacity()
    }

    /// The queue `key` is in (for tests).
    #[cfg(test)]
    pub(super) fn queue_of(&self, key: &[u8]) -> Option<Queue> {
        self.get(key).map(|e| e.queue)
    }

    /// Checks what the store's totals say against its nodes (for tests and fuzzing): every entry
    /// indexed under its node's hash and found by its key; the queues' counts and octets
    /// exactly their entries' (each charged its block, the block of its length's class,
    /// or its own allocation); `bytes` its nodes, index slots and own allocations; no
    /// block owned twice; the free list only nodes without an entry.
    #[cfg(any(test, fuzzing))]
    pub(super) fn audit(&self) {
        let mut queues = [(0, 0); 2];
        let (mut len, mut own, mut blocks) = (0, 0, std::collections::HashSet::new());
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(e) = n.entry.as_ref() else {
                continue;
            };
            len += 1;
            assert_eq!(
                self.index.get(&n.hash),
                Some(&(i as u32)),
                "node {i} indexed"
            );
            assert_eq!(
                self.find_hashed(key_of(e, octets(&self.slab, n, e)), n.hash),
                Some(i as u32)
            );
            match e.place {
                Place::Block(b) => {
                    assert_eq!(Some(b.class), Slab::class_of(e.len()), "node {i}'s class");
                    assert!(blocks.insert((b.class, b.index)), "block owned twice");
                }
                Place::Heap => own += super::entry::heap_bytes(e.len()),
            }
            let q = &mut queues[usize::from(e.queue == Queue::Main)];
            q.0 += 1;
            q.1 += e.size();
        }
        assert_eq!(queues, self.queues());
        assert_eq!(len, self.len);
        assert_eq!(self.index.len(), self.len);
        assert_eq!(self.bytes, len * PER_ENTRY + own);
        let mut free = self.free;
        while let Some(n) = self.nodes.get(free as usize) {
            assert!(n.entry.is_none(), "free node {free} holds an entry");
            free = n.older;
        }
    }

    /// Entries and octets in the small queue, then in main (for tests and fuzzing).
    #[cfg(any(test, fuzzing))]
    pub(super) fn queues(&self) -> [(usize, usize); 2] {
        [
            (self.small.len, self.small.bytes),
            (self.main.len, self.main.bytes),
        ]
    }
}

/// The octets of `e`, the entry of node `n`.
fn octets<'a>(slab: &'a Slab, n: &'a Node, e: &Stored) -> &'a [u8] {
    match e.place {
        Place::Block(b) => slab.get(b, e.len()),
        Place::Heap => n.heap.get(..e.len()),
    }
    .unwrap_or_default()
}
