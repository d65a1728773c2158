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
//! compared. Memory is bounded by an entry count and a byte budget, evicting the least
//! recently used.
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use crate::wire::{
    parse_message, record_ttls, set_id, Message, MessageView, Opcode, RData, RType, Rcode,
    CLASSIC_UDP_LEN, HEADER_LEN, MAX_NAME_LEN,
};

/// Longest key: a 255-octet name, type, class and one flags octet.
pub const MAX_KEY_LEN: usize = MAX_NAME_LEN + 5;
/// Answers bigger than this are relayed but not cached.
const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// Average bytes per entry the byte budget allows (entries × this).
const BUDGET_PER_ENTRY: usize = 1024;
/// TTL given to stale answers (RFC 8767 §4: "30 is RECOMMENDED").
pub const STALE_TTL_SERVED: u32 = 30;
/// UDP payload size in the OPT records we add.
const OUR_UDP_SIZE: u16 = 1232;

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries; 0 turns the cache (and query coalescing) off.
    pub max_entries: usize,
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
            max_entries: 10_000,
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
    key: Box<[u8]>,
    /// The answer without OPT, ID 0, AA clear, TTLs clamped.
    wire: Box<[u8]>,
    /// (offset of a TTL field in `wire`, the TTL stored there).
    ttls: Box<[(u16, u32)]>,
    stored: Instant,
    /// Lifetime in seconds: the smallest TTL (positive) or the SOA's negative TTL.
    ttl: u32,
    /// A refresh is on its way; no second one until it lands.
    pub prefetching: bool,
}

impl Entry {
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
        let end = MessageView::parse(&self.wire)
            .ok()
            .and_then(|v| {
                let mut name = [0u8; MAX_NAME_LEN];
                let n = v.qname_wire(&mut name, false);
                (n > 0).then_some(HEADER_LEN + n + 4)
            })
            .unwrap_or(HEADER_LEN);
        self.wire.get(HEADER_LEN..end).unwrap_or_default()
    }

    /// The key this entry is stored under.
    pub fn key_bytes(&self) -> &[u8] {
        &self.key
    }

    /// The key's flags octet (RD = 4, DO = 2, CD = 1).
    pub fn key_flags(&self) -> u8 {
        self.key.last().copied().unwrap_or(0)
    }

    /// Octets this entry holds (for the byte budget and the memory figures).
    fn size(&self) -> usize {
        self.key.len() + self.wire.len() + self.ttls.len() * 8 + std::mem::size_of::<Node>()
    }
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

#[derive(Debug)]
struct Node {
    entry: Option<Entry>,
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

/// The cache. Valid values: every entry is in `map` under the hash of its key and in
/// the LRU list exactly once; `len` ≤ `cfg.max_entries`, `bytes` ≤ the budget.
pub struct Cache {
    cfg: CacheConfig,
    hasher: RandomState,
    map: HashMap<u64, u32>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    tail: u32,
    len: usize,
    bytes: usize,
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

/// Builds the cache key of a query into `buf`; returns its length, or `None` if the
/// query has no question.
pub fn key_of(query: &MessageView<'_>, buf: &mut [u8; MAX_KEY_LEN]) -> Option<usize> {
    let (qtype, qclass) = query.qtype_qclass()?;
    let mut name = [0u8; MAX_NAME_LEN];
    let n = query.qname_wire(&mut name, true);
    if n == 0 {
        return None;
    }
    // DO and CD change what an upstream returns; so does RD (an RD=0 query gets only
    // what the upstream has cached, e.g. a CNAME without its target).
    let flags = u8::from(query.header.rd) << 2
        | u8::from(query.opt.is_some_and(|o| o.dnssec_ok)) << 1
        | u8::from(query.header.cd);
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
            hasher: RandomState::new(),
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            bytes: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.max_entries > 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Octets held by entries (keys, answers, TTL tables, list nodes).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn node(&self, i: u32) -> Option<&Node> {
        self.nodes.get(i as usize)
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut Node> {
        self.nodes.get_mut(i as usize)
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: &[u8]) -> Option<u32> {
        let i = *self.map.get(&self.hash(key))?;
        let e = self.node(i)?.entry.as_ref()?;
        (*e.key == *key).then_some(i)
    }

    /// Looks `key` up at `now`; a fresh or stale hit becomes the most recently used.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Lookup<'_> {
        let Some(i) = self.find(key) else {
            return Lookup::Miss;
        };
        let (stale_ttl, serve_stale) = (self.cfg.stale_ttl, self.cfg.serve_stale);
        let state = match self.node(i).and_then(|n| n.entry.as_ref()) {
            Some(e) => {
                let age = elapsed_secs(e.stored, now);
                if age < e.ttl {
                    1
                } else if serve_stale && age < e.ttl.saturating_add(stale_ttl) {
                    2
                } else {
                    0
                }
            }
            None => 0,
        };
        if state == 0 {
            return Lookup::Miss;
        }
        self.unlink(i);
        self.push_front(i);
        match self.node_mut(i).and_then(|n| n.entry.as_mut()) {
            Some(e) if state == 1 => Lookup::Fresh(e),
            Some(e) => Lookup::Stale(e),
            None => Lookup::Miss,
        }
    }

    /// Caches `response` (an upstream's answer to a query with this key) if it may be:
    /// NOERROR with answers, or NXDOMAIN/NODATA with an SOA (RFC 2308 §5); never
    /// truncated, never other RCODEs, never what does not fully decode. Returns whether
    /// it was stored.
    pub fn insert(&mut self, key: &[u8], response: &[u8], now: Instant) -> bool {
        if !self.enabled() || key.len() > MAX_KEY_LEN {
            return false;
        }
        let Some((wire, ttl)) = self.cacheable(response) else {
            return false;
        };
        let Ok(positions) = record_ttls(&wire) else {
            return false;
        };
        let ttls: Box<[(u16, u32)]> = positions
            .iter()
            .filter_map(|&(at, _)| {
                let b = wire.get(at..at + 4)?;
                Some((
                    u16::try_from(at).ok()?,
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                ))
            })
            .collect();
        let entry = Entry {
            key: key.into(),
            wire: wire.into_boxed_slice(),
            ttls,
            stored: now,
            ttl,
            prefetching: false,
        };
        if let Some(old) = self.map.get(&self.hash(key)).copied() {
            self.remove(old);
        }
        let size = entry.size();
        let budget = self.cfg.max_entries.saturating_mul(BUDGET_PER_ENTRY);
        while self.len >= self.cfg.max_entries || (self.len > 0 && self.bytes + size > budget) {
            let tail = self.tail;
            if tail == NIL || !self.remove(tail) {
                break;
            }
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.nodes.push(Node {
                    entry: None,
                    prev: NIL,
                    next: NIL,
                });
                (self.nodes.len() - 1) as u32
            }
        };
        let hash = self.hash(key);
        if let Some(n) = self.node_mut(i) {
            n.entry = Some(entry);
        }
        self.map.insert(hash, i);
        self.push_front(i);
        self.len += 1;
        self.bytes += size;
        true
    }

    /// The stored form of `response` and its lifetime, if it may be cached.
    fn cacheable(&self, response: &[u8]) -> Option<(Vec<u8>, u32)> {
        if response.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let mut m: Message<'_> = parse_message(response).ok()?;
        let h = m.header;
        if !h.qr || h.tc || h.opcode != Opcode::QUERY || m.questions.len() != 1 {
            return None;
        }
        let rcode = m.rcode();
        let clamp = |ttl: u32, positive: bool| {
            // RFC 2181 §8: a TTL with the top bit set counts as zero.
            let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
            let ttl = if positive {
                ttl.max(self.cfg.min_ttl)
            } else {
                ttl
            };
            ttl.min(self.cfg.max_ttl)
        };
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
        let mut out = Vec::with_capacity(entry.wire.len() + 11);
        out.extend_from_slice(&entry.wire);
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
        for &(at, ttl) in entry.ttls.iter() {
            let served = if stale {
                STALE_TTL_SERVED
            } else {
                ttl.saturating_sub(age)
            };
            let at = usize::from(at);
            if let Some(field) = out.get_mut(at..at + 4) {
                field.copy_from_slice(&served.to_be_bytes());
            }
        }
        if let Some(dnssec_ok) = asker.edns {
            // RFC 6891 §6.1.2: root owner, TYPE 41, CLASS = our UDP size, TTL = ext RCODE 0,
            // version 0, DO; no options.
            let [hi, lo] = OUR_UDP_SIZE.to_be_bytes();
            out.extend_from_slice(&[0, 0, 41, hi, lo, 0, 0, u8::from(dnssec_ok) << 7, 0, 0, 0]);
            if let Some(ar) = out.get_mut(10..12) {
                let n = u16::from_be_bytes([ar[0], ar[1]]).saturating_add(1);
                ar.copy_from_slice(&n.to_be_bytes());
            }
        }
        if out.len() > asker.max_response.max(CLASSIC_UDP_LEN) {
            if let Ok(m) = parse_message(&out) {
                return m.write(asker.max_response);
            }
        }
        out
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = match self.node(i) {
            Some(n) => (n.prev, n.next),
            None => return,
        };
        match self.node_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.node_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let head = self.head;
        if let Some(n) = self.node_mut(i) {
            n.prev = NIL;
            n.next = head;
        }
        match self.node_mut(head) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    /// Removes the entry in slot `i`; false if there is none.
    fn remove(&mut self, i: u32) -> bool {
        let Some(entry) = self.node_mut(i).and_then(|n| n.entry.take()) else {
            return false;
        };
        self.unlink(i);
        let hash = self.hash(&entry.key);
        if self.map.get(&hash) == Some(&i) {
            self.map.remove(&hash);
        }
        self.free.push(i);
        self.len -= 1;
        self.bytes = self.bytes.saturating_sub(entry.size());
        true
    }

    /// How long until an entry stored now with `ttl` seconds expires (for tests).
    pub fn lifetime(&self, key: &[u8]) -> Option<Duration> {
        let i = self.find(key)?;
        let e = self.node(i)?.entry.as_ref()?;
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

    #[test]
    fn byte_budget_bounds_memory() {
        let now = Instant::now();
        let mut c = Cache::new(CacheConfig {
            max_entries: 4,
            ..CacheConfig::default()
        });
        // 4 entries × 1 KiB budget: a few big answers push the older ones out.
        for n in 0..20u8 {
            let mut k = key();
            k[1] = b'a' + n;
            c.insert(&k, &answer(&[300; 60]), now);
            assert!(
                c.bytes() <= 4 * BUDGET_PER_ENTRY || c.len() == 1,
                "{} bytes",
                c.bytes()
            );
        }
        assert!(!c.is_empty());
    }
}
