//! The parts of a pending entry: who waits for it ([`Client`], [`Waiter`]) and each
//! attempt sent upstream ([`Attempt`], [`Attempts`], [`Via`]).
use std::net::SocketAddr;

use super::MAX_ATTEMPTS;
use crate::cache::Asker;
use crate::clock::Instant;
use crate::forward::key::{Key, Spelling};

/// Who asked: where the answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// A datagram from `addr` on client listener number `listener`.
    Udp { listener: usize, addr: SocketAddr },
    /// A TCP connection (the shell's connection number) from `addr`.
    Tcp { conn: usize, addr: SocketAddr },
    /// Nobody: a refresh of a cache entry before it expires.
    Prefetch,
}

impl Client {
    pub fn is_udp(&self) -> bool {
        matches!(self, Client::Udp { .. })
    }
}

/// How an attempt went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Over UDP, on upstream socket `socket` of the chosen upstream.
    Udp { socket: usize },
    /// Over TCP (a truncated UDP answer, or a query moved off UDP after forged answers).
    Tcp,
}

/// One attempt of a query: the ID it went out with, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub id: u16,
    pub upstream: usize,
    pub via: Via,
    pub sent_at: Instant,
}

/// The live attempts of a query, oldest first, at most `MAX_ATTEMPTS` (no allocation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempts {
    slots: [Option<Attempt>; MAX_ATTEMPTS],
}

impl Attempts {
    pub fn one(a: Attempt) -> Attempts {
        let mut slots = [None; MAX_ATTEMPTS];
        if let Some(first) = slots.first_mut() {
            *first = Some(a);
        }
        Attempts { slots }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Attempt> {
        self.slots.iter().flatten()
    }

    /// The live attempt with ID `id`, and its place (for [`at`](Self::at)).
    pub fn find(&self, id: u16) -> Option<(usize, &Attempt)> {
        self.slots
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.as_ref().filter(|a| a.id == id).map(|a| (i, a)))
    }

    /// The live attempt in place `i` (as [`find`](Self::find) gives it): one array
    /// access, not a walk of the live ones.
    pub fn at(&self, i: usize) -> Option<&Attempt> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// The current (newest) attempt.
    pub fn last(&self) -> Option<&Attempt> {
        self.slots.iter().rev().flatten().next()
    }

    /// Adds `a` as the newest; returns the oldest if it had to make room.
    pub fn push(&mut self, a: Attempt) -> Option<Attempt> {
        if let Some(free) = self.slots.iter_mut().find(|s| s.is_none()) {
            *free = Some(a);
            return None;
        }
        let oldest = self.slots.first().copied().flatten();
        self.slots.rotate_left(1);
        if let Some(last) = self.slots.last_mut() {
            *last = Some(a);
        }
        oldest
    }
}

/// A client waiting for the answer to a query in flight, and what of its query shapes
/// its answer (ID, spelling, RD, CD, EDNS, size): small, no copy of the name.
#[derive(Debug, Clone, Copy)]
pub struct Waiter {
    pub client: Client,
    /// Set when this is one question of a split multi-question query (group * 256 + part).
    pub group: Option<usize>,
    pub id: u16,
    pub rd: bool,
    pub cd: bool,
    /// `Some(DO)` if the client sent an OPT record.
    pub edns: Option<bool>,
    /// Largest answer it can take.
    pub max_response: usize,
    /// Its spelling of the question name.
    pub spelling: Spelling,
}

impl Waiter {
    /// The full description of this client for rendering an answer (`key`: the question).
    pub fn asker(&self, key: &Key) -> Asker {
        let mut qname = [0u8; crate::wire::MAX_NAME_LEN];
        let qname_len = self.spelling.copy_into(key.name(), &mut qname);
        Asker {
            id: self.id,
            rd: self.rd,
            cd: self.cd,
            qname,
            qname_len,
            edns: self.edns,
            max_response: self.max_response,
        }
    }
}
