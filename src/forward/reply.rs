//! Answers the forwarder writes itself: errors (FORMERR, NOTIMP, SERVFAIL, REFUSED),
//! answers cut down to the client's UDP size, and merged answers to split queries.
use crate::wire::{
    parse_header, parse_message, Edns, Message, MessageView, Name, Question, RType, Rcode,
    MAX_NAME_LEN,
};

/// UDP payload size we advertise in OPT records we write (the DNS Flag Day 2020 value).
pub const OUR_UDP_SIZE: u16 = 1232;

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
pub(crate) fn our_opt(dnssec_ok: bool) -> crate::wire::Record<'static> {
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
            m.additional.push(our_opt(opt.dnssec_ok));
        }
    }
    Some(m.to_vec())
}

/// `response` cut down to `max` octets for a UDP client (RFC 2181 §9 via
/// [`Message::write`], TC set). If the response cannot be decoded, its header with
/// TC=1 and the query's question stand in for it, so the client retries over TCP.
pub fn fit(response: &[u8], max: usize, query: &MessageView<'_>) -> Vec<u8> {
    if let Ok(m) = parse_message(response) {
        return m.write(max);
    }
    let Ok((_, mut header)) = parse_header(response) else {
        return Vec::new();
    };
    header.tc = true;
    let mut m = Message {
        header,
        ..Message::default()
    };
    m.questions.extend(first_question(query));
    if let Some(opt) = query.opt {
        m.additional.push(our_opt(opt.dnssec_ok));
    }
    m.write(max)
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
