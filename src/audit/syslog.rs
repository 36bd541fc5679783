//! A copy of the audit trail for the hospital's log collector (SIEM): each record as an RFC 5424
//! message over TCP with octet-counting framing (RFC 6587), or over TLS (RFC 5425). Facility
//! authpriv (10); severity notice (5) for a success, warning (4) for a failure; APP-NAME
//! `tsunagi`; MSGID the DICOM event code (`110112` Query, ...); MSG the JSON record (UTF-8,
//! with its BOM). The JSON-lines file stays the record of truth: the collector is fed by its
//! own task through a bounded queue, so a slow or unreachable collector never holds up a request
//! or the file; it reconnects with a doubling delay, and what it had to drop is counted
//! (`audit_syslog_dropped_total`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::config::host_of;
use crate::metrics::Metrics;
use crate::web::tls::TlsError;

/// `[audit.syslog]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// host:port of the collector (6514 is syslog over TLS, 601 or 514 plain TCP).
    pub address: String,
    /// `"tls"` (default) or `"tcp"`.
    #[serde(default)]
    pub transport: Transport,
    /// CA bundle that issued the collector's certificate.
    #[serde(default = "default_ca")]
    pub ca: PathBuf,
    /// Our client certificate chain and key, when the collector requires one.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name the collector's certificate must carry (default: the host of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// HOSTNAME field (default: this machine's host name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Records waiting for the collector at most; more are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tls,
    Tcp,
}

fn default_ca() -> PathBuf {
    PathBuf::from(crate::config::SYSTEM_CA_BUNDLE)
}
fn default_queue() -> usize {
    4096
}

/// Why the syslog sink cannot start (a configuration error, found at start-up).
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("audit.syslog: {0}")]
    Tls(#[from] TlsError),
    #[error("audit.syslog: {0}")]
    Config(String),
}

/// One message for the collector: the DICOM event code and the JSON record.
pub struct Message {
    pub event_code: String,
    pub failed: bool,
    pub json: Vec<u8>,
}

/// The sending side: never waits.
#[derive(Clone)]
pub struct SyslogSink {
    tx: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
}

impl SyslogSink {
    /// Check the configuration and start the sender task.
    pub fn start(config: &SyslogConfig, metrics: Arc<Metrics>) -> Result<SyslogSink, SyslogError> {
        let connector = Connector::new(config)?;
        let hostname = config.hostname.clone().unwrap_or_else(local_hostname);
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        tokio::spawn(send_all(connector, hostname, rx, Arc::clone(&metrics)));
        Ok(SyslogSink { tx, metrics })
    }

    pub fn send(&self, message: Message) {
        if self.tx.try_send(message).is_err() {
            Metrics::inc(&self.metrics.audit_syslog_dropped_total);
        }
    }
}

/// How to reach the collector.
struct Connector {
    address: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Connector {
    fn new(config: &SyslogConfig) -> Result<Connector, SyslogError> {
        let tls = match config.transport {
            Transport::Tcp => None,
            Transport::Tls => Some((
                tokio_rustls::TlsConnector::from(client_config(config)?),
                server_name(config)?,
            )),
        };
        Ok(Connector {
            address: config.address.clone(),
            tls,
        })
    }

    async fn connect(&self) -> std::io::Result<Box<dyn AsyncWrite + Send + Unpin>> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let handshake = connector.connect(name.clone(), tcp);
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??;
                Ok(Box::new(tls))
            }
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn client_config(config: &SyslogConfig) -> Result<Arc<rustls::ClientConfig>, SyslogError> {
    let client = match (&config.cert, &config.key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => return Err(SyslogError::Config("cert and key go together".into())),
    };
    Ok(crate::web::tls::client_config(&config.ca, false, client)?)
}

fn server_name(config: &SyslogConfig) -> Result<ServerName<'static>, SyslogError> {
    let host = match &config.server_name {
        Some(name) => name.clone(),
        None => host_of(&config.address).to_string(),
    };
    ServerName::try_from(host.clone())
        .map_err(|_| SyslogError::Config(format!("{host:?} is not a host name or IP address")))
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".into())
}

async fn send_all(
    connector: Connector,
    hostname: String,
    mut rx: mpsc::Receiver<Message>,
    metrics: Arc<Metrics>,
) {
    let procid = std::process::id().to_string();
    let mut backoff = Duration::from_secs(1);
    let mut pending: Option<Vec<u8>> = None;
    'connect: loop {
        let mut stream = match connector.connect().await {
            Ok(s) => {
                tracing::info!(collector = %connector.address, "audit trail: syslog connected");
                backoff = Duration::from_secs(1);
                s
            }
            Err(e) => {
                tracing::warn!(collector = %connector.address, error = %e, retry_in = ?backoff,
                    "audit trail: cannot reach the syslog collector");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if rx.is_closed() && rx.is_empty() {
                    return;
                }
                continue;
            }
        };
        loop {
            let frame = match pending.take() {
                Some(f) => f,
                None => match rx.recv().await {
                    Some(m) => frame(&format(&m, &hostname, &procid)),
                    None => {
                        let _ = stream.shutdown().await;
                        return;
                    }
                },
            };
            let write = async {
                stream.write_all(&frame).await?;
                stream.flush().await
            };
            match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => Metrics::inc(&metrics.audit_syslog_sent_total),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "audit trail: syslog connection lost");
                    pending = Some(frame);
                    continue 'connect;
                }
                Err(_) => {
                    tracing::warn!("audit trail: the syslog collector stopped reading");
                    pending = Some(frame);
                    continue 'connect;
                }
            }
        }
    }
}

/// PRI for facility authpriv (10): severity notice (5), or warning (4) for a failure.
fn pri(failed: bool) -> u8 {
    10 * 8 + if failed { 4 } else { 5 }
}

/// The RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG`.
fn format(m: &Message, hostname: &str, procid: &str) -> Vec<u8> {
    let now = crate::clock::now_ms();
    let stamp = format!(
        "{}.{:03}Z",
        crate::clock::format_datetime(now / 1000, 0).trim_end_matches('Z'),
        now.rem_euclid(1000)
    );
    let mut out = format!(
        "<{}>1 {stamp} {hostname} tsunagi {procid} {} - \u{FEFF}",
        pri(m.failed),
        m.event_code
    )
    .into_bytes();
    out.extend_from_slice(&m.json);
    out
}

/// RFC 6587 / 5425 octet counting: `MSG-LEN SP SYSLOG-MSG`.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message);
    out
}

/// Configuration check for `Config::validate` (files are read at start-up).
pub fn check(config: &SyslogConfig) -> Result<(), String> {
    if config.address.rsplit_once(':').is_none() {
        return Err(format!(
            "audit.syslog.address {:?} needs host:port",
            config.address
        ));
    }
    if config.cert.is_some() != config.key.is_some() {
        return Err("audit.syslog: cert and key go together".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_rfc5424_and_octet_counted() {
        let m = Message {
            event_code: "110112".into(),
            failed: false,
            json: br#"{"a":"\u5c71"}"#.to_vec(),
        };
        let text = format(&m, "gw1", "42");
        let s = String::from_utf8(text.clone()).unwrap();
        assert!(s.starts_with("<85>1 20"), "{s}");
        let fields: Vec<&str> = s.splitn(8, ' ').collect();
        assert_eq!(fields[1].len(), "2026-11-24T07:10:00.123Z".len(), "{s}");
        assert!(fields[1].ends_with('Z') && fields[1].contains('.'), "{s}");
        assert_eq!(&fields[2..7], &["gw1", "tsunagi", "42", "110112", "-"]);
        assert!(fields[7].starts_with('\u{FEFF}'));
        let framed = frame(&text);
        assert!(framed.starts_with(format!("{} <85>", text.len()).as_bytes()));
        assert_eq!(pri(true), 84);
        assert_eq!(host_of("[::1]:6514"), "::1");
        assert_eq!(host_of("siem.example.jp:6514"), "siem.example.jp");
    }
}
