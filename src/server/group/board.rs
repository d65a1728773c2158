//! The counters of a group: each loop publishes its own every sweep, and loop 0 (its
//! metrics, SIGUSR1, the exit line) sums them.
use crate::metrics::Snapshot;
use crate::server::Server;
use crate::stats::Stats;

impl Server {
    /// Puts this loop's counters where the others (loop 0's metrics) can read them.
    pub(in crate::server) fn publish(&self) {
        let Some(link) = &self.link else {
            return;
        };
        let snap = self.own_snapshot();
        if let Ok(mut board) = link.board.lock() {
            if let Some(slot) = board.get_mut(link.index) {
                *slot = Some(snap);
            }
        }
    }

    /// This loop's metrics and the other loops' last published ones, summed.
    pub(in crate::server) fn group_snapshot(&self, mut snap: Snapshot) -> Snapshot {
        let Some(link) = &self.link else {
            return snap;
        };
        let Ok(board) = link.board.lock() else {
            return snap;
        };
        for (j, other) in board.iter().enumerate() {
            if let Some(other) = other.as_ref().filter(|_| j != link.index) {
                add_snapshot(&mut snap, other);
            }
        }
        snap
    }

    /// The counters of every loop of the group, summed (this loop's live).
    pub(in crate::server) fn group_stats(&self) -> Stats {
        self.group_snapshot(self.own_snapshot()).stats
    }
}

/// `snap` plus `other` (the upstream counters are summed by address).
fn add_snapshot(snap: &mut Snapshot, other: &Snapshot) {
    snap.stats += other.stats;
    snap.send_errors += other.send_errors;
    snap.queries_udp += other.queries_udp;
    snap.queries_tcp += other.queries_tcp;
    for (row, o) in snap.answers.iter_mut().zip(other.answers.iter()) {
        for (a, b) in row.iter_mut().zip(o.iter()) {
            *a += b;
        }
    }
    for (addr, o) in &other.upstreams {
        match snap.upstreams.iter_mut().find(|(a, _)| a == addr) {
            Some((_, c)) => {
                for (a, b) in c.rtt.iter_mut().zip(o.rtt.iter()) {
                    *a += b;
                }
                c.rtt_count += o.rtt_count;
                c.rtt_sum_us += o.rtt_sum_us;
                for (a, b) in c.failures.iter_mut().zip(o.failures.iter()) {
                    *a += b;
                }
            }
            None => snap.upstreams.push((*addr, o.clone())),
        }
    }
    snap.cache_entries += other.cache_entries;
    snap.pending += other.pending;
}
