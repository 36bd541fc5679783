//! Operational endpoints outside the DICOMweb root: `/healthz` (liveness plus cache counts)
//! and `/metrics` (Prometheus text format).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use super::{ApiError, AppState};

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let index = state.store.index().clone();
    let (studies, series, instances) =
        tokio::task::spawn_blocking(move || index.counts()).await??;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "studies": studies,
        "series": series,
        "instances": instances,
    })))
}
