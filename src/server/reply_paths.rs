//! The reply paths of the wildcard listeners (`0.0.0.0`, `[::]`): for each address of
//! the host a query was sent to, the listener and that address, which its answers
//! leave from (see datagrams.rs). The table is bounded ([`MAX_REPLY_PATHS`]); once it is
//! full, a path that owes no answer is taken over for a new address, so neither a flood
//! of addresses nor addresses asked once can hold it, and no answer ever leaves from an
//! address it was not asked at.
use std::collections::HashMap;

use super::pktinfo::Dst;
use super::send::Outgoing;

/// Most reply paths a loop keeps: the table stays bounded whatever the host's addresses
/// (one local route can make a whole prefix local, and all of 127.0.0.0/8 is). Once
/// they are all made, a query to a new address takes over a path that owes no answer;
/// only when every path does is it answered from the address the kernel picks, as
/// without PKTINFO.
pub(super) const MAX_REPLY_PATHS: usize = 1024;

/// Where the answers to queries sent to one address of a wildcard listener go out.
pub(super) struct ReplyPath {
    /// The listening socket (its index in `udp_listeners`).
    pub(super) listener: usize,
    /// The source of its answers: where the queries were sent.
    pub(super) from: Dst,
    /// Answers gathered during a dispatch (or a turn) and sent together; their
    /// buffers then go back to the core.
    pub(super) queue: Vec<Outgoing>,
    /// Listed in `waiting`. Valid values: true if and only if it is.
    pub(super) waiting: bool,
    /// Answers owed to queries sent to `from`: those the core took (it answers each
    /// exactly once) and the policy's answers, counted until they are queued. A path
    /// is taken over for another address only when it owes none and has none queued,
    /// so that no answer ever goes out from an address it was not asked at.
    pub(super) owed: u32,
}

/// The reply paths of the wildcard listeners. Path `k` is client number
/// `udp_out.len() + k` to the core (numbers below are the listeners).
#[derive(Default)]
pub(super) struct ReplyPaths {
    pub(super) paths: Vec<ReplyPath>,
    /// By listener and destination, for the queries.
    index: HashMap<(usize, Dst), usize>,
    /// The path found last, looked at before `index`: queries to a wildcard listener
    /// mostly come to one address, and hashing the key costs more than comparing it.
    last: Option<(usize, Dst, usize)>,
    /// Paths with answers gathered, each once.
    pub(super) waiting: Vec<usize>,
    /// Where the next look for a path to take over starts (see [`ReplyPaths::reuse`]).
    cursor: usize,
    /// The last look found every path owing an answer, and no path has sent its answers
    /// since (the only way one becomes free again): the next look would find none either,
    /// so it is not made (a walk of the whole table per query otherwise).
    exhausted: bool,
}

impl ReplyPaths {
    /// The path of a query sent to `dst` on listener `listener`, made on first use
    /// (once `MAX_REPLY_PATHS` are made, one owing nothing is taken over); `None` if
    /// there is none to take.
    pub(super) fn path(&mut self, listener: usize, dst: Dst) -> Option<usize> {
        if let Some((l, d, k)) = self.last {
            if (l, d) == (listener, dst) {
                return Some(k);
            }
        }
        if let Some(&k) = self.index.get(&(listener, dst)) {
            self.last = Some((listener, dst, k));
            return Some(k);
        }
        if self.paths.len() >= MAX_REPLY_PATHS {
            return self.reuse(listener, dst);
        }
        let k = self.paths.len();
        self.paths.push(ReplyPath {
            listener,
            from: dst,
            queue: Vec::new(),
            waiting: false,
            owed: 0,
        });
        self.index.insert((listener, dst), k);
        self.last = Some((listener, dst, k));
        Some(k)
    }

    /// A path for `dst` on `listener` once all are made: the first from `cursor` on
    /// that owes no answer and has none gathered, moved to `dst` (so that addresses
    /// asked once, or a flood of them, cannot hold the table for good); `None` if every
    /// path owes one. At most one walk of the table, and none again until some path
    /// has sent its answers.
    #[cold]
    #[inline(never)]
    fn reuse(&mut self, listener: usize, dst: Dst) -> Option<usize> {
        if self.exhausted {
            return None;
        }
        let n = self.paths.len();
        for step in 0..n {
            let k = (self.cursor + step) % n;
            let Some(p) = self.paths.get_mut(k) else {
                continue;
            };
            if p.owed == 0 && p.queue.is_empty() && !p.waiting {
                self.index.remove(&(p.listener, p.from));
                p.listener = listener;
                p.from = dst;
                self.index.insert((listener, dst), k);
                self.last = Some((listener, dst, k));
                self.cursor = (k + 1) % n;
                return Some(k);
            }
        }
        self.exhausted = true;
        None
    }

    /// Path `k`'s answers are sent (or about to be): no longer waiting, and it may owe
    /// nothing more, so worth a look again when a path is to be taken over.
    pub(super) fn sent(&mut self, k: usize) {
        if let Some(path) = self.paths.get_mut(k) {
            path.waiting = false;
        }
        self.exhausted = false;
    }

    /// An answer is owed to a query sent through path `k`.
    pub(super) fn owe(&mut self, k: usize) {
        if let Some(p) = self.paths.get_mut(k) {
            p.owed = p.owed.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn dst(n: u32) -> Dst {
        Dst {
            ip: IpAddr::V4(Ipv4Addr::from(0x7F00_0000 | n)),
            ifindex: 1,
        }
    }

    #[test]
    fn a_full_table_owing_answers_is_walked_once_until_a_path_sends() {
        let mut r = ReplyPaths::default();
        for n in 0..MAX_REPLY_PATHS as u32 {
            let k = r.path(0, dst(n)).unwrap();
            r.owe(k);
        }
        // Every path owes: none to take, and the table is marked so.
        assert_eq!(r.path(0, dst(5000)), None);
        assert!(r.exhausted);
        // A path that owes nothing more is not looked for until one has sent.
        r.paths[7].owed = 0;
        assert_eq!(r.path(0, dst(5001)), None);
        r.sent(7);
        assert_eq!(r.path(0, dst(5001)), Some(7));
        assert_eq!(r.index.get(&(0, dst(7))), None, "moved to its new address");
        assert_eq!(r.path(0, dst(5001)), Some(7));
    }
}
