//! The cache, coalescing, serve-stale and prefetch, driven through the core with a
//! chosen clock (no sleeps, no sockets).
use std::net::SocketAddr;
use std::time::Duration;

use super::tests::{answer_to, client, drain, id_of, one, query_msg, udp_source};
use super::*;
use crate::cache::CacheConfig;
use crate::clock::Instant;
use crate::wire::set_id;
use crate::wire::{parse_message, Class, Message, Name, RData, RType, Record, Soa};

const TIMEOUT: Duration = Duration::from_millis(1000);
const DEADLINE: Duration = Duration::from_millis(2500);

fn cached(max_entries: usize, serve_stale: bool) -> Forwarder {
    let cfg = ForwarderConfig {
        upstreams: vec![SocketAddr::from(([127, 0, 0, 1], 5300))],
        sockets_per_upstream: 4,
        timeout: TIMEOUT,
        deadline: DEADLINE,
        max_pending: 1000,
        cache: CacheConfig {
            max_entries,
            serve_stale,
            ..CacheConfig::default()
        },
        edns_size: 1232,
        max_udp_size: 1232,
        // One address for every test client: no fair-share limit here.
        max_pending_per_client: usize::MAX,
        // Small pools and short names: the guessing floor is tested on its own.
        min_guess_bits: 0,
        ..ForwarderConfig::new(Vec::new())
    };
    Forwarder::new(cfg, Box::new(SeededRandom::new(7)))
}

/// A message that owns its bytes (tests only: the buffer is leaked).
fn owned(bytes: Vec<u8>) -> Message<'static> {
    parse_message(Box::leak(bytes.into_boxed_slice())).unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Asks `name` at `now` and returns what went out (to the upstream or the client).
fn ask(f: &mut Forwarder, now: Instant, id: u16, name: &str, edns: Option<u16>) -> Transmit {
    f.handle_query(now, client(1), &query_msg(id, &[name], edns));
    one(f)
}

/// Answers the upstream transmit `t` with `msg` (its ID patched in).
fn reply(f: &mut Forwarder, now: Instant, t: &Transmit, msg: &Message<'_>) -> Vec<u8> {
    let mut bytes = msg.to_vec();
    set_id(&mut bytes, id_of(&t.bytes));
    f.handle_response(now, udp_source(t), &bytes);
    bytes
}

fn with_ttl(query: &[u8], ttl: u32) -> Message<'static> {
    let mut m = owned(answer_to(query, 2, Rcode::NOERROR));
    m.header.aa = true;
    for r in &mut m.answers {
        r.ttl = ttl;
    }
    m
}

fn soa(zone: &str, ttl: u32, minimum: u32) -> Record<'static> {
    Record {
        name: Name::from_ascii(zone).unwrap(),
        rtype: RType::SOA,
        class: Class::IN,
        ttl,
        rdata: RData::Soa(Box::new(Soa {
            mname: Name::from_ascii("ns.example").unwrap(),
            rname: Name::from_ascii("host.example").unwrap(),
            serial: 1,
            refresh: 7200,
            retry: 3600,
            expire: 1209600,
            minimum,
        })),
    }
}

fn parsed(t: &Transmit) -> Message<'_> {
    parse_message(&t.bytes).unwrap()
}

#[test]
fn hit_counts_ttl_down_restores_id_spelling_and_rd() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    let up = ask(&mut f, t0, 1, "www.example.com", None);
    reply(&mut f, t0, &up, &with_ttl(&up.bytes, 300));
    assert_eq!(one(&mut f).to, Dest::Client(client(1)));
    // 100 s later, another spelling: answered here, upstream untouched.
    let q = query_msg(0xBEEF, &["WWW.Example.COM"], None);
    f.handle_query(t0 + secs(100), client(2), &q);
    let hit = one(&mut f);
    assert_eq!(hit.to, Dest::Client(client(2)));
    let m = parsed(&hit);
    assert_eq!(m.header.id, 0xBEEF);
    assert!(m.header.qr && m.header.rd && !m.header.aa && m.header.ra);
    assert_eq!(m.questions[0].qname.to_string(), "WWW.Example.COM.");
    assert!(m.answers.iter().all(|r| r.ttl == 200), "{:?}", m.answers);
    assert_eq!(m.answers.len(), 2);
    assert!(m.edns().is_none(), "no OPT for a client that sent none");
    assert_eq!((f.stats().cache_hits, f.stats().forwarded), (1, 1));
    // RD clear is its own entry (an upstream answers it from its cache only).
    let mut q = query_msg(0xBEF0, &["www.example.com"], None);
    q[2] &= !0x01;
    f.handle_query(t0 + secs(100), client(2), &q);
    let up = one(&mut f);
    assert!(matches!(up.to, Dest::Upstream { .. }));
    reply(&mut f, t0 + secs(100), &up, &with_ttl(&up.bytes, 300));
    assert!(!parsed(&one(&mut f)).header.rd, "RD mirrored");
    // Expired at 300 s: the next one goes upstream.
    assert!(matches!(
        ask(&mut f, t0 + secs(300), 3, "www.example.com", None).to,
        Dest::Upstream { .. }
    ));
}

#[test]
fn opt_is_per_hop_and_answers_fit_the_client() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    let up = ask(&mut f, t0, 1, "big.example", Some(4096));
    let mut m = owned(answer_to(&up.bytes, 60, Rcode::NOERROR));
    m.additional[0].class = Class(4096);
    reply(&mut f, t0, &up, &m);
    let first = one(&mut f);
    assert!(first.bytes.len() > 512);
    // EDNS client: the whole answer, our OPT (1232 is what we advertise).
    let hit = ask(&mut f, t0 + secs(1), 2, "big.example", Some(4096));
    let m = parsed(&hit);
    assert_eq!(
        (m.answers.len(), m.edns().map(|e| e.udp_size)),
        (60, Some(1232))
    );
    // Without EDNS: no OPT, cut to 512 with TC.
    let hit = ask(&mut f, t0 + secs(1), 3, "big.example", None);
    assert!(hit.bytes.len() <= 512);
    let m = parsed(&hit);
    assert!(m.header.tc && m.edns().is_none());
    assert_eq!(f.stats().cache_hits, 2);
}

#[test]
fn negative_answers_are_cached_for_the_soa_minimum() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    let up = ask(&mut f, t0, 1, "nope.example", None);
    let mut m = owned(answer_to(&up.bytes, 0, Rcode::NXDOMAIN));
    m.authority.push(soa("example", 3600, 60));
    reply(&mut f, t0, &up, &m);
    let _ = one(&mut f);
    let hit = ask(&mut f, t0 + secs(30), 2, "nope.example", None);
    let m = parsed(&hit);
    assert_eq!(m.header.rcode, Rcode::NXDOMAIN);
    assert_eq!(
        m.authority[0].ttl, 30,
        "SOA TTL = min(TTL, MINIMUM) counted down (RFC 2308 §5)"
    );
    assert!(matches!(
        ask(&mut f, t0 + secs(61), 3, "nope.example", None).to,
        Dest::Upstream { .. }
    ));
}

#[test]
fn nodata_with_soa_is_cached_but_not_without() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    let up = ask(&mut f, t0, 1, "nodata.example", None);
    let mut m = owned(answer_to(&up.bytes, 0, Rcode::NOERROR));
    m.authority.push(soa("example", 300, 300));
    reply(&mut f, t0, &up, &m);
    let _ = one(&mut f);
    assert!(matches!(
        ask(&mut f, t0 + secs(1), 2, "nodata.example", None).to,
        Dest::Client(_)
    ));
    // NXDOMAIN without SOA, SERVFAIL: relayed, never cached.
    for (name, rcode, tc) in [
        ("nosoa.example", Rcode::NXDOMAIN, false),
        ("sf.example", Rcode::SERVFAIL, false),
    ] {
        let up = ask(&mut f, t0, 5, name, None);
        let mut m = owned(answer_to(&up.bytes, usize::from(tc), rcode));
        m.header.tc = tc;
        reply(&mut f, t0, &up, &m);
        let relayed = drain(&mut f);
        assert!(
            relayed.iter().any(|t| t.to == Dest::Client(client(1))),
            "{name} relayed"
        );
        let again = ask(&mut f, t0 + secs(1), 6, name, None);
        assert!(
            matches!(again.to, Dest::Upstream { .. }),
            "{name} must not be cached"
        );
        f.handle_timeout(t0 + secs(10));
        let _ = drain(&mut f);
    }
    // Truncated: relayed to the UDP client at once, never cached, and fetched over TCP
    // so that the client's TCP retry finds it in flight (one upstream query for both).
    let up = ask(&mut f, t0, 5, "tc.example", None);
    let mut m = owned(answer_to(&up.bytes, 1, Rcode::NOERROR));
    m.header.tc = true;
    reply(&mut f, t0, &up, &m);
    let out = drain(&mut f);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].to, Dest::Client(client(1)));
    assert!(parsed(&out[0]).header.tc);
    assert!(matches!(out[1].to, Dest::UpstreamTcp { .. }));
    let tcp_client = Client::Tcp {
        conn: 1,
        addr: SocketAddr::from(([127, 0, 0, 1], 999)),
    };
    f.handle_query(t0, tcp_client, &query_msg(6, &["tc.example"], None));
    assert!(drain(&mut f).is_empty(), "waits on the TCP fetch");
    f.handle_response(
        t0,
        Source::Tcp { upstream: 0 },
        &answer_to(&out[1].bytes, 1, Rcode::NOERROR),
    );
    let r = one(&mut f);
    assert_eq!(r.to, Dest::Client(tcp_client));
    assert!(!parsed(&r).header.tc);
}

#[test]
fn do_and_cd_bits_are_separate_entries() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    let up = ask(&mut f, t0, 1, "sec.example", Some(1232));
    reply(&mut f, t0, &up, &with_ttl(&up.bytes, 300));
    let _ = one(&mut f);
    // The same name with DO set, and with CD set: both go upstream.
    let mut with_do = query_msg(2, &["sec.example"], Some(1232));
    let n = with_do.len();
    with_do[n - 4] |= 0x80; // the DO bit: OPT TTL octets are n-6..n-2
    f.handle_query(t0, client(1), &with_do);
    assert!(matches!(one(&mut f).to, Dest::Upstream { .. }));
    let mut with_cd = query_msg(3, &["sec.example"], Some(1232));
    with_cd[3] |= 0x10;
    f.handle_query(t0, client(1), &with_cd);
    assert!(matches!(one(&mut f).to, Dest::Upstream { .. }));
    // Plain again: a hit.
    assert!(matches!(
        ask(&mut f, t0, 4, "sec.example", Some(1232)).to,
        Dest::Client(_)
    ));
}

#[test]
fn least_recently_used_goes_first() {
    let t0 = Instant::now();
    let mut f = cached(3, true);
    for (n, name) in ["a.example", "b.example", "c.example"].iter().enumerate() {
        let up = ask(&mut f, t0, n as u16, name, None);
        reply(&mut f, t0, &up, &with_ttl(&up.bytes, 300));
        let _ = one(&mut f);
    }
    // Touch a, then add d: b (least recently used) is evicted.
    assert!(matches!(
        ask(&mut f, t0, 10, "a.example", None).to,
        Dest::Client(_)
    ));
    let up = ask(&mut f, t0, 11, "d.example", None);
    reply(&mut f, t0, &up, &with_ttl(&up.bytes, 300));
    let _ = one(&mut f);
    assert_eq!(f.cache.len(), 3);
    for (name, cached) in [
        ("a.example", true),
        ("b.example", false),
        ("c.example", true),
        ("d.example", true),
    ] {
        let t = ask(&mut f, t0, 12, name, None);
        assert_eq!(matches!(t.to, Dest::Client(_)), cached, "{name}");
        if !cached {
            f.handle_timeout(t0 + secs(10));
            let _ = drain(&mut f);
        }
    }
}

#[test]
fn coalesces_100_identical_queries_into_one_upstream_query() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    for n in 0..100u16 {
        let spelling = if n % 2 == 0 {
            "hot.example"
        } else {
            "HOT.example"
        };
        f.handle_query(
            t0,
            client(n),
            &query_msg(
                1000 + n,
                &[spelling],
                if n % 3 == 0 { Some(1232) } else { None },
            ),
        );
    }
    let out = drain(&mut f);
    assert_eq!(out.len(), 1, "one upstream query");
    reply(&mut f, t0, &out[0], &with_ttl(&out[0].bytes, 60));
    let answers = drain(&mut f);
    assert_eq!(answers.len(), 100);
    for t in &answers {
        let Dest::Client(Client::Udp { addr, .. }) = t.to else {
            panic!()
        };
        let n = addr.port() - 40000;
        let m = parsed(t);
        assert_eq!(m.header.id, 1000 + n);
        let spelling = if n % 2 == 0 {
            "hot.example."
        } else {
            "HOT.example."
        };
        assert_eq!(m.questions[0].qname.to_string(), spelling);
        assert_eq!(
            m.edns().is_some(),
            n % 3 == 0,
            "OPT for those that sent one"
        );
        assert_eq!(m.answers.len(), 2);
    }
    assert_eq!((f.stats().forwarded, f.stats().coalesced), (1, 99));
}

#[test]
fn serves_stale_when_the_upstream_goes_dark() {
    for serve_stale in [true, false] {
        let t0 = Instant::now();
        let mut f = cached(100, serve_stale);
        let up = ask(&mut f, t0, 1, "stale.example", None);
        reply(&mut f, t0, &up, &with_ttl(&up.bytes, 10));
        let _ = one(&mut f);
        // An hour later the entry has expired and the upstream does not answer.
        let later = t0 + secs(3600);
        let up = ask(&mut f, later, 2, "stale.example", None);
        assert!(matches!(up.to, Dest::Upstream { .. }));
        f.handle_timeout(later + TIMEOUT);
        let _ = drain(&mut f);
        f.handle_timeout(later + DEADLINE);
        let m_t = one(&mut f);
        let m = parsed(&m_t);
        if serve_stale {
            assert_eq!(
                (m.header.id, m.header.rcode, m.answers.len()),
                (2, Rcode::NOERROR, 2)
            );
            assert!(
                m.answers.iter().all(|r| r.ttl == 30),
                "stale answers carry TTL 30"
            );
            assert_eq!(f.stats().stale_served, 1);
        } else {
            assert_eq!(m.header.rcode, Rcode::SERVFAIL);
        }
    }
}

#[test]
fn prefetches_in_the_last_tenth_of_the_ttl() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    let up = ask(&mut f, t0, 1, "pop.example", None);
    reply(&mut f, t0, &up, &with_ttl(&up.bytes, 100));
    let _ = one(&mut f);
    // At 50 s: a plain hit. At 95 s: a hit (TTL 5) and a refresh goes upstream.
    assert_eq!(drain_after(&mut f, t0 + secs(50), 2).len(), 1);
    let out = drain_after(&mut f, t0 + secs(95), 3);
    assert_eq!(out.len(), 2);
    assert_eq!(parsed(&out[0]).answers[0].ttl, 5);
    let refresh = &out[1];
    assert!(matches!(refresh.to, Dest::Upstream { .. }));
    assert_eq!(
        parsed(refresh).questions[0]
            .qname
            .to_string()
            .to_lowercase(),
        "pop.example."
    );
    // A second hit does not send a second refresh.
    assert_eq!(drain_after(&mut f, t0 + secs(96), 4).len(), 1);
    reply(
        &mut f,
        t0 + secs(96),
        refresh,
        &with_ttl(&refresh.bytes, 100),
    );
    assert!(drain(&mut f).is_empty(), "nobody waits on a prefetch");
    // At 150 s the entry is the refreshed one: TTL 100 - (150 - 96) = 46.
    let out = drain_after(&mut f, t0 + secs(150), 5);
    assert_eq!(parsed(&out[0]).answers[0].ttl, 46);
    assert_eq!(f.stats().prefetches, 1);
}

fn drain_after(f: &mut Forwarder, now: Instant, id: u16) -> Vec<Transmit> {
    f.handle_query(now, client(1), &query_msg(id, &["pop.example"], None));
    drain(f)
}

#[test]
fn undecodable_answers_are_relayed_not_cached() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    let up = ask(&mut f, t0, 1, "odd.example", None);
    // An A record with RDLENGTH 5: the view accepts it, the full decode does not.
    let mut m = owned(answer_to(&up.bytes, 1, Rcode::NOERROR));
    m.additional.clear();
    let mut bytes = m.to_vec();
    let n = bytes.len();
    bytes[n - 5] = 5;
    bytes.push(9);
    f.handle_response(t0, udp_source(&up), &bytes);
    let relayed = one(&mut f);
    // As the upstream sent it, but in the client's spelling.
    let mut expected = bytes.clone();
    expected[12..12 + 13].make_ascii_lowercase();
    assert_eq!(&relayed.bytes[2..], &expected[2..]);
    assert!(matches!(
        ask(&mut f, t0 + secs(1), 2, "odd.example", None).to,
        Dest::Upstream { .. }
    ));
}

#[test]
fn cache_off_sends_everything_upstream() {
    let t0 = Instant::now();
    let mut f = cached(0, true);
    for n in 0..3 {
        let up = ask(&mut f, t0, n, "same.example", None);
        assert!(matches!(up.to, Dest::Upstream { .. }), "query {n}");
        reply(&mut f, t0, &up, &with_ttl(&up.bytes, 300));
        let _ = one(&mut f);
    }
    assert_eq!((f.stats().forwarded, f.stats().cache_hits), (3, 0));
}

#[test]
fn a_tcp_client_waits_on_the_udp_query_and_gets_the_whole_answer() {
    let t0 = Instant::now();
    for cache in [100, 0] {
        let mut f = cached(cache, true);
        f.handle_query(t0, client(1), &query_msg(1, &["wide.example"], None));
        let tcp = Client::Tcp {
            conn: 4,
            addr: SocketAddr::from(([127, 0, 0, 1], 999)),
        };
        f.handle_query(t0, tcp, &query_msg(2, &["wide.example"], None));
        let up = one(&mut f);
        assert_eq!(f.stats().coalesced, 1);
        // 60 records fit our 1232 octets but not the UDP client's 512.
        let big = owned(answer_to(&up.bytes, 60, Rcode::NOERROR));
        reply(&mut f, t0, &up, &big);
        let out = drain(&mut f);
        assert_eq!(out.len(), 2);
        for t in &out {
            let m = parsed(t);
            match t.to {
                Dest::Client(Client::Udp { .. }) => {
                    assert!(m.header.tc && t.bytes.len() <= 512);
                    assert_eq!(m.header.id, 1);
                }
                Dest::Client(Client::Tcp { .. }) => {
                    assert!(!m.header.tc);
                    assert_eq!((m.header.id, m.answers.len()), (2, 60));
                }
                _ => panic!("{t:?}"),
            }
        }
    }
}

#[test]
fn waiters_on_an_uncached_answer_get_their_own_opt_and_spelling() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    f.handle_query(t0, client(1), &query_msg(1, &["flaky.example"], Some(1232)));
    f.handle_query(t0, client(2), &query_msg(2, &["FLAKY.example"], None));
    let up = one(&mut f);
    // REFUSED is relayed (nothing else to try) but not cached.
    reply(
        &mut f,
        t0,
        &up,
        &owned(answer_to(&up.bytes, 0, Rcode::REFUSED)),
    );
    let out = drain(&mut f);
    assert_eq!(out.len(), 2);
    let waiter = out
        .iter()
        .find(|t| t.to == Dest::Client(client(2)))
        .unwrap();
    let m = parsed(waiter);
    assert_eq!((m.header.id, m.header.rcode), (2, Rcode::REFUSED));
    assert!(
        m.edns().is_none(),
        "no OPT for a client that sent none (RFC 6891 §7)"
    );
    assert_eq!(m.questions[0].qname.to_string(), "FLAKY.example.");
}

#[test]
fn a_cname_before_nxdomain_does_not_outlive_its_ttl() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    let up = ask(&mut f, t0, 1, "alias.example", None);
    let mut m = owned(answer_to(&up.bytes, 0, Rcode::NXDOMAIN));
    m.answers.push(Record {
        name: Name::from_ascii("alias.example").unwrap(),
        rtype: RType::CNAME,
        class: Class::IN,
        ttl: 20,
        rdata: RData::Cname(Name::from_ascii("gone.example").unwrap()),
    });
    m.authority.push(soa("example", 3600, 3600));
    reply(&mut f, t0, &up, &m);
    let _ = one(&mut f);
    assert!(matches!(
        ask(&mut f, t0 + secs(10), 2, "alias.example", None).to,
        Dest::Client(_)
    ));
    assert!(matches!(
        ask(&mut f, t0 + secs(21), 3, "alias.example", None).to,
        Dest::Upstream { .. }
    ));
}

#[test]
fn stale_answer_goes_out_after_1_8_s_and_the_query_refreshes_the_cache() {
    let t0 = Instant::now();
    let cfg = ForwarderConfig {
        upstreams: vec![SocketAddr::from(([127, 0, 0, 1], 5300))],
        sockets_per_upstream: 1,
        timeout: Duration::from_secs(3),
        deadline: Duration::from_secs(5),
        max_pending: 10,
        cache: CacheConfig::default(),
        edns_size: 1232,
        max_udp_size: 1232,
        // One address for every test client: no fair-share limit here.
        max_pending_per_client: usize::MAX,
        // Small pools and short names: the guessing floor is tested on its own.
        min_guess_bits: 0,
        ..ForwarderConfig::new(Vec::new())
    };
    let mut f = Forwarder::new(cfg, Box::new(SeededRandom::new(3)));
    let up = ask(&mut f, t0, 1, "slowstale.example", None);
    reply(&mut f, t0, &up, &with_ttl(&up.bytes, 10));
    let _ = one(&mut f);
    // Expired; the upstream is slow now.
    let later = t0 + secs(60);
    let up = ask(&mut f, later, 2, "slowstale.example", None);
    assert!(matches!(up.to, Dest::Upstream { .. }));
    assert_eq!(f.poll_timeout(), Some(later + Duration::from_millis(1800)));
    f.handle_timeout(later + Duration::from_millis(1799));
    assert!(drain(&mut f).is_empty());
    f.handle_timeout(later + Duration::from_millis(1800));
    let m_t = one(&mut f);
    let m = parsed(&m_t);
    assert_eq!(
        (m.header.id, m.header.rcode, m.answers[0].ttl),
        (2, Rcode::NOERROR, 30)
    );
    // The upstream answers at 2.5 s: nobody is waiting any more, but the cache is fresh.
    reply(
        &mut f,
        later + Duration::from_millis(2500),
        &up,
        &with_ttl(&up.bytes, 300),
    );
    assert!(drain(&mut f).is_empty());
    let hit = ask(&mut f, later + secs(4), 3, "slowstale.example", None);
    assert_eq!(parsed(&hit).answers[0].ttl, 299);
    assert_eq!(f.stats().stale_served, 1);
}

#[test]
fn a_stale_answer_carries_ede_3() {
    let t0 = Instant::now();
    let mut f = cached(100, true);
    let up = ask(&mut f, t0, 1, "old.example", Some(1232));
    reply(&mut f, t0, &up, &with_ttl(&up.bytes, 10));
    let _ = one(&mut f);
    // Expired; the upstream is silent until the deadline: the stale answer, EDE 3.
    let up = ask(&mut f, t0 + secs(20), 2, "old.example", Some(1232));
    assert!(matches!(up.to, Dest::Upstream { .. }));
    f.handle_timeout(t0 + secs(20) + DEADLINE);
    let out: Vec<Transmit> = drain(&mut f)
        .into_iter()
        .filter(|t| matches!(t.to, Dest::Client(_)))
        .collect();
    assert_eq!(out.len(), 1);
    let m = parsed(&out[0]);
    assert_eq!(m.answers[0].ttl, 30);
    let e = m.edns().unwrap();
    assert_eq!(e.options.len(), 1);
    assert_eq!(e.options[0].code, crate::wire::EdnsOption::EDE);
    assert_eq!(e.options[0].data, &[0, 3]);
}
