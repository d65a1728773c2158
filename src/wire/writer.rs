//! Encoding: a growable buffer with a hard size limit and a name-compression table.
//!
//! Every `Writer` method that appends returns `false`, and appends nothing, when the
//! value would not fit under the limit; callers roll back to a [`Mark`] to drop a whole
//! record or RRset, which is how [`crate::wire::Message::write`] truncates (RFC 2181 §9).
use super::{Name, MAX_POINTER};

/// Most name suffixes remembered for compression (bounds the work per name).
const MAX_COMPRESSION_TARGETS: usize = 64;

/// A position to roll back to.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    len: usize,
    targets: usize,
}

/// Message encoder.
pub struct Writer {
    buf: Vec<u8>,
    limit: usize,
    /// Offsets of label runs already written uncompressed, each the start of a name
    /// suffix a later name may point to. Valid values: offsets ≤ `MAX_POINTER`.
    targets: Vec<u16>,
}

impl Writer {
    /// A writer that will never produce more than `limit` octets.
    pub fn new(limit: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(limit.min(4096)),
            limit,
            targets: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Octets left before the limit.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    /// Sets the limit; octets already written stay.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn mark(&self) -> Mark {
        Mark {
            len: self.buf.len(),
            targets: self.targets.len(),
        }
    }

    /// Forgets everything written since `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        self.buf.truncate(mark.len);
        self.targets.truncate(mark.targets);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn bytes(&mut self, b: &[u8]) -> bool {
        if b.len() > self.remaining() {
            return false;
        }
        self.buf.extend_from_slice(b);
        true
    }

    pub fn u8(&mut self, v: u8) -> bool {
        self.bytes(&[v])
    }

    pub fn u16(&mut self, v: u16) -> bool {
        self.bytes(&v.to_be_bytes())
    }

    pub fn u32(&mut self, v: u32) -> bool {
        self.bytes(&v.to_be_bytes())
    }

    /// A <character-string>: one length octet, then at most 255 octets.
    pub fn char_string(&mut self, s: &[u8]) -> bool {
        match u8::try_from(s.len()) {
            Ok(n) if s.len() < self.remaining() => self.u8(n) && self.bytes(s),
            _ => false,
        }
    }

    /// A 16-bit length, then the octets (EDNS option data).
    pub fn char_string16(&mut self, s: &[u8]) -> bool {
        match u16::try_from(s.len()) {
            Ok(n) if s.len() + 2 <= self.remaining() => self.u16(n) && self.bytes(s),
            _ => false,
        }
    }

    /// Overwrites two octets at `at` (a count or an RDLENGTH written earlier).
    pub fn patch_u16(&mut self, at: usize, v: u16) -> bool {
        match self.buf.get_mut(at..at + 2) {
            Some(field) => {
                field.copy_from_slice(&v.to_be_bytes());
                true
            }
            None => false,
        }
    }

    /// Appends a name. With `compress`, the longest suffix already in the message
    /// (spelled identically, so case survives) is replaced by a pointer to it.
    pub fn name(&mut self, name: &Name, compress: bool) -> bool {
        let mark = self.mark();
        let wire = name.as_wire();
        let mut rest = wire;
        while let Some((&len, _)) = rest.split_first() {
            if len == 0 {
                return self.u8(0) || self.undo(mark);
            }
            if compress {
                if let Some(target) = self.find_suffix(rest) {
                    return self.u16(0xC000 | target) || self.undo(mark);
                }
            }
            let here = self.buf.len();
            let Some((label, tail)) = rest.split_at_checked(1 + usize::from(len)) else {
                return self.undo(mark);
            };
            if !self.bytes(label) {
                return self.undo(mark);
            }
            if here <= MAX_POINTER && self.targets.len() < MAX_COMPRESSION_TARGETS {
                self.targets.push(here as u16);
            }
            rest = tail;
        }
        self.undo(mark)
    }

    fn undo(&mut self, mark: Mark) -> bool {
        self.rollback(mark);
        false
    }

    /// Offset of an earlier name suffix equal (octet for octet) to `suffix`.
    fn find_suffix(&self, suffix: &[u8]) -> Option<u16> {
        let first = suffix.first()?;
        self.targets
            .iter()
            .copied()
            .filter(|&t| self.buf.get(usize::from(t)) == Some(first))
            .find(|&t| self.name_at_equals(usize::from(t), suffix))
    }

    /// Whether the (possibly compressed) name this writer wrote at `at` equals `suffix`.
    /// Everything in `buf` was written by us, so pointers go backwards; the step bound
    /// is there all the same.
    fn name_at_equals(&self, mut at: usize, mut suffix: &[u8]) -> bool {
        for _ in 0..super::MAX_NAME_LEN {
            let Some(&len) = self.buf.get(at) else {
                return false;
            };
            if len & 0xC0 == 0xC0 {
                let Some(&low) = self.buf.get(at + 1) else {
                    return false;
                };
                at = usize::from(len & 0x3F) << 8 | usize::from(low);
                continue;
            }
            let n = 1 + usize::from(len);
            let (Some(ours), Some((theirs, tail))) =
                (self.buf.get(at..at + n), suffix.split_at_checked(n))
            else {
                return false;
            };
            if ours != theirs {
                return false;
            }
            if len == 0 {
                return tail.is_empty();
            }
            at += n;
            suffix = tail;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_shared_suffix_and_keeps_case() {
        let mut w = Writer::new(512);
        w.bytes(&[0; 12]);
        assert!(w.name(&Name::from_ascii("www.example.com").unwrap(), true));
        assert!(w.name(&Name::from_ascii("mail.example.com").unwrap(), true));
        assert!(w.name(&Name::from_ascii("www.example.com").unwrap(), true));
        assert!(w.name(&Name::from_ascii("WWW.example.com").unwrap(), true));
        #[rustfmt::skip]
        let expected: &[u8] = &[
            3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0,
            4, b'm', b'a', b'i', b'l', 0xC0, 16,   // mail -> example.com at 16
            0xC0, 12,                              // www.example.com at 12
            3, b'W', b'W', b'W', 0xC0, 16,          // case differs: only the suffix is shared
        ];
        assert_eq!(&w.as_bytes()[12..], expected);
    }

    #[test]
    fn refuses_what_does_not_fit_and_leaves_nothing() {
        let mut w = Writer::new(10);
        assert!(w.bytes(&[1; 8]));
        assert!(!w.name(&Name::from_ascii("ab").unwrap(), true));
        assert_eq!(w.len(), 8);
        assert!(!w.u32(1));
        assert!(w.u16(1));
        assert!(!w.u8(1));
        assert_eq!(w.len(), 10);
    }

    #[test]
    fn uncompressed_names_are_written_whole() {
        let mut w = Writer::new(512);
        w.name(&Name::from_ascii("a.b").unwrap(), true);
        w.name(&Name::from_ascii("a.b").unwrap(), false);
        assert_eq!(w.as_bytes(), &[1, b'a', 1, b'b', 0, 1, b'a', 1, b'b', 0]);
    }
}
