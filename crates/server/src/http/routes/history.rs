//! `GET /api/history?tenant=&room=&namespace=&since=&epoch=&limit=`: the events a room keeps
//! (`[history]`), oldest first, as native `event` messages.

use http::StatusCode;
use roomcast_broker::{BrokerError, Position, RoomKey};
use serde_json::json;
use serde_json::value::RawValue;

use crate::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::node::native_event;
use crate::proto::MAX_NAME_BYTES;
use crate::web::{json_response, query_param, Resp};

/// Events answered at most, and by default.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

pub(crate) async fn history(app: &App, call: Call) -> Result<Resp, ApiError> {
    let param = |name: &str| query_param(&call.uri, name);
    let named = param("tenant");
    let Some(tenant) = call.tenant(named.as_deref())? else {
        return Err(ApiError::bad(
            "tenant query parameter is required with a platform key",
        ));
    };
    let room = param("room").unwrap_or_default();
    let ns = param("namespace").unwrap_or_else(|| "/".to_owned());
    for (what, name) in [("room", &room), ("namespace", &ns)] {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(ApiError::bad(format!(
                "{what} must be 1 to {MAX_NAME_BYTES} bytes"
            )));
        }
    }
    let limit = match param("limit") {
        None => DEFAULT_LIMIT,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(ApiError::bad(format!("limit must be 1 to {MAX_LIMIT}"))),
        },
    };
    let since = match (param("since"), param("epoch")) {
        (None, None) => None,
        (Some(offset), Some(epoch)) => Some(Position {
            offset: offset
                .parse()
                .map_err(|_| ApiError::bad("since must be an offset (an integer)"))?,
            epoch: epoch.into(),
        }),
        _ => return Err(ApiError::bad("since and epoch go together")),
    };
    let key = RoomKey::new(tenant, &ns, &room);
    if !app.keeps_history(&key) {
        return Err(ApiError::NotKept(
            "this room keeps no history (see [history] in the configuration)".into(),
        ));
    }
    let history = match app.node.broker().history(&key, since, limit).await {
        Ok(history) => history,
        Err(BrokerError::HistoryUnsupported) => {
            return Err(ApiError::NotKept(
                "this server keeps no history (see [history] in the configuration)".into(),
            ))
        }
        Err(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    let events: Vec<Box<RawValue>> = history
        .events
        .iter()
        .filter_map(|(position, p)| {
            let text = native_event(p, Some(room.as_str()), Some(position));
            RawValue::from_string(String::from_utf8(text.to_vec()).ok()?).ok()
        })
        .collect();
    let current = history
        .current
        .map(|c| json!({"offset": c.offset, "epoch": &*c.epoch}));
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "tenant": tenant,
            "namespace": ns,
            "room": room,
            "events": events,
            "current": current,
            "complete": history.complete,
        }),
    ))
}
