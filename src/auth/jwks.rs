//! The issuer's signing keys: the JWKS fetched over HTTP(S) with timeouts, cached for
//! `auth.jwks_ttl` (one fetch at a time, however many requests wait), and fetched again early
//! when a token names a key id we do not know (key rotation), at most once per
//! `auth.jwks_min_refresh` so forged key ids cannot make us hammer the issuer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use rustls::pki_types::ServerName;

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Why the keys could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    #[error("bad JWKS URL {0:?}")]
    Url(String),
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the JWKS from {url} is not valid: {reason}")]
    Parse { url: String, reason: String },
    #[error("cannot read the CA bundle {path}: {reason}")]
    Ca { path: String, reason: String },
}

/// One usable key of the set.
pub struct Key {
    pub key: DecodingKey,
    /// The algorithm the JWK pins (`alg`), if any.
    pub alg: Option<Algorithm>,
}

/// The keys of one fetch, by key id (`""` for a key without one).
pub struct KeySet {
    pub keys: HashMap<String, Arc<Key>>,
    fetched: Instant,
}

/// The cached JWKS of one issuer.
pub struct Jwks {
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    cache: moka::future::Cache<(), Arc<KeySet>>,
    min_refresh: Duration,
}

impl Jwks {
    pub fn new(
        url: &str,
        ca: &Path,
        ttl: Duration,
        min_refresh: Duration,
    ) -> Result<Jwks, JwksError> {
        let tls = if url.starts_with("https://") {
            Some(client_tls(ca)?)
        } else {
            None
        };
        Ok(Jwks {
            url: url.to_string(),
            tls,
            cache: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(ttl)
                .build(),
            min_refresh,
        })
    }

    /// The key a token's header names, refetching once when the key id is unknown.
    pub async fn key(&self, kid: Option<&str>) -> Result<Option<Arc<Key>>, JwksError> {
        let kid = kid.unwrap_or("");
        let set = self.current().await?;
        if let Some(k) = find(&set, kid) {
            return Ok(Some(k));
        }
        if set.fetched.elapsed() < self.min_refresh {
            return Ok(None);
        }
        tracing::info!(kid, "unknown signing key id: fetching the JWKS again");
        self.cache.invalidate(&()).await;
        let set = self.current().await?;
        Ok(find(&set, kid))
    }

    async fn current(&self) -> Result<Arc<KeySet>, JwksError> {
        self.cache
            .try_get_with((), async {
                let body = fetch(&self.url, self.tls.clone()).await?;
                parse(&self.url, &body).map(Arc::new)
            })
            .await
            .map_err(|e: Arc<JwksError>| (*e).clone())
    }
}

fn find(set: &KeySet, kid: &str) -> Option<Arc<Key>> {
    if let Some(k) = set.keys.get(kid) {
        return Some(Arc::clone(k));
    }
    // A token without `kid` is accepted only when the set holds exactly one key.
    if kid.is_empty() && set.keys.len() == 1 {
        return set.keys.values().next().cloned();
    }
    None
}

/// Parse a JWKS document; keys we cannot use (encryption keys, unknown types) are skipped.
pub fn parse(url: &str, body: &[u8]) -> Result<KeySet, JwksError> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| JwksError::Parse {
        url: url.into(),
        reason: e.to_string(),
    })?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let for_signing = !matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        );
        if !for_signing || !jwk.is_supported() {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        keys.insert(kid, Arc::new(Key { key, alg }));
    }
    if keys.is_empty() {
        return Err(JwksError::Parse {
            url: url.into(),
            reason: "no signing key we can use".into(),
        });
    }
    Ok(KeySet {
        keys,
        fetched: Instant::now(),
    })
}

fn client_tls(ca: &Path) -> Result<Arc<rustls::ClientConfig>, JwksError> {
    crate::web::tls::client_config(ca, false, None).map_err(|e| JwksError::Ca {
        path: ca.display().to_string(),
        reason: e.to_string(),
    })
}

async fn fetch(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Bytes, JwksError> {
    let fetch_err = |reason: String| JwksError::Fetch {
        url: url.into(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| JwksError::Url(url.into()))?;
    let host = uri.host().ok_or_else(|| JwksError::Url(url.into()))?;
    let port = uri
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        match tls {
            Some(tls) => {
                let name = ServerName::try_from(host.to_string())
                    .map_err(|_| JwksError::Url(url.into()))?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| fetch_err(e.to_string()))?;
                get(stream, &uri).await.map_err(fetch_err)
            }
            None => get(tcp, &uri).await.map_err(fetch_err),
        }
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| fetch_err(format!("no answer within {FETCH_TIMEOUT:?}")))?
}

async fn get<S>(stream: S, uri: &Uri) -> Result<Bytes, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(body.to_bytes())
}
