//! DICOM TLS (PS3.15 B.1, the BCP 195 profiles DCMTK and PACS use) for the second DIMSE
//! listener: rustls with the configured PEM chain and key, TLS 1.2 and 1.3, no ALPN; with
//! `dimse.tls_client_ca`, callers must present a certificate issued by one of those CAs
//! (mutual TLS), otherwise any client may connect and the AE title check decides.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::web::tls::{load_chain, load_key, TlsError};

/// The server configuration of the DICOM TLS listener.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = (load_chain(cert)?, load_key(key)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let config = match client_ca {
        None => builder.with_no_client_auth().with_single_cert(chain, key)?,
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in load_chain(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::ClientCa(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}
