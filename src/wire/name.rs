//! Domain names (RFC 1035 §3.1, §4.1.4): parsing against the whole message, with
//! compression pointers resolved under one rule that rules out loops and forward jumps.
//!
//! A [`Name`] holds the uncompressed wire form (length-prefixed labels and the root
//! octet, at most 255 octets). It keeps the case it was sent with; `Eq` and `Hash`
//! ignore ASCII case (RFC 4343), so `Example.COM.` and `example.com.` are one key.
use std::fmt;
use std::hash::{Hash, Hasher};

use super::{
    offset_in, ErrorKind, PResult, ParseError, WireError, HEADER_LEN, MAX_LABEL_LEN, MAX_NAME_LEN,
};

/// A domain name, uncompressed. Valid values: a sequence of labels of 1..=63 octets
/// ending with the root label, at most 255 octets in wire form.
#[derive(Clone)]
pub struct Name {
    wire: Vec<u8>,
}

/// Why a presentation-format name was refused by [`Name::from_ascii`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    EmptyLabel,
    LabelTooLong,
    NameTooLong,
    BadEscape,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            NameError::EmptyLabel => "empty label",
            NameError::LabelTooLong => "label longer than 63 octets",
            NameError::NameTooLong => "name longer than 255 octets",
            NameError::BadEscape => "bad escape sequence",
        };
        f.write_str(s)
    }
}

impl std::error::Error for NameError {}

impl Name {
    /// The root name, `.`.
    pub fn root() -> Name {
        Name { wire: vec![0] }
    }

    /// Builds a name from its labels (without the root label).
    pub fn from_labels<'l>(labels: impl IntoIterator<Item = &'l [u8]>) -> Result<Name, NameError> {
        let mut wire = Vec::with_capacity(32);
        for label in labels {
            if label.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            let len = u8::try_from(label.len())
                .ok()
                .filter(|&n| usize::from(n) <= MAX_LABEL_LEN)
                .ok_or(NameError::LabelTooLong)?;
            wire.push(len);
            wire.extend_from_slice(label);
        }
        wire.push(0);
        if wire.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong);
        }
        Ok(Name { wire })
    }

    /// A name from its uncompressed wire form (as [`crate::wire::MessageView::qname_wire`]
    /// writes it). Fails unless `wire` is exactly a valid name.
    pub fn from_wire(wire: &[u8]) -> Result<Name, NameError> {
        let name = Name::from_labels(Labels { rest: wire })?;
        if name.wire != wire {
            return Err(NameError::EmptyLabel);
        }
        Ok(name)
    }

    /// Parses presentation format (`www.example.com.`, `\.` and `\DDD` escapes). The name
    /// is always taken as absolute; `.` is the root.
    pub fn from_ascii(s: &str) -> Result<Name, NameError> {
        if s == "." {
            return Ok(Name::root());
        }
        let s = s.strip_suffix('.').unwrap_or(s);
        let mut labels: Vec<Vec<u8>> = vec![Vec::new()];
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            let label = labels.last_mut().ok_or(NameError::EmptyLabel)?;
            match b {
                b'.' => labels.push(Vec::new()),
                b'\\' => {
                    let first = bytes.next().ok_or(NameError::BadEscape)?;
                    if first.is_ascii_digit() {
                        let d2 = bytes.next().filter(u8::is_ascii_digit);
                        let d3 = bytes.next().filter(u8::is_ascii_digit);
                        let (d2, d3) = d2.zip(d3).ok_or(NameError::BadEscape)?;
                        let v = u32::from(first - b'0') * 100
                            + u32::from(d2 - b'0') * 10
                            + u32::from(d3 - b'0');
                        label.push(u8::try_from(v).map_err(|_| NameError::BadEscape)?);
                    } else {
                        label.push(first);
                    }
                }
                _ => label.push(b),
            }
        }
        Name::from_labels(labels.iter().map(Vec::as_slice))
    }

    /// The uncompressed wire form, root octet included.
    pub fn as_wire(&self) -> &[u8] {
        &self.wire
    }

    /// The labels, root excluded, in order from the leftmost.
    pub fn labels(&self) -> Labels<'_> {
        Labels { rest: &self.wire }
    }

    /// True for `.`.
    pub fn is_root(&self) -> bool {
        self.wire.len() == 1
    }

    /// Length in wire form (1..=255).
    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    /// Whether the two names are spelled identically, case included.
    pub fn eq_exact(&self, other: &Name) -> bool {
        self.wire == other.wire
    }

    /// The presentation form in lower case (ASCII letters only).
    pub fn to_lowercase_string(&self) -> String {
        let mut s = self.to_string();
        s.make_ascii_lowercase();
        s
    }
}

/// Iterator over the labels of a [`Name`].
pub struct Labels<'n> {
    rest: &'n [u8],
}

impl<'n> Iterator for Labels<'n> {
    type Item = &'n [u8];

    fn next(&mut self) -> Option<&'n [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let (label, rest) = tail.split_at_checked(usize::from(len))?;
        if label.is_empty() {
            return None;
        }
        self.rest = rest;
        Some(label)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.wire.eq_ignore_ascii_case(&other.wire)
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in &self.wire {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// Presentation format (RFC 1035 §5.1): `"().;\@$` are escaped with a backslash, octets
/// outside 0x21..=0x7E as `\DDD`. Always absolute, with the trailing dot.
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for label in self.labels() {
            for &b in label {
                match b {
                    b'"' | b'(' | b')' | b'.' | b';' | b'\\' | b'@' | b'$' => {
                        write!(f, "\\{}", char::from(b))?
                    }
                    0x21..=0x7E => fmt::Write::write_char(f, char::from(b))?,
                    _ => write!(f, "\\{b:03}")?,
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

/// Walks the name that starts at `i` (a slice of `msg`), calling `on_label` for each
/// label, and returns the input after the name as it sits at `i` and the name's
/// uncompressed wire length: [`walk`] for the `nom` parsers. The labels in place must
/// lie within `i` (a name in RDATA ends inside it); pointers lead anywhere in `msg`.
/// `#[inline]`, as `walk`: the cache's walk of every answer calls it per record.
#[inline]
pub(crate) fn walk_name<'a>(
    msg: &'a [u8],
    i: &'a [u8],
    on_label: impl FnMut(&'a [u8]),
) -> PResult<'a, usize> {
    let at = offset_in(msg, i);
    match walk(msg, at, at + i.len(), true, on_label) {
        Ok(w) => Ok((i.get(w.end - at..).unwrap_or_default(), w.wire_len)),
        Err(e) => {
            let rest = msg.get(e.offset..).unwrap_or_default();
            Err(nom::Err::Error(WireError::new(rest, e.kind)))
        }
    }
}

/// A name that [`walk`] read: where it ends in place and its uncompressed wire length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Walked {
    /// Offset just past the name as it sits in the message (past its first pointer).
    pub end: usize,
    /// Octets of the name uncompressed (root octet included); with `follow` false, of
    /// the labels before the first pointer only.
    pub wire_len: usize,
}

/// Walks the name at offset `at` of `msg`, calling `on_label` for each label; with
/// `follow` false it stops at the first pointer (after checking it) instead of jumping.
/// The labels in place must end by offset `limit` (the end of the RDATA that holds the
/// name, or of the message); after a pointer, anywhere in `msg`. This is the only
/// function that follows compression pointers.
///
/// RFC 1035 §4.1.4: "In order to reduce the size of messages, the domain system utilizes
/// a compression scheme which eliminates the repetition of domain names in a message. In
/// this scheme, an entire domain name or a list of labels at the end of a domain name is
/// replaced with a pointer to a prior occurance of the same name."
///
/// "Prior" is enforced strictly: a pointer must target an offset below the start of the
/// run of labels being read (the name's own start, or the previous pointer's target).
/// Each jump therefore lands strictly earlier than the last, which forbids loops,
/// pointers to themselves and forward jumps with one comparison, and bounds the walk by
/// the message length. A pointer into the 12-octet header is refused too: no name
/// occurs there, and a name made of header octets would change when the ID is
/// rewritten in place (as Knot's parser, we call it malformed).
///
/// Offsets rather than `nom` slices: this loop runs for every label of every name the
/// forwarder meets, and an offset is one register where a slice is two (cachegrind: a
/// forwarded miss walks a dozen labels). Every read is a bounds-checked `get`; `at`
/// past the end of `msg` is a truncated name. `#[inline]`: left to itself the compiler
/// stopped inlining it into its hot callers in some builds (+400 instructions a miss).
#[inline]
pub(crate) fn walk<'a>(
    msg: &'a [u8],
    at: usize,
    limit: usize,
    follow: bool,
    mut on_label: impl FnMut(&'a [u8]),
) -> Result<Walked, ParseError> {
    // What may be read: the message up to `limit` until the first jump, then all of it.
    // A prefix of `msg`, so offsets in it are offsets in `msg`.
    let mut run = msg.get(..limit).unwrap_or(msg);
    let mut pos = at;
    // Offset past the first pointer: where the name ends in place.
    let mut end = None;
    let mut run_start = at;
    let mut wire_len = 1; // the root octet
    loop {
        let Some(&len) = run.get(pos) else {
            return Err(error_at(run, pos, ErrorKind::Truncated));
        };
        if len == 0 {
            let end = end.unwrap_or(pos + 1);
            return Ok(Walked { end, wire_len });
        }
        if len <= MAX_LABEL_LEN as u8 {
            let next = pos + 1 + usize::from(len);
            let Some(label) = run.get(pos + 1..next) else {
                return Err(error_at(run, pos + 1, ErrorKind::Truncated));
            };
            wire_len += 1 + usize::from(len);
            if wire_len > MAX_NAME_LEN {
                return Err(error_at(msg, pos, ErrorKind::NameTooLong));
            }
            on_label(label);
            pos = next;
            continue;
        }
        if len & 0xC0 != 0xC0 {
            return Err(error_at(msg, pos, ErrorKind::BadLabelType(len)));
        }
        let Some(&low) = run.get(pos + 1) else {
            return Err(error_at(run, pos + 1, ErrorKind::Truncated));
        };
        let target = usize::from(len & 0x3F) << 8 | usize::from(low);
        if target >= run_start || target < HEADER_LEN {
            let target = target as u16; // < 0x4000, fits
            return Err(error_at(msg, pos, ErrorKind::BadPointer { target }));
        }
        let end = *end.get_or_insert(pos + 2);
        if !follow {
            return Ok(Walked { end, wire_len });
        }
        run_start = target;
        run = msg;
        pos = target;
    }
}

/// The error `kind` at offset `at` of `msg` (an offset past the end counts as the end:
/// `msg` is what the walk may read, a prefix of the message).
/// Out of line: the walk's loop keeps its registers for the labels.
#[cold]
#[inline(never)]
fn error_at(msg: &[u8], at: usize, kind: ErrorKind) -> ParseError {
    ParseError {
        offset: at.min(msg.len()),
        kind,
    }
}

/// Parses a possibly compressed name at `i`, resolving pointers against `msg`.
pub fn parse_name<'a>(msg: &'a [u8], i: &'a [u8]) -> PResult<'a, Name> {
    let mut wire = Vec::with_capacity(32);
    let (rest, _) = walk_name(msg, i, |label| {
        // walk_name only hands out labels of 1..=63 octets.
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
    })?;
    wire.push(0);
    Ok((rest, Name { wire }))
}

#[cfg(test)]
mod tests;
