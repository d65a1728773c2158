//! `--metrics ADDR:PORT`: a small HTTP/1.1 responder inside the event loop, for
//! Prometheus scrapes (`GET /metrics`, as CoreDNS serves on :9153).
//!
//! One request per connection: the request head is read (non-blocking, at most
//! [`MAX_REQUEST`] octets, within [`SCRAPE_TIMEOUT`] of the accept), answered 200 with
//! the exposition for `GET /metrics`, 404 for any other path, 405 for another method,
//! 400 for a head that is too long or not HTTP, and the connection is closed. At most
//! [`MAX_SCRAPERS`] connections at once (more are closed at accept), so a slow or
//! hostile scraper holds one slot for a few seconds and never stalls the DNS side: its
//! socket is only read when ready and never waited on. The exposition is encoded only
//! here, on a scrape.
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};

use super::Server;
use crate::clock::Instant;
use crate::metrics::{render, Snapshot, CONTENT_TYPE};

pub(super) const METRICS_LISTENER: usize = 2;
/// Scrape connection `i` is token `METRICS_CONN + i`.
pub(super) const METRICS_CONN: usize = 4;
/// Most scrape connections at once.
pub(super) const MAX_SCRAPERS: usize = 8;
/// Longest request head read (request line and headers).
pub const MAX_REQUEST: usize = 4096;
/// A scrape connection is closed this long after its accept, finished or not.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The metrics listener and its connections.
pub(super) struct MetricsHttp {
    listener: TcpListener,
    conns: Vec<Option<Scrape>>,
}

struct Scrape {
    stream: TcpStream,
    /// Closed at this instant whatever its state.
    deadline: Instant,
    /// The request head read so far. Valid values: at most `MAX_REQUEST` octets.
    head: Vec<u8>,
    /// The response and how much of it is written, once the head is complete.
    response: Option<(Vec<u8>, usize)>,
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Metrics,
    NotFound,
    BadMethod,
    BadRequest,
}

impl MetricsHttp {
    pub(super) fn bind(addr: SocketAddr, registry: &mio::Registry) -> io::Result<MetricsHttp> {
        let mut listener = super::bind_tcp_listener(addr)?;
        registry.register(&mut listener, Token(METRICS_LISTENER), Interest::READABLE)?;
        Ok(MetricsHttp {
            listener,
            conns: (0..MAX_SCRAPERS).map(|_| None).collect(),
        })
    }

    pub(super) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub(super) fn has_connections(&self) -> bool {
        self.conns.iter().any(Option::is_some)
    }
}

impl Server {
    /// The address `--metrics` listens on, if it is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(MetricsHttp::local_addr)
    }

    /// What a scrape shows now (with `--threads`, the sum over the loops).
    pub fn metrics_snapshot(&self) -> Snapshot {
        self.group_snapshot(self.own_snapshot())
    }

    /// This loop's part of [`Server::metrics_snapshot`].
    pub(super) fn own_snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::new(self.stats(), self.core.events());
        snap.send_errors = self.send_errors;
        snap.cache_entries = self.core.cache_entries();
        snap.pending = self.core.pending();
        snap
    }

    pub(super) fn metrics_accept(&mut self, now: Instant) {
        // Before any accept: a scrape may be open from here on (the sweep must run).
        self.maybe_open = true;
        let registry = self.poll.registry();
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        loop {
            match m.listener.accept() {
                Ok((mut stream, _)) => {
                    let Some(i) = m.conns.iter().position(Option::is_none) else {
                        continue; // every slot busy: closed at once (dropped)
                    };
                    let token = Token(METRICS_CONN + i);
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    if let Some(slot) = m.conns.get_mut(i) {
                        *slot = Some(Scrape {
                            stream,
                            deadline: now + SCRAPE_TIMEOUT,
                            head: Vec::new(),
                            response: None,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if let Some(n) = self.log.hit(now, "metrics-accept") {
                        log::warn!("metrics listener: {e}{n}");
                    }
                    return;
                }
            }
        }
    }

    /// Scrape connection `i` is readable or writable.
    pub(super) fn metrics_ready(&mut self, i: usize) {
        let ask = match self.read_head(i) {
            Ok(ask) => ask,
            Err(()) => return self.close_scrape(i),
        };
        if let Some(ask) = ask {
            let response = match ask {
                Ask::Metrics => {
                    let body = render(self.metrics_snapshot());
                    respond("200 OK", CONTENT_TYPE, &body)
                }
                Ask::NotFound => respond("404 Not Found", "text/plain", "not found\n"),
                Ask::BadMethod => respond("405 Method Not Allowed", "text/plain", "GET only\n"),
                Ask::BadRequest => respond("400 Bad Request", "text/plain", "bad request\n"),
            };
            if let Some(Some(s)) = self.metrics.as_mut().and_then(|m| m.conns.get_mut(i)) {
                s.response = Some((response, 0));
            }
        }
        match self.write_response(i) {
            Ok(true) | Err(()) => self.close_scrape(i),
            Ok(false) => {}
        }
    }

    /// Reads what is there. `Ok(Some)` once the head is complete (or too long), `Ok(None)`
    /// to wait for more, `Err` to close (peer gone, error).
    fn read_head(&mut self, i: usize) -> Result<Option<Ask>, ()> {
        let Some(Some(s)) = self.metrics.as_mut().and_then(|m| m.conns.get_mut(i)) else {
            return Err(());
        };
        if s.response.is_some() {
            return Ok(None);
        }
        let mut buf = [0u8; 1024];
        loop {
            match s.stream.read(&mut buf) {
                Ok(0) => return Err(()),
                Ok(n) => {
                    let room = MAX_REQUEST - s.head.len();
                    s.head
                        .extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
                    if let Some(ask) = parse_head(&s.head) {
                        return Ok(Some(ask));
                    }
                    if s.head.len() >= MAX_REQUEST {
                        return Ok(Some(Ask::BadRequest));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
    }

    /// Writes what the socket takes. `Ok(true)` when all is written.
    fn write_response(&mut self, i: usize) -> Result<bool, ()> {
        let registry = self.poll.registry();
        let Some(Some(s)) = self.metrics.as_mut().and_then(|m| m.conns.get_mut(i)) else {
            return Err(());
        };
        let Some((bytes, written)) = s.response.as_mut() else {
            return Ok(false);
        };
        while let Some(rest) = bytes.get(*written..).filter(|r| !r.is_empty()) {
            match s.stream.write(rest) {
                Ok(0) => return Err(()),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let token = Token(METRICS_CONN + i);
                    return registry
                        .reregister(&mut s.stream, token, Interest::WRITABLE)
                        .map(|()| false)
                        .map_err(|_| ());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        Ok(true)
    }

    fn close_scrape(&mut self, i: usize) {
        let registry = self.poll.registry();
        if let Some(mut s) = self
            .metrics
            .as_mut()
            .and_then(|m| m.conns.get_mut(i))
            .and_then(Option::take)
        {
            let _ = registry.deregister(&mut s.stream);
            let _ = s.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Closes scrape connections past their deadline.
    pub(super) fn sweep_metrics(&mut self, now: Instant) {
        let late: Vec<usize> = match &self.metrics {
            Some(m) => m
                .conns
                .iter()
                .enumerate()
                .filter(|(_, s)| s.as_ref().is_some_and(|s| now >= s.deadline))
                .map(|(i, _)| i)
                .collect(),
            None => return,
        };
        for i in late {
            self.close_scrape(i);
        }
    }
}

/// What a request head asks for, once it is complete (`\r\n\r\n`, or `\n\n` from lax
/// clients); `None` while it is not.
fn parse_head(head: &[u8]) -> Option<Ask> {
    let complete =
        head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n");
    if !complete {
        return None;
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.trim_ascii_end().split(|&b| b == b' ');
    let (method, target, version) = (words.next(), words.next(), words.next());
    let http = version.is_some_and(|v| v.starts_with(b"HTTP/1.")) && words.next().is_none();
    Some(match (method, target) {
        _ if !http => Ask::BadRequest,
        (Some(b"GET"), Some(t)) => {
            let path = t.split(|&b| b == b'?').next().unwrap_or_default();
            if path == b"/metrics" {
                Ask::Metrics
            } else {
                Ask::NotFound
            }
        }
        _ => Ask::BadMethod,
    })
}

fn respond(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_heads() {
        for (head, ask) in [
            (
                &b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                Some(Ask::Metrics),
            ),
            (b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", Some(Ask::Metrics)),
            (b"GET / HTTP/1.1\r\n\r\n", Some(Ask::NotFound)),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", Some(Ask::NotFound)),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Some(Ask::BadMethod)),
            (b"GET /metrics\r\n\r\n", Some(Ask::BadRequest)),
            (b"hello\n\n", Some(Ask::BadRequest)),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", None),
        ] {
            assert_eq!(parse_head(head), ask, "{}", String::from_utf8_lossy(head));
        }
    }
}
