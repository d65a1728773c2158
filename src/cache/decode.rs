//! The stored form of an answer whose OPT record is not last (rare, and legal): decoded
//! and written again, or patched in place when decoding shows it may be.
use super::{intake, Cache};
use crate::wire::{
    parse_message, record_ttls, set_id, Message, MessageView, Opcode, RData, RType, Rcode,
};

/// The stored form made from the received octets rather than re-encoded (the common
/// case: no OPT record, or OPT last): OPT cut off, ID 0, AA clear, and each record's TTL
/// overwritten with `ttls` (in wire order, OPT excluded). `None` sends the caller to
/// the re-encoding path.
fn patched_copy(response: &[u8], ttls: &[u32]) -> Option<Vec<u8>> {
    let view = MessageView::parse(response).ok()?;
    let end = match view.opt {
        None => view.end,
        Some(o) if o.offset + o.len == view.end => o.offset,
        Some(_) => return None,
    };
    let mut wire = response.get(..end)?.to_vec();
    set_id(&mut wire, 0);
    if let Some(flags) = wire.get_mut(2) {
        *flags &= !0x04; // AA
    }
    if view.opt.is_some() {
        let ar = wire.get_mut(10..12)?;
        let n = u16::from_be_bytes([ar[0], ar[1]]).checked_sub(1)?;
        ar.copy_from_slice(&n.to_be_bytes());
    }
    let positions = record_ttls(&wire).ok()?;
    if positions.len() != ttls.len() {
        return None;
    }
    for (&(at, _), ttl) in positions.iter().zip(ttls) {
        wire.get_mut(at..at + 4)?
            .copy_from_slice(&ttl.to_be_bytes());
    }
    Some(wire)
}

/// The TTL table of `wire` (an answer in its stored form, its TTLs already clamped) into
/// `rows` (emptied first): each TTL field's offset and value. `None` if it does not walk.
pub(super) fn stored_rows(wire: &[u8], rows: &mut Vec<(u16, u32)>) -> Option<()> {
    rows.clear();
    for (at, _) in record_ttls(wire).ok()? {
        let &[a, b, c, d] = wire.get(at..at + 4)? else {
            return None;
        };
        rows.push((u16::try_from(at).ok()?, u32::from_be_bytes([a, b, c, d])));
    }
    Some(())
}

impl Cache {
    /// The stored form of `response` and its lifetime, if it may be cached, by decoding
    /// it and writing it again: for answers whose OPT record is not last (the common
    /// case takes [`intake`]'s one walk, which the tests hold to the same result).
    pub(super) fn cacheable(&self, response: &[u8]) -> Option<(Vec<u8>, u32)> {
        let mut m: Message<'_> = parse_message(response).ok()?;
        let h = m.header;
        if !h.qr || h.tc || h.opcode != Opcode::QUERY || m.questions.len() != 1 {
            return None;
        }
        let rcode = m.rcode();
        let clamp = |ttl: u32, positive: bool| intake::clamp(&self.cfg, ttl, positive);
        let positive = rcode == Rcode::NOERROR && !m.answers.is_empty();
        let ttl = if positive {
            m.answers
                .iter()
                .chain(&m.authority)
                .map(|r| clamp(r.ttl, true))
                .min()?
        } else if rcode == Rcode::NOERROR || rcode == Rcode::NXDOMAIN {
            // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM).
            let soa = m.authority.iter_mut().find(|r| r.rtype == RType::SOA)?;
            let RData::Soa(s) = &soa.rdata else {
                return None;
            };
            soa.ttl = clamp(soa.ttl.min(s.minimum), false);
            // A CNAME chain in front of the NXDOMAIN/NODATA must not outlive its own TTL.
            let negative = soa.ttl;
            m.answers
                .iter()
                .map(|r| clamp(r.ttl, false))
                .fold(negative, u32::min)
        } else {
            return None;
        };
        if ttl == 0 {
            return None;
        }
        for r in m
            .answers
            .iter_mut()
            .chain(&mut m.authority)
            .chain(&mut m.additional)
        {
            r.ttl = clamp(r.ttl, positive);
        }
        let ttls: Vec<u32> = m
            .answers
            .iter()
            .chain(&m.authority)
            .chain(&m.additional)
            .filter(|r| r.rtype != RType::OPT)
            .map(|r| r.ttl)
            .collect();
        if let Some(wire) = patched_copy(response, &ttls) {
            return Some((wire, ttl));
        }
        m.additional.retain(|r| r.rtype != RType::OPT);
        m.header.id = 0;
        m.header.aa = false;
        // The stored header carries the RCODE's low bits; extended ones never get here.
        Some((m.to_vec(), ttl))
    }
}
