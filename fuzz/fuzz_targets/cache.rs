//! The cache's intake and hits against the full decoder (`wire::parse_message`).
//!
//! The input is an upstream's answer. Its ID (which the cache never keeps) picks the
//! cache's settings; a hash of the whole input picks the client (ID, RD, CD, EDNS, size,
//! its spelling of the name), the key's flags and the age at lookup. The key is the
//! answer's question folded, as the forwarder's key is once the answer is accepted.
//!
//! * The forwarder's path (`parse_answer`, then `insert_noted` with what it noted) stores
//!   the answer exactly when the reference below says it may be cached, unless it is
//!   refused for size (then `refused()` counts it). The reference is the `Cache::insert`
//!   and `intake` docs read off the decoded message: the decoder accepts it (no trailing
//!   octet), QR, not TC, opcode QUERY, one question, RCODE (extended included) NOERROR
//!   or NXDOMAIN; NOERROR with answers lives for the smallest clamped TTL of the answer
//!   and authority sections; otherwise the first SOA of the authority section gives
//!   min(TTL, MINIMUM), clamped, no longer than the answers' TTLs; a lifetime of 0 is
//!   not cached; nor is an answer with a name that reads octets of a TTL field (the cache
//!   patches TTLs in place) or of its OPT record when last (the cache cuts it off), nor
//!   one with a TSIG record (which must stay last). `parse_answer`'s view is
//!   `MessageView::parse`'s.
//! * `Cache::insert` (the slow path) and `insert_noted` without notes (the intake's own
//!   walk) agree with it, and a hit renders the same octets from all three.
//! * A lookup at the chosen age is fresh, stale or a miss as the lifetime and the stale
//!   window say; what it renders decodes, with the client's ID, RD and CD, AA and TC
//!   clear, the rest of the header as received, the question in the client's spelling,
//!   and the records (OPT aside) as decoded from the answer with their TTLs clamped and
//!   counted down (30 when stale), plus our OPT record iff the client sent one. Rendered
//!   for a 512-octet client, it still decodes and fits.
//! * A tiny cache fed this answer and others of many sizes under a dozen keys, with
//!   lookups and a clock that moves, keeps `Cache::audit` and both bounds after every
//!   step, and every hit renders the answer last stored under its key.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use dnsfwd::cache::{key_hash, Asker, Cache, CacheConfig, Lookup, MAX_KEY_LEN};
use dnsfwd::clock::Instant;
use dnsfwd::wire::{
    parse_message, Class, Header, Message, MessageView, Name, Opcode, Question, RData, RType,
    Rcode, Record, HEADER_LEN, MAX_NAME_LEN,
};
use libfuzzer_sys::fuzz_target;

/// A TTL as the docs say the cache keeps it (`intake::clamp`).
fn clamp(cfg: &CacheConfig, ttl: u32, positive: bool) -> u32 {
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    let ttl = if positive { ttl.max(cfg.min_ttl) } else { ttl };
    ttl.min(cfg.max_ttl)
}

/// What the cache must make of a decoded answer: its lifetime and the TTL stored for
/// each record (answer, authority, additional; OPT left out), or `None` if not cacheable.
fn reference(cfg: &CacheConfig, m: &Message<'_>) -> Option<(u32, Vec<u32>)> {
    let h = m.header;
    if !h.qr || h.tc || h.opcode != Opcode::QUERY || m.questions.len() != 1 {
        return None;
    }
    let rcode = m.rcode();
    if rcode != Rcode::NOERROR && rcode != Rcode::NXDOMAIN {
        return None;
    }
    // A TSIG record (last, RFC 8945) would have our OPT record after it in a hit.
    let all = || m.answers.iter().chain(&m.authority).chain(&m.additional);
    if all().any(|r| r.rtype == RType::TSIG) {
        return None;
    }
    let positive = rcode == Rcode::NOERROR && !m.answers.is_empty();
    let soa_at = (!positive)
        .then(|| m.authority.iter().position(|r| r.rtype == RType::SOA))
        .flatten();
    let mut ttls = Vec::new();
    for (i, r) in m.answers.iter().chain(&m.authority).enumerate() {
        let ttl = if Some(i) == soa_at.map(|s| s + m.answers.len()) {
            let RData::Soa(s) = &r.rdata else {
                return None; // an empty SOA (a delete) is no SOA
            };
            clamp(cfg, r.ttl.min(s.minimum), false)
        } else {
            clamp(cfg, r.ttl, positive)
        };
        ttls.push(ttl);
    }
    let lifetime = if positive {
        ttls.iter().copied().min()?
    } else {
        let soa = ttls.get(m.answers.len() + soa_at?).copied()?;
        ttls.iter()
            .take(m.answers.len())
            .fold(soa, |a, &t| a.min(t))
    };
    for r in m.additional.iter().filter(|r| r.rtype != RType::OPT) {
        ttls.push(clamp(cfg, r.ttl, positive));
    }
    (lifetime != 0).then_some((lifetime, ttls))
}

/// Whether a name in `data` (an answer that decodes) reads octets of a TTL field, through
/// a compression pointer aimed into it: found out by decoding the answer again with every
/// TTL octet flipped. The cache patches TTLs in place, so it must not store such an
/// answer (`cache::overlap`; this target found it storing them, and serving hits that
/// did not decode).
fn reads_ttl_octets(data: &[u8], m: &Message<'_>) -> bool {
    let Ok(ttls) = dnsfwd::wire::record_ttls(data) else {
        return false;
    };
    let mut other = data.to_vec();
    for (at, _) in ttls {
        for b in &mut other[at..at + 4] {
            *b ^= 0xFF;
        }
    }
    let Ok(o) = parse_message(&other) else {
        return true;
    };
    let strip = |m: &Message<'_>| -> Vec<(Name, RType, Class)> {
        m.answers
            .iter()
            .chain(&m.authority)
            .chain(&m.additional)
            .map(|r| (r.name.clone(), r.rtype, r.class))
            .collect()
    };
    let rdata = |m: &Message<'_>| -> Vec<String> {
        m.answers
            .iter()
            .chain(&m.authority)
            .chain(&m.additional)
            .map(|r| format!("{:?}", r.rdata))
            .collect()
    };
    strip(m) != strip(&o) || rdata(m) != rdata(&o) || reads_opt_octets(data, m)
}

/// Whether a name in `data` (an answer that decodes) reads octets of its OPT record, when
/// that is last (the cache cuts it off, as per hop, and appends its own or none on a
/// hit): found out by decoding the answer again without it. (This target found a name
/// whose last label ended on the OPT record's root owner, served as a hit that did not
/// decode.)
fn reads_opt_octets(data: &[u8], m: &Message<'_>) -> bool {
    let Some(opt) = MessageView::parse(data).ok().and_then(|v| v.opt) else {
        return false;
    };
    if opt.offset + opt.len != data.len() {
        return false; // not last: decoded and written again, names aim at names
    }
    let mut cut = data[..opt.offset].to_vec();
    let arcount = u16::from_be_bytes([cut[10], cut[11]]).wrapping_sub(1);
    cut[10..12].copy_from_slice(&arcount.to_be_bytes());
    let Ok(o) = parse_message(&cut) else {
        return true;
    };
    let records = |m: &Message<'_>| -> Vec<String> {
        m.answers
            .iter()
            .chain(&m.authority)
            .chain(m.additional.iter().filter(|r| r.rtype != RType::OPT))
            .map(|r| format!("{:?} {:?} {:?} {:?}", r.name, r.rtype, r.class, r.rdata))
            .collect()
    };
    records(m) != records(&o)
}

/// FNV-1a of the input, then a xorshift stream: the choices that are not in the answer.
struct Choices(u64);

impl Choices {
    fn of(data: &[u8]) -> Choices {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Choices(h | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The settings picked by the answer's ID.
fn config(id: u16, max_entries: usize, max_bytes: usize) -> CacheConfig {
    let id = usize::from(id);
    CacheConfig {
        max_entries,
        max_bytes,
        min_ttl: [0, 1, 30, 3600][id & 3],
        max_ttl: [86_400, 10, 1, 0x7FFF_FFFF][id >> 2 & 3],
        serve_stale: id >> 4 & 1 == 1,
        stale_ttl: [86_400, 5][id >> 5 & 1],
    }
}

fn stale_window(cfg: &CacheConfig) -> u32 {
    if cfg.serve_stale {
        cfg.stale_ttl
    } else {
        0
    }
}

/// The key for `view`'s question (folded) with `flags`, and the name as spelled.
fn key_for(view: &MessageView<'_>, flags: u8) -> Option<(Vec<u8>, Vec<u8>)> {
    let (qtype, qclass) = view.qtype_qclass()?;
    let mut name = [0u8; MAX_NAME_LEN];
    let n = view.qname_wire(&mut name, false);
    if n == 0 {
        return None;
    }
    let spelled = name[..n].to_vec();
    let mut key = spelled.to_ascii_lowercase();
    key.extend_from_slice(&qtype.0.to_be_bytes());
    key.extend_from_slice(&qclass.0.to_be_bytes());
    key.push(flags);
    assert!(key.len() <= MAX_KEY_LEN);
    Some((key, spelled))
}

/// A client asking for `name` (folded), spelled at random.
fn asker(c: &mut Choices, name: &[u8], max_response: usize) -> Asker {
    let mut qname = [0u8; MAX_NAME_LEN];
    for (i, &b) in name.iter().enumerate() {
        let flip = b.is_ascii_alphabetic() && c.below(2) == 1;
        qname[i] = if flip { b ^ 0x20 } else { b };
    }
    Asker {
        id: c.next() as u16,
        rd: c.below(2) == 1,
        cd: c.below(2) == 1,
        qname,
        qname_len: name.len(),
        edns: [None, Some(false), Some(true)][c.below(3) as usize],
        max_response,
    }
}

/// Records decoded from an answer, OPT left out, each with the TTL it must be served
/// with: `ttls` (the stored ones) counted down by `age`, or 30 when stale.
fn served<'a>(m: &'a Message<'a>, ttls: &[u32], age: u32, stale: bool) -> Vec<Record<'a>> {
    let records: Vec<Record<'a>> = m
        .answers
        .iter()
        .chain(&m.authority)
        .chain(&m.additional)
        .filter(|r| r.rtype != RType::OPT)
        .cloned()
        .collect();
    assert_eq!(records.len(), ttls.len());
    records
        .into_iter()
        .zip(ttls)
        .map(|(mut r, &t)| {
            r.ttl = if stale { 30 } else { t.saturating_sub(age) };
            r
        })
        .collect()
}

/// Record equality with the owner and RDATA names compared as the decoder does (ASCII
/// case aside: a stored owner that points into the question takes the client's case).
fn same_records(got: &[Record<'_>], want: &[Record<'_>]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.name == w.name
                && g.rtype == w.rtype
                && g.class == w.class
                && g.ttl == w.ttl
                && g.rdata == w.rdata
        })
}

/// Checks what a hit rendered (`out`, for `asker`) against the decoded answer `m` whose
/// stored TTLs are `ttls`, looked up `age` seconds after it was stored.
fn check_render(out: &[u8], m: &Message<'_>, ttls: &[u32], age: u32, stale: bool, a: &Asker) {
    let r = match parse_message(out) {
        Ok(r) => r,
        Err(e) => panic!("rendered hit does not decode ({e:?}): {out:02x?}"),
    };
    let (h, o) = (r.header, m.header);
    assert_eq!(h.id, a.id);
    assert!(h.qr && !h.aa && !h.tc, "QR set, AA and TC clear: {h:?}");
    assert_eq!((h.rd, h.cd), (a.rd, a.cd), "the client's RD and CD");
    assert_eq!(
        (h.opcode, h.ra, h.z, h.ad, h.rcode),
        (o.opcode, o.ra, o.z, o.ad, o.rcode),
        "the rest of the header as received"
    );
    assert_eq!(r.questions, m.questions);
    let spelled = &a.qname[..a.qname_len];
    assert_eq!(
        out.get(HEADER_LEN..HEADER_LEN + spelled.len()),
        Some(spelled),
        "the client's spelling"
    );
    let mut want = served(m, ttls, age, stale);
    let got: Vec<Record<'_>> = r
        .answers
        .iter()
        .chain(&r.authority)
        .chain(&r.additional)
        .filter(|r| r.rtype != RType::OPT)
        .cloned()
        .collect();
    let sections = (m.answers.len(), m.authority.len());
    assert_eq!((r.answers.len(), r.authority.len()), sections);
    if !same_records(&got, &want) {
        want.truncate(64);
        panic!("records differ:\n got {got:?}\nwant {want:?}");
    }
    match (a.edns, r.edns()) {
        (None, None) => {}
        (Some(dnssec_ok), Some(e)) => {
            assert_eq!(e.dnssec_ok, dnssec_ok);
            assert_eq!((e.ext_rcode, e.version), (0, 0));
            assert_eq!(
                e.options.iter().any(|o| o.code == 15 && o.data == [0, 3]),
                stale,
                "Stale Answer EDE iff stale"
            );
            assert_eq!(r.additional.last().map(|r| r.rtype), Some(RType::OPT));
        }
        (want, got) => panic!("client EDNS {want:?}, rendered OPT {got:?}"),
    }
}

/// Filler answers for the tiny cache: `n` A records for `t.example`.
fn fillers() -> &'static [Vec<u8>] {
    static FILLERS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILLERS.get_or_init(|| {
        let name = Name::from_ascii("t.example").unwrap_or_else(|_| unreachable!());
        [1usize, 2, 3, 5, 8, 13, 21, 40, 70, 120]
            .iter()
            .map(|&n| {
                Message {
                    header: Header::from_parts(9, 0x8180, [0; 4]),
                    questions: vec![Question {
                        qname: name.clone(),
                        qtype: RType::A,
                        qclass: Class::IN,
                    }],
                    answers: (0..n)
                        .map(|i| Record {
                            name: name.clone(),
                            rtype: RType::A,
                            class: Class::IN,
                            ttl: 5 + 7 * i as u32,
                            rdata: RData::A([192, 0, 2, i as u8].into()),
                        })
                        .collect(),
                    ..Message::default()
                }
                .to_vec()
            })
            .collect()
    })
}

fn check_bounds(c: &Cache, cfg: &CacheConfig) {
    c.audit();
    assert!(c.len() <= cfg.max_entries, "{} entries", c.len());
    assert!(c.bytes() <= cfg.max_bytes, "{} octets", c.bytes());
}

/// The tiny cache's run (see the module docs). Keys 0..6 hold the fuzzed answer (under
/// its own question, if it has one), keys 6..12 the fillers (under theirs): as in the
/// forwarder, an answer is stored only under its own question.
fn tiny(data: &[u8], c: &mut Choices, id: u16, t0: Instant) {
    let max_entries = 1 + c.below(40) as usize;
    let max_bytes = [24 << 10, 48 << 10, 96 << 10, 256 << 10][c.below(4) as usize];
    let cfg = config(id, max_entries, max_bytes);
    let mut cache = Cache::new(cfg);
    let fillers = fillers();
    let own = MessageView::parse(data)
        .ok()
        .and_then(|v| key_for(&v, 0))
        .map(|(k, _)| k);
    let filler_key = b"\x01t\x07example\x00\x00\x01\x00\x01\x00";
    // The last answer stored under each key, and when.
    let mut last: [Option<(&[u8], Instant)>; 12] = [None; 12];
    let mut now = t0;
    for _ in 0..48 {
        let k = c.below(12) as usize;
        let (mut key, ours) = match &own {
            Some(own) if k < 6 => (own.clone(), true),
            _ => (filler_key.to_vec(), false),
        };
        if let Some(f) = key.last_mut() {
            *f = k as u8; // the flags octet: twelve distinct keys
        }
        match c.below(8) {
            0 => now += Duration::from_secs(c.below(40)),
            1..=3 => {
                let answer: &[u8] = if ours {
                    data
                } else {
                    &fillers[c.below(fillers.len() as u64) as usize]
                };
                let stored = match cache.parse_answer(answer) {
                    Ok((view, noted)) => {
                        let hash = cache.hash(&key);
                        cache.insert_noted(&key, hash, &view, Some(noted), now)
                    }
                    Err(_) => false,
                };
                if stored {
                    last[k] = Some((answer, now));
                    assert!(
                        matches!(cache.get(&key, now), Lookup::Fresh(_)),
                        "not found right after it was stored"
                    );
                }
            }
            _ => {
                let stale_ok = cfg.serve_stale;
                let hit = match cache.get(&key, now) {
                    Lookup::Fresh(e) => Some((e, false)),
                    Lookup::Stale(e) => Some((e, true)),
                    Lookup::Miss => None,
                };
                if let Some((e, stale)) = hit {
                    assert!(stale_ok || !stale);
                    let Some((answer, at)) = last[k] else {
                        panic!("a hit for key {k}, never stored");
                    };
                    let m = parse_message(answer).unwrap_or_else(|_| unreachable!());
                    let Some((_, ttls)) = reference(&cfg, &m) else {
                        panic!("a hit for an answer that may not be cached");
                    };
                    let who = asker(c, &key[..key.len() - 5], 65_535);
                    let out = Cache::render(&e, now, &who, stale);
                    let age = now.duration_since(at).as_secs() as u32;
                    check_render(&out, &m, &ttls, age, stale, &who);
                }
            }
        }
        check_bounds(&cache, &cfg);
    }
}

fuzz_target!(|data: &[u8]| {
    let id = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    let mut c = Choices::of(data);
    let max_bytes = [1 << 20, 32 << 20][usize::from(id >> 6 & 1)];
    let cfg = config(id, 1000, max_bytes);
    let t0 = Instant::now();

    // The forwarder's path.
    let mut fast = Cache::new(cfg);
    let parsed = fast.parse_answer(data);
    let viewed = MessageView::parse(data);
    assert_eq!(
        parsed.is_ok(),
        viewed.is_ok(),
        "parse_answer and the view differ"
    );
    let (view, noted) = match parsed {
        Ok(p) => p,
        Err(_) => {
            tiny(data, &mut c, id, t0);
            return;
        }
    };
    if let Ok(v) = &viewed {
        assert_eq!(format!("{view:?}"), format!("{v:?}"));
    }
    let decoded = parse_message(data).ok();
    let expected = decoded
        .as_ref()
        .filter(|m| !reads_ttl_octets(data, m))
        .and_then(|m| reference(&cfg, m));
    let flags = c.below(8) as u8;
    let Some((key, spelled)) = key_for(&view, flags) else {
        // No question: nothing the forwarder would accept.
        tiny(data, &mut c, id, t0);
        return;
    };
    let hash = key_hash(fast.question_hash(&key[..key.len() - 1]), flags);
    assert_eq!(hash, fast.hash(&key));
    let stored = fast.insert_noted(&key, hash, &view, Some(noted), t0);
    let refused = fast.refused() == 1;
    assert!(!(stored && refused));
    assert_eq!(
        stored || refused,
        expected.is_some(),
        "stored {stored} refused {refused}, the decoder says {expected:?} ({}): {data:02x?}",
        if decoded.is_some() {
            "decodes"
        } else {
            "does not decode"
        }
    );

    // The slow paths.
    let mut slow = Cache::new(cfg);
    assert_eq!(slow.insert(&key, data, t0), stored, "Cache::insert differs");
    let mut walked = Cache::new(cfg);
    let h = walked.hash(&key);
    assert_eq!(
        walked.insert_noted(&key, h, &view, None, t0),
        stored,
        "insert_noted without notes differs"
    );
    for cache in [&fast, &slow, &walked] {
        cache.audit();
    }
    if !stored {
        assert!(matches!(fast.get(&key, t0), Lookup::Miss));
        tiny(data, &mut c, id, t0);
        return;
    }
    let (Some(m), Some((lifetime, ttls))) = (decoded.as_ref(), expected) else {
        unreachable!("stored, so expected");
    };
    assert_eq!(
        fast.lifetime(&key),
        Some(Duration::from_secs(lifetime.into()))
    );

    // A lookup at an age around the lifetime and the stale window.
    let window = stale_window(&cfg);
    let age = match c.below(8) {
        0 => 0,
        1 => lifetime - 1,
        2 => lifetime,
        3 => lifetime.saturating_add(window.saturating_sub(1)),
        4 => lifetime.saturating_add(window),
        5 => c.below(u64::from(lifetime)) as u32,
        6 => 1,
        _ => c.next() as u32 >> 4,
    };
    let now = t0 + Duration::from_secs(age.into());
    let max_response = [65_535, 1232, 512][c.below(3) as usize];
    let who = asker(&mut c, &spelled.to_ascii_lowercase(), max_response);
    let mut outs = Vec::new();
    for cache in [&mut fast, &mut slow, &mut walked] {
        let (e, stale) = match cache.get(&key, now) {
            Lookup::Fresh(e) => (e, false),
            Lookup::Stale(e) => (e, true),
            Lookup::Miss => {
                assert!(
                    age >= lifetime.saturating_add(window),
                    "missed at age {age}"
                );
                outs.push(None);
                continue;
            }
        };
        assert_eq!(stale, age >= lifetime, "age {age}, lifetime {lifetime}");
        assert!(age < lifetime.saturating_add(window));
        assert_eq!(e.key_bytes(), &key[..]);
        assert_eq!(e.key_flags(), flags);
        assert_eq!(e.remaining(now), lifetime.saturating_sub(age));
        let question = &data[HEADER_LEN..HEADER_LEN + spelled.len() + 4];
        assert_eq!(e.question_wire(), question, "the stored question");
        let out = Cache::render(&e, now, &who, stale);
        let full = Asker {
            max_response: 65_535,
            ..who.clone()
        };
        let whole = Cache::render(&e, now, &full, stale);
        check_render(&whole, m, &ttls, age, stale, &full);
        if out.len() != whole.len() {
            // Too big for this client: re-encoded, truncated, and still an answer.
            assert!(out.len() <= max_response, "{} > {max_response}", out.len());
            let t = parse_message(&out).unwrap_or_else(|e| panic!("truncated: {e:?}"));
            assert_eq!(t.header.id, who.id);
        } else {
            assert_eq!(out, whole);
        }
        outs.push(Some(out));
    }
    assert!(
        outs.windows(2).all(|w| w[0] == w[1]),
        "the paths render differently: {outs:02x?}"
    );
    tiny(data, &mut c, id, t0);
});
