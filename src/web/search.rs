//! QIDO-RS handlers: turn the request into a `qido` query (400 with a message when it is
//! wrong), run it against the index on the blocking pool, and answer
//! `application/dicom+json` with a `Warning: 299` when more results remain. Rows of studies
//! outside the caller's facility are dropped (`web::access`) before paging, so a restricted
//! caller's pages are full and the count of further results covers only what it may see.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::qido::{self, QidoLevel, QidoQuery, QidoRows, QidoScope};
use super::{base_url, ApiError, AppState};
use crate::auth::Principal;
use crate::config::TooBroad;
use crate::metrics::Metrics;
use crate::pull::search::merge;
use crate::types::Uid;
use serde_json::{Map, Value};

pub async fn studies(
    who: Extension<Principal>,
    state: State<AppState>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(who, state, headers, q, QidoLevel::Study, None, None).await
}

pub async fn all_series(
    who: Extension<Principal>,
    state: State<AppState>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(who, state, headers, q, QidoLevel::Series, None, None).await
}

pub async fn all_instances(
    who: Extension<Principal>,
    state: State<AppState>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(who, state, headers, q, QidoLevel::Instance, None, None).await
}

pub async fn study_series(
    who: Extension<Principal>,
    state: State<AppState>,
    headers: HeaderMap,
    Path(study): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(who, state, headers, q, QidoLevel::Series, Some(study), None).await
}

pub async fn study_instances(
    who: Extension<Principal>,
    state: State<AppState>,
    headers: HeaderMap,
    Path(study): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(
        who,
        state,
        headers,
        q,
        QidoLevel::Instance,
        Some(study),
        None,
    )
    .await
}

pub async fn series_instances(
    who: Extension<Principal>,
    state: State<AppState>,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(
        who,
        state,
        headers,
        q,
        QidoLevel::Instance,
        Some(study),
        Some(series),
    )
    .await
}

async fn search(
    Extension(who): Extension<Principal>,
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    level: QidoLevel,
    study: Option<String>,
    series: Option<String>,
) -> Result<Response, ApiError> {
    Metrics::inc(&state.metrics.qido_requests_total);
    let scope = QidoScope {
        study_uid: study.map(|s| checked_uid("study", &s)).transpose()?,
        series_uid: series.map(|s| checked_uid("series", &s)).transpose()?,
    };
    let pairs = parse_query_string(raw.as_deref().unwrap_or(""))?;
    let mut query =
        qido::parse_query(level, scope, &pairs).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let http = &state.config.http;
    query.apply_limits(http.qido_default_limit, http.qido_max_limit);
    let base = base_url(&headers, &state.config);
    let scope = super::access::scope(&state, &who);
    let (rows, remaining, warnings) = if !scope.is_all() {
        restricted(&state, &scope, query, &base).await?
    } else if state.pull.enabled() {
        federated(&state, query, &base).await?
    } else {
        let page = local_page(&state, query, &base).await?;
        (page.rows, page.remaining, Vec::new())
    };
    let body = serde_json::to_vec(&rows).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = ([(header::CONTENT_TYPE, "application/dicom+json")], body).into_response();
    let mut warnings = warnings;
    if remaining > 0 {
        warnings.push(format!(
            "There are {remaining} additional results that can be requested"
        ));
    }
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&super::pulled::warning_value(&w)) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(response)
}

/// One page from the cache's index.
async fn local_page(state: &AppState, query: QidoQuery, base: &str) -> Result<QidoRows, ApiError> {
    let base = base.to_string();
    on_index(state, move |conn| qido::run_query(conn, &query, &base)).await
}

/// One page's rows from the cache's index, without the count of further matches.
async fn local_rows(
    state: &AppState,
    query: QidoQuery,
    base: &str,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let base = base.to_string();
    on_index(state, move |conn| qido::page_rows(conn, &query, &base)).await
}

/// Run a QIDO step on a pooled index connection, on the blocking pool.
async fn on_index<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, qido::QidoError> + Send + 'static,
) -> Result<T, ApiError> {
    let index = state.store.index().clone();
    tokio::task::spawn_blocking(move || index.read_with(f))
        .await?
        .map_err(|e| {
            if e.is_client_error() {
                ApiError::BadRequest(e.to_string())
            } else {
                ApiError::Internal(e.to_string())
            }
        })
}

/// The cache and every hospital PACS searched together, merged by UID, then paged.
async fn federated(
    state: &AppState,
    query: QidoQuery,
    base: &str,
) -> Result<(Vec<Map<String, Value>>, usize, Vec<String>), ApiError> {
    let pull = &state.pull;
    if let Some(warning) = too_broad(state, &query)? {
        let page = local_page(state, query, base).await?;
        return Ok((page.rows, page.remaining, vec![warning]));
    }
    let (offset, limit, level) = (query.offset, query.limit, query.level);
    let mut whole = query.clone();
    whole.offset = 0;
    whole.limit = offset + limit;
    let (local, remote) = tokio::join!(
        local_page(state, whole, base),
        pull.search_upstreams(&query, base)
    );
    let local = local?;
    let merged = merge(level, local.rows, remote.rows, &pull.our_ae);
    let total = merged.len() + local.remaining;
    let page: Vec<_> = merged.into_iter().skip(offset).take(limit).collect();
    let remaining = total.saturating_sub(offset + page.len());
    Ok((page, remaining, remote.warnings))
}

/// A search with fewer matching keys than `pull.min_criteria` is not sent to the hospitals:
/// the Warning to give when it is answered from the cache, or 400 (`too_broad = "reject"`).
fn too_broad(state: &AppState, query: &QidoQuery) -> Result<Option<String>, ApiError> {
    let config = &state.pull.config;
    if query.criteria_count() >= config.min_criteria {
        return Ok(None);
    }
    let advice = format!(
        "searching every hospital needs at least {} matching key(s), e.g. PatientID, PatientName, AccessionNumber, StudyDate or StudyInstanceUID",
        config.min_criteria
    );
    if config.too_broad == TooBroad::Reject {
        return Err(ApiError::BadRequest(advice));
    }
    Ok(Some(format!("hospital PACS were not searched: {advice}")))
}

/// Cache matches read per step when filtering for a restricted caller.
const RESTRICTED_CHUNK: usize = 500;

/// A caller limited to some studies (a facility): every match is read (the cache's in chunks
/// of `RESTRICTED_CHUNK`), the rows it may not see are dropped, and only then is the result
/// paged, so `offset`/`limit` and the Warning's count are those of the visible rows. Memory
/// holds the visible matches, as a federated search holds the hospitals' answers.
async fn restricted(
    state: &AppState,
    scope: &crate::auth::access::Scope,
    query: QidoQuery,
    base: &str,
) -> Result<(Vec<Map<String, Value>>, usize, Vec<String>), ApiError> {
    let (offset, limit, level) = (query.offset, query.limit, query.level);
    let study = query.scope.study_uid.clone();
    // decided first: a rejected search reads nothing
    let broad = match state.pull.enabled() {
        true => Some(too_broad(state, &query)?),
        false => None,
    };
    let mut visible = Vec::new();
    let mut chunk = query.clone();
    chunk.offset = 0;
    chunk.limit = RESTRICTED_CHUNK;
    loop {
        let rows = local_rows(state, chunk.clone(), base).await?;
        let read = rows.len();
        visible.extend(super::access::filter_rows(state, scope, rows, study.as_deref()).await?);
        if read < RESTRICTED_CHUNK {
            break;
        }
        chunk.offset += read;
    }
    let mut warnings = Vec::new();
    match broad {
        Some(Some(warning)) => warnings.push(warning),
        Some(None) => {
            let remote = state.pull.search_upstreams(&query, base).await;
            let rows =
                super::access::filter_rows(state, scope, remote.rows, study.as_deref()).await?;
            visible = merge(level, visible, rows, &state.pull.our_ae);
            warnings.extend(remote.warnings);
        }
        None => {}
    }
    let total = visible.len();
    let page: Vec<_> = visible.into_iter().skip(offset).take(limit).collect();
    let remaining = total.saturating_sub(offset + page.len());
    Ok((page, remaining, warnings))
}

pub fn checked_uid(what: &'static str, raw: &str) -> Result<String, ApiError> {
    Uid::parse(what, raw)
        .map(|u| u.to_string())
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Split a query string into decoded pairs, in order (`+` is a space, `%XX` is a byte).
pub fn parse_query_string(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

fn decode_component(s: &str) -> Result<String, ApiError> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ApiError::BadRequest(format!("query parameter {s:?} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let p = parse_query_string(
            "PatientName=%E5%B1%B1%E7%94%B0*&includefield=00081030%2C00080060&x",
        )
        .unwrap();
        assert_eq!(p[0], ("PatientName".into(), "山田*".into()));
        assert_eq!(p[1].1, "00081030,00080060");
        assert_eq!(p[2], ("x".into(), "".into()));
        assert!(parse_query_string("a=%FF").is_err());
    }
}
