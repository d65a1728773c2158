//! Cache benchmarks: the hit path (key, lookup, render) for a typical 5-answer response,
//! against two anchors measured in the same run: copying the answer (the floor), and
//! what a miss costs the core (view + pending entry + response validation + relay).
//! `get` is the lookup alone (what the eviction policy adds to a hit), `insert` a
//! refresh of a cached key, `insert_evict` a new key into a full cache (each one evicts).
//! Then the memory of 100,000 entries (printed; RSS from /proc where available).
//!
//! Only the API both the LRU and S3-FIFO caches have is used, so the file runs on either:
//! `cargo bench --bench cache -- --save-baseline lru` on the old commit, then
//! `cargo bench --bench cache -- --baseline lru` on the new (same `CRITERION_HOME`).
//!
//! Run: `cargo bench --bench cache`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dnsfwd::cache::{key_of, Asker, Cache, CacheConfig, Lookup, MAX_KEY_LEN};
use dnsfwd::clock::Instant;
use dnsfwd::forward::{Client, Dest, Forwarder, ForwarderConfig, SeededRandom, Source};
use dnsfwd::wire::{
    Class, Edns, Header, Message, MessageView, Name, Question, RData, RType, Record,
};

fn message(name: &str, answers: usize, qr: bool) -> Vec<u8> {
    let n = Name::from_ascii(name).unwrap();
    let edns = Edns {
        udp_size: 1232,
        ext_rcode: 0,
        version: 0,
        dnssec_ok: false,
        z: 0,
        options: vec![],
    };
    Message {
        header: Header::from_parts(0x4a7f, if qr { 0x8180 } else { 0x0100 }, [0; 4]),
        questions: vec![Question {
            qname: n.clone(),
            qtype: RType::A,
            qclass: Class::IN,
        }],
        answers: (0..answers)
            .map(|i| Record {
                name: n.clone(),
                rtype: RType::A,
                class: Class::IN,
                ttl: 300,
                rdata: RData::A(Ipv4Addr::new(192, 0, 2, i as u8)),
            })
            .collect(),
        additional: vec![edns.to_record()],
        ..Message::default()
    }
    .to_vec()
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench(c: &mut Criterion) {
    let query = message("www.example.com", 0, false);
    let answer = message("www.example.com", 5, true);
    let now = Instant::now();
    let mut cache = Cache::new(CacheConfig::default());
    let view = MessageView::parse(&query).unwrap();
    let mut kb = [0u8; MAX_KEY_LEN];
    let n = key_of(&view, &mut kb).unwrap();
    assert!(cache.insert(&kb[..n], &answer, now));

    let mut g = c.benchmark_group("cache");
    g.bench_function("anchor_copy_answer", |b| {
        b.iter(|| black_box(black_box(&answer[..]).to_vec()))
    });
    g.bench_function("hit", |b| {
        b.iter(|| {
            let view = MessageView::parse(black_box(&query)).unwrap();
            let mut kb = [0u8; MAX_KEY_LEN];
            let n = key_of(&view, &mut kb).unwrap();
            let asker = Asker::from_query(&view, 1232);
            match cache.get(&kb[..n], now + Duration::from_secs(10)) {
                Lookup::Fresh(e) => Cache::render(&e, now, &asker, false),
                _ => unreachable!(),
            }
        })
    });
    // The lookup alone: hash, index, key comparison, and the policy's bookkeeping.
    g.bench_function("get", |b| {
        b.iter(|| matches!(cache.get(black_box(&kb[..n]), now), Lookup::Fresh(_)))
    });
    // What a miss adds when the cache is on: storing the answer (replacing itself).
    g.bench_function("insert", |b| {
        b.iter(|| cache.insert(black_box(&kb[..n]), black_box(&answer), now))
    });
    // A new name into a full cache of 10,000: 20,000 names in turn, so every insertion
    // evicts one entry.
    let names: Vec<(Vec<u8>, Vec<u8>)> = (0..20_000)
        .map(|i| {
            let name = format!("n{i}.example.com");
            let a = message(&name, 5, true);
            let q = message(&name, 0, false);
            let v = MessageView::parse(&q).unwrap();
            let mut kb = [0u8; MAX_KEY_LEN];
            let n = key_of(&v, &mut kb).unwrap();
            (kb[..n].to_vec(), a)
        })
        .collect();
    let mut full = Cache::new(CacheConfig {
        max_entries: 10_000,
        ..CacheConfig::default()
    });
    let mut next = 0;
    g.bench_function("insert_evict", |b| {
        b.iter(|| {
            let (k, a) = &names[next % names.len()];
            next += 1;
            full.insert(black_box(k), black_box(a), now)
        })
    });
    assert_eq!(full.len(), 10_000);
    // The core's whole miss path without sockets: query in, transmit out, answer in,
    // answer out (cache off), for comparison with a hit through the core.
    for (name, entries) in [("core_miss_forwarded", 0), ("core_hit", 10_000)] {
        let mut cfg = ForwarderConfig::new(vec![SocketAddr::from(([127, 0, 0, 1], 53))]);
        cfg.sockets_per_upstream = 1;
        cfg.cache.max_entries = entries;
        let mut f = Forwarder::new(cfg, Box::new(SeededRandom::new(1)));
        let client = Client::Udp {
            listener: 0,
            addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
        };
        let mut reply = answer.clone();
        let qname_len = MessageView::parse(&query)
            .unwrap()
            .qname_wire(&mut [0u8; 255], false);
        g.bench_function(name, |b| {
            b.iter(|| {
                f.handle_query(now, client, black_box(&query));
                while let Some(t) = f.poll_transmit() {
                    if let Dest::Upstream { upstream, socket } = t.to {
                        // The upstream echoes our ID and our spelling of the name.
                        reply[..2].copy_from_slice(&t.bytes[..2]);
                        reply[12..12 + qname_len].copy_from_slice(&t.bytes[12..12 + qname_len]);
                        let from = SocketAddr::from(([127, 0, 0, 1], 53));
                        f.handle_response(
                            now,
                            Source::Udp {
                                upstream,
                                socket,
                                from,
                            },
                            &reply,
                        );
                    }
                    f.release(t.bytes);
                }
            })
        });
    }
    g.finish();

    // Memory: 100,000 entries of a typical answer under distinct names.
    let before = rss_kib();
    let mut big = Cache::new(CacheConfig {
        max_entries: 100_000,
        ..CacheConfig::default()
    });
    for i in 0..100_000u32 {
        let name = format!("host{i}.example.com");
        let a = message(&name, 2, true);
        let v = MessageView::parse(&a).unwrap();
        let mut kb = [0u8; MAX_KEY_LEN];
        let n = key_of(&v, &mut kb).unwrap();
        big.insert(&kb[..n], &a, now);
    }
    let after = rss_kib();
    let per = big.bytes() / big.len().max(1);
    eprintln!(
        "memory: {} entries, {} bytes counted by Cache::bytes (S3-FIFO: with its ghost table) ({per} per entry); RSS grew by {} KiB ({} bytes per entry)",
        big.len(),
        big.bytes(),
        after.zip(before).map_or(0, |(a, b)| a.saturating_sub(b)),
        after.zip(before).map_or(0, |(a, b)| a.saturating_sub(b) * 1024 / big.len() as u64),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
