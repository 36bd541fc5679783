//! Facility scoping on the HTTP side (the rules are `auth::access`): QIDO rows of studies the
//! caller may not see are dropped, and every WADO-RS resource (studies, series, instances,
//! metadata, frames, bulk data, rendered, thumbnails) of such a study answers the same 404 as
//! a study that is not there.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{Map, Value};

use super::{ApiError, AppState};
use crate::auth::access::{cached_sources, Scope};
use crate::auth::referral::{self, Patient, Referral};
use crate::auth::Principal;

/// The scope of a request's principal.
pub fn scope(state: &AppState, principal: &Principal) -> Scope {
    Scope::of(
        principal,
        &state.config.facilities,
        &state.config.auth.admin_role,
    )
}

/// Which of `studies` the scope allows.
pub async fn allowed(
    state: &AppState,
    scope: &Scope,
    studies: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    if scope.is_all() || studies.is_empty() {
        return Ok(studies);
    }
    let facts = study_facts(state, scope, studies.clone()).await?;
    Ok(studies
        .into_iter()
        .filter(|s| facts.allows(state, scope, s))
        .collect())
}

/// What the index (and recent searches) know of the studies a scope decides on.
struct Facts {
    /// Cached studies' sources (upstreams retrieved from, or "local").
    sources: HashMap<String, Vec<String>>,
    /// Only for a `referred_only` facility: each study's patient, and that facility's
    /// referrals in force for those patients.
    patients: HashMap<String, Patient>,
    referrals: Vec<Referral>,
}

async fn study_facts(
    state: &AppState,
    scope: &Scope,
    studies: Vec<String>,
) -> Result<Facts, ApiError> {
    let index = state.store.index().clone();
    let facility = scope.referred_to().map(String::from);
    let searched: HashMap<String, Patient> = match facility {
        Some(_) => studies
            .iter()
            .filter_map(|s| state.pull.known_patient(s).map(|p| (s.clone(), p)))
            .collect(),
        None => HashMap::new(),
    };
    let now = crate::clock::now();
    let facts = tokio::task::spawn_blocking(move || {
        index.read(|c| {
            let mut facts = Facts {
                sources: cached_sources(c, &studies)?,
                patients: HashMap::new(),
                referrals: Vec::new(),
            };
            if let Some(facility) = facility {
                facts.patients = searched;
                // what the cache holds wins over what a search said
                facts
                    .patients
                    .extend(referral::cached_patients(c, &studies)?);
                let mut ids: Vec<&str> = facts.patients.values().map(|p| p.id.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                facts.referrals = referral::active(c, &facility, &ids, now)?;
            }
            Ok(facts)
        })
    })
    .await??;
    Ok(facts)
}

impl Facts {
    fn allows(&self, state: &AppState, scope: &Scope, study: &str) -> bool {
        let mut sources = self.sources.get(study).cloned().unwrap_or_default();
        sources.extend(state.pull.known_locations(study));
        if !scope.allows(sources.iter().map(String::as_str)) {
            return false;
        }
        if scope.referred_to().is_none() {
            return true;
        }
        self.patients
            .get(study)
            .is_some_and(|p| self.referrals.iter().any(|r| r.covers(p, &sources)))
    }
}

/// Drop the rows of studies the scope does not allow (`study` for rows scoped to one).
pub async fn filter_rows(
    state: &AppState,
    scope: &Scope,
    rows: Vec<Map<String, Value>>,
    study: Option<&str>,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    if scope.is_all() {
        return Ok(rows);
    }
    let study_of = |row: &Map<String, Value>| {
        row.get("0020000D")
            .and_then(|v| v["Value"][0].as_str())
            .or(study)
            .map(String::from)
    };
    let mut studies: Vec<String> = rows.iter().filter_map(study_of).collect();
    studies.sort();
    studies.dedup();
    let ok: HashSet<String> = allowed(state, scope, studies).await?.into_iter().collect();
    Ok(rows
        .into_iter()
        .filter(|r| study_of(r).is_some_and(|s| ok.contains(&s)))
        .collect())
}

/// Middleware on the WADO-RS routes: a study outside the caller's scope is "not in the cache".
pub async fn wado_guard(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
    req: Request,
    next: Next,
) -> Response {
    let scope = scope(&state, &principal);
    let Some(study) = params.get("study") else {
        return next.run(req).await;
    };
    match allowed(&state, &scope, vec![study.clone()]).await {
        Ok(ok) if !ok.is_empty() => next.run(req).await,
        Ok(_) => {
            tracing::debug!(user = %principal.user, "study outside the caller's facility");
            ApiError::NotFound(format!("{} is not in the cache", describe(&params))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// As WADO-RS words a missing resource.
fn describe(params: &HashMap<String, String>) -> String {
    let get = |k: &str| params.get(k).map(String::as_str);
    super::wado::describe_resource(get("study").unwrap_or(""), get("series"), get("instance"))
}
