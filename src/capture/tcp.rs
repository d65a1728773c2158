//! TCP: reassembles each direction of each connection and splits it into DNS messages.
//!
//! Each direction is a byte stream placed by sequence number: it starts after the SYN's ISN
//! (or, when the handshake was not captured, at the first segment seen); retransmitted and
//! overlapping bytes are dropped (the first copy wins); segments that arrive ahead of a hole
//! wait until the hole fills. The stream is cut into messages by their 2-byte big-endian
//! length prefix (RFC 1035 §4.2.2); each message is emitted as soon as its last byte is in
//! place, tagged with the frame that carried that byte. When a direction ends (FIN reached,
//! a new SYN on the same ports, eviction, or end of capture) a message it ends in the middle
//! of is emitted with `truncated: true`. A hole that never fills stops that direction there:
//! data after it is not emitted.
//!
//! Bounds: at most [`MAX_FLOWS`] directions are tracked (the least recently active one is
//! ended to make room); each keeps at most [`MAX_OOO_BYTES`] in at most
//! [`MAX_OOO_SEGMENTS`] segments waiting for a hole to fill, no further than
//! [`MAX_OOO_BYTES`] ahead; and all directions together hold at most [`MAX_TOTAL_HELD`]
//! buffered bytes, beyond which the least recently active are ended. No panic on any input.
mod direction;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::tunnel::Path;
use super::CapturedMessage;
use direction::{seq_delta, Direction};

/// Connection directions tracked at once.
pub(crate) const MAX_FLOWS: usize = 4096;
/// Out-of-order bytes kept per direction, and how far ahead of the stream they may be.
pub(crate) const MAX_OOO_BYTES: usize = 1 << 20;
/// Out-of-order segments kept per direction.
pub(crate) const MAX_OOO_SEGMENTS: usize = 1024;
/// Bytes buffered by all directions together (in-order and out-of-order).
pub(crate) const MAX_TOTAL_HELD: usize = 64 << 20;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;

/// The parts of a TCP segment that reassembly needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub flags: u8,
    pub payload: &'a [u8],
    /// The tunnels around the segment; set by the caller, empty as parsed.
    pub tunnel: Path,
}

/// Parses a TCP header. `None` if it is not all there or its data offset is impossible.
pub(crate) fn parse(b: &[u8]) -> Option<Segment<'_>> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
    };
    let sport = be16(0)?;
    let dport = be16(2)?;
    let seq = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
    let header_len = usize::from(b.get(12)? >> 4) * 4;
    if header_len < 20 {
        return None;
    }
    let flags = *b.get(13)?;
    let payload = b.get(header_len..)?;
    Some(Segment {
        sport,
        dport,
        seq,
        flags,
        payload,
        tunnel: Path::default(),
    })
}

type FlowKey = (SocketAddr, SocketAddr);

/// All tracked connection directions.
#[derive(Debug, Default)]
pub(crate) struct TcpTable {
    flows: HashMap<FlowKey, Direction>,
    /// Directions by last activity, oldest first.
    lru: BTreeMap<u64, FlowKey>,
    tick: u64,
    held: usize,
}

impl TcpTable {
    /// Handles one segment from `src` to `dst`, seen in `frame` at `ts`.
    pub(crate) fn segment(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        seg: &Segment<'_>,
        frame: u32,
        ts: f64,
        out: &mut Vec<CapturedMessage>,
    ) {
        self.tick = self.tick.wrapping_add(1);
        let key = (src, dst);
        let syn = seg.flags & SYN != 0;
        if let Some(d) = self.flows.get_mut(&key) {
            if syn && d.isn != Some(seg.seq) {
                if d.isn.is_none() && seg.seq.wrapping_add(1) == d.start_seq {
                    // The SYN of the stream we already started, seen late.
                    d.isn = Some(seg.seq);
                } else {
                    // Same ports, new connection: the old one is over.
                    self.remove(&key, out);
                }
            }
        }
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= MAX_FLOWS {
                self.evict_oldest(out);
            }
            self.flows
                .insert(key, Direction::new(src, dst, seg, self.tick));
        }
        let Some(d) = self.flows.get_mut(&key) else {
            return;
        };
        self.lru.remove(&d.tick);
        d.tick = self.tick;
        self.lru.insert(self.tick, key);

        let before = d.held();
        let seq = if syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        d.accept(seq, seg.payload, frame, ts, out);
        if seg.flags & FIN != 0 && d.fin_seq.is_none() && !d.closed {
            let n = u32::try_from(seg.payload.len()).unwrap_or(u32::MAX);
            let fin = seq.wrapping_add(n);
            // A FIN behind the stream (on a stale retransmission) could never be reached
            // and would hide the real one.
            if seq_delta(fin, d.next_seq) >= 0 {
                d.fin_seq = Some(fin);
            }
        }
        d.check_fin(out);
        let after = d.held();
        self.held = self.held.saturating_sub(before).saturating_add(after);
        while self.held > MAX_TOTAL_HELD && self.flows.len() > 1 {
            self.evict_oldest(out);
        }
    }

    fn remove(&mut self, key: &FlowKey, out: &mut Vec<CapturedMessage>) {
        if let Some(mut d) = self.flows.remove(key) {
            self.lru.remove(&d.tick);
            self.held = self.held.saturating_sub(d.held());
            d.close(out);
        }
    }

    fn evict_oldest(&mut self, out: &mut Vec<CapturedMessage>) {
        if let Some((_, key)) = self.lru.pop_first() {
            self.remove(&key, out);
        }
    }

    /// Ends every direction at the end of the capture.
    pub(crate) fn finish(mut self, out: &mut Vec<CapturedMessage>) {
        while let Some((_, key)) = self.lru.pop_first() {
            self.remove(&key, out);
        }
    }
}
#[cfg(test)]
mod tests;
