//! A whole message (RFC 1035 §4.1): decode with [`parse_message`], encode with
//! [`Message::write`].
//!
//! The parser checks structure and the placement rules every DNS implementation relies
//! on (counts satisfied, RDATA framed, OPT once and only in the additional section with
//! the root owner, TSIG last, no trailing bytes). Policy (QDCOUNT = 1, opcodes) belongs
//! to the forwarder.
use super::{
    parse_header, parse_question, parse_record, to_parse_error, Edns, ErrorKind, Header,
    ParseError, Question, RType, Rcode, Record, WireError, Writer, HEADER_LEN, MAX_MESSAGE_LEN,
};

/// A decoded message. Octet strings in RDATA borrow from the parsed buffer.
///
/// The header's counts are what was received; [`Message::write`] writes the lengths of
/// the section vectors instead, so they never disagree on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message<'a> {
    pub header: Header,
    pub questions: Vec<Question>,
    pub answers: Vec<Record<'a>>,
    pub authority: Vec<Record<'a>>,
    /// In wire order, the OPT pseudo-record (if any) included.
    pub additional: Vec<Record<'a>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Answer,
    Authority,
    Additional,
}

/// Decodes a whole message. Fails on anything malformed, on counts the message does not
/// satisfy and on bytes left over after the last record.
pub fn parse_message(msg: &[u8]) -> Result<Message<'_>, ParseError> {
    parse_sections(msg).map_err(|e| to_parse_error(msg, e))
}

fn parse_sections(msg: &[u8]) -> Result<Message<'_>, nom::Err<WireError<'_>>> {
    let (mut i, header) = parse_header(msg)?;
    // Capacity from a count is capped: the counts are untrusted.
    let mut questions = Vec::with_capacity(usize::from(header.qdcount).min(4));
    for _ in 0..header.qdcount {
        let (rest, q) = parse_question(msg, i)?;
        questions.push(q);
        i = rest;
    }
    let mut seen_opt = false;
    let (i, answers) = parse_section(msg, i, header.ancount, Section::Answer, &mut seen_opt)?;
    let (i, authority) = parse_section(msg, i, header.nscount, Section::Authority, &mut seen_opt)?;
    let (i, additional) =
        parse_section(msg, i, header.arcount, Section::Additional, &mut seen_opt)?;
    if !i.is_empty() {
        return Err(nom::Err::Error(WireError::new(i, ErrorKind::TrailingBytes)));
    }
    Ok(Message {
        header,
        questions,
        answers,
        authority,
        additional,
    })
}

fn parse_section<'a>(
    msg: &'a [u8],
    mut i: &'a [u8],
    count: u16,
    section: Section,
    seen_opt: &mut bool,
) -> Result<(&'a [u8], Vec<Record<'a>>), nom::Err<WireError<'a>>> {
    let mut records = Vec::with_capacity(usize::from(count).min(16));
    for n in 0..count {
        let start = i;
        let (rest, r) = parse_record(msg, i)?;
        let bad = |kind| Err(nom::Err::Error(WireError::new(start, kind)));
        if r.rtype == RType::OPT {
            // RFC 6891 §6.1.1: at most one, in the additional section, owned by the root.
            if section != Section::Additional || *seen_opt || !r.name.is_root() {
                return bad(ErrorKind::BadOpt);
            }
            *seen_opt = true;
        }
        if r.rtype == RType::TSIG && (section != Section::Additional || n + 1 != count) {
            return bad(ErrorKind::MisplacedTsig);
        }
        records.push(r);
        i = rest;
    }
    Ok((i, records))
}

impl<'a> Message<'a> {
    /// The OPT record decoded, if the message has one.
    pub fn edns(&self) -> Option<Edns<'a>> {
        self.additional.iter().find_map(Edns::from_record)
    }

    /// The full RCODE: the header's 4 bits plus the OPT record's 8 (RFC 6891 §6.1.3).
    pub fn rcode(&self) -> Rcode {
        let ext = self.edns().map_or(0, |e| u16::from(e.ext_rcode));
        Rcode(ext << 4 | (self.header.rcode.0 & 0xF))
    }

    /// The question, if the question section holds exactly one.
    pub fn single_question(&self) -> Option<&Question> {
        match self.questions.as_slice() {
            [q] => Some(q),
            _ => None,
        }
    }

    /// Encodes the message with no limit but the 65535-octet maximum.
    pub fn to_vec(&self) -> Vec<u8> {
        self.write(MAX_MESSAGE_LEN)
    }

    /// Encodes the message in at most `max_size` octets, with name compression.
    ///
    /// When it does not fit, whole RRsets are dropped from the end (RFC 2181 §9): losing
    /// any of the question, answer or authority sections sets TC; losing additional
    /// records does not ("the TC bit should not be set merely because some extra
    /// information could have been included"). Room for the OPT record is reserved
    /// before anything else is written, so it survives truncation (RFC 6891 §7).
    pub fn write(&self, max_size: usize) -> Vec<u8> {
        let max_size = max_size.clamp(HEADER_LEN, MAX_MESSAGE_LEN);
        let opt_room = self
            .additional
            .iter()
            .find(|r| r.rtype == RType::OPT)
            .map_or(0, record_len);
        let mut w = Writer::new(max_size);
        let mut header = self.header;
        w.bytes(&header.to_bytes());
        w.set_limit(max_size.saturating_sub(opt_room));

        let mut qdcount = 0u16;
        let mut complete = true;
        for q in &self.questions {
            complete = complete && q.write(&mut w);
            qdcount += u16::from(complete);
        }
        let (mut ancount, mut nscount) = (0, 0);
        if complete {
            (ancount, complete) = write_section(&mut w, &self.answers);
        }
        if complete {
            (nscount, complete) = write_section(&mut w, &self.authority);
        }
        let arcount = write_additional(&mut w, &self.additional, max_size, !complete);
        header.tc |= !complete;
        (header.qdcount, header.ancount) = (qdcount, ancount);
        (header.nscount, header.arcount) = (nscount, arcount);
        let mut out = w.into_bytes();
        if let Some(h) = out.get_mut(..HEADER_LEN) {
            h.copy_from_slice(&header.to_bytes());
        }
        out
    }
}

/// Writes `records` RRset by RRset (runs of records with the same owner, type and
/// class); stops at the first RRset that does not fit whole, dropping it whole.
/// Returns the number of records written and whether that is all of them.
fn write_section(w: &mut Writer, records: &[Record<'_>]) -> (u16, bool) {
    let mut n = 0u16;
    for set in records.chunk_by(same_rrset) {
        let mark = w.mark();
        if !set.iter().all(|r| r.write(w)) {
            w.rollback(mark);
            return (n, false);
        }
        n = n.saturating_add(set.len() as u16);
    }
    (n, true)
}

/// Writes the additional section in order: RRsets until one does not fit (none at all
/// with `only_opt`), and the OPT record in any case, into the room reserved for it.
fn write_additional(
    w: &mut Writer,
    records: &[Record<'_>],
    max_size: usize,
    only_opt: bool,
) -> u16 {
    let mut n = 0u16;
    let mut full = only_opt;
    for set in records.chunk_by(same_rrset) {
        let is_opt = set.iter().any(|r| r.rtype == RType::OPT);
        if is_opt {
            w.set_limit(max_size);
        } else if full {
            continue;
        }
        let mark = w.mark();
        if set.iter().all(|r| r.write(w)) {
            n = n.saturating_add(set.len() as u16);
        } else {
            w.rollback(mark);
            full = true;
        }
    }
    n
}

fn same_rrset(a: &Record<'_>, b: &Record<'_>) -> bool {
    a.rtype == b.rtype && a.class == b.class && a.name == b.name
}

/// Octets `r` takes uncompressed (an upper bound of what it takes in the message).
fn record_len(r: &Record<'_>) -> usize {
    let mut w = Writer::new(MAX_MESSAGE_LEN);
    r.write(&mut w);
    w.len()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::wire::{Class, Name, RData};

    fn a(name: &str, last: u8) -> Record<'static> {
        Record {
            name: Name::from_ascii(name).unwrap(),
            rtype: RType::A,
            class: Class::IN,
            ttl: 300,
            rdata: RData::A(Ipv4Addr::new(192, 0, 2, last)),
        }
    }

    fn response(answers: usize, additional: usize, edns: bool) -> Message<'static> {
        let mut m = Message {
            header: Header::from_parts(0xBEEF, 0x8180, [0; 4]),
            questions: vec![Question {
                qname: Name::from_ascii("big.example").unwrap(),
                qtype: RType::A,
                qclass: Class::IN,
            }],
            ..Message::default()
        };
        m.answers = (0..answers).map(|n| a("big.example", n as u8)).collect();
        m.additional = (0..additional)
            .map(|n| a(&format!("x{n}.example"), 1))
            .collect();
        if edns {
            let e = Edns {
                udp_size: 1232,
                ext_rcode: 0,
                version: 0,
                dnssec_ok: true,
                z: 0,
                options: vec![],
            };
            m.additional.push(e.to_record());
        }
        m
    }

    #[test]
    fn writes_and_reparses_with_counts_from_sections() {
        let m = response(5, 2, true);
        let wire = m.to_vec();
        let back = parse_message(&wire).unwrap();
        assert_eq!(
            (
                back.header.qdcount,
                back.header.ancount,
                back.header.arcount
            ),
            (1, 5, 3)
        );
        assert_eq!(back.answers, m.answers);
        assert_eq!(back.additional, m.additional);
        assert!(!back.header.tc);
        // Answers' owners are 2-octet pointers to the question; "x0.example." is the
        // label x0 (3 octets) and a pointer to "example." (2): 5 + 10 + 4 = 19 octets.
        assert_eq!(wire.len(), 12 + 17 + 5 * 16 + 2 * 19 + 11);
    }

    #[test]
    fn truncates_answers_whole_rrset_and_sets_tc() {
        let m = response(40, 0, false); // 12 + 17 + 40 * 16 = 669 octets
        let wire = m.write(512);
        assert!(wire.len() <= 512);
        let back = parse_message(&wire).unwrap();
        assert!(back.header.tc);
        // The answer RRset does not fit whole, so none of it is sent (RFC 2181 §9).
        assert!(back.answers.is_empty());
        assert_eq!(back.questions, m.questions);
    }

    #[test]
    fn keeps_opt_when_truncating() {
        let m = response(100, 0, true);
        let wire = m.write(512);
        let back = parse_message(&wire).unwrap();
        assert!(back.header.tc);
        assert_eq!(back.edns().map(|e| e.udp_size), Some(1232));
        assert!(back.edns().unwrap().dnssec_ok);
    }

    #[test]
    fn drops_additional_without_tc() {
        // Two distinct answer RRsets: the first fits, the second does not.
        let mut m = response(3, 30, true);
        m.answers.push(a("other.example", 9));
        let full = m.to_vec();
        assert!(full.len() > 512);
        let wire = m.write(512);
        let back = parse_message(&wire).unwrap();
        assert!(!back.header.tc, "only additional data was left out");
        assert_eq!(back.answers, m.answers);
        assert!(back.additional.len() < m.additional.len());
        assert!(back.edns().is_some(), "OPT survives");
    }

    #[test]
    fn truncates_at_rrset_boundary_in_answer() {
        let mut m = response(3, 0, false);
        m.answers.extend((0..40).map(|n| a("second.example", n)));
        let wire = m.write(512);
        let back = parse_message(&wire).unwrap();
        assert!(back.header.tc);
        assert_eq!(back.answers, m.answers[..3]);
    }

    #[test]
    fn opt_keeps_its_place_before_tsig() {
        let mut m = response(1, 0, true);
        m.additional.push(Record {
            name: Name::from_ascii("key.example").unwrap(),
            rtype: RType::TSIG,
            class: Class::ANY,
            ttl: 0,
            rdata: RData::Opaque(&[1, 2, 3]),
        });
        let wire = m.to_vec();
        let back = parse_message(&wire).unwrap();
        assert_eq!(back.additional, m.additional);
    }

    #[test]
    fn extended_rcode_combines_header_and_opt() {
        let mut m = response(0, 0, false);
        m.header.rcode = Rcode(0x7);
        let e = Edns {
            udp_size: 512,
            ext_rcode: 1,
            version: 0,
            dnssec_ok: false,
            z: 0,
            options: vec![],
        };
        m.additional.push(e.to_record());
        assert_eq!(m.rcode(), Rcode(0x17));
        let wire = m.to_vec();
        assert_eq!(parse_message(&wire).unwrap().rcode(), Rcode(0x17));
    }
}
