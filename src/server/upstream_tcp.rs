//! TCP connections to upstreams: one per query whose UDP answer came back truncated.
use std::io;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::tcp::{Framed, ReadState};
use super::{Server, TOKEN_SPACE, UPSTREAM_TCP};
use crate::forward::Source;

/// A connection to an upstream carrying one query (the retry of a truncated answer).
#[derive(Debug)]
pub struct UpstreamConn {
    pub stream: TcpStream,
    pub upstream: usize,
    /// The query's transaction ID, for reporting a failure.
    pub id: u16,
    pub io: Framed,
    pub opened: Instant,
}

impl Server {
    pub(super) fn open_upstream_tcp(&mut self, now: Instant, u: usize, bytes: &[u8]) {
        let id = match bytes.get(..2) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => return,
        };
        let Some(addr) = self.cfg.upstreams.get(u).copied() else {
            return;
        };
        let n = self
            .upstream_tcp
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.upstream_tcp.len());
        let opened = TcpStream::connect(addr).and_then(|mut stream| {
            if n >= TOKEN_SPACE {
                return Err(io::Error::other("too many upstream TCP connections"));
            }
            self.poll.registry().register(
                &mut stream,
                Token(UPSTREAM_TCP + n),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        let stream = match opened {
            Ok(s) => s,
            Err(e) => {
                log::debug!("TCP to upstream {addr}: {e}");
                return self.core.handle_tcp_failure(now, u, id);
            }
        };
        let mut io = Framed::default();
        io.queue(bytes);
        let conn = UpstreamConn {
            stream,
            upstream: u,
            id,
            io,
            opened: now,
        };
        if n == self.upstream_tcp.len() {
            self.upstream_tcp.push(Some(conn));
        } else if let Some(slot) = self.upstream_tcp.get_mut(n) {
            *slot = Some(conn);
        }
    }

    pub(super) fn upstream_tcp_ready(&mut self, now: Instant, n: usize) {
        let Some(Some(conn)) = self.upstream_tcp.get_mut(n) else {
            return;
        };
        let (u, id) = (conn.upstream, conn.id);
        // A connect that failed shows up as an error on the first write or read.
        let result = conn.io.flush(&mut conn.stream).and_then(|_| {
            let core = &mut self.core;
            let mut answered = false;
            let state = conn
                .io
                .read_frames(&mut conn.stream, &mut self.buf, 1, |frame| {
                    core.handle_response(now, Source::Tcp { upstream: u }, frame);
                    answered = true;
                })?;
            Ok((answered, state))
        });
        match result {
            Ok((true, _)) => self.close_upstream_tcp(n),
            Ok((false, ReadState::Eof)) => {
                self.close_upstream_tcp(n);
                self.core.handle_tcp_failure(now, u, id);
            }
            Ok((false, _)) => {}
            Err(e) => {
                log::debug!("TCP to upstream {u}: {e}");
                self.close_upstream_tcp(n);
                self.core.handle_tcp_failure(now, u, id);
            }
        }
    }

    pub(super) fn close_upstream_tcp(&mut self, n: usize) {
        if let Some(slot) = self.upstream_tcp.get_mut(n) {
            if let Some(mut conn) = slot.take() {
                let _ = self.poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}
