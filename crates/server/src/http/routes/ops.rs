//! The routes for operators: `GET /health` (no key; 503 while draining), `GET /metrics`
//! (Prometheus text, behind `api.metrics_key` when set) and `GET /api/info`.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use crate::api_keys::Principal;
use crate::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::web::{json_response, Resp};

/// `GET /health`: `{"status":"ok","broker":{...}}`; `"degraded"` (still 200: the node serves
/// its own clients) while the broker cannot reach the other nodes, an `[ingest]` source its
/// message broker (listed under `"ingest"`), or the inbox's last operation failed (`"inbox"`);
/// 503 `"draining"` once shutdown began.
pub(crate) fn health(app: &App) -> Resp {
    let (status, body) = health_report(app);
    json_response(status, &body)
}

/// The status and body of `GET /health`.
pub(crate) fn health_report(app: &App) -> (StatusCode, serde_json::Value) {
    let broker = app.node.broker().status();
    let (ingest_up, ingest) = app.ingest.health();
    let body = |status: &str| {
        let mut body = json!({
            "status": status,
            "broker": {
                "kind": broker.kind,
                "state": if broker.degraded.is_some() { "degraded" } else { "up" },
                "reason": broker.degraded,
                "local_only_publishes": broker.local_only,
            },
        });
        if !ingest.is_empty() {
            body["ingest"] = ingest.clone().into();
        }
        if let Some(inbox) = app.inbox() {
            body["inbox"] = json!({
                "database": inbox.database(),
                "state": if inbox.metrics.failing() { "degraded" } else { "up" },
                "failed_operations": inbox.metrics.failed(),
            });
        }
        body
    };
    if app.shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, body("draining"))
    } else if broker.degraded.is_some()
        || !ingest_up
        || app.inbox().is_some_and(|i| i.metrics.failing())
    {
        (StatusCode::OK, body("degraded"))
    } else {
        (StatusCode::OK, body("ok"))
    }
}

/// `GET /metrics`: the counters in the Prometheus text format, then the process's own.
pub(crate) fn metrics(app: &App, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !app.keys.metrics_allowed(auth) {
        return Err(ApiError::NoMetricsKey);
    }
    let mut text = app
        .metrics
        .render(&app.index.tenant_counts(), &app.node.broker().status());
    if let Some(cluster) = app.cluster() {
        crate::metrics::render_emitters(
            &mut text,
            cluster
                .emitters
                .handled
                .load(std::sync::atomic::Ordering::Relaxed),
            &cluster.emitters.dropped(),
        );
    }
    app.ingest.render_metrics(&mut text);
    app.lifecycle.render_metrics(&mut text);
    app.backends.metrics.render(&mut text);
    if let Some(inbox) = app.inbox() {
        inbox.metrics.render(&mut text);
    }
    if let Some(store) = app.history_store.get() {
        let (rooms, not_kept) = store.history_counts();
        crate::metrics::render_history(&mut text, rooms as u64, not_kept);
    }
    crate::metrics::render_process(&mut text);
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(resp)
}

/// `GET /api/info`: name, version, epoch, uptime and the connections the key can see.
pub(crate) fn info(app: &App, call: Call) -> Result<Resp, ApiError> {
    let connections = match &call.principal {
        Principal::Platform => app.index.connection_count(),
        Principal::Tenant(tenant) => app.index.tenant_connection_count(tenant),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "name": "roomcast",
            "version": env!("CARGO_PKG_VERSION"),
            "epoch": app.epoch,
            "uptime_secs": app.started.elapsed().as_secs(),
            "connections": connections,
            "protocols": ["roomcast.v1"],
            "draining": app.shutting_down(),
        }),
    ))
}
