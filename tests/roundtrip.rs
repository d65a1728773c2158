//! Property tests: every message the writer can produce parses back to itself, with
//! and without a size limit, and name compression never changes a name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::net::{Ipv4Addr, Ipv6Addr};

use dnsfwd::wire::{
    parse_message, Class, Edns, EdnsOption, Header, Message, MessageView, Name, Question, RData,
    RType, Record, Soa, MAX_NAME_LEN,
};
use proptest::prelude::*;

/// Names drawn from a small alphabet of labels so that suffixes repeat (and compress),
/// in mixed case, with the odd octet outside ASCII.
fn name() -> impl Strategy<Value = Name> {
    let label = prop_oneof![
        Just(b"www".to_vec()),
        Just(b"Example".to_vec()),
        Just(b"example".to_vec()),
        Just(b"com".to_vec()),
        Just(b"x".to_vec()),
        prop::collection::vec(any::<u8>(), 1..=63),
    ];
    prop::collection::vec(label, 0..6).prop_filter_map("name too long", |labels| {
        Name::from_labels(labels.iter().map(Vec::as_slice)).ok()
    })
}

/// RDATA of every typed kind plus opaque, for the type that carries it.
fn rdata(bytes: &'static [u8]) -> impl Strategy<Value = (RType, RData<'static>)> {
    let slice =
        (0..bytes.len(), 0..64usize).prop_map(move |(at, n)| &bytes[at..(at + n).min(bytes.len())]);
    let nonempty = slice.clone().prop_filter("empty", |s| !s.is_empty());
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| (RType::A, RData::A(Ipv4Addr::from(a)))),
        any::<[u8; 16]>().prop_map(|a| (RType::AAAA, RData::Aaaa(Ipv6Addr::from(a)))),
        name().prop_map(|n| (RType::NS, RData::Ns(n))),
        name().prop_map(|n| (RType::CNAME, RData::Cname(n))),
        name().prop_map(|n| (RType::PTR, RData::Ptr(n))),
        name().prop_map(|n| (RType::DNAME, RData::Dname(n))),
        (any::<u16>(), name()).prop_map(|(preference, exchange)| (
            RType::MX,
            RData::Mx {
                preference,
                exchange
            }
        )),
        prop::collection::vec(slice.clone(), 1..4).prop_map(|s| (RType::TXT, RData::Txt(s))),
        (name(), name(), any::<[u32; 5]>()).prop_map(|(mname, rname, v)| {
            let [serial, refresh, retry, expire, minimum] = v;
            let soa = Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            };
            (RType::SOA, RData::Soa(Box::new(soa)))
        }),
        (any::<[u16; 3]>(), name()).prop_map(|([priority, weight, port], target)| {
            (
                RType::SRV,
                RData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                },
            )
        }),
        (any::<u8>(), "[a-z0-9]{1,15}", slice.clone()).prop_map(|(flags, tag, value)| {
            let tag: &'static [u8] = Box::leak(tag.into_bytes().into_boxed_slice());
            (RType::CAA, RData::Caa { flags, tag, value })
        }),
        // Types we keep opaque: DNSSEC, SVCB/HTTPS and an unassigned one.
        (
            prop::sample::select(vec![43u16, 46, 47, 48, 50, 64, 65, 65280]),
            nonempty
        )
            .prop_map(|(t, b)| (RType(t), RData::Opaque(b))),
    ]
}

fn record(bytes: &'static [u8]) -> impl Strategy<Value = Record<'static>> {
    (name(), rdata(bytes), any::<u16>(), any::<u32>()).prop_map(|(name, (rtype, rdata), c, ttl)| {
        // Class ANY/NONE with empty RDATA means something else (RFC 2136); avoid them.
        let class = if c == 254 || c == 255 {
            Class::IN
        } else {
            Class(c)
        };
        Record {
            name,
            rtype,
            class,
            ttl,
            rdata,
        }
    })
}

fn edns(bytes: &'static [u8]) -> impl Strategy<Value = Edns<'static>> {
    let option =
        (any::<u16>(), 0..bytes.len(), 0..40usize).prop_map(move |(code, at, n)| EdnsOption {
            code,
            data: &bytes[at..(at + n).min(bytes.len())],
        });
    (
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        any::<bool>(),
        0..0x8000u16,
        prop::collection::vec(option, 0..3),
    )
        .prop_map(
            |(udp_size, ext_rcode, version, dnssec_ok, z, options)| Edns {
                udp_size,
                ext_rcode,
                version,
                dnssec_ok,
                z,
                options,
            },
        )
}

fn message() -> impl Strategy<Value = Message<'static>> {
    let bytes: &'static [u8] = Box::leak(
        (0..=255u8)
            .cycle()
            .take(600)
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let question = (name(), any::<u16>(), any::<u16>()).prop_map(|(qname, t, c)| Question {
        qname,
        qtype: RType(t),
        qclass: Class(c),
    });
    (
        any::<(u16, u16)>(),
        prop::collection::vec(question, 0..3),
        prop::collection::vec(record(bytes), 0..8),
        prop::collection::vec(record(bytes), 0..4),
        prop::collection::vec(record(bytes), 0..4),
        prop::option::of(edns(bytes)),
    )
        .prop_map(
            |((id, flags), questions, answers, authority, mut additional, opt)| {
                if let Some(e) = opt {
                    additional.push(e.to_record());
                }
                let counts = [
                    questions.len(),
                    answers.len(),
                    authority.len(),
                    additional.len(),
                ]
                .map(|n| n as u16);
                Message {
                    header: Header::from_parts(id, flags, counts),
                    questions,
                    answers,
                    authority,
                    additional,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_parse_is_identity(m in message()) {
        let wire = m.to_vec();
        let back = parse_message(&wire).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(&back, &m);
        // Spelling, not just case-insensitive equality, survives compression.
        for (a, b) in back.answers.iter().zip(&m.answers) {
            prop_assert!(a.name.eq_exact(&b.name));
        }
        let view = MessageView::parse(&wire).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(view.header, m.header);
        prop_assert_eq!(view.end, wire.len());
    }

    #[test]
    fn limited_encode_fits_and_parses(m in message(), limit in 12usize..1500) {
        let wire = m.write(limit);
        prop_assert!(wire.len() <= limit.max(12));
        let back = parse_message(&wire).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(back.header.id, m.header.id);
        // Whatever was kept is a prefix of each section, in order.
        prop_assert!(m.questions.starts_with(&back.questions));
        prop_assert!(m.answers.starts_with(&back.answers));
        prop_assert!(m.authority.starts_with(&back.authority));
        if !back.header.tc {
            prop_assert_eq!(&back.questions, &m.questions);
            prop_assert_eq!(&back.answers, &m.answers);
            prop_assert_eq!(&back.authority, &m.authority);
        }
        if m.to_vec().len() <= limit {
            prop_assert_eq!(back, m);
        }
    }

    #[test]
    fn compressed_names_reparse_to_equal_names(names in prop::collection::vec(name(), 1..20)) {
        let m = Message {
            questions: names
                .iter()
                .map(|n| Question { qname: n.clone(), qtype: RType::A, qclass: Class::IN })
                .collect(),
            ..Message::default()
        };
        let wire = m.to_vec();
        let back = parse_message(&wire).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        for (a, b) in back.questions.iter().zip(&names) {
            prop_assert!(a.qname.eq_exact(b));
            prop_assert!(a.qname.wire_len() <= MAX_NAME_LEN);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let full = parse_message(&bytes);
        let view = MessageView::parse(&bytes);
        if let Ok(m) = full {
            prop_assert!(view.is_ok());
            let again = m.to_vec();
            prop_assert_eq!(parse_message(&again).ok(), Some(m));
        }
    }
}
