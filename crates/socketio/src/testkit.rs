//! Test helpers: in-memory HTTP requests to an endpoint, as a polling client makes them, and
//! a heartbeat clock the test ticks by hand.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;

use crate::engine::{EngineHandler, EngineIo, Resp};
use crate::io::SocketIo;

/// Something that answers requests.
pub(crate) trait Endpoint {
    fn call(&self, req: Request<Full<Bytes>>) -> impl Future<Output = Resp> + Send;
    fn path(&self) -> String;
}

impl<H: EngineHandler> Endpoint for Arc<EngineIo<H>> {
    fn call(&self, req: Request<Full<Bytes>>) -> impl Future<Output = Resp> + Send {
        let this = self.clone();
        async move { this.handle_request(req).await }
    }

    fn path(&self) -> String {
        self.config().path.clone()
    }
}

impl Endpoint for Arc<SocketIo> {
    fn call(&self, req: Request<Full<Bytes>>) -> impl Future<Output = Resp> + Send {
        let engine = self.engine().clone();
        async move { engine.handle_request(req).await }
    }

    fn path(&self) -> String {
        self.config().path.clone()
    }
}

/// An answer: status and body as text.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

pub(crate) async fn request<E: Endpoint>(
    endpoint: &E,
    method: Method,
    query: &str,
    body: &str,
    origin: Option<&str>,
) -> Answer {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("{}?{query}", endpoint.path()));
    if let Some(origin) = origin {
        builder = builder.header(http::header::ORIGIN, origin);
    }
    let req = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("valid request");
    let resp = endpoint.call(req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("in-memory body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).expect("text body"),
    }
}

/// Opens a polling session; its sid and the handshake's body.
pub(crate) async fn handshake<E: Endpoint>(endpoint: &E) -> (String, String) {
    let answer = request(endpoint, Method::GET, "EIO=4&transport=polling", "", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let open: serde_json::Value =
        serde_json::from_str(answer.body.strip_prefix('0').expect("open packet"))
            .expect("open JSON");
    let sid = open["sid"].as_str().expect("sid").to_owned();
    (sid, answer.body)
}

pub(crate) async fn get<E: Endpoint>(endpoint: &E, sid: &str) -> Answer {
    let query = format!("EIO=4&transport=polling&sid={sid}");
    request(endpoint, Method::GET, &query, "", None).await
}

pub(crate) async fn post<E: Endpoint>(endpoint: &E, sid: &str, body: &str) -> Answer {
    let query = format!("EIO=4&transport=polling&sid={sid}");
    request(endpoint, Method::POST, &query, body, None).await
}

/// Lets spawned tasks (a pending GET) run up to their next wait: the tests run on the
/// current-thread runtime, so this is deterministic.
pub(crate) async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// A heartbeat clock for the endpoint: `send(Instant::now())` ticks it.
pub(crate) fn clock() -> (watch::Sender<Instant>, watch::Receiver<Instant>) {
    watch::channel(Instant::now())
}
