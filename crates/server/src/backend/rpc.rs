//! RPC calls: a client's event (Socket.IO) or `rpc` command (native) posted to a named backend
//! with the caller's identity, and the backend's answer read as a result, a refusal, or a
//! failure. Bounded per backend on this node (`max_in_flight`: a call past it is refused at
//! once, as `busy`), in time (`timeout_ms`) and in answer size (`max_response_bytes`).
//!
//! The answer contract: a 2xx answer is the result: the value of its `result` member when it is
//! an object with one, else the whole JSON body (an empty body is `null`). A 4xx answer is a
//! refusal: `{"error": {"code": "...", "message": "..."}}`, or `{"error": "..."}`, or
//! `{"message": "..."}`. Anything else (5xx, no JSON on a 2xx, no connection) is a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;

use super::client::{self, HttpClient, PostError, Target};
use super::metrics::{BackendMetrics, Outcome};
use super::sign::Secret;
use crate::auth::SessionIdentity;
use crate::config::BackendConfig;

/// The longest refusal message or code passed on to the client, in bytes.
const MAX_REFUSAL_BYTES: usize = 512;

/// Why a call brought no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// The backend refused: its code (default `refused`) and message.
    Refused {
        /// The backend's code.
        code: String,
        /// The backend's message.
        message: String,
    },
    /// The backend is down, failed (5xx) or answered something that is not JSON.
    Unavailable,
    /// The backend did not answer within its timeout.
    Timeout,
}

/// One configured backend.
#[derive(Debug)]
pub struct RpcBackend {
    name: String,
    url: String,
    secret: Secret,
    timeout: Duration,
    max_answer_bytes: usize,
    claims: Vec<String>,
    permits: Arc<Semaphore>,
}

/// What is posted: which event or method, from where, with which arguments.
#[derive(Debug, Clone)]
pub struct RpcCall {
    /// `"event"` (Socket.IO) or `"method"` (native `rpc`).
    pub kind: &'static str,
    /// The event or method name.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// The caller's session: its Socket.IO socket id, or its native session id.
    pub session: String,
    /// The arguments.
    pub args: Vec<Value>,
}

impl RpcBackend {
    pub(crate) fn new(name: &str, config: &BackendConfig) -> RpcBackend {
        RpcBackend {
            name: name.to_owned(),
            url: config.url.clone(),
            secret: Secret::new(&config.secret),
            timeout: Duration::from_millis(config.timeout_ms),
            max_answer_bytes: config.max_response_bytes,
            claims: config.claims.clone(),
            permits: Arc::new(Semaphore::new(
                config.max_in_flight.min(Semaphore::MAX_PERMITS),
            )),
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The body posted for `call` by `identity`.
    fn body(&self, identity: &SessionIdentity, call: RpcCall) -> Vec<u8> {
        let claims: Map<String, Value> = self
            .claims
            .iter()
            .filter_map(|name| Some((name.clone(), identity.claims.get(name)?.clone())))
            .collect();
        let body = json!({
            call.kind: call.name,
            "namespace": call.namespace,
            "session": call.session,
            "user": &*identity.user,
            "tenant": &*identity.tenant,
            "claims": claims,
            "args": call.args,
        });
        body.to_string().into_bytes()
    }

    /// Starts a call to `path` of this backend: `None` when `max_in_flight` calls are running
    /// already (nothing was sent); otherwise the future of its outcome, which counts itself in
    /// `metrics` when it completes.
    pub(crate) fn start(
        self: &Arc<Self>,
        http: &HttpClient,
        metrics: &Arc<BackendMetrics>,
        path: &str,
        identity: &SessionIdentity,
        call: RpcCall,
    ) -> Option<impl std::future::Future<Output = Result<Value, RpcError>> + Send + 'static> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            metrics.call(&self.name, Outcome::Busy, Duration::ZERO);
            return None;
        };
        let body = self.body(identity, call);
        let uri = client::join(&self.url, path);
        let (backend, http, metrics) = (self.clone(), http.clone(), metrics.clone());
        Some(async move {
            let _permit = permit;
            let started = Instant::now();
            let answer = match uri {
                Ok(uri) => {
                    let target = Target {
                        uri,
                        secret: &backend.secret,
                        timeout: backend.timeout,
                        max_answer_bytes: backend.max_answer_bytes,
                    };
                    client::post(&http, target, body).await
                }
                Err(e) => Err(e),
            };
            let result = read_answer(&backend.name, answer);
            let outcome = match &result {
                Ok(_) => Outcome::Ok,
                Err(RpcError::Refused { .. }) => Outcome::Refused,
                Err(RpcError::Timeout) => Outcome::Timeout,
                Err(RpcError::Unavailable) => Outcome::Unavailable,
            };
            metrics.call(&backend.name, outcome, started.elapsed());
            result
        })
    }
}

/// The result, refusal or failure an answer means (see the module's contract).
fn read_answer(
    backend: &str,
    answer: Result<client::Answer, PostError>,
) -> Result<Value, RpcError> {
    let answer = match answer {
        Ok(answer) => answer,
        Err(PostError::Timeout) => return Err(RpcError::Timeout),
        Err(e) => {
            // Per call, and counted in the metrics: a dead backend must not flood the log.
            tracing::debug!(backend, error = %e, "backend call failed");
            return Err(RpcError::Unavailable);
        }
    };
    let json = || -> Option<Value> {
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Some(Value::Null);
        }
        serde_json::from_slice(&answer.body).ok()
    };
    if answer.status.is_success() {
        return match json() {
            Some(Value::Object(mut map)) if map.contains_key("result") => {
                Ok(map.remove("result").unwrap_or(Value::Null))
            }
            Some(value) => Ok(value),
            None => {
                tracing::debug!(backend, "backend answered a body that is not JSON");
                Err(RpcError::Unavailable)
            }
        };
    }
    if answer.status.is_client_error() {
        return Err(refusal(json().unwrap_or(Value::Null)));
    }
    tracing::debug!(backend, status = %answer.status, "backend failed");
    Err(RpcError::Unavailable)
}

/// The code and message of a 4xx answer's body.
fn refusal(body: Value) -> RpcError {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(clip);
    let (code, message) = match &body {
        Value::Object(map) => match map.get("error") {
            Some(Value::Object(error)) => (text(error.get("code")), text(error.get("message"))),
            Some(Value::String(message)) => (None, Some(clip(message))),
            _ => (text(map.get("code")), text(map.get("message"))),
        },
        _ => (None, None),
    };
    RpcError::Refused {
        code: code.unwrap_or_else(|| "refused".into()),
        message: message.unwrap_or_else(|| "refused by the backend".into()),
    }
}

/// At most [`MAX_REFUSAL_BYTES`] of `text`, cut at a character boundary.
fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_REFUSAL_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hyper::StatusCode;

    fn read(status: u16, body: &str) -> Result<Value, RpcError> {
        let status = StatusCode::from_u16(status).unwrap();
        let answer = client::Answer {
            status,
            body: Bytes::from(body.to_owned()),
        };
        read_answer("b", Ok(answer))
    }

    #[test]
    fn a_2xx_answer_is_its_result_member_or_the_whole_body() {
        assert_eq!(read(200, r#"{"result":{"n":1}}"#), Ok(json!({"n": 1})));
        assert_eq!(read(200, r#"{"n":1}"#), Ok(json!({"n": 1})));
        assert_eq!(read(204, ""), Ok(Value::Null));
        assert_eq!(read(200, "[1,2]"), Ok(json!([1, 2])));
        assert_eq!(read(200, "<html>"), Err(RpcError::Unavailable));
    }

    #[test]
    fn a_4xx_answer_is_a_refusal_with_the_backends_words() {
        let refused = |code: &str, message: &str| RpcError::Refused {
            code: code.into(),
            message: message.into(),
        };
        assert_eq!(
            read(
                403,
                r#"{"error":{"code":"forbidden","message":"not yours"}}"#
            ),
            Err(refused("forbidden", "not yours"))
        );
        assert_eq!(
            read(404, r#"{"error":"no such report"}"#),
            Err(refused("refused", "no such report"))
        );
        assert_eq!(
            read(400, "not json"),
            Err(refused("refused", "refused by the backend"))
        );
        let long = format!(r#"{{"message":"{}"}}"#, "é".repeat(400));
        let Err(RpcError::Refused { message, .. }) = read(422, &long) else {
            panic!("a refusal");
        };
        assert!(message.len() <= MAX_REFUSAL_BYTES);
    }

    #[test]
    fn failures_are_unavailable_or_timeout() {
        assert_eq!(read(500, r#"{"error":"boom"}"#), Err(RpcError::Unavailable));
        assert_eq!(read(302, ""), Err(RpcError::Unavailable));
        assert_eq!(
            read_answer("b", Err(PostError::Timeout)),
            Err(RpcError::Timeout)
        );
        let down = PostError::Unreachable("connection refused".into());
        assert_eq!(read_answer("b", Err(down)), Err(RpcError::Unavailable));
        assert_eq!(
            read_answer("b", Err(PostError::TooLarge(10))),
            Err(RpcError::Unavailable)
        );
    }
}
