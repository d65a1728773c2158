//! Answers the forwarder writes itself: errors (FORMERR, NOTIMP, SERVFAIL, REFUSED),
//! answers cut down to the client's UDP size, and merged answers to split queries.
use crate::cache::Asker;
use crate::wire::{
    parse_header, parse_message, push_opt, set_id, Edns, Header, Message, MessageView, Name,
    Question, RType, Rcode, HEADER_LEN, MAX_NAME_LEN,
};

pub use crate::wire::OUR_UDP_SIZE;

/// The first question of a query, decoded from its view.
pub fn first_question(view: &MessageView<'_>) -> Option<Question> {
    let (qtype, qclass) = view.qtype_qclass()?;
    let mut wire = [0u8; MAX_NAME_LEN];
    let len = view.qname_wire(&mut wire, false);
    let qname = Name::from_wire(wire.get(..len)?).ok()?;
    Some(Question {
        qname,
        qtype,
        qclass,
    })
}

/// An OPT record for answers we write to a client that sent one.
pub fn our_opt(dnssec_ok: bool) -> crate::wire::Record<'static> {
    Edns {
        udp_size: OUR_UDP_SIZE,
        ext_rcode: 0,
        version: 0,
        dnssec_ok,
        z: 0,
        options: Vec::new(),
    }
    .to_record()
}

/// An error answer to `query`: its ID, opcode, RD and CD mirrored, RA set, the first
/// question echoed when it could be read, and an OPT record when the query had one.
/// `None` if the query has no header.
pub fn error_reply(query: &[u8], view: Option<&MessageView<'_>>, rcode: Rcode) -> Option<Vec<u8>> {
    let (_, q) = parse_header(query).ok()?;
    let mut header = q;
    header.qr = true;
    header.aa = false;
    header.tc = false;
    header.ra = true;
    header.z = false;
    header.ad = false;
    header.rcode = Rcode(rcode.0 & 0xF);
    let mut m = Message {
        header,
        ..Message::default()
    };
    if let Some(v) = view {
        m.questions.extend(first_question(v));
        if let Some(opt) = v.opt {
            let mut ours = our_opt(opt.dnssec_ok);
            // The upper 8 bits of a 12-bit RCODE (BADVERS) ride in the OPT's TTL.
            ours.ttl |= u32::from((rcode.0 >> 4) as u8) << 24;
            m.additional.push(ours);
        }
    }
    Some(m.to_vec())
}

/// One answer to a query that asked several questions: the client's header and
/// questions, the records of every part in order, the first non-zero RCODE (SERVFAIL if a
/// part failed or did not decode), and one OPT record if the client sent one.
pub fn merge(query: &[u8], parts: &[Option<Vec<u8>>], max: usize) -> Option<Vec<u8>> {
    let original = parse_message(query).ok()?;
    let mut header = original.header;
    header.qr = true;
    header.aa = false;
    header.tc = false;
    header.ra = true;
    header.ad = false;
    let mut m = Message {
        header,
        questions: original.questions.clone(),
        ..Message::default()
    };
    let mut rcode = Rcode::NOERROR;
    let mut failed = false;
    let decoded: Vec<Option<Message<'_>>> = parts
        .iter()
        .map(|p| p.as_deref().and_then(|b| parse_message(b).ok()))
        .collect();
    for part in &decoded {
        match part {
            None => failed = true,
            Some(p) => {
                if rcode == Rcode::NOERROR {
                    rcode = p.rcode();
                }
                m.answers.extend(p.answers.iter().cloned());
                m.authority.extend(p.authority.iter().cloned());
                m.additional.extend(
                    p.additional
                        .iter()
                        .filter(|r| r.rtype != RType::OPT)
                        .cloned(),
                );
            }
        }
    }
    if failed {
        rcode = Rcode::SERVFAIL;
    }
    m.header.rcode = Rcode(rcode.0 & 0xF);
    if let Some(e) = original.edns() {
        let mut opt = our_opt(e.dnssec_ok);
        // Extended RCODE bits, if an upstream sent one.
        opt.ttl |= u32::from((rcode.0 >> 4) as u8) << 24;
        m.additional.push(opt);
    }
    Some(m.write(max))
}

/// Extended DNS Error INFO-CODEs (RFC 8914 §4) for answers we make ourselves.
pub mod ede {
    pub const OTHER: u16 = 0;
    pub const STALE_ANSWER: u16 = 3;
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    pub const NETWORK_ERROR: u16 = 23;
}

/// One EDE option (RFC 8914 §2): OPTION-CODE 15, INFO-CODE, EXTRA-TEXT.
pub fn ede_option(code: u16, text: &str) -> Vec<u8> {
    let mut o = Vec::with_capacity(6 + text.len());
    o.extend_from_slice(&crate::wire::EdnsOption::EDE.to_be_bytes());
    o.extend_from_slice(&((2 + text.len()).min(0xFFFF) as u16).to_be_bytes());
    o.extend_from_slice(&code.to_be_bytes());
    o.extend_from_slice(text.as_bytes());
    o
}

/// The Extended DNS Error options (code 15) in the OPT record at `opt` of `msg`, as
/// encoded options: an upstream's EDE is for the client too (RFC 8914 §3), unlike the
/// rest of its OPT (cookies, NSID, padding: per hop).
fn ede_options(msg: &[u8], opt: &crate::wire::OptView) -> Vec<u8> {
    let mut out = Vec::new();
    let at = opt.offset;
    let owner = match msg.get(at) {
        Some(0) => 1,
        Some(b) if b & 0xC0 == 0xC0 => 2,
        _ => return out,
    };
    let Some(rdata) = msg.get(at + owner + 10..at + opt.len) else {
        return out;
    };
    let mut i = 0;
    while let Some(&[c0, c1, l0, l1]) = rdata.get(i..i + 4) {
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let Some(option) = rdata.get(i..i + 4 + len) else {
            break;
        };
        if u16::from_be_bytes([c0, c1]) == crate::wire::EdnsOption::EDE {
            out.extend_from_slice(option);
        }
        i += 4 + len;
    }
    out
}

fn add_to_arcount(out: &mut [u8], delta: i32) -> Option<()> {
    let ar = out.get_mut(10..12)?;
    let n = i32::from(u16::from_be_bytes([ar[0], ar[1]])) + delta;
    ar.copy_from_slice(&u16::try_from(n).ok()?.to_be_bytes());
    Some(())
}

/// An upstream's answer made for one client (RFC 6891 §7: EDNS is per hop): its ID,
/// its RD and CD bits, its spelling of the question name, our OPT record in place of
/// the upstream's if and only if the client sent one (with the upstream's extended
/// RCODE), everything else as the upstream sent it; cut to the client's size with TC
/// set when it does not fit (RFC 2181 §9). The answer's question must be the query's
/// (the forwarder checked it). `view` is the answer as looked at on arrival (its octets
/// up to `view.end`). Written into `out` (a recycled buffer). `None` if the answer does
/// not decode far enough.
///
/// For one waiter of the query for `key`, whose question the answer's was found to be
/// (letter case aside) when it was accepted: the waiter's `spelling` of the key's name
/// is written over the answer's, without making an [`Asker`] (a 255-octet
/// name) but for the rare answer that must be decoded (`asker`).
pub fn shape_for(
    view: &MessageView<'_>,
    head: &Head,
    key_name: &[u8],
    spelling: &crate::forward::key::Spelling,
    asker: impl FnOnce() -> Asker,
    mut out: Vec<u8>,
) -> Option<Vec<u8>> {
    let answer = view.bytes().get(..view.end)?;
    if view.tsig {
        // The upstream's TSIG (unasked: we sign nothing) is taken out, as our OPT cannot
        // follow it and its MAC no longer holds once the ID is the client's.
        return shape_decoded(answer, &asker());
    }
    let (end, ext_rcode) = match view.opt {
        None => (view.end, 0),
        Some(o) if o.offset + o.len == view.end => (o.offset, o.ext_rcode),
        // An OPT record that is not last: rare enough to decode and re-encode.
        Some(_) => return shape_decoded(answer, &asker()),
    };
    out.clear();
    out.extend_from_slice(answer.get(..end)?);
    set_id(&mut out, head.id);
    let flags = out.get_mut(2..4)?;
    flags[0] = (flags[0] & 0xFE) | u8::from(head.rd);
    flags[1] = (flags[1] & 0xEF) | u8::from(head.cd) << 4;
    if view.opt.is_some() {
        add_to_arcount(&mut out, -1)?;
    }
    // The first question sits whole at offset 12; checked equal to the key's name
    // (ignoring case), so of the same length.
    if view.qname().is_some_and(|n| n.len() == key_name.len()) {
        if let Some(name) = out.get_mut(HEADER_LEN..) {
            spelling.copy_into(key_name, name);
        }
    }
    if let Some(dnssec_ok) = head.edns {
        // The upstream's EDE options are looked for only for a client that gets an
        // OPT record to carry them.
        let ede = view.opt.map_or_else(Vec::new, |o| ede_options(answer, &o));
        push_opt(&mut out, ext_rcode, dnssec_ok, &ede);
    }
    if out.len() > head.max_response {
        return Some(cut(&out, head.max_response));
    }
    Some(out)
}

/// What of a client's query shapes an answer to it, its spelling of the name aside.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub id: u16,
    pub rd: bool,
    pub cd: bool,
    /// `Some(DO)` if the client sent an OPT record.
    pub edns: Option<bool>,
    /// Largest answer it can take.
    pub max_response: usize,
}

/// [`shape_for`] for an answer whose OPT record is not last, or with a TSIG record:
/// decoded and written again, without them.
fn shape_decoded(answer: &[u8], asker: &Asker) -> Option<Vec<u8>> {
    let mut m = parse_message(answer).ok()?;
    let ext_rcode = m.edns().map_or(0, |e| e.ext_rcode);
    m.additional
        .retain(|r| r.rtype != RType::OPT && r.rtype != RType::TSIG);
    m.header.id = asker.id;
    m.header.rd = asker.rd;
    m.header.cd = asker.cd;
    if let (Some(q), Some(ours)) = (
        Name::from_wire(asker.qname.get(..asker.qname_len)?).ok(),
        m.questions.first_mut(),
    ) {
        if ours.qname == q {
            ours.qname = q;
        }
    }
    if let Some(dnssec_ok) = asker.edns {
        let mut opt = our_opt(dnssec_ok);
        opt.ttl |= u32::from(ext_rcode) << 24;
        m.additional.push(opt);
    }
    Some(m.write(asker.max_response))
}

/// A message cut to `max` octets with TC=1: whole RRsets dropped from the end (via
/// [`Message::write`]); if it does not decode, its header and question alone, TC=1, so
/// that the client retries over TCP.
fn cut(msg: &[u8], max: usize) -> Vec<u8> {
    if let Ok(m) = parse_message(msg) {
        return m.write(max);
    }
    let Ok((_, mut header)) = parse_header(msg) else {
        return Vec::new();
    };
    header.tc = true;
    let mut m = Message {
        header,
        ..Message::default()
    };
    if let Ok(v) = MessageView::parse(msg) {
        m.questions.extend(first_question(&v));
    }
    m.write(max)
}

/// An error answer of ours (`rcode`) for one waiting client: its ID, RD, CD, its
/// spelling of the question, RA set, and our OPT record if it sent one, with the
/// Extended DNS Error `ede` (INFO-CODE, EXTRA-TEXT) in it.
pub fn error_for(asker: &Asker, type_class: &[u8], rcode: Rcode, ede: (u16, &str)) -> Vec<u8> {
    let flags = 0x8080u16 | u16::from(asker.rd) << 8 | u16::from(asker.cd) << 4 | (rcode.0 & 0xF);
    let mut out = Vec::with_capacity(HEADER_LEN + asker.qname_len + 4 + 11);
    out.extend_from_slice(&Header::from_parts(asker.id, flags, [1, 0, 0, 0]).to_bytes());
    out.extend_from_slice(asker.qname.get(..asker.qname_len).unwrap_or_default());
    out.extend_from_slice(type_class);
    if let Some(dnssec_ok) = asker.edns {
        push_opt(
            &mut out,
            (rcode.0 >> 4) as u8,
            dnssec_ok,
            &ede_option(ede.0, ede.1),
        );
    }
    out
}
