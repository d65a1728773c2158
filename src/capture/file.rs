//! Walks the packets of a legacy pcap or a pcapng file, using `pcap-parser` for the formats.
//!
//! Legacy pcap: both byte orders, micro- and nanosecond timestamps, and the little-endian
//! "modified" (Kuznetzov) variant. pcapng: any number of sections (each with its own byte
//! order) and interfaces, each interface with its own link type, timestamp resolution and
//! offset; Enhanced and Simple Packet Blocks carry packets.
//!
//! Every packet block counts as one frame, numbered from 1 like Wireshark does, including
//! packets on unknown interfaces and obsolete Packet Blocks (type 2), which are counted but
//! not decoded (pcap-parser does not parse them, and they are long deprecated). A file that
//! ends inside a record stops the walk there (`cut_off_at`); an inconsistent record is an
//! error. Nothing here panics, whatever the bytes.
use pcap_parser::nom;
use pcap_parser::pcapng::{parse_block_be, parse_block_le, parse_sectionheaderblock, Block};
use pcap_parser::{
    parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header,
    LegacyPcapBlock, PcapError,
};

use super::CaptureError;

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Legacy libpcap format.
    Pcap,
    /// pcapng.
    PcapNg,
}

/// One captured packet, as handed to the network decoders.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packet<'a> {
    pub frame: u32,
    pub ts: f64,
    pub link_type: u32,
    /// The captured bytes (at most the snap length; may be shorter than on the wire).
    pub data: &'a [u8],
}

/// What the walk learnt about the file besides its packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub format: Format,
    pub packets: u32,
    pub link_types: Vec<u32>,
    pub cut_off_at: Option<u64>,
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// Legacy pcap magics as they appear in the first four bytes of a file: micro/nanosecond in
/// little- and big-endian order, and the little-endian "modified" format, the only variants
/// pcap-parser reads.
const PCAP_MAGICS: [[u8; 4]; 5] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x34, 0xcd, 0xb2, 0xa1],
];

/// The format whose magic number `data` starts with, if any.
pub(crate) fn detect(data: &[u8]) -> Option<Format> {
    let magic: [u8; 4] = data.get(..4)?.try_into().ok()?;
    if magic == PCAPNG_MAGIC {
        Some(Format::PcapNg)
    } else if PCAP_MAGICS.contains(&magic) {
        Some(Format::Pcap)
    } else {
        None
    }
}

/// Calls `f` for every packet of the capture in `data`, in file order.
pub(crate) fn for_each_packet<'a>(
    data: &'a [u8],
    f: &mut dyn FnMut(Packet<'a>),
) -> Result<FileInfo, CaptureError> {
    match detect(data) {
        Some(Format::Pcap) => walk_pcap(data, f),
        Some(Format::PcapNg) => walk_pcapng(data, f),
        None => Err(CaptureError::NotCapture),
    }
}

fn offset_of(data: &[u8], rest: &[u8]) -> u64 {
    u64::try_from(data.len().saturating_sub(rest.len())).unwrap_or(u64::MAX)
}

fn next_frame(frame: u32) -> Result<u32, CaptureError> {
    frame.checked_add(1).ok_or(CaptureError::TooManyPackets)
}

fn walk_pcap<'a>(data: &'a [u8], f: &mut dyn FnMut(Packet<'a>)) -> Result<FileInfo, CaptureError> {
    let (mut rest, header) = match parse_pcap_header(data) {
        Ok(ok) => ok,
        Err(nom::Err::Incomplete(_)) => {
            return Err(CaptureError::Truncated {
                offset: offset_of(data, &[]),
            })
        }
        Err(_) => return Err(CaptureError::NotCapture),
    };
    // The upper 16 bits of the link type field carry FCS information, not the type.
    let link_type = u32::try_from(header.network.0 & 0xffff).unwrap_or(0);
    let frac_per_sec = if header.is_nanosecond_precision() {
        1e9
    } else {
        1e6
    };
    let parse: FrameParser<'a> = if header.is_modified_format() {
        parse_pcap_frame_modified
    } else if header.is_bigendian() {
        parse_pcap_frame_be
    } else {
        parse_pcap_frame
    };
    let mut info = FileInfo {
        format: Format::Pcap,
        packets: 0,
        link_types: vec![link_type],
        cut_off_at: None,
    };
    while !rest.is_empty() {
        match parse(rest) {
            Ok((next, block)) => {
                info.packets = next_frame(info.packets)?;
                f(Packet {
                    frame: info.packets,
                    ts: f64::from(block.ts_sec) + f64::from(block.ts_usec) / frac_per_sec,
                    link_type,
                    data: block.data,
                });
                rest = next;
            }
            // Legacy records have no inner structure: running out of bytes can only mean
            // the file ends inside this record.
            Err(nom::Err::Incomplete(_)) => {
                info.cut_off_at = Some(offset_of(data, rest));
                break;
            }
            Err(_) => {
                return Err(CaptureError::Malformed {
                    offset: offset_of(data, rest),
                })
            }
        }
    }
    Ok(info)
}

/// One of pcap-parser's legacy record parsers.
type FrameParser<'a> =
    fn(&'a [u8]) -> nom::IResult<&'a [u8], LegacyPcapBlock<'a>, PcapError<&'a [u8]>>;

/// What a pcapng packet needs from its Interface Description Block.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: u32,
    snaplen: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp.
    offset_secs: i64,
}

/// Units per second for an `if_tsresol` value: 10^v, or 2^(v & 0x7f) when the top bit is
/// set. Out-of-range values fall back to the default, microseconds.
fn ts_units(tsresol: u8) -> u64 {
    let units = if tsresol & 0x80 == 0 {
        10u64.checked_pow(u32::from(tsresol))
    } else {
        1u64.checked_shl(u32::from(tsresol & 0x7f))
    };
    units.filter(|&u| u > 0).unwrap_or(1_000_000)
}

fn pcapng_ts(iface: &Interface, high: u32, low: u32) -> f64 {
    let raw = (u64::from(high) << 32) | u64::from(low);
    let units = iface.units_per_sec.max(1);
    // Whole and fractional seconds separately, so that the precision of a large raw count
    // is not lost in one f64 division.
    let secs = (raw / units) as f64 + (raw % units) as f64 / units as f64;
    secs + iface.offset_secs as f64
}

/// Is the Incomplete error for the block at `rest` the file ending inside that block (true),
/// or a block whose content is inconsistent with its own length (false)?
fn block_runs_past_end(rest: &[u8], big_endian: bool) -> bool {
    let Some(len) = rest.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        return true;
    };
    let len = if big_endian {
        u32::from_be_bytes(len)
    } else {
        u32::from_le_bytes(len)
    };
    usize::try_from(len).map_or(true, |len| len > rest.len())
}

fn walk_pcapng<'a>(
    data: &'a [u8],
    f: &mut dyn FnMut(Packet<'a>),
) -> Result<FileInfo, CaptureError> {
    let (mut rest, shb) = match parse_sectionheaderblock(data) {
        Ok(ok) => ok,
        Err(nom::Err::Incomplete(_)) => {
            return Err(CaptureError::Truncated {
                offset: offset_of(data, &[]),
            })
        }
        Err(_) => return Err(CaptureError::Malformed { offset: 0 }),
    };
    let mut big_endian = shb.big_endian();
    let mut interfaces: Vec<Interface> = Vec::new();
    // A set beside the ordered list, so that a file with very many interfaces stays linear.
    let mut seen_types = std::collections::BTreeSet::new();
    let mut info = FileInfo {
        format: Format::PcapNg,
        packets: 0,
        link_types: Vec::new(),
        cut_off_at: None,
    };
    while !rest.is_empty() {
        let parsed = if big_endian {
            parse_block_be(rest)
        } else {
            parse_block_le(rest)
        };
        let (next, block) = match parsed {
            Ok(ok) => ok,
            Err(nom::Err::Incomplete(_)) if block_runs_past_end(rest, big_endian) => {
                info.cut_off_at = Some(offset_of(data, rest));
                break;
            }
            Err(_) => {
                return Err(CaptureError::Malformed {
                    offset: offset_of(data, rest),
                })
            }
        };
        match block {
            Block::SectionHeader(shb) => {
                // A new section: new byte order, and interface numbering starts again.
                big_endian = shb.big_endian();
                interfaces.clear();
            }
            Block::InterfaceDescription(idb) => {
                let link_type = u32::try_from(idb.linktype.0 & 0xffff).unwrap_or(0);
                if seen_types.insert(link_type) {
                    info.link_types.push(link_type);
                }
                interfaces.push(Interface {
                    link_type,
                    snaplen: idb.snaplen,
                    units_per_sec: ts_units(idb.if_tsresol),
                    offset_secs: idb.if_tsoffset,
                });
            }
            Block::EnhancedPacket(epb) => {
                info.packets = next_frame(info.packets)?;
                let iface = usize::try_from(epb.if_id)
                    .ok()
                    .and_then(|i| interfaces.get(i));
                if let Some(iface) = iface {
                    // `data` includes the padding to 32 bits; caplen is the real length.
                    let caplen = usize::try_from(epb.caplen).unwrap_or(usize::MAX);
                    f(Packet {
                        frame: info.packets,
                        ts: pcapng_ts(iface, epb.ts_high, epb.ts_low),
                        link_type: iface.link_type,
                        data: epb.data.get(..caplen).unwrap_or(epb.data),
                    });
                }
            }
            Block::SimplePacket(spb) => {
                info.packets = next_frame(info.packets)?;
                if let Some(iface) = interfaces.first() {
                    // An SPB has no captured length: it is the original length cut to the
                    // snap length, and the rest of `data` is padding. It has no timestamp
                    // either, so its packets are reported at time 0.
                    let mut len = usize::try_from(spb.origlen).unwrap_or(usize::MAX);
                    if iface.snaplen != 0 {
                        len = len.min(usize::try_from(iface.snaplen).unwrap_or(usize::MAX));
                    }
                    f(Packet {
                        frame: info.packets,
                        ts: 0.0,
                        link_type: iface.link_type,
                        data: spb.data.get(..len).unwrap_or(spb.data),
                    });
                }
            }
            // pcap-parser keeps an unknown block's type as read little-endian.
            Block::Unknown(ub)
                if ub.block_type == OBSOLETE_PACKET_BLOCK
                    || ub.block_type == OBSOLETE_PACKET_BLOCK.swap_bytes() =>
            {
                info.packets = next_frame(info.packets)?;
            }
            _ => {}
        }
        rest = next;
    }
    Ok(info)
}

/// Block type of the obsolete pcapng Packet Block, superseded by the Enhanced Packet Block.
const OBSOLETE_PACKET_BLOCK: u32 = 2;
