//! `/admin/jobs`: create (JSON, or a referrals CSV), list, show and cancel prefetch jobs.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::jobs::{csv, JobError, JobSpec, JobState};
use crate::web::{ApiError, AppState};

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Invalid(m) => ApiError::BadRequest(m.to_string()),
            JobError::NotFound(_) => ApiError::NotFound(e.to_string()),
            JobError::Ended(_) => ApiError::Conflict(e.to_string()),
            JobError::Store(s) => ApiError::Internal(s.to_string()),
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    spec: Result<Json<JobSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(spec) = spec.map_err(|e| ApiError::BadRequest(format!("job: {}", e.body_text())))?;
    let job = state.jobs.create(spec).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

/// One job per line of a referrals CSV (see `jobs::csv`). Every line is checked before any
/// job is created, so a bad file creates nothing.
pub async fn referrals(State(state): State<AppState>, body: String) -> Result<Response, ApiError> {
    let names: Vec<String> = state
        .config
        .upstreams
        .iter()
        .map(|u| u.name.clone())
        .collect();
    let specs = csv::parse(&body, &names).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if specs.is_empty() {
        return Err(ApiError::BadRequest("the CSV has no referral lines".into()));
    }
    for (line, spec) in &specs {
        spec.clone()
            .validate(&state.config)
            .map_err(|e| ApiError::BadRequest(format!("line {line}: {e}")))?;
    }
    let mut created = Vec::with_capacity(specs.len());
    for (_, spec) in specs {
        created.push(state.jobs.create(spec).await?);
    }
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<JobState>,
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(state.jobs.list(q.state, limit).await?).into_response())
}

pub async fn one(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    Ok(Json(state.jobs.view(id).await?).into_response())
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    Ok(Json(state.jobs.cancel(id).await?).into_response())
}
