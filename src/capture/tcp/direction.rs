//! One direction of a TCP connection: its bytes placed by sequence number, segments
//! ahead of a hole stashed (bounded), and the stream cut into messages by their length
//! prefix (see the [`super`] docs for the rules).
use std::collections::VecDeque;
use std::net::SocketAddr;

use super::{Segment, MAX_OOO_BYTES, MAX_OOO_SEGMENTS, SYN};
use crate::capture::tunnel::Path;
use crate::capture::{CapturedMessage, Transport};

/// Which packet carried the stream bytes before `end`.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// Absolute stream offset just past the bytes this packet delivered.
    end: u64,
    frame: u32,
    ts: f64,
}

/// A segment that arrived ahead of a hole.
#[derive(Debug, Clone)]
pub(super) struct Stashed {
    seq: u32,
    data: Vec<u8>,
    frame: u32,
    ts: f64,
}

/// `seq` relative to `base`, in the signed window TCP arithmetic uses.
pub(super) fn seq_delta(seq: u32, base: u32) -> i64 {
    // Reinterpreting the wrapped difference as signed is the point here.
    i64::from(seq.wrapping_sub(base) as i32)
}

/// One direction of a connection.
#[derive(Debug)]
pub(super) struct Direction {
    src: SocketAddr,
    dst: SocketAddr,
    /// The tunnels around the segment that started the direction.
    tunnel: Path,
    pub(super) isn: Option<u32>,
    /// Sequence number of the first byte this direction's stream was started at.
    pub(super) start_seq: u32,
    /// Sequence number of the next byte expected in order.
    pub(super) next_seq: u32,
    /// In-order bytes not yet emitted; `pending[0]` is at stream offset `base` and starts
    /// a message's length prefix.
    pending: Vec<u8>,
    base: u64,
    /// Which packets delivered `pending`, in stream order.
    spans: VecDeque<Span>,
    pub(super) stash: Vec<Stashed>,
    pub(super) stash_bytes: usize,
    /// Sequence number of the FIN, once seen.
    pub(super) fin_seq: Option<u32>,
    /// Ended: later segments (other than a new SYN) are ignored.
    pub(super) closed: bool,
    /// Last activity, for evicting the least recently active direction.
    pub(super) tick: u64,
}

impl Direction {
    pub(super) fn new(src: SocketAddr, dst: SocketAddr, seg: &Segment<'_>, tick: u64) -> Self {
        let (isn, start) = if seg.flags & SYN != 0 {
            (Some(seg.seq), seg.seq.wrapping_add(1))
        } else {
            (None, seg.seq)
        };
        Direction {
            src,
            dst,
            tunnel: seg.tunnel,
            isn,
            start_seq: start,
            next_seq: start,
            pending: Vec::new(),
            base: 0,
            spans: VecDeque::new(),
            stash: Vec::new(),
            stash_bytes: 0,
            fin_seq: None,
            closed: false,
            tick,
        }
    }

    pub(super) fn held(&self) -> usize {
        self.pending.len().saturating_add(self.stash_bytes)
    }

    /// Places `data`, whose first byte has sequence number `seq`, and emits what completes.
    pub(super) fn accept(
        &mut self,
        seq: u32,
        data: &[u8],
        frame: u32,
        ts: f64,
        out: &mut Vec<CapturedMessage>,
    ) {
        if self.closed || data.is_empty() {
            return;
        }
        let delta = seq_delta(seq, self.next_seq);
        let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
        if delta.saturating_add(len) <= 0 {
            return; // all already seen: a retransmission
        }
        if delta > 0 {
            let ahead = usize::try_from(delta).unwrap_or(usize::MAX);
            let bytes = self.stash_bytes.saturating_add(data.len());
            if ahead <= MAX_OOO_BYTES
                && bytes <= MAX_OOO_BYTES
                && self.stash.len() < MAX_OOO_SEGMENTS
            {
                self.stash_bytes = bytes;
                self.stash.push(Stashed {
                    seq,
                    data: data.to_vec(),
                    frame,
                    ts,
                });
            }
            return;
        }
        self.append(seq, data, frame, ts);
        self.drain_stash();
        self.extract(out);
    }

    /// Appends the part of `data` (starting at `seq`, at or before `next_seq`) not seen yet.
    fn append(&mut self, seq: u32, data: &[u8], frame: u32, ts: f64) {
        let skip = usize::try_from(-seq_delta(seq, self.next_seq)).unwrap_or(usize::MAX);
        let Some(new) = data.get(skip..).filter(|n| !n.is_empty()) else {
            return;
        };
        self.pending.extend_from_slice(new);
        let n = u32::try_from(new.len()).unwrap_or(u32::MAX);
        self.next_seq = self.next_seq.wrapping_add(n);
        let end = self.base.saturating_add(self.pending.len() as u64);
        self.spans.push_back(Span { end, frame, ts });
    }

    /// Moves stashed segments that the stream has reached into it, earliest first.
    fn drain_stash(&mut self) {
        loop {
            let next = self.next_seq;
            let before = self.stash.len();
            self.stash.retain(|s| {
                let len = i64::try_from(s.data.len()).unwrap_or(i64::MAX);
                seq_delta(s.seq, next).saturating_add(len) > 0
            });
            if self.stash.len() != before {
                self.stash_bytes = self.stash.iter().map(|s| s.data.len()).sum();
            }
            // The one starting earliest; among equals, the first to arrive.
            let best = self
                .stash
                .iter()
                .enumerate()
                .filter(|(_, s)| seq_delta(s.seq, next) <= 0)
                .min_by_key(|(i, s)| (seq_delta(s.seq, next), *i))
                .map(|(i, _)| i);
            let Some(i) = best else {
                return;
            };
            // `remove`, not `swap_remove`: the stash stays in arrival order.
            let s = self.stash.remove(i);
            self.stash_bytes = self.stash_bytes.saturating_sub(s.data.len());
            self.append(s.seq, &s.data, s.frame, s.ts);
        }
    }

    /// The packet that delivered the byte at stream offset `pos`.
    fn carrier(&self, pos: u64) -> (u32, f64) {
        self.spans
            .iter()
            .find(|s| s.end > pos)
            .or(self.spans.back())
            .map_or((0, 0.0), |s| (s.frame, s.ts))
    }

    fn message(&self, bytes: &[u8], last: u64, truncated: bool) -> CapturedMessage {
        let (frame, ts) = self.carrier(last);
        CapturedMessage {
            frame,
            ts,
            transport: Transport::Tcp,
            src: self.src,
            dst: self.dst,
            bytes: bytes.to_vec(),
            truncated,
            tunnel: self.tunnel.to_vec(),
        }
    }

    /// Emits every complete length-prefixed message at the front of `pending`.
    fn extract(&mut self, out: &mut Vec<CapturedMessage>) {
        let mut cursor = 0usize;
        while let Some((prefix, body)) = self
            .pending
            .get(cursor..)
            .and_then(|rest| rest.split_first_chunk::<2>())
        {
            let len = usize::from(u16::from_be_bytes(*prefix));
            let Some(msg) = body.get(..len) else {
                break;
            };
            // The message's last byte (the prefix's, for an empty message).
            let last = self.base + (cursor + 1 + len) as u64;
            out.push(self.message(msg, last, false));
            cursor += 2 + len;
        }
        self.consume(cursor);
    }

    /// Drops the first `n` pending bytes, which have been emitted.
    fn consume(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.pending.drain(..n.min(self.pending.len()));
        self.base = self.base.saturating_add(n as u64);
        while self.spans.front().is_some_and(|s| s.end <= self.base) {
            self.spans.pop_front();
        }
    }

    /// Ends the direction: a message it stops in the middle of is emitted, truncated.
    pub(super) fn close(&mut self, out: &mut Vec<CapturedMessage>) {
        if self.closed {
            return;
        }
        self.extract(out);
        if let Some(body) = self.pending.get(2..) {
            // At least the length prefix is here, so a message was started.
            let last = self.base + (self.pending.len() as u64).saturating_sub(1);
            out.push(self.message(body, last, true));
        }
        self.closed = true;
        self.pending = Vec::new();
        self.spans = VecDeque::new();
        self.stash = Vec::new();
        self.stash_bytes = 0;
    }

    /// Closes the direction if the stream has reached its FIN.
    pub(super) fn check_fin(&mut self, out: &mut Vec<CapturedMessage>) {
        if self.fin_seq == Some(self.next_seq) {
            self.close(out);
        }
    }
}
