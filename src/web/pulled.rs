//! WADO-RS on a cold cache: start (or join) the retrieve from the PACS that holds the data
//! and answer as it arrives. A multipart retrieve streams each instance the moment it is
//! durable; a single instance (frames, bulk data, instance metadata) is served as soon as it
//! lands; series and study metadata wait for the whole retrieve and say what is missing.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::multipart::{self, PartError, PartWriter};
use super::negotiate::MediaRange;
use super::{ApiError, AppState};
use crate::dimse::retrieve_scu::RetrieveTarget;
use crate::metrics::Metrics;
use crate::pull::retrieve::{wait_for_instance, wait_until_done, Finished};
use crate::pull::{Progress, RetrieveError};
use crate::store::{InstanceRecord, Selector};

/// Make sure one instance is in the cache, pulling it (or joining the retrieve that brings
/// it) when it is not.
pub async fn ensure_instance(state: &AppState, target: RetrieveTarget) -> Result<(), ApiError> {
    let sop = target.instance.clone().unwrap_or_default();
    Metrics::inc(&state.metrics.cache_misses_total);
    let rx = state.pull.retrieve(target);
    wait_for_instance(rx, &sop, state.pull.config.wait).await?;
    Ok(())
}

/// Retrieve a study or series from a PACS and wait for the end. Returns a warning when
/// some instances could not be retrieved (the caller answers 206 with it).
pub async fn ensure_complete(
    state: &AppState,
    target: RetrieveTarget,
) -> Result<Option<String>, ApiError> {
    Metrics::inc(&state.metrics.cache_misses_total);
    let rx = state.pull.retrieve(target);
    let progress = wait_until_done(rx, state.pull.config.wait).await?;
    match progress.done {
        Some(Finished::Complete) => Ok(None),
        Some(Finished::Partial(m)) => Ok(Some(m)),
        Some(Finished::Failed(e)) => Err(e.into()),
        None => Err(ApiError::Internal(
            "retrieve ended without an outcome".into(),
        )),
    }
}

/// A `Warning` header value (PS3.18 §8.4: 299 with the server name).
pub fn warning_value(message: &str) -> String {
    let clean: String = message
        .chars()
        .map(|c| if c == '"' || c.is_control() { '\'' } else { c })
        .collect();
    format!("299 tsunagi \"{clean}\"")
}

/// Stream a study or series from a PACS, part by part, as instances become durable.
pub async fn progressive_retrieve(
    state: AppState,
    target: RetrieveTarget,
    ranges: Vec<MediaRange>,
) -> Result<Response, ApiError> {
    Metrics::inc(&state.metrics.cache_misses_total);
    let mut rx = state.pull.retrieve(target.clone());
    wait_for_first(&mut rx, state.pull.config.wait).await?;
    let boundary = multipart::new_boundary();
    let content_type = multipart::content_type("application/dicom", None, &boundary);
    let (writer, body) = multipart::channel(boundary);
    tokio::spawn(stream_arrivals(state, writer, rx, target, ranges));
    let mut resp = (StatusCode::OK, body).into_response();
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// Until something has arrived (Ok) or the retrieve failed before anything did (Err).
async fn wait_for_first(
    rx: &mut watch::Receiver<Progress>,
    wait: std::time::Duration,
) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        {
            let p = rx.borrow();
            if !p.arrived.is_empty() {
                return Ok(());
            }
            match &p.done {
                Some(Finished::Failed(e)) => return Err(e.clone().into()),
                Some(Finished::Partial(m)) => {
                    return Err(ApiError::BadGateway(m.clone()));
                }
                Some(Finished::Complete) => {
                    return Err(ApiError::NotFound(
                        "the PACS has no matching instances".into(),
                    ))
                }
                None => {}
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(RetrieveError::Upstream("retrieve stopped".into()).into()),
            Err(_) => {
                return Err(ApiError::GatewayTimeout(
                    "the PACS sent nothing in time; the retrieve goes on in the background".into(),
                ))
            }
        }
    }
}

async fn stream_arrivals(
    state: AppState,
    mut w: PartWriter,
    mut rx: watch::Receiver<Progress>,
    target: RetrieveTarget,
    ranges: Vec<MediaRange>,
) {
    let _lease = state.store.lease(&target.study);
    let mut sent = 0usize;
    loop {
        let (new, done) = {
            let p = rx.borrow_and_update();
            (
                p.arrived[sent.min(p.arrived.len())..].to_vec(),
                p.done.clone(),
            )
        };
        for sop in new {
            sent += 1;
            match send_one(&state, &mut w, &target.study, &sop, &ranges).await {
                Ok(()) => {}
                Err(PartError::Closed) => return,
                Err(PartError::Io(e)) => {
                    w.fail(e).await;
                    return;
                }
            }
        }
        if let Some(done) = done {
            if rx.borrow().arrived.len() > sent {
                continue;
            }
            match done {
                Finished::Complete => {
                    let _ = w.finish().await;
                }
                Finished::Partial(m)
                | Finished::Failed(RetrieveError::Upstream(m))
                | Finished::Failed(RetrieveError::Timeout(m))
                | Finished::Failed(RetrieveError::NotFound(m)) => {
                    // the headers are gone: end the body without its closing delimiter so
                    // the client cannot mistake the response for a complete one
                    tracing::warn!(study = %target.study, reason = %m, "streamed retrieve incomplete");
                    w.fail(std::io::Error::other(m)).await;
                }
            }
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn send_one(
    state: &AppState,
    w: &mut PartWriter,
    study: &str,
    sop: &str,
    ranges: &[MediaRange],
) -> Result<(), PartError> {
    let record = instance_record(state, study, sop)
        .await
        .map_err(|e| PartError::Io(std::io::Error::other(e.to_string())))?;
    let Some(record) = record else {
        return Ok(());
    };
    let Some(planned) = super::wado::plan_instance(state, ranges, &record).await else {
        return Ok(());
    };
    super::wado::send_instance(state, w, &planned).await
}

async fn instance_record(
    state: &AppState,
    study: &str,
    sop: &str,
) -> Result<Option<InstanceRecord>, ApiError> {
    let index = Arc::clone(state.store.index());
    let (study, sop) = (study.to_string(), sop.to_string());
    let mut found = tokio::task::spawn_blocking(move || {
        index.instances(&Selector {
            study: &study,
            series: None,
            instance: Some(&sop),
        })
    })
    .await??;
    Ok(found.pop())
}
