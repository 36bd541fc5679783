//! The `[auth]` section of `proxy.toml`: how HTTP clients prove who they are (OIDC bearer
//! tokens, static API keys, or nothing at all for local development) and which claims carry
//! their roles and facility.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// How HTTP requests are authenticated.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Everyone may do everything: local development only (a loud warning at start-up).
    #[default]
    None,
    /// OAuth2/OIDC bearer tokens (JWT, verified against `jwks_url`) and the API keys.
    Oidc,
    /// Only the configured API keys (no identity provider).
    ApiKey,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The token issuer (`iss`), e.g. `https://keycloak.example.jp/realms/rhin`.
    pub issuer: Option<String>,
    /// Audiences (`aud`) a token must name one of, e.g. the Keycloak client id.
    pub audience: Vec<String>,
    /// The issuer's JWKS, e.g. `{issuer}/protocol/openid-connect/certs`; `http://` or `https://`.
    pub jwks_url: Option<String>,
    /// PEM CA bundle trusted for an `https://` `jwks_url`.
    pub jwks_ca: PathBuf,
    /// How long fetched keys are reused before they are fetched again.
    #[serde(with = "crate::config::human_duration")]
    pub jwks_ttl: Duration,
    /// A token signed with an unknown key id refetches the JWKS at most this often.
    #[serde(with = "crate::config::human_duration")]
    pub jwks_min_refresh: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "crate::config::human_duration")]
    pub leeway: Duration,
    /// Claim naming the user's facility (dotted path into the token's claims).
    pub facility_claim: String,
    /// Claim holding the user's roles (dotted path; a list of strings, or one string).
    pub roles_claim: String,
    /// Role needed for `/admin` and `/metrics`.
    pub admin_role: String,
    /// Role needed to read DICOMweb; unset: any authenticated user.
    pub read_role: Option<String>,
    /// Static keys for service accounts and the CLI.
    #[serde(rename = "api_key")]
    pub api_keys: Vec<ApiKeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            issuer: None,
            audience: Vec::new(),
            jwks_url: None,
            jwks_ca: PathBuf::from(crate::config::SYSTEM_CA_BUNDLE),
            jwks_ttl: Duration::from_secs(3600),
            jwks_min_refresh: Duration::from_secs(30),
            leeway: Duration::from_secs(60),
            facility_claim: "facility".into(),
            roles_claim: "realm_access.roles".into(),
            admin_role: "tsunagi-admin".into(),
            read_role: None,
            api_keys: Vec::new(),
        }
    }
}

/// One `[[auth.api_key]]`: a service account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who this key is, in the audit trail.
    pub name: String,
    /// SHA-256 of the key, in hex (`printf %s KEY | sha256sum`). Preferred over `key`.
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// The key itself (keep the file private); for tests and environment overrides.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The facility whose access rules apply; unset: none (see `[[facility]]`).
    #[serde(default)]
    pub facility: Option<String>,
}

impl ApiKeyConfig {
    /// The SHA-256 digest of the key, from either form.
    pub fn digest(&self) -> Option<[u8; 32]> {
        use sha2::Digest;
        match (&self.key_sha256, &self.key) {
            (Some(hex_digest), _) => {
                let bytes = hex::decode(hex_digest.trim()).ok()?;
                bytes.try_into().ok()
            }
            (None, Some(key)) => Some(sha2::Sha256::digest(key.as_bytes()).into()),
            (None, None) => None,
        }
    }
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.mode == AuthMode::Oidc {
            if self.issuer.is_none() || self.jwks_url.is_none() || self.audience.is_empty() {
                return invalid(
                    "auth.mode = \"oidc\" needs auth.issuer, auth.audience and auth.jwks_url"
                        .into(),
                );
            }
            let url = self.jwks_url.as_deref().unwrap_or_default();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(format!("auth.jwks_url {url:?} must be an http(s) URL"));
            }
        }
        if self.mode == AuthMode::ApiKey && self.api_keys.is_empty() {
            return invalid("auth.mode = \"api-key\" needs at least one [[auth.api_key]]".into());
        }
        let mut names = std::collections::HashSet::new();
        for k in &self.api_keys {
            if !names.insert(k.name.as_str()) {
                return invalid(format!("auth.api_key name {:?} is used twice", k.name));
            }
            if k.key_sha256.is_some() == k.key.is_some() {
                return invalid(format!(
                    "auth.api_key {:?}: give exactly one of key_sha256 and key",
                    k.name
                ));
            }
            if k.digest().is_none() {
                return invalid(format!(
                    "auth.api_key {:?}: key_sha256 must be 64 hex digits",
                    k.name
                ));
            }
            if k.key.as_ref().is_some_and(|key| key.len() < 16) {
                return invalid(format!(
                    "auth.api_key {:?}: a key needs at least 16 characters",
                    k.name
                ));
            }
        }
        Ok(())
    }
}
