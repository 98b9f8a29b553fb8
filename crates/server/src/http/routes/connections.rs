//! Who is connected, and ending connections: `GET /api/connections`,
//! `GET /api/users/{id}/status` and `POST /api/disconnect`. A tenant key sees and ends only
//! its own tenant's connections. In a cluster every live node is asked and the answers are
//! added up (`crate::presence`).

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::presence::{self, Ask, Ending};
use crate::web::{json_response, query_param, Resp};

/// This node's answer to `ask` and, in a cluster, every other live node's, added up. In a
/// cluster the answer lists the nodes asked (`"nodes"`), with the error of any that did not
/// answer in time.
async fn gather(app: &App, ask: &Ask) -> Value {
    let local = presence::answer(&app.index, ask);
    let Some(cluster) = app.cluster() else {
        return presence::merge(ask, &[local]);
    };
    let (mut answers, nodes) = cluster.ask_all(ask).await;
    answers.insert(0, local);
    let mut merged = presence::merge(ask, &answers);
    merged["nodes"] = Value::Array(nodes);
    merged
}

/// `GET /api/connections`: connection and user counts per tenant, with the tenant's user ids.
pub(crate) async fn list(app: &App, call: Call) -> Result<Resp, ApiError> {
    let named = query_param(&call.uri, "tenant");
    let tenant = call.tenant(named.as_deref())?;
    let ask = Ask::Connections {
        tenant: tenant.map(str::to_owned),
        rooms: Vec::new(),
        namespace: None,
    };
    Ok(json_response(StatusCode::OK, &gather(app, &ask).await))
}

/// One tenant's connections, users and user ids (as an entry of `GET /api/connections`), with
/// the members of `rooms` in `namespace` under `"rooms"`; zeros when nobody is connected.
pub(crate) async fn tenant_summary(
    app: &App,
    tenant: &str,
    namespace: &str,
    rooms: Vec<String>,
) -> Value {
    let ask = Ask::Connections {
        tenant: Some(tenant.to_owned()),
        rooms: rooms.clone(),
        namespace: Some(namespace.to_owned()),
    };
    let mut answer = gather(app, &ask).await;
    let mut entry = match answer["tenants"].get_mut(0) {
        Some(entry) => entry.take(),
        None => json!({"tenant": tenant, "connections": 0, "users": 0, "user_ids": []}),
    };
    let sizes: serde_json::Map<String, Value> = rooms
        .into_iter()
        .map(|room| {
            let n = entry["rooms"][room.as_str()].as_u64().unwrap_or(0);
            (room, n.into())
        })
        .collect();
    entry["rooms"] = sizes.into();
    if let Some(nodes) = answer.get_mut("nodes") {
        entry["nodes"] = nodes.take();
    }
    entry
}

/// The user id of a `/api/users/{id}/status` path, percent-decoded; `None` for other paths.
pub(crate) fn user_status_id(path: &str) -> Option<String> {
    let id = path.strip_prefix("/api/users/")?.strip_suffix("/status")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `GET /api/users/{id}/status`: whether the user is online, and its sessions.
pub(crate) async fn user_status(app: &App, call: Call) -> Result<Resp, ApiError> {
    let Some(user) = user_status_id(call.uri.path()) else {
        return Err(ApiError::bad("bad user id"));
    };
    let named = query_param(&call.uri, "tenant");
    let Some(tenant) = call.tenant(named.as_deref())? else {
        return Err(ApiError::bad(
            "tenant query parameter is required with a platform key",
        ));
    };
    Ok(json_response(
        StatusCode::OK,
        &status_of(app, tenant, &user).await,
    ))
}

/// Whether `user` of `tenant` is online, on any node, and its sessions.
pub(crate) async fn status_of(app: &App, tenant: &str, user: &str) -> Value {
    let ask = Ask::UserStatus {
        tenant: tenant.to_owned(),
        user: user.to_owned(),
    };
    let mut answer = gather(app, &ask).await;
    let sessions = answer["sessions"].take();
    let count = sessions.as_array().map_or(0, Vec::len);
    let mut body = json!({
        "tenant": tenant,
        "user": user,
        "online": count > 0,
        "connections": count,
        "sessions": sessions,
    });
    if let Some(nodes) = answer.get_mut("nodes") {
        body["nodes"] = nodes.take();
    }
    body
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    tenant: Option<String>,
    user: Option<String>,
    session: Option<String>,
    reason: Option<String>,
}

/// `POST /api/disconnect`: ends a user's connections or one session, on whichever node they
/// are. Native clients get `disconnect` with code 4004 and the reason; Socket.IO sockets
/// leave their namespace.
pub(crate) async fn disconnect(app: &App, call: Call) -> Result<Resp, ApiError> {
    let body: DisconnectBody = call.json()?;
    let reason = body
        .reason
        .unwrap_or_else(|| "disconnected by the server".to_owned());
    let target = match (body.user, body.session) {
        (Some(user), None) => {
            let Some(tenant) = call.tenant(body.tenant.as_deref())? else {
                return Err(ApiError::bad("tenant is required with a platform key"));
            };
            Ending::User {
                tenant: tenant.to_owned(),
                user,
            }
        }
        (None, Some(session)) => {
            if u64::from_str_radix(&session, 16).is_err() {
                return Err(ApiError::bad("unknown session"));
            }
            Ending::Session(session)
        }
        _ => return Err(ApiError::bad("give exactly one of user or session")),
    };
    let scope = call.tenant(None)?.map(str::to_owned);
    let answer = gather(
        app,
        &Ask::Disconnect {
            scope,
            target,
            reason,
        },
    )
    .await;
    Ok(json_response(StatusCode::OK, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_status_paths() {
        assert_eq!(user_status_id("/api/users/7/status").as_deref(), Some("7"));
        assert_eq!(
            user_status_id("/api/users/a%20b/status").as_deref(),
            Some("a b")
        );
        assert_eq!(user_status_id("/api/users//status"), None);
        assert_eq!(user_status_id("/api/users/a/b/status"), None);
        assert_eq!(user_status_id("/api/users/7"), None);
    }
}
