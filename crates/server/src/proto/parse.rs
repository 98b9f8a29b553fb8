//! Client-to-server messages and their parser: one text frame in, one [`ClientMessage`] or one
//! [`ParseError`] out (with the request id whenever it could be read, so the error can be
//! answered as a reply). Validation rules are those of `protocol/README.md`.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::codes::ErrorCode;
pub use super::message::{ClientMessage, Since};
use crate::config::InboxOp;

/// The largest request id: ids are unsigned integers below 2^53 so that JavaScript clients
/// hold them exactly.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// The longest room, event, namespace or tenant name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;

/// How deeply arrays and objects may nest in `publish.data` (a scalar is level 0, `[]` level 1).
/// The data is forwarded verbatim to every subscriber, so this protects their parsers.
pub const MAX_DATA_DEPTH: usize = 64;

/// The most events one `history` request asks for.
pub const MAX_HISTORY_LIMIT: u64 = 1000;

/// How much of an unknown `type` a [`ParseError`] message repeats.
const ECHO_BYTES: usize = 64;

/// A frame that is not a valid client message. Answer it with
/// `encode_reply_error(err.id, err.code, &err.message)`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ParseError {
    /// [`ErrorCode::BadRequest`] or [`ErrorCode::UnknownType`].
    pub code: ErrorCode,
    /// The request's id when it could be read, even if other fields are bad.
    pub id: Option<u64>,
    /// A human-readable explanation (not normative).
    pub message: String,
}

impl ParseError {
    fn bad(id: Option<u64>, message: impl Into<String>) -> ParseError {
        ParseError {
            code: ErrorCode::BadRequest,
            id,
            message: message.into(),
        }
    }
}

/// Every field the protocol knows, captured unparsed so that one bad field does not hide the
/// others (the id in particular). Other fields are skipped; a known field given twice is an
/// error (serde's `duplicate field`).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    token: Option<&'a RawValue>,
    #[serde(borrow)]
    room: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    ns: Option<&'a RawValue>,
    #[serde(borrow)]
    tenant: Option<&'a RawValue>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
    #[serde(borrow)]
    limit: Option<&'a RawValue>,
    #[serde(borrow)]
    reverse: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    #[serde(borrow)]
    notification: Option<&'a RawValue>,
    #[serde(borrow)]
    options: Option<&'a RawValue>,
}

/// Parses one text frame (its payload, already reassembled from fragments).
///
/// Checks run in this order and the first failure is returned: UTF-8, JSON syntax, a single
/// object, no duplicated known field; `type` present and a string; `type` known
/// ([`ErrorCode::UnknownType`] otherwise); then the message's own fields in the order of
/// its table in `protocol/README.md`, `id` first.
pub fn parse(frame: &[u8]) -> Result<ClientMessage, ParseError> {
    let text = std::str::from_utf8(frame)
        .map_err(|_| ParseError::bad(None, "frame is not valid UTF-8"))?;
    // A derived struct also accepts a JSON array (fields by position): refuse anything that
    // does not start as an object.
    match text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first()
    {
        Some(b'{') => {}
        Some(_) => return Err(ParseError::bad(None, "message must be a JSON object")),
        None => return Err(ParseError::bad(None, "empty message")),
    }
    let env: Envelope<'_> = serde_json::from_str(text)
        .map_err(|e| ParseError::bad(None, format!("malformed JSON: {e}")))?;

    // Read leniently for error replies; each message type then reads it strictly.
    let loose_id = env.id.and_then(|raw| id_value(raw).ok());
    let Some(kind) = env.kind else {
        return Err(ParseError::bad(loose_id, "missing field `type`"));
    };
    let kind: String = serde_json::from_str(kind.get())
        .map_err(|_| ParseError::bad(loose_id, "`type` must be a string"))?;

    match kind.as_str() {
        "auth" => Ok(ClientMessage::Auth {
            token: string(env.token, "token", loose_id)?,
            since: room_positions(env.since).map_err(|m| ParseError::bad(None, m))?,
        }),
        "subscribe" | "unsubscribe" => {
            let id = required_id(env.id)?;
            let room = name(env.room, "room", id)?;
            let ns = namespace(env.ns, id)?;
            let tenant = optional_name(env.tenant, "tenant", id)?;
            Ok(if kind == "subscribe" {
                ClientMessage::Subscribe {
                    id,
                    room,
                    ns,
                    tenant,
                    since: since(env.since, id)?,
                }
            } else {
                ClientMessage::Unsubscribe {
                    id,
                    room,
                    ns,
                    tenant,
                }
            })
        }
        "publish" => {
            let id = required_id(env.id)?;
            let room = name(env.room, "room", id)?;
            let event = name(env.event, "event", id)?;
            let ns = namespace(env.ns, id)?;
            let data = data(env.data, id)?;
            Ok(ClientMessage::Publish {
                id,
                room,
                event,
                data,
                ns,
            })
        }
        "history" => {
            let id = required_id(env.id)?;
            let room = name(env.room, "room", id)?;
            let ns = namespace(env.ns, id)?;
            let tenant = optional_name(env.tenant, "tenant", id)?;
            let since = since(env.since, id)?;
            let limit = match env.limit.filter(|r| r.get() != "null") {
                None => None,
                Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
                    Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => Some(n),
                    _ => {
                        return Err(ParseError::bad(
                            Some(id),
                            format!("`limit` must be an integer from 1 to {MAX_HISTORY_LIMIT}"),
                        ))
                    }
                },
            };
            let reverse = match env.reverse.map(RawValue::get) {
                None | Some("null" | "false") => false,
                Some("true") => true,
                Some(_) => return Err(ParseError::bad(Some(id), "`reverse` must be a boolean")),
            };
            Ok(ClientMessage::History {
                id,
                room,
                ns,
                tenant,
                since,
                limit,
                reverse,
            })
        }
        "refresh" => {
            let id = required_id(env.id)?;
            Ok(ClientMessage::Refresh {
                id,
                token: string(env.token, "token", Some(id))?,
            })
        }
        "rpc" => {
            let id = required_id(env.id)?;
            let method = name(env.method, "method", id)?;
            let ns = namespace(env.ns, id)?;
            let data = data(env.data, id)?;
            Ok(ClientMessage::Rpc {
                id,
                method,
                data,
                ns,
            })
        }
        "inbox" => {
            let id = required_id(env.id)?;
            let op = env
                .op
                .and_then(|raw| serde_json::from_str::<&str>(raw.get()).ok())
                .and_then(InboxOp::parse)
                .ok_or_else(|| {
                    ParseError::bad(
                        Some(id),
                        "`op` must be one of counts, list, read, dismiss, read_all",
                    )
                })?;
            let notification = match env.notification.filter(|r| r.get() != "null") {
                None if matches!(op, InboxOp::Read | InboxOp::Dismiss) => {
                    return Err(ParseError::bad(Some(id), "`notification` is required"))
                }
                None => None,
                Some(raw) => Some(notification_id(raw).ok_or_else(|| {
                    ParseError::bad(Some(id), "`notification` must be an integer id")
                })?),
            };
            let options = match env.options.map(|raw| serde_json::from_str(raw.get())) {
                None => serde_json::Value::Null,
                Some(Ok(v @ (serde_json::Value::Object(_) | serde_json::Value::Null))) => v,
                Some(_) => return Err(ParseError::bad(Some(id), "`options` must be an object")),
            };
            Ok(ClientMessage::Inbox {
                id,
                op,
                notification,
                options,
            })
        }
        "ping" => {
            let id = match env.id {
                None => None,
                Some(raw) => Some(id_value(raw).map_err(|m| ParseError::bad(None, m))?),
            };
            Ok(ClientMessage::Ping { id })
        }
        other => Err(ParseError {
            code: ErrorCode::UnknownType,
            id: loose_id,
            message: format!("unknown message type `{}`", truncate(other, ECHO_BYTES)),
        }),
    }
}

/// A notification id: an integer, or a string holding one.
fn notification_id(raw: &RawValue) -> Option<i64> {
    match serde_json::from_str::<serde_json::Value>(raw.get()).ok()? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn id_value(raw: &RawValue) -> Result<u64, &'static str> {
    match serde_json::from_str::<u64>(raw.get()) {
        Ok(id) if id <= MAX_ID => Ok(id),
        _ => Err("`id` must be an integer from 0 to 2^53-1"),
    }
}

fn required_id(raw: Option<&RawValue>) -> Result<u64, ParseError> {
    let raw = raw.ok_or_else(|| ParseError::bad(None, "missing field `id`"))?;
    id_value(raw).map_err(|m| ParseError::bad(None, m))
}

fn string(raw: Option<&RawValue>, field: &str, id: Option<u64>) -> Result<String, ParseError> {
    let raw = raw.ok_or_else(|| ParseError::bad(id, format!("missing field `{field}`")))?;
    serde_json::from_str(raw.get()).map_err(|_| {
        let message = if raw.get().starts_with('"') {
            format!("`{field}` has an invalid escape")
        } else {
            format!("`{field}` must be a string")
        };
        ParseError::bad(id, message)
    })
}

fn name(raw: Option<&RawValue>, field: &str, id: u64) -> Result<String, ParseError> {
    let s = string(raw, field, Some(id))?;
    if s.is_empty() || s.len() > MAX_NAME_BYTES {
        return Err(ParseError::bad(
            Some(id),
            format!("`{field}` must be 1 to {MAX_NAME_BYTES} bytes long"),
        ));
    }
    Ok(s)
}

fn optional_name(
    raw: Option<&RawValue>,
    field: &str,
    id: u64,
) -> Result<Option<String>, ParseError> {
    raw.map(|raw| name(Some(raw), field, id)).transpose()
}

/// The most rooms `auth.since` may name (`rooms.max_per_connection` bounds what is used).
pub const MAX_SINCE_ROOMS: usize = 256;

/// `auth.since` (or the upgrade's `?since=`): `{"<room>": {"offset": integer, "epoch":
/// string}, ...}`, or absent (`null`). Rooms come back in name order.
pub fn room_positions(raw: Option<&RawValue>) -> Result<Option<Vec<(String, Since)>>, String> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(None);
    };
    let bad =
        || "`since` must be {\"<room>\": {\"offset\": integer, \"epoch\": string}}".to_owned();
    if !raw.get().starts_with('{') {
        return Err(bad());
    }
    let rooms: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| bad())?;
    if rooms.len() > MAX_SINCE_ROOMS {
        return Err(format!("`since` names more than {MAX_SINCE_ROOMS} rooms"));
    }
    rooms
        .into_iter()
        .map(|(room, value)| {
            if room.is_empty() || room.len() > MAX_NAME_BYTES {
                return Err(format!("`since` rooms must be 1 to {MAX_NAME_BYTES} bytes"));
            }
            match since(Some(value), 0) {
                Ok(Some(s)) => Ok((room, s)),
                _ => Err(bad()),
            }
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Some)
}

/// `subscribe.since`: `{"offset": integer, "epoch": string}`, or absent (`null`).
fn since(raw: Option<&RawValue>, id: u64) -> Result<Option<Since>, ParseError> {
    #[derive(Deserialize)]
    struct Fields<'a> {
        #[serde(borrow)]
        offset: Option<&'a RawValue>,
        #[serde(borrow)]
        epoch: Option<&'a RawValue>,
    }
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(None);
    };
    let bad = || {
        ParseError::bad(
            Some(id),
            "`since` must be {\"offset\": integer, \"epoch\": string}",
        )
    };
    if !raw.get().starts_with('{') {
        return Err(bad());
    }
    let fields: Fields<'_> = serde_json::from_str(raw.get()).map_err(|_| bad())?;
    let offset = fields
        .offset
        .and_then(|o| id_value(o).ok())
        .ok_or_else(bad)?;
    let epoch = name(fields.epoch, "since.epoch", id)?;
    Ok(Some(Since { offset, epoch }))
}

/// `data`, forwarded verbatim: `null` when absent, at most [`MAX_DATA_DEPTH`] levels deep.
fn data(raw: Option<&RawValue>, id: u64) -> Result<Box<RawValue>, ParseError> {
    let data = raw.unwrap_or(RawValue::NULL);
    if depth(data.get()) > MAX_DATA_DEPTH {
        return Err(ParseError::bad(
            Some(id),
            format!("`data` nests deeper than {MAX_DATA_DEPTH} levels"),
        ));
    }
    Ok(data.to_owned())
}

fn namespace(raw: Option<&RawValue>, id: u64) -> Result<Option<String>, ParseError> {
    let ns = optional_name(raw, "ns", id)?;
    if ns.as_deref().is_some_and(|ns| !ns.starts_with('/')) {
        return Err(ParseError::bad(Some(id), "`ns` must start with `/`"));
    }
    Ok(ns)
}

/// Nesting depth of a JSON text already known to be valid: brackets outside strings. Run on
/// every publication's data, so strings are skipped with a vectorized search for their end.
pub fn depth(json: &str) -> usize {
    let bytes = json.as_bytes();
    let (mut depth, mut max, mut at) = (0usize, 0usize, 0usize);
    while let Some(&b) = bytes.get(at) {
        at += 1;
        match b {
            b'"' => loop {
                let Some(rest) = bytes.get(at..) else {
                    return max;
                };
                match memchr::memchr2(b'"', b'\\', rest) {
                    // An escape takes the next byte with it (`\"` does not end the string).
                    Some(i) if rest[i] == b'\\' => at += i + 2,
                    Some(i) => {
                        at += i + 1;
                        break;
                    }
                    None => return max,
                }
            },
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(frame: &[u8]) -> ParseError {
        match parse(frame) {
            Ok(m) => panic!("{:?} parsed as {m:?}", String::from_utf8_lossy(frame)),
            Err(e) => e,
        }
    }

    #[test]
    fn invalid_utf8_is_bad_request() {
        let e = err(b"{\"type\":\"ping\",\"id\":1,\"x\":\"\xff\"}");
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, None));
    }

    #[test]
    fn data_is_kept_verbatim() {
        let frame =
            br#"{"type":"publish","id":1,"room":"r","event":"e","data": {"b" : 1,"a":[ 2 ]} }"#;
        let Ok(ClientMessage::Publish { data, .. }) = parse(frame) else {
            panic!("not a publish")
        };
        assert_eq!(data.get(), r#"{"b" : 1,"a":[ 2 ]}"#);
    }

    #[test]
    fn deep_data_is_refused_without_recursion() {
        let ok = format!(
            r#"{{"type":"publish","id":1,"room":"r","event":"e","data":{}"x"{}}}"#,
            "[".repeat(MAX_DATA_DEPTH),
            "]".repeat(MAX_DATA_DEPTH)
        );
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!(
            r#"{{"type":"publish","id":1,"room":"r","event":"e","data":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = err(deep.as_bytes());
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, Some(1)));
    }

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(depth(r#"null"#), 0);
        assert_eq!(depth(r#"{"a":"[[[{\"\\"}"#), 1);
        assert_eq!(depth(r#"[{"a":[]},[[1]]]"#), 3);
        assert_eq!(depth(r#"["\\",["]"],"\\\"[",[{}]]"#), 3);
        assert_eq!(depth(r#"[["abc"#), 2);
        assert_eq!(depth(r#"[["abc\"#), 2);
    }

    #[test]
    fn unknown_type_echo_is_truncated_on_a_char_boundary() {
        let kind = "é".repeat(100);
        let e = err(format!(r#"{{"type":"{kind}","id":3}}"#).as_bytes());
        assert_eq!((e.code, e.id), (ErrorCode::UnknownType, Some(3)));
        assert!(e.message.len() < 100);
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn id_and_kind_accessors() {
        let Ok(m) = parse(br#"{"type":"publish","id":9,"room":"r","event":"e"}"#) else {
            panic!("not parsed")
        };
        assert_eq!((m.kind(), m.id()), ("publish", Some(9)));
        let Ok(m) = parse(br#"{"type":"auth","token":"t","id":4}"#) else {
            panic!("not parsed")
        };
        assert_eq!((m.kind(), m.id()), ("auth", None));
    }

    #[test]
    fn display_names_code_and_message() {
        let e = err(b"[]");
        assert_eq!(e.to_string(), "bad_request: message must be a JSON object");
    }
}
