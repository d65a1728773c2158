//! DNS over TLS (RFC 7858) on the mio loop: a TCP stream with rustls on it, read and
//! written through the same [`super::tcp::Framed`] buffers as plain TCP, for the
//! connections to `tls://` upstreams (`upstream_tcp`) and the `--listen-tls` clients
//! (`clients`). rustls is sans-IO: it is handed the octets the socket has
//! (`read_tls`, `process_new_packets`) and gives back what to send (`write_tls`), so
//! nothing here blocks and no thread or runtime is involved.
//!
//! Trust (RFC 8310 strict profile): an upstream's certificate must chain to the system
//! roots (or to `--tls-ca` only, when given) and carry the name after `#` (or the
//! address as an IP SAN). Any handshake error ends the connection and counts as the
//! upstream failing; a query never goes out in clear instead.
mod load;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Token};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig};

use super::{bind_tcp_listener, Server, MAX_LISTENERS, TLS_LISTENER};
use crate::clock::Instant;
use crate::config::TlsConfig;
use crate::stats::Stats;
pub use load::server_name;
use load::{client_config, invalid, load_chain, load_roots, server_config};

/// Most plaintext and TLS octets rustls holds for sending on one connection; past it
/// a write takes fewer octets (so `Framed` keeps the backlog, and a client that does
/// not read its answers is paused like a plain TCP one).
const TLS_BUFFER_LIMIT: usize = 64 << 10;

/// A TCP stream, in clear or with TLS on it.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// A TCP stream and the TLS connection on it.
#[derive(Debug)]
pub struct TlsStream {
    sock: TcpStream,
    conn: Connection,
    /// The handshake's end was reported by [`Stream::handshake_done`].
    reported: bool,
    /// rustls refused what the peer sent (bad certificate, not TLS, …).
    failed: bool,
}

impl Stream {
    /// A client connection to an upstream, TLS on `sock` (connecting) for `name`.
    pub fn client(
        sock: TcpStream,
        cfg: &Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Stream> {
        let conn = ClientConnection::new(Arc::clone(cfg), name).map_err(io::Error::other)?;
        Ok(Stream::tls(sock, Connection::Client(conn)))
    }

    /// A client that connected to a `--listen-tls` socket.
    pub fn server(sock: TcpStream, cfg: &Arc<ServerConfig>) -> io::Result<Stream> {
        let conn = rustls::ServerConnection::new(Arc::clone(cfg)).map_err(io::Error::other)?;
        Ok(Stream::tls(sock, Connection::Server(conn)))
    }

    fn tls(sock: TcpStream, mut conn: Connection) -> Stream {
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Stream::Tls(Box::new(TlsStream {
            sock,
            conn,
            reported: false,
            failed: false,
        }))
    }

    /// The socket (to register, or to ask about the connect).
    pub fn sock(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &mut t.sock,
        }
    }

    pub fn sock_ref(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Whether a TLS handshake is still under way.
    pub fn handshaking(&self) -> bool {
        matches!(self, Stream::Tls(t) if t.conn.is_handshaking())
    }

    /// Whether rustls refused what the peer sent.
    pub fn failed(&self) -> bool {
        matches!(self, Stream::Tls(t) if t.failed)
    }

    /// Once per connection, when its handshake has completed: whether it resumed an
    /// earlier session.
    pub fn handshake_done(&mut self) -> Option<bool> {
        let Stream::Tls(t) = self else {
            return None;
        };
        if t.reported || t.conn.is_handshaking() {
            return None;
        }
        t.reported = true;
        Some(t.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
    }

    /// Whether TLS records wait to be sent (handshake messages, alerts, data).
    pub fn wants_write(&self) -> bool {
        matches!(self, Stream::Tls(t) if t.conn.wants_write())
    }

    /// Before a connection is dropped: ends TLS with a close_notify alert (RFC 8446
    /// §6.1; RFC 7858 §3.4 asks for a clean close), sent if the socket takes it now,
    /// so the peer can tell our close from a cut. Nothing to say after a TLS error
    /// (rustls sent its alert then), before the handshake is through (the peer may
    /// not speak TLS at all), or on a plain stream.
    pub fn close_notify(&mut self) {
        if let Stream::Tls(t) = self {
            if !t.failed && !t.conn.is_handshaking() {
                t.conn.send_close_notify();
                let _ = t.write_pending();
            }
        }
    }
}

impl TlsStream {
    /// Sends what rustls has for the peer until done or the socket would block.
    fn write_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads TLS records and decrypts them; `Ok(0)` at the end of the stream.
    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.failed = true;
                // The alert rustls queued, if the socket takes it.
                let _ = self.write_pending();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Handshake messages, or the queries buffered until it completed.
            match self.write_pending() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read_plain(buf),
        }
    }
}

impl Write for Stream {
    /// Plain: the socket's write. TLS: rustls takes the octets (as many as its buffer
    /// limit allows; none is `WouldBlock`) and as much as the socket takes is sent.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => {
                let n = t.conn.writer().write(buf)?;
                match t.write_pending() {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                    _ => {}
                }
                if n == 0 && !buf.is_empty() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            }
        }
    }

    /// Sends the TLS records still held; `WouldBlock` if the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.write_pending(),
        }
    }
}

/// What the server holds for DNS over TLS: the configs, the upstreams' names, counters.
#[derive(Default)]
pub struct TlsState {
    /// For `tls://` upstreams (none if there is none).
    client: Option<Arc<ClientConfig>>,
    /// For `--listen-tls` clients (none if not listening).
    server: Option<Arc<ServerConfig>>,
    /// The TLS upstreams and the names their certificates must carry.
    names: Vec<(SocketAddr, ServerName<'static>)>,
    /// The trust anchors `client` was made with (to tell whether a reload changed them).
    roots: Vec<CertificateDer<'static>>,
    /// The certificate chain `server` shows (likewise).
    chain: Vec<CertificateDer<'static>>,
    pub counters: TlsCounters,
}

/// Counted by the shell, added to [`Stats`].
#[derive(Debug, Default, Clone, Copy)]
pub struct TlsCounters {
    pub upstream_handshakes: u64,
    pub upstream_resumed: u64,
    pub upstream_failures: u64,
    pub client_handshakes: u64,
    pub client_failures: u64,
}

impl TlsState {
    /// Reads the files the settings name (root store or `--tls-ca`, certificate, key).
    pub fn new(cfg: &TlsConfig) -> io::Result<TlsState> {
        TlsState::load(cfg, None)
    }

    /// As [`TlsState::new`]; the client config of `old` is kept if the roots read are
    /// the same (and with it its session cache: a reload costs no full handshake).
    fn load(cfg: &TlsConfig, old: Option<&TlsState>) -> io::Result<TlsState> {
        let (client, roots) = match cfg.upstreams.is_empty() {
            true => (None, Vec::new()),
            false => {
                let roots = load_roots(cfg.ca.as_deref())?;
                let kept = old
                    .filter(|o| o.roots == roots)
                    .and_then(|o| o.client.clone());
                let client = match kept {
                    Some(c) => c,
                    None => client_config(&roots, cfg.ca.as_deref())?,
                };
                (Some(client), roots)
            }
        };
        let server = match (&cfg.listen.is_empty(), &cfg.cert, &cfg.key) {
            (false, Some(cert), Some(key)) => {
                let chain = load_chain(cert)?;
                // A new certificate starts a new session store: a client resuming an
                // old session would not be shown the new certificate.
                let sessions = old
                    .filter(|o| o.chain == chain)
                    .and_then(|o| o.server.as_ref())
                    .map(|s| Arc::clone(&s.session_storage));
                Some((server_config(cert, chain.clone(), key, sessions)?, chain))
            }
            _ => None,
        };
        let (server, chain) = server.unzip();
        let names = cfg
            .upstreams
            .iter()
            .map(|(a, n)| Ok((*a, server_name(n)?)))
            .collect::<io::Result<_>>()?;
        Ok(TlsState {
            client,
            server,
            names,
            roots,
            chain: chain.unwrap_or_default(),
            counters: TlsCounters::default(),
        })
    }

    /// The TLS upstreams of `self` that `new` trusts differently: other roots, another
    /// name, or no longer TLS at all.
    fn trust_changed(&self, new: &TlsState) -> Vec<SocketAddr> {
        let same_roots = match (&self.client, &new.client) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.names
            .iter()
            .filter(|(addr, name)| {
                let now = new.names.iter().find(|(a, _)| a == addr).map(|(_, n)| n);
                !same_roots || now != Some(name)
            })
            .map(|(a, _)| *a)
            .collect()
    }

    /// UDP sockets for upstream `addr` out of `per`: a TLS upstream is never sent a
    /// datagram; it keeps one socket so that its index has a pool like the others.
    pub fn udp_pool_size(&self, addr: SocketAddr, per: usize) -> usize {
        match self.is_upstream(addr) {
            true => 1,
            false => per.clamp(1, 256),
        }
    }

    /// The config and certificate name for upstream `addr`, if it is reached over TLS.
    pub fn upstream(&self, addr: SocketAddr) -> Option<(&Arc<ClientConfig>, ServerName<'static>)> {
        let name = self.names.iter().find(|(a, _)| *a == addr)?.1.clone();
        Some((self.client.as_ref()?, name))
    }

    pub fn is_upstream(&self, addr: SocketAddr) -> bool {
        self.names.iter().any(|(a, _)| *a == addr)
    }

    pub fn add_to(&self, stats: &mut Stats) {
        let c = &self.counters;
        stats.tls_upstream_handshakes = c.upstream_handshakes;
        stats.tls_upstream_resumed = c.upstream_resumed;
        stats.tls_upstream_failures = c.upstream_failures;
        stats.tls_client_handshakes = c.client_handshakes;
        stats.tls_client_failures = c.client_failures;
    }
}

impl Server {
    /// Binds the `--listen-tls` addresses (TCP).
    pub(super) fn bind_tls_listeners(&mut self) -> io::Result<()> {
        let listen = self.cfg.tls.listen.clone();
        if listen.len() > MAX_LISTENERS {
            return Err(invalid("--listen-tls", "too many addresses"));
        }
        for addr in listen {
            let mut l =
                bind_tcp_listener(addr).map_err(|e| super::hints::listen(addr, "TLS", e))?;
            let token = Token(TLS_LISTENER + self.tls_listeners.len());
            self.poll
                .registry()
                .register(&mut l, token, Interest::READABLE)?;
            self.tls_listeners.push(l);
        }
        Ok(())
    }

    /// The addresses the `--listen-tls` listeners are bound to.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// UDP sockets for upstream `addr` (see [`TlsState::udp_pool_size`]).
    pub(super) fn udp_pool_size(&self, addr: SocketAddr) -> usize {
        self.tls.udp_pool_size(addr, self.cfg.sockets_per_upstream)
    }

    /// The TLS side of a reload, first step: reads the certificate, key and roots
    /// again. Nothing changes yet (a reload that fails later must leave all as it was).
    pub(super) fn prepare_tls(&self, new: &TlsConfig) -> Result<TlsState, String> {
        let mut state = TlsState::load(new, Some(&self.tls)).map_err(|e| e.to_string())?;
        if state.server.is_none() {
            // Still listening until a restart: keep serving with the last certificate.
            state.server.clone_from(&self.tls.server);
            state.chain.clone_from(&self.tls.chain);
        }
        Ok(state)
    }

    /// The TLS side of a reload, last step (it cannot fail): new connections use
    /// `state`; open connections of clients keep what they were made with; those to
    /// upstreams whose trust changed (roots, name) retire, so that from now on every
    /// query goes under the new settings.
    pub(super) fn apply_tls(&mut self, now: Instant, mut state: TlsState) {
        state.counters = self.tls.counters;
        let changed = self.tls.trust_changed(&state);
        self.tls = state;
        let slots = self.core.upstream_slots();
        for addr in changed {
            for u in (0..slots.len()).filter(|&u| slots.get(u).is_some_and(|s| s.0 == addr)) {
                self.retire_upstream_tcp(now, u);
            }
        }
    }

    /// A TLS connection handed to a client connection slot: the server side.
    pub(super) fn tls_server(&self) -> Option<&Arc<ServerConfig>> {
        self.tls.server.as_ref()
    }
}
