//! QIDO-RS handlers: turn the request into a `qido` query (400 with a message when it is
//! wrong), run it against the index on the blocking pool, and answer
//! `application/dicom+json` with a `Warning: 299` when more results remain.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::qido::{self, QidoLevel, QidoScope};
use super::{base_url, ApiError, AppState};
use crate::metrics::Metrics;
use crate::types::Uid;

pub async fn studies(
    state: State<AppState>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(state, headers, q, QidoLevel::Study, None, None).await
}

pub async fn all_series(
    state: State<AppState>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(state, headers, q, QidoLevel::Series, None, None).await
}

pub async fn all_instances(
    state: State<AppState>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(state, headers, q, QidoLevel::Instance, None, None).await
}

pub async fn study_series(
    state: State<AppState>,
    headers: HeaderMap,
    Path(study): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(state, headers, q, QidoLevel::Series, Some(study), None).await
}

pub async fn study_instances(
    state: State<AppState>,
    headers: HeaderMap,
    Path(study): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(state, headers, q, QidoLevel::Instance, Some(study), None).await
}

pub async fn series_instances(
    state: State<AppState>,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    search(
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
    let index = state.store.index().clone();
    let result = tokio::task::spawn_blocking(move || {
        index.read_with(|conn| qido::run_query(conn, &query, &base))
    })
    .await?
    .map_err(|e| {
        if e.is_client_error() {
            ApiError::BadRequest(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    })?;
    let body = serde_json::to_vec(&result.rows).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = ([(header::CONTENT_TYPE, "application/dicom+json")], body).into_response();
    if result.remaining > 0 {
        let warning = format!(
            "299 tsunagi \"There are {} additional results that can be requested\"",
            result.remaining
        );
        if let Ok(v) = HeaderValue::from_str(&warning) {
            response.headers_mut().insert(header::WARNING, v);
        }
    }
    Ok(response)
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
