//! A real HTTP backend for the RPC and connect proxy tests, on `127.0.0.1:0`: it checks each
//! request's signature the way a backend is told to, and answers by path.
//!
//! - `/ok`: 200 `{"result": {"signed", "body"}}`, the body it was posted, and whether its
//!   signature verified;
//! - `/refuse`: 403 `{"error": {"code": "not_found", "message": "no such report"}}`;
//! - `/slow`: answers after ten seconds (past every test's backend timeout);
//! - `/fail`: 500;
//! - `/connect`: the connect proxy: cookie `session_id=good` is user 7 of `acme` with claim
//!   `company_id = 3`; no `session_id` is 401; another is 403 "session expired";
//! - `/hooks`: a lifecycle webhook's receiver: keeps the events of each signed post;
//!   `/hooks-flaky` answers its first two posts 503, then as `/hooks`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::Sha256;

use super::now_unix;

/// The secret shared with the test backends.
pub(crate) const BACKEND_SECRET: &str = "backend-secret-0123456789";

/// A running backend; it stops with the test's runtime.
#[derive(Debug)]
pub(crate) struct Backend {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    hooks: Arc<Hooks>,
}

/// What `/hooks` was posted.
#[derive(Debug, Default)]
struct Hooks {
    events: Mutex<Vec<Value>>,
    flaky_posts: Mutex<u32>,
}

impl Backend {
    /// Starts the backend.
    pub(crate) async fn start() -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the backend");
        let addr = listener.local_addr().expect("the backend's address");
        let hooks = Arc::new(Hooks::default());
        let kept = hooks.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let hooks = kept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, hooks.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend { addr, hooks }
    }

    /// The lifecycle events `/hooks` has kept so far, in the order they came.
    pub(crate) fn hook_events(&self) -> Vec<Value> {
        self.hooks.events.lock().expect("hooks").clone()
    }

    /// Waits until `/hooks` has kept events matching `done`, within 15 s.
    pub(crate) async fn hooks_until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..300 {
            let events = self.hook_events();
            if done(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the webhook's events never came: {:?}", self.hook_events());
    }

    /// Its base URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A URL where nothing listens: a port bound, then let go.
pub(crate) fn down_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    format!("http://{addr}")
}

/// Whether `signature` is the HMAC-SHA256 of `<timestamp>.<body>`, and the timestamp recent:
/// what a backend checks.
fn verified(timestamp: &str, signature: &str, body: &[u8]) -> bool {
    let Ok(at) = timestamp.parse::<u64>() else {
        return false;
    };
    if now_unix().abs_diff(at) > 300 {
        return false;
    }
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(BACKEND_SECRET.as_bytes()).expect("any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

async fn answer(
    req: Request<Incoming>,
    hooks: Arc<Hooks>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (timestamp, signature) = (
        header("x-roomcast-timestamp"),
        header("x-roomcast-signature"),
    );
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let signed = verified(&timestamp, &signature, &body);
    let posted: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer) = match path.as_str() {
        _ if !signed => (401, json!({"error": {"message": "bad signature"}})),
        "/ok" => (200, json!({"result": {"signed": signed, "body": posted}})),
        "/refuse" => (
            403,
            json!({"error": {"code": "not_found", "message": "no such report"}}),
        ),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            (200, json!({"result": "late"}))
        }
        "/connect" => connect(&posted),
        "/hooks-flaky"
            if {
                let mut posts = hooks.flaky_posts.lock().expect("hooks");
                *posts += 1;
                *posts <= 2
            } =>
        {
            (503, json!({"error": "not yet"}))
        }
        "/hooks" | "/hooks-flaky" => {
            let events = posted["events"].as_array().cloned().unwrap_or_default();
            hooks.events.lock().expect("hooks").extend(events);
            (200, json!({}))
        }
        _ => (500, json!({"error": "boom"})),
    };
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("a status");
    Ok(response)
}

fn connect(posted: &Value) -> (u16, Value) {
    match posted["cookies"]["session_id"].as_str() {
        None => (401, json!({"error": {"message": "not logged in"}})),
        Some("good") => (
            200,
            json!({"user": "7", "tenant": "acme", "claims": {"company_id": 3},
                   "expires_at": now_unix() + 3600}),
        ),
        Some(_) => (403, json!({"error": {"message": "session expired"}})),
    }
}
