//! The two answers the policy writes without asking the core: REFUSED with an Extended
//! DNS Error for a source the ACL does not allow, and an empty TC=1 answer (a "slip")
//! for a client over its rate, so that a real client retries over TCP.
//!
//! Both are built with [`crate::wire`]: the query's header with its flags adjusted,
//! its first question echoed when it can be read, and an OPT record only when the
//! query had one (RFC 6891 §7). Neither is ever larger than a minimal query plus 17
//! octets, so they amplify nothing. A message that is not a query (shorter than a
//! header, or QR=1) gets no answer at all: answering responses is how two servers
//! end up bouncing packets between them.
use crate::forward::reply::first_question;
use crate::wire::{parse_header, Edns, EdnsOption, Message, MessageView, Rcode, OUR_UDP_SIZE};

/// EDE INFO-CODE 18, "Prohibited": the client is not authorized (RFC 8914 §4.19).
pub const EDE_PROHIBITED: u16 = 18;

/// REFUSED for a source the ACL does not allow, with EDE 18 when the query had EDNS.
/// `None` when `query` is not a query.
pub fn refused(query: &[u8]) -> Option<Vec<u8>> {
    let data = EDE_PROHIBITED.to_be_bytes();
    let ede = EdnsOption {
        code: EdnsOption::EDE,
        data: &data,
    };
    reply(query, Rcode::REFUSED, false, Some(ede))
}

/// The slip answer: header of the query with QR and TC set, its question, no records.
/// `None` when `query` is not a query.
pub fn truncated(query: &[u8]) -> Option<Vec<u8>> {
    reply(query, Rcode::NOERROR, true, None)
}

fn reply(query: &[u8], rcode: Rcode, tc: bool, ede: Option<EdnsOption<'_>>) -> Option<Vec<u8>> {
    let (_, mut header) = parse_header(query).ok()?;
    if header.qr {
        return None;
    }
    header.qr = true;
    header.aa = false;
    header.tc = tc;
    // Recursion is what a refused client may not have; a slipped one may, over TCP.
    header.ra = tc;
    header.z = false;
    header.ad = false;
    header.rcode = rcode;
    let mut m = Message {
        header,
        ..Message::default()
    };
    // A body we cannot read still gets the header: the client learns its fate.
    if let Ok(view) = MessageView::parse(query) {
        m.questions.extend(first_question(&view));
        if let Some(opt) = view.opt {
            let edns = Edns {
                udp_size: OUR_UDP_SIZE,
                ext_rcode: 0,
                version: 0,
                dnssec_ok: opt.dnssec_ok,
                z: 0,
                options: ede.into_iter().collect(),
            };
            m.additional.push(edns.to_record());
        }
    }
    Some(m.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_message, Class, Header, Name, Question, RType};

    fn query(edns: bool, dnssec_ok: bool) -> Vec<u8> {
        Message {
            header: Header::from_parts(0xBEEF, 0x0110, [0; 4]), // RD, CD
            questions: vec![Question {
                qname: Name::from_ascii("Www.Example.COM").unwrap(),
                qtype: RType::AAAA,
                qclass: Class::IN,
            }],
            additional: edns
                .then(|| {
                    Edns {
                        udp_size: 4096,
                        ext_rcode: 0,
                        version: 0,
                        dnssec_ok,
                        z: 0,
                        options: vec![],
                    }
                    .to_record()
                })
                .into_iter()
                .collect(),
            ..Message::default()
        }
        .to_vec()
    }

    #[test]
    fn refused_carries_ede_prohibited_when_the_query_had_edns() {
        let q = query(true, true);
        let r = refused(&q).unwrap();
        let m = parse_message(&r).unwrap();
        let h = m.header;
        assert_eq!(
            (h.id, h.qr, h.rd, h.cd, h.ra, h.tc),
            (0xBEEF, true, true, true, false, false)
        );
        assert_eq!(m.rcode(), Rcode::REFUSED);
        assert_eq!(m.questions[0].qname.to_string(), "Www.Example.COM.");
        assert_eq!(m.questions[0].qtype, RType::AAAA);
        assert!(m.answers.is_empty() && m.authority.is_empty());
        let e = m.edns().unwrap();
        assert!(e.dnssec_ok);
        assert_eq!(e.udp_size, OUR_UDP_SIZE);
        assert_eq!(
            e.options,
            [EdnsOption {
                code: EdnsOption::EDE,
                data: &[0, 18]
            }]
        );
        assert_eq!(r.len(), q.len() + 6, "the EDE option is all it adds");
    }

    #[test]
    fn refused_without_edns_has_no_opt() {
        let r = refused(&query(false, false)).unwrap();
        let m = parse_message(&r).unwrap();
        assert_eq!(m.rcode(), Rcode::REFUSED);
        assert!(m.additional.is_empty());
        assert_eq!(m.questions.len(), 1);
    }

    #[test]
    fn slip_is_the_query_header_with_tc_and_the_question() {
        let q = query(true, false);
        let r = truncated(&q).unwrap();
        let m = parse_message(&r).unwrap();
        let h = m.header;
        assert_eq!(
            (h.id, h.qr, h.tc, h.rd, h.ra),
            (0xBEEF, true, true, true, true)
        );
        assert_eq!(m.rcode(), Rcode::NOERROR);
        assert_eq!(m.questions.len(), 1);
        assert!(m.answers.is_empty());
        assert_eq!(m.edns().unwrap().options, []);
        let plain = truncated(&query(false, false)).unwrap();
        let plain = parse_message(&plain).unwrap();
        assert!(plain.additional.is_empty() && plain.header.tc);
    }

    #[test]
    fn responses_and_runts_get_nothing_garbage_gets_the_header() {
        let mut resp = query(false, false);
        resp[2] |= 0x80;
        assert_eq!(refused(&resp), None);
        assert_eq!(truncated(&resp), None);
        for n in 0..12 {
            assert_eq!(refused(&resp[..n]), None);
        }
        // A header and a broken question: REFUSED, no question.
        let mut bad = query(false, false);
        bad.truncate(15);
        let r = refused(&bad).unwrap();
        let m = parse_message(&r).unwrap();
        assert_eq!(
            (m.header.id, m.rcode(), m.questions.len()),
            (0xBEEF, Rcode::REFUSED, 0)
        );
        // Every prefix of a valid query is handled without panicking.
        let q = query(true, true);
        for n in 0..q.len() {
            let _ = refused(&q[..n]);
            let _ = truncated(&q[..n]);
        }
    }
}
