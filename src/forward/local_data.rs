//! The hook for local data ([`crate::local`]): local names and blocked names are
//! answered here, before the cache and without going upstream.
use super::key::Key;
use super::pending::Waiter;
use super::Forwarder;
use crate::local::Answered;
use crate::wire::{Class, RType};

impl Forwarder {
    /// Answers `waiter` from local data if it has an answer for `key`; true if it did.
    pub(super) fn answer_locally(&mut self, key: &Key, waiter: &Waiter) -> bool {
        if self.cfg.local.is_empty() {
            return false;
        }
        let tc = key.type_class();
        let word = |i: usize| {
            u16::from_be_bytes([
                tc.get(i).copied().unwrap_or(0),
                tc.get(i + 1).copied().unwrap_or(0),
            ])
        };
        let (qtype, qclass) = (RType(word(0)), Class(word(2)));
        let asker = waiter.asker(key);
        let bytes = match self.cfg.local.answer(key.name(), qtype, qclass, &asker) {
            None => return false,
            Some(Answered::Local(b)) => {
                self.stats.local_answers += 1;
                self.events.source(super::events::AnswerSource::Local);
                b
            }
            Some(Answered::Blocked(b)) => {
                self.stats.blocked += 1;
                self.events.source(super::events::AnswerSource::Blocked);
                b
            }
        };
        self.deliver(waiter, bytes);
        true
    }
}
