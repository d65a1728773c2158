//! DNS over TLS test helpers: a throwaway PKI made with rcgen, a blocking rustls client,
//! and a scriptable DoT server (rustls, one thread per connection) that records what
//! it is asked. Every wait is bounded; the server stops when dropped.
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use dnsfwd::wire::parse_message;

const WAIT: Duration = Duration::from_secs(5);

/// A scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("dnsfwd-dot-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A throwaway CA and a server certificate for `dns.test` and 127.0.0.1, as PEM files
/// ca.pem, cert.pem and key.pem in `dir`.
pub fn make_pki(dir: &TempDir) {
    make_pki_as(dir, "", "dns.test")
}

/// As [`make_pki`], the files named `{prefix}ca.pem` and so on, the leaf's common name
/// `cn` (its SANs are always dns.test and 127.0.0.1).
pub fn make_pki_as(dir: &TempDir, prefix: &str, cn: &str) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "dnsfwd throwaway test CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf = CertificateParams::new(vec!["dns.test".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    leaf.distinguished_name.push(DnType::CommonName, cn);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let file = |f: &str| dir.path(&format!("{prefix}{f}"));
    std::fs::write(file("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(file("cert.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(file("key.pem"), leaf_key.serialize_pem()).unwrap();
}

/// The first certificate of a PEM file, DER.
pub fn cert_der(path: &std::path::Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting the CA in `ca` only.
pub fn client_config(ca: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

pub type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A blocking rustls client connected to `addr` as `dns.test`, its handshake done.
pub fn tls_connect(cfg: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> TlsClient {
    let name = ServerName::try_from("dns.test").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(cfg), name).unwrap();
    let sock = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// The leaf certificate a connected client was shown, DER.
pub fn served_cert(c: &TlsClient) -> Vec<u8> {
    c.conn.peer_certificates().unwrap()[0].to_vec()
}

/// One framed query written, one framed answer read.
pub fn tls_ask(s: &mut (impl Read + Write), q: &[u8]) -> io::Result<Vec<u8>> {
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    s.write_all(&framed)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg)?;
    Ok(msg)
}

/// A server config from `dir`'s cert.pem and key.pem: TLS 1.3 and 1.2, or 1.2 only.
/// Sessions are kept (rustls' default: a cache of 256, TLS 1.3 tickets naming them).
pub fn server_config(dir: &TempDir, tls12_only: bool) -> Arc<rustls::ServerConfig> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(dir.path("cert.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.path("key.pem")).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider());
    let builder = match tls12_only {
        true => builder.with_protocol_versions(&[&rustls::version::TLS12]),
        false => builder.with_safe_default_protocol_versions(),
    };
    let cfg = builder
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(cfg)
}

/// How a [`DotServer`] behaves.
#[derive(Clone, Copy, Default)]
pub struct DotOpts {
    /// Close each connection (close_notify, sent with the last answer) after this many
    /// answers.
    pub close_after: Option<usize>,
    /// TLS 1.2 only.
    pub tls12_only: bool,
}

/// A DoT server on 127.0.0.1 answering every query with one A record (common::answer);
/// a name starting with "slow" is answered after a second. It counts connections and
/// how the client ended them.
pub struct DotServer {
    pub addr: SocketAddr,
    /// The names asked, lower case with the final dot, in the order read.
    pub names: Arc<Mutex<Vec<String>>>,
    pub accepts: Arc<AtomicUsize>,
    /// Connections the client ended with a close_notify, and without one.
    pub client_close_notify: Arc<AtomicUsize>,
    pub client_cut: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DotServer {
    pub fn start(dir: &TempDir, opts: DotOpts) -> DotServer {
        let cfg = server_config(dir, opts.tls12_only);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let accepts = Arc::new(AtomicUsize::new(0));
        let client_close_notify = Arc::new(AtomicUsize::new(0));
        let client_cut = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = (
            Arc::clone(&names),
            Arc::clone(&accepts),
            Arc::clone(&client_close_notify),
            Arc::clone(&client_cut),
            Arc::clone(&stop),
        );
        let thread = std::thread::spawn(move || {
            let (names, accepts, notify, cut, stop) = shared;
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        accepts.fetch_add(1, Ordering::SeqCst);
                        let (cfg, names) = (Arc::clone(&cfg), Arc::clone(&names));
                        let (notify, cut) = (Arc::clone(&notify), Arc::clone(&cut));
                        std::thread::spawn(move || {
                            match serve_conn(sock, cfg, opts, &names) {
                                Ended::CloseNotify => notify.fetch_add(1, Ordering::SeqCst),
                                Ended::Cut => cut.fetch_add(1, Ordering::SeqCst),
                                Ended::ByUs => 0,
                            };
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DotServer {
            addr,
            names,
            accepts,
            client_close_notify,
            client_cut,
            stop,
            thread: Some(thread),
        }
    }

    pub fn asked(&self, name: &str) -> usize {
        let name = format!("{name}.");
        self.names
            .lock()
            .unwrap()
            .iter()
            .filter(|n| **n == name)
            .count()
    }
}

impl Drop for DotServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Ended {
    CloseNotify,
    Cut,
    ByUs,
}

/// Reads exactly `buf.len()` octets: `Err(Ended)` says how the client ended first.
fn read_all(s: &mut impl Read, buf: &mut [u8]) -> Result<(), Ended> {
    let mut at = 0;
    while at < buf.len() {
        match s.read(&mut buf[at..]) {
            // rustls reads 0 only after the peer's close_notify.
            Ok(0) => return Err(Ended::CloseNotify),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Ended::Cut),
        }
    }
    Ok(())
}

fn serve_conn(
    sock: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    opts: DotOpts,
    names: &Mutex<Vec<String>>,
) -> Ended {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let _ = sock.set_nodelay(true);
    let conn = rustls::ServerConnection::new(cfg).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    let mut answered = 0;
    loop {
        let mut len = [0u8; 2];
        if let Err(end) = read_all(&mut s, &mut len) {
            return end;
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if let Err(end) = read_all(&mut s, &mut q) {
            return end;
        }
        let name = parse_message(&q).unwrap().questions[0]
            .qname
            .to_lowercase_string();
        names.lock().unwrap().push(name.clone());
        if name.starts_with("slow") {
            std::thread::sleep(Duration::from_secs(1));
        }
        let a = super::answer(&q, &super::a_records(&q, 1));
        let mut framed = (a.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&a);
        answered += 1;
        let last = opts.close_after == Some(answered);
        // The answer and, if last, the close_notify go out in one write.
        s.conn.writer().write_all(&framed).unwrap();
        if last {
            s.conn.send_close_notify();
        }
        while s.conn.wants_write() {
            if s.conn.write_tls(&mut s.sock).is_err() {
                return Ended::Cut;
            }
        }
        if last {
            return Ended::ByUs;
        }
    }
}
