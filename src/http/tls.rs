//! TLS for the node's server (rustls): the certificate chain and key from PEM files,
//! read again on SIGHUP (a renewed certificate without a restart; connections open keep
//! the one they started with).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsAcceptor;

/// Where the certificate chain and its key are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The acceptor new connections take, replaced whole on a reload.
pub struct Tls {
    files: TlsFiles,
    acceptor: Mutex<TlsAcceptor>,
}

impl Tls {
    pub fn load(files: TlsFiles) -> Result<Tls, String> {
        let acceptor = Mutex::new(acceptor(&files)?);
        Ok(Tls { files, acceptor })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the files again; on an error the one in use stays (and says why).
    pub fn reload(&self) {
        match acceptor(&self.files) {
            Ok(a) => {
                *self.acceptor.lock().unwrap_or_else(|p| p.into_inner()) = a;
                log::info!(
                    "http: TLS certificate {} loaded again",
                    self.files.cert.display()
                );
            }
            Err(e) => log::error!("http: TLS reload failed, keeping the certificate in use: {e}"),
        }
    }
}

fn pem_error(file: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", file.display())
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| pem_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(pem_error(&files.cert, "no CERTIFICATE in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_error(&files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} with {}: {e}", files.cert.display(), files.key.display()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
