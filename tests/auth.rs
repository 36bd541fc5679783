//! Who may come in: the real gateway with `auth.mode = "oidc"` against a JWKS served by the
//! test itself (an ES256 key generated at test time, rotated mid-test), plus API keys.
//! Valid, expired, wrong-audience, wrong-issuer, tampered, foreign-key and `alg: none` tokens;
//! the admin role on `/admin` and `/metrics`; `/healthz` open; the CLI with `--api-key`.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUER: &str = "http://idp.test/realms/rhin";
const AUDIENCE: &str = "tsunagi";
const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

/// A signing key and its public JWK.
struct TestKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn generate(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        TestKey {
            kid: kid.into(),
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]),
            }),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

fn now() -> u64 {
    tsunagi::clock::now() as u64
}

fn claims(roles: &[&str]) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "preferred_username": "dr.sato",
        "exp": now() + 300, "iat": now(), "facility": "clinic-a",
        "realm_access": {"roles": roles},
    })
}

/// The JWKS endpoint: serves whatever keys are in `keys` now; counts fetches.
async fn jwks_server(keys: Arc<Mutex<Vec<Value>>>) -> String {
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let keys = Arc::clone(&keys);
            async move { axum::Json(json!({"keys": *keys.lock().unwrap()})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/certs")
}

fn gateway(jwks_url: &str) -> Gateway {
    let api_keys = format!(
        "[{{name = \"ops-cli\", key = \"{ADMIN_KEY}\", roles = [\"tsunagi-admin\"]}}, \
         {{name = \"reader\", key_sha256 = \"{}\"}}]",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            b"reader-key-0123456789"
        ))
    );
    let env = [
        ("TSUNAGI_AUTH__MODE", "oidc"),
        ("TSUNAGI_AUTH__ISSUER", ISSUER),
        ("TSUNAGI_AUTH__AUDIENCE", "[\"tsunagi\", \"ohif\"]"),
        ("TSUNAGI_AUTH__JWKS_URL", jwks_url),
        ("TSUNAGI_AUTH__JWKS_MIN_REFRESH", "0s"),
        ("TSUNAGI_AUTH__API_KEY", api_keys.as_str()),
    ];
    Gateway::start_with_env(&env)
}

struct Answer {
    status: u16,
    challenge: String,
    body: String,
}

async fn call(url: &str, auth: Option<&str>) -> Answer {
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.expect("request");
    Answer {
        status: resp.status().as_u16(),
        challenge: resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: resp.text().await.unwrap_or_default(),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A 401 for a rejected token, whose challenge and body say why.
fn assert_invalid(a: &Answer, why: &str) {
    assert_eq!(a.status, 401, "{why}: {}", a.body);
    assert!(
        a.challenge
            .starts_with("Bearer realm=\"tsunagi\", error=\"invalid_token\""),
        "{}",
        a.challenge
    );
    assert!(a.challenge.contains(why), "{why} in {}", a.challenge);
    assert!(a.body.contains(why), "{why} in {}", a.body);
}

#[tokio::test]
async fn tokens_roles_and_keys() {
    let k1 = TestKey::generate("k1");
    let keys = Arc::new(Mutex::new(vec![k1.jwk.clone()]));
    let jwks_url = jwks_server(Arc::clone(&keys)).await;
    let gw = gateway(&jwks_url);
    let studies = format!("{}/studies", gw.base());
    let admin = format!("http://{}/admin/cache", gw.http);
    let metrics = format!("http://{}/metrics", gw.http);

    // Open: liveness only.
    assert_eq!(
        call(&format!("http://{}/healthz", gw.http), None)
            .await
            .status,
        200
    );
    // No credentials: a bare challenge.
    let a = call(&studies, None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.challenge, "Bearer realm=\"tsunagi\"");
    assert!(a.body.contains("credentials are required"), "{}", a.body);

    // A valid token reads DICOMweb.
    let valid = k1.sign(&claims(&["clinician"]));
    assert_eq!(call(&studies, Some(&bearer(&valid))).await.status, 200);

    // Expired well beyond the leeway; within it, still fine.
    let mut c = claims(&[]);
    c["exp"] = json!(now() - 3600);
    assert_invalid(
        &call(&studies, Some(&bearer(&k1.sign(&c)))).await,
        "expired",
    );
    c["exp"] = json!(now() - 10);
    assert_eq!(
        call(&studies, Some(&bearer(&k1.sign(&c)))).await.status,
        200
    );

    let mut c = claims(&[]);
    c["aud"] = json!("another-service");
    assert_invalid(
        &call(&studies, Some(&bearer(&k1.sign(&c)))).await,
        "audience",
    );
    let mut c = claims(&[]);
    c["iss"] = json!("http://evil.test/realms/rhin");
    assert_invalid(&call(&studies, Some(&bearer(&k1.sign(&c)))).await, "issuer");

    // Tampered: the payload says admin, the signature was made over the original.
    let parts: Vec<&str> = valid.split('.').collect();
    let forged_payload = B64.encode(claims(&["tsunagi-admin"]).to_string());
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_invalid(&call(&admin, Some(&bearer(&tampered))).await, "signature");
    // Signed by a stranger's key under our key id.
    let stranger = TestKey::generate("k1");
    let a = call(&studies, Some(&bearer(&stranger.sign(&claims(&[]))))).await;
    assert_invalid(&a, "signature");
    // `alg: none` and HMAC are never accepted.
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        B64.encode(claims(&["tsunagi-admin"]).to_string())
    );
    assert_eq!(call(&studies, Some(&bearer(&none))).await.status, 401);
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&["tsunagi-admin"]),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    assert_invalid(&call(&studies, Some(&bearer(&hs))).await, "algorithm");

    // The admin role: required for /admin and /metrics.
    for url in [&admin, &metrics] {
        let a = call(url, Some(&bearer(&valid))).await;
        assert_eq!(a.status, 403, "{url}: {}", a.body);
        assert!(
            a.challenge.contains("error=\"insufficient_scope\""),
            "{}",
            a.challenge
        );
        assert!(a.body.contains("tsunagi-admin"), "{}", a.body);
        let admin_token = k1.sign(&claims(&["clinician", "tsunagi-admin"]));
        assert_eq!(call(url, Some(&bearer(&admin_token))).await.status, 200);
    }

    // Key rotation: a token under a new key id makes the gateway fetch the JWKS again.
    let k2 = TestKey::generate("k2");
    keys.lock().unwrap().push(k2.jwk.clone());
    let rotated = k2.sign(&claims(&[]));
    assert_eq!(call(&studies, Some(&bearer(&rotated))).await.status, 200);
    let k3 = TestKey::generate("k3");
    let a = call(&studies, Some(&bearer(&k3.sign(&claims(&[]))))).await;
    assert_invalid(&a, "unknown key");

    // API keys: by value or by digest; the reader has no admin role.
    assert_eq!(call(&admin, Some(&bearer(ADMIN_KEY))).await.status, 200);
    assert_eq!(
        call(&studies, Some("Bearer reader-key-0123456789"))
            .await
            .status,
        200
    );
    assert_eq!(
        call(&admin, Some("Bearer reader-key-0123456789"))
            .await
            .status,
        403
    );
    let a = call(&studies, Some("Bearer not-a-key-at-all")).await;
    assert_invalid(&a, "API key");
    let a = reqwest::Client::new()
        .get(&admin)
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200);

    // The CLI passes its key; without one it says what is missing.
    let gateway_url = format!("http://{}", gw.http);
    let cli = |key: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsunagi"));
        cmd.args(["cache", "stats", "--gateway", &gateway_url])
            .env("RUST_LOG", "error")
            .env_remove("TSUNAGI_API_KEY");
        if let Some(k) = key {
            cmd.env("TSUNAGI_API_KEY", k);
        }
        cmd.output().expect("run tsunagi")
    };
    assert!(cli(Some(ADMIN_KEY)).status.success());
    let out = cli(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("--api-key"), "{err}");
}

#[test]
fn oidc_without_issuer_is_a_config_error() {
    let empty = tempfile::tempdir().unwrap(); // no ./proxy.toml there
    let out = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .arg("config")
        .env("TSUNAGI_AUTH__MODE", "oidc")
        .current_dir(empty.path())
        .output()
        .expect("run tsunagi");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.issuer"), "{err}");
}
