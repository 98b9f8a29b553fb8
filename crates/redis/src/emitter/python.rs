//! python-socketio's Redis managers (`AsyncRedisManager`, `RedisManager`, 5.14 and later,
//! write-only or not): JSON objects on one channel, [`PYTHON_CHANNEL`] unless configured,
//! whose `method` is `emit`, `enter_room`, `leave_room`, `close_room`, `disconnect` or
//! `callback`. Before 5.14 they were pickles, which are refused unread.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::room_name::{names, RoomName};
use super::{
    args, check_size, Emit, EmitterCommand, EmitterError, RoomChange, Sockets, TenantRule,
    MAX_VALUES,
};

/// The channel python-socketio's Redis managers publish on unless configured otherwise.
pub const PYTHON_CHANNEL: &str = "socketio";

/// The first byte of every pickle since protocol 2 (the `PROTO` opcode); python-socketio
/// before 5.14 pickled with the default protocol, 3 or later.
const PICKLE_PROTO: u8 = 0x80;

#[derive(Deserialize)]
struct Message<'a> {
    method: String,
    event: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    /// Present from 5.14.2 on, when `data` became the argument list.
    binary: Option<bool>,
    namespace: Option<String>,
    room: Option<OneOrMany>,
    skip_sid: Option<OneOrMany>,
    sid: Option<String>,
}

/// A room or sid, or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(RoomName),
    Many(Vec<RoomName>),
}

impl OneOrMany {
    fn names(self) -> Vec<Arc<str>> {
        match self {
            OneOrMany::One(RoomName(name)) => vec![name],
            OneOrMany::Many(names_) => names(names_),
        }
    }
}

fn malformed(what: &str) -> EmitterError {
    EmitterError::Malformed(format!("python-socketio: {what}"))
}

/// Decodes a message of python-socketio's Redis manager.
///
/// - `emit` becomes [`EmitterCommand::Publish`] to `room` (a room, a list of rooms, or every
///   socket of the tenant when `null`), leaving out the sessions of `skip_sid`. The callback
///   a python-socketio server may ask for is not returned.
/// - `enter_room`, `leave_room` and `disconnect` become [`EmitterCommand::Rooms`] (join,
///   leave) and [`Disconnect`](EmitterCommand::Disconnect) of one
///   [`Sockets::Sid`]; a disconnect names no room, so it needs [`TenantRule::Fixed`].
/// - `close_room` makes every member of the room leave it: [`EmitterCommand::Rooms`].
/// - `callback`, an acknowledgement returned between python-socketio servers, is
///   [`EmitterCommand::Ignored`].
pub fn decode_python(message: &[u8], rule: &TenantRule) -> Result<EmitterCommand, EmitterError> {
    check_size(message)?;
    if message.first() == Some(&PICKLE_PROTO) {
        return Err(EmitterError::Pickled);
    }
    let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
    if args::json_shape(text).values > MAX_VALUES {
        return Err(EmitterError::TooManyValues);
    }
    let message: Message<'_> = serde_json::from_str(text).map_err(|e| malformed(&e.to_string()))?;
    let ns: Arc<str> = match message.namespace.as_deref() {
        None | Some("") => "/".into(),
        Some(ns) => ns.into(),
    };
    match message.method.as_str() {
        "emit" => emit(message, ns, rule),
        "enter_room" | "leave_room" => {
            let sid = message.sid.ok_or_else(|| malformed("no sid"))?;
            let room = one_room(message.room)?;
            let tenant = rule.tenant([&*room])?;
            let sockets = Sockets::Sid(sid.into());
            let rooms = vec![room];
            let change = if message.method == "enter_room" {
                RoomChange::Join
            } else {
                RoomChange::Leave
            };
            Ok(EmitterCommand::Rooms {
                change,
                tenant,
                ns,
                sockets,
                rooms,
            })
        }
        "close_room" => {
            let room = one_room(message.room)?;
            let tenant = rule.tenant([&*room])?;
            Ok(EmitterCommand::Rooms {
                change: RoomChange::Leave,
                tenant,
                ns,
                sockets: Sockets::InRooms {
                    rooms: vec![room.clone()],
                    except: Vec::new(),
                },
                rooms: vec![room],
            })
        }
        "disconnect" => {
            let sid = message.sid.ok_or_else(|| malformed("no sid"))?;
            Ok(EmitterCommand::Disconnect {
                tenant: rule.tenant([])?,
                ns,
                sockets: Sockets::Sid(sid.into()),
                close: false,
            })
        }
        "callback" => Ok(EmitterCommand::Ignored(
            "an acknowledgement returned between python-socketio servers",
        )),
        other => Err(EmitterError::Unsupported(format!(
            "python-socketio method {other:?}"
        ))),
    }
}

fn one_room(room: Option<OneOrMany>) -> Result<Arc<str>, EmitterError> {
    match room {
        Some(OneOrMany::One(RoomName(room))) => Ok(room),
        _ => Err(malformed("not one room")),
    }
}

fn emit(
    message: Message<'_>,
    ns: Arc<str>,
    rule: &TenantRule,
) -> Result<EmitterCommand, EmitterError> {
    let event = message.event.ok_or_else(|| malformed("no event"))?;
    let (array, attachments) = arguments(message.data, message.binary)?;
    let named = message.room.is_some();
    let rooms = message.room.map(OneOrMany::names).unwrap_or_default();
    if named && rooms.is_empty() {
        // A python-socketio server fails on an empty list rather than broadcasting.
        return Err(malformed("an empty room list"));
    }
    Emit {
        ns,
        rooms,
        except: Vec::new(),
        event: event.into(),
        payload: args::payload(array, attachments)?,
        volatile: false,
        skip_sids: message.skip_sid.map(OneOrMany::names).unwrap_or_default(),
    }
    .command(rule)
}

/// The argument array and attachments of an emit's `data`, in each of its forms:
///
/// - `binary: false` (5.14.2 on): `data` is the argument list, and `[null]` stands for no
///   argument (`emit(event)` publishes `None` as the one argument, which the receiving server
///   sends as none).
/// - `binary: true`: `data` is `[arguments with placeholders, base64 of each attachment...]`.
/// - no `binary` (5.14.0 and 5.14.1): `data` is the one argument, or `null` for none; a
///   tuple of arguments arrives as a list, which those versions sent as one argument.
fn arguments(
    data: Option<&RawValue>,
    binary: Option<bool>,
) -> Result<(Box<RawValue>, Vec<Bytes>), EmitterError> {
    let raw = |text: String| RawValue::from_string(text).map_err(|e| malformed(&e.to_string()));
    match (binary, data) {
        (Some(false), Some(data)) if is_one_null(data.get()) => Ok((raw("[]".into())?, Vec::new())),
        (Some(false), Some(data)) => Ok((data.to_owned(), Vec::new())),
        (Some(true), Some(data)) => {
            let parts: Vec<&RawValue> =
                serde_json::from_str(data.get()).map_err(|_| malformed("binary data"))?;
            let (args, encoded) = parts
                .split_first()
                .ok_or_else(|| malformed("binary data without arguments"))?;
            let attachments = encoded
                .iter()
                .map(|part| {
                    let text: String = serde_json::from_str(part.get())
                        .map_err(|_| malformed("an attachment is not a base64 string"))?;
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map(Bytes::from)
                        .map_err(|_| malformed("an attachment is not base64"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(((*args).to_owned(), attachments))
        }
        (Some(_), None) => Err(malformed("no data")),
        (None, None) => Ok((raw("[]".into())?, Vec::new())),
        (None, Some(data)) if data.get() == "null" => Ok((raw("[]".into())?, Vec::new())),
        (None, Some(data)) => Ok((raw(format!("[{}]", data.get()))?, Vec::new())),
    }
}

/// Whether JSON `text` is `[null]`, spaces aside.
fn is_one_null(text: &str) -> bool {
    text.bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .eq(b"[null]".iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(data: &str, binary: Option<bool>) -> Result<String, EmitterError> {
        let data: Option<&RawValue> = serde_json::from_str(data).unwrap();
        arguments(data, binary).map(|(array, _)| array.get().to_owned())
    }

    #[test]
    fn each_form_of_data_gives_the_argument_list() {
        assert_eq!(args_of("[1, 2]", Some(false)).unwrap(), "[1, 2]");
        assert_eq!(args_of("[ null ]", Some(false)).unwrap(), "[]");
        assert_eq!(
            args_of("[null, null]", Some(false)).unwrap(),
            "[null, null]"
        );
        assert_eq!(args_of(r#"{"a": 1}"#, None).unwrap(), r#"[{"a": 1}]"#);
        assert_eq!(args_of("[1, 2]", None).unwrap(), "[[1, 2]]");
        assert_eq!(args_of("null", None).unwrap(), "[]");
        assert!(args_of("null", Some(false)).is_err());
        assert!(args_of("[]", Some(true)).is_err());
        assert!(args_of(r#"[[], "!"]"#, Some(true)).is_err());
        assert!(args_of("[[], 1]", Some(true)).is_err());
    }

    #[test]
    fn a_pickle_is_refused_unread() {
        let rule = TenantRule::Fixed("acme".into());
        assert_eq!(
            decode_python(b"\x80\x04\x95", &rule).unwrap_err(),
            EmitterError::Pickled
        );
    }
}
