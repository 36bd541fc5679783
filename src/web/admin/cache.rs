//! `/admin/cache`: size, counts, hit ratio, pins and the oldest access; purge by study or
//! patient (pins included; refused with 409 while a response streams the study).

use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::metrics::Metrics;
use crate::store::{PurgeError, Removed};
use crate::web::search::checked_uid;
use crate::web::{ApiError, AppState};

impl From<PurgeError> for ApiError {
    fn from(e: PurgeError) -> Self {
        match e {
            PurgeError::Busy(_) => ApiError::Conflict(e.to_string()),
            PurgeError::Store(s) => ApiError::Internal(s.to_string()),
        }
    }
}

pub async fn stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let s = state
        .store
        .stats(state.config.store.max_size)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let m = &state.metrics;
    let hits = m.cache_hits_total.load(Ordering::Relaxed);
    let misses = m.cache_misses_total.load(Ordering::Relaxed);
    let ratio = if hits + misses == 0 {
        None
    } else {
        Some((hits as f64 / (hits + misses) as f64 * 1000.0).round() / 1000.0)
    };
    let offset = state.config.jobs.utc_offset;
    Ok(Json(json!({
        "size_bytes": s.size_bytes,
        "max_size_bytes": s.max_size_bytes,
        "used_percent": if s.max_size_bytes == 0 { 0.0 } else {
            (s.size_bytes as f64 * 1000.0 / s.max_size_bytes as f64).round() / 10.0
        },
        "studies": s.studies,
        "series": s.series,
        "instances": s.instances,
        "pinned_studies": s.pinned_studies,
        "pinned_bytes": s.pinned_bytes,
        "oldest_access": s.oldest_access_ms.map(|ms| crate::clock::format_datetime(ms / 1000, offset)),
        "hits": hits,
        "misses": misses,
        "hit_ratio": ratio,
        "evicted_studies": m.evicted_studies_total.load(Ordering::Relaxed),
        "evicted_bytes": m.evicted_bytes_total.load(Ordering::Relaxed),
    }))
    .into_response())
}

fn purged(state: &AppState, removed: Vec<Removed>) -> Response {
    for r in &removed {
        tracing::info!(study = %r.study_uid, instances = r.instances, "purged by an administrator");
        Metrics::inc(&state.metrics.purged_studies_total);
    }
    let bytes: u64 = removed.iter().map(|r| r.bytes).sum();
    Json(json!({ "removed": removed, "bytes": bytes })).into_response()
}

pub async fn purge_study(
    State(state): State<AppState>,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    let study = checked_uid("study", &study)?;
    let removed = state.store.purge_study(&study).await?;
    if removed.instances == 0 {
        return Err(ApiError::NotFound(format!(
            "study {study} is not in the cache"
        )));
    }
    Ok(purged(&state, vec![removed]))
}

#[derive(Deserialize)]
pub struct PatientQuery {
    issuer: Option<String>,
}

pub async fn purge_patient(
    State(state): State<AppState>,
    Path(patient): Path<String>,
    Query(q): Query<PatientQuery>,
) -> Result<Response, ApiError> {
    let removed = state
        .store
        .purge_patient(&patient, q.issuer.as_deref())
        .await?;
    if removed.is_empty() {
        return Err(ApiError::NotFound(
            "no study of that patient is in the cache".into(),
        ));
    }
    Ok(purged(&state, removed))
}
