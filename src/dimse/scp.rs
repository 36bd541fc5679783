//! The DIMSE listener: accepts associations (bounded in number, with timeouts), negotiates any
//! storage SOP class in any transfer syntax we can parse, and dispatches each command:
//! C-ECHO here, C-STORE to `store_scp`, anything else answered "unrecognized operation".
//! Callers are checked against `dimse.allowed_callers` (see `access`) while negotiating; the
//! same code serves the plain listener and the DICOM TLS one (`dimse.tls_listen`), which share
//! the `max_associations` slots. Every association ends with an explicit release or abort.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_ul::ServerAssociationOptions;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::time::timeout;
use tracing::{debug, info, warn, Instrument};

use super::access::{CallerCheck, CallerPolicy, Refusal};
use super::audit::{self, ImportTally};
use super::command::{Command, CommandField, Status};
use super::connection::{DimseAssociation, DimseConnection, DimseError, Event};
use super::store_scp;
use crate::audit::Auditor;
use crate::config::DimseConfig;
use crate::metrics::Metrics;
use crate::store::{Store, StoredInstance};

/// An instance that became durable in the cache, announced to whoever waits for it
/// (e.g. a retrieve that asked a PACS to C-MOVE it to us).
#[derive(Debug, Clone)]
pub struct StoreEvent {
    pub instance: StoredInstance,
    pub calling_ae: String,
    pub move_originator_ae: Option<String>,
    pub move_originator_message_id: Option<u16>,
}

/// What the SCP needs from the rest of the gateway.
pub struct ScpContext {
    pub config: DimseConfig,
    /// `dimse.allowed_callers`, parsed.
    pub callers: CallerPolicy,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub events: broadcast::Sender<StoreEvent>,
    pub audit: Auditor,
    /// `dimse.max_associations`, shared by the plain and the TLS listener.
    pub slots: Arc<Semaphore>,
}

/// A-ASSOCIATE-RJ: rejected-transient, service-provider (presentation), local limit exceeded.
const REJECT_LIMIT_EXCEEDED: [u8; 10] = [0x03, 0x00, 0, 0, 0, 4, 0x00, 0x02, 0x03, 0x02];

/// Accept associations on `listener` (over TLS when `tls` is set) until `shutdown` turns
/// true; then wait for running associations.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ScpContext>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let Ok(permit) = Arc::clone(&ctx.slots).try_acquire_owned() else {
                        Metrics::inc(&ctx.metrics.associations_rejected_total);
                        warn!(%peer, "association rejected: limit of concurrent associations reached");
                        if tls.is_none() {
                            tasks.spawn(reject_busy(socket));
                        }
                        continue;
                    };
                    let ctx = Arc::clone(&ctx);
                    let tls = tls.clone();
                    let span = tracing::info_span!("association", %peer, tls = tls.is_some(), calling_ae = tracing::field::Empty);
                    tasks.spawn(async move {
                        handle_connection(socket, peer.ip(), ctx, tls).await;
                        drop(permit);
                    }.instrument(span));
                }
                Err(e) => {
                    // out of file descriptors and the like: back off, never spin
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

async fn reject_busy(mut socket: TcpStream) {
    let _ = socket.write_all(&REJECT_LIMIT_EXCEEDED).await;
    let _ = socket.shutdown().await;
}

/// Why an association was not established.
#[derive(Debug, thiserror::Error)]
enum EstablishError {
    #[error("{0}")]
    Ul(#[from] dicom_ul::association::Error),
    #[error("negotiation (TLS handshake included) took longer than {0:?}")]
    Timeout(Duration),
}

/// Negotiate (TLS first when configured), checking the caller, then serve the association.
async fn handle_connection(
    socket: TcpStream,
    peer: IpAddr,
    ctx: Arc<ScpContext>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let cfg = &ctx.config;
    let refusal = Mutex::new(None);
    let check = CallerCheck {
        policy: &ctx.callers,
        peer,
        accept_any_called_ae: cfg.accept_any_called_ae,
        refusal: &refusal,
    };
    let options = ServerAssociationOptions::new()
        .ae_title(cfg.ae_title.clone())
        .promiscuous(true)
        .max_pdu_length(cfg.max_pdu_length)
        .read_timeout(cfg.timeout)
        .write_timeout(cfg.timeout)
        .ae_access_control(check);
    // dicom-ul's own timeout does not cover the TLS handshake: bound the whole negotiation.
    let limit = cfg.timeout;
    match tls {
        None => {
            let r = bounded(limit, options.establish_async(socket)).await;
            let refused = take(&refusal);
            run_association(r, refused, peer, &ctx).await;
        }
        Some(tls) => {
            let options = options.tls_config(tls);
            let r = bounded(limit, options.establish_tls_async(socket)).await;
            let refused = take(&refusal);
            run_association(r, refused, peer, &ctx).await;
        }
    }
}

async fn bounded<T>(
    limit: Duration,
    establish: impl std::future::Future<Output = Result<T, dicom_ul::association::Error>>,
) -> Result<T, EstablishError> {
    match timeout(limit, establish).await {
        Ok(r) => r.map_err(EstablishError::from),
        Err(_) => Err(EstablishError::Timeout(limit)),
    }
}

fn take(refusal: &Mutex<Option<Refusal>>) -> Option<Refusal> {
    refusal.lock().ok().and_then(|mut r| r.take())
}

/// Count, log and audit a refused association, or serve an established one.
async fn run_association<A: DimseAssociation>(
    established: Result<A, EstablishError>,
    refused: Option<Refusal>,
    peer: IpAddr,
    ctx: &ScpContext,
) {
    let assoc = match established {
        Ok(a) => a,
        Err(e) => {
            Metrics::inc(&ctx.metrics.associations_rejected_total);
            match refused {
                Some(refusal) => {
                    warn!(reason = %refusal, "association rejected");
                    if let Some(record) = audit::refused(&refusal, peer) {
                        ctx.audit.record(record);
                    }
                }
                None => warn!(error = %e, "association not established"),
            }
            return;
        }
    };
    let calling_ae = dicom_ul::association::Association::peer_ae_title(&assoc)
        .trim()
        .to_string();
    tracing::Span::current().record("calling_ae", calling_ae.as_str());
    Metrics::inc(&ctx.metrics.associations_accepted_total);
    debug!(
        contexts = assoc.presentation_contexts().len(),
        "association established"
    );
    let mut conn = DimseConnection::new(assoc);
    let mut imports = ImportTally::default();
    let served = serve_commands(&mut conn, ctx, &calling_ae, &mut imports).await;
    if let Some(record) = imports.record(&calling_ae, peer) {
        ctx.audit.record(record);
    }
    match served {
        Ok(()) => debug!("association released by peer"),
        Err(e) => {
            warn!(error = %e, "association ended abnormally; aborting");
            let _ = conn.abort().await;
        }
    }
}

/// Serve commands until the peer releases (Ok) or something breaks (Err).
async fn serve_commands<A>(
    conn: &mut DimseConnection<A>,
    ctx: &ScpContext,
    calling_ae: &str,
    imports: &mut ImportTally,
) -> Result<(), DimseError>
where
    A: DimseAssociation,
{
    loop {
        let (pc_id, command) = match conn.next_event().await? {
            Event::Released => return Ok(()),
            Event::Command { pc_id, command } => (pc_id, command),
        };
        match command.field() {
            Some(CommandField::CEchoRq) => {
                Metrics::inc(&ctx.metrics.cecho_total);
                respond(conn, pc_id, &command, Status::SUCCESS, None).await?;
            }
            Some(CommandField::CStoreRq) => {
                match store_scp::handle_c_store(conn, ctx, pc_id, &command, calling_ae).await? {
                    Some(study_uid) => imports.stored(&study_uid),
                    None => imports.refused(),
                }
            }
            Some(CommandField::CCancelRq) => {}
            other => {
                info!(command = ?other, "unsupported DIMSE command");
                if command.has_data_set() {
                    conn.drain_data_set().await?;
                }
                respond(
                    conn,
                    pc_id,
                    &command,
                    Status::UNRECOGNIZED_OPERATION,
                    Some("Tsunagi accepts C-ECHO and C-STORE on this port"),
                )
                .await?;
            }
        }
    }
}

/// Send the response to `request` with a status and an optional Error Comment.
pub async fn respond<A>(
    conn: &mut DimseConnection<A>,
    pc_id: u8,
    request: &Command,
    status: Status,
    error_comment: Option<&str>,
) -> Result<(), DimseError>
where
    A: DimseAssociation,
{
    let Some(mut rsp) = Command::response_to(request, status) else {
        return Ok(());
    };
    if let Some(text) = error_comment {
        // Error Comment is LO: at most 64 characters
        let text: String = text.chars().filter(|c| *c != '\\').take(64).collect();
        rsp.set_text(super::command::tag::ERROR_COMMENT, &text);
    }
    conn.send_command(pc_id, &rsp).await
}
