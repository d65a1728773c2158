//! One-question queries meet the cache here: answered from it, attached to an
//! identical query in flight (coalescing), or sent upstream; and cache entries are
//! refreshed before they expire (prefetch).
use std::time::Instant;

use super::pending::Waiter;
use super::{max_response, reply, Client, Forwarder};
use crate::cache::{key_of, Asker, Cache, Lookup, MAX_KEY_LEN};
use crate::wire::{set_id, MessageView, HEADER_LEN};

/// Most clients waiting on one query in flight (coalescing); more are sent upstream.
const MAX_WAITERS: usize = 512;
/// RFC 8767 §5: "The client response timer ... 1.8 seconds".
const STALE_ANSWER_AFTER: std::time::Duration = std::time::Duration::from_millis(1800);

impl Forwarder {
    /// A one-question query: answered from the cache, attached to an identical query in
    /// flight, or sent upstream.
    pub(super) fn resolve(&mut self, now: Instant, client: Client, view: &MessageView<'_>) {
        let mut kb = [0u8; MAX_KEY_LEN];
        let key_len = if self.cache.enabled() {
            key_of(view, &mut kb).unwrap_or(0)
        } else {
            0
        };
        if key_len == 0 {
            self.forward(now, client, view, None);
            return;
        }
        let key = kb.get(..key_len).unwrap_or_default();
        let max = max_response(client, view);
        let lookup = self.cache.get(key, now);
        let stale = matches!(lookup, Lookup::Stale(_));
        if let Lookup::Fresh(e) = lookup {
            let bytes = Cache::render(e, now, &Asker::from_query(view, max), false);
            let refresh = e.wants_prefetch(now).then(|| {
                e.prefetching = true;
                (e.question_wire().to_vec(), e.key_flags())
            });
            self.stats.cache_hits += 1;
            self.send_to_client(client, bytes);
            if let Some((question, flags)) = refresh {
                self.prefetch(now, &question, flags);
            }
            return;
        }
        self.stats.cache_misses += 1;
        let hash = self.cache.hash(key);
        if let Some(&slot) = self.inflight.get(&hash) {
            let same = self.pending.get(slot).is_some_and(|p| {
                let mut other = [0u8; MAX_KEY_LEN];
                let n = MessageView::parse(&p.query)
                    .ok()
                    .and_then(|v| key_of(&v, &mut other));
                // Only a client that can take no more than the first one: a TCP client (or
                // a bigger UDP one) waiting on a UDP query could be handed a TC answer.
                n.and_then(|n| other.get(..n)) == Some(key)
                    && p.waiters.len() < MAX_WAITERS
                    && max <= p.max_response
            });
            if let (true, Some(p)) = (same, self.pending.get_mut(slot)) {
                let query = view
                    .bytes()
                    .get(..view.end)
                    .unwrap_or(view.bytes())
                    .to_vec();
                p.waiters.push(Waiter {
                    client,
                    query,
                    max_response: max,
                });
                self.stats.coalesced += 1;
                return;
            }
        }
        if let Some(slot) = self.forward(now, client, view, None) {
            if let std::collections::hash_map::Entry::Vacant(v) = self.inflight.entry(hash) {
                v.insert(slot);
                if let Some(p) = self.pending.get_mut(slot) {
                    p.inflight = Some(hash);
                }
            }
            if stale {
                self.arm_stale_timer(now, slot);
            }
        }
    }

    /// RFC 8767 §5 "client response timer": with a stale answer in the cache, a client
    /// whose query has not been answered after 1.8 s gets the stale answer, and the
    /// query goes on to refresh the cache.
    fn arm_stale_timer(&mut self, now: Instant, slot: super::Slot) {
        let Some(p) = self.pending.get_mut(slot) else {
            return;
        };
        let at = (now + STALE_ANSWER_AFTER).min(p.deadline);
        p.stale_at = Some(at);
        self.stale_timers.push(std::cmp::Reverse((at, slot)));
    }

    /// Answers, from the stale cache entry, the clients of every query whose client
    /// response timer has expired; their queries carry on with nobody waiting.
    pub(super) fn handle_stale_timers(&mut self, now: Instant) {
        while let Some(&std::cmp::Reverse((at, slot))) = self.stale_timers.peek() {
            if at > now {
                return;
            }
            self.stale_timers.pop();
            let Some(p) = self.pending.get_mut(slot) else {
                continue;
            };
            if p.stale_at != Some(at) {
                continue; // answered, or a later query in this slot
            }
            p.stale_at = None;
            let client = std::mem::replace(&mut p.client, Client::Prefetch);
            let waiters = std::mem::take(&mut p.waiters);
            let (client_id, max) = (p.client_id, p.max_response);
            let query = p.query.clone();
            let mut kb = [0u8; MAX_KEY_LEN];
            let Some(n) = MessageView::parse(&query)
                .ok()
                .and_then(|v| key_of(&v, &mut kb))
            else {
                continue;
            };
            let key = kb.get(..n).unwrap_or_default().to_vec();
            let askers = std::iter::once((client, query, client_id, max)).chain(
                waiters.into_iter().map(|w| {
                    let id = crate::wire::parse_header(&w.query).map_or(0, |(_, h)| h.id);
                    (w.client, w.query, id, w.max_response)
                }),
            );
            for (client, query, id, max) in askers.collect::<Vec<_>>() {
                if let Some(bytes) = self.render_cached(now, &key, &query, id, max, true) {
                    self.stats.stale_served += 1;
                    self.send_to_client(client, bytes);
                }
            }
        }
    }

    /// The earliest client response timer.
    pub(super) fn next_stale_timer(&mut self) -> Option<Instant> {
        while let Some(&std::cmp::Reverse((at, slot))) = self.stale_timers.peek() {
            if self
                .pending
                .get(slot)
                .is_some_and(|p| p.stale_at == Some(at))
            {
                return Some(at);
            }
            self.stale_timers.pop();
        }
        None
    }

    /// Refreshes a cache entry before it expires: the stored question, RD set, CD and
    /// DO as in its key, sent upstream with no client waiting.
    pub(super) fn prefetch(&mut self, now: Instant, question: &[u8], key_flags: u8) {
        let mut q = Vec::with_capacity(HEADER_LEN + question.len() + 11);
        // RD and CD as in the key (bits 4 and 1 of its flags octet).
        let flags: u16 = u16::from(key_flags & 4 != 0) << 8 | u16::from(key_flags & 1) << 4;
        q.extend_from_slice(&crate::wire::Header::from_parts(0, flags, [1, 0, 0, 1]).to_bytes());
        q.extend_from_slice(question);
        let dnssec_ok = key_flags & 2 != 0;
        let opt = crate::wire::Edns {
            udp_size: reply::OUR_UDP_SIZE,
            ext_rcode: 0,
            version: 0,
            dnssec_ok,
            z: 0,
            options: Vec::new(),
        };
        let mut w = crate::wire::Writer::new(64);
        opt.to_record().write(&mut w);
        q.extend_from_slice(w.as_bytes());
        let Ok(view) = MessageView::parse(&q) else {
            return;
        };
        let mut kb = [0u8; MAX_KEY_LEN];
        let Some(n) = key_of(&view, &mut kb) else {
            return;
        };
        let hash = self.cache.hash(kb.get(..n).unwrap_or_default());
        if self.inflight.contains_key(&hash) {
            return;
        }
        self.stats.prefetches += 1;
        if let Some(slot) = self.forward(now, Client::Prefetch, &view, None) {
            self.inflight.insert(hash, slot);
            if let Some(p) = self.pending.get_mut(slot) {
                p.inflight = Some(hash);
            }
        }
    }

    /// The cache's answer to `query` (fresh, or stale with TTL 30).
    pub(super) fn render_cached(
        &mut self,
        now: Instant,
        key: &[u8],
        query: &[u8],
        id: u16,
        max: usize,
        stale: bool,
    ) -> Option<Vec<u8>> {
        let view = MessageView::parse(query).ok()?;
        let mut asker = Asker::from_query(&view, max);
        asker.id = id;
        match self.cache.get(key, now) {
            Lookup::Fresh(e) | Lookup::Stale(e) => Some(Cache::render(e, now, &asker, stale)),
            Lookup::Miss => None,
        }
    }

    /// An upstream answer that was not cached, for a client that waited on it: its ID,
    /// its spelling of the question, an OPT record only if it sent one (RFC 6891 §7),
    /// cut to its size. An answer that does not decode just gets the ID.
    pub(super) fn relay_to(
        &mut self,
        answer: &[u8],
        query: &[u8],
        id: u16,
        max: usize,
    ) -> Option<Vec<u8>> {
        let view = MessageView::parse(query).ok()?;
        let mut bytes = match crate::wire::parse_message(answer) {
            Ok(mut m) => {
                m.header.id = id;
                if let (Some(q), [ours]) =
                    (reply::first_question(&view), m.questions.as_mut_slice())
                {
                    if *ours == q {
                        *ours = q;
                    }
                }
                let ext_rcode = m.edns().map_or(0, |e| e.ext_rcode);
                m.additional.retain(|r| r.rtype != crate::wire::RType::OPT);
                if let Some(opt) = view.opt {
                    let mut ours = reply::our_opt(opt.dnssec_ok);
                    ours.ttl |= u32::from(ext_rcode) << 24;
                    m.additional.push(ours);
                }
                m.write(max)
            }
            Err(_) if answer.len() > max => reply::fit(answer, max, &view),
            Err(_) => answer.to_vec(),
        };
        set_id(&mut bytes, id);
        Some(bytes)
    }
}
