//! An upstream's answer made ready for the cache in one walk, without decoding it: the
//! walk ([`walk_viewed_records`]) checks everything the decoder would (so only what
//! decodes is stored), and on the way each TTL is clamped and noted with its offset.
//! Nothing is copied until the store has a place for the entry: then the answer is
//! copied once, into it, and patched there ([`Plan::write`]). An answer whose OPT record
//! is not last (rare, and legal) is decoded and written again instead
//! ([`Intake::Decode`]).
use super::overlap::Targets;
use super::{CacheConfig, TTL_ROW};
use crate::wire::{
    walk_viewed_records, Checked, MessageView, RType, Rcode, RecordAt, RecordChecks, HEADER_LEN,
};

/// What an answer is to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intake<'m> {
    /// What to store.
    Entry(Plan<'m>),
    /// May not be cached (see [`super::Cache::insert`]).
    No,
    /// Its OPT record is not last: the caller decodes it and writes it again.
    Decode,
    /// Not known yet: [`intake`] finds out.
    Unknown,
}

/// An answer found cacheable, with its TTLs (offset, clamped value) in the caller's
/// table: what an entry's octets are made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan<'m> {
    /// The answer as it will be stored, before the patches: without OPT.
    pub(super) wire: &'m [u8],
    /// The header counts an OPT record that `wire` leaves out.
    cut_opt: bool,
    /// Lifetime in seconds (not 0).
    pub(super) ttl: u32,
}

impl<'m> Plan<'m> {
    /// A plan for `wire`, already in its stored form (decoded and written again).
    pub(super) fn stored(wire: &'m [u8], ttl: u32) -> Plan<'m> {
        Plan {
            wire,
            cut_opt: false,
            ttl,
        }
    }

    /// Writes the stored answer and its TTL table into `out`, which is `wire.len()` + 2
    /// octets a row (one too short for the answer gets nothing, and the table only what
    /// fits): ID 0, AA clear, OPT no longer counted, each TTL as in `rows`. The answer is
    /// copied once and patched where it lands.
    pub(super) fn write(&self, rows: &[(u16, u32)], out: &mut [u8]) {
        let Some((wire, table)) = out.split_at_mut_checked(self.wire.len()) else {
            return;
        };
        wire.copy_from_slice(self.wire);
        if let Some(header) = wire.first_chunk_mut::<HEADER_LEN>() {
            header[0] = 0;
            header[1] = 0;
            header[2] &= !0x04;
            if self.cut_opt {
                let ar = u16::from_be_bytes([header[10], header[11]]).saturating_sub(1);
                [header[10], header[11]] = ar.to_be_bytes();
            }
        }
        for (&(at, ttl), row) in rows.iter().zip(table.chunks_exact_mut(TTL_ROW)) {
            let field = usize::from(at);
            if let Some(field) = wire.get_mut(field..field + 4) {
                field.copy_from_slice(&ttl.to_be_bytes());
            }
            row.copy_from_slice(&at.to_be_bytes());
        }
    }
}

/// A TTL as the cache keeps it: top bit set counts as zero (RFC 2181 §8), raised to
/// `min_ttl` in a positive answer, lowered to `max_ttl`.
pub(super) fn clamp(cfg: &CacheConfig, ttl: u32, positive: bool) -> u32 {
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    let ttl = if positive { ttl.max(cfg.min_ttl) } else { ttl };
    ttl.min(cfg.max_ttl)
}

/// What the header and the OPT record settle before any record is looked at: `Err`
/// with the outcome, or the answer as it will be stored (without OPT) and whether the
/// header counts an OPT record it leaves out. Only NOERROR and NXDOMAIN answers of one
/// question, not truncated, may be cached.
fn settle<'m>(view: &MessageView<'m>) -> Result<(&'m [u8], bool), Intake<'m>> {
    let Some(msg) = view.bytes().get(..view.end) else {
        return Err(Intake::No);
    };
    // Read from the octets rather than `view.header` (the same ones): the view's walk
    // need not keep the decoded flags for this.
    let Some(h) = msg.first_chunk::<HEADER_LEN>() else {
        return Err(Intake::No);
    };
    // QR set, OPCODE QUERY, TC clear (AA and RD as they may be); one question.
    if h[2] & 0xFA != 0x80 || [h[4], h[5]] != [0, 1] {
        return Err(Intake::No);
    }
    let ext = view.opt.map_or(0, |o| u16::from(o.ext_rcode));
    let rcode = Rcode(ext << 4 | u16::from(h[3] & 0x0F));
    if rcode != Rcode::NOERROR && rcode != Rcode::NXDOMAIN {
        return Err(Intake::No);
    }
    // The OPT record is per hop (RFC 6891 §6.1.1): cut off, so it must be last.
    let wire_len = match view.opt {
        None => msg.len(),
        Some(o) if o.offset + o.len == msg.len() => o.offset,
        Some(_) => return Err(Intake::Decode),
    };
    Ok((msg.get(..wire_len).unwrap_or_default(), view.opt.is_some()))
}

/// The intake's work on each record as a walk meets it (the view's own walk with the
/// cache on, see [`super::Cache::parse_answer`]; else [`walk_viewed_records`]): its TTL
/// clamped and noted with its offset in `rows`, the lifetime found. Records after an
/// OPT record that is not last are noted too, to no effect: such an answer is
/// [`Intake::Decode`]'s. Without OPT, or with OPT last, every other record's TTL lies
/// in the stored answer.
pub(super) struct Noter<'c> {
    cfg: &'c CacheConfig,
    rows: &'c mut Vec<(u16, u32)>,
    /// NOERROR with answers (an extended RCODE is never cached: not looked at here).
    positive: bool,
    answers: usize,
    authority: usize,
    /// The smallest TTL of the answers (and of the authority section in a positive
    /// answer).
    least: u32,
    /// The negative TTL from the first SOA of the authority section (RFC 2308 §5).
    soa: Option<u32>,
    /// Every row fits the table (offsets below 2^16; no empty SOA).
    fits: bool,
    /// Every record noted decodes (the walk stops noting at the first that does not).
    decodes: bool,
    /// What decoding asks of each record beyond the view's checks (for [`check`](Self::check)).
    checks: RecordChecks,
    /// Where the names aim their pointers: what the patches could break (see `overlap`).
    targets: Targets,
}

impl<'c> Noter<'c> {
    /// A noter for the answer whose header octets are `msg`'s first 12, `rows` emptied.
    pub(super) fn new(cfg: &'c CacheConfig, rows: &'c mut Vec<(u16, u32)>, msg: &[u8]) -> Self {
        rows.clear();
        // The header read once (no header: zero counts, and the view fails anyway).
        let h = msg.first_chunk::<HEADER_LEN>().unwrap_or(&[0; HEADER_LEN]);
        let count = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
        let counts = [count(4), count(6), count(8), count(10)];
        let answers = usize::from(counts[1]);
        Noter {
            cfg,
            rows,
            positive: h[3] & 0x0F == 0 && answers > 0,
            answers,
            authority: usize::from(counts[2]),
            least: u32::MAX,
            soa: None,
            fits: true,
            decodes: true,
            checks: RecordChecks::of_counts(counts),
            targets: Targets::default(),
        }
    }

    /// Checks record `r` of `msg` as the view stepped over it ([`RecordChecks::check`])
    /// and notes it if it decodes; after one that does not, nothing (the decoder stops
    /// there): the view's own walk, see [`super::Cache::parse_answer`].
    #[inline(always)]
    pub(super) fn check(&mut self, msg: &[u8], r: &RecordAt) {
        if self.decodes {
            match self.checks.check(msg, r) {
                Checked::Bad => self.decodes = false,
                Checked::ToQuestion => self.note(msg, r, false),
                Checked::Good => self.note(msg, r, true),
            }
        }
    }

    /// Notes record `r` of `msg`, which decodes (a walk that checked it).
    #[inline(always)]
    fn record(&mut self, msg: &[u8], r: &RecordAt) {
        self.note(msg, r, true);
    }

    /// Notes record `r` of `msg`; `owner`: its owner may aim a pointer elsewhere than
    /// at the question's name (else there is nothing to note of it).
    #[inline(always)]
    fn note(&mut self, msg: &[u8], r: &RecordAt, owner: bool) {
        if r.rtype == RType::OPT {
            return; // cut off (see `settle`)
        }
        self.targets.record(msg, r, owner);
        let (answers, positive) = (self.answers, self.positive);
        let in_authority = (answers..answers + self.authority).contains(&r.index);
        let ttl = if !positive && in_authority && r.rtype == RType::SOA && self.soa.is_none() {
            // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM), the last field.
            let minimum = match msg.get(r.rdata.end.saturating_sub(4)..r.rdata.end) {
                Some(&[a, b, c, d]) if r.rdata.len() > 4 => u32::from_be_bytes([a, b, c, d]),
                // An empty SOA (an update's delete) is no SOA.
                _ => {
                    self.fits = false;
                    0
                }
            };
            let ttl = clamp(self.cfg, r.ttl.min(minimum), false);
            self.soa = Some(ttl);
            ttl
        } else {
            clamp(self.cfg, r.ttl, positive)
        };
        if r.index < answers || (positive && in_authority) {
            self.least = self.least.min(ttl);
        }
        match u16::try_from(r.ttl_at) {
            Ok(at) => self.rows.push((at, ttl)),
            Err(_) => self.fits = false,
        }
    }

    /// The outcome for `view` (the answer noted): see [`intake`].
    #[inline(always)]
    pub(super) fn finish<'m>(&self, view: &MessageView<'m>) -> Intake<'m> {
        let (wire, cut_opt) = match settle(view) {
            Ok(settled) => settled,
            Err(outcome) => return outcome,
        };
        let ttl = if self.positive {
            self.least
        } else {
            self.soa.map_or(0, |s| s.min(self.least))
        };
        // A TSIG record, or a name that reads TTL octets: not stored (see `overlap`).
        if self.decodes
            && self.fits
            && ttl != 0
            && !view.tsig
            && !self.targets.read_ttl(view.bytes(), self.rows, wire.len())
        {
            Intake::Entry(Plan { wire, cut_opt, ttl })
        } else {
            Intake::No
        }
    }
}

/// The plan for `view` (an upstream's answer, up to `view.end`), its TTLs put in `rows`
/// (emptied first): NOERROR with answers (lifetime: the smallest TTL of the answer and
/// authority sections), or NXDOMAIN/NODATA with an SOA (RFC 2308 §5: min(SOA TTL,
/// MINIMUM), and no longer than a CNAME in front of it); never truncated, never other
/// RCODEs, never what does not decode, never with a lifetime of 0. Walks the records;
/// [`super::Cache::parse_answer`] comes to the same on the view's own walk.
pub(super) fn intake<'m>(
    cfg: &CacheConfig,
    view: &MessageView<'m>,
    rows: &mut Vec<(u16, u32)>,
) -> Intake<'m> {
    let msg = view.bytes();
    let mut noter = Noter::new(cfg, rows, msg);
    if let Err(outcome) = settle(view) {
        return outcome;
    }
    noter.decodes = walk_viewed_records(view, |r| noter.record(msg, r));
    noter.finish(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::decode::stored_rows;
    use crate::cache::Cache;
    use crate::wire::{Class, Header, Message, Name, Question, RData, Record, Soa};
    use proptest::prelude::*;

    fn rec(name: &str, rtype: RType, ttl: u32, rdata: RData<'static>) -> Record<'static> {
        Record {
            name: Name::from_ascii(name).unwrap(),
            rtype,
            class: Class::IN,
            ttl,
            rdata,
        }
    }

    fn soa(ttl: u32, minimum: u32) -> Record<'static> {
        let n = |s: &str| Name::from_ascii(s).unwrap();
        rec(
            "example.org",
            RType::SOA,
            ttl,
            RData::Soa(Box::new(Soa {
                mname: n("ns.example.org"),
                rname: n("host.example.org"),
                serial: 1,
                refresh: 2,
                retry: 3,
                expire: 4,
                minimum,
            })),
        )
    }

    /// Answers of every kind the cache meets: positive with a CNAME, authority and
    /// additional records; NXDOMAIN and NODATA with an SOA (and a CNAME in front); with
    /// and without OPT, OPT last or not.
    fn answers(ttls: [u32; 4]) -> Vec<Vec<u8>> {
        let name = |s: &str| Name::from_ascii(s).unwrap();
        let base = |rcode: u16| Message {
            header: Header::from_parts(7, 0x8580 | rcode, [0; 4]),
            questions: vec![Question {
                qname: name("WwW.example.org"),
                qtype: RType::A,
                qclass: Class::IN,
            }],
            ..Message::default()
        };
        let cname = rec(
            "www.example.org",
            RType::CNAME,
            ttls[0],
            RData::Cname(name("web.example.org")),
        );
        let a = rec(
            "web.example.org",
            RType::A,
            ttls[1],
            RData::A([192, 0, 2, 1].into()),
        );
        let ns = rec(
            "example.org",
            RType::NS,
            ttls[2],
            RData::Ns(name("ns.example.org")),
        );
        let opt = crate::forward::reply::our_opt(false);
        let mut positive = base(0);
        positive.answers = vec![cname.clone(), a.clone()];
        positive.authority = vec![ns.clone()];
        positive.additional = vec![a.clone(), opt.clone()];
        let mut nx = base(3);
        nx.answers = vec![cname];
        nx.authority = vec![ns, soa(ttls[3], ttls[2])];
        let mut nodata = base(0);
        nodata.authority = vec![soa(ttls[2], ttls[3])];
        nodata.additional = vec![opt.clone()];
        let mut opt_first = positive.clone();
        opt_first.additional = vec![opt, a];
        let mut out: Vec<Vec<u8>> = [positive, nx, nodata.clone()]
            .iter()
            .map(Message::to_vec)
            .collect();
        nodata.additional.clear();
        out.push(nodata.to_vec());
        out.push(opt_first.to_vec());
        out
    }

    /// The entry (its buffer and lifetime) through decoding and writing again, the way
    /// the cache made them before the one walk.
    /// An entry's octets: the key, then what `plan` writes.
    fn octets(key: &[u8], plan: &Plan<'_>, rows: &[(u16, u32)]) -> Vec<u8> {
        let mut out = key.to_vec();
        let mut answer = vec![0; plan.wire.len() + rows.len() * TTL_ROW];
        plan.write(rows, &mut answer);
        out.extend_from_slice(&answer);
        out
    }

    /// The entry (its octets and lifetime) through decoding and writing again, the way
    /// the cache made them before the one walk.
    fn decoded(c: &Cache, key: &[u8], answer: &[u8]) -> Option<(Vec<u8>, u32)> {
        let (wire, ttl) = c.cacheable(answer)?;
        let mut rows = Vec::new();
        stored_rows(&wire, &mut rows)?;
        if crate::cache::overlap::unpatchable(&wire, &rows, wire.len()) {
            return None; // as Cache::insert_decoded: TSIG (names now aim at names)
        }
        Some((octets(key, &Plan::stored(&wire, ttl), &rows), ttl))
    }

    /// [`decoded`] for the octets as received: `None` too if, stored as received, a
    /// name reads an octet of a TTL field or of the OPT record cut off, or there is a
    /// TSIG record (the walk's own check of it, `Targets`, is what is tested against
    /// this one, `overlap::unpatchable`'s whole walk).
    fn decoded_unpatched(c: &Cache, key: &[u8], answer: &[u8]) -> Option<(Vec<u8>, u32)> {
        let mut ttls = Vec::new();
        crate::wire::walk_records(answer, |r| {
            if r.rtype != RType::OPT {
                ttls.push((r.ttl_at as u16, 0));
            }
        });
        // Only octets stored as received are patched where they lie: an answer whose OPT
        // record is not last is decoded and written again (names then aim at names).
        let view = MessageView::parse(answer);
        let as_received = view
            .as_ref()
            .is_ok_and(|v| v.opt.is_none_or(|o| o.offset + o.len == answer.len()));
        let stored = view
            .ok()
            .and_then(|v| v.opt)
            .map_or(answer.len(), |o| o.offset);
        let unpatchable = as_received && crate::cache::overlap::unpatchable(answer, &ttls, stored);
        decoded(c, key, answer).filter(|_| !unpatchable)
    }

    fn walked(c: &Cache, key: &[u8], answer: &[u8]) -> Option<(Vec<u8>, u32)> {
        let view = MessageView::parse(answer)
            .ok()
            .filter(|v| v.end == answer.len())?;
        let mut rows = Vec::new();
        match intake(&c.cfg, &view, &mut rows) {
            Intake::Entry(plan) => Some((octets(key, &plan, &rows), plan.ttl)),
            Intake::No => None,
            Intake::Decode => decoded(c, key, answer),
            Intake::Unknown => unreachable!("the intake's walk finds out"),
        }
    }

    fn cache(min_ttl: u32, max_ttl: u32) -> Cache {
        Cache::new(crate::cache::CacheConfig {
            min_ttl,
            max_ttl,
            ..Default::default()
        })
    }

    #[test]
    fn the_walk_stores_what_decoding_stored() {
        let key = b"\x03www\x07example\x03org\x00\x00\x01\x00\x01\x04";
        for (min, max) in [(0, 86_400), (60, 86_400), (0, 10), (100, 50)] {
            let c = cache(min, max);
            for ttls in [[300, 60, 3600, 900], [0, 5, 0x8000_0000, 7], [1, 1, 1, 0]] {
                for m in answers(ttls) {
                    let ours = walked(&c, key, &m);
                    assert_eq!(ours, decoded_unpatched(&c, key, &m), "{m:02x?}");
                    if ttls == [300, 60, 3600, 900] {
                        assert!(ours.is_some(), "cached: {m:02x?}");
                    }
                }
            }
        }
    }

    /// What the cache notes on the view's walk ([`Cache::parse_answer`]) against the
    /// view alone and the intake's own walk after it: the same view, the same outcome,
    /// the same TTL table.
    fn noted_agrees(c: &mut Cache, m: &[u8]) {
        let Ok(view) = MessageView::parse(m) else {
            assert!(c.parse_answer(m).is_err(), "{m:02x?}");
            return;
        };
        let mut rows = Vec::new();
        let walked = intake(&c.cfg, &view, &mut rows);
        let (ours, noted) = c.parse_answer(m).unwrap();
        assert_eq!(format!("{ours:?}"), format!("{view:?}"));
        match noted.intake {
            Intake::Unknown => assert_ne!(view.end, m.len(), "{m:02x?}"),
            n => {
                assert_eq!(n, walked, "{m:02x?}");
                if let Intake::Entry(_) = n {
                    assert_eq!(c.rows, rows, "{m:02x?}");
                }
            }
        }
    }

    #[test]
    fn the_view_notes_what_the_walk_finds() {
        let mut c = cache(0, 86_400);
        for ttls in [[300, 60, 3600, 900], [0, 5, 0x8000_0000, 7]] {
            for m in answers(ttls) {
                noted_agrees(&mut c, &m);
                noted_agrees(&mut c, &[&m[..], &[0, 1]].concat());
                // TSIG 250, SOA 6, OPT 41, CNAME 5, MX 15, TXT 16; pointers and labels.
                for at in 0..m.len() {
                    for v in [0u8, 1, 4, 5, 6, 12, 15, 16, 41, 63, 64, 0xC0, 0xFA, 0xFF] {
                        let mut x = m.clone();
                        x[at] = v;
                        noted_agrees(&mut c, &x);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn the_view_notes_what_the_walk_finds_after_random_changes(
            which in 0usize..5,
            ttls in proptest::array::uniform4(prop_oneof![Just(0u32), Just(30), Just(0x8000_0001), any::<u32>()]),
            limits in (0u32..100, 0u32..100_000),
            changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            trailing in proptest::collection::vec(any::<u8>(), 0..3),
        ) {
            let mut c = cache(limits.0, limits.1);
            let mut m = answers(ttls).swap_remove(which);
            for (at, v) in changes {
                let len = m.len();
                m[at % len] = v;
            }
            m.extend_from_slice(&trailing);
            noted_agrees(&mut c, &m);
        }

        #[test]
        fn the_walk_stores_what_decoding_stored_after_random_changes(
            which in 0usize..5,
            ttls in proptest::array::uniform4(prop_oneof![Just(0u32), Just(30), Just(0x8000_0001), any::<u32>()]),
            limits in (0u32..100, 0u32..100_000),
            changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ) {
                let key = b"\x03www\x07example\x03org\x00\x00\x01\x00\x01\x04";
            let c = cache(limits.0, limits.1);
            let mut m = answers(ttls).swap_remove(which);
            for (at, v) in changes {
                let len = m.len();
                m[at % len] = v;
            }
            prop_assert_eq!(walked(&c, key, &m), decoded_unpatched(&c, key, &m));
        }
    }
}
