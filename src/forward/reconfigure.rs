//! Reconfiguring a running forwarder (SIGHUP): new settings, same cache, same queries
//! in flight.
//!
//! Upstreams are known by index everywhere (attempts in flight, the shell's socket
//! pools, `Dest::Upstream`), so an index never changes meaning while something may
//! refer to it: an upstream that stays keeps its index (and what was learnt of it: RTT,
//! failures, case echo, attack state); a removed one is *retired* (never picked again,
//! its answers still accepted) until no query in flight has an attempt on it; a new one
//! takes a drained retired index or a new one at the end (at most 64 in all).
use std::net::SocketAddr;

use super::{Forwarder, ForwarderConfig};

/// Why [`Forwarder::reconfigure`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconfigureError {
    /// More than 64 upstreams, counting removed ones with queries still in flight.
    TooManyUpstreams,
    NoUpstreams,
}

impl std::fmt::Display for ReconfigureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReconfigureError::TooManyUpstreams => write!(
                f,
                "more than 64 upstreams, counting removed ones whose queries are in flight; \
                 try again in a few seconds"
            ),
            ReconfigureError::NoUpstreams => write!(f, "no upstream"),
        }
    }
}

impl std::error::Error for ReconfigureError {}

impl Forwarder {
    /// Call when the settings changed (a reload). Applies the upstream list, `timeout`,
    /// `deadline` (to attempts and queries started from now on), `edns_size` and
    /// `max_udp_size`. The cache (and its settings), the pending table (and
    /// `max_pending`) and `sockets_per_upstream` stay as they are: they size what is
    /// already allocated. On error nothing changed.
    ///
    /// Afterwards [`upstream_slots`](Self::upstream_slots) says which index is which
    /// upstream; the shell opens sockets for new ones, and closes a retired one's once
    /// [`upstream_busy`](Self::upstream_busy) says it is drained.
    pub fn reconfigure(&mut self, mut cfg: ForwarderConfig) -> Result<(), ReconfigureError> {
        if cfg.upstreams.is_empty() {
            return Err(ReconfigureError::NoUpstreams);
        }
        let plan = self.plan_slots(&cfg.upstreams)?;
        for (i, new) in plan.iter().enumerate() {
            if let Some(addr) = *new {
                // Cannot fail: the plan was checked to fit.
                let _ = self.upstreams.put(i, addr);
            }
        }
        for i in 0..self.upstreams.len() {
            let live = self
                .upstreams
                .addrs()
                .nth(i)
                .is_some_and(|a| cfg.upstreams.contains(&a));
            self.upstreams.set_live(i, live);
        }
        self.upstreams.set_stream_only(&cfg.stream_only);
        // Zone routes name addresses: map them to the indexes the upstreams have now.
        let addrs: Vec<SocketAddr> = self.upstreams.addrs().collect();
        self.routes = super::routes::Routes::new(&addrs, &cfg.routes);
        cfg.sockets_per_upstream = self.cfg.sockets_per_upstream;
        cfg.max_pending = self.cfg.max_pending;
        cfg.cache = self.cfg.cache;
        cfg.edns_size = cfg.edns_size.clamp(512, 4096);
        cfg.max_udp_size = cfg.max_udp_size.max(512);
        self.shares.set_per_client(cfg.max_pending_per_client);
        self.times = super::config::QueryTimes::of(&cfg);
        self.cfg = cfg;
        Ok(())
    }

    /// For each index that gets a new upstream, its address (`None` for indexes that
    /// keep theirs); checked to fit before anything changes.
    fn plan_slots(&self, want: &[SocketAddr]) -> Result<Vec<Option<SocketAddr>>, ReconfigureError> {
        let have: Vec<SocketAddr> = self.upstreams.addrs().collect();
        let mut plan: Vec<Option<SocketAddr>> = vec![None; have.len()];
        // Retired and drained: free to take a new upstream.
        let mut free = (0..have.len())
            .filter(|&i| !self.upstreams.is_live(i) && !self.upstream_busy(i))
            .filter(|&i| have.get(i).is_some_and(|a| !want.contains(a)));
        for &addr in want {
            if have.contains(&addr) || plan.contains(&Some(addr)) {
                continue;
            }
            let i = free.next().unwrap_or(plan.len());
            if i >= 64 {
                return Err(ReconfigureError::TooManyUpstreams);
            }
            match plan.get_mut(i) {
                Some(p) => *p = Some(addr),
                None => plan.push(Some(addr)),
            }
        }
        Ok(plan)
    }

    /// Each upstream index with its address and whether it is in use (`false`: removed
    /// by a reload, kept while queries may still use it).
    pub fn upstream_slots(&self) -> Vec<(SocketAddr, bool)> {
        self.upstreams
            .addrs()
            .enumerate()
            .map(|(i, a)| (a, self.upstreams.is_live(i)))
            .collect()
    }

    /// Whether a query in flight has a live attempt on upstream index `u`.
    pub fn upstream_busy(&self, u: usize) -> bool {
        self.pending
            .slots()
            .any(|(_, p)| p.attempts.iter().any(|a| a.upstream == u))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{client, drain, one, query_msg};
    use super::super::{Dest, Source, Transmit};
    use super::*;
    use crate::clock::Instant;
    use crate::forward::SeededRandom;
    use crate::wire::Rcode;

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5300 + n))
    }

    fn config(upstreams: &[u16]) -> ForwarderConfig {
        ForwarderConfig {
            timeout: Duration::from_millis(1000),
            deadline: Duration::from_millis(2500),
            ..ForwarderConfig::new(upstreams.iter().map(|&n| addr(n)).collect())
        }
    }

    /// Where `t` went, as the source its answer comes from.
    fn source(f: &Forwarder, t: &Transmit) -> Source {
        match t.to {
            Dest::Upstream { upstream, socket } => Source::Udp {
                upstream,
                socket,
                from: f.upstream_slots()[upstream].0,
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removed_upstreams_finish_their_queries_and_new_ones_take_over() {
        let now = Instant::now();
        let mut f = Forwarder::new(config(&[0, 1]), Box::new(SeededRandom::new(7)));
        f.handle_query(now, client(1), &query_msg(0x1111, &["a.example"], None));
        let first = one(&mut f);
        let old = source(&f, &first);

        f.reconfigure(config(&[2])).unwrap();
        let slots = f.upstream_slots();
        assert_eq!(slots, [(addr(0), false), (addr(1), false), (addr(2), true)]);
        assert!(f.upstream_busy(match first.to {
            Dest::Upstream { upstream, .. } => upstream,
            _ => unreachable!(),
        }));

        // New queries go to the new upstream only.
        for i in 0..20 {
            let name = format!("n{i}.example");
            f.handle_query(now, client(2), &query_msg(i, &[name.as_str()], None));
            let t = one(&mut f);
            assert!(matches!(t.to, Dest::Upstream { upstream: 2, .. }), "{t:?}");
        }
        // The query in flight to a removed upstream is still answered by it.
        let answer = super::super::tests::answer_to(&first.bytes, 1, Rcode::NOERROR);
        f.handle_response(now, old, &answer);
        let r = drain(&mut f);
        assert!(r.iter().any(|t| t.to == Dest::Client(client(1))), "{r:?}");
        assert!(!f.upstream_busy(0) && !f.upstream_busy(1));

        // A drained index is reused; one re-added keeps its index.
        f.reconfigure(config(&[3, 2, 1])).unwrap();
        let slots = f.upstream_slots();
        assert_eq!(slots.len(), 3, "{slots:?}");
        assert_eq!(slots[2], (addr(2), true));
        assert_eq!(slots[1], (addr(1), true));
        assert_eq!(slots[0], (addr(3), true));
    }

    #[test]
    fn timeouts_apply_to_new_attempts_and_the_cache_stays() {
        let now = Instant::now();
        let mut cfg = config(&[0]);
        cfg.cache.max_entries = 100;
        let mut f = Forwarder::new(cfg, Box::new(SeededRandom::new(7)));
        let q = query_msg(1, &["cached.example"], None);
        f.handle_query(now, client(1), &q);
        let t = one(&mut f);
        let a = super::super::tests::answer_to(&t.bytes, 1, Rcode::NOERROR);
        f.handle_response(now, source(&f, &t), &a);
        drain(&mut f);

        let mut next = config(&[1]);
        next.timeout = Duration::from_millis(200);
        next.cache.max_entries = 0; // ignored: the cache is kept
        f.reconfigure(next).unwrap();
        // Answered from the cache: nothing goes upstream.
        f.handle_query(now, client(2), &q);
        assert_eq!(one(&mut f).to, Dest::Client(client(2)));
        // A miss times out after the new 200 ms.
        f.handle_query(now, client(3), &query_msg(2, &["miss.example"], None));
        drain(&mut f);
        assert_eq!(f.poll_timeout(), Some(now + Duration::from_millis(200)));
        assert_eq!(
            f.reconfigure(config(&[])),
            Err(ReconfigureError::NoUpstreams)
        );
    }
}
