//! Queries with several questions (as the tutorial this project grew from sends):
//! one upstream query per question, one merged answer for the client. With
//! `--threads`, only when this loop owns every question (FORMERR otherwise).

use super::{reply, Client, Forwarder, Group};
use crate::clock::Instant;
use crate::server::steer;
use crate::wire::{parse_message, Message, MessageView, Rcode};

/// Most questions split out of one query.
const MAX_QUESTIONS: usize = 8;

impl Forwarder {
    /// Splits a query with several questions into one upstream query per question.
    pub(super) fn split(&mut self, now: Instant, client: Client, view: &MessageView<'_>) {
        let bytes = view.bytes();
        let Ok(m) = parse_message(bytes) else {
            return self.refuse(client, bytes, Some(view), Rcode::FORMERR);
        };
        // One datagram must not fan out into hundreds of upstream queries: past a few
        // questions, FORMERR as RFC 9619 asks of any QDCOUNT > 1.
        if m.questions.len() > MAX_QUESTIONS {
            return self.refuse(client, bytes, Some(view), Rcode::FORMERR);
        }
        if self.pending.len() + m.questions.len() > self.cfg.max_pending.max(1) {
            return self.refuse(client, bytes, Some(view), Rcode::REFUSED);
        }
        let parts: Vec<Vec<u8>> = m
            .questions
            .iter()
            .map(|q| {
                let mut part = Message {
                    header: m.header,
                    questions: vec![q.clone()],
                    additional: m
                        .additional
                        .iter()
                        .filter(|r| r.rtype == crate::wire::RType::OPT)
                        .cloned()
                        .collect(),
                    ..Message::default()
                };
                part.header.qdcount = 1;
                part.to_vec()
            })
            .collect();
        // --threads: this loop was given the query because it owns the first question
        // (the kernel's steering, or loop 0's handoff). A question another loop owns
        // would be asked here too while that loop may have it in flight (a second
        // upstream query for one key), and its answer cached where that name's queries
        // never look: FORMERR, as for too many questions.
        if let Some((index, n)) = self.loop_of {
            if parts.iter().any(|p| steer::steer(p, n) != Some(index)) {
                return self.refuse(client, bytes, Some(view), Rcode::FORMERR);
            }
        }
        let max_response = self.max_response(client, view);
        let g = self
            .groups
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                self.groups.push(None);
                self.groups.len() - 1
            });
        if let Some(entry) = self.groups.get_mut(g) {
            *entry = Some(Group {
                client,
                query: bytes.to_vec(),
                max_response,
                parts: vec![None; parts.len()],
                remaining: parts.len(),
            });
        }
        for (n, part) in parts.iter().enumerate() {
            match MessageView::parse(part) {
                Ok(v) => self.forward_part(now, client, &v, g, n),
                Err(_) => self.part_failed(g, n),
            }
        }
    }

    pub(super) fn forward_part(
        &mut self,
        now: Instant,
        client: Client,
        view: &MessageView<'_>,
        g: usize,
        n: usize,
    ) {
        // The part number rides in the group field: group * 256 + part (≤ 255 parts per
        // query, far above any real QDCOUNT; more are answered as failed).
        if n > 255 {
            return self.part_failed(g, n);
        }
        self.resolve(now, client, view, Some(g * 256 + n));
    }

    pub(super) fn part_failed(&mut self, g: usize, n: usize) {
        if let Some(Some(group)) = self.groups.get_mut(g) {
            if n < group.parts.len() {
                group.remaining = group.remaining.saturating_sub(1);
            }
        }
        self.finish_group(g);
    }

    pub(super) fn part_done(&mut self, key: usize, answer: Option<&[u8]>) {
        let (g, n) = (key / 256, key % 256);
        if let Some(Some(group)) = self.groups.get_mut(g) {
            if let Some(slot) = group.parts.get_mut(n) {
                *slot = answer.map(<[u8]>::to_vec);
            }
            group.remaining = group.remaining.saturating_sub(1);
        }
        self.finish_group(g);
    }

    pub(super) fn finish_group(&mut self, g: usize) {
        let done = matches!(self.groups.get(g), Some(Some(group)) if group.remaining == 0);
        if !done {
            return;
        }
        let Some(group) = self.groups.get_mut(g).and_then(Option::take) else {
            return;
        };
        if let Some(bytes) = reply::merge(&group.query, &group.parts, group.max_response) {
            self.send_to_client(group.client, bytes);
        }
    }
}
