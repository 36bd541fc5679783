//! Operational endpoints outside the DICOMweb root: `/healthz` (liveness plus cache counts),
//! `/metrics` (Prometheus text format), and the admin API under `/admin` (JSON, described in
//! `docs/admin-openapi.yaml`): prefetch jobs (`jobs`), referrals (`referrals`) and cache
//! management (`cache`).
//! `/admin` and `/metrics` need `auth.admin_role` (see `web::auth`); `/healthz` is open.

mod cache;
mod jobs;
mod referrals;

use axum::routing::{delete, get, post};
use axum::Router;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use super::{ApiError, AppState};

/// The `/admin` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/jobs", post(jobs::create).get(jobs::list))
        .route("/admin/jobs/referrals", post(jobs::referrals))
        .route("/admin/jobs/{id}", get(jobs::one).delete(jobs::cancel))
        .route(
            "/admin/referrals",
            get(referrals::list).post(referrals::create),
        )
        .route("/admin/referrals/{id}", delete(referrals::delete))
        .route("/admin/cache", get(cache::stats))
        .route("/admin/cache/studies/{study}", delete(cache::purge_study))
        .route(
            "/admin/cache/patients/{patient}",
            delete(cache::purge_patient),
        )
}

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
