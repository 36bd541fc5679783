//! C-STORE SCP: streams the data set of each C-STORE-RQ to a temp file in the cache as its
//! fragments arrive, makes it durable, and only then answers. A failure gets the PS3.4 status
//! for its cause (A700 out of resources, A900 data set does not match, C000 cannot
//! understand) with an Error Comment; a broken connection leaves no file behind.

use tracing::{debug, warn};

use std::sync::Arc;

use super::command::{tag, Command, Status};
use super::connection::{DimseAssociation, DimseConnection, DimseError};
use super::scp::{respond, ScpContext, StoreEvent};
use crate::metrics::Metrics;
use crate::store::{FileMeta, Store, StoreError, StoredInstance};
use crate::types::Uid;

/// Receive one instance and answer its C-STORE-RQ (inbound association from a PACS).
/// Returns the Study Instance UID of a stored instance, `None` when it was refused.
pub async fn handle_c_store<A>(
    conn: &mut DimseConnection<A>,
    ctx: &ScpContext,
    pc_id: u8,
    request: &Command,
    calling_ae: &str,
) -> Result<Option<String>, DimseError>
where
    A: DimseAssociation,
{
    let announce = |instance: &StoredInstance| {
        let _ = ctx.events.send(StoreEvent {
            instance: instance.clone(),
            calling_ae: calling_ae.to_string(),
            move_originator_ae: request.get_str(tag::MOVE_ORIGINATOR_AE_TITLE),
            move_originator_message_id: request.get_u16(tag::MOVE_ORIGINATOR_MESSAGE_ID),
        });
    };
    let stored = store_and_answer(conn, &ctx.store, pc_id, request, calling_ae, announce).await?;
    match stored {
        Some(instance) => {
            Metrics::inc(&ctx.metrics.cstore_received_total);
            Metrics::add(&ctx.metrics.cstore_bytes_total, instance.file_size);
            Ok(Some(instance.study_uid.to_string()))
        }
        None => {
            Metrics::inc(&ctx.metrics.cstore_failed_total);
            Ok(None)
        }
    }
}

/// Receive the data set of a C-STORE-RQ into the store and send the C-STORE-RSP: success
/// only once the instance is durable, otherwise the status for the cause. Used by the SCP and
/// by C-GET (sub-operations arrive on our own association). `announce` runs once the
/// instance is durable and before the response, so a retrieve that waits for its final
/// C-MOVE-RSP has always heard of every instance by then. `None` when refused.
pub async fn store_and_answer<A>(
    conn: &mut DimseConnection<A>,
    store: &Arc<Store>,
    pc_id: u8,
    request: &Command,
    calling_ae: &str,
    announce: impl FnOnce(&StoredInstance),
) -> Result<Option<StoredInstance>, DimseError>
where
    A: DimseAssociation,
{
    let Some(ts) = negotiated_transfer_syntax(conn, pc_id) else {
        conn.drain_data_set().await?;
        let comment = "unknown presentation context";
        respond(
            conn,
            pc_id,
            request,
            Status::CANNOT_UNDERSTAND,
            Some(comment),
        )
        .await?;
        return Ok(None);
    };
    let sop_class = request.affected_sop_class_uid().unwrap_or_default();
    let sop_instance = match request
        .affected_sop_instance_uid()
        .map(|u| Uid::parse("Affected SOP Instance UID", &u))
    {
        Some(Ok(uid)) => uid,
        _ => {
            conn.drain_data_set().await?;
            let comment = "missing or invalid Affected SOP Instance UID";
            respond(
                conn,
                pc_id,
                request,
                Status::CANNOT_UNDERSTAND,
                Some(comment),
            )
            .await?;
            return Ok(None);
        }
    };
    let meta = FileMeta {
        sop_class_uid: sop_class,
        sop_instance_uid: sop_instance.to_string(),
        transfer_syntax_uid: ts,
        source_ae_title: calling_ae.to_string(),
    };
    match receive_into_store(conn, store, meta).await? {
        Ok(stored) => {
            debug!(study = %stored.study_uid, sop = %stored.sop_instance_uid, "instance stored");
            announce(&stored);
            respond(conn, pc_id, request, Status::SUCCESS, None).await?;
            Ok(Some(stored))
        }
        Err(e) => {
            warn!(error = %e, sop = %sop_instance, "C-STORE refused");
            respond(conn, pc_id, request, status_for(&e), Some(&e.to_string())).await?;
            Ok(None)
        }
    }
}

/// Stream the data set into a pending instance. The outer `Result` is the connection (a
/// broken one aborts the association); the inner one is the store's verdict.
async fn receive_into_store<A>(
    conn: &mut DimseConnection<A>,
    store: &Arc<Store>,
    meta: FileMeta,
) -> Result<Result<StoredInstance, StoreError>, DimseError>
where
    A: DimseAssociation,
{
    let mut pending = match store.begin(meta).await {
        Ok(p) => p,
        Err(e) => {
            conn.drain_data_set().await?;
            return Ok(Err(e));
        }
    };
    let mut write_error = None;
    loop {
        // a connection error here drops `pending`, which removes the temp file
        let fragment = conn.next_fragment().await?;
        if write_error.is_none() {
            if let Err(e) = pending.write(&fragment.data).await {
                write_error = Some(e);
            }
        }
        if fragment.is_last {
            break;
        }
    }
    if let Some(e) = write_error {
        return Ok(Err(e));
    }
    Ok(pending.commit().await)
}

fn negotiated_transfer_syntax<A>(conn: &DimseConnection<A>, pc_id: u8) -> Option<String>
where
    A: DimseAssociation,
{
    conn.association()
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == pc_id)
        .map(|pc| pc.transfer_syntax.trim_end_matches(['\0', ' ']).to_string())
}

/// PS3.4 Table B.2-1 statuses for each failure cause.
fn status_for(e: &StoreError) -> Status {
    match e {
        StoreError::Invalid(_) => Status::CANNOT_UNDERSTAND,
        StoreError::Mismatch(_) => Status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        StoreError::Io { .. } | StoreError::Index(_) | StoreError::Task(_) => {
            Status::OUT_OF_RESOURCES
        }
    }
}
