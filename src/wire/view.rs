//! The hot-path view: what a forwarder needs from every packet, found without
//! allocating or decoding RDATA.
//!
//! [`MessageView::parse`] reads the header and the first question, steps over the
//! remaining names and record headers (so the framing is checked as far as the last
//! record) and notes where the OPT record is. Names are not copied: the view keeps
//! offsets into the message. Only the first question's name is followed through its
//! compression pointers (when it is read or compared); other names are skipped in place,
//! their pointers checked to point backwards but not followed.
use super::name::{skip_name, walk_name};
use super::{
    offset_in, parse_header, to_parse_error, Class, ErrorKind, Header, ParseError, RType,
    WireError, MAX_NAME_LEN,
};

fn truncated(at: &[u8]) -> nom::Err<WireError<'_>> {
    nom::Err::Error(WireError::new(at, ErrorKind::Truncated))
}

/// Where the OPT record is and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptView {
    /// Offset of the OPT record's first octet (its owner name).
    pub offset: usize,
    /// Octets the record takes.
    pub len: usize,
    pub udp_size: u16,
    pub ext_rcode: u8,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// The first question, by offsets into the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuestionView {
    /// Offset of QNAME.
    name_at: usize,
    /// Its uncompressed wire length if it sits whole at `name_at` (the first question
    /// always does: a pointer must target an offset past the header and before the
    /// name's start, and there is none), else 0.
    whole_len: usize,
    qtype: RType,
    qclass: Class,
}

/// Cheap, allocation-free view of a message (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    msg: &'a [u8],
    pub header: Header,
    question: Option<QuestionView>,
    pub opt: Option<OptView>,
    /// Offset just past the last record the header counts (bytes after it are
    /// trailing garbage).
    pub end: usize,
    /// Offset just past the question section (of the first record).
    records_at: usize,
}

impl<'a> MessageView<'a> {
    /// Reads the header, the first question and the position of the OPT record.
    /// Fails on framing errors (running out of bytes, RDATA overrunning the message, a
    /// bad first QNAME, bad labels or forward pointers in any name) but does not look
    /// inside RDATA, does not follow the pointers of names after the first question and
    /// ignores trailing bytes (see `end`). So it accepts everything
    /// [`super::parse_message`] accepts, and some messages it rejects.
    pub fn parse(msg: &'a [u8]) -> Result<MessageView<'a>, ParseError> {
        Self::walk(msg, |_, _| ()).map_err(|e| to_parse_error(msg, e))
    }

    /// The one walk over the message, for the view and for [`record_ttls`]: `on_record`
    /// gets the offset of each record's TTL field and its type.
    fn walk(
        msg: &'a [u8],
        mut on_record: impl FnMut(usize, RType),
    ) -> Result<MessageView<'a>, nom::Err<WireError<'a>>> {
        let (mut i, header) = parse_header(msg)?;
        let mut question = None;
        for n in 0..header.qdcount {
            let name_at = offset_in(msg, i);
            // The first QNAME is followed through its pointers (it is what gets read and
            // compared); the others are stepped over in place.
            let (rest, whole_len) = if n == 0 {
                let (rest, len) = walk_name(msg, i, |_| ())?;
                let whole = offset_in(msg, rest) - name_at == len;
                (rest, if whole { len } else { 0 })
            } else {
                (skip_name(msg, i)?.0, 0)
            };
            let Some((fixed, rest)) = rest.split_first_chunk::<4>() else {
                return Err(truncated(rest));
            };
            if n == 0 {
                let [t0, t1, c0, c1] = *fixed;
                question = Some(QuestionView {
                    name_at,
                    whole_len,
                    qtype: RType(u16::from_be_bytes([t0, t1])),
                    qclass: Class(u16::from_be_bytes([c0, c1])),
                });
            }
            i = rest;
        }
        let records_at = offset_in(msg, i);
        let mut opt = None;
        let records = usize::from(header.ancount) + usize::from(header.nscount);
        for n in 0..records + usize::from(header.arcount) {
            let start = i;
            let (rest, ()) = skip_name(msg, i)?;
            // TYPE, CLASS, TTL, RDLENGTH: 10 octets read at once (hot path).
            let Some((fixed, rest)) = rest.split_first_chunk::<10>() else {
                return Err(truncated(rest));
            };
            let [t0, t1, c0, c1, l0, l1, l2, _, r0, r1] = *fixed;
            // The TTL sits 4 octets into the 10 just read.
            on_record(
                offset_in(msg, rest) - 6,
                RType(u16::from_be_bytes([t0, t1])),
            );
            let rdlength = usize::from(u16::from_be_bytes([r0, r1]));
            let Some(rest) = rest.get(rdlength..) else {
                return Err(truncated(rest));
            };
            if u16::from_be_bytes([t0, t1]) == RType::OPT.0 {
                // The owner must be the root; it may be a pointer to one, so follow it
                // (one OPT per message: cheap).
                let mut labels = 0;
                let root = walk_name(msg, start, |_| labels += 1).is_ok() && labels == 0;
                if n < records || opt.is_some() || !root {
                    return Err(nom::Err::Error(WireError::new(start, ErrorKind::BadOpt)));
                }
                opt = Some(OptView {
                    offset: offset_in(msg, start),
                    len: start.len() - rest.len(),
                    udp_size: u16::from_be_bytes([c0, c1]),
                    ext_rcode: l0,
                    version: l1,
                    dnssec_ok: l2 & 0x80 != 0,
                });
            }
            i = rest;
        }
        Ok(MessageView {
            msg,
            header,
            question,
            opt,
            end: offset_in(msg, i),
            records_at,
        })
    }

    /// Offset of the first record (just past the question section).
    pub fn records_at(&self) -> usize {
        self.records_at
    }

    /// The message the view looks at.
    pub fn bytes(&self) -> &'a [u8] {
        self.msg
    }

    /// QTYPE and QCLASS of the first question, if there is one.
    pub fn qtype_qclass(&self) -> Option<(RType, Class)> {
        self.question.map(|q| (q.qtype, q.qclass))
    }

    /// The first question's name as it sits in the message: uncompressed wire form, in
    /// the sender's spelling (`None` if there is no question). No copy, no second walk.
    pub fn qname(&self) -> Option<&'a [u8]> {
        let q = self.question?;
        self.msg
            .get(q.name_at..q.name_at + q.whole_len)
            .filter(|n| !n.is_empty())
    }

    /// Copies the first question's name, uncompressed, into `out` and returns its wire
    /// length (0 if there is no question). With `lowercase`, ASCII letters are folded.
    pub fn qname_wire(&self, out: &mut [u8; MAX_NAME_LEN], lowercase: bool) -> usize {
        let Some(q) = self.question else {
            return 0;
        };
        if let Some(name) = self.qname() {
            let Some(dst) = out.get_mut(..name.len()) else {
                return 0;
            };
            dst.copy_from_slice(name);
            if lowercase {
                dst.make_ascii_lowercase();
            }
            return name.len();
        }
        let Some(start) = self.msg.get(q.name_at..) else {
            return 0;
        };
        let mut len = 0;
        let mut push = |b: u8| {
            if let Some(slot) = out.get_mut(len) {
                *slot = if lowercase { b.to_ascii_lowercase() } else { b };
                len += 1;
            }
        };
        let walked = walk_name(self.msg, start, |label| {
            push(label.len() as u8);
            label.iter().for_each(|&b| push(b));
        });
        push(0);
        if walked.is_err() {
            return 0;
        }
        len
    }

    /// Whether both first questions ask the same thing: QTYPE, QCLASS and QNAME, the
    /// name compared ignoring ASCII case (RFC 4343), e.g. a response against its query.
    pub fn same_question(&self, other: &MessageView<'_>) -> bool {
        if self.qtype_qclass() != other.qtype_qclass() || self.question.is_none() {
            return false;
        }
        let (mut a, mut b) = ([0u8; MAX_NAME_LEN], [0u8; MAX_NAME_LEN]);
        let (la, lb) = (
            self.qname_wire(&mut a, true),
            other.qname_wire(&mut b, true),
        );
        la != 0 && a.get(..la) == b.get(..lb)
    }

    /// The largest response the sender of this query accepts over UDP: 512 without
    /// EDNS, else its advertised size but at least 512 (RFC 6891 §6.2.3, §6.2.5).
    pub fn max_udp_response(&self) -> usize {
        self.opt.map_or(super::CLASSIC_UDP_LEN, |o| {
            usize::from(o.udp_size).max(super::CLASSIC_UDP_LEN)
        })
    }
}

/// Where the TTL of every record (answer, authority and additional) sits in `msg`, with
/// the record's type: the cache rewrites TTLs in place rather than re-encoding.
pub fn record_ttls(msg: &[u8]) -> Result<Vec<(usize, RType)>, ParseError> {
    let mut out = Vec::new();
    MessageView::walk(msg, |at, rtype| out.push((at, rtype)))
        .map_err(|e| to_parse_error(msg, e))?;
    Ok(out)
}
