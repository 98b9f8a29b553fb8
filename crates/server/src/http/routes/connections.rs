//! Who is connected, and ending connections: `GET /api/connections`,
//! `GET /api/users/{id}/status` and `POST /api/disconnect`. A tenant key sees and ends only
//! its own tenant's connections.

use http::StatusCode;
use roomcast_engine::rooms::{Closing, ConnId, RoomIndex};
use serde::Deserialize;
use serde_json::json;

use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::web::{json_response, query_param, Resp};

/// Most user ids listed per tenant by `GET /api/connections`.
const MAX_LISTED_USERS: usize = 1000;

/// `GET /api/connections`: connection and user counts per tenant, with the tenant's user ids.
pub(crate) fn list(index: &RoomIndex, call: Call) -> Result<Resp, ApiError> {
    let named = query_param(&call.uri, "tenant");
    let tenant = call.tenant(named.as_deref())?;
    let counts: Vec<_> = index
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
                "user_ids": index.users(&c.tenant, MAX_LISTED_USERS),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"connections": total, "tenants": tenants}),
    ))
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
pub(crate) fn user_status(index: &RoomIndex, call: Call) -> Result<Resp, ApiError> {
    let Some(user) = user_status_id(call.uri.path()) else {
        return Err(ApiError::bad("bad user id"));
    };
    let named = query_param(&call.uri, "tenant");
    let Some(tenant) = call.tenant(named.as_deref())? else {
        return Err(ApiError::bad(
            "tenant query parameter is required with a platform key",
        ));
    };
    let sessions: Vec<String> = index
        .user_connections(tenant, &user)
        .into_iter()
        .filter_map(|id| index.live_connection(id))
        .map(|live| live.control.session_id())
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

/// `POST /api/disconnect`: ends a user's connections or one session. Native clients get
/// `disconnect` with code 4004 and the reason; Socket.IO sockets leave their namespace.
pub(crate) fn disconnect(index: &RoomIndex, call: Call) -> Result<Resp, ApiError> {
    let body: DisconnectBody = call.json()?;
    let reason = body
        .reason
        .as_deref()
        .unwrap_or("disconnected by the server");
    let targets: Vec<ConnId> = match (&body.user, &body.session) {
        (Some(user), None) => {
            let Some(tenant) = call.tenant(body.tenant.as_deref())? else {
                return Err(ApiError::bad("tenant is required with a platform key"));
            };
            index.user_connections(tenant, user)
        }
        (None, Some(session)) => {
            let id = u64::from_str_radix(session, 16)
                .map(ConnId)
                .map_err(|_| ApiError::bad("unknown session"))?;
            // Another tenant's session looks exactly like an unknown one to a tenant key.
            match index.member(id) {
                Some((_, tenant, _)) if call.tenant(Some(&tenant)).is_ok() => vec![id],
                _ => vec![],
            }
        }
        _ => return Err(ApiError::bad("give exactly one of user or session")),
    };
    // Each connection's own handle knows how its protocol says it (native: `disconnect`
    // 4004 with the reason; Socket.IO: DISCONNECT, "io server disconnect").
    let mut n = 0;
    for live in targets
        .into_iter()
        .filter_map(|id| index.live_connection(id))
    {
        live.control.close(Closing::Disconnect(reason));
        n += 1;
    }
    Ok(json_response(StatusCode::OK, &json!({"disconnected": n})))
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
