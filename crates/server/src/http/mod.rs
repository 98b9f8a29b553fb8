//! The HTTP surface: routing, the JSON API, `/health`, `/metrics` and the `/ws` upgrade.
//!
//! Every API route needs `Authorization: Bearer <api key>`; a tenant key only reaches its own
//! tenant. Errors are JSON `{"error":{"code","message"}}` with a fitting status.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use roomcast_engine::body::BodyError;
use roomcast_engine::rooms::{ConnId, WireFormat};
use roomcast_socketio::ClientAddr;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::api_keys::Principal;
use crate::app::App;
use crate::native::close_request;
use crate::native::proto::{CloseCode, MAX_NAME_BYTES};
use crate::native::session::NativeSession;
use crate::node::{Publication, PublishError};
use roomcast_broker::{Payload, Target};

type Resp = Response<Full<Bytes>>;

/// Most user ids listed per tenant by `GET /api/connections`.
const MAX_LISTED_USERS: usize = 1000;

/// Routes one request.
pub async fn handle(
    app: Arc<App>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(sio) = app.socketio() {
        if sio.matches(&path) {
            // For the bound on pending sessions per address.
            req.extensions_mut().insert(ClientAddr(peer.ip()));
            return Ok(sio.handle(req).await);
        }
    }
    let method = req.method().clone();
    let resp = match (method, path.as_str()) {
        (Method::GET, "/health") => health(&app),
        (Method::GET, "/metrics") => metrics(&app, &req),
        (Method::GET, "/ws") => crate::native::upgrade(app, req),
        (Method::POST, "/api/publish") => match read_call(&app, req).await {
            Ok(call) => api_publish(&app, call)
                .await
                .unwrap_or_else(ApiError::into_response),
            Err(resp) => resp,
        },
        (Method::GET, "/api/connections") => with_principal(&app, req, api_connections).await,
        (Method::POST, "/api/disconnect") => with_principal(&app, req, api_disconnect).await,
        (Method::GET, "/api/info") => with_principal(&app, req, api_info).await,
        (Method::GET, p) if user_status_id(p).is_some() => {
            with_principal(&app, req, api_user_status).await
        }
        (_, p) if user_status_id(p).is_some() => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        ),
        (_, "/health" | "/metrics" | "/ws" | "/api/publish" | "/api/connections")
        | (_, "/api/disconnect" | "/api/info") => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        ),
        _ => error_response(StatusCode::NOT_FOUND, "not_found", "no such route"),
    };
    Ok(resp)
}

/// A JSON error body.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Resp {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The first value of a query parameter, percent-decoded.
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn health(app: &App) -> Resp {
    if app.shutting_down() {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining"}),
        )
    } else {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    }
}

fn metrics(app: &App, req: &Request<Incoming>) -> Resp {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !app.keys.metrics_allowed(auth) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "metrics key required",
        );
    }
    let mut resp = Response::new(Full::new(Bytes::from(
        app.metrics.render(&app.index.tenant_counts()),
    )));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// An authenticated API call: the principal, the request head and its (size-limited) body.
struct Call {
    principal: Principal,
    uri: Uri,
    body: Bytes,
}

async fn with_principal<F>(app: &Arc<App>, req: Request<Incoming>, f: F) -> Resp
where
    F: FnOnce(&App, Call) -> Result<Resp, ApiError>,
{
    match read_call(app, req).await {
        Ok(call) => f(app, call).unwrap_or_else(ApiError::into_response),
        Err(resp) => resp,
    }
}

/// Authenticates an API request and reads its body; `Err` is the response refusing it.
async fn read_call(app: &Arc<App>, req: Request<Incoming>) -> Result<Call, Resp> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(principal) = app.keys.principal(auth) else {
        return Err(error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required",
        ));
    };
    let (parts, body) = req.into_parts();
    let body = match read_body(app, body).await {
        Ok(body) => body,
        Err(resp) => return Err(resp),
    };
    Ok(Call {
        principal,
        uri: parts.uri,
        body,
    })
}

/// Reads an API request's body whole: at most `api.max_body_bytes`, within
/// `limits.body_timeout_ms`, and within the budget of body bytes being read
/// (`limits.max_body_buffer_bytes`); otherwise the error answer (413, 408, 503 or 400).
async fn read_body(app: &App, body: Incoming) -> Result<Bytes, Resp> {
    let limits = &app.config.limits;
    let read = roomcast_engine::body::read(
        body,
        app.config.api.max_body_bytes,
        limits.body_timeout(),
        &app.bodies,
    )
    .await;
    read.map_err(|err| match err {
        BodyError::TooLarge => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body too large",
        ),
        BodyError::Timeout => error_response(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "request body not received in time",
        ),
        BodyError::Busy => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many request bytes in flight; retry later",
        ),
        // A broken body (`BodyError::Read`), or whatever else a later reader may report.
        _ => error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "could not read body",
        ),
    })
}

/// An API error: status, code and message.
#[derive(Debug)]
struct ApiError(StatusCode, &'static str, String);

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, "bad_request", message.into())
    }
    fn forbidden(message: impl Into<String>) -> Self {
        ApiError(StatusCode::FORBIDDEN, "forbidden", message.into())
    }
    fn into_response(self) -> Resp {
        error_response(self.0, self.1, &self.2)
    }
}

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The tenant a call acts on: a tenant key's own, or the one named (required for platform
/// keys unless `optional`).
fn resolve_tenant(principal: &Principal, named: Option<&str>) -> Result<Option<String>, ApiError> {
    match (principal, named) {
        (Principal::Tenant(own), None) => Ok(Some(own.clone())),
        (Principal::Tenant(own), Some(t)) if t == own => Ok(Some(own.clone())),
        (Principal::Tenant(_), Some(_)) => {
            Err(ApiError::forbidden("this key cannot reach that tenant"))
        }
        (Principal::Platform, t) => Ok(t.map(str::to_owned)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody<'a> {
    tenant: Option<String>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    namespace: Option<String>,
    event: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    broadcast: bool,
}

async fn api_publish(app: &App, call: Call) -> Result<Resp, ApiError> {
    let body: PublishBody<'_> = parse_body(&call.body)?;
    check_name("event", &body.event)?;
    if let Some(tenant) = &body.tenant {
        check_name("tenant", tenant)?;
    }
    for r in &body.rooms {
        check_name("room", r)?;
    }
    for u in &body.users {
        check_name("user", u)?;
    }
    let ns = body.namespace.as_deref().unwrap_or("/");
    check_name("namespace", ns)?;
    if !ns.starts_with('/') {
        return Err(ApiError::bad("namespace must start with /"));
    }
    if body.rooms.is_empty() && body.users.is_empty() && !body.broadcast {
        return Err(ApiError::bad("give rooms, users, or broadcast: true"));
    }
    let targets = body.rooms.len() + body.users.len();
    if targets > app.config.limits.max_publish_targets {
        return Err(ApiError::bad(format!(
            "more than limits.max_publish_targets ({}) rooms and users",
            app.config.limits.max_publish_targets
        )));
    }
    let tenant = resolve_tenant(&call.principal, body.tenant.as_deref())?;
    let target = match tenant {
        Some(tenant) if body.broadcast => Target::TenantWide {
            tenant: tenant.into(),
        },
        Some(tenant) => Target::Tenant {
            tenant: tenant.into(),
            rooms: body.rooms.iter().map(|r| r.as_str().into()).collect(),
            users: body.users.iter().map(|u| u.as_str().into()).collect(),
        },
        None if body.broadcast && targets == 0 => Target::Platform,
        None => {
            return Err(ApiError::bad(
                "tenant is required (platform-wide only with broadcast: true alone)",
            ))
        }
    };
    let data = body.data.unwrap_or(RawValue::NULL).to_owned();
    let publication = Publication::new(ns, target, &body.event, Payload::Json(data));
    let published = app.node.publish(publication).await.map_err(|e| match e {
        PublishError::TooManyTargets(_) | PublishError::TooDeep => ApiError::bad(e.to_string()),
        PublishError::Broker(e) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    })?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"ok": true, "delivered": published.delivered}),
    ))
}

fn api_connections(app: &App, call: Call) -> Result<Resp, ApiError> {
    let named = query_param(&call.uri, "tenant");
    let tenant = resolve_tenant(&call.principal, named.as_deref())?;
    let counts: Vec<_> = app
        .index
        .tenant_counts()
        .into_iter()
        .filter(|c| tenant.as_ref().is_none_or(|t| *t == c.tenant))
        .collect();
    let total: usize = counts.iter().map(|c| c.connections).sum();
    let tenants: Vec<_> = counts
        .iter()
        .map(|c| {
            json!({
                "tenant": c.tenant,
                "connections": c.connections,
                "users": c.users,
                "user_ids": app.index.users(&c.tenant, MAX_LISTED_USERS),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"connections": total, "tenants": tenants}),
    ))
}

fn user_status_id(path: &str) -> Option<String> {
    let id = path.strip_prefix("/api/users/")?.strip_suffix("/status")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn api_user_status(app: &App, call: Call) -> Result<Resp, ApiError> {
    let Some(user) = user_status_id(call.uri.path()) else {
        return Err(ApiError::bad("bad user id"));
    };
    let named = query_param(&call.uri, "tenant");
    let Some(tenant) = resolve_tenant(&call.principal, named.as_deref())? else {
        return Err(ApiError::bad(
            "tenant query parameter is required with a platform key",
        ));
    };
    let sessions: Vec<String> = app
        .index
        .user_connections(&tenant, &user)
        .into_iter()
        .map(NativeSession::session_id)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "tenant": tenant,
            "user": user,
            "online": !sessions.is_empty(),
            "connections": sessions.len(),
            "sessions": sessions,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    tenant: Option<String>,
    user: Option<String>,
    session: Option<String>,
    reason: Option<String>,
}

fn api_disconnect(app: &App, call: Call) -> Result<Resp, ApiError> {
    let body: DisconnectBody = parse_body(&call.body)?;
    let reason = body
        .reason
        .as_deref()
        .unwrap_or("disconnected by the server");
    let targets: Vec<ConnId> = match (&body.user, &body.session) {
        (Some(user), None) => {
            let Some(tenant) = resolve_tenant(&call.principal, body.tenant.as_deref())? else {
                return Err(ApiError::bad("tenant is required with a platform key"));
            };
            app.index.user_connections(&tenant, user)
        }
        (None, Some(session)) => {
            let id = u64::from_str_radix(session, 16)
                .map(ConnId)
                .map_err(|_| ApiError::bad("unknown session"))?;
            // Another tenant's session looks exactly like an unknown one to a tenant key.
            match app.index.member(id) {
                Some((_, tenant, _)) if resolve_tenant(&call.principal, Some(&tenant)).is_ok() => {
                    vec![id]
                }
                _ => vec![],
            }
        }
        _ => return Err(ApiError::bad("give exactly one of user or session")),
    };
    let mut n = 0;
    for id in targets {
        let Some((member, _, _)) = app.index.member(id) else {
            continue;
        };
        match member.format {
            WireFormat::SocketIo => {
                // A Socket.IO socket leaves its namespace with DISCONNECT ("io server
                // disconnect").
                if let Some(socket) = app.socketio().and_then(|sio| sio.socket(id)) {
                    socket.disconnect();
                    n += 1;
                }
            }
            WireFormat::Native => {
                member
                    .queue
                    .request_close(close_request(CloseCode::Disconnected, reason));
                n += 1;
            }
        }
    }
    Ok(json_response(StatusCode::OK, &json!({"disconnected": n})))
}

fn api_info(app: &App, call: Call) -> Result<Resp, ApiError> {
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
