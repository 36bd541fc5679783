//! `/admin/referrals`: list, add and withdraw the referrals that open a `referred_only`
//! facility's view to a patient (`auth::referral`). Prefetch jobs naming `referred_to` add
//! them too.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::auth::referral::{self, Draft, NewReferral, Patient};
use crate::web::{ApiError, AppState};

#[derive(Deserialize)]
pub struct ListQuery {
    facility: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let index = state.store.index().clone();
    let rows = tokio::task::spawn_blocking(move || {
        index.read(|c| referral::list(c, q.facility.as_deref()))
    })
    .await??;
    Ok(Json(rows).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<NewReferral>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) =
        body.map_err(|e| ApiError::BadRequest(format!("referral: {}", e.body_text())))?;
    let now = crate::clock::now();
    let draft = validate(&state, new, now)?;
    let index = state.store.index().clone();
    let r = tokio::task::spawn_blocking(move || referral::insert(&index, draft, now)).await??;
    tracing::info!(referral = r.id, facility = %r.facility, "patient referred");
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let index = state.store.index().clone();
    if tokio::task::spawn_blocking(move || referral::delete(&index, id)).await?? {
        tracing::info!(referral = id, "referral withdrawn");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("no referral {id}")))
    }
}

/// A requested referral, checked against the configuration (facility, upstream) and made
/// explicit (end time).
fn validate(state: &AppState, new: NewReferral, now: i64) -> Result<Draft, ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    let config = &state.config;
    let Some(rule) = config.facilities.iter().find(|f| f.name == new.facility) else {
        return bad(format!("no [[facility]] is named {:?}", new.facility));
    };
    let plain = |v: &str| !v.is_empty() && crate::jobs::model::is_plain_identifier(v);
    let issuer = new.issuer.unwrap_or_default().trim().to_string();
    let id = new.patient_id.trim().to_string();
    if !plain(&id) || !(issuer.is_empty() || plain(&issuer)) {
        return bad(
            "patient_id and issuer must be plain identifiers (no wildcards, 1 to 64 characters)"
                .into(),
        );
    }
    let upstream = new.upstream.unwrap_or_default();
    if !(upstream.is_empty() || config.is_source(&upstream)) {
        return bad(format!(
            "{upstream:?} is neither an [[upstream]] name nor \"local\""
        ));
    }
    let until = match new.until.as_deref() {
        Some(t) => {
            crate::clock::parse_datetime(t, config.jobs.utc_offset).map_err(ApiError::BadRequest)?
        }
        None => now + rule.referral_validity.as_secs() as i64,
    };
    Ok(Draft {
        facility: rule.name.clone(),
        patient: Patient { id, issuer },
        upstream,
        until: Some(until),
        source: "admin".into(),
    })
}
