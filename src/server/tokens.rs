//! The poll's token space, and the identities packed into numbers: which socket a
//! readiness event is for, and which client connection a query belongs to.
//!
//! Tokens by range, low to high: the signals (0), the waker (1), the metrics listener
//! (2) and its scrapes (4.., metrics_http.rs), the client listeners (UDP, TCP, TLS),
//! the upstream UDP sockets, the client TCP connections and the TCP connections to
//! upstreams. The ranges do not overlap, so a token alone names its socket; an event
//! whose token is in none of them, or names a socket closed since, is ignored (turn.rs).
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

pub(super) fn upstream_token(u: usize, s: usize, generation: usize) -> Token {
    Token(UPSTREAM_UDP + (u * 256 + s) * 2 + generation)
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
