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
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use super::tunnel::Path;
use super::{CapturedMessage, Transport};

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
struct Stashed {
    seq: u32,
    data: Vec<u8>,
    frame: u32,
    ts: f64,
}

/// `seq` relative to `base`, in the signed window TCP arithmetic uses.
fn seq_delta(seq: u32, base: u32) -> i64 {
    // Reinterpreting the wrapped difference as signed is the point here.
    i64::from(seq.wrapping_sub(base) as i32)
}

/// One direction of a connection.
#[derive(Debug)]
struct Direction {
    src: SocketAddr,
    dst: SocketAddr,
    /// The tunnels around the segment that started the direction.
    tunnel: Path,
    isn: Option<u32>,
    /// Sequence number of the first byte this direction's stream was started at.
    start_seq: u32,
    /// Sequence number of the next byte expected in order.
    next_seq: u32,
    /// In-order bytes not yet emitted; `pending[0]` is at stream offset `base` and starts
    /// a message's length prefix.
    pending: Vec<u8>,
    base: u64,
    /// Which packets delivered `pending`, in stream order.
    spans: VecDeque<Span>,
    stash: Vec<Stashed>,
    stash_bytes: usize,
    /// Sequence number of the FIN, once seen.
    fin_seq: Option<u32>,
    /// Ended: later segments (other than a new SYN) are ignored.
    closed: bool,
    /// Last activity, for evicting the least recently active direction.
    tick: u64,
}

impl Direction {
    fn new(src: SocketAddr, dst: SocketAddr, seg: &Segment<'_>, tick: u64) -> Self {
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

    fn held(&self) -> usize {
        self.pending.len().saturating_add(self.stash_bytes)
    }

    /// Places `data`, whose first byte has sequence number `seq`, and emits what completes.
    fn accept(
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
    fn close(&mut self, out: &mut Vec<CapturedMessage>) {
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
    fn check_fin(&mut self, out: &mut Vec<CapturedMessage>) {
        if self.fin_seq == Some(self.next_seq) {
            self.close(out);
        }
    }
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
mod tests {
    use super::*;
    use crate::capture::testutil::{framed, query, tcp, ACK, FIN, PSH, SYN};

    fn client() -> SocketAddr {
        "10.0.0.1:40000".parse().unwrap()
    }
    fn server() -> SocketAddr {
        "10.0.0.2:53".parse().unwrap()
    }

    /// Feeds segments (seq, flags, payload) from client to server, frames numbered from 1.
    fn run(segs: &[(u32, u8, Vec<u8>)]) -> Vec<CapturedMessage> {
        let mut t = TcpTable::default();
        let mut out = Vec::new();
        for (i, (seq, flags, payload)) in segs.iter().enumerate() {
            let raw = tcp(40000, 53, *seq, *flags, payload);
            let seg = parse(&raw).unwrap();
            let frame = u32::try_from(i + 1).unwrap();
            t.segment(client(), server(), &seg, frame, f64::from(frame), &mut out);
        }
        t.finish(&mut out);
        out
    }

    fn summary(out: &[CapturedMessage]) -> Vec<(u32, Vec<u8>, bool)> {
        out.iter()
            .map(|m| (m.frame, m.bytes.clone(), m.truncated))
            .collect()
    }

    #[test]
    fn parse_header() {
        let raw = tcp(1, 2, 0xdead_beef, SYN | ACK, b"xy");
        let s = parse(&raw).unwrap();
        assert_eq!(
            (s.sport, s.dport, s.seq, s.flags),
            (1, 2, 0xdead_beef, SYN | ACK)
        );
        assert_eq!(s.payload, b"xy");
        let mut bad = raw.clone();
        bad[12] = 0x40; // data offset 4 words
        assert_eq!(parse(&bad), None);
        bad[12] = 0xf0; // 60 bytes: more than there is
        assert_eq!(parse(&bad), None);
        assert_eq!(parse(&raw[..19]), None);
    }

    #[test]
    fn one_message_over_several_segments() {
        let m = framed(&query(1));
        let out = run(&[
            (100, SYN, vec![]),
            (101, ACK, m[..1].to_vec()), // half the length prefix
            (102, ACK, m[1..10].to_vec()),
            (111, ACK | PSH, m[10..].to_vec()),
        ]);
        assert_eq!(summary(&out), vec![(4, query(1), false)]);
        assert_eq!((out[0].src, out[0].dst), (client(), server()));
        assert_eq!(out[0].transport, Transport::Tcp);
        assert_eq!(out[0].ts, 4.0);
    }

    #[test]
    fn several_messages_in_one_segment() {
        let mut data = framed(&query(1));
        data.extend(framed(&query(2)));
        data.extend(framed(b""));
        data.extend(framed(&query(3))[..5].to_vec());
        let rest = framed(&query(3))[5..].to_vec();
        let n = data.len() as u32;
        let out = run(&[(0, SYN, vec![]), (1, ACK, data), (1 + n, ACK, rest)]);
        assert_eq!(
            summary(&out),
            vec![
                (2, query(1), false),
                (2, query(2), false),
                (2, vec![], false),
                (3, query(3), false),
            ]
        );
    }

    #[test]
    fn out_of_order_segments_wait_for_the_hole() {
        let mut data = framed(&query(1));
        data.extend(framed(&query(2)));
        let (a, rest) = data.split_at(10);
        let (b, c) = rest.split_at(25);
        let out = run(&[
            (1000, SYN, vec![]),
            (1036, ACK, c.to_vec()), // frame 2: last part first
            (1011, ACK, b.to_vec()), // frame 3: middle
            (1001, ACK, a.to_vec()), // frame 4: fills the hole
        ]);
        // query(1) ends inside b (frame 3); query(2) ends inside c (frame 2). Both complete
        // only when frame 4 arrives, but carry the frame of their last byte.
        let q1_last = framed(&query(1)).len() - 1;
        assert!((10..35).contains(&q1_last));
        assert_eq!(
            summary(&out),
            vec![(3, query(1), false), (2, query(2), false)]
        );
    }

    #[test]
    fn retransmissions_and_overlaps_are_dropped_first_copy_wins() {
        let m = framed(&query(7));
        let mut forged = m.clone();
        forged[5] ^= 0xff;
        let out = run(&[
            (0, SYN, vec![]),
            (1, ACK, m[..8].to_vec()),
            (1, ACK, m[..8].to_vec()),        // exact retransmission
            (5, ACK, forged[4..12].to_vec()), // overlap with different old bytes
            (0, SYN, vec![]),                 // retransmitted SYN
        ]);
        // Frame 4 delivered bytes 8..12 only; the message still needs the rest.
        assert_eq!(out.len(), 1);
        assert!(out[0].truncated);
        assert_eq!(out[0].bytes, m[2..12].to_vec());
        assert_eq!(out[0].frame, 4);

        let out = run(&[
            (0, SYN, vec![]),
            (1, ACK, m.clone()),
            (1, ACK, m.clone()),
            (3, ACK, m[2..].to_vec()),
        ]);
        assert_eq!(summary(&out), vec![(2, query(7), false)]);
    }

    #[test]
    fn stream_ending_mid_message_is_truncated() {
        let m = framed(&query(9));
        let out = run(&[(0, SYN, vec![]), (1, ACK, m[..20].to_vec())]);
        assert_eq!(summary(&out), vec![(2, m[2..20].to_vec(), true)]);
        // With a FIN the direction closes at once; later retransmissions change nothing.
        let out = run(&[
            (0, SYN, vec![]),
            (1, ACK | FIN, m[..20].to_vec()),
            (1, ACK, m.clone()),
        ]);
        assert_eq!(summary(&out), vec![(2, m[2..20].to_vec(), true)]);
        // A FIN on a stale retransmission does not end the stream early.
        let out = run(&[
            (0, SYN, vec![]),
            (1, ACK, m[..20].to_vec()),
            (1, ACK | FIN, m[..4].to_vec()),
            (21, ACK | FIN, m[20..].to_vec()),
        ]);
        assert_eq!(summary(&out), vec![(4, query(9), false)]);
        // One byte of length prefix is not a message.
        assert!(run(&[(0, SYN, vec![]), (1, ACK, vec![0])]).is_empty());
    }

    #[test]
    fn hole_that_never_fills_stops_the_direction() {
        let m1 = framed(&query(1));
        let m2 = framed(&query(2));
        let n1 = m1.len() as u32;
        let out = run(&[
            (0, SYN, vec![]),
            (1, ACK, m1[..10].to_vec()),
            // bytes 10..n1 of m1 never arrive
            (1 + n1, ACK, m2.clone()),
        ]);
        assert_eq!(summary(&out), vec![(2, m1[2..10].to_vec(), true)]);
    }

    #[test]
    fn connection_without_handshake_starts_at_first_segment() {
        let m = framed(&query(3));
        let out = run(&[
            (5000, ACK, m.clone()),
            (5000 + m.len() as u32, ACK | FIN, vec![]),
        ]);
        assert_eq!(summary(&out), vec![(1, query(3), false)]);
    }

    #[test]
    fn late_syn_of_a_started_stream_is_adopted() {
        let m = framed(&query(3));
        let out = run(&[
            (5001, ACK, m[..6].to_vec()),
            (5000, SYN, vec![]),
            (5007, ACK, m[6..].to_vec()),
        ]);
        assert_eq!(summary(&out), vec![(3, query(3), false)]);
    }

    #[test]
    fn new_syn_on_same_ports_ends_the_old_connection() {
        let m = framed(&query(4));
        let out = run(&[
            (0, SYN, vec![]),
            (1, ACK, m[..9].to_vec()),
            (7777, SYN, vec![]),
            (7778, ACK, m.clone()),
        ]);
        assert_eq!(
            summary(&out),
            vec![(2, m[2..9].to_vec(), true), (4, query(4), false)]
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let m = framed(&query(5));
        let isn = u32::MAX - 3;
        let out = run(&[
            (isn, SYN, vec![]),
            (isn.wrapping_add(1), ACK, m[..6].to_vec()),
            (isn.wrapping_add(7), ACK, m[6..].to_vec()),
        ]);
        assert_eq!(summary(&out), vec![(3, query(5), false)]);
    }

    #[test]
    fn out_of_order_stash_is_bounded() {
        let mut t = TcpTable::default();
        let mut out = Vec::new();
        let syn = tcp(40000, 53, 0, SYN, b"");
        t.segment(client(), server(), &parse(&syn).unwrap(), 1, 0.0, &mut out);
        let chunk = vec![0u8; 1000];
        // Leave byte 1 missing, then offer far more than the stash may hold.
        for i in 0..3000u32 {
            let raw = tcp(40000, 53, 2 + i * 1000, ACK, &chunk);
            t.segment(
                client(),
                server(),
                &parse(&raw).unwrap(),
                2 + i,
                0.0,
                &mut out,
            );
        }
        let d = &t.flows[&(client(), server())];
        assert!(d.stash_bytes <= MAX_OOO_BYTES);
        assert!(d.stash.len() <= MAX_OOO_SEGMENTS);
        assert_eq!(t.held, d.held());
        // Too far ahead of the stream: not kept at all.
        let raw = tcp(40000, 53, 5_000_000, ACK, &chunk);
        let before = t.flows[&(client(), server())].stash.len();
        t.segment(
            client(),
            server(),
            &parse(&raw).unwrap(),
            9999,
            0.0,
            &mut out,
        );
        assert_eq!(t.flows[&(client(), server())].stash.len(), before);
        assert!(out.is_empty());
    }

    #[test]
    fn flow_table_is_bounded_and_evicts_least_recent() {
        let mut t = TcpTable::default();
        let mut out = Vec::new();
        let m = framed(&query(1));
        for i in 0..(MAX_FLOWS as u32 + 5) {
            let src = SocketAddr::new("10.1.0.1".parse().unwrap(), (i % 60000) as u16);
            let src = SocketAddr::new(
                std::net::Ipv4Addr::from(0x0a01_0000 + i / 60000).into(),
                src.port(),
            );
            let raw = tcp(src.port(), 53, 1, ACK, &m[..5]);
            t.segment(src, server(), &parse(&raw).unwrap(), i + 1, 0.0, &mut out);
        }
        assert_eq!(t.flows.len(), MAX_FLOWS);
        assert_eq!(t.lru.len(), MAX_FLOWS);
        // The five oldest were ended, each with its started message.
        assert_eq!(out.len(), 5);
        assert_eq!(
            out.iter().map(|m| m.frame).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert!(out.iter().all(|m| m.truncated));
    }

    #[test]
    fn total_buffered_bytes_are_bounded() {
        let mut t = TcpTable::default();
        let mut out = Vec::new();
        let chunk = vec![0xffu8; 60_000];
        // Many connections, each with a hole at the start and a stash behind it.
        for i in 0..200u32 {
            let src = SocketAddr::new("10.9.0.1".parse().unwrap(), 1000 + i as u16);
            let syn = tcp(src.port(), 53, 0, SYN, b"");
            t.segment(src, server(), &parse(&syn).unwrap(), 1, 0.0, &mut out);
            for k in 0..16u32 {
                let raw = tcp(src.port(), 53, 2 + k * 60_000, ACK, &chunk);
                t.segment(src, server(), &parse(&raw).unwrap(), 2, 0.0, &mut out);
            }
        }
        assert!(t.held <= MAX_TOTAL_HELD);
        let real: usize = t.flows.values().map(Direction::held).sum();
        assert_eq!(real, t.held);
    }
}
