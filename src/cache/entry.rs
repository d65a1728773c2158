//! One cached answer: its octets (the key, then the answer without OPT, ID 0, AA clear,
//! TTLs clamped, then where its TTL fields are, `TTL_ROW` octets a record in wire order)
//! in a block of the [`slab`](super::slab), or in an allocation of its own when too long
//! for one; and what the cache keeps beside them.
use std::ops::{Deref, DerefMut};

use super::slab::{Block, Slab};
use super::{elapsed_secs, store, Queue, TTL_ROW};
use crate::clock::Instant;
use crate::wire::{MessageView, HEADER_LEN, MAX_NAME_LEN};

/// Where an entry's octets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Block(Block),
    /// In its node's own allocation (see [`store`]).
    Heap,
}

/// What the cache keeps of an answer beside its octets.
#[derive(Debug)]
pub struct Stored {
    pub(super) place: Place,
    pub(super) key_len: u16,
    pub(super) wire_len: u16,
    /// Records in the TTL table.
    pub(super) rows: u16,
    pub(super) stored: Instant,
    /// Lifetime in seconds: the smallest TTL (positive) or the SOA's negative TTL.
    pub(super) ttl: u32,
    /// A refresh is on its way; no second one until it lands.
    pub prefetching: bool,
    /// Eviction state, kept by [`store`]: the queue it is in, and how often it was asked
    /// for since it last moved. Valid values of `freq`: 0..=3.
    pub(super) queue: Queue,
    pub(super) freq: u8,
}

impl Stored {
    /// Octets of key, answer and TTL table.
    pub(super) fn len(&self) -> usize {
        octets_len(self.key_len, self.wire_len, self.rows)
    }

    /// Seconds of freshness left at `now` (0 once expired).
    pub fn remaining(&self, now: Instant) -> u32 {
        self.ttl.saturating_sub(elapsed_secs(self.stored, now))
    }

    /// Whether it should be refreshed ahead of expiry: asked for in the last 10% of its
    /// lifetime (as Unbound's `prefetch`).
    pub fn wants_prefetch(&self, now: Instant) -> bool {
        !self.prefetching && self.ttl >= 10 && self.remaining(now).saturating_mul(10) < self.ttl
    }

    /// Octets this entry is charged for its octets, node and index slot: its block, or
    /// its allocation rounded up as malloc does (known from its place, so no class is
    /// found again).
    pub(super) fn size(&self) -> usize {
        let octets = match self.place {
            Place::Block(b) => Slab::block_bytes(b.class),
            Place::Heap => heap_bytes(self.len()),
        };
        octets + store::PER_ENTRY
    }
}

/// Octets of an entry's key, answer and TTL table.
pub(super) fn octets_len(key_len: u16, wire_len: u16, rows: u16) -> usize {
    usize::from(key_len) + usize::from(wire_len) + usize::from(rows) * TTL_ROW
}

/// Octets an allocation of `n` takes from glibc's malloc: an 8-octet header, rounded up
/// to 16, 32 at least.
pub(super) fn heap_bytes(n: usize) -> usize {
    (n.saturating_add(8 + 15) & !15).max(32)
}

/// A cached answer as a lookup finds it: what the cache keeps of it (which it derefs to)
/// and its octets.
#[derive(Debug)]
pub struct Entry<'a> {
    pub(super) meta: &'a mut Stored,
    /// Exactly its octets (`meta.len()` of them).
    pub(super) octets: &'a [u8],
    /// When it was looked up, and its age then in seconds: the lookup, the answer
    /// rendered from it and the prefetch check all ask its age at that instant, worked
    /// out once (a subtraction and a division by 10^9).
    pub(super) looked_up: Instant,
    pub(super) age: u32,
}

impl Deref for Entry<'_> {
    type Target = Stored;
    fn deref(&self) -> &Stored {
        self.meta
    }
}

impl DerefMut for Entry<'_> {
    fn deref_mut(&mut self) -> &mut Stored {
        self.meta
    }
}

impl Entry<'_> {
    /// Seconds since it was stored, at `now`.
    pub(super) fn age_at(&self, now: Instant) -> u32 {
        if now == self.looked_up {
            self.age
        } else {
            elapsed_secs(self.meta.stored, now)
        }
    }

    /// Seconds of freshness left at `now` (0 once expired).
    pub fn remaining(&self, now: Instant) -> u32 {
        self.meta.ttl.saturating_sub(self.age_at(now))
    }

    /// [`Stored::wants_prefetch`], with the age known since the lookup.
    pub fn wants_prefetch(&self, now: Instant) -> bool {
        let ttl = self.meta.ttl;
        !self.meta.prefetching && ttl >= 10 && self.remaining(now).saturating_mul(10) < ttl
    }

    pub(super) fn key(&self) -> &[u8] {
        key_of(self.meta, self.octets)
    }

    pub(super) fn wire(&self) -> &[u8] {
        let start = usize::from(self.meta.key_len);
        let end = start + usize::from(self.meta.wire_len);
        self.octets.get(start..end).unwrap_or_default()
    }

    /// Offsets of the TTL fields in the answer, in wire order (each is in bounds).
    pub(super) fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let start = usize::from(self.meta.key_len) + usize::from(self.meta.wire_len);
        self.octets
            .get(start..)
            .unwrap_or_default()
            .chunks_exact(TTL_ROW)
            .map(|r| usize::from(u16::from_be_bytes([r[0], r[1]])))
    }

    /// The question as stored (name, type, class in wire form), to build a refresh query.
    pub fn question_wire(&self) -> &[u8] {
        let end = MessageView::parse(self.wire())
            .ok()
            .and_then(|v| {
                let mut name = [0u8; MAX_NAME_LEN];
                let n = v.qname_wire(&mut name, false);
                (n > 0).then_some(HEADER_LEN + n + 4)
            })
            .unwrap_or(HEADER_LEN);
        self.wire().get(HEADER_LEN..end).unwrap_or_default()
    }

    /// The key this entry is stored under.
    pub fn key_bytes(&self) -> &[u8] {
        self.key()
    }

    /// The key's flags octet (RD = 4, DO = 2, CD = 1).
    pub fn key_flags(&self) -> u8 {
        self.key().last().copied().unwrap_or(0)
    }
}

/// The key in the octets of `stored`.
pub(super) fn key_of<'o>(stored: &Stored, octets: &'o [u8]) -> &'o [u8] {
    octets
        .get(..usize::from(stored.key_len))
        .unwrap_or_default()
}
