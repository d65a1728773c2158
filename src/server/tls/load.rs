//! Reading the TLS settings' files into rustls configs: the trust anchors and the
//! client side for `tls://` upstreams, the certificate chain, key and server side for
//! `--listen-tls`. Every error names the flag and file it came from.
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::StoresServerSessions;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(super) fn invalid(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
}

/// The trust anchors for `tls://` upstreams: the PEM certificates of `ca` only, or
/// else the system's store.
pub(super) fn load_roots(ca: Option<&Path>) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = match ca {
        Some(path) => {
            let what = format!("--tls-ca {}", path.display());
            CertificateDer::pem_file_iter(path)
                .map_err(|e| invalid(&what, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(&what, e))?
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                log::warn!("system root certificates: {e}");
            }
            found.certs
        }
    };
    Ok(certs)
}

/// The client side, shared by every upstream connection (its session cache makes
/// reconnections resume: TLS 1.3 tickets, TLS 1.2 session IDs), trusting `roots`.
pub(super) fn client_config(
    roots: &[CertificateDer<'static>],
    ca: Option<&Path>,
) -> io::Result<Arc<ClientConfig>> {
    let mut store = RootCertStore::empty();
    match ca {
        // The operator's own CA file: every certificate in it must be usable.
        Some(path) => {
            let what = format!("--tls-ca {}", path.display());
            for cert in roots {
                store.add(cert.clone()).map_err(|e| invalid(&what, e))?;
            }
        }
        None => {
            let (added, _) = store.add_parsable_certificates(roots.iter().cloned());
            log::debug!("{added} system root certificates for tls:// upstreams");
        }
    }
    if store.is_empty() {
        return Err(invalid(
            "tls:// upstreams",
            "no root certificate to check them against (install ca-certificates or give --tls-ca)",
        ));
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS", e))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The certificate chain in the PEM file `cert` (for `--listen-tls`), leaf first.
pub(super) fn load_chain(cert: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let what = format!("--tls-cert {}", cert.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(&what, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&what, e))?;
    if chain.is_empty() {
        return Err(invalid(&what, "no certificate in the file"));
    }
    Ok(chain)
}

/// The `--listen-tls` side, from the chain read from `cert` and the PEM file `key`.
/// `sessions`: a session store to keep (a reload that did not change the certificate:
/// clients resume across it).
pub(super) fn server_config(
    cert: &Path,
    chain: Vec<CertificateDer<'static>>,
    key: &Path,
    sessions: Option<Arc<dyn StoresServerSessions>>,
) -> io::Result<Arc<ServerConfig>> {
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(&format!("--tls-key {}", key.display()), e))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&format!("--tls-cert {}", cert.display()), e))?;
    if let Some(sessions) = sessions {
        cfg.session_storage = sessions;
    }
    Ok(Arc::new(cfg))
}

/// The name an upstream's certificate must carry (a DNS name, or an IP address).
pub fn server_name(name: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|e| invalid(name, e))
}
