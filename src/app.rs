//! Wiring: opens the store, binds the HTTP and DIMSE listeners (port 0 picks a free port and
//! the bound address is logged), starts the prefetch scheduler and the eviction task, runs
//! them all under one shutdown signal, and joins them in order.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::dimse::access::CallerPolicy;
use crate::dimse::scp::{self, ScpContext, StoreEvent};
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::pull::Pull;
use crate::store::{Store, StoreError};
use crate::web::{self, AppState};

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the cache: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTPS: {0}")]
    Tls(#[from] web::tls::TlsError),
    #[error("DICOM TLS: {0}")]
    DimseTls(web::tls::TlsError),
    #[error("{0}")]
    UpstreamTls(#[from] crate::dimse::tls::UpstreamTlsError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot open the audit trail {path}: {source}")]
    Audit {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("authentication: {0}")]
    Auth(#[from] crate::auth::jwks::JwksError),
    #[error("{0}")]
    Syslog(#[from] crate::audit::syslog::SyslogError),
}

/// A running gateway.
pub struct Running {
    pub pull: Arc<Pull>,
    pub jobs: Arc<Jobs>,
    pub http_addr: SocketAddr,
    pub dimse_addr: SocketAddr,
    pub store: Arc<Store>,
    pub events: broadcast::Sender<StoreEvent>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<()>,
    dimse: JoinHandle<()>,
    dimse_tls: Option<JoinHandle<()>>,
    scheduler: Option<JoinHandle<()>>,
    evictor: JoinHandle<()>,
}

/// Open everything and start serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let store = Store::open(&config.store).await?;
    let metrics = Arc::new(Metrics::default());
    let (events, _) = broadcast::channel(1024);
    let (shutdown, shutdown_rx) = watch::channel(false);

    let http_listener = bind("http", config.http.listen).await?;
    let dimse_listener = bind("dimse", config.dimse.listen).await?;
    let http_addr = local_addr(&http_listener, config.http.listen);
    let dimse_addr = local_addr(&dimse_listener, config.dimse.listen);
    let dimse_tls = bind_dimse_tls(&config.dimse).await?;
    let dimse_tls_addr = dimse_tls
        .as_ref()
        .map(|(l, _)| local_addr(l, config.dimse.tls_listen.unwrap_or(config.dimse.listen)));

    let audit = start_audit(&config, &metrics).await?;
    let pull = Pull::new(&config, Arc::clone(&store), events.clone(), audit.clone())?;
    let jobs = Jobs::new(
        Arc::clone(&config),
        Arc::clone(&store),
        Arc::clone(&pull),
        Arc::clone(&metrics),
    );
    let auth = crate::auth::Authenticator::new(&config.auth)?;
    let audit_dimse = audit.clone();
    warn_if_open(&config.auth);
    let state = AppState {
        auth,
        audit,
        config: Arc::clone(&config),
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        pull: Arc::clone(&pull),
        jobs: Arc::clone(&jobs),
    };
    jobs.set_preparer(web::prepare::preparer(state.clone()));
    let scheduler = config.jobs.enabled.then(|| {
        tokio::spawn(crate::jobs::scheduler::run(
            Arc::clone(&jobs),
            shutdown_rx.clone(),
        ))
    });
    let evictor = tokio::spawn(crate::store::evict::run(
        Arc::clone(&store),
        Arc::clone(&metrics),
        config.store.max_size,
        config.store.evict_interval,
        shutdown_rx.clone(),
    ));
    let tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(web::tls::server_config(cert, key)?),
        _ => None,
    };
    let http = tokio::spawn(web::server::serve(
        http_listener,
        tls,
        web::app(state),
        web::server::HeaderLimits::of(&config.http),
        shutdown_rx.clone(),
    ));

    let ctx = Arc::new(ScpContext {
        config: config.dimse.clone(),
        callers: CallerPolicy::new(&config.dimse.allowed_callers).map_err(ConfigError::Invalid)?,
        store: Arc::clone(&store),
        metrics,
        events: events.clone(),
        audit: audit_dimse,
        slots: Arc::new(Semaphore::new(config.dimse.max_associations)),
    });
    warn_if_upstreams_not_allowed(&config);
    let dimse_tls = dimse_tls.map(|(listener, tls)| {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(scp::serve(listener, ctx, Some(tls), shutdown_rx.clone()))
    });
    let dimse = tokio::spawn(scp::serve(dimse_listener, ctx, None, shutdown_rx));

    tracing::info!(
        http = %http_addr,
        dicomweb = %format!("{}://{http_addr}{}", config.http.scheme(), config.http.base_path),
        dimse = %dimse_addr,
        dimse_tls = %dimse_tls_addr.map_or("off".to_string(), |a| a.to_string()),
        ae_title = %config.dimse.ae_title,
        upstreams = config.upstreams.len(),
        cache = %config.store.path.display(),
        "tsunagi ready"
    );
    Ok(Running {
        pull,
        jobs,
        http_addr,
        dimse_addr,
        store,
        events,
        shutdown,
        http,
        dimse,
        dimse_tls,
        scheduler,
        evictor,
    })
}

impl Running {
    /// Stop accepting, let running requests and associations finish, and join.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Some(s) = self.scheduler {
            let _ = s.await;
        }
        let _ = self.dimse.await;
        if let Some(t) = self.dimse_tls {
            let _ = t.await;
        }
        let _ = self.http.await;
        let _ = self.evictor.await;
        tracing::info!("tsunagi stopped");
    }
}

/// Run until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let running = start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The DICOM TLS listener and its configuration, when `dimse.tls_listen` is set.
async fn bind_dimse_tls(
    cfg: &crate::config::DimseConfig,
) -> Result<Option<(TcpListener, Arc<rustls::ServerConfig>)>, StartError> {
    let (Some(addr), Some(cert), Some(key)) = (cfg.tls_listen, &cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let tls = crate::dimse::tls::server_config(cert, key, cfg.tls_client_ca.as_deref())
        .map_err(StartError::DimseTls)?;
    Ok(Some((bind("dimse-tls", addr).await?, tls)))
}

/// With `dimse.allowed_callers` set, a PACS we C-MOVE from must be allowed to call back.
fn warn_if_upstreams_not_allowed(config: &Config) {
    let allowed = &config.dimse.allowed_callers;
    if allowed.is_empty() {
        return;
    }
    for up in &config.upstreams {
        let listed = allowed
            .iter()
            .any(|c| c.ae_title.trim() == up.ae_title.trim());
        if up.retrieve == crate::config::RetrieveMethod::CMove && !listed {
            tracing::warn!(
                upstream = %up.name,
                ae_title = %up.ae_title,
                "upstream retrieves by C-MOVE but its AE title is not in dimse.allowed_callers: \
                 its C-STOREs will be rejected unless it calls with another listed AE title"
            );
        }
    }
}

/// The audit trail (recording nothing when `audit.enabled = false`).
async fn start_audit(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<crate::audit::Auditor, StartError> {
    let cfg = &config.audit;
    if !cfg.enabled {
        return Ok(crate::audit::Auditor::off(Arc::clone(metrics)));
    }
    let path = cfg
        .path
        .clone()
        .unwrap_or_else(|| config.store.path.join("audit.jsonl"));
    let syslog = cfg
        .syslog
        .as_ref()
        .map(|s| crate::audit::syslog::SyslogSink::start(s, Arc::clone(metrics)))
        .transpose()?;
    crate::audit::Auditor::start(&path, cfg.queue, syslog, Arc::clone(metrics))
        .await
        .map_err(|source| StartError::Audit { path, source })
}

/// `auth.mode = "none"` must never go unnoticed.
fn warn_if_open(auth: &crate::auth::AuthConfig) {
    if auth.mode == crate::auth::AuthMode::None {
        tracing::warn!(
            "AUTHENTICATION IS OFF (auth.mode = \"none\"): anyone who can reach the HTTP port \
             may read every study and use the admin API. For local development only; \
             configure [auth] (see README) before real patient data."
        );
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local_addr(l: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    l.local_addr().unwrap_or(fallback)
}
