//! The authentication middleware: every route it wraps needs credentials
//! (`Authorization: Bearer <JWT or API key>`, or `X-API-Key`) and a role ([`Need`]);
//! the [`Principal`] it finds is put in the request's extensions for the handlers (facility
//! scoping, audit). Refusals are 401 (no or bad credentials) or 403 (a role is missing),
//! both with a `WWW-Authenticate: Bearer` challenge (RFC 6750) and the reason in the body.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::auth::{AuthError, Authenticator, Principal};

/// What a group of routes requires beyond being authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// DICOMweb: `auth.read_role` when configured.
    Read,
    /// `/admin` and `/metrics`: `auth.admin_role`.
    Admin,
}

/// The middleware's state.
#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<Authenticator>,
    pub need: Need,
}

/// Authenticate, check the role, and hand the principal on.
pub async fn guard(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let credentials = credentials(req.headers());
    let principal = match guard.auth.authenticate(credentials.as_deref()).await {
        Ok(p) => p,
        Err(e) => return refuse(e).into_response(),
    };
    if let Err(e) = authorize(&guard, &principal) {
        tracing::info!(user = %principal.user, reason = %e, "request forbidden");
        let mut response = refuse(e).into_response();
        response.extensions_mut().insert(principal);
        return response;
    }
    req.extensions_mut().insert(principal.clone());
    let mut response = next.run(req).await;
    // For the audit trail, which wraps this middleware.
    response.extensions_mut().insert(principal);
    response
}

fn authorize(guard: &Guard, p: &Principal) -> Result<(), AuthError> {
    let cfg = guard.auth.config();
    let role = match guard.need {
        Need::Admin => Some(cfg.admin_role.as_str()),
        Need::Read => cfg.read_role.as_deref(),
    };
    match role {
        Some(role) if !p.has_role(role) && !p.has_role(&cfg.admin_role) => Err(
            AuthError::Forbidden(format!("this needs the role {role:?}")),
        ),
        _ => Ok(()),
    }
}

fn refuse(e: AuthError) -> ApiError {
    match e {
        AuthError::Forbidden(m) => ApiError::Forbidden(m),
        AuthError::Unavailable(m) => {
            tracing::warn!(reason = %m, "cannot verify a token");
            ApiError::Unavailable("the identity provider cannot be reached".into())
        }
        AuthError::Missing => ApiError::Unauthorized {
            invalid: false,
            reason: e.to_string(),
        },
        AuthError::InvalidToken(_) | AuthError::UnknownApiKey => ApiError::Unauthorized {
            invalid: true,
            reason: e.to_string(),
        },
    }
}

/// The secret of `Authorization: Bearer ...` (or `ApiKey ...`), else of `X-API-Key`.
fn credentials(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = v.trim().split_once(' ')?;
        let ok = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("apikey");
        return ok.then(|| rest.trim().to_string());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// The `WWW-Authenticate` challenge of a 401 or 403 (RFC 6750 section 3).
pub fn challenge(error: Option<&str>, description: &str) -> String {
    let clean: String = description
        .chars()
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .collect();
    match error {
        Some(code) => {
            format!("Bearer realm=\"tsunagi\", error=\"{code}\", error_description=\"{clean}\"")
        }
        None => "Bearer realm=\"tsunagi\"".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(credentials(&h), None);
        h.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(credentials(&h).as_deref(), Some("k1"));
        h.insert(header::AUTHORIZATION, "bearer eyJ.a.b".parse().unwrap());
        assert_eq!(credentials(&h).as_deref(), Some("eyJ.a.b"));
        h.insert(header::AUTHORIZATION, "Basic dXNlcg==".parse().unwrap());
        assert_eq!(credentials(&h), None);
    }

    #[test]
    fn challenges_are_quoted_safely() {
        assert_eq!(
            challenge(Some("invalid_token"), "the \"exp\" claim"),
            "Bearer realm=\"tsunagi\", error=\"invalid_token\", error_description=\"the 'exp' claim\""
        );
    }
}
