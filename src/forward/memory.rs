//! Memory: waiter lists kept for reuse, the tables shrunk back after a burst (the shell
//! then asks the allocator to return it), and the cache left to the exit.
use super::pending::Waiter;
use super::Forwarder;
use crate::cache::{Cache, CacheConfig};

impl Forwarder {
    /// Forgets the cache without freeing its entries (the process is about to exit, which
    /// takes the memory back at once); the cache is off from here on.
    pub fn leak_cache(&mut self) {
        let off = Cache::new(CacheConfig {
            max_entries: 0,
            ..CacheConfig::default()
        });
        std::mem::forget(std::mem::replace(&mut self.cache, off));
    }

    /// Whether the tables shrank since the last call (the shell then asks the allocator
    /// to return the memory: `crate::server`).
    pub fn take_shrunk(&mut self) -> bool {
        std::mem::take(&mut self.gave_back)
    }

    /// Whether the pending table has emptied out after a burst.
    pub(super) fn worth_shrinking(&self) -> bool {
        let slab = self.pending.slab_len();
        slab > 1024 && self.pending.len() * 4 < slab
    }

    /// After a burst: the pending table, the spare lists and the indexes shrink back.
    pub(super) fn give_memory_back(&mut self) {
        self.gave_back |= self.pending.shrink();
        self.spare_waiters.truncate(64);
        self.spare_waiters.shrink_to_fit();
        self.shares.shrink();
    }

    pub(super) fn waiter_list(&mut self) -> Vec<Waiter> {
        self.spare_waiters.pop().unwrap_or_default()
    }

    pub(super) fn recycle_waiters(&mut self, mut w: Vec<Waiter>) {
        if self.spare_waiters.len() < 1024 && w.capacity() <= 64 {
            w.clear();
            self.spare_waiters.push(w);
        }
    }
}
