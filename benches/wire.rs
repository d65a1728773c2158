//! Wire-format benchmarks: the hot-path view, the full decode and the encode of a
//! typical 5-answer response (CNAME + 4 A, with EDNS), against an anchor measured in the
//! same run (copying the message into a fresh Vec: one allocation plus a memcpy).
//!
//! Run: `cargo bench --bench wire`. Quote medians and their ratio to the anchor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion};
use dnsfwd::wire::{
    parse_message, set_id, Class, Edns, Header, Message, MessageView, Name, Question, RData, RType,
    Record,
};

fn typical_response() -> Vec<u8> {
    let name = |s: &str| Name::from_ascii(s).unwrap();
    let mut answers = vec![Record {
        name: name("www.example.com"),
        rtype: RType::CNAME,
        class: Class::IN,
        ttl: 3600,
        rdata: RData::Cname(name("www.example.com.cdn.example.net")),
    }];
    answers.extend((1..=4).map(|n| Record {
        name: name("www.example.com.cdn.example.net"),
        rtype: RType::A,
        class: Class::IN,
        ttl: 60,
        rdata: RData::A(Ipv4Addr::new(192, 0, 2, n)),
    }));
    let edns = Edns {
        udp_size: 1232,
        ext_rcode: 0,
        version: 0,
        dnssec_ok: false,
        z: 0,
        options: vec![],
    };
    let m = Message {
        header: Header::from_parts(0x4a7f, 0x8180, [1, 5, 0, 1]),
        questions: vec![Question {
            qname: name("www.example.com"),
            qtype: RType::A,
            qclass: Class::IN,
        }],
        answers,
        authority: vec![],
        additional: vec![edns.to_record()],
    };
    m.to_vec()
}

/// The query for it, as dig sends it: one question and an OPT record with a cookie.
fn typical_query() -> Vec<u8> {
    let edns = Edns {
        udp_size: 1232,
        ext_rcode: 0,
        version: 0,
        dnssec_ok: false,
        z: 0,
        options: vec![dnsfwd::wire::EdnsOption {
            code: 10,
            data: &[7; 8],
        }],
    };
    let m = Message {
        header: Header::from_parts(0x4a7f, 0x0120, [1, 0, 0, 1]),
        questions: vec![Question {
            qname: Name::from_ascii("www.example.com").unwrap(),
            qtype: RType::A,
            qclass: Class::IN,
        }],
        additional: vec![edns.to_record()],
        ..Message::default()
    };
    m.to_vec()
}

fn bench(c: &mut Criterion) {
    let wire = typical_response();
    let mut g = c.benchmark_group("wire");
    g.bench_function("anchor_copy", |b| {
        b.iter(|| black_box(black_box(&wire[..]).to_vec()))
    });
    g.bench_function("view", |b| {
        b.iter(|| MessageView::parse(black_box(&wire)).map(|v| v.header.id))
    });
    let query = typical_query();
    g.bench_function("view_query", |b| {
        b.iter(|| MessageView::parse(black_box(&query)).map(|v| v.max_udp_response()))
    });
    g.bench_function("view_and_set_id", |b| {
        let mut buf = wire.clone();
        b.iter(|| {
            let ok = MessageView::parse(black_box(&buf)).is_ok();
            set_id(&mut buf, 0x1234);
            ok
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| parse_message(black_box(&wire)).map(|m| m.answers.len()))
    });
    let m = parse_message(&wire).unwrap();
    g.bench_function("encode", |b| b.iter(|| black_box(&m).write(1232)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
