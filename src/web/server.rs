//! The DICOMweb listener: accepts connections (TLS first when `http.tls_cert` is set, with a
//! handshake timeout), serves each with hyper's auto builder (HTTP/1.1, or HTTP/2 as h2c or
//! by ALPN) under the configured header limits (`http.max_headers`, `http.max_header_bytes`)
//! and head timeout (`http.header_read_timeout`: a client that trickles its request head is
//! cut off), sets TCP_NODELAY, hands the peer address to handlers as `ConnectInfo`, and drains
//! running requests at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::HttpConfig;

type Request = axum::http::Request<hyper::body::Incoming>;

/// A client that opens TCP and never finishes the TLS handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Running requests get this long to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's smallest HTTP/1 read buffer.
const MIN_HTTP1_BUFFER: usize = 8192;

/// Limits on what a client may send before a handler runs.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
}

impl HeaderLimits {
    pub fn of(config: &HttpConfig) -> HeaderLimits {
        HeaderLimits {
            max_headers: config.max_headers,
            max_header_bytes: usize::try_from(config.max_header_bytes).unwrap_or(usize::MAX),
            header_read_timeout: config.header_read_timeout,
        }
    }

    /// hyper's connection builder with these limits. HTTP/1.1: the request head must fit the
    /// read buffer (431 beyond it, or beyond `max_headers`); HTTP/2: the header list size we
    /// announce in SETTINGS.
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_headers(self.max_headers)
            .max_buf_size(self.max_header_bytes.max(MIN_HTTP1_BUFFER));
        b.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX));
        b
    }
}

/// Serve `app` on `listener` (over TLS when `tls` is given) until `shutdown` turns true,
/// then drain.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: HeaderLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(limits.builder());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // out of file descriptors and the like: back off, never spin
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Small writes (a part header, the closing delimiter) must not wait for the client's
        // delayed ACK: without TCP_NODELAY a one-frame response costs ~40 ms more.
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let (app, acceptor, builder) = (app.clone(), acceptor.clone(), Arc::clone(&builder));
        tokio::spawn(async move {
            let service = TowerToHyperService::new(with_peer(app, peer));
            match acceptor {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                Some(acceptor) => {
                    let Some(tls) = handshake(&acceptor, tcp).await else {
                        return;
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "HTTPS connection ended with an error");
                    }
                }
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after {DRAIN_TIMEOUT:?}; closing");
    }
}

/// The peer address for handlers and the audit trail, as `ConnectInfo`.
fn with_peer(
    app: Router,
    peer: SocketAddr,
) -> tower::util::MapRequest<Router, impl FnMut(Request) -> Request + Clone> {
    tower::util::MapRequest::new(app, move |mut req: Request| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    })
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}
