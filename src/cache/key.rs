//! What of a query the cache looks at: its key, and who an answer is rendered for.
use super::MAX_KEY_LEN;
use crate::wire::{MessageView, MAX_NAME_LEN};

/// Who an answer is rendered for: what of the client's query shapes it.
#[derive(Debug, Clone)]
pub struct Asker {
    pub id: u16,
    pub rd: bool,
    pub cd: bool,
    /// The question name as the client spelled it, uncompressed wire form
    /// (`qname_len` octets of it).
    pub qname: [u8; MAX_NAME_LEN],
    pub qname_len: usize,
    /// `Some(DO)` if the client sent an OPT record.
    pub edns: Option<bool>,
    /// Largest answer it can take.
    pub max_response: usize,
}

impl Asker {
    /// What of `query` shapes the answer to it; `max_response` per its transport.
    pub fn from_query(query: &MessageView<'_>, max_response: usize) -> Asker {
        let mut qname = [0u8; MAX_NAME_LEN];
        let qname_len = query.qname_wire(&mut qname, false);
        Asker {
            id: query.header.id,
            rd: query.header.rd,
            cd: query.header.cd,
            qname,
            qname_len,
            edns: query.opt.map(|o| o.dnssec_ok),
            max_response,
        }
    }
}

/// The flags octet of a query's key: RD = 4, DO = 2, CD = 1. DO and CD change what an
/// upstream returns; so does RD (an RD=0 query gets only what the upstream has cached,
/// e.g. a CNAME without its target).
pub fn key_flags(query: &MessageView<'_>) -> u8 {
    u8::from(query.header.rd) << 2
        | u8::from(query.opt.is_some_and(|o| o.dnssec_ok)) << 1
        | u8::from(query.header.cd)
}

/// Builds the cache key of a query into `buf`; returns its length, or `None` if the
/// query has no question.
pub fn key_of(query: &MessageView<'_>, buf: &mut [u8; MAX_KEY_LEN]) -> Option<usize> {
    let (qtype, qclass) = query.qtype_qclass()?;
    let mut name = [0u8; MAX_NAME_LEN];
    let n = query.qname_wire(&mut name, true);
    if n == 0 {
        return None;
    }
    let flags = key_flags(query);
    let mut w = 0;
    for b in name
        .get(..n)?
        .iter()
        .chain(&qtype.0.to_be_bytes())
        .chain(&qclass.0.to_be_bytes())
        .chain(&[flags])
    {
        *buf.get_mut(w)? = *b;
        w += 1;
    }
    Some(w)
}
