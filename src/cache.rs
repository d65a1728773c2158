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
use std::time::Duration;

use crate::clock::Instant;
use crate::wire::{MessageView, MAX_NAME_LEN};

mod decode;
mod entry;
mod ghost;
mod intake;
mod key;
mod overlap;
mod render;
mod sip;
mod slab;
mod store;
#[cfg(test)]
mod tests;
use entry::heap_bytes;
pub use entry::{Entry, Stored};
pub use key::{key_flags, key_of, Asker};
pub(crate) use sip::Keyed;
pub use store::key_hash;
pub(crate) use store::Prehashed;

use store::{Queue, Store};

/// Longest key: a 255-octet name, type, class and one flags octet.
pub const MAX_KEY_LEN: usize = MAX_NAME_LEN + 5;
/// An entry may take at most this fraction of the byte budget; bigger answers are
/// relayed but not cached. 1/128 keeps one entry under a tenth of the small queue, so
/// one insertion evicts at most about its own size in other entries (an entry whose
/// slab class needs a fresh page is charged the page, 1/2048 of the budget, at most
/// 16 KiB: `tests::one_insertion_evicts_at_most_a_pages_worth`); at the default 32 MiB it is 256 KiB, so
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
    /// Most octets the cache holds, everything counted: each entry's node and index
    /// slot, the slab's pages as allocated (entries up to 1 KiB), entries' own
    /// allocations (longer ones), and the ghost table. Both bounds apply.
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

/// What a lookup found.
pub enum Lookup<'a> {
    Fresh(Entry<'a>),
    /// Expired, but within the stale window.
    Stale(Entry<'a>),
    Miss,
}

/// The cache. Valid values: `len()` ≤ `cfg.max_entries` and `bytes()` ≤ `cfg.max_bytes`
/// whenever a call returns.
pub struct Cache {
    cfg: CacheConfig,
    store: Store,
    /// Answers that could be cached but were too big for a share of the budget.
    refused: u64,
    /// The TTL table of the answer being stored (offset, clamped TTL), kept between
    /// insertions so that storing allocates nothing.
    rows: Vec<(u16, u32)>,
    /// Bumped whenever `rows` is filled: the table belongs to the [`Noted`] of this stamp.
    stamp: u64,
}

/// What [`Cache::parse_answer`] noted of an answer on the view's walk, for
/// [`Cache::insert_noted`]: whether and how it may be stored, with its TTL table in
/// the cache's (while nothing else fills it).
#[derive(Debug, Clone, Copy)]
pub struct Noted<'m> {
    intake: intake::Intake<'m>,
    stamp: u64,
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

impl Cache {
    pub fn new(cfg: CacheConfig) -> Cache {
        Cache {
            cfg,
            store: Store::new(
                cfg.max_entries,
                cfg.max_bytes,
                cfg.max_bytes / ENTRY_SHARE,
                stale_window(&cfg),
            ),
            refused: 0,
            rows: Vec::new(),
            stamp: 0,
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
        let Some(mut e) = self.store.get_mut(key, hash, now) else {
            return Lookup::Miss;
        };
        let window = stale_window(&self.cfg);
        let age = e.age;
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
    /// truncated, never other RCODEs, never what does not fully decode, never what the
    /// patches of a hit would break (a TSIG record, a name that reads TTL octets: see
    /// `overlap`). Returns whether it was stored.
    pub fn insert(&mut self, key: &[u8], response: &[u8], now: Instant) -> bool {
        match MessageView::parse(response) {
            // Bytes after the last record: it does not decode.
            Ok(view) if view.end == response.len() => self.insert_view(key, &view, now),
            _ => false,
        }
    }

    /// [`insert`](Self::insert) for an answer already looked at: `view`. Walks the answer
    /// once, copying it into the entry as it goes. Octets after `view.end` mean it does
    /// not decode: not stored.
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
        self.insert_noted(key, hash, view, None, now)
    }

    /// [`MessageView::parse`] of an upstream's answer, noting on the same walk what
    /// storing it needs (each record checked as the decoder would, each TTL clamped and
    /// placed, the lifetime), so that [`insert_noted`](Self::insert_noted) does not walk
    /// it again. The view is [`MessageView::parse`]'s, whatever the cache makes of it.
    pub fn parse_answer<'m>(
        &mut self,
        msg: &'m [u8],
    ) -> Result<(MessageView<'m>, Noted<'m>), crate::wire::ParseError> {
        self.stamp += 1;
        let mut noter = intake::Noter::new(&self.cfg, &mut self.rows, msg);
        let view = MessageView::parse_with(msg, |r| noter.check(msg, r))?;
        let intake = if view.end == msg.len() {
            noter.finish(&view)
        } else {
            // Trailing octets: the answer does not decode, and `insert_noted` refuses it.
            intake::Intake::Unknown
        };
        let stamp = self.stamp;
        Ok((view, Noted { intake, stamp }))
    }

    /// [`insert_hashed`](Self::insert_hashed) for an answer `view` from
    /// [`parse_answer`](Self::parse_answer), with what it `noted` (`None`: not parsed
    /// so, and walked here).
    pub fn insert_noted(
        &mut self,
        key: &[u8],
        hash: u64,
        view: &MessageView<'_>,
        noted: Option<Noted<'_>>,
        now: Instant,
    ) -> bool {
        // Bytes after the last record: it does not decode (as in `insert`).
        if !self.enabled() || key.len() > MAX_KEY_LEN || view.end != view.bytes().len() {
            return false;
        }
        // What the view's walk noted holds while the TTL table is the one it filled.
        let noted = match noted {
            Some(n) if n.stamp == self.stamp => n.intake,
            _ => intake::Intake::Unknown,
        };
        self.stamp += 1;
        let plan = match noted {
            intake::Intake::Entry(plan) => plan,
            intake::Intake::No => return false,
            intake::Intake::Decode => return self.insert_decoded(key, hash, view, now),
            intake::Intake::Unknown => match intake::intake(&self.cfg, view, &mut self.rows) {
                intake::Intake::Entry(plan) => plan,
                intake::Intake::Decode => return self.insert_decoded(key, hash, view, now),
                intake::Intake::No | intake::Intake::Unknown => return false,
            },
        };
        // (What the patches would break, a name that reads TTL octets or TSIG, was
        // refused by the intake: see `overlap`.)
        self.insert_plan(key, hash, &plan, now)
    }

    /// [`insert_noted`](Self::insert_noted) for an answer whose OPT record is not last:
    /// decoded and written again (rare).
    #[cold]
    #[inline(never)]
    fn insert_decoded(
        &mut self,
        key: &[u8],
        hash: u64,
        view: &MessageView<'_>,
        now: Instant,
    ) -> bool {
        let answer = view.bytes().get(..view.end).unwrap_or_default();
        let Some((decoded, ttl)) = self.cacheable(answer) else {
            return false;
        };
        if decode::stored_rows(&decoded, &mut self.rows).is_none()
            || overlap::unpatchable(&decoded, &self.rows, decoded.len())
        {
            return false;
        }
        self.insert_plan(key, hash, &intake::Plan::stored(&decoded, ttl), now)
    }

    /// Stores what `plan` makes, with the TTL table in `rows`; counts it refused if it is
    /// too big for its share of the budget or finds no room.
    fn insert_plan(
        &mut self,
        key: &[u8],
        hash: u64,
        plan: &intake::Plan<'_>,
        now: Instant,
    ) -> bool {
        let (Ok(key_len), Ok(wire_len), Ok(rows)) = (
            u16::try_from(key.len()),
            u16::try_from(plan.wire.len()),
            u16::try_from(self.rows.len()),
        ) else {
            return false;
        };
        let entry = Stored {
            place: entry::Place::Heap,
            key_len,
            wire_len,
            rows,
            stored: now,
            ttl: plan.ttl,
            prefetching: false,
            queue: Queue::Small,
            freq: 0,
        };
        let table = &self.rows;
        // Bigger than its share of the budget, or no room: refused (see `Store::insert`).
        if !self
            .store
            .insert(key, entry, hash, now, |out| plan.write(table, out))
        {
            self.refused += 1;
            return false;
        }
        true
    }

    /// Checks the store's totals against its entries (`Store::audit`: panics on a
    /// mismatch). For tests and the fuzz targets (`--cfg fuzzing`) only.
    #[cfg(any(test, fuzzing))]
    pub fn audit(&self) {
        self.store.audit();
    }

    /// How long until an entry stored now with `ttl` seconds expires (for tests).
    pub fn lifetime(&self, key: &[u8]) -> Option<Duration> {
        let e = self.store.get(key)?;
        Some(Duration::from_secs(u64::from(e.ttl)))
    }
}
