//! One cached answer: the key, the stored answer and where its TTLs are, in one buffer.
use std::time::Instant;

use super::{elapsed_secs, store, Queue, TTL_ROW};
use crate::wire::{record_ttls, MessageView, HEADER_LEN, MAX_NAME_LEN};

/// One cached answer.
#[derive(Debug)]
pub struct Entry {
    /// One allocation: the key, then the answer (without OPT, ID 0, AA clear, TTLs
    /// clamped), then where its TTL fields are (`TTL_ROW` octets a record, in wire order).
    pub(super) buf: Box<[u8]>,
    pub(super) key_len: u16,
    pub(super) wire_len: u16,
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

impl Entry {
    /// An entry for `wire` (the stored form) under `key`; `None` if it does not walk.
    pub(super) fn new(key: &[u8], wire: &[u8], ttl: u32, now: Instant) -> Option<Entry> {
        let positions = record_ttls(wire).ok()?;
        let mut buf = Vec::with_capacity(key.len() + wire.len() + positions.len() * TTL_ROW);
        buf.extend_from_slice(key);
        buf.extend_from_slice(wire);
        for &(at, _) in &positions {
            wire.get(at..at + 4)?;
            buf.extend_from_slice(&u16::try_from(at).ok()?.to_be_bytes());
        }
        Some(Entry {
            buf: buf.into_boxed_slice(),
            key_len: u16::try_from(key.len()).ok()?,
            wire_len: u16::try_from(wire.len()).ok()?,
            stored: now,
            ttl,
            prefetching: false,
            queue: Queue::Small,
            freq: 0,
        })
    }

    pub(super) fn key(&self) -> &[u8] {
        self.buf
            .get(..usize::from(self.key_len))
            .unwrap_or_default()
    }

    pub(super) fn wire(&self) -> &[u8] {
        let start = usize::from(self.key_len);
        let end = start + usize::from(self.wire_len);
        self.buf.get(start..end).unwrap_or_default()
    }

    /// Offsets of the TTL fields in the answer, in wire order (each is in bounds).
    pub(super) fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let start = usize::from(self.key_len) + usize::from(self.wire_len);
        self.buf
            .get(start..)
            .unwrap_or_default()
            .chunks_exact(TTL_ROW)
            .map(|r| usize::from(u16::from_be_bytes([r[0], r[1]])))
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

    /// Octets this entry holds, as the allocator and the store see them: its buffer
    /// rounded up as malloc does, its node and its index slot.
    pub(super) fn size(&self) -> usize {
        heap_bytes(self.buf.len()) + store::PER_ENTRY
    }
}

/// Octets an allocation of `n` takes from glibc's malloc: an 8-octet header, rounded up
/// to 16, 32 at least.
pub(super) fn heap_bytes(n: usize) -> usize {
    (n.saturating_add(8 + 15) & !15).max(32)
}
