//! DNS wire format: bytes ↔ values (RFC 1035 §4, RFC 3597, RFC 6891).
//!
//! # Panic contract
//! Every function in this module takes bytes that may come straight from the network.
//! None of them panics, loops without bound or allocates in proportion to a count read
//! from the input: a malformed message is an `Err(ParseError)` carrying the offset of the
//! offending byte. Indexing and slicing are denied by lint below; the only ways into a
//! buffer are `get`, `split_at_checked` and the `nom` `complete` parsers, which report
//! short input as [`ErrorKind::Truncated`], never as `Incomplete`.
//!
//! # Layout
//! * [`parse_message`] decodes a whole message; [`Message::write`] encodes one back,
//!   with name compression and RFC 2181 §9 truncation under a size limit.
//! * [`MessageView`] is the hot-path view: header, first question and the position of
//!   the OPT record, found without allocating; [`set_id`] rewrites the ID in place.
//! * Open code points (`Opcode`, `Rcode`, `RType`, `Class`) are newtypes over the wire
//!   integer, so every value, known or not, survives a round trip.
#![deny(clippy::indexing_slicing)]

mod check;
mod edns;
mod header;
mod message;
mod name;
pub mod padding;
mod question;
pub mod rdata;
mod record;
mod view;
mod writer;

pub use check::{rdata_ok, walk_records, walk_viewed_records, Checked, RecordAt, RecordChecks};
pub use edns::{push_opt, Edns, EdnsOption};
pub use header::{parse_header, set_id, Header, Opcode, Rcode};
pub use message::{parse_message, Message};
pub use name::{parse_name, Name, NameError};
pub use question::{parse_question, Question};
pub use rdata::{parse_typed, RdataError, Typed};
pub use record::{
    parse_record, Class, Minfo, NameLayout, Naptr, Px, RData, RType, Record, Rp, Soa,
};
pub use view::{record_ttls, MessageView, OptView};
pub use writer::Writer;

/// Size of the fixed message header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// Longest label (RFC 1035 §2.3.4); the two top bits of a length octet are its type.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest name in wire form, length octets and the root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Highest offset a 14-bit compression pointer can hold (RFC 1035 §4.1.4).
pub const MAX_POINTER: usize = 0x3FFF;
/// Largest DNS message: a TCP frame's length prefix is 16 bits (RFC 1035 §4.2.2).
pub const MAX_MESSAGE_LEN: usize = 65535;
/// Largest UDP response to a client that did not send EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_LEN: usize = 512;
/// UDP payload size we advertise in the OPT records we write (the DNS Flag Day 2020 value).
pub const OUR_UDP_SIZE: u16 = 1232;

/// What is wrong with a message. Small and `Copy`: parsing never allocates for errors.
///
/// `Truncated` ("ran out of bytes") is kept apart from the variants that say the bytes
/// that are there are malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The message ends before the field being read.
    Truncated,
    /// A label length octet with the reserved type bits 01 or 10 (RFC 1035 §4.1.4, RFC 6891 §5).
    BadLabelType(u8),
    /// A name longer than 255 octets in wire form.
    NameTooLong,
    /// A compression pointer that does not point strictly before the run of labels
    /// that contains it (so it could loop or jump forward).
    BadPointer {
        /// Where the pointer points.
        target: u16,
    },
    /// RDATA longer or shorter than its type's fields.
    RdataLength,
    /// A field of a typed RDATA holds a value its type forbids (e.g. an empty CAA tag).
    BadRdata,
    /// As `BadRdata`, for the types decoded on demand ([`rdata`]), saying what is wrong.
    BadField(rdata::Fault),
    /// Bytes left after the last record the header counts.
    TrailingBytes,
    /// An OPT record outside the additional section, a second one, or one whose owner
    /// is not the root (RFC 6891 §6.1.1).
    BadOpt,
    /// EDNS option TLVs that do not exactly fill the OPT RDATA.
    BadEdnsOption,
    /// A TSIG record anywhere but last in the additional section (RFC 8945 §5.1).
    MisplacedTsig,
}

impl ErrorKind {
    /// The variant's name, e.g. `"BadPointer"` (for logs and JSON).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "Truncated",
            ErrorKind::BadLabelType(_) => "BadLabelType",
            ErrorKind::NameTooLong => "NameTooLong",
            ErrorKind::BadPointer { .. } => "BadPointer",
            ErrorKind::RdataLength => "RdataLength",
            ErrorKind::BadRdata | ErrorKind::BadField(_) => "BadRdata",
            ErrorKind::TrailingBytes => "TrailingBytes",
            ErrorKind::BadOpt => "BadOpt",
            ErrorKind::BadEdnsOption => "BadEdnsOption",
            ErrorKind::MisplacedTsig => "MisplacedTsig",
        }
    }
}

/// A parse failure: what went wrong and the offset in the message where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParseError {
    /// Offset from the start of the message.
    pub offset: usize,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl ErrorKind {
    /// What went wrong, in words (no offset).
    pub fn describe(self) -> String {
        match self {
            ErrorKind::Truncated => "message truncated".to_string(),
            ErrorKind::BadLabelType(b) => format!("reserved label type 0x{:02x}", b & 0xC0),
            ErrorKind::NameTooLong => "name longer than 255 octets".to_string(),
            ErrorKind::BadPointer { target } => {
                format!("compression pointer to {target} does not point backwards")
            }
            ErrorKind::RdataLength => "rdata length does not match its type".to_string(),
            ErrorKind::BadRdata => "malformed rdata".to_string(),
            ErrorKind::BadField(fault) => fault.text().to_string(),
            ErrorKind::TrailingBytes => "trailing bytes after the last record".to_string(),
            ErrorKind::BadOpt => "misplaced or duplicate OPT record".to_string(),
            ErrorKind::BadEdnsOption => "malformed EDNS option".to_string(),
            ErrorKind::MisplacedTsig => "TSIG is not the last record".to_string(),
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at offset {}", self.kind.describe(), self.offset)
    }
}

impl std::error::Error for ParseError {}

/// The error type threaded through the `nom` parsers: the kind, and the input slice
/// where it happened. Every slice handed to a parser lies inside the message, so
/// [`WireError::at`] turns it into an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError<'a> {
    /// The unparsed input at the point of failure.
    pub input: &'a [u8],
    /// What went wrong.
    pub kind: ErrorKind,
}

impl<'a> WireError<'a> {
    /// An error of `kind` at the start of `input`.
    pub fn new(input: &'a [u8], kind: ErrorKind) -> Self {
        WireError { input, kind }
    }

    /// The offset of this error inside `msg` (the buffer every parser input came from).
    pub fn at(&self, msg: &[u8]) -> ParseError {
        let offset = (self.input.as_ptr() as usize)
            .wrapping_sub(msg.as_ptr() as usize)
            .min(msg.len());
        ParseError {
            offset,
            kind: self.kind,
        }
    }
}

impl<'a> nom::error::ParseError<&'a [u8]> for WireError<'a> {
    fn from_error_kind(input: &'a [u8], _kind: nom::error::ErrorKind) -> Self {
        // With `complete` parsers the only way a primitive fails is running out of input.
        WireError::new(input, ErrorKind::Truncated)
    }

    fn append(_input: &'a [u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// Result of a wire parser: the rest of the input and the value, or where it failed.
pub type PResult<'a, T> = nom::IResult<&'a [u8], T, WireError<'a>>;

/// Fails with `kind` at `input` (shorthand for the parsers).
pub(crate) fn fail<T>(input: &[u8], kind: ErrorKind) -> PResult<'_, T> {
    Err(nom::Err::Error(WireError::new(input, kind)))
}

/// Turns a nom result into the public error, with offsets relative to `msg`.
pub(crate) fn to_parse_error(msg: &[u8], e: nom::Err<WireError<'_>>) -> ParseError {
    match e {
        nom::Err::Error(w) | nom::Err::Failure(w) => w.at(msg),
        nom::Err::Incomplete(_) => ParseError {
            offset: msg.len(),
            kind: ErrorKind::Truncated,
        },
    }
}

/// Offset of `i` inside `msg` (`i` must be a sub-slice of `msg`; otherwise `msg.len()`).
pub(crate) fn offset_in(msg: &[u8], i: &[u8]) -> usize {
    (i.as_ptr() as usize)
        .wrapping_sub(msg.as_ptr() as usize)
        .min(msg.len())
}
