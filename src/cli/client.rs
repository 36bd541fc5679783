//! A minimal HTTP/1.1 client for the gateway's admin API (plain HTTP on the admin's own
//! network; one connection per request), with connect and response timeouts and the
//! operator's API key as a bearer credential.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a request to the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not a gateway URL like http://127.0.0.1:8080")]
    BadUrl(String),
    #[error(
        "cannot reach the gateway at {addr}: {reason} (is `tsunagi serve` running? see --gateway)"
    )]
    Connect { addr: String, reason: String },
    #[error("the gateway at {0} did not answer in time")]
    Timeout(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("the gateway answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("unexpected answer from the gateway: {0}")]
    Body(String),
}

/// The admin API of one gateway.
#[derive(Debug, Clone)]
pub struct Client {
    authority: String,
    api_key: Option<String>,
}

impl Client {
    /// `http://host:port` (or `host:port`).
    pub fn new(url: &str) -> Result<Client, ClientError> {
        let rest = url
            .strip_prefix("http://")
            .unwrap_or(url)
            .trim_end_matches('/');
        if rest.is_empty()
            || rest.contains('/')
            || !rest.contains(':')
            || url.starts_with("https://")
        {
            return Err(ClientError::BadUrl(url.into()));
        }
        Ok(Client {
            authority: rest.to_string(),
            api_key: None,
        })
    }

    /// Send `Authorization: Bearer <key>` with every request.
    pub fn with_api_key(mut self, key: Option<String>) -> Client {
        self.api_key = key.filter(|k| !k.is_empty());
        self
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub async fn get(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.json(Method::GET, path, None, Vec::new()).await
    }

    pub async fn delete(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.json(Method::DELETE, path, None, Vec::new()).await
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ClientError> {
        self.json(Method::POST, path, Some(content_type), body)
            .await
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ClientError> {
        let (status, bytes) = self.send(method, path, content_type, body).await?;
        if !status.is_success() {
            let mut message = String::from_utf8_lossy(&bytes).trim().to_string();
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                message.push_str(" (give an admin API key with --api-key or TSUNAGI_API_KEY)");
            }
            return Err(ClientError::Status { status, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Body(e.to_string()))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let connect = tokio::net::TcpStream::connect(&self.authority);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| ClientError::Timeout(self.authority.clone()))?
            .map_err(|e| ClientError::Connect {
                addr: self.authority.clone(),
                reason: e.to_string(),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        if let Some(key) = &self.api_key {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let answer = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, bytes))
        };
        tokio::time::timeout(RESPONSE_TIMEOUT, answer)
            .await
            .map_err(|_| ClientError::Timeout(self.authority.clone()))?
            .map_err(|e| ClientError::Http(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls() {
        assert_eq!(
            Client::new("http://127.0.0.1:8080/").unwrap().authority(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            Client::new("gw.local:80").unwrap().authority(),
            "gw.local:80"
        );
        assert!(Client::new("https://gw:443").is_err());
        assert!(Client::new("http://gw:80/admin").is_err());
        assert!(Client::new("gw").is_err());
    }
}
