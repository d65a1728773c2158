//! The poll's token space, and the identities packed into numbers: which socket a
//! readiness event is for, and which client connection a query belongs to.
//!
//! Tokens by range, low to high: the signals (0), the waker (1), the metrics listener
//! (2) and its scrapes (4.., metrics_http.rs), the client listeners (UDP, TCP, TLS),
//! the upstream UDP sockets, the client TCP connections and the TCP connections to
//! upstreams. The ranges do not overlap, so a token alone names its socket; an event
//! whose token is in none of them, or names a socket closed since, is ignored (turn.rs).
//! The tests below check the ranges and that each packing comes apart again.
use mio::Token;

pub(super) const SIGNALS: Token = Token(0);
pub(super) const WAKER: Token = Token(1);
/// Client UDP listener `i` is `UDP_LISTENER + i`; at most `MAX_LISTENERS` of each kind.
pub(super) const UDP_LISTENER: usize = 16;
pub(super) const TCP_LISTENER: usize = 16 + MAX_LISTENERS;
pub(super) const MAX_LISTENERS: usize = 64;
/// DNS over TLS listener `i` (`--listen-tls`) is `TLS_LISTENER + i`.
pub(super) const TLS_LISTENER: usize = TCP_LISTENER + MAX_LISTENERS;
/// Upstream socket (upstream u, slot s, generation g) is `UPSTREAM_UDP + (u*256 + s)*2 + g`.
pub(super) const UPSTREAM_UDP: usize = 1 << 10;
/// Client TCP connection in slot i.
pub(super) const CLIENT_TCP: usize = 1 << 16;
/// TCP connection k to upstream u is `UPSTREAM_TCP + u * MAX_TCP_PER_UPSTREAM + k`.
pub(super) const UPSTREAM_TCP: usize = 1 << 17;
pub(super) const TOKEN_SPACE: usize = 1 << 16;

/// The token of upstream `u`'s socket in slot `s`, `generation` 0 or 1. Valid values:
/// `u < 64` (the core's cap on upstreams), `s < 256` (the pool's cap on sockets), so
/// that the token stays below [`CLIENT_TCP`].
pub(super) fn upstream_token(u: usize, s: usize, generation: usize) -> Token {
    Token(UPSTREAM_UDP + (u * 256 + s) * 2 + generation)
}

/// [`upstream_token`] undone: the upstream, slot and generation of token `t`, if it is
/// an upstream UDP socket's.
#[inline]
pub(super) fn split_upstream_token(t: usize) -> Option<(usize, usize, usize)> {
    let n = t.wrapping_sub(UPSTREAM_UDP);
    (n < CLIENT_TCP - UPSTREAM_UDP).then_some((n / 2 / 256, n / 2 % 256, n % 2))
}

/// A client connection's identity for the core: its slot and its generation (as many
/// of its bits as fit).
pub(super) fn conn_id(n: usize, generation: u32) -> usize {
    // 31 bits of the generation (bits 17 to 47): a query handed to another loop
    // (--threads, group.rs) carries the identity in 48 bits. A slot's generation
    // repeats after 2^31 connections to it, long after any query of the first is over.
    ((generation & 0x7FFF_FFFF) as usize) << 17 | n
}

/// Set in the identity the core is given with a query that carried EDNS Padding: the
/// core hands it back with the answer, which is padded then (RFC 8467 §4.1: per query,
/// not per connection).
pub(super) const PADDED_QUERY: usize = 1 << 16;

/// The slot of a connection identity, and the identity without [`PADDED_QUERY`].
pub(super) fn split_conn_id(id: usize) -> (usize, usize) {
    (id & 0xFFFF, id & !PADDED_QUERY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::metrics_http::{MAX_SCRAPERS, METRICS_CONN, METRICS_LISTENER};

    #[test]
    fn token_ranges_do_not_overlap() {
        // Each kind's first token and the end of its range, low to high.
        let ranges = [
            (SIGNALS.0, SIGNALS.0 + 1),
            (WAKER.0, WAKER.0 + 1),
            (METRICS_LISTENER, METRICS_LISTENER + 1),
            (METRICS_CONN, METRICS_CONN + MAX_SCRAPERS),
            (UDP_LISTENER, UDP_LISTENER + MAX_LISTENERS),
            (TCP_LISTENER, TCP_LISTENER + MAX_LISTENERS),
            (TLS_LISTENER, TLS_LISTENER + MAX_LISTENERS),
            (UPSTREAM_UDP, CLIENT_TCP),
            (CLIENT_TCP, CLIENT_TCP + TOKEN_SPACE),
            (UPSTREAM_TCP, UPSTREAM_TCP + TOKEN_SPACE),
        ];
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{pair:?}");
        }
    }

    #[test]
    fn upstream_tokens_split_back() {
        for u in [0, 1, 63] {
            for s in [0, 1, 255] {
                for generation in [0, 1] {
                    let t = upstream_token(u, s, generation).0;
                    assert_eq!(split_upstream_token(t), Some((u, s, generation)));
                }
            }
        }
        for t in [
            0,
            UDP_LISTENER,
            UPSTREAM_UDP - 1,
            CLIENT_TCP,
            UPSTREAM_TCP,
            usize::MAX,
        ] {
            assert_eq!(split_upstream_token(t), None, "{t}");
        }
    }

    #[test]
    fn conn_id_keeps_slot_padding_and_generation_apart() {
        let slot = TOKEN_SPACE - 1;
        for generation in [0, 1, 0x7FFF_FFFF, u32::MAX] {
            let id = conn_id(slot, generation);
            assert!(id < 1 << 48, "a handoff carries 48 bits");
            assert_eq!(id & PADDED_QUERY, 0);
            assert_eq!(split_conn_id(id), (slot, id));
            assert_eq!(split_conn_id(id | PADDED_QUERY), (slot, id));
        }
        assert_ne!(conn_id(slot, 1), conn_id(slot, 2));
        // 31 bits of the generation are kept.
        assert_eq!(conn_id(slot, 0x8000_0000), conn_id(slot, 0));
    }
}
