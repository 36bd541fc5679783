//! HTTPS for the DICOMweb listener: rustls with the configured PEM certificate chain and key,
//! ALPN offering `h2` then `http/1.1` (so browsers and viewers get HTTP/2 over TLS), each
//! connection then served by `web::server` (hyper's auto builder, HTTP/1.1 or HTTP/2).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {message}")]
    Certificates { path: PathBuf, message: String },
    #[error("cannot read the private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("the client CA certificates cannot verify clients: {0}")]
    ClientCa(String),
    #[error("the CA certificates {path} cannot verify servers: {message}")]
    ServerCa { path: PathBuf, message: String },
}

/// The HTTPS configuration from PEM files (chain: leaf first; key: PKCS#8, PKCS#1 or SEC1),
/// offering HTTP/2 then HTTP/1.1 by ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = server_config_for(cert, key, None)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server TLS configuration (TLS 1.2/1.3, ring) from PEM files; with `client_ca`, clients
/// must present a certificate issued by one of those CAs (mutual TLS).
pub fn server_config_for(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    let (chain, key) = (load_chain(cert)?, load_key(key)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let config = match client_ca {
        None => builder.with_no_client_auth().with_single_cert(chain, key)?,
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_chain(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::ClientCa(format!("{}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)?
        }
    };
    Ok(config)
}

/// Certificates from a PEM file (at least one).
pub fn load_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Certificates {
            path: cert.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificates {
            path: cert.to_path_buf(),
            message: "no CERTIFICATE block in the file".into(),
        });
    }
    Ok(chain)
}

/// The first private key of a PEM file.
pub fn load_key(key: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        message: e.to_string(),
    })
}

/// A TLS client configuration (TLS 1.2/1.3, ring) trusting the CAs in `ca` (`strict`: every
/// certificate there must be usable, as for a CA named for one peer; otherwise unusable ones
/// are skipped, as a system bundle may hold some), with our certificate and key when given.
/// Shared by outbound DICOM TLS, the JWKS fetch and the syslog sink.
pub fn client_config(
    ca: &Path,
    strict: bool,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca, strict)?);
    let config = match client {
        Some((cert, key)) => builder.with_client_auth_cert(load_chain(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Trust anchors from a PEM file (see `client_config` for `strict`).
fn roots(path: &Path, strict: bool) -> Result<rustls::RootCertStore, TlsError> {
    let bad = |message: String| TlsError::ServerCa {
        path: path.to_path_buf(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = load_chain(path)?;
    if strict {
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    } else {
        roots.add_parsable_certificates(certs);
    }
    if roots.is_empty() {
        return Err(bad("no usable CA certificate in the file".into()));
    }
    Ok(roots)
}
