//! A cached answer served: a copy and a few patches (see the module docs of [`super`]).

use super::{Asker, Cache, Entry, STALE_TTL_SERVED};
use crate::clock::Instant;
use crate::wire::{parse_message, set_id, CLASSIC_UDP_LEN, HEADER_LEN};

impl Cache {
    /// The answer for `asker` from `entry` at `now` (see the module docs); with `stale`,
    /// every TTL is 30 (RFC 8767 §4).
    pub fn render(entry: &Entry<'_>, now: Instant, asker: &Asker, stale: bool) -> Vec<u8> {
        Cache::render_into(entry, now, asker, stale, Vec::new())
    }

    /// [`render`](Self::render) into `out` (a recycled buffer: its contents go), so
    /// that a hit need not allocate.
    pub fn render_into(
        entry: &Entry<'_>,
        now: Instant,
        asker: &Asker,
        stale: bool,
        mut out: Vec<u8>,
    ) -> Vec<u8> {
        out.clear();
        out.reserve(entry.wire().len() + 11);
        out.extend_from_slice(entry.wire());
        set_id(&mut out, asker.id);
        if let Some(flags) = out.get_mut(2..4) {
            // QR, opcode and RCODE as stored; AA and TC clear; RD and CD from the client.
            flags[0] = (flags[0] & 0xF8) | 0x80 | u8::from(asker.rd);
            flags[1] = (flags[1] & 0xEF) | u8::from(asker.cd) << 4;
        }
        // The client's spelling: the stored question name is uncompressed at offset 12
        // (our writer puts it there), and an equal name has the same length.
        let spelling = asker.qname.get(..asker.qname_len).unwrap_or_default();
        if let Some(name) = out.get_mut(HEADER_LEN..HEADER_LEN + spelling.len()) {
            if name.eq_ignore_ascii_case(spelling) {
                name.copy_from_slice(spelling);
            }
        }
        let age = entry.age_at(now);
        for at in entry.ttl_offsets() {
            if let Some(field) = out.get_mut(at..at + 4) {
                // The copy still holds the TTL as stored.
                let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                let served = if stale {
                    STALE_TTL_SERVED
                } else {
                    ttl.saturating_sub(age)
                };
                field.copy_from_slice(&served.to_be_bytes());
            }
        }
        if let Some(dnssec_ok) = asker.edns {
            // Our OPT record; a stale answer says so (RFC 8914 INFO-CODE 3, Stale Answer).
            let ede: &[u8] = if stale { &[0, 15, 0, 2, 0, 3] } else { &[] };
            crate::wire::push_opt(&mut out, 0, dnssec_ok, ede);
        }
        if out.len() > asker.max_response.max(CLASSIC_UDP_LEN) {
            if let Ok(m) = parse_message(&out) {
                return m.write(asker.max_response);
            }
        }
        out
    }
}
