//! Domain names (RFC 1035 §3.1, §4.1.4): parsing against the whole message, with
//! compression pointers resolved under one rule that rules out loops and forward jumps.
//!
//! A [`Name`] holds the uncompressed wire form (length-prefixed labels and the root
//! octet, at most 255 octets). It keeps the case it was sent with; `Eq` and `Hash`
//! ignore ASCII case (RFC 4343), so `Example.COM.` and `example.com.` are one key.
use std::fmt;
use std::hash::{Hash, Hasher};

use super::{fail, offset_in, ErrorKind, PResult, HEADER_LEN, MAX_LABEL_LEN, MAX_NAME_LEN};

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
/// uncompressed wire length. This is the only function that follows compression pointers.
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
pub(crate) fn walk_name<'a>(
    msg: &'a [u8],
    i: &'a [u8],
    on_label: impl FnMut(&'a [u8]),
) -> PResult<'a, usize> {
    walk(msg, i, true, on_label)
}

/// The walk behind [`walk_name`] and [`skip_name`]; with `follow` false it stops at the
/// first pointer (after checking it) instead of jumping. Inlined: left to itself the
/// compiler stopped inlining it into its hot callers in some builds (+400 instructions
/// a forwarded miss, by cachegrind).
#[inline]
fn walk<'a>(
    msg: &'a [u8],
    i: &'a [u8],
    follow: bool,
    mut on_label: impl FnMut(&'a [u8]),
) -> PResult<'a, usize> {
    // Plain slice operations rather than nom primitives: this loop runs for every label
    // of every name, and each step is a bounds-checked split.
    let mut cur = i;
    let mut after_first_run: Option<&'a [u8]> = None;
    let mut run_start = offset_in(msg, i);
    let mut wire_len = 1; // the root octet
    loop {
        let Some((&len, after)) = cur.split_first() else {
            return fail(cur, ErrorKind::Truncated);
        };
        match len & 0xC0 {
            0x00 if len == 0 => return Ok((after_first_run.unwrap_or(after), wire_len)),
            0x00 => {
                let Some((label, after)) = after.split_at_checked(usize::from(len)) else {
                    return fail(after, ErrorKind::Truncated);
                };
                wire_len += 1 + usize::from(len);
                if wire_len > MAX_NAME_LEN {
                    return fail(cur, ErrorKind::NameTooLong);
                }
                on_label(label);
                cur = after;
            }
            0xC0 => {
                let Some((&low, after)) = after.split_first() else {
                    return fail(after, ErrorKind::Truncated);
                };
                let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                if target >= run_start || target < HEADER_LEN {
                    let target = target as u16; // < 0x4000, fits
                    return fail(cur, ErrorKind::BadPointer { target });
                }
                let rest = *after_first_run.get_or_insert(after);
                if !follow {
                    return Ok((rest, wire_len));
                }
                run_start = target;
                // target < run_start <= msg.len(), so the slice exists.
                cur = msg.get(target..).unwrap_or_default();
            }
            _ => return fail(cur, ErrorKind::BadLabelType(len)),
        }
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

/// Skips a name in place without following its pointer (hot path): the labels up to
/// the root octet or a pointer are bounds-checked, and a pointer must point before the
/// name's start and past the header, so it could not loop or jump forward. Where the
/// pointer leads is not read; [`parse_name`] is what checks that.
pub(crate) fn skip_name<'a>(msg: &'a [u8], i: &'a [u8]) -> PResult<'a, ()> {
    walk(msg, i, false, |_| ()).map(|(rest, _)| (rest, ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ParseError;

    fn parse_at(msg: &[u8], at: usize) -> Result<Name, ParseError> {
        parse_name(msg, &msg[at..])
            .map(|(_, n)| n)
            .map_err(|e| crate::wire::to_parse_error(msg, e))
    }

    #[rustfmt::skip]
    const TWO_NAMES: &[u8] = &[
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,        // header (zeroed)
        3, b'w', b'w', b'w',                        // 12: www
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // 16: example
        3, b'c', b'o', b'm', 0,                     // 24: com .
        3, b'f', b't', b'p', 0xC0, 16,              // 29: ftp -> example.com
    ];

    #[test]
    fn follows_backward_pointer() {
        let n = parse_at(TWO_NAMES, 29).unwrap();
        assert_eq!(n.to_string(), "ftp.example.com.");
        assert_eq!(n.wire_len(), 17);
        let (rest, _) = parse_name(TWO_NAMES, &TWO_NAMES[29..]).unwrap();
        assert!(rest.is_empty(), "rest starts right after the pointer");
    }

    #[test]
    fn rejects_pointer_to_itself() {
        let msg = [&[0u8; 12][..], &[0xC0, 12]].concat();
        let e = parse_at(&msg, 12).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadPointer { target: 12 });
        assert_eq!(e.offset, 12);
    }

    #[test]
    fn rejects_forward_pointer() {
        let msg = [&[0u8; 12][..], &[0xC0, 14, 1, b'a', 0]].concat();
        let e = parse_at(&msg, 12).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadPointer { target: 14 });
    }

    #[test]
    fn rejects_pointer_cycle() {
        // 12: "a" -> 16; 16: "b" -> 12. The second jump is not below the first target.
        #[rustfmt::skip]
        let msg = [&[0u8; 12][..], &[
            1, b'a', 0xC0, 16,      // 12
            1, b'b', 0xC0, 12,      // 16
        ]].concat();
        let e = parse_at(&msg, 16).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadPointer { target: 16 });
        assert_eq!(e.offset, 14);
    }

    #[test]
    fn rejects_pointer_into_own_run() {
        // "www" then a pointer back into the middle of the same name.
        let msg = [&[0u8; 12][..], &[3, b'w', b'w', b'w', 0xC0, 13]].concat();
        let e = parse_at(&msg, 12).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadPointer { target: 13 });
    }

    #[test]
    fn rejects_reserved_label_types() {
        for t in [0x40u8, 0x80] {
            let msg = [&[0u8; 12][..], &[t | 1, b'a', 0]].concat();
            assert_eq!(
                parse_at(&msg, 12).unwrap_err().kind,
                ErrorKind::BadLabelType(t | 1)
            );
        }
    }

    #[test]
    fn rejects_name_of_256_octets() {
        // 4 labels of 63 = 256 octets, then a 1-octet label: 256 + ... too long.
        let mut wire = Vec::new();
        for _ in 0..4 {
            wire.push(63);
            wire.extend_from_slice(&[b'a'; 63]);
        }
        wire.push(0); // 4*64 + 1 = 257
        let msg = [&[0u8; 12][..], &wire].concat();
        assert_eq!(parse_at(&msg, 12).unwrap_err().kind, ErrorKind::NameTooLong);
        // 3*64 + 62 + 1 = 255: the longest legal name.
        let mut wire = Vec::new();
        for _ in 0..3 {
            wire.push(63);
            wire.extend_from_slice(&[b'a'; 63]);
        }
        wire.push(61);
        wire.extend_from_slice(&[b'b'; 61]);
        wire.push(0);
        assert_eq!(wire.len(), 255);
        let msg = [&[0u8; 12][..], &wire].concat();
        assert_eq!(parse_at(&msg, 12).unwrap().wire_len(), 255);
    }

    #[test]
    fn running_off_the_end_is_truncated() {
        // The name at 12 ends at 29; every shorter buffer cuts it.
        for n in 12..29 {
            let cut = &TWO_NAMES[..n];
            let e = parse_at(cut, 12).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Truncated, "cut at {n}");
        }
    }

    #[test]
    fn equality_ignores_ascii_case_but_keeps_spelling() {
        let a = Name::from_ascii("WwW.Example.COM").unwrap();
        let b = Name::from_ascii("www.example.com.").unwrap();
        assert_eq!(a, b);
        assert!(!a.eq_exact(&b));
        assert_eq!(a.to_string(), "WwW.Example.COM.");
        use std::collections::hash_map::DefaultHasher;
        let h = |n: &Name| {
            let mut s = DefaultHasher::new();
            n.hash(&mut s);
            s.finish()
        };
        assert_eq!(h(&a), h(&b));
        // Only ASCII letters fold: 0xC4 and 0xE4 are different octets.
        let c = Name::from_labels([&[0xC4u8][..]]).unwrap();
        let d = Name::from_labels([&[0xE4u8][..]]).unwrap();
        assert_ne!(c, d);
    }

    #[test]
    fn presentation_escapes_round_trip() {
        let n = Name::from_labels([&b"a.b"[..], &[0x01, b' ', b'\\'][..], b"x"]).unwrap();
        assert_eq!(n.to_string(), "a\\.b.\\001\\032\\\\.x.");
        assert!(Name::from_ascii(&n.to_string()).unwrap().eq_exact(&n));
        assert_eq!(Name::root().to_string(), ".");
        assert!(Name::from_ascii(".").unwrap().is_root());
        assert_eq!(Name::from_ascii("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(
            Name::from_ascii(&"x".repeat(64)),
            Err(NameError::LabelTooLong)
        );
        assert_eq!(Name::from_ascii("\\25"), Err(NameError::BadEscape));
        assert_eq!(Name::from_ascii("\\256"), Err(NameError::BadEscape));
    }
}
