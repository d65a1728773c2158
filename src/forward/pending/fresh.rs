//! A new query's entry: what it starts with ([`Fresh`]), written over a free slot's
//! last entry in place ([`Pending::renew`]), or over a vacant one in a new slot.

use super::{Attempt, Attempts, Pending, Via, Waiter};
use crate::clock::Instant;
use crate::forward::key::{Key, Spelling};

/// What a new query starts with besides its key (see
/// [`PendingTable::insert_new`](super::PendingTable::insert_new)).
pub struct Fresh {
    pub spelling: Spelling,
    /// Its first attempt.
    pub first: Attempt,
    pub deadline: Instant,
    pub waiters: Vec<Waiter>,
    pub guess_bits: u32,
    pub owner: Option<u128>,
    pub share: Option<u64>,
    pub serial: u64,
}

impl Pending {
    /// An entry for a slot never used yet (overwritten by [`renew`](Self::renew)).
    pub(super) fn vacant(now: Instant) -> Pending {
        Pending {
            key: Key::EMPTY,
            inflight: None,
            next_inflight: None,
            spelling: Spelling::default(),
            attempts: Attempts::default(),
            deadline: now,
            attempt: 0,
            tried: 0,
            waiters: Vec::new(),
            stale_at: None,
            near_misses: 0,
            guess_bits: 0,
            evicted: false,
            owner: None,
            share: None,
            serial: 0,
            network_error: false,
            udp_closed: false,
        }
    }

    /// Makes this entry (a free slot's last one) the new query `f` for `key`, field by
    /// field in place: building it apart and moving it in cost two copies of ~600
    /// octets. The pattern names every field, so none can be left from the last query.
    pub(super) fn renew(&mut self, key: &Key, f: Fresh) {
        let Pending {
            key: k,
            inflight,
            next_inflight,
            spelling,
            attempts,
            deadline,
            attempt,
            tried,
            waiters,
            stale_at,
            near_misses,
            guess_bits,
            evicted,
            owner,
            share,
            serial,
            network_error,
            udp_closed,
        } = self;
        k.clone_from(key);
        *inflight = None;
        *next_inflight = None;
        *spelling = f.spelling;
        *attempts = Attempts::one(f.first);
        *deadline = f.deadline;
        *attempt = 0; // the table's to set
        *tried = 1u64 << f.first.upstream.min(63);
        *waiters = f.waiters;
        *stale_at = None;
        *near_misses = 0;
        *guess_bits = f.guess_bits;
        *evicted = false;
        *owner = f.owner;
        *share = f.share;
        *serial = f.serial;
        *network_error = false;
        // An upstream under attack is asked over TCP only, answers included.
        *udp_closed = f.first.via == Via::Tcp;
    }
}
