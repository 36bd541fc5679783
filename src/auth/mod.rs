//! Who is asking: turns a request's credentials into a [`Principal`] (user, roles,
//! facility) or a reason to refuse. OIDC bearer tokens (JWT, RS*/PS*/ES* only) are verified
//! against the issuer's JWKS ([`jwks`]) with issuer, audience, expiry and clock-skew checks;
//! API keys are compared by SHA-256 digest in constant time. `auth.mode = "none"` lets
//! everyone in as an administrator (local development only).
//!
//! The HTTP side of this (the middleware, 401/403 with `WWW-Authenticate`) is
//! `web::auth`; this module knows nothing of axum.

pub mod access;
pub mod config;
pub mod jwks;
pub mod referral;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use subtle::ConstantTimeEq;

pub use config::{ApiKeyConfig, AuthConfig, AuthMode};
use jwks::Jwks;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `sub` (or `preferred_username`) of a token, the name of an API key, or `anonymous`.
    pub user: String,
    pub roles: Vec<String>,
    /// The facility claim (or the API key's facility).
    pub facility: Option<String>,
    pub method: Method,
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `auth.mode = "none"`.
    Anonymous,
    Token,
    ApiKey,
}

impl Principal {
    pub fn has_role(&self, role: &str) -> bool {
        self.method == Method::Anonymous || self.roles.iter().any(|r| r == role)
    }
}

/// Why a request is refused. `Unauthenticated` is a 401, `Forbidden` a 403.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("credentials are required (Authorization: Bearer <token or API key>)")]
    Missing,
    #[error("{0}")]
    InvalidToken(String),
    #[error("the API key is not known")]
    UnknownApiKey,
    /// The identity provider could not be asked (the token may be fine).
    #[error("the token cannot be checked now: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Forbidden(String),
}

/// The configured ways in.
pub struct Authenticator {
    config: AuthConfig,
    jwks: Option<Jwks>,
    keys: Vec<([u8; 32], ApiKeyConfig)>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Arc<Authenticator>, jwks::JwksError> {
        let jwks = match (&config.mode, &config.jwks_url) {
            (AuthMode::Oidc, Some(url)) => Some(Jwks::new(
                url,
                &config.jwks_ca,
                config.jwks_ttl,
                config.jwks_min_refresh,
            )?),
            _ => None,
        };
        let keys = config
            .api_keys
            .iter()
            .filter_map(|k| Some((k.digest()?, k.clone())))
            .collect();
        Ok(Arc::new(Authenticator {
            config: config.clone(),
            jwks,
            keys,
        }))
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Authenticate the credentials of an `Authorization` (or `X-API-Key`) header.
    pub async fn authenticate(&self, credentials: Option<&str>) -> Result<Principal, AuthError> {
        if self.config.mode == AuthMode::None {
            return Ok(Principal {
                user: "anonymous".into(),
                roles: Vec::new(),
                facility: None,
                method: Method::Anonymous,
            });
        }
        let secret = credentials.ok_or(AuthError::Missing)?.trim();
        if looks_like_jwt(secret) && self.jwks.is_some() {
            return self.verify_token(secret).await;
        }
        self.api_key(secret)
    }

    fn api_key(&self, presented: &str) -> Result<Principal, AuthError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        // Compare with every key, so timing does not tell which (or whether one) matched.
        let mut found = None;
        for (known, cfg) in &self.keys {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(cfg);
            }
        }
        let cfg = found.ok_or(AuthError::UnknownApiKey)?;
        Ok(Principal {
            user: cfg.name.clone(),
            roles: cfg.roles.clone(),
            facility: cfg.facility.clone(),
            method: Method::ApiKey,
        })
    }

    async fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        let invalid = |m: &str| AuthError::InvalidToken(m.to_string());
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the token's header is not valid"))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(invalid("the token's algorithm is not accepted"));
        }
        let jwks = self.jwks.as_ref().ok_or(AuthError::Missing)?;
        let key = jwks
            .key(header.kid.as_deref())
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?
            .ok_or_else(|| invalid("the token is signed with an unknown key"))?;
        if key.alg.is_some_and(|a| a != header.alg) {
            return Err(invalid("the token's algorithm does not match its key"));
        }
        let validation = self.validation(header.alg);
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map_err(|e| AuthError::InvalidToken(describe(&e)))?;
        Ok(self.principal(&data.claims))
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway.as_secs();
        v.validate_nbf = true;
        v.set_audience(&self.config.audience);
        if let Some(iss) = &self.config.issuer {
            v.set_issuer(&[iss]);
        }
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v
    }

    fn principal(&self, claims: &Value) -> Principal {
        let user = ["preferred_username", "sub"]
            .iter()
            .find_map(|c| claims.get(c).and_then(Value::as_str))
            .unwrap_or("unknown")
            .to_string();
        let roles = match claim(claims, &self.config.roles_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            _ => Vec::new(),
        };
        let facility = match claim(claims, &self.config.facility_claim) {
            Some(Value::String(s)) => Some(s.clone()),
            // Keycloak user attributes may come as a one-element list.
            Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(String::from),
            _ => None,
        };
        Principal {
            user,
            roles,
            facility,
            method: Method::Token,
        }
    }
}

const ASYMMETRIC: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3 && s.starts_with("eyJ")
}

/// A claim by dotted path: `realm_access.roles`.
fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, k| v.get(k))
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired".into(),
        K::ImmatureSignature => "the token is not valid yet".into(),
        K::InvalidAudience => "the token is not meant for this service (audience)".into(),
        K::InvalidIssuer => "the token was issued by an issuer we do not trust".into(),
        K::InvalidSignature => "the token's signature does not verify".into(),
        K::MissingRequiredClaim(c) => format!("the token has no {c:?} claim"),
        K::InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        _ => "the token is malformed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed() -> Arc<Authenticator> {
        let config = AuthConfig {
            mode: AuthMode::ApiKey,
            api_keys: vec![ApiKeyConfig {
                name: "cli".into(),
                key_sha256: None,
                key: Some("0123456789abcdef-secret".into()),
                roles: vec!["tsunagi-admin".into()],
                facility: Some("clinic-a".into()),
            }],
            ..AuthConfig::default()
        };
        Authenticator::new(&config).unwrap()
    }

    #[tokio::test]
    async fn api_keys() {
        let auth = keyed();
        let p = auth
            .authenticate(Some("0123456789abcdef-secret"))
            .await
            .unwrap();
        assert_eq!(p.user, "cli");
        assert_eq!(p.facility.as_deref(), Some("clinic-a"));
        assert!(p.has_role("tsunagi-admin"));
        assert_eq!(
            auth.authenticate(Some("0123456789abcdef-secreT")).await,
            Err(AuthError::UnknownApiKey)
        );
        assert_eq!(auth.authenticate(None).await, Err(AuthError::Missing));
    }

    #[test]
    fn dotted_claims() {
        let v = serde_json::json!({"realm_access": {"roles": ["a", "b"]}});
        assert_eq!(claim(&v, "realm_access.roles").unwrap()[1], "b");
        assert!(claim(&v, "realm_access.nothing").is_none());
    }
}
