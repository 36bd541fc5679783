//! DICOM TLS (PS3.15 B.1, the BCP 195 profiles DCMTK and PACS use), rustls with the ring
//! provider, TLS 1.2 and 1.3, no ALPN, on both sides:
//!
//! - the second DIMSE listener: the configured PEM chain and key; with
//!   `dimse.tls_client_ca`, callers must present a certificate issued by one of those CAs
//!   (mutual TLS), otherwise any client may connect and the AE title check decides;
//! - associations to an upstream PACS with `tls = true`: its certificate is verified against
//!   `tls_ca` (else the system roots) for `tls_server_name` (else the host of its address, an
//!   IP address included), and with `tls_cert`/`tls_key` we present our own certificate.

use std::path::Path;
use std::sync::Arc;

use crate::config::{UpstreamConfig, SYSTEM_CA_BUNDLE};
use crate::web::tls::TlsError;

/// The server configuration of the DICOM TLS listener (no ALPN).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Ok(Arc::new(crate::web::tls::server_config_for(
        cert, key, client_ca,
    )?))
}

/// A TLS upstream's files could not be used (reported at start-up).
#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream:?}: DICOM TLS: {source}")]
pub struct UpstreamTlsError {
    pub upstream: String,
    pub source: TlsError,
}

/// The client configuration for an upstream with `tls = true`: its CAs (or the system
/// roots), and our certificate when it sets `tls_cert` and `tls_key`.
pub fn client_config(up: &UpstreamConfig) -> Result<Arc<rustls::ClientConfig>, UpstreamTlsError> {
    client_config_from(up).map_err(|source| UpstreamTlsError {
        upstream: up.name.clone(),
        source,
    })
}

fn client_config_from(up: &UpstreamConfig) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let (ca, strict) = match &up.tls_ca {
        Some(ca) => (ca.as_path(), true),
        None => (Path::new(SYSTEM_CA_BUNDLE), false),
    };
    let client = up.tls_cert.as_deref().zip(up.tls_key.as_deref());
    crate::web::tls::client_config(ca, strict, client)
}

/// Why an association over TLS failed in the TLS layer, in words, or None when TLS was not
/// the cause (e.g. the TCP connection was refused, or the PACS rejected the association).
pub fn tls_failure(e: &dicom_ul::association::Error) -> Option<String> {
    if let Some(cause) = rustls_cause(e) {
        return Some(explain(cause));
    }
    match e {
        dicom_ul::association::Error::TlsHandshake { .. } => Some(
            "the PACS closed the connection during the handshake (does it speak DICOM TLS on \
             this port? does it require a client certificate, tls_cert and tls_key?)"
                .into(),
        ),
        // dicom-ul 0.10 reports any failure to read the A-ASSOCIATE response this way, which
        // over TLS 1.3 is how a PACS refusing our client certificate shows: it checks the
        // certificate after our side of the handshake is done and closes with an alert.
        dicom_ul::association::Error::TlsNotSupported => Some(
            "the PACS ended the connection after the handshake without answering the \
             association request: it most likely refused our client certificate (tls_cert, \
             tls_key: none, or not from a CA it trusts)"
                .into(),
        ),
        _ => None,
    }
}

/// The rustls error somewhere in `e`'s chain (tokio-rustls wraps it in an `io::Error`, whose
/// `source()` skips it).
fn rustls_cause(e: &dicom_ul::association::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>());
        if inner.is_some() {
            return inner;
        }
        next = err.source();
    }
    None
}

/// A rustls error with what it usually means for a PACS.
fn explain(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    match e {
        E::InvalidCertificate(Cert::UnknownIssuer) => {
            "its certificate is not issued by a CA we trust (tls_ca, or the system roots)".into()
        }
        E::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            format!("{e} (tls_server_name names what it must be valid for)")
        }
        E::AlertReceived(
            Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::HandshakeFailure
            | Alert::AccessDenied,
        ) => format!(
            "the PACS refused the handshake ({e}): does it require a client certificate \
             (tls_cert, tls_key) issued by a CA it trusts?"
        ),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            format!("{e} (does the PACS speak DICOM TLS on this port?)")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(toml: &str) -> UpstreamConfig {
        let text = format!(
            "[[upstream]]\nname = \"hospital-a\"\nae_title = \"A\"\naddress = \"10.0.0.5:2762\"\n{toml}"
        );
        let cfg = crate::config::Config::from_toml_with_env(&text, "t", std::iter::empty());
        cfg.expect("valid").upstreams.remove(0)
    }

    #[test]
    fn missing_or_unusable_files_say_which_upstream_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let up = upstream(&format!("tls = true\ntls_ca = {:?}\n", missing));
        let err = client_config(&up).unwrap_err().to_string();
        assert!(
            err.contains("hospital-a") && err.contains("missing.pem"),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let up = upstream(&format!("tls = true\ntls_ca = {:?}\n", empty));
        let err = client_config(&up).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }

    #[test]
    fn a_ca_and_a_client_certificate_make_a_client_config() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).unwrap();
        let (ca_pem, cert_pem, key_pem) = (
            dir.path().join("ca.pem"),
            dir.path().join("c.pem"),
            dir.path().join("c.key"),
        );
        std::fs::write(&ca_pem, ca.cert.pem()).unwrap();
        std::fs::write(&cert_pem, ca.cert.pem()).unwrap();
        std::fs::write(&key_pem, ca.key_pair.serialize_pem()).unwrap();
        let up = upstream(&format!(
            "tls = true\ntls_ca = {ca_pem:?}\ntls_cert = {cert_pem:?}\ntls_key = {key_pem:?}\n"
        ));
        let config = client_config(&up).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn handshake_errors_are_explained() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = dicom_ul::association::Error::Connect {
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, unknown),
            backtrace: std::backtrace::Backtrace::disabled(),
        };
        let text = tls_failure(&wrapped).expect("a TLS failure");
        assert!(text.contains("not issued by a CA we trust"), "{text}");
        let refused = dicom_ul::association::Error::Connect {
            source: std::io::ErrorKind::ConnectionRefused.into(),
            backtrace: std::backtrace::Backtrace::disabled(),
        };
        assert_eq!(tls_failure(&refused), None);
    }
}
