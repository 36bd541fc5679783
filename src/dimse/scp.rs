//! The DIMSE listener: accepts associations (bounded in number, with timeouts), negotiates any
//! storage SOP class in any transfer syntax we can parse, and dispatches each command:
//! C-ECHO here, C-STORE to `store_scp`, anything else answered "unrecognized operation".
//! Every association ends with an explicit release or abort.

use std::sync::Arc;

use dicom_ul::association::server::AcceptAny;
use dicom_ul::ServerAssociationOptions;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch, Semaphore};
use tracing::{debug, info, warn, Instrument};

use super::command::{Command, CommandField, Status};
use super::connection::{DimseConnection, DimseError, Event};
use super::store_scp;
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
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub events: broadcast::Sender<StoreEvent>,
}

/// A-ASSOCIATE-RJ: rejected-transient, service-provider (presentation), local limit exceeded.
const REJECT_LIMIT_EXCEEDED: [u8; 10] = [0x03, 0x00, 0, 0, 0, 4, 0x00, 0x02, 0x03, 0x02];

/// Accept associations until `shutdown` turns true; then wait for running associations.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ScpContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(ctx.config.max_associations));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                        Metrics::inc(&ctx.metrics.associations_rejected_total);
                        warn!(%peer, "association rejected: limit of concurrent associations reached");
                        tasks.spawn(reject_busy(socket));
                        continue;
                    };
                    let ctx = Arc::clone(&ctx);
                    let span = tracing::info_span!("association", %peer, calling_ae = tracing::field::Empty);
                    tasks.spawn(async move {
                        handle_association(socket, ctx).await;
                        drop(permit);
                    }.instrument(span));
                }
                Err(e) => warn!(error = %e, "accept failed"),
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

async fn handle_association(socket: TcpStream, ctx: Arc<ScpContext>) {
    let cfg = &ctx.config;
    let options = ServerAssociationOptions::new()
        .ae_title(cfg.ae_title.clone())
        .promiscuous(true)
        .max_pdu_length(cfg.max_pdu_length)
        .read_timeout(cfg.timeout)
        .write_timeout(cfg.timeout);
    let established = if cfg.accept_any_called_ae {
        options
            .ae_access_control(AcceptAny)
            .establish_async(socket)
            .await
    } else {
        options
            .accept_called_ae_title()
            .establish_async(socket)
            .await
    };
    let assoc = match established {
        Ok(a) => a,
        Err(e) => {
            Metrics::inc(&ctx.metrics.associations_rejected_total);
            warn!(error = %e, "association not established");
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
    match serve_commands(&mut conn, &ctx, &calling_ae).await {
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
) -> Result<(), DimseError>
where
    A: dicom_ul::association::AsyncAssociation<TcpStream> + Send,
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
                store_scp::handle_c_store(conn, ctx, pc_id, &command, calling_ae).await?;
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
    A: dicom_ul::association::AsyncAssociation<TcpStream> + Send,
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
