//! Blocklist benchmarks: a list of 1,000,000 generated names is written to a temporary
//! file and loaded as `--block` does it (load time and memory printed; RSS from /proc),
//! then the per-query check of a name against it, against an anchor measured in the
//! same run: one lookup of a random `u64` in a std `HashSet<u64>` of a million (SipHash,
//! the table as big as ours, so both pay the same cache misses).
//!
//! Run: `cargo bench --bench local`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use dnsfwd::cache::Asker;
use dnsfwd::local::{parse, LocalConfig, LocalData};
use dnsfwd::wire::{Class, RType, MAX_NAME_LEN};

const N: usize = 1_000_000;
/// Distinct query names cycled through (more than the caches hold).
const QUERIES: usize = 1 << 16;

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn label(&mut self, min: u64, max: u64) -> String {
        let len = min + self.next() % (max - min + 1);
        (0..len)
            .map(|_| char::from(b'a' + (self.next() % 26) as u8))
            .collect()
    }
}

const TLDS: [&str; 8] = ["com", "net", "org", "io", "de", "xyz", "info", "co.uk"];

/// A name as real blocklists have them: 2 to 4 labels, a common TLD.
fn name(r: &mut Rng) -> String {
    let tld = TLDS[(r.next() % 8) as usize];
    let sld = r.label(4, 14);
    match r.next() % 10 {
        0..=4 => format!("{sld}.{tld}"),
        5..=8 => format!("{}.{sld}.{tld}", r.label(2, 10)),
        _ => format!("{}.{}.{sld}.{tld}", r.label(2, 8), r.label(2, 8)),
    }
}

fn wire(s: &str) -> Vec<u8> {
    let mut b = [0u8; MAX_NAME_LEN];
    let n = parse::domain_wire(s.as_bytes(), &mut b).unwrap();
    b[..n].to_vec()
}

fn bench(c: &mut Criterion) {
    let mut r = Rng(0x2545_F491_4F6C_DD1D);
    let names: Vec<String> = (0..N).map(|_| name(&mut r)).collect();
    let mut text = String::with_capacity(N * 24);
    for (i, n) in names.iter().enumerate() {
        // A third in the hosts shape popular lists ship.
        if i % 3 == 0 {
            text.push_str("0.0.0.0 ");
        }
        text.push_str(n);
        text.push('\n');
    }
    let path = std::env::temp_dir().join(format!("dnsfwd-bench-block-{}", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let cfg = LocalConfig {
        block: vec![path.clone()],
        ..LocalConfig::default()
    };
    let before = rss_kib();
    let t = Instant::now();
    let data = LocalData::load(&cfg).unwrap();
    let took = t.elapsed();
    let after = rss_kib();
    std::fs::remove_file(&path).unwrap();
    let (_, blocked, _) = data.counts();
    let grew = after.zip(before).map_or(0, |(a, b)| a.saturating_sub(b));
    eprintln!(
        "load: {N} lines ({} MB) -> {blocked} distinct names in {:.0} ms; heap {} MiB \
         ({} octets a name); RSS +{} MiB ({} octets a name)",
        text.len() >> 20,
        took.as_secs_f64() * 1000.0,
        data.block_bytes() >> 20,
        data.block_bytes() / blocked,
        grew >> 10,
        grew * 1024 / blocked as u64,
    );
    drop(text);

    // Queries: half under a listed name (a random host below it), half not listed.
    let queries: Vec<Vec<u8>> = (0..QUERIES)
        .map(|i| {
            if i % 2 == 0 {
                let listed = &names[(r.next() % N as u64) as usize];
                wire(&format!("{}.{listed}", r.label(1, 8)))
            } else {
                wire(&format!("www.{}", name(&mut r)))
            }
        })
        .collect();
    // One buffer read in order, as the anchor reads its keys: in the server, the name
    // being checked was just parsed and is in the cache.
    let queries: Vec<&[u8]> = {
        let flat: &'static mut Vec<u8> = Box::leak(Box::default());
        let mut ends = Vec::new();
        for q in &queries {
            flat.extend_from_slice(q);
            ends.push(flat.len());
        }
        let flat: &'static [u8] = flat;
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let q = &flat[start..end];
                start = end;
                q
            })
            .collect()
    };
    let hits = queries.iter().filter(|q| data.is_blocked(q)).count();
    eprintln!("queries: {hits} of {QUERIES} blocked");

    let keys: Vec<u64> = (0..N).map(|_| r.next()).collect();
    let anchor: HashSet<u64> = keys.iter().copied().collect();
    let probes: Vec<u64> = (0..QUERIES)
        .map(|i| {
            if i % 2 == 0 {
                keys[(r.next() % N as u64) as usize]
            } else {
                r.next()
            }
        })
        .collect();

    let mut g = c.benchmark_group("local");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let mut i = 0;
    g.bench_function("anchor_hashset_u64_1m", |b| {
        b.iter(|| {
            i = (i + 1) & (QUERIES - 1);
            anchor.contains(black_box(&probes[i]))
        })
    });
    let mut i = 0;
    g.bench_function("blocklist_1m_is_blocked", |b| {
        b.iter(|| {
            i = (i + 1) & (QUERIES - 1);
            data.is_blocked(black_box(queries[i]))
        })
    });
    // Apart: names not listed (most of a real query stream) and names under listed ones.
    let mut i = 0;
    g.bench_function("blocklist_1m_not_listed", |b| {
        b.iter(|| {
            i = (i + 2) & (QUERIES - 1);
            data.is_blocked(black_box(queries[i | 1]))
        })
    });
    let mut i = 0;
    g.bench_function("blocklist_1m_listed", |b| {
        b.iter(|| {
            i = (i + 2) & (QUERIES - 1);
            data.is_blocked(black_box(queries[i]))
        })
    });
    // The whole local step of a query: lookup, then the NXDOMAIN answer for a blocked name.
    let askers: Vec<Asker> = queries
        .iter()
        .map(|q| {
            let mut qname = [0u8; MAX_NAME_LEN];
            qname[..q.len()].copy_from_slice(q);
            Asker {
                id: 1,
                rd: true,
                cd: false,
                qname,
                qname_len: q.len(),
                edns: Some(false),
                max_response: 1232,
            }
        })
        .collect();
    let mut i = 0;
    g.bench_function("blocklist_1m_answer", |b| {
        b.iter(|| {
            i = (i + 1) & (QUERIES - 1);
            data.answer(black_box(queries[i]), RType::A, Class::IN, &askers[i])
        })
    });
    let empty = LocalData::default();
    g.bench_function("no_local_data", |b| {
        b.iter(|| empty.answer(black_box(queries[0]), RType::A, Class::IN, &askers[0]))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
