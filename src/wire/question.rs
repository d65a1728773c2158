//! The question section entry (RFC 1035 §4.1.2).
use nom::number::complete::be_u16;

use super::{parse_name, Class, Name, PResult, RType, Writer};

/// One question: QNAME, QTYPE, QCLASS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    pub qname: Name,
    pub qtype: RType,
    pub qclass: Class,
}

/// Parses a question at `i`, resolving name compression against `msg`.
pub fn parse_question<'a>(msg: &'a [u8], i: &'a [u8]) -> PResult<'a, Question> {
    let (i, qname) = parse_name(msg, i)?;
    let (i, qtype) = be_u16(i)?;
    let (i, qclass) = be_u16(i)?;
    let question = Question {
        qname,
        qtype: RType(qtype),
        qclass: Class(qclass),
    };
    Ok((i, question))
}

impl Question {
    /// Appends the question; false (and nothing written) if it does not fit.
    pub fn write(&self, w: &mut Writer) -> bool {
        let mark = w.mark();
        let ok = w.name(&self.qname, true) && w.u16(self.qtype.0) && w.u16(self.qclass.0);
        if !ok {
            w.rollback(mark);
        }
        ok
    }
}
