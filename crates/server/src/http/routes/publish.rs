//! `POST /api/publish`: checks the body's names and targets, resolves the tenant the key may
//! reach, and hands the publication to the node ([`crate::node::Node::publish`]).

use http::StatusCode;
use roomcast_broker::{Payload, Target};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::node::{Node, Publication};
use crate::proto::MAX_NAME_BYTES;
use crate::web::{json_response, Resp};

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

/// Publishes through `node`; at most `max_targets` rooms and users
/// (`limits.max_publish_targets`).
pub(crate) async fn publish(node: &Node, max_targets: usize, call: Call) -> Result<Resp, ApiError> {
    let body: PublishBody<'_> = call.json()?;
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
    if targets > max_targets {
        return Err(ApiError::bad(format!(
            "more than limits.max_publish_targets ({max_targets}) rooms and users"
        )));
    }
    let tenant = call.tenant(body.tenant.as_deref())?;
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
    let published = node.publish(publication).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"ok": true, "delivered": published.delivered}),
    ))
}

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}
