//! The certificate authorities this node trusts as a client (MQTTS brokers such as the
//! WIS2 global brokers, HTTPS download servers such as the WIS2 global caches):
//! Mozilla's roots built into the binary, and the system's bundle when there is one
//! (`SSL_CERT_FILE`, else Debian's `/etc/ssl/certs/ca-certificates.crt`), so that an
//! authority the operator added with update-ca-certificates is trusted too. Read once.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

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
fn system_certs() -> Vec<CertificateDer<'static>> {
    let Some(path) = system_bundle() else {
        return Vec::new();
    };
    match certificates(&path) {
        Ok(certs) => certs,
        Err(e) => {
            log::warn!("CA certificates not read: {e}");
            Vec::new()
        }
    }
}

/// The certificates of a PEM file; an error naming the file when it cannot be read
/// or holds none.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let pem = std::fs::read(path).map_err(|e| named(&e))?;
    // other items of the file (a key beside them) are skipped; a broken one ends it
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| named(&e))?;
    if certs.is_empty() {
        return Err(named(&"no CERTIFICATE in it"));
    }
    Ok(certs)
}

/// A store of the authorities of a PEM file only (`shove`'s `CA_FILE`: a node with its
/// own or a private CA's certificate).
pub fn store_of(path: &Path) -> Result<Arc<rustls::RootCertStore>, String> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certificates(path)?);
    if added == 0 {
        return Err(format!(
            "{}: no usable CA certificate in it",
            path.display()
        ));
    }
    Ok(Arc::new(store))
}

/// Mozilla's roots and the system's, for rustls clients (MQTTS, HTTPS downloads).
pub fn root_store() -> Arc<rustls::RootCertStore> {
    static STORE: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let mut store = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let (added, ignored) = store.add_parsable_certificates(system_certs());
            log::debug!("CA roots: {added} from the system's bundle ({ignored} unusable)");
            Arc::new(store)
        })
        .clone()
}

/// The TLS client configuration of MQTTS, downloads and `shove`: Mozilla's roots and
/// the system's bundle, no client certificate. Built once.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| client_config_trusting(root_store()))
        .clone()
}

/// A TLS client configuration trusting the authorities of `roots` only.
pub fn client_config_trusting(roots: Arc<rustls::RootCertStore>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}
