//! `POST /api/publish`: checks the body's names and targets, resolves the tenant the key may
//! reach, and hands the publication to the node ([`crate::node::Node::publish`]).

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use http::StatusCode;
use std::time::{Duration, Instant};

use std::sync::Arc;

use roomcast_broker::{Broker, Claim, Payload, Position, Target};
use serde::de::{Deserializer, Error, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::node::{Node, Publication, PublishError};
use crate::proto::MAX_NAME_BYTES;
use crate::web::{json_text_response, Resp};

/// The body, its names borrowed from the request: each name is copied once, into the
/// publication.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody<'a> {
    #[serde(borrow)]
    tenant: Option<Name<'a>>,
    #[serde(default, borrow)]
    rooms: Vec<Name<'a>>,
    #[serde(default, borrow)]
    users: Vec<Name<'a>>,
    #[serde(borrow)]
    namespace: Option<Name<'a>>,
    #[serde(borrow)]
    event: Name<'a>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    broadcast: bool,
    #[serde(borrow)]
    idempotency_key: Option<Name<'a>>,
}

/// A string of the body: borrowed from it unless it has escapes. (serde's own `Cow<str>`
/// borrows only as a field of its own, not in a list.)
struct Name<'a>(Cow<'a, str>);

impl Deref for Name<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }

            fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }

        deserializer.deserialize_str(NameVisitor).map(Name)
    }
}

/// How long a retry waits for a publish with its idempotency key that is under way elsewhere.
const PENDING_WAIT: Duration = Duration::from_secs(5);
const PENDING_POLL: Duration = Duration::from_millis(20);

/// Publishes through the app's node; at most `limits.max_publish_targets` rooms and users;
/// an `idempotency_key` is remembered for `api.idempotency_window_ms`.
pub(crate) async fn publish(app: &App, call: Call) -> Result<Resp, ApiError> {
    let node: &Node = &app.node;
    let max_targets = app.config.limits.max_publish_targets;
    let window = Duration::from_millis(app.config.api.idempotency_window_ms);
    let body: PublishBody<'_> = call.json()?;
    check_name("event", &body.event)?;
    if let Some(key) = &body.idempotency_key {
        check_name("idempotency_key", key)?;
    }
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
            rooms: body.rooms.iter().map(|r| (**r).into()).collect(),
            users: body.users.iter().map(|u| (**u).into()).collect(),
        },
        None if body.broadcast && targets == 0 => Target::Platform,
        None => {
            return Err(ApiError::bad(
                "tenant is required (platform-wide only with broadcast: true alone)",
            ))
        }
    };
    let data = body.data.unwrap_or(RawValue::NULL).to_owned();
    let mut publication = Publication::new(ns, target, &body.event, Payload::Json(data));
    let Some(key) = body.idempotency_key.as_deref() else {
        let published = node.publish(publication).await?;
        return Ok(json_text_response(
            StatusCode::OK,
            answer(&body.rooms, &published.positions, published.delivered),
        ));
    };
    // Keys are the tenant's own (a platform-wide broadcast's, the platform's), and the API's:
    // other producers' keys (`amqp...`) never start with `http`.
    let scoped = format!("http\u{1f}{}\u{1f}{key}", tenant.unwrap_or_default());
    publication.idempotency_key = Some(key.to_owned());
    let broker = node.broker();
    let waited = Instant::now();
    loop {
        match broker.claim(&scoped, window).await? {
            Claim::First => break,
            Claim::Done(first) => {
                let (status, text) = stored_answer(&first);
                let mut resp = json_text_response(status, text.to_owned());
                resp.headers_mut()
                    .insert(REPLAYED, http::HeaderValue::from_static("true"));
                return Ok(resp);
            }
            Claim::Pending if waited.elapsed() < PENDING_WAIT => {
                tokio::time::sleep(PENDING_POLL).await;
            }
            Claim::Pending => {
                return Err(ApiError::Conflict(
                    "a publish with this idempotency_key is still under way; retry later".into(),
                ))
            }
        }
    }
    // Let go of, should this request end before it settles (its client hung up).
    let mut claimed = Claimed {
        broker: broker.clone(),
        key: Some(scoped),
    };
    let published = node.publish(publication).await;
    let key = claimed.key.take().unwrap_or_default();
    match published {
        Ok(published) => {
            let text = answer(&body.rooms, &published.positions, published.delivered);
            let stored = format!("{} {text}", StatusCode::OK.as_u16());
            if let Err(e) = broker.settle(&key, &stored, window).await {
                tracing::warn!(error = %e, "idempotency result not recorded");
            }
            Ok(json_text_response(StatusCode::OK, text))
        }
        Err(PublishError::Broker(e)) => {
            // The broker failed while taking it: it may still be carried out, so a retry
            // must not publish it again. Retries get this answer.
            let error = ApiError::from(PublishError::Broker(e));
            let body =
                serde_json::json!({"error": {"code": error.code(), "message": error.to_string()}});
            let stored = format!("{} {body}", error.status().as_u16());
            if let Err(e) = broker.settle(&key, &stored, window).await {
                tracing::warn!(error = %e, "idempotency result not recorded");
            }
            Err(error)
        }
        Err(e) => {
            // Refused before anything was published: a retry may try again.
            if let Err(e) = broker.release(&key).await {
                tracing::warn!(error = %e, "idempotency key not released");
            }
            Err(e.into())
        }
    }
}

/// A claimed idempotency key, let go of if the request ends before it is settled.
struct Claimed {
    broker: Arc<dyn Broker>,
    key: Option<String>,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let broker = self.broker.clone();
            tokio::spawn(async move {
                if let Err(e) = broker.release(&key).await {
                    tracing::warn!(error = %e, "idempotency key not released");
                }
            });
        }
    }
}

/// A stored answer, `<status> <body>`, as its status and body.
fn stored_answer(stored: &str) -> (StatusCode, &str) {
    let (status, body) = stored.split_once(' ').unwrap_or(("200", stored));
    let status = status
        .parse::<u16>()
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    (status, body)
}

/// The header of an answer repeated for a retry with the same idempotency key.
const REPLAYED: http::HeaderName = http::HeaderName::from_static("idempotent-replayed");

/// `{"ok":true,"delivered":N}`, and for publishes to rooms each room's position in its stream
/// (`null` where it got none: a volatile publish, or a room with no stream on a single node).
fn answer(rooms: &[Name<'_>], positions: &[Option<Position>], delivered: usize) -> String {
    if rooms.is_empty() {
        return format!(r#"{{"ok":true,"delivered":{delivered}}}"#);
    }
    // The node published each room once, where it first appears.
    let mut seen = std::collections::HashSet::new();
    let rooms: Vec<serde_json::Value> = rooms
        .iter()
        .filter(|room| seen.insert(&***room))
        .enumerate()
        .map(|(i, room)| {
            let position = positions.get(i).cloned().flatten();
            serde_json::json!({
                "room": &**room,
                "offset": position.as_ref().map(|p| p.offset),
                "epoch": position.as_ref().map(|p| &*p.epoch),
            })
        })
        .collect();
    serde_json::json!({"ok": true, "delivered": delivered, "rooms": rooms}).to_string()
}

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_borrowed_unless_escaped() {
        let text = r#"{"event":"e","rooms":["a","b\"c"],"tenant":"t\u00e9","namespace":"/n"}"#;
        let body: PublishBody<'_> = serde_json::from_str(text).unwrap();
        assert!(matches!(body.rooms[0].0, Cow::Borrowed("a")));
        assert_eq!(&*body.rooms[1], "b\"c");
        assert_eq!(body.tenant.as_deref(), Some("té"));
        assert!(matches!(body.event.0, Cow::Borrowed("e")));
        assert_eq!(body.namespace.as_deref(), Some("/n"));
        assert!(serde_json::from_str::<PublishBody<'_>>(r#"{"event":1}"#).is_err());
    }

    #[test]
    fn the_answer_gives_each_room_its_position() {
        let body: PublishBody<'_> =
            serde_json::from_str(r#"{"event":"e","rooms":["a","b\"c","a"]}"#).unwrap();
        let positions = [
            Some(Position {
                offset: 7,
                epoch: "e1".into(),
            }),
            None,
        ];
        let text = answer(&body.rooms, &positions, 3);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"ok": true, "delivered": 3, "rooms": [
                {"room": "a", "offset": 7, "epoch": "e1"},
                {"room": "b\"c", "offset": null, "epoch": null},
            ]})
        );
        assert_eq!(answer(&[], &[], 2), r#"{"ok":true,"delivered":2}"#);
    }
}
