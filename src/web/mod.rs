//! The HTTP side: the DICOMweb router (QIDO-RS search, WADO-RS retrieve under
//! `http.base_path`), health and metrics endpoints, CORS and JSON compression, and the one
//! mapping from errors to HTTP statuses.

pub mod access;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod byte_range;
pub mod convert;
pub mod limits;
pub mod multipart;
pub mod negotiate;
pub mod prepare;
pub mod pulled;
pub mod qido;
pub mod rendered;
pub mod search;
pub mod server;
pub mod tls;
pub mod wado;

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pull::{Pull, RetrieveError};
use crate::store::Store;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub pull: Arc<Pull>,
    pub jobs: Arc<crate::jobs::Jobs>,
    pub auth: Arc<crate::auth::Authenticator>,
    pub audit: crate::audit::Auditor,
}

/// Errors answered to HTTP clients, each with a message saying what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// No or bad credentials (`invalid`: credentials were given but rejected).
    #[error("{reason}")]
    Unauthorized { invalid: bool, reason: String },
    /// Authenticated, but a role is missing.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotAcceptable(String),
    /// The resource is busy or in a state that forbids the request (admin API).
    #[error("{0}")]
    Conflict(String),
    /// An upstream PACS failed (the request itself was fine).
    #[error("{0}")]
    BadGateway(String),
    /// An upstream PACS did not deliver in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// Something we depend on (the identity provider) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RetrieveError> for ApiError {
    fn from(e: RetrieveError) -> Self {
        match e {
            RetrieveError::NotFound(m) => ApiError::NotFound(m),
            RetrieveError::Upstream(m) => ApiError::BadGateway(m),
            RetrieveError::Timeout(m) => ApiError::GatewayTimeout(m),
        }
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
        }
        let challenge = match &self {
            ApiError::Unauthorized { invalid, reason } => {
                Some(auth::challenge(invalid.then_some("invalid_token"), reason))
            }
            ApiError::Forbidden(reason) => {
                Some(auth::challenge(Some("insufficient_scope"), reason))
            }
            _ => None,
        };
        let mut body = self.to_string();
        body.push('\n');
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(format!("index: {e}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("background task: {e}"))
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let qido = Router::new()
        .route("/studies", get(search::studies))
        .route("/series", get(search::all_series))
        .route("/instances", get(search::all_instances))
        .route("/studies/{study}/series", get(search::study_series))
        .route("/studies/{study}/instances", get(search::study_instances))
        .route(
            "/studies/{study}/series/{series}/instances",
            get(search::series_instances),
        );
    // Every WADO-RS resource names its study: checked against the caller's facility.
    let wado = Router::new()
        .route("/studies/{study}", get(wado::retrieve_study))
        .route("/studies/{study}/metadata", get(wado::study_metadata))
        .route(
            "/studies/{study}/series/{series}",
            get(wado::retrieve_series),
        )
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(wado::series_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}",
            get(wado::retrieve_instance),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(wado::instance_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(wado::frames),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/bulk/{*path}",
            get(wado::bulk),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(rendered::instance_rendered),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
            get(rendered::frame_rendered),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            get(rendered::instance_thumbnail),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail",
            get(rendered::frame_thumbnail),
        )
        .route(
            "/studies/{study}/series/{series}/thumbnail",
            get(rendered::series_thumbnail),
        )
        .route("/studies/{study}/thumbnail", get(rendered::study_thumbnail))
        .route_layer(from_fn_with_state(state.clone(), access::wado_guard));
    let dicomweb = qido
        .merge(wado)
        .layer(compression(state.config.http.compress_pixel_data));
    let dicomweb = dicomweb.layer(from_fn_with_state(
        guard(&state, auth::Need::Read),
        auth::guard,
    ));
    let base = state.config.http.base_path.clone();
    let router = if base.is_empty() {
        dicomweb
    } else {
        Router::new().nest(&base, dicomweb)
    };
    let admin = admin::routes()
        .route("/metrics", get(admin::metrics))
        .layer(from_fn_with_state(
            guard(&state, auth::Need::Admin),
            auth::guard,
        ));
    let http = &state.config.http;
    let audited = router
        .merge(admin)
        .layer(from_fn_with_state(state.clone(), audit::record));
    limits::apply(
        audited,
        http.max_concurrent_requests,
        http.max_request_body,
        Arc::clone(&state.metrics),
    )
    // liveness stays answerable under load
    .route("/healthz", get(admin::health))
    .layer(cors(&state.config.http.cors_allow_origins))
    .with_state(state)
}

/// The authentication state of a group of routes.
fn guard(state: &AppState, need: auth::Need) -> auth::Guard {
    auth::Guard {
        auth: Arc::clone(&state.auth),
        need,
    }
}

/// gzip, Brotli or zstd, as the client accepts, for JSON and (when configured) for
/// uncompressed pixel data; never for compressed pixels (no gain) nor for byte-range
/// responses (ranges address the identity bytes).
fn compression(pixel_data: bool) -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .zstd(true)
        .compress_when(SizeAbove::new(1024).and(Compressible { pixel_data }))
}

#[derive(Clone, Copy)]
struct Compressible {
    pixel_data: bool,
}

impl Predicate for Compressible {
    fn should_compress<B>(&self, response: &axum::http::Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        let headers = response.headers();
        if headers.contains_key(header::CONTENT_RANGE) {
            return false;
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        is_json(content_type) || (self.pixel_data && is_native_pixel_data(content_type))
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence == "application/json" || essence.ends_with("+json")
}

/// Frames, bulk data or instances in Explicit VR Little Endian (not deflated).
fn is_native_pixel_data(content_type: &str) -> bool {
    const EXPLICIT_LE: &str = "transfer-syntax=1.2.840.10008.1.2.1";
    content_type.match_indices(EXPLICIT_LE).any(|(at, m)| {
        !content_type[at + m.len()..].starts_with(|c: char| c == '.' || c.is_ascii_digit())
    })
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    if origins.is_empty() {
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([
            header::ACCEPT,
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            header::IF_RANGE,
            header::RANGE,
        ])
        .expose_headers([
            header::WARNING,
            header::ETAG,
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
        ])
}

/// The absolute DICOMweb root as the client sees it: `http.public_url` when configured,
/// else from `X-Forwarded-Proto/Host` or `Host`.
pub fn base_url(headers: &HeaderMap, config: &Config) -> String {
    if let Some(public) = &config.http.public_url {
        return format!("{public}{}", config.http.base_path);
    }
    let pick = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let scheme = pick("x-forwarded-proto")
        .filter(|s| s == "http" || s == "https")
        .unwrap_or_else(|| config.http.scheme().into());
    let host = pick("x-forwarded-host")
        .or_else(|| pick("host"))
        .filter(|h| is_sane_host(h))
        .unwrap_or_else(|| config.http.listen.to_string());
    format!("{scheme}://{host}{}", config.http.base_path)
}

fn is_sane_host(h: &str) -> bool {
    h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_compressed() {
        assert!(is_json("application/dicom+json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(!is_json(
            "multipart/related; type=\"application/dicom+xml\""
        ));
        let frames = |ts: &str| {
            format!(
                "multipart/related; type=\"application/octet-stream\"; transfer-syntax={ts}; boundary=b"
            )
        };
        assert!(is_native_pixel_data(&frames("1.2.840.10008.1.2.1")));
        assert!(is_native_pixel_data(
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
        ));
        assert!(!is_native_pixel_data(&frames("1.2.840.10008.1.2.1.99")));
        assert!(!is_native_pixel_data(&frames("1.2.840.10008.1.2.4.202")));
        assert!(!is_native_pixel_data("image/jphc"));
    }
}
