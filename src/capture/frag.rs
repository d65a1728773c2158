//! IPv4 and IPv6 fragment reassembly, bounded.
//!
//! Fragments are kept per datagram (source, destination, identification and, for IPv4,
//! protocol) until they cover the payload from 0 to the end given by the last fragment.
//! Where fragments overlap, the bytes that arrived first win. A datagram that never
//! completes (evicted when the table is full, or still open at the end of the file) is
//! handed back as a prefix, `complete: false`, if its first fragment was captured, so that
//! the caller can still report the start of the message it carried.
//!
//! Bounds: at most [`MAX_PENDING`] datagrams in progress (the oldest is evicted), at most
//! [`MAX_PIECES`] fragments and [`MAX_HELD_BYTES`] bytes each (overlapping copies count),
//! and no byte beyond [`MAX_DATAGRAM`]: at most 32 MiB held, whatever the input.
use std::collections::HashMap;
use std::net::IpAddr;

use super::ip::{FragKey, Fragment};
use super::tunnel::Path;

/// Datagrams being reassembled at once.
pub(crate) const MAX_PENDING: usize = 256;
/// Fragments kept per datagram; later ones are dropped.
pub(crate) const MAX_PIECES: usize = 128;
/// Largest reassembled payload: an IP length field cannot describe more.
pub(crate) const MAX_DATAGRAM: usize = 65_535;
/// Bytes kept per datagram, counting overlapping copies: room for one full datagram and
/// as many retransmitted bytes again.
pub(crate) const MAX_HELD_BYTES: usize = 2 * MAX_DATAGRAM;

/// A datagram leaving the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reassembled {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// As in [`Fragment::proto`].
    pub proto: u8,
    pub payload: Vec<u8>,
    /// Complete: the fragment that completed it. Incomplete: the first fragment.
    pub frame: u32,
    pub ts: f64,
    /// False when only a prefix (from the first fragment on) was captured.
    pub complete: bool,
    /// The tunnels around the datagram's first fragment.
    pub tunnel: Path,
}

#[derive(Debug, Clone)]
struct Piece {
    offset: usize,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Pending {
    /// Arrival order among all datagrams, for evicting the oldest.
    serial: u64,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// In arrival order.
    pieces: Vec<Piece>,
    /// Sum of the pieces' lengths.
    held: usize,
    /// End of the payload, known once the last fragment (no "more" flag) arrived.
    end: Option<usize>,
    /// Frame and time of the first fragment at offset 0.
    first: Option<(u32, f64)>,
    tunnel: Path,
}

impl Pending {
    /// Length of the payload covered without a gap from offset 0.
    fn covered_prefix(&self) -> usize {
        let mut spans: Vec<(usize, usize)> = self
            .pieces
            .iter()
            .map(|p| (p.offset, p.offset.saturating_add(p.data.len())))
            .collect();
        spans.sort_unstable();
        let mut covered = 0;
        for (start, end) in spans {
            if start > covered {
                break;
            }
            covered = covered.max(end);
        }
        covered
    }

    /// The first `len` payload bytes; earlier arrivals overwrite later ones, so the first
    /// copy of any byte wins.
    fn assemble(&self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        for p in self.pieces.iter().rev() {
            let Some(dst) = out.get_mut(p.offset..) else {
                continue;
            };
            let n = dst.len().min(p.data.len());
            if let (Some(d), Some(s)) = (dst.get_mut(..n), p.data.get(..n)) {
                d.copy_from_slice(s);
            }
        }
        out
    }

    /// What is left of an incomplete datagram: its prefix, if the first fragment is here.
    fn into_incomplete(self) -> Option<Reassembled> {
        let (frame, ts) = self.first?;
        let mut len = self.covered_prefix();
        if let Some(end) = self.end {
            len = len.min(end);
        }
        Some(Reassembled {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            payload: self.assemble(len),
            frame,
            ts,
            complete: false,
            tunnel: self.tunnel,
        })
    }
}

/// The datagrams being reassembled.
#[derive(Debug, Default)]
pub(crate) struct FragTable {
    pending: HashMap<FragKey, Pending>,
    next_serial: u64,
}

impl FragTable {
    /// Adds a fragment seen in `frame` at time `ts`. A datagram that this completes, or an
    /// incomplete one evicted to make room, is pushed to `out`.
    pub(crate) fn insert(
        &mut self,
        f: &Fragment<'_>,
        frame: u32,
        ts: f64,
        out: &mut Vec<Reassembled>,
    ) {
        let offset = usize::try_from(f.offset).unwrap_or(usize::MAX);
        let Some(end) = offset.checked_add(f.data.len()) else {
            return;
        };
        if end > MAX_DATAGRAM {
            return;
        }
        if !self.pending.contains_key(&f.key) && self.pending.len() >= MAX_PENDING {
            self.evict_oldest(out);
        }
        let serial = self.next_serial;
        let entry = self.pending.entry(f.key).or_insert_with(|| Pending {
            serial,
            src: f.src,
            dst: f.dst,
            proto: f.proto,
            pieces: Vec::new(),
            held: 0,
            end: None,
            first: None,
            tunnel: f.tunnel,
        });
        if entry.serial == serial {
            self.next_serial = self.next_serial.wrapping_add(1);
        }
        let held = entry.held.saturating_add(f.data.len());
        if entry.pieces.len() >= MAX_PIECES || held > MAX_HELD_BYTES {
            return;
        }
        entry.held = held;
        entry.pieces.push(Piece {
            offset,
            data: f.data.to_vec(),
        });
        if offset == 0 && entry.first.is_none() {
            entry.first = Some((frame, ts));
            // The first fragment is authoritative for an IPv6 datagram's next header.
            entry.proto = f.proto;
        }
        if !f.more && entry.end.is_none() {
            entry.end = Some(end);
        }
        let Some(total) = entry.end else {
            return;
        };
        if entry.covered_prefix() < total {
            return;
        }
        if let Some(done) = self.pending.remove(&f.key) {
            out.push(Reassembled {
                src: done.src,
                dst: done.dst,
                proto: done.proto,
                payload: done.assemble(total),
                frame,
                ts,
                complete: true,
                tunnel: done.tunnel,
            });
        }
    }

    fn evict_oldest(&mut self, out: &mut Vec<Reassembled>) {
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.serial)
            .map(|(k, _)| *k);
        if let Some(p) = oldest.and_then(|k| self.pending.remove(&k)) {
            out.extend(p.into_incomplete());
        }
    }

    /// The datagrams still incomplete at the end of the capture, oldest first, as prefixes.
    pub(crate) fn finish(self) -> Vec<Reassembled> {
        let mut left: Vec<Pending> = self.pending.into_values().collect();
        left.sort_by_key(|p| p.serial);
        left.into_iter()
            .filter_map(Pending::into_incomplete)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(id: u16) -> FragKey {
        FragKey::V4 {
            src: Ipv4Addr::new(1, 1, 1, 1),
            dst: Ipv4Addr::new(2, 2, 2, 2),
            proto: 17,
            id,
        }
    }

    fn frag(id: u16, offset: u32, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            key: key(id),
            src: Ipv4Addr::new(1, 1, 1, 1).into(),
            dst: Ipv4Addr::new(2, 2, 2, 2).into(),
            proto: 17,
            offset,
            more,
            data,
            tunnel: Path::default(),
        }
    }

    #[test]
    fn in_order_and_out_of_order() {
        let mut t = FragTable::default();
        let mut out = Vec::new();
        t.insert(&frag(1, 0, true, &[1; 8]), 1, 1.0, &mut out);
        assert!(out.is_empty());
        t.insert(&frag(1, 8, false, &[2; 3]), 2, 2.0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload, [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2]);
        assert_eq!((out[0].frame, out[0].complete), (2, true));

        out.clear();
        t.insert(&frag(2, 16, false, b"end"), 3, 3.0, &mut out);
        t.insert(&frag(2, 8, true, b"middle.."), 4, 4.0, &mut out);
        assert!(out.is_empty());
        t.insert(&frag(2, 0, true, b"start..."), 5, 5.0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload, b"start...middle..end");
        assert_eq!(out[0].frame, 5);
        assert!(t.finish().is_empty());
    }

    #[test]
    fn overlap_first_copy_wins_and_duplicates_ignored() {
        let mut t = FragTable::default();
        let mut out = Vec::new();
        t.insert(&frag(1, 0, true, b"AAAAAAAAAAAAAAAA"), 1, 0.0, &mut out);
        t.insert(&frag(1, 8, true, b"BBBBBBBBBBBBBBBB"), 2, 0.0, &mut out);
        t.insert(&frag(1, 0, true, b"CCCCCCCC"), 3, 0.0, &mut out);
        t.insert(&frag(1, 24, false, b"D"), 4, 0.0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload, b"AAAAAAAAAAAAAAAABBBBBBBBD");
    }

    #[test]
    fn incomplete_datagram_is_a_prefix_only_with_its_first_fragment() {
        let mut t = FragTable::default();
        let mut out = Vec::new();
        t.insert(&frag(1, 0, true, b"head...."), 7, 7.5, &mut out);
        t.insert(&frag(1, 16, false, b"tail"), 8, 8.0, &mut out);
        t.insert(&frag(2, 8, false, b"orphan"), 9, 9.0, &mut out);
        assert!(out.is_empty());
        let left = t.finish();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].payload, b"head....");
        assert_eq!(
            (left[0].frame, left[0].ts, left[0].complete),
            (7, 7.5, false)
        );
    }

    #[test]
    fn table_is_bounded() {
        let mut t = FragTable::default();
        let mut out = Vec::new();
        for id in 0..(MAX_PENDING as u16 + 10) {
            t.insert(
                &frag(id, 0, true, &[id as u8; 8]),
                u32::from(id) + 1,
                0.0,
                &mut out,
            );
        }
        // The ten oldest were evicted, as prefixes, oldest first.
        assert_eq!(out.len(), 10);
        assert_eq!(out[0].frame, 1);
        assert_eq!(out[9].frame, 10);
        assert_eq!(t.pending.len(), MAX_PENDING);
        // Too many pieces, and pieces past the largest datagram, are dropped.
        let mut t = FragTable::default();
        for i in 0..(MAX_PIECES as u32 + 50) {
            t.insert(&frag(1, 8 + i * 8, true, &[0; 8]), 1, 0.0, &mut out);
        }
        assert_eq!(t.pending[&key(1)].pieces.len(), MAX_PIECES);
        t.insert(&frag(3, 65_528, false, &[0; 16]), 1, 0.0, &mut out);
        assert!(!t.pending.contains_key(&key(3)));
        // Overlapping copies of big fragments stop at the byte budget.
        let big = vec![0u8; 60_000];
        for i in 0..5 {
            t.insert(&frag(4, 0, true, &big), i, 0.0, &mut out);
        }
        assert_eq!(t.pending[&key(4)].pieces.len(), 2);
    }
}
