//! The pending table's index from transaction ID to slot, and the choice of a random
//! ID no live attempt uses.
//!
//! The index has 65536 entries, one per ID, so a lookup is one array access. Valid
//! values: `by_id[id]` is the slot + 1 of the live entry one of whose live attempts went
//! out with `id`, and 0 for any other ID. The table indexes an attempt's ID when it
//! inserts the entry or adds the attempt, and takes it out when the attempt retires or
//! the entry is removed.

use super::{PendingTable, Slot};
use crate::forward::IdSource;

impl PendingTable {
    /// A random transaction ID that no live attempt uses; `None` if the generator failed.
    pub fn fresh_id(&self, rng: &mut dyn IdSource) -> Option<u16> {
        // At most MAX_PENDING × MAX_ATTEMPTS = 60000 of 65536 IDs are taken, so each
        // draw succeeds with p > 8%; 512 failures in a row mean a broken generator.
        for _ in 0..512 {
            let id = rng.next_u16()?;
            if self.is_free(id) {
                return Some(id);
            }
        }
        None
    }

    /// Whether no live attempt uses the transaction ID `id`.
    pub fn is_free(&self, id: u16) -> bool {
        self.by_id.get(usize::from(id)) == Some(&0)
    }

    pub(super) fn index(&mut self, id: u16, slot: Slot) {
        index(&mut self.by_id, id, slot);
    }

    pub(super) fn unindex(&mut self, id: u16, slot: Slot) {
        unindex(&mut self.by_id, id, slot);
    }

    /// The slot an ID belongs to.
    pub fn slot_of(&self, id: u16) -> Option<Slot> {
        match self.by_id.get(usize::from(id)).copied() {
            Some(0) | None => None,
            Some(n) => Some(n as usize - 1),
        }
    }
}

/// Indexes `id` to `slot` in `by_id` (a function of the index alone, so that the table
/// can index an entry's attempts while it holds the entry, without copying them out).
pub(super) fn index(by_id: &mut [u32], id: u16, slot: Slot) {
    if let Some(ix) = by_id.get_mut(usize::from(id)) {
        *ix = slot as u32 + 1;
    }
}

/// Takes `id` out of `by_id` if it is indexed to `slot`.
pub(super) fn unindex(by_id: &mut [u32], id: u16, slot: Slot) {
    if let Some(ix) = by_id.get_mut(usize::from(id)) {
        if *ix == slot as u32 + 1 {
            *ix = 0;
        }
    }
}
