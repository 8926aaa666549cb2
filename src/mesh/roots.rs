//! The certificate authorities this node trusts as a client (MQTTS brokers such as the
//! WIS2 global brokers, HTTPS download servers such as the WIS2 global caches):
//! Mozilla's roots built into the binary, and the system's bundle when there is one
//! (`SSL_CERT_FILE`, else Debian's `/etc/ssl/certs/ca-certificates.crt`), so that an
//! authority the operator added with update-ca-certificates is trusted too. Read once.

use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use ureq::tls::Certificate;

/// Debian's (and Raspberry Pi OS's) bundle, kept by update-ca-certificates.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The system's bundle: `SSL_CERT_FILE` when set (as OpenSSL reads it), else Debian's.
pub fn system_bundle() -> Option<PathBuf> {
    match std::env::var_os("SSL_CERT_FILE") {
        Some(f) if !f.is_empty() => Some(PathBuf::from(f)),
        _ => Some(PathBuf::from(SYSTEM_BUNDLE)).filter(|p| p.exists()),
    }
}

/// The certificates of the system's bundle (empty when there is none or it is unreadable,
/// with a warning naming it).
pub fn system_certs() -> &'static [Certificate<'static>] {
    static CERTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    CERTS.get_or_init(|| {
        let Some(path) = system_bundle() else {
            return Vec::new();
        };
        let pem = match std::fs::read(&path) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("{}: CA certificates not read: {e}", path.display());
                return Vec::new();
            }
        };
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            log::warn!("{}: no CA certificate in it", path.display());
        }
        certs
    })
}

/// Mozilla's roots and the system's, for rustls clients (MQTTS, HTTPS downloads).
pub fn root_store() -> Arc<rustls::RootCertStore> {
    static STORE: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let mut store = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let system = system_certs()
                .iter()
                .map(|c| CertificateDer::from(c.der().to_vec()));
            let (added, ignored) = store.add_parsable_certificates(system);
            log::debug!("CA roots: {added} from the system's bundle ({ignored} unusable)");
            Arc::new(store)
        })
        .clone()
}
