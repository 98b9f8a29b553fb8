//! The inbox's JSON: a notification as clients and the API see it (seed 000's shape), a
//! list's options, and the API's create body.

use roomcast_inbox::{Filter, NewNotification, Notification, Recipients};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::client::Refusal;
use crate::config::MAX_ID_BYTES;
use crate::sio::routing::template::rfc3339_millis;

/// The longest title, in bytes.
const MAX_TITLE_BYTES: usize = 1024;
/// The longest message, in bytes.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// The longest type, priority, action URL or label, in bytes.
const MAX_FIELD_BYTES: usize = 2048;
/// The most bytes of `metadata` and `data` together, as JSON: a notification is stored once
/// per user it names, and sent to each.
pub(crate) const MAX_EXTRA_BYTES: usize = 16 * 1024;

/// A notification as clients and the API see it: `id`, `title`, `message`, `type`,
/// `priority`, `is_read`, `is_dismissed`, `created_at` (RFC 3339, UTC, milliseconds),
/// `read_at`, `dismissed_at`, `action_url`, `action_label`, `metadata`, `data`.
pub fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "title": n.title,
        "message": n.message,
        "type": n.kind,
        "priority": n.priority,
        "is_read": n.read_at.is_some(),
        "is_dismissed": n.dismissed_at.is_some(),
        "created_at": time(n.created_at),
        "read_at": n.read_at.map(time),
        "dismissed_at": n.dismissed_at.map(time),
        "action_url": n.action_url,
        "action_label": n.action_label,
        "metadata": n.metadata,
        "data": n.data,
    })
}

fn time(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// What a list asks for: a filter, where to start, how many.
#[derive(Debug, Clone, PartialEq)]
pub struct ListOptions {
    /// Which notifications.
    pub filter: Filter,
    /// Only those older than this id (the previous page's `next_cursor`).
    pub cursor: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

impl ListOptions {
    /// Reads `read`, `dismissed` (booleans), `type`, `priority` (strings), `cursor` (an id,
    /// or a string of one) and `limit` from `options` (an object, or null for the defaults).
    pub fn parse(options: &Value, page_size: u32, max_page_size: u32) -> Result<Self, Refusal> {
        let empty = Map::new();
        let options = match options {
            Value::Object(map) => map,
            Value::Null => &empty,
            _ => return Err(bad("the list's options must be an object")),
        };
        let flag = |name: &str| match options.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(_) => Err(bad(format!("`{name}` must be a boolean"))),
        };
        let text = |name: &str| match options.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= MAX_FIELD_BYTES => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!(
                "`{name}` must be a string of at most {MAX_FIELD_BYTES} bytes"
            ))),
        };
        let integer = |name: &str| match options.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
            Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(drop),
            Some(_) => Err(()),
        };
        let cursor = integer("cursor").map_err(|()| bad("`cursor` must be an id"))?;
        let limit = match integer("limit") {
            Ok(None) => page_size,
            Ok(Some(n)) if (1..=i64::from(max_page_size)).contains(&n) => n as u32,
            _ => {
                return Err(bad(format!(
                    "`limit` must be an integer from 1 to {max_page_size}"
                )))
            }
        };
        Ok(ListOptions {
            filter: Filter {
                read: flag("read")?,
                dismissed: flag("dismissed")?,
                kind: text("type")?,
                priority: text("priority")?,
            },
            cursor,
            limit,
        })
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::InvalidRequest(message.into())
}

/// The API's create body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    tenant: Option<String>,
    user: Option<String>,
    users: Option<Vec<String>>,
    #[serde(default)]
    tenant_wide: bool,
    title: String,
    #[serde(default)]
    message: String,
    #[serde(rename = "type", default = "info")]
    kind: String,
    #[serde(default = "medium")]
    priority: String,
    action_url: Option<String>,
    action_label: Option<String>,
    metadata: Option<Value>,
    data: Option<Value>,
}

fn info() -> String {
    "info".into()
}

fn medium() -> String {
    "medium".into()
}

/// A create request: the tenant it names (if any), who it is for, and what.
#[derive(Debug)]
pub struct Create {
    /// `tenant`, for a platform key.
    pub tenant: Option<String>,
    /// `user`, `users`, or `tenant_wide`.
    pub to: Recipients,
    /// The notification.
    pub new: NewNotification,
}

/// Reads the API's create body: `title` (required), `message`, `type` (default `info`),
/// `priority` (default `medium`), `action_url`, `action_label`, `metadata` (an object),
/// `data` (any JSON), and one of `user`, `users` or `tenant_wide: true`.
pub fn parse_new(body: &[u8]) -> Result<Create, String> {
    let b: CreateBody =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let to = match (b.user, b.users, b.tenant_wide) {
        (Some(user), None, false) => Recipients::Users(vec![user]),
        (None, Some(users), false) => Recipients::Users(users),
        (None, None, true) => Recipients::Tenant,
        _ => return Err("give one of `user`, `users` or `tenant_wide: true`".into()),
    };
    if let Recipients::Users(users) = &to {
        if let Some(u) = users
            .iter()
            .find(|u| u.is_empty() || u.len() > MAX_ID_BYTES)
        {
            return Err(format!(
                "user ids must be 1 to {MAX_ID_BYTES} bytes, not {} bytes",
                u.len()
            ));
        }
    }
    let sized = |name: &str, value: &str, max: usize| {
        if value.len() > max {
            Err(format!("`{name}` is longer than {max} bytes"))
        } else {
            Ok(())
        }
    };
    if b.title.is_empty() {
        return Err("`title` must not be empty".into());
    }
    sized("title", &b.title, MAX_TITLE_BYTES)?;
    sized("message", &b.message, MAX_MESSAGE_BYTES)?;
    sized("type", &b.kind, MAX_FIELD_BYTES)?;
    sized("priority", &b.priority, MAX_FIELD_BYTES)?;
    for (name, value) in [
        ("action_url", &b.action_url),
        ("action_label", &b.action_label),
    ] {
        sized(name, value.as_deref().unwrap_or_default(), MAX_FIELD_BYTES)?;
    }
    if !matches!(
        b.metadata,
        None | Some(Value::Object(_)) | Some(Value::Null)
    ) {
        return Err("`metadata` must be an object".into());
    }
    let mut extra = 0;
    for value in [&b.metadata, &b.data].into_iter().flatten() {
        let text = value.to_string();
        // Each is sent inside the notification, one level down.
        if crate::proto::depth(&text) + 1 > crate::proto::MAX_DATA_DEPTH {
            return Err(format!(
                "`metadata` and `data` nest at most {} levels",
                crate::proto::MAX_DATA_DEPTH - 1
            ));
        }
        extra += text.len();
    }
    if extra > MAX_EXTRA_BYTES {
        return Err(format!(
            "`metadata` and `data` take at most {MAX_EXTRA_BYTES} bytes together, as JSON"
        ));
    }
    Ok(Create {
        tenant: b.tenant,
        to,
        new: NewNotification {
            title: b.title,
            message: b.message,
            kind: b.kind,
            priority: b.priority,
            action_url: b.action_url,
            action_label: b.action_label,
            metadata: b.metadata.filter(|m| !m.is_null()),
            data: b.data.filter(|d| !d.is_null()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_options_read_flags_strings_and_bounds() {
        let o = ListOptions::parse(
            &json!({"read": false, "type": "info", "cursor": "42"}),
            50,
            200,
        )
        .unwrap();
        assert_eq!(o.filter.read, Some(false));
        assert_eq!(o.filter.kind.as_deref(), Some("info"));
        assert_eq!(o.cursor, Some(42));
        assert_eq!(o.limit, 50);
        assert_eq!(ListOptions::parse(&Value::Null, 50, 200).unwrap().limit, 50);
        for bad in [
            json!({"limit": 0}),
            json!({"limit": 201}),
            json!({"limit": "x"}),
            json!({"read": 1}),
            json!({"cursor": [1]}),
            json!([1]),
        ] {
            assert!(
                matches!(
                    ListOptions::parse(&bad, 50, 200),
                    Err(Refusal::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_create_names_its_users_once_and_a_title() {
        let c = parse_new(br#"{"user":"7","title":"Hi","metadata":{"a":1}}"#).unwrap();
        assert_eq!(c.to, Recipients::Users(vec!["7".into()]));
        assert_eq!(c.new.kind, "info");
        assert_eq!(c.new.priority, "medium");
        let c = parse_new(br#"{"tenant_wide":true,"title":"All","tenant":"acme"}"#).unwrap();
        assert_eq!(c.to, Recipients::Tenant);
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        for body in [
            &br#"{"title":"x"}"#[..],
            br#"{"user":"7","users":["8"],"title":"x"}"#,
            br#"{"user":"7","title":""}"#,
            br#"{"user":"","title":"x"}"#,
            br#"{"user":"7","title":"x","metadata":[1]}"#,
            br#"{"user":"7","title":"x","nope":1}"#,
            format!(
                r#"{{"user":"7","title":"x","data":"{}"}}"#,
                "a".repeat(MAX_EXTRA_BYTES)
            )
            .as_bytes(),
            format!(
                r#"{{"user":"7","title":"x","data":{}1{}}}"#,
                "[".repeat(64),
                "]".repeat(64)
            )
            .as_bytes(),
            b"not json",
        ] {
            assert!(
                parse_new(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_notification_has_the_seed_shape() {
        let n = Notification {
            id: 456,
            tenant: "acme".into(),
            user: Some("7".into()),
            title: "New Tenant Created".into(),
            message: "Done".into(),
            kind: "success".into(),
            priority: "medium".into(),
            read_at: None,
            dismissed_at: None,
            created_at: 1_705_761_000_000,
            action_url: Some("/tenant/mycompany".into()),
            action_label: Some("Access Tenant".into()),
            metadata: json!({"tenant_name": "My Company"}),
            data: Value::Null,
        };
        let j = notification_json(&n);
        assert_eq!(j["id"], 456);
        assert_eq!(j["type"], "success");
        assert_eq!(j["is_read"], false);
        assert_eq!(j["created_at"], "2024-01-20T14:30:00.000Z");
        assert_eq!(j["metadata"]["tenant_name"], "My Company");
    }
}
