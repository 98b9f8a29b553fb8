//! The HTTP surface: routing to the JSON API, `/health`, `/metrics`, the native `/ws` upgrade,
//! the Socket.IO endpoint, and the configured `[[api.routes]]` (`compat`).
//!
//! Every API route needs `Authorization: Bearer <api key>` (`call`); a tenant key only
//! reaches its own tenant. Handlers live per area in `routes`; every refusal is an `ApiError`
//! (`error`), told as JSON `{"error":{"code","message"}}` with the status of its one table.

mod call;
mod compat;
mod error;
mod routes;

pub use compat::ApiRoutes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::Method;
use hyper::body::Incoming;
use hyper::Request;
use roomcast_socketio::ClientAddr;

use crate::app::App;
use crate::web::Resp;
use call::Call;
use error::ApiError;
use routes::{connections, history, inbox, ops, publish};

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
    let req = match app.routes.serve(&app, req).await {
        Ok(answer) => return Ok(answer.unwrap_or_else(ApiError::into_response)),
        Err(req) => req,
    };
    let answer = route(app, req, &path).await;
    Ok(answer.unwrap_or_else(ApiError::into_response))
}

/// The fixed paths the server answers itself (besides `/api/users/{id}/status` and
/// `/api/inbox/...`).
const OWN_PATHS: [&str; 8] = [
    "/health",
    "/metrics",
    "/ws",
    "/api/publish",
    "/api/connections",
    "/api/disconnect",
    "/api/info",
    "/api/history",
];

/// Whether the server answers `path` itself (configured routes may not take it).
fn own_path(path: &str) -> bool {
    OWN_PATHS.contains(&path)
        || path.starts_with("/api/inbox/")
        || connections::user_status_id(path).is_some()
}

/// The answer of the route at `path`, or why there is none.
async fn route(app: Arc<App>, req: Request<Incoming>, path: &str) -> Result<Resp, ApiError> {
    let method = req.method().clone();
    match (method, path) {
        (Method::GET, "/health") => Ok(ops::health(&app)),
        (Method::GET, "/metrics") => ops::metrics(&app, &req),
        (Method::GET, "/ws") => Ok(crate::native::upgrade(app, req)),
        (Method::POST, "/api/publish") => {
            publish::publish(&app, Call::read(&app, req).await?).await
        }
        (Method::GET, "/api/connections") => {
            connections::list(&app, Call::read(&app, req).await?).await
        }
        (Method::POST, "/api/disconnect") => {
            connections::disconnect(&app, Call::read(&app, req).await?).await
        }
        (Method::GET, "/api/info") => ops::info(&app, Call::read(&app, req).await?),
        (Method::GET, "/api/history") => history::history(&app, Call::read(&app, req).await?).await,
        (Method::GET, p) if connections::user_status_id(p).is_some() => {
            connections::user_status(&app, Call::read(&app, req).await?).await
        }
        (_, p) if connections::user_status_id(p).is_some() => Err(ApiError::MethodNotAllowed),
        (method, p) if p.starts_with("/api/inbox/") => match inbox::Route::of(&method, p) {
            Some(Ok(route)) => inbox::handle(&app, route, Call::read(&app, req).await?).await,
            Some(Err(e)) => Err(e),
            None => Err(ApiError::NotFound),
        },
        (_, p) if OWN_PATHS.contains(&p) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound),
    }
}
