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

mod extract;
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
use std::net::SocketAddr;

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
    let mut ex = extract::Extractor::new(opts);
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
