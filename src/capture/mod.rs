//! Pulls DNS messages out of pcap and pcapng capture files.
//!
//! The file formats are read with `pcap-parser` (in `file`); the network layers below DNS
//! are decoded here by hand: link layers in `link`, IPv4/IPv6 in `ip`, tunnels in
//! `tunnel`, IP fragment reassembly in `frag`, UDP in `udp` and TCP stream reassembly in
//! `tcp`. With [`Options::any_port`], UDP and TCP payloads on other ports are tried as DNS
//! (in `heuristic`).
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
//! * tunnels (see `tunnel`) are removed, at most [`MAX_TUNNEL_DEPTH`] deep; a message found
//!   inside one lists them in [`CapturedMessage::tunnel`];
//! * packets that cannot be decoded (unsupported link type, non-IP, malformed headers,
//!   other ports) are skipped, never an error: only the file structure can fail. What was
//!   seen instead (IP packets, busy ports) is counted in [`CaptureSummary`], with bounded
//!   memory.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod file;
mod frag;
mod heuristic;
mod ip;
mod link;
mod tcp;
mod tunnel;
mod udp;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use file::Format;
pub use tunnel::{Tunnel, MAX_DEPTH as MAX_TUNNEL_DEPTH};

/// The transport a DNS message was carried over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// The tunnels removed to reach the message, outermost first (empty: none).
    pub tunnel: Vec<Tunnel>,
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
    /// Also take UDP/TCP payloads on any other port that look like DNS: a plausible header
    /// and a message that parses whole (see `heuristic`).
    pub any_port: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ports: vec![53],
            any_port: false,
        }
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
    /// Packets in which an IPv4 or IPv6 header was found (outside any tunnel).
    pub ip_packets: u32,
    /// UDP and TCP traffic that was not taken as DNS, by port: for each datagram or
    /// segment, the lower of its two ports (usually the service's). Busiest first, at most
    /// [`MAX_PORTS_SEEN`] ports.
    pub other_ports: Vec<PortCount>,
}

/// Distinct ports counted in [`CaptureSummary::other_ports`]; later ones are not counted.
pub const MAX_PORTS_SEEN: usize = 1024;

/// Packets seen on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortCount {
    pub transport: Transport,
    pub port: u16,
    pub packets: u32,
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

/// The libpcap name of a link type (`"ETHERNET"`, `"IEEE802_11_RADIOTAP"`, ...), for the
/// ones this module decodes and a few common ones it does not.
pub fn link_type_name(link_type: u32) -> Option<&'static str> {
    link::name(link_type)
}

/// Extracts every DNS message (UDP datagram or TCP-framed message to or from one of
/// `opts.ports`) from a pcap or pcapng file held in memory.
///
/// A file cut off in the middle of a record yields the messages before the cut; a file
/// that is not a capture, ends inside its header, or has an inconsistent record is an error.
pub fn read_capture(data: &[u8], opts: &Options) -> Result<Vec<CapturedMessage>, CaptureError> {
    read_capture_detailed(data, opts).map(|s| s.messages)
}

/// Like [`read_capture`], but also reports the file format, packet count, link types,
/// whether the file was cut off, and what was seen besides DNS.
pub fn read_capture_detailed(data: &[u8], opts: &Options) -> Result<CaptureSummary, CaptureError> {
    let mut ex = Extractor::new(opts);
    let info = file::for_each_packet(data, &mut |pkt| ex.packet(&pkt))?;
    let unsupported = ex.unsupported_link_packets;
    let ip_packets = ex.ip_packets;
    let mut other_ports: Vec<PortCount> = ex
        .ports_seen
        .iter()
        .map(|(&(transport, port), &packets)| PortCount {
            transport,
            port,
            packets,
        })
        .collect();
    other_ports.sort_by_key(|p| std::cmp::Reverse(p.packets));
    let messages = ex.finish();
    Ok(CaptureSummary {
        format: info.format,
        messages,
        packets: info.packets,
        link_types: info.link_types,
        unsupported_link_packets: unsupported,
        cut_off_at: info.cut_off_at,
        ip_packets,
        other_ports,
    })
}

/// Where a transport payload came from, passed down the layers.
#[derive(Debug, Clone, Copy)]
struct Origin {
    frame: u32,
    ts: f64,
    src: IpAddr,
    dst: IpAddr,
    tunnel: tunnel::Path,
}

/// Where an IP packet came from: its frame, and the tunnels around it.
#[derive(Debug, Clone, Copy)]
struct Carrier {
    frame: u32,
    ts: f64,
    tunnel: tunnel::Path,
}

/// Per-file decoding state: the reassembly tables and the messages found so far.
struct Extractor<'o> {
    opts: &'o Options,
    frags: frag::FragTable,
    tcp: tcp::TcpTable,
    /// TCP directions taken as DNS by the heuristic (any port), so that their later
    /// segments are too. At most `tcp::MAX_FLOWS`.
    heuristic_flows: std::collections::HashSet<(SocketAddr, SocketAddr)>,
    out: Vec<CapturedMessage>,
    unsupported_link_packets: u32,
    ip_packets: u32,
    ports_seen: std::collections::BTreeMap<(Transport, u16), u32>,
}

impl<'o> Extractor<'o> {
    fn new(opts: &'o Options) -> Self {
        Extractor {
            opts,
            frags: frag::FragTable::default(),
            tcp: tcp::TcpTable::default(),
            heuristic_flows: std::collections::HashSet::new(),
            out: Vec::new(),
            unsupported_link_packets: 0,
            ip_packets: 0,
            ports_seen: std::collections::BTreeMap::new(),
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
        let at = Carrier {
            frame: pkt.frame,
            ts: pkt.ts,
            tunnel: tunnel::Path::default(),
        };
        if self.ip(at, l3) {
            self.ip_packets = self.ip_packets.saturating_add(1);
        }
    }

    /// Decodes one IP packet; false if it was not a well-formed one.
    fn ip(&mut self, at: Carrier, l3: link::L3<'_>) -> bool {
        let parsed = match l3 {
            link::L3::V4(b) => ip::parse_v4(b),
            link::L3::V6(b) => ip::parse_v6(b),
        };
        match parsed {
            Some(ip::Parsed::Whole(d)) => {
                let origin = Origin {
                    frame: at.frame,
                    ts: at.ts,
                    src: d.src,
                    dst: d.dst,
                    tunnel: at.tunnel,
                };
                self.transport(origin, d.proto, d.payload, d.cut);
                true
            }
            Some(ip::Parsed::Fragment(mut f)) => {
                f.tunnel = at.tunnel;
                let mut done = Vec::new();
                self.frags.insert(&f, at.frame, at.ts, &mut done);
                self.reassembled(done);
                true
            }
            None => false,
        }
    }

    /// Decodes the packet found inside a tunnel, unless that is one tunnel too many.
    fn tunnelled(&mut self, origin: Origin, kind: Tunnel, inner: link::L3<'_>) {
        let Some(tunnel) = origin.tunnel.push(kind) else {
            return;
        };
        let at = Carrier {
            frame: origin.frame,
            ts: origin.ts,
            tunnel,
        };
        self.ip(at, inner);
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
                tunnel: r.tunnel,
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
            ip::PROTO_UDP => self.udp(origin, payload, cut),
            ip::PROTO_TCP => self.tcp(origin, payload),
            _ => {
                if let Some((kind, inner)) = tunnel::over_ip(proto, payload) {
                    self.tunnelled(origin, kind, inner);
                }
            }
        }
    }

    /// A datagram is DNS on a DNS port; else it may be a tunnel; else, with `any_port`,
    /// DNS if it looks like it.
    fn udp(&mut self, origin: Origin, payload: &[u8], cut: bool) {
        let Some(u) = udp::parse(payload) else {
            return;
        };
        if !self.is_dns(u.sport, u.dport) {
            if let Some((kind, inner)) = tunnel::over_udp(u.sport, u.dport, u.payload) {
                self.tunnelled(origin, kind, inner);
                return;
            }
            if !(self.opts.any_port && heuristic::looks_like_dns(u.payload)) {
                self.count_port(Transport::Udp, u.sport, u.dport);
                return;
            }
        }
        self.out.push(CapturedMessage {
            frame: origin.frame,
            ts: origin.ts,
            transport: Transport::Udp,
            src: SocketAddr::new(origin.src, u.sport),
            dst: SocketAddr::new(origin.dst, u.dport),
            bytes: u.payload.to_vec(),
            truncated: cut || u.truncated,
            tunnel: origin.tunnel.to_vec(),
        });
    }

    fn tcp(&mut self, origin: Origin, payload: &[u8]) {
        let Some(mut seg) = tcp::parse(payload) else {
            return;
        };
        let src = SocketAddr::new(origin.src, seg.sport);
        let dst = SocketAddr::new(origin.dst, seg.dport);
        if !self.is_dns(seg.sport, seg.dport) && !self.tcp_heuristic(src, dst, seg.payload) {
            self.count_port(Transport::Tcp, seg.sport, seg.dport);
            return;
        }
        seg.tunnel = origin.tunnel;
        self.tcp
            .segment(src, dst, &seg, origin.frame, origin.ts, &mut self.out);
    }

    /// With `any_port`: is this direction DNS? It is once a segment of it started with a
    /// length prefix and a whole message that looks like DNS.
    fn tcp_heuristic(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> bool {
        if !self.opts.any_port {
            return false;
        }
        if self.heuristic_flows.contains(&(src, dst)) {
            return true;
        }
        if !heuristic::looks_like_dns_over_tcp(payload)
            || self.heuristic_flows.len() >= tcp::MAX_FLOWS
        {
            return false;
        }
        self.heuristic_flows.insert((src, dst));
        true
    }

    fn count_port(&mut self, transport: Transport, sport: u16, dport: u16) {
        let key = (transport, sport.min(dport));
        if self.ports_seen.len() < MAX_PORTS_SEEN || self.ports_seen.contains_key(&key) {
            let n = self.ports_seen.entry(key).or_insert(0);
            *n = n.saturating_add(1);
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
