//! Policy benchmarks: the per-datagram ACL check and rate-limit check, against an
//! anchor measured in the same run: one lookup of a source address in a std `HashMap`
//! (SipHash), what a naive per-source table would cost per packet. Then the memory of
//! the rate table before and after a million random sources (printed; RSS from /proc).
//!
//! Run: `cargo bench --bench policy`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dnsfwd::clock::Instant;
use dnsfwd::policy::{
    client_key, parse_cidr, Acl, Cidr, Policy, PolicyConfig, RateLimit, RateTable,
};

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// xorshift64: random sources without a dependency.
fn randoms(n: usize) -> Vec<u64> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let private = Acl::private();
    // Every other /24 from 11.0.0.0: 1000 blocks that cannot merge.
    let big: Vec<Cidr> = (0..1000u32)
        .map(|k| parse_cidr(&format!("11.{}.{}.0/24", 2 * k / 256, 2 * k % 256)))
        .map(Result::unwrap)
        .collect();
    let big = Acl::new(&big);
    assert_eq!(big.ranges(), 1000);
    // Sources among them: about half inside.
    let near: Vec<IpAddr> = randoms(4096)
        .into_iter()
        .map(|r| IpAddr::V4(Ipv4Addr::from(0x0B00_0000 | (r as u32 % (2000 << 8)))))
        .collect();
    let sources: Vec<IpAddr> = randoms(4096)
        .into_iter()
        .map(|r| IpAddr::V4(Ipv4Addr::from(r as u32)))
        .collect();
    let mut anchor: HashMap<IpAddr, u64> = sources.iter().map(|&ip| (ip, 0)).collect();

    let mut g = c.benchmark_group("policy");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let mut i = 0;
    g.bench_function("anchor_hashmap_lookup", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            if let Some(v) = anchor.get_mut(black_box(&sources[i])) {
                *v += 1;
            }
        })
    });
    for (name, ip) in [
        ("acl_default_v4_allowed", "192.168.1.20"),
        ("acl_default_v4_refused", "8.8.8.8"),
        ("acl_default_v6_allowed", "fd00::53"),
        ("acl_default_mapped", "::ffff:10.0.0.1"),
    ] {
        // As the shell has it: the source of a datagram, read from where it lies.
        let src = SocketAddr::new(ip.parse().unwrap(), 5353);
        g.bench_function(name, |b| b.iter(|| private.allows(black_box(&src).ip())));
    }
    let mut i = 0;
    g.bench_function("acl_1000_blocks", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            big.allows(*black_box(&near[i]))
        })
    });
    let table = RateTable::new(50, 100, 2, [1, 2, 3, 4]);
    let hot = client_key("10.0.0.1".parse().unwrap());
    let mut t = 1_000_000_000u64;
    g.bench_function("ratelimit_one_client", |b| {
        b.iter(|| {
            t += 1000;
            table.check(black_box(hot), t)
        })
    });
    let keys: Vec<u128> = sources.iter().map(|&ip| client_key(ip)).collect();
    let mut i = 0;
    g.bench_function("ratelimit_4096_clients", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            t += 1000;
            table.check(black_box(keys[i]), t)
        })
    });
    let cfg = PolicyConfig {
        rate_limit: Some(RateLimit {
            qps: 50,
            burst: 100,
            slip: 2,
        }),
        ..PolicyConfig::default()
    };
    let start = Instant::now();
    let mut policy = Policy::new(&cfg, start, [1, 2, 3, 4]);
    let query = [0u8, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
    let mut i = 0u32;
    g.bench_function("admit_udp_acl_and_limit", |b| {
        b.iter(|| {
            // A new private source each time, so every call passes both checks.
            i = i.wrapping_add(1);
            let src = SocketAddr::from((Ipv4Addr::from(0x0A00_0000 | (i & 0xFF_FFFF)), 5353));
            policy.admit_udp(start, black_box(src), black_box(&query))
        })
    });
    g.finish();

    // Memory: the table is allocated once; a million random sources change nothing.
    let before = rss_kib();
    let table = RateTable::new(50, 100, 2, [5, 6, 7, 8]);
    let allocated = rss_kib();
    for (n, r) in randoms(1_000_000).into_iter().enumerate() {
        let ip = if r & 1 == 0 {
            IpAddr::V4(Ipv4Addr::from(r as u32))
        } else {
            IpAddr::V6((u128::from(r) << 64).into())
        };
        table.check(client_key(ip), n as u64 * 10_000);
    }
    let after = rss_kib();
    let grew = |a: Option<u64>, b: Option<u64>| a.zip(b).map_or(0, |(a, b)| a.saturating_sub(b));
    eprintln!(
        "memory: rate table {} KiB; RSS +{} KiB when allocated (part reused from freed memory), +{} KiB more after 1,000,000 random sources",
        table.memory() / 1024,
        grew(allocated, before),
        grew(after, allocated),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
