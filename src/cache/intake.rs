//! An upstream's answer made ready for the cache in one walk, without decoding it: the
//! walk ([`walk_viewed_records`]) checks everything the decoder would (so only what
//! decodes is stored), and on the way each TTL is clamped and noted with its offset.
//! Nothing is copied until the store has a place for the entry: then the answer is
//! copied once, into it, and patched there ([`Plan::write`]). An answer whose OPT record
//! is not last (rare, and legal) is decoded and written again instead
//! ([`Intake::Decode`]).
use super::CacheConfig;
use crate::wire::{walk_viewed_records, MessageView, Opcode, RType, Rcode, HEADER_LEN};

/// What an answer is to the cache.
pub(super) enum Intake<'m> {
    /// What to store.
    Entry(Plan<'m>),
    /// May not be cached (see [`super::Cache::insert`]).
    No,
    /// Its OPT record is not last: the caller decodes it and writes it again.
    Decode,
}

/// An answer found cacheable, with its TTLs (offset, clamped value) in the caller's
/// table: what an entry's octets are made from.
#[derive(Debug, Clone, Copy)]
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

    /// Writes the stored answer and its TTL table into `out` (`wire.len()` + 2 octets
    /// a row): ID 0, AA clear, OPT no longer counted, each TTL as in `rows`.
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
        for (&(at, ttl), row) in rows.iter().zip(table.chunks_exact_mut(super::TTL_ROW)) {
            let at16 = at;
            let at = usize::from(at);
            if let Some(field) = wire.get_mut(at..at + 4) {
                field.copy_from_slice(&ttl.to_be_bytes());
            }
            row.copy_from_slice(&at16.to_be_bytes());
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

/// The plan for `view` (an upstream's answer, up to `view.end`), its TTLs put in `rows`
/// (emptied first): NOERROR with answers (lifetime: the smallest TTL of the answer and
/// authority sections), or NXDOMAIN/NODATA with an SOA (RFC 2308 §5: min(SOA TTL,
/// MINIMUM), and no longer than a CNAME in front of it); never truncated, never other
/// RCODEs, never what does not decode, never with a lifetime of 0.
pub(super) fn intake<'m>(
    cfg: &CacheConfig,
    view: &MessageView<'m>,
    rows: &mut Vec<(u16, u32)>,
) -> Intake<'m> {
    rows.clear();
    let Some(msg) = view.bytes().get(..view.end) else {
        return Intake::No;
    };
    let h = view.header;
    if !h.qr || h.tc || h.opcode != Opcode::QUERY || h.qdcount != 1 {
        return Intake::No;
    }
    let ext = view.opt.map_or(0, |o| u16::from(o.ext_rcode));
    let rcode = Rcode(ext << 4 | (h.rcode.0 & 0xF));
    let positive = rcode == Rcode::NOERROR && h.ancount > 0;
    if rcode != Rcode::NOERROR && rcode != Rcode::NXDOMAIN {
        return Intake::No;
    }
    // The OPT record is per hop (RFC 6891 §6.1.1): cut off, so it must be last.
    let wire_len = match view.opt {
        None => msg.len(),
        Some(o) if o.offset + o.len == msg.len() => o.offset,
        Some(_) => return Intake::Decode,
    };
    let (answers, authority) = (usize::from(h.ancount), usize::from(h.nscount));
    // Lifetime: the smallest TTL of the answers (and of the authority section in a
    // positive answer); the SOA's in a negative one.
    let mut least = u32::MAX;
    let mut soa: Option<u32> = None;
    let mut fits = true;
    let decodes = walk_viewed_records(view, |r| {
        if r.rtype == RType::OPT {
            return; // the last record (checked above), cut off
        }
        let in_authority = (answers..answers + authority).contains(&r.index);
        let ttl = if !positive && in_authority && r.rtype == RType::SOA && soa.is_none() {
            // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM), the last field.
            let minimum = match msg.get(r.rdata.end.saturating_sub(4)..r.rdata.end) {
                Some(&[a, b, c, d]) if r.rdata.len() > 4 => u32::from_be_bytes([a, b, c, d]),
                // An empty SOA (an update's delete) is no SOA.
                _ => {
                    fits = false;
                    0
                }
            };
            let ttl = clamp(cfg, r.ttl.min(minimum), false);
            soa = Some(ttl);
            ttl
        } else {
            clamp(cfg, r.ttl, positive)
        };
        if r.index < answers || (positive && in_authority) {
            least = least.min(ttl);
        }
        match u16::try_from(r.ttl_at) {
            Ok(at) if r.ttl_at + 4 <= wire_len => rows.push((at, ttl)),
            _ => fits = false,
        }
    });
    let ttl = if positive {
        least
    } else {
        soa.map_or(0, |s| s.min(least))
    };
    match msg.get(..wire_len) {
        Some(wire) if decodes && fits && ttl != 0 => Intake::Entry(Plan {
            wire,
            cut_opt: view.opt.is_some(),
            ttl,
        }),
        _ => Intake::No,
    }
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
        out.resize(
            key.len() + plan.wire.len() + rows.len() * super::super::TTL_ROW,
            0,
        );
        plan.write(rows, &mut out[key.len()..]);
        out
    }

    /// The entry (its octets and lifetime) through decoding and writing again, the way
    /// the cache made them before the one walk.
    fn decoded(c: &Cache, key: &[u8], answer: &[u8]) -> Option<(Vec<u8>, u32)> {
        let (wire, ttl) = c.cacheable(answer)?;
        let mut rows = Vec::new();
        stored_rows(&wire, &mut rows)?;
        Some((octets(key, &Plan::stored(&wire, ttl), &rows), ttl))
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
                    assert_eq!(ours, decoded(&c, key, &m), "{m:02x?}");
                    if ttls == [300, 60, 3600, 900] {
                        assert!(ours.is_some(), "cached: {m:02x?}");
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
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
            prop_assert_eq!(walked(&c, key, &m), decoded(&c, key, &m));
        }
    }
}
