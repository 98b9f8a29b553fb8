//! `GET /ws`: the WebSocket upgrade for native clients, then the connection task.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use roomcast_engine::driver::{self, Session};
use roomcast_engine::rooms::{ConnId, WireFormat};
use roomcast_engine::OutQueue;

use crate::api_keys::bearer;
use crate::app::App;
use crate::backend::Handshake;
use crate::native::control::NativeControl;
use crate::native::session::NativeSession;
use crate::web::{error_response, query_param};

/// Checks the upgrade request, answers 101, and runs the connection once hyper hands the
/// socket over. A token may come as `Authorization: Bearer` or `?token=`; without one the
/// client must send an `auth` frame first.
pub fn upgrade(app: Arc<App>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    if app.shutting_down() {
        return error_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "server shutting down",
        );
    }
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned)
        .or_else(|| query_param(req.uri(), "token"));
    // Positions of auto-joined rooms to resume: `?since=` holds `auth.since`'s JSON object.
    let since = match query_param(req.uri(), "since") {
        None => None,
        Some(text) => {
            let parsed = serde_json::from_str::<&serde_json::value::RawValue>(&text)
                .map_err(|_| "`since` must be a JSON object".to_owned())
                .and_then(|raw| crate::proto::room_positions(Some(raw)));
            match parsed {
                Ok(since) => since,
                Err(message) => {
                    return error_response(http::StatusCode::BAD_REQUEST, "bad_request", &message)
                }
            }
        }
    };
    // The connect proxy's question, asked once the connection is upgraded: a handshake
    // without a token (or every one, in `only` mode).
    let proxied = app
        .backends
        .connect_proxy()
        .filter(|proxy| proxy.applies(token.is_some()))
        .map(|proxy| {
            let (head, _) = Request::new(()).into_parts();
            let mut head = head;
            head.headers = req.headers().clone();
            head.uri = req.uri().clone();
            proxy.body(&Handshake {
                transport: "websocket",
                namespace: None,
                head: &head,
                auth: None,
            })
        });
    // Counted from the 101 on, so that a shutdown starting now still waits for this one and
    // asks it to close.
    let queue = Arc::new(OutQueue::new(app.queue_limits));
    let id = ConnId::next();
    let control = Arc::new(NativeControl::new(id, &queue));
    let tracked = app.index.track(id, WireFormat::Native, control);
    let run = move |stream, prefix| async move {
        let now = Instant::now();
        let mut session = NativeSession::new(app.clone(), id, queue.clone(), tracked, now);
        if let Some(body) = proxied {
            // Before the driver runs: what the client sends meanwhile waits in the socket, and
            // the proxy's own timeout bounds the wait.
            let verdict = app.backends.check_connect(&app.verifier, body).await;
            session.authenticate_proxied(verdict, since, Instant::now());
        } else if let Some(token) = token {
            session.authenticate(&token, since, now);
        }
        let session = Session {
            handler: session,
            queue,
            config: app.driver.clone(),
            stats: app.metrics.io.clone(),
        };
        driver::run(stream, prefix, session).await;
    };
    match roomcast_engine::upgrade::upgrade(&mut req, run) {
        Ok(response) => response,
        Err(e) => e.reject_response(),
    }
}
