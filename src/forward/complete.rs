//! How a query in flight ends: a truncated answer (relayed, or fetched again over TCP
//! for the waiters that can use more), an answer (cached if it may be), a failure (a
//! stale answer if there is one, else SERVFAIL with the reason as an Extended DNS
//! Error), or an eviction for fair shares; and every waiter answered in its own shape.

use super::events::AnswerSource;
use super::key::Key;
use super::pending::{Slot, Via, Waiter};
use super::{
    reply, Answer, Client, Forwarder, Outcome, EVICTED, NO_ANSWER, UNDECODABLE, UNREACHABLE,
};
use crate::cache::Lookup;
use crate::clock::Instant;
use crate::wire::Rcode;

impl Forwarder {
    /// A UDP answer with TC=1. Waiters that can take no more than UDP from this upstream
    /// brings (our EDNS size, or less if its OPT says so; 512 without one) get it now,
    /// truncated; if any waiter can use more, or the cache wants the whole answer (the
    /// truncated clients retry over TCP and find it in flight or cached), it is fetched
    /// once over TCP for all that remain.
    pub(super) fn truncated(&mut self, now: Instant, slot: Slot, answer: Answer<'_>) {
        let upstream_limit = answer
            .view
            .opt
            .map_or(crate::wire::CLASSIC_UDP_LEN, |o| usize::from(o.udp_size));
        let edns = upstream_limit.clamp(
            crate::wire::CLASSIC_UDP_LEN,
            usize::from(self.cfg.edns_size),
        );
        let caching = self.cache.enabled();
        let Some(p) = self.pending.get_mut(slot) else {
            return;
        };
        let (more, done): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut p.waiters)
            .into_iter()
            .partition(|w| w.max_response > edns);
        let fetch = (!more.is_empty() || caching) && now < p.deadline;
        if !fetch {
            p.waiters = done;
            p.waiters.extend(more);
            return self.complete(now, slot, Some(answer));
        }
        p.waiters = more;
        let key = p.key.clone();
        let upstream = p.upstream();
        self.events.finishing(now, p.deadline, upstream);
        self.answer_waiters(now, &key, &done, Outcome::Answer(answer.view));
        self.stats.tcp_retries += 1;
        self.resend(now, slot, upstream, Via::Tcp);
    }

    /// Ends a query of the heaviest client to make room for another client's (fair
    /// shares): its waiters get SERVFAIL (or a stale answer).
    pub(super) fn evict(&mut self, now: Instant, slot: Slot) {
        if let Some(p) = self.pending.get_mut(slot) {
            p.evicted = true;
            self.stats.evicted_queries += 1;
            self.complete(now, slot, None);
        }
    }

    /// Finishes a pending query with an answer (`None`: it failed). The answer is
    /// cached if it may be; a failure (or a final SERVFAIL) is answered from a stale
    /// cache entry if there is one (RFC 8767), else with SERVFAIL. Every waiter gets the
    /// answer shaped for it.
    pub(super) fn complete(&mut self, now: Instant, slot: Slot, answer: Option<Answer<'_>>) {
        // What the rest needs is copied out and the entry dropped where it lies: moving
        // the whole entry (~600 octets) out of the table cost two copies of it. The key
        // goes into the spare one `resolve` reads questions into: its name's octets are
        // copied, not the whole 276. The attempts' IDs are marked freed where they lie
        // (not copied out) as the table frees them, with one reading of the clock for
        // all of them.
        let freed = self.freed_stamp(now);
        let Some(p) = self.pending.get_mut(slot) else {
            return;
        };
        let mut key = self.spare_key.take().unwrap_or_default();
        Key::clone_from(&mut key, &p.key);
        let waiters = std::mem::take(&mut p.waiters);
        let (inflight, next_inflight) = (p.inflight, p.next_inflight);
        let (share, deadline, upstream) = (p.share, p.deadline, p.upstream());
        let (evicted, network_error) = (p.evicted, p.network_error);
        let freed_at = &mut self.freed_at;
        self.pending.discard_with(slot, |id| {
            if let Some(at) = freed_at.get_mut(usize::from(id)) {
                *at = freed;
            }
        });
        if let Some(h) = inflight {
            self.unlink_inflight(slot, h, next_inflight);
        }
        if let Some(who) = share {
            self.shares.finished(who);
            self.shares
                .stop_if_quiet(self.pending.len(), self.pending.capacity());
        }
        self.events.finishing(now, deadline, upstream);
        if let Some(a) = answer {
            if self.cache.enabled() {
                // The question's hash is in hand if it was indexed in flight.
                let hash = match inflight {
                    Some(h) => crate::cache::key_hash(h, key.flags()),
                    None => self.cache.hash(key.as_bytes()),
                };
                self.cache
                    .insert_noted(key.as_bytes(), hash, a.view, a.noted, now);
            }
        }
        let answer = answer.map(|a| a.view);
        let failed = answer.is_none_or(|a| a.header.rcode == Rcode::SERVFAIL);
        let stale = failed
            && self.cache.enabled()
            && matches!(self.cache.get(key.as_bytes(), now), Lookup::Stale(_));
        let outcome = match answer {
            _ if stale => Outcome::Stale,
            Some(a) => Outcome::Answer(a),
            None if evicted => Outcome::Failed(EVICTED),
            None if network_error => Outcome::Failed(UNREACHABLE),
            None => Outcome::Failed(NO_ANSWER),
        };
        self.answer_waiters(now, &key, &waiters, outcome);
        self.recycle_waiters(waiters);
        self.spare_key = Some(key);
    }

    /// Answers each waiter: with the upstream's answer shaped for it, from the stale
    /// cache entry, or SERVFAIL with the reason as an Extended DNS Error.
    pub(super) fn answer_waiters(
        &mut self,
        now: Instant,
        key: &Key,
        waiters: &[Waiter],
        outcome: Outcome,
    ) {
        for w in waiters {
            if w.client == Client::Prefetch {
                continue;
            }
            self.events.source(match outcome {
                Outcome::Stale => AnswerSource::Stale,
                Outcome::Answer(_) => AnswerSource::Upstream,
                Outcome::Failed(_) => AnswerSource::Error,
            });
            let shaped = match outcome {
                Outcome::Stale => {
                    self.stats.stale_served += 1;
                    self.render_cached(now, key, &w.asker(key), true)
                }
                Outcome::Answer(a) => {
                    let out = self.pending.buffer();
                    let head = reply::Head {
                        id: w.id,
                        rd: w.rd,
                        cd: w.cd,
                        edns: w.edns,
                        max_response: w.max_response,
                    };
                    reply::shape_for(a, &head, key.name(), &w.spelling, || w.asker(key), out)
                }
                Outcome::Failed(_) => None,
            };
            match (shaped, outcome) {
                (Some(bytes), _) => {
                    if bytes.get(2).is_some_and(|f| f & 0x02 != 0) {
                        self.stats.truncated += 1;
                    }
                    self.deliver(w, bytes);
                }
                (None, Outcome::Failed(ede)) => {
                    self.answer_with_error(key, std::slice::from_ref(w), Rcode::SERVFAIL, ede)
                }
                (None, _) => self.answer_with_error(
                    key,
                    std::slice::from_ref(w),
                    Rcode::SERVFAIL,
                    UNDECODABLE,
                ),
            }
        }
    }
}
