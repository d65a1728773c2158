//! The two FIFOs of [`super`]: making room (S3-FIFO's eviction walk) and the list
//! operations that keep each queue's links and totals.

use super::super::elapsed_secs;
use super::{Fifo, Queue, Store, NIL, PER_ENTRY, SMALL_SHARE};
use crate::clock::Instant;

impl Store {
    /// Evicts (or gives back spare pages) until an entry of `len` octets in `class` (or
    /// its own allocation) fits both bounds; false if it cannot.
    #[cold]
    #[inline(never)]
    pub(super) fn make_room(&mut self, class: Option<u8>, len: usize, now: Instant) -> bool {
        let extra = |s: &Store| match class {
            Some(c) => s.slab.cost(c),
            None => super::super::entry::heap_bytes(len),
        } + PER_ENTRY;
        while self.len >= self.max_entries || self.held() + extra(self) > self.max_bytes {
            if self.slab.release_spare() == 0 && !self.evict(now) {
                return false;
            }
        }
        true
    }

    /// Evicts one entry: from the small queue while it holds more than its share of
    /// either bound (or main is empty), else from main. False if there is none.
    fn evict(&mut self, now: Instant) -> bool {
        let small_full = self.small.len >= (self.max_entries / SMALL_SHARE).max(1)
            || self.small.bytes >= self.max_bytes / SMALL_SHARE;
        if (small_full || self.main.len == 0) && self.evict_from(Queue::Small, now) {
            return true;
        }
        self.evict_from(Queue::Main, now)
    }

    /// Walks `queue` from its tail: an entry asked for moves on (small → main with its
    /// count reset; main → main's head with its count lowered), the first one not asked
    /// for (or dead) is evicted. Evictions from small, and dead entries that had been
    /// asked for, are remembered in the ghost.
    fn evict_from(&mut self, queue: Queue, now: Instant) -> bool {
        loop {
            let i = self.fifo(queue).tail;
            let Some(e) = self
                .nodes
                .get_mut(i as usize)
                .and_then(|n| n.entry.as_mut())
            else {
                return false;
            };
            let dead = elapsed_secs(e.stored, now) >= e.ttl.saturating_add(self.stale_window);
            if e.freq > 0 && !dead {
                e.freq = match queue {
                    Queue::Small => 0,
                    Queue::Main => e.freq - 1,
                };
                self.unlink(i);
                self.link(i, Queue::Main);
                continue;
            }
            let remember = queue == Queue::Small || e.freq > 0;
            let hash = self.nodes.get(i as usize).map_or(0, |n| n.hash);
            if self.remove(i).is_some() && remember {
                self.ghost.insert(hash);
            }
            self.evictions += 1;
            return true;
        }
    }

    pub(super) fn fifo(&mut self, queue: Queue) -> &mut Fifo {
        match queue {
            Queue::Small => &mut self.small,
            Queue::Main => &mut self.main,
        }
    }

    /// Puts node `i` at the head of `queue`.
    pub(super) fn link(&mut self, i: u32, queue: Queue) {
        let head = self.fifo(queue).head;
        let Some(n) = self.nodes.get_mut(i as usize) else {
            return;
        };
        let Some(e) = n.entry.as_mut() else {
            return;
        };
        e.queue = queue;
        let size = e.size();
        (n.newer, n.older) = (NIL, head);
        self.became_head(i, queue, size);
    }

    /// Counts node `i`, of `size` octets, as the head of `queue`: its `older` is the
    /// queue's head already, its `newer` NIL.
    pub(super) fn became_head(&mut self, i: u32, queue: Queue, size: usize) {
        let head = self.fifo(queue).head;
        match self.nodes.get_mut(head as usize) {
            Some(h) => h.newer = i,
            None => self.fifo(queue).tail = i,
        }
        let f = self.fifo(queue);
        f.head = i;
        f.len += 1;
        f.bytes += size;
    }

    /// Takes node `i` out of its queue.
    pub(super) fn unlink(&mut self, i: u32) {
        let Some(n) = self.nodes.get(i as usize) else {
            return;
        };
        let Some(e) = n.entry.as_ref() else {
            return;
        };
        let (newer, older, queue, size) = (n.newer, n.older, e.queue, e.size());
        match self.nodes.get_mut(newer as usize) {
            Some(x) => x.older = older,
            None => self.fifo(queue).head = older,
        }
        match self.nodes.get_mut(older as usize) {
            Some(x) => x.newer = newer,
            None => self.fifo(queue).tail = newer,
        }
        let f = self.fifo(queue);
        f.len -= 1;
        f.bytes -= size;
    }
}
