//! The answer cache (RFC 1035 §7.4, RFC 2181 §5-8, RFC 2308, RFC 8767).
//!
//! An entry is a whole answer in wire form, stored without its OPT record (EDNS is per
//! hop, RFC 6891 §6.1.1) and with every TTL already clamped, together with where each
//! TTL sits. Serving it is a copy and a few patches — the client's ID, its RD and CD
//! bits, its spelling of the name, the TTLs counted down by the time spent here, and an
//! OPT record of our own if the client sent one — so a hit costs no parsing; only an
//! answer too big for the client is re-encoded (truncated, TC=1).
//!
//! Keys: the question name (ASCII case folded), type, class, and the DO and CD bits,
//! which change what an upstream returns. Entries are looked up by a keyed SipHash of
//! the key (random per process, so hashes cannot be aimed) and the key bytes are
//! compared. Memory is bounded by an entry count and a byte budget, both always held;
//! which entry goes is S3-FIFO's choice ([`store`]), so names asked for once cannot
//! flush the ones asked for often.
use std::time::{Duration, Instant};

use crate::wire::{
    parse_message, record_ttls, set_id, Message, MessageView, Opcode, RData, RType, Rcode,
    CLASSIC_UDP_LEN, HEADER_LEN, MAX_NAME_LEN,
};

mod ghost;
mod intake;
mod sip;
mod store;
pub(crate) use sip::Keyed;
pub use store::key_hash;
pub(crate) use store::Prehashed;

use store::{Queue, Store};

/// Longest key: a 255-octet name, type, class and one flags octet.
pub const MAX_KEY_LEN: usize = MAX_NAME_LEN + 5;
/// An entry may take at most this fraction of the byte budget; bigger answers are
/// relayed but not cached. 1/128 keeps one entry under a tenth of the small queue, so
/// one insertion evicts a few entries at most; at the default 32 MiB it is 256 KiB, so
/// every DNS message (at most 64 KiB) can be cached, large DNSSEC answers included.
const ENTRY_SHARE: usize = 128;
/// Octets of one row of an entry's TTL table: a TTL field's offset in the answer (u16,
/// big-endian; the stored TTL is in the answer itself).
const TTL_ROW: usize = 2;
/// TTL given to stale answers (RFC 8767 §4: "30 is RECOMMENDED").
pub const STALE_TTL_SERVED: u32 = 30;

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries; 0 turns the cache (and query coalescing) off.
    pub max_entries: usize,
    /// Most octets the cache holds, everything counted: each entry as allocated, with its
    /// node and index slot, and the ghost table. Both bounds apply.
    pub max_bytes: usize,
    /// TTLs below this are raised to it (positive answers only).
    pub min_ttl: u32,
    /// TTLs above this are lowered to it.
    pub max_ttl: u32,
    /// How long past expiry an entry may still be served when upstreams fail (RFC 8767).
    pub stale_ttl: u32,
    pub serve_stale: bool,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            // About what 32 MiB holds of typical answers (250 to 350 octets each, all
            // counted), so that the byte budget is what binds when answers are large.
            max_entries: 100_000,
            // An edge box: with the cache full, the whole process stays under 64 MiB.
            max_bytes: 32 << 20,
            min_ttl: 0,
            max_ttl: 86_400,
            stale_ttl: 86_400,
            serve_stale: true,
        }
    }
}

/// One cached answer.
#[derive(Debug)]
pub struct Entry {
    /// One allocation: the key, then the answer (without OPT, ID 0, AA clear, TTLs
    /// clamped), then where its TTL fields are (`TTL_ROW` octets a record, in wire order).
    buf: Box<[u8]>,
    key_len: u16,
    wire_len: u16,
    stored: Instant,
    /// Lifetime in seconds: the smallest TTL (positive) or the SOA's negative TTL.
    ttl: u32,
    /// A refresh is on its way; no second one until it lands.
    pub prefetching: bool,
    /// Eviction state, kept by [`store`]: the queue it is in, and how often it was asked
    /// for since it last moved. Valid values of `freq`: 0..=3.
    queue: Queue,
    freq: u8,
}

impl Entry {
    /// An entry for `wire` (the stored form) under `key`; `None` if it does not walk.
    fn new(key: &[u8], wire: &[u8], ttl: u32, now: Instant) -> Option<Entry> {
        let positions = record_ttls(wire).ok()?;
        let mut buf = Vec::with_capacity(key.len() + wire.len() + positions.len() * TTL_ROW);
        buf.extend_from_slice(key);
        buf.extend_from_slice(wire);
        for &(at, _) in &positions {
            wire.get(at..at + 4)?;
            buf.extend_from_slice(&u16::try_from(at).ok()?.to_be_bytes());
        }
        Some(Entry {
            buf: buf.into_boxed_slice(),
            key_len: u16::try_from(key.len()).ok()?,
            wire_len: u16::try_from(wire.len()).ok()?,
            stored: now,
            ttl,
            prefetching: false,
            queue: Queue::Small,
            freq: 0,
        })
    }

    fn key(&self) -> &[u8] {
        self.buf
            .get(..usize::from(self.key_len))
            .unwrap_or_default()
    }

    fn wire(&self) -> &[u8] {
        let start = usize::from(self.key_len);
        let end = start + usize::from(self.wire_len);
        self.buf.get(start..end).unwrap_or_default()
    }

    /// Offsets of the TTL fields in the answer, in wire order (each is in bounds).
    fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let start = usize::from(self.key_len) + usize::from(self.wire_len);
        self.buf
            .get(start..)
            .unwrap_or_default()
            .chunks_exact(TTL_ROW)
            .map(|r| usize::from(u16::from_be_bytes([r[0], r[1]])))
    }

    /// Seconds of freshness left at `now` (0 once expired).
    pub fn remaining(&self, now: Instant) -> u32 {
        self.ttl.saturating_sub(elapsed_secs(self.stored, now))
    }

    /// Whether it should be refreshed ahead of expiry: asked for in the last 10% of its
    /// lifetime (as Unbound's `prefetch`).
    pub fn wants_prefetch(&self, now: Instant) -> bool {
        !self.prefetching && self.ttl >= 10 && self.remaining(now).saturating_mul(10) < self.ttl
    }

    /// The question as stored (name, type, class in wire form), to build a refresh query.
    pub fn question_wire(&self) -> &[u8] {
        let end = MessageView::parse(self.wire())
            .ok()
            .and_then(|v| {
                let mut name = [0u8; MAX_NAME_LEN];
                let n = v.qname_wire(&mut name, false);
                (n > 0).then_some(HEADER_LEN + n + 4)
            })
            .unwrap_or(HEADER_LEN);
        self.wire().get(HEADER_LEN..end).unwrap_or_default()
    }

    /// The key this entry is stored under.
    pub fn key_bytes(&self) -> &[u8] {
        self.key()
    }

    /// The key's flags octet (RD = 4, DO = 2, CD = 1).
    pub fn key_flags(&self) -> u8 {
        self.key().last().copied().unwrap_or(0)
    }

    /// Octets this entry holds, as the allocator and the store see them: its buffer
    /// rounded up as malloc does, its node and its index slot.
    fn size(&self) -> usize {
        heap_bytes(self.buf.len()) + store::PER_ENTRY
    }
}

/// Octets an allocation of `n` takes from glibc's malloc: an 8-octet header, rounded up
/// to 16, 32 at least.
fn heap_bytes(n: usize) -> usize {
    (n.saturating_add(8 + 15) & !15).max(32)
}

/// What a lookup found.
pub enum Lookup<'a> {
    Fresh(&'a mut Entry),
    /// Expired, but within the stale window.
    Stale(&'a mut Entry),
    Miss,
}

/// Who an answer is rendered for: what of the client's query shapes it.
#[derive(Debug, Clone)]
pub struct Asker {
    pub id: u16,
    pub rd: bool,
    pub cd: bool,
    /// The question name as the client spelled it, uncompressed wire form
    /// (`qname_len` octets of it).
    pub qname: [u8; MAX_NAME_LEN],
    pub qname_len: usize,
    /// `Some(DO)` if the client sent an OPT record.
    pub edns: Option<bool>,
    /// Largest answer it can take.
    pub max_response: usize,
}

impl Asker {
    /// What of `query` shapes the answer to it; `max_response` per its transport.
    pub fn from_query(query: &MessageView<'_>, max_response: usize) -> Asker {
        let mut qname = [0u8; MAX_NAME_LEN];
        let qname_len = query.qname_wire(&mut qname, false);
        Asker {
            id: query.header.id,
            rd: query.header.rd,
            cd: query.header.cd,
            qname,
            qname_len,
            edns: query.opt.map(|o| o.dnssec_ok),
            max_response,
        }
    }
}

/// The cache. Valid values: `len()` ≤ `cfg.max_entries` and `bytes()` ≤ `cfg.max_bytes`
/// whenever a call returns.
pub struct Cache {
    cfg: CacheConfig,
    store: Store,
    /// Answers that could be cached but were too big for a share of the budget.
    refused: u64,
}

/// Seconds past expiry an entry may still be served.
fn stale_window(cfg: &CacheConfig) -> u32 {
    if cfg.serve_stale {
        cfg.stale_ttl
    } else {
        0
    }
}

fn elapsed_secs(from: Instant, now: Instant) -> u32 {
    now.saturating_duration_since(from)
        .as_secs()
        .min(u64::from(u32::MAX)) as u32
}

/// The stored form made from the received octets rather than re-encoded (the common
/// case: no OPT record, or OPT last): OPT cut off, ID 0, AA clear, and each record's TTL
/// overwritten with `ttls` (in wire order, OPT excluded). `None` sends the caller to
/// the re-encoding path.
fn patched_copy(response: &[u8], ttls: &[u32]) -> Option<Vec<u8>> {
    let view = MessageView::parse(response).ok()?;
    let end = match view.opt {
        None => view.end,
        Some(o) if o.offset + o.len == view.end => o.offset,
        Some(_) => return None,
    };
    let mut wire = response.get(..end)?.to_vec();
    set_id(&mut wire, 0);
    if let Some(flags) = wire.get_mut(2) {
        *flags &= !0x04; // AA
    }
    if view.opt.is_some() {
        let ar = wire.get_mut(10..12)?;
        let n = u16::from_be_bytes([ar[0], ar[1]]).checked_sub(1)?;
        ar.copy_from_slice(&n.to_be_bytes());
    }
    let positions = record_ttls(&wire).ok()?;
    if positions.len() != ttls.len() {
        return None;
    }
    for (&(at, _), ttl) in positions.iter().zip(ttls) {
        wire.get_mut(at..at + 4)?
            .copy_from_slice(&ttl.to_be_bytes());
    }
    Some(wire)
}

/// The flags octet of a query's key: RD = 4, DO = 2, CD = 1. DO and CD change what an
/// upstream returns; so does RD (an RD=0 query gets only what the upstream has cached,
/// e.g. a CNAME without its target).
pub fn key_flags(query: &MessageView<'_>) -> u8 {
    u8::from(query.header.rd) << 2
        | u8::from(query.opt.is_some_and(|o| o.dnssec_ok)) << 1
        | u8::from(query.header.cd)
}

/// Builds the cache key of a query into `buf`; returns its length, or `None` if the
/// query has no question.
pub fn key_of(query: &MessageView<'_>, buf: &mut [u8; MAX_KEY_LEN]) -> Option<usize> {
    let (qtype, qclass) = query.qtype_qclass()?;
    let mut name = [0u8; MAX_NAME_LEN];
    let n = query.qname_wire(&mut name, true);
    if n == 0 {
        return None;
    }
    let flags = key_flags(query);
    let mut w = 0;
    for b in name
        .get(..n)?
        .iter()
        .chain(&qtype.0.to_be_bytes())
        .chain(&qclass.0.to_be_bytes())
        .chain(&[flags])
    {
        *buf.get_mut(w)? = *b;
        w += 1;
    }
    Some(w)
}

impl Cache {
    pub fn new(cfg: CacheConfig) -> Cache {
        Cache {
            cfg,
            store: Store::new(cfg.max_entries, cfg.max_bytes, stale_window(&cfg)),
            refused: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.max_entries > 0
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// Octets held: entries (answers, keys, TTL tables, nodes, index slots) and the
    /// ghost table. Never above `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.store.bytes()
    }

    /// Entries evicted to make room so far.
    pub fn evictions(&self) -> u64 {
        self.store.evictions
    }

    /// Cacheable answers not cached because they were bigger than 1/128 of the budget.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The hash a key is indexed under (see [`key_hash`]).
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.store.hash(key)
    }

    /// The keyed hash of a question (a key without its flags octet); with the flags,
    /// [`key_hash`] makes the key's hash of it.
    pub fn question_hash(&self, question: &[u8]) -> u64 {
        self.store.question_hash(question)
    }

    /// Looks `key` up at `now`; a fresh or stale hit counts as asked for (see [`store`]).
    pub fn get(&mut self, key: &[u8], now: Instant) -> Lookup<'_> {
        let hash = self.hash(key);
        self.get_hashed(key, hash, now)
    }

    /// [`get`](Self::get) with the key's hash already known (from [`hash`](Self::hash)
    /// or [`key_hash`]).
    pub fn get_hashed(&mut self, key: &[u8], hash: u64, now: Instant) -> Lookup<'_> {
        let window = stale_window(&self.cfg);
        let Some(e) = self.store.get_mut(key, hash) else {
            return Lookup::Miss;
        };
        let age = elapsed_secs(e.stored, now);
        if age < e.ttl {
            e.asked();
            Lookup::Fresh(e)
        } else if age < e.ttl.saturating_add(window) {
            e.asked();
            Lookup::Stale(e)
        } else {
            Lookup::Miss
        }
    }

    /// Caches `response` (an upstream's answer to a query with this key) if it may be:
    /// NOERROR with answers, or NXDOMAIN/NODATA with an SOA (RFC 2308 §5); never
    /// truncated, never other RCODEs, never what does not fully decode. Returns whether
    /// it was stored.
    pub fn insert(&mut self, key: &[u8], response: &[u8], now: Instant) -> bool {
        match MessageView::parse(response) {
            // Bytes after the last record: it does not decode.
            Ok(view) if view.end == response.len() => self.insert_view(key, &view, now),
            _ => false,
        }
    }

    /// [`insert`](Self::insert) for an answer already looked at: `view` (its octets up to
    /// `view.end`). Walks the answer once, copying it into the entry as it goes.
    pub fn insert_view(&mut self, key: &[u8], view: &MessageView<'_>, now: Instant) -> bool {
        let hash = self.hash(key);
        self.insert_hashed(key, hash, view, now)
    }

    /// [`insert_view`](Self::insert_view) with the key's hash already known.
    pub fn insert_hashed(
        &mut self,
        key: &[u8],
        hash: u64,
        view: &MessageView<'_>,
        now: Instant,
    ) -> bool {
        if !self.enabled() || key.len() > MAX_KEY_LEN {
            return false;
        }
        let entry = match intake::intake(&self.cfg, key, view, now) {
            intake::Intake::Entry(e) => e,
            intake::Intake::No => return false,
            intake::Intake::Decode => {
                let answer = view.bytes().get(..view.end).unwrap_or_default();
                let Some((wire, ttl)) = self.cacheable(answer) else {
                    return false;
                };
                let Some(e) = Entry::new(key, &wire, ttl, now) else {
                    return false;
                };
                e
            }
        };
        if entry.size() > self.cfg.max_bytes / ENTRY_SHARE || !self.store.insert(entry, hash, now) {
            self.refused += 1;
            return false;
        }
        true
    }

    /// The stored form of `response` and its lifetime, if it may be cached, by decoding
    /// it and writing it again: for answers whose OPT record is not last (the common
    /// case takes [`intake`]'s one walk, which the tests hold to the same result).
    fn cacheable(&self, response: &[u8]) -> Option<(Vec<u8>, u32)> {
        let mut m: Message<'_> = parse_message(response).ok()?;
        let h = m.header;
        if !h.qr || h.tc || h.opcode != Opcode::QUERY || m.questions.len() != 1 {
            return None;
        }
        let rcode = m.rcode();
        let clamp = |ttl: u32, positive: bool| intake::clamp(&self.cfg, ttl, positive);
        let positive = rcode == Rcode::NOERROR && !m.answers.is_empty();
        let ttl = if positive {
            m.answers
                .iter()
                .chain(&m.authority)
                .map(|r| clamp(r.ttl, true))
                .min()?
        } else if rcode == Rcode::NOERROR || rcode == Rcode::NXDOMAIN {
            // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM).
            let soa = m.authority.iter_mut().find(|r| r.rtype == RType::SOA)?;
            let RData::Soa(s) = &soa.rdata else {
                return None;
            };
            soa.ttl = clamp(soa.ttl.min(s.minimum), false);
            // A CNAME chain in front of the NXDOMAIN/NODATA must not outlive its own TTL.
            let negative = soa.ttl;
            m.answers
                .iter()
                .map(|r| clamp(r.ttl, false))
                .fold(negative, u32::min)
        } else {
            return None;
        };
        if ttl == 0 {
            return None;
        }
        for r in m
            .answers
            .iter_mut()
            .chain(&mut m.authority)
            .chain(&mut m.additional)
        {
            r.ttl = clamp(r.ttl, positive);
        }
        let ttls: Vec<u32> = m
            .answers
            .iter()
            .chain(&m.authority)
            .chain(&m.additional)
            .filter(|r| r.rtype != RType::OPT)
            .map(|r| r.ttl)
            .collect();
        if let Some(wire) = patched_copy(response, &ttls) {
            return Some((wire, ttl));
        }
        m.additional.retain(|r| r.rtype != RType::OPT);
        m.header.id = 0;
        m.header.aa = false;
        // The stored header carries the RCODE's low bits; extended ones never get here.
        Some((m.to_vec(), ttl))
    }

    /// The answer for `asker` from `entry` at `now` (see the module docs); with `stale`,
    /// every TTL is 30 (RFC 8767 §4).
    pub fn render(entry: &Entry, now: Instant, asker: &Asker, stale: bool) -> Vec<u8> {
        Cache::render_into(entry, now, asker, stale, Vec::new())
    }

    /// [`render`](Self::render) into `out` (a recycled buffer: its contents go), so
    /// that a hit need not allocate.
    pub fn render_into(
        entry: &Entry,
        now: Instant,
        asker: &Asker,
        stale: bool,
        mut out: Vec<u8>,
    ) -> Vec<u8> {
        out.clear();
        out.reserve(entry.wire().len() + 11);
        out.extend_from_slice(entry.wire());
        set_id(&mut out, asker.id);
        if let Some(flags) = out.get_mut(2..4) {
            // QR, opcode and RCODE as stored; AA and TC clear; RD and CD from the client.
            flags[0] = (flags[0] & 0xF8) | 0x80 | u8::from(asker.rd);
            flags[1] = (flags[1] & 0xEF) | u8::from(asker.cd) << 4;
        }
        // The client's spelling: the stored question name is uncompressed at offset 12
        // (our writer puts it there), and an equal name has the same length.
        let spelling = asker.qname.get(..asker.qname_len).unwrap_or_default();
        if let Some(name) = out.get_mut(HEADER_LEN..HEADER_LEN + spelling.len()) {
            if name.eq_ignore_ascii_case(spelling) {
                name.copy_from_slice(spelling);
            }
        }
        let age = elapsed_secs(entry.stored, now);
        for at in entry.ttl_offsets() {
            if let Some(field) = out.get_mut(at..at + 4) {
                // The copy still holds the TTL as stored.
                let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                let served = if stale {
                    STALE_TTL_SERVED
                } else {
                    ttl.saturating_sub(age)
                };
                field.copy_from_slice(&served.to_be_bytes());
            }
        }
        if let Some(dnssec_ok) = asker.edns {
            // Our OPT record; a stale answer says so (RFC 8914 INFO-CODE 3, Stale Answer).
            let ede: &[u8] = if stale { &[0, 15, 0, 2, 0, 3] } else { &[] };
            crate::wire::push_opt(&mut out, 0, dnssec_ok, ede);
        }
        if out.len() > asker.max_response.max(CLASSIC_UDP_LEN) {
            if let Ok(m) = parse_message(&out) {
                return m.write(asker.max_response);
            }
        }
        out
    }

    /// How long until an entry stored now with `ttl` seconds expires (for tests).
    pub fn lifetime(&self, key: &[u8]) -> Option<Duration> {
        let e = self.store.get(key)?;
        Some(Duration::from_secs(u64::from(e.ttl)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Class, Header, Name, Question, Record};

    fn answer(ttls: &[u32]) -> Vec<u8> {
        let name = Name::from_ascii("t.example").unwrap();
        Message {
            header: Header::from_parts(9, 0x8580, [0; 4]),
            questions: vec![Question {
                qname: name.clone(),
                qtype: RType::A,
                qclass: Class::IN,
            }],
            answers: ttls
                .iter()
                .enumerate()
                .map(|(n, &ttl)| Record {
                    name: name.clone(),
                    rtype: RType::A,
                    class: Class::IN,
                    ttl,
                    rdata: RData::A([192, 0, 2, n as u8].into()),
                })
                .collect(),
            ..Message::default()
        }
        .to_vec()
    }

    fn key() -> Vec<u8> {
        let q = answer(&[]);
        let v = MessageView::parse(&q).unwrap();
        let mut k = [0u8; MAX_KEY_LEN];
        let n = key_of(&v, &mut k).unwrap();
        k[..n].to_vec()
    }

    #[test]
    fn lifetime_is_the_smallest_ttl_clamped() {
        let now = Instant::now();
        let cfg = CacheConfig {
            min_ttl: 60,
            max_ttl: 3600,
            ..CacheConfig::default()
        };
        let mut c = Cache::new(cfg);
        assert!(c.insert(&key(), &answer(&[7200, 30]), now));
        assert_eq!(
            c.lifetime(&key()),
            Some(Duration::from_secs(60)),
            "30 raised to the minimum"
        );
        assert!(c.insert(&key(), &answer(&[7200, 9000]), now));
        assert_eq!(
            c.lifetime(&key()),
            Some(Duration::from_secs(3600)),
            "lowered to the maximum"
        );
        assert_eq!(c.len(), 1, "replaced, not added");
    }

    #[test]
    fn ttl_with_top_bit_counts_as_zero_and_is_not_cached() {
        let mut c = Cache::new(CacheConfig::default());
        assert!(!c.insert(&key(), &answer(&[0x8000_0000]), Instant::now()));
        assert!(c.is_empty());
    }

    /// The key of an A query for `n<n>.example` (RD set).
    fn key_n(n: usize) -> Vec<u8> {
        let q = Message {
            header: Header::from_parts(1, 0x0100, [0; 4]),
            questions: vec![Question {
                qname: Name::from_ascii(&format!("n{n}.example")).unwrap(),
                qtype: RType::A,
                qclass: Class::IN,
            }],
            ..Message::default()
        }
        .to_vec();
        let v = MessageView::parse(&q).unwrap();
        let mut k = [0u8; MAX_KEY_LEN];
        let n = key_of(&v, &mut k).unwrap();
        k[..n].to_vec()
    }

    /// What the forwarder does for a query: a lookup, and on a miss the upstream's
    /// answer stored. Returns whether it was a hit.
    fn ask(c: &mut Cache, key: &[u8], response: &[u8], now: Instant) -> bool {
        if matches!(c.get(key, now), Lookup::Fresh(_)) {
            return true;
        }
        c.insert(key, response, now);
        false
    }

    /// Checks both bounds and that the queues add up.
    #[track_caller]
    fn check_bounds(c: &Cache) {
        let [(sl, sb), (ml, mb)] = c.store.queues();
        assert!(c.len() <= c.cfg.max_entries, "{} entries", c.len());
        assert!(c.bytes() <= c.cfg.max_bytes, "{} bytes", c.bytes());
        assert_eq!(sl + ml, c.len());
        assert!(sb + mb <= c.bytes());
    }

    /// Names 0..50 asked for 5 times each (a miss, then 4 hits); the clock moves 1 ms a
    /// query. Returns the clock after.
    fn ask_popular(c: &mut Cache, t0: Instant) -> Instant {
        let small = answer(&[300; 2]);
        let mut now = t0;
        for _ in 0..5 {
            for n in 0..50 {
                ask(c, &key_n(n), &small, now);
                now += Duration::from_millis(1);
            }
        }
        now
    }

    fn popular_cached(c: &Cache) -> usize {
        (0..50).filter(|&n| c.lifetime(&key_n(n)).is_some()).count()
    }

    #[test]
    fn a_scan_of_one_off_names_does_not_flush_popular_ones() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheConfig {
            max_entries: 1000,
            ..CacheConfig::default()
        });
        let mut now = ask_popular(&mut c, t0);
        let small = answer(&[300; 2]);
        for n in 1000..21_000 {
            assert!(!ask(&mut c, &key_n(n), &small, now));
            now += Duration::from_millis(1);
        }
        check_bounds(&c);
        assert_eq!(c.len(), 1000);
        // The LRU this replaced (3666bd8) kept 0 of the 50.
        let kept = popular_cached(&c);
        assert!(kept >= 45, "{kept} of 50 popular names left");
        assert!(c.evictions() >= 19_000);
    }

    #[test]
    fn large_answers_do_not_flush_popular_ones() {
        let t0 = Instant::now();
        // 10 MiB: what the LRU this replaced allowed for its default 10,000 entries.
        let mut c = Cache::new(CacheConfig {
            max_entries: 10_000,
            max_bytes: 10 << 20,
            ..CacheConfig::default()
        });
        let mut now = ask_popular(&mut c, t0);
        let big = answer(&[300; 940]);
        assert!(big.len() > 15_000);
        for n in 1000..1700 {
            assert!(!ask(&mut c, &key_n(n), &big, now));
            check_bounds(&c);
            now += Duration::from_millis(1);
        }
        assert!(c.len() < 700, "the budget binds: {} entries", c.len());
        // The LRU this replaced (3666bd8) kept 0 of the 50.
        let kept = popular_cached(&c);
        assert!(kept >= 45, "{kept} of 50 popular names left");
    }

    #[test]
    fn both_bounds_hold_at_every_step_with_mixed_sizes() {
        let t0 = Instant::now();
        // Bound by octets (1/128 of 256 KiB: answers over 2 KiB refused), then by count.
        for (max_entries, max_bytes) in [(1000, 256 << 10), (40, 16 << 20)] {
            let mut c = Cache::new(CacheConfig {
                max_entries,
                max_bytes,
                ..CacheConfig::default()
            });
            let answers: Vec<Vec<u8>> = (1..=150).map(|n| answer(&vec![300; n])).collect();
            for step in 0..3000usize {
                let now = t0 + Duration::from_millis(step as u64);
                // Some names come back (promotions, turns in main), most do not.
                let n = if step % 3 == 0 { step % 97 } else { step };
                ask(&mut c, &key_n(n), &answers[step * 37 % answers.len()], now);
                check_bounds(&c);
            }
            assert!(c.evictions() > 0);
            let refused = c.refused();
            assert_eq!(refused > 0, max_bytes < 1 << 20, "{refused} refused");
        }
    }

    #[test]
    fn evicted_from_small_and_asked_again_goes_to_main() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheConfig {
            max_entries: 100,
            ..CacheConfig::default()
        });
        let small = answer(&[300; 1]);
        let (x, y) = (key_n(0), key_n(1));
        assert!(c.insert(&x, &small, t0));
        assert!(c.insert(&y, &small, t0));
        assert!(matches!(c.get(&y, t0), Lookup::Fresh(_)));
        assert_eq!(
            c.store.queue_of(&x),
            Some(Queue::Small),
            "new entries start small"
        );
        for n in 2..100 {
            assert!(c.insert(&key_n(n), &small, t0));
        }
        // Full: the next one evicts x (oldest, never asked again) to the ghost; the one
        // after moves y (asked for once) to main and evicts the name after it.
        assert!(c.insert(&key_n(100), &small, t0));
        assert_eq!(c.store.queue_of(&x), None);
        assert_eq!(c.store.queue_of(&y), Some(Queue::Small));
        assert!(c.insert(&key_n(101), &small, t0));
        assert_eq!(c.store.queue_of(&y), Some(Queue::Main));
        assert_eq!(c.store.queue_of(&key_n(2)), None);
        // Asked again soon: x is admitted straight to main; a name never seen is not.
        assert!(c.insert(&x, &small, t0));
        assert_eq!(c.store.queue_of(&x), Some(Queue::Main));
        assert!(c.insert(&key_n(5000), &small, t0));
        assert_eq!(c.store.queue_of(&key_n(5000)), Some(Queue::Small));
        // And a scan leaves both alone.
        for n in 10_000..12_000 {
            assert!(c.insert(&key_n(n), &small, t0));
        }
        assert!(c.lifetime(&x).is_some() && c.lifetime(&y).is_some());
        check_bounds(&c);
    }

    #[test]
    fn a_refresh_keeps_its_queue_and_count() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheConfig {
            max_entries: 10,
            ..CacheConfig::default()
        });
        let small = answer(&[300; 1]);
        assert!(c.insert(&key_n(0), &small, t0));
        assert!(matches!(c.get(&key_n(0), t0), Lookup::Fresh(_)));
        assert!(c.insert(&key_n(0), &answer(&[300; 3]), t0 + Duration::from_secs(1)));
        assert_eq!(c.len(), 1);
        // Still counted as asked for: the scan moves it to main instead of evicting it.
        for n in 1..100 {
            assert!(c.insert(&key_n(n), &small, t0));
        }
        assert_eq!(c.store.queue_of(&key_n(0)), Some(Queue::Main));
    }

    #[test]
    fn dead_entries_go_first_whatever_their_count() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheConfig {
            max_entries: 20,
            serve_stale: false,
            ..CacheConfig::default()
        });
        let (x, y) = (key_n(0), key_n(1));
        assert!(c.insert(&x, &answer(&[10]), t0));
        assert!(c.insert(&y, &answer(&[300]), t0));
        for k in [&x, &y] {
            assert!(matches!(c.get(k, t0), Lookup::Fresh(_)));
        }
        for n in 2..=20 {
            assert!(c.insert(&key_n(n), &answer(&[300]), t0));
        }
        // x and y moved to main (x at its tail); asked for 3 times there.
        for k in [&x, &y, &x, &y, &x, &y] {
            assert!(matches!(c.get(k, t0), Lookup::Fresh(_)));
        }
        assert_eq!(c.store.queue_of(&x), Some(Queue::Main));
        // x expires. Everything in small is asked for, so the next insertion empties small
        // into main and evicts from main: x, dead, before y, which goes round again.
        let later = t0 + Duration::from_secs(11);
        for n in 3..=20 {
            assert!(matches!(c.get(&key_n(n), later), Lookup::Fresh(_)));
        }
        assert!(c.insert(&key_n(21), &answer(&[300]), later));
        assert_eq!(c.lifetime(&x), None);
        assert!(c.lifetime(&y).is_some());
        assert_eq!(c.store.queues()[0].0, 1, "small holds only the new one");
    }

    #[test]
    fn an_answer_over_a_128th_of_the_budget_is_refused() {
        let now = Instant::now();
        let mut c = Cache::new(CacheConfig {
            max_bytes: 1 << 20,
            ..CacheConfig::default()
        });
        // 8 KiB allowed: 400 A records (6.4 KB and a 0.8 KB TTL table) fit, 600 do not.
        assert!(c.insert(&key(), &answer(&[300; 400]), now));
        assert!(!c.insert(&key_n(1), &answer(&[300; 600]), now));
        assert_eq!((c.len(), c.refused()), (1, 1));
    }
}
