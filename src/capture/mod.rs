//! Pulls DNS messages out of pcap and pcapng capture files.
//!
//! The file formats are read with `pcap-parser` (in `file`); the network layers below DNS
//! are decoded here by hand: link layers in `link`, IPv4/IPv6 in `ip`, IP fragment
//! reassembly in `frag`, UDP in `udp` and TCP stream reassembly in `tcp`.
//!
//! Guarantees, for any input bytes whatsoever:
//! * no panic: the lints below forbid `unwrap`, `expect`, `panic!` and unchecked indexing in
//!   this module and its submodules, and every length read from the input is checked;
//! * bounded memory beyond the input itself and the returned messages: IP reassembly keeps at
//!   most 256 datagrams of at most 64 KiB (`frag::MAX_PENDING`, `frag::MAX_HELD_BYTES`), and
//!   TCP tracks at most 4096 connection directions (`tcp::MAX_FLOWS`), each with at most
//!   1 MiB of out-of-order data, under a global budget of 64 MiB of buffered stream bytes
//!   (`tcp::MAX_TOTAL_HELD`);
//! * messages come out in frame order: for TCP the frame that carried the message's last
//!   byte, for a reassembled IP datagram the fragment that completed it, and for one whose
//!   later fragments never came (reported truncated) its first fragment;
//! * packets that cannot be decoded (unsupported link type, non-IP, malformed headers,
//!   tunnels, other ports) are skipped, never an error: only the file structure can fail.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod file;
mod frag;
mod ip;
mod link;
mod tcp;
mod udp;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use file::Format;

/// The transport a DNS message was carried over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One DNS message found in a capture.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedMessage {
    /// 1-based packet number in the file; for TCP the packet that carried the message's last
    /// byte, for a reassembled IP datagram the fragment that completed it (or, if it never
    /// completed, its first fragment).
    pub frame: u32,
    /// Capture timestamp of that packet, in seconds since the Unix epoch.
    pub ts: f64,
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The DNS message, without the TCP 2-byte length prefix.
    pub bytes: Vec<u8>,
    /// The capture does not hold the whole message (snap length cut, missing IP fragments,
    /// or a TCP stream that ends mid-message); `bytes` is then a prefix of it.
    pub truncated: bool,
}

/// Why a capture file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureError {
    /// The data does not start with a pcap or pcapng magic number.
    NotCapture,
    /// The file ends inside its file header (or first section header), so no packet could
    /// be read at all.
    Truncated { offset: u64 },
    /// A record or block is inconsistent (e.g. a pcapng block whose two length fields
    /// differ); `offset` is where it starts.
    Malformed { offset: u64 },
    /// More packets than a `u32` frame number can count.
    TooManyPackets,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::NotCapture => write!(f, "not a pcap or pcapng file"),
            CaptureError::Truncated { offset } => {
                write!(f, "truncated capture file at byte {offset}")
            }
            CaptureError::Malformed { offset } => {
                write!(f, "malformed capture file: bad record at byte {offset}")
            }
            CaptureError::TooManyPackets => {
                write!(f, "capture file has more than {} packets", u32::MAX)
            }
        }
    }
}

impl std::error::Error for CaptureError {}

/// What to extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// A UDP datagram or TCP connection is DNS when its source or destination port is here.
    pub ports: Vec<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options { ports: vec![53] }
    }
}

/// Everything [`read_capture_detailed`] learnt about a file.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSummary {
    pub format: Format,
    /// The DNS messages, in frame order.
    pub messages: Vec<CapturedMessage>,
    /// Number of packets in the file (the last frame number).
    pub packets: u32,
    /// Every link type the file declares (per interface for pcapng), in order of first
    /// appearance, whether or not this module decodes it.
    pub link_types: Vec<u32>,
    /// Packets skipped because their link type is not one this module decodes.
    pub unsupported_link_packets: u32,
    /// Set when the file ends in the middle of a record: the offset of that record. The
    /// messages before it are still returned.
    pub cut_off_at: Option<u64>,
}

/// True if `data` starts with a pcap (either byte order, micro- or nanosecond, or the
/// "modified" Kuznetzov variant) or pcapng magic number.
pub fn is_capture(data: &[u8]) -> bool {
    file::detect(data).is_some()
}

/// Link types this module decodes down to IP.
pub fn is_supported_link_type(link_type: u32) -> bool {
    link::is_supported(link_type)
}

/// Extracts every DNS message (UDP datagram or TCP-framed message to or from one of
/// `opts.ports`) from a pcap or pcapng file held in memory.
///
/// A file cut off in the middle of a record yields the messages before the cut; a file
/// that is not a capture, ends inside its header, or has an inconsistent record is an error.
pub fn read_capture(data: &[u8], opts: &Options) -> Result<Vec<CapturedMessage>, CaptureError> {
    read_capture_detailed(data, opts).map(|s| s.messages)
}

/// Like [`read_capture`], but also reports the file format, packet count, link types and
/// whether the file was cut off.
pub fn read_capture_detailed(data: &[u8], opts: &Options) -> Result<CaptureSummary, CaptureError> {
    let mut ex = Extractor::new(opts);
    let info = file::for_each_packet(data, &mut |pkt| ex.packet(&pkt))?;
    let unsupported = ex.unsupported_link_packets;
    let messages = ex.finish();
    Ok(CaptureSummary {
        format: info.format,
        messages,
        packets: info.packets,
        link_types: info.link_types,
        unsupported_link_packets: unsupported,
        cut_off_at: info.cut_off_at,
    })
}

/// Where a transport payload came from, passed down the layers.
#[derive(Debug, Clone, Copy)]
struct Origin {
    frame: u32,
    ts: f64,
    src: IpAddr,
    dst: IpAddr,
}

/// Per-file decoding state: the reassembly tables and the messages found so far.
struct Extractor<'o> {
    opts: &'o Options,
    frags: frag::FragTable,
    tcp: tcp::TcpTable,
    out: Vec<CapturedMessage>,
    unsupported_link_packets: u32,
}

impl<'o> Extractor<'o> {
    fn new(opts: &'o Options) -> Self {
        Extractor {
            opts,
            frags: frag::FragTable::default(),
            tcp: tcp::TcpTable::default(),
            out: Vec::new(),
            unsupported_link_packets: 0,
        }
    }

    fn is_dns(&self, sport: u16, dport: u16) -> bool {
        self.opts.ports.contains(&sport) || self.opts.ports.contains(&dport)
    }

    fn packet(&mut self, pkt: &file::Packet<'_>) {
        if !link::is_supported(pkt.link_type) {
            self.unsupported_link_packets = self.unsupported_link_packets.saturating_add(1);
            return;
        }
        let Some(l3) = link::decode(pkt.link_type, pkt.data) else {
            return;
        };
        let parsed = match l3 {
            link::L3::V4(b) => ip::parse_v4(b),
            link::L3::V6(b) => ip::parse_v6(b),
        };
        match parsed {
            Some(ip::Parsed::Whole(d)) => {
                let origin = Origin {
                    frame: pkt.frame,
                    ts: pkt.ts,
                    src: d.src,
                    dst: d.dst,
                };
                self.transport(origin, d.proto, d.payload, d.cut);
            }
            Some(ip::Parsed::Fragment(f)) => {
                let mut done = Vec::new();
                self.frags.insert(&f, pkt.frame, pkt.ts, &mut done);
                self.reassembled(done);
            }
            None => {}
        }
    }

    /// Hands datagrams that left the fragment table (complete, or incomplete ones that were
    /// evicted or left at the end) to the transport layer.
    fn reassembled(&mut self, done: Vec<frag::Reassembled>) {
        for r in done {
            let origin = Origin {
                frame: r.frame,
                ts: r.ts,
                src: r.src,
                dst: r.dst,
            };
            // An IPv6 datagram's fragmentable part may start with more extension headers.
            let inner = if r.src.is_ipv6() {
                ip::walk_v6_ext(r.proto, &r.payload)
            } else {
                Some((r.proto, r.payload.as_slice()))
            };
            let Some((proto, payload)) = inner else {
                continue;
            };
            if r.complete {
                self.transport(origin, proto, payload, false);
            } else if proto == ip::PROTO_UDP {
                // Only the UDP header and the first bytes are here; a TCP segment missing
                // its tail cannot be placed in a stream meaningfully, so it is dropped.
                self.transport(origin, proto, payload, true);
            }
        }
    }

    fn transport(&mut self, origin: Origin, proto: u8, payload: &[u8], cut: bool) {
        match proto {
            ip::PROTO_UDP => {
                let Some(u) = udp::parse(payload) else {
                    return;
                };
                if !self.is_dns(u.sport, u.dport) {
                    return;
                }
                self.out.push(CapturedMessage {
                    frame: origin.frame,
                    ts: origin.ts,
                    transport: Transport::Udp,
                    src: SocketAddr::new(origin.src, u.sport),
                    dst: SocketAddr::new(origin.dst, u.dport),
                    bytes: u.payload.to_vec(),
                    truncated: cut || u.truncated,
                });
            }
            ip::PROTO_TCP => {
                let Some(seg) = tcp::parse(payload) else {
                    return;
                };
                if !self.is_dns(seg.sport, seg.dport) {
                    return;
                }
                let src = SocketAddr::new(origin.src, seg.sport);
                let dst = SocketAddr::new(origin.dst, seg.dport);
                self.tcp
                    .segment(src, dst, &seg, origin.frame, origin.ts, &mut self.out);
            }
            _ => {}
        }
    }

    fn finish(mut self) -> Vec<CapturedMessage> {
        let leftovers = std::mem::take(&mut self.frags).finish();
        self.reassembled(leftovers);
        std::mem::take(&mut self.tcp).finish(&mut self.out);
        // Stable: messages of one frame keep the order they were found in.
        self.out.sort_by_key(|m| m.frame);
        self.out
    }
}
