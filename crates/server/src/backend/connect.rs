//! The connect proxy: a handshake (chosen cookies, headers and query parameters, and the
//! Socket.IO `CONNECT` auth payload) posted to a backend that answers with the identity it
//! grants, or refuses. Its answer becomes the same [`Identity`] a JWT gives, through the same
//! claim names (`auth.user_claim`, `auth.tenant_claim`, `auth.roles_claim`), so auto-join
//! templates and the room ACL read it alike; its `expires_at` acts as a token's `exp`.
//!
//! The answer contract: 200 `{"user": "7", "tenant": "acme", "claims": {...}, "expires_at":
//! 1767225600}` (`tenant` optional with `auth.default_tenant`, `claims` and `expires_at`
//! optional). 401: the handshake carries no credentials the backend knows (the client may still
//! present a token where the mode allows). 403 or another 4xx: refused, with an optional
//! `{"error": {"message": ...}}` or `{"message": ...}`. Anything else, or no answer within
//! `timeout_ms`: the backend is unavailable and the client is told so. Nothing is cached: each
//! handshake is asked about once, and the backend's answer is always current.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;

use super::client::{self, HttpClient, PostError, Target};
use super::metrics::{BackendMetrics, Outcome};
use super::sign::Secret;
use crate::auth::{AuthError, Identity, Verifier};
use crate::client::Refusal;
use crate::config::{AuthConfig, ConnectProxyConfig, ProxyMode};

/// The configured connect proxy.
#[derive(Debug)]
pub struct ConnectProxy {
    uri: http::Uri,
    secret: Secret,
    /// Origins allowed besides the server's own host; `*` any.
    origins: Vec<String>,
    mode: ProxyMode,
    timeout: Duration,
    max_answer_bytes: usize,
    cookies: Vec<String>,
    headers: Vec<http::HeaderName>,
    query: Vec<String>,
    permits: Arc<Semaphore>,
    /// The claim names the answer's `user` and `tenant` are stored under.
    user_claim: String,
    tenant_claim: String,
}

/// What the handshake looked like, to post.
#[derive(Debug)]
pub struct Handshake<'a> {
    /// `"websocket"` (native `/ws`) or `"socketio"`.
    pub transport: &'static str,
    /// The Socket.IO namespace; `None` for native connections.
    pub namespace: Option<&'a str>,
    /// The request head (its headers and URI).
    pub head: &'a http::request::Parts,
    /// The Socket.IO `CONNECT` payload, if any.
    pub auth: Option<&'a serde_json::value::RawValue>,
}

impl ConnectProxy {
    /// The proxy of `config`, `None` when the URL does not parse (checked at start already).
    pub(crate) fn new(
        config: &ConnectProxyConfig,
        auth: &AuthConfig,
        cors_origins: &[String],
    ) -> Option<ConnectProxy> {
        Some(ConnectProxy {
            uri: config.url.parse().ok()?,
            secret: Secret::new(&config.secret),
            origins: config
                .origins
                .clone()
                .unwrap_or_else(|| cors_origins.to_vec()),
            mode: config.mode,
            timeout: Duration::from_millis(config.timeout_ms),
            max_answer_bytes: config.max_response_bytes,
            cookies: config.cookies.clone(),
            headers: config
                .headers
                .iter()
                .filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            query: config.query.clone(),
            permits: Arc::new(Semaphore::new(
                config.max_in_flight.min(Semaphore::MAX_PERMITS),
            )),
            user_claim: auth.user_claim.clone(),
            tenant_claim: auth.tenant_claim.clone(),
        })
    }

    /// Whether a client that presented a token (`has_token`) is authenticated by the proxy.
    pub fn applies(&self, has_token: bool) -> bool {
        self.mode == ProxyMode::Only || !has_token
    }

    /// Whether the proxy decides every client (a 401 then ends the attempt).
    pub fn only(&self) -> bool {
        self.mode == ProxyMode::Only
    }

    /// Whether a handshake with these headers may be authenticated by the proxy: it has no
    /// `Origin` (not a browser), or its origin is listed, or it is the server's own (the
    /// `Host` the request was sent to).
    fn origin_allowed(&self, headers: &http::HeaderMap) -> bool {
        let Some(origin) = headers.get(http::header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self.origins.iter().any(|o| o == "*" || o == origin) {
            return true;
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let origin_host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        host.is_some() && origin_host == host
    }

    /// The body posted for `handshake`: what the configuration forwards of it, and its
    /// `Origin`. Refused when its origin may not connect through the proxy.
    pub fn body(&self, handshake: &Handshake<'_>) -> Result<Vec<u8>, Refusal> {
        let head = handshake.head;
        if !self.origin_allowed(&head.headers) {
            return Err(Refusal::ProxyRefused {
                unauthenticated: false,
                message: Some("origin not allowed".into()),
            });
        }
        let origin = head
            .headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let mut cookies = Map::new();
        let all = self.cookies.iter().any(|c| c == "*");
        for header in head.headers.get_all(http::header::COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if all || self.cookies.iter().any(|c| c == name) {
                    cookies.insert(name.to_owned(), Value::String(value.to_owned()));
                }
            }
        }
        let mut headers = Map::new();
        for name in &self.headers {
            if let Some(value) = head.headers.get(name).and_then(|v| v.to_str().ok()) {
                headers.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
            }
        }
        let mut query = Map::new();
        let pairs = form_urlencoded::parse(head.uri.query().unwrap_or_default().as_bytes());
        for (name, value) in pairs {
            if self.query.iter().any(|q| *q == name) {
                query.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
        let auth = handshake
            .auth
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
        Ok(json!({
            "transport": handshake.transport,
            "namespace": handshake.namespace,
            "origin": origin,
            "cookies": cookies,
            "headers": headers,
            "query": query,
            "auth": auth,
        })
        .to_string()
        .into_bytes())
    }

    /// Posts `body` and reads the identity the answer grants, or the refusal to tell.
    pub(crate) async fn check(
        &self,
        http: &HttpClient,
        metrics: &BackendMetrics,
        verifier: &Verifier,
        body: Vec<u8>,
    ) -> Result<Identity, Refusal> {
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            metrics.connect(Outcome::Busy);
            return Err(Refusal::ProxyUnavailable);
        };
        let target = Target {
            uri: self.uri.clone(),
            secret: &self.secret,
            timeout: self.timeout,
            max_answer_bytes: self.max_answer_bytes,
        };
        let answer = client::post(http, target, body).await;
        let verdict = self.read(answer, verifier);
        metrics.connect(match &verdict {
            Ok(_) => Outcome::Ok,
            Err(Refusal::ProxyRefused { .. } | Refusal::TokenExpired) => Outcome::Refused,
            Err(_) => Outcome::Unavailable,
        });
        verdict
    }

    fn read(
        &self,
        answer: Result<client::Answer, PostError>,
        verifier: &Verifier,
    ) -> Result<Identity, Refusal> {
        let answer = answer.map_err(|e| {
            // Per handshake, and counted in the metrics: no log flood while it is down.
            tracing::debug!(error = %e, "connect proxy call failed");
            Refusal::ProxyUnavailable
        })?;
        let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
        let status = answer.status;
        if status.is_client_error() {
            let message = body.as_ref().and_then(message_of);
            return Err(Refusal::ProxyRefused {
                unauthenticated: status == http::StatusCode::UNAUTHORIZED,
                message,
            });
        }
        let Some(Value::Object(granted)) = body.filter(|_| status.is_success()) else {
            tracing::debug!(%status, "connect proxy answered no identity");
            return Err(Refusal::ProxyUnavailable);
        };
        self.identity(granted, verifier)
    }

    /// The identity of a 200 answer, through the claim names of `[auth]`.
    fn identity(
        &self,
        mut granted: Map<String, Value>,
        verifier: &Verifier,
    ) -> Result<Identity, Refusal> {
        let mut claims = match granted.remove("claims") {
            Some(Value::Object(claims)) => claims,
            _ => Map::new(),
        };
        for (field, claim) in [("user", &self.user_claim), ("tenant", &self.tenant_claim)] {
            if let Some(value) = granted.remove(field).filter(|v| !v.is_null()) {
                claims.insert(claim.clone(), value);
            }
        }
        match granted.remove("expires_at") {
            Some(exp @ Value::Number(_)) => {
                claims.insert("exp".into(), exp);
            }
            _ => {
                claims.remove("exp");
            }
        }
        let identity = verifier.identity_of(claims).map_err(|e| {
            tracing::warn!(error = %e, "connect proxy answered an unusable identity");
            Refusal::TokenInvalid(e)
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if verifier.expired(identity.expires_at, now) {
            return Err(Refusal::from_auth(AuthError::Expired));
        }
        Ok(identity)
    }
}

/// `error.message`, `error` or `message` of a refusal's body.
fn message_of(body: &Value) -> Option<String> {
    let message = match body.get("error") {
        Some(Value::Object(error)) => error.get("message"),
        Some(message @ Value::String(_)) => Some(message),
        _ => body.get("message"),
    };
    let text = message?.as_str()?.trim();
    (!text.is_empty()).then(|| text.chars().take(256).collect())
}
