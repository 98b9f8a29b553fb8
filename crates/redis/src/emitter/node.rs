//! `@socket.io/redis-emitter` (npm, 5.x) under key `<key>` (`socket.io` unless configured):
//! broadcasts are MessagePack arrays `[uid, packet, opts]` on `<key>#<nsp>#`, or
//! `<key>#<nsp>#<room>#` when they target one room; requests (`socketsJoin`, `socketsLeave`,
//! `disconnectSockets`, `serverSideEmit`) are JSON objects on `<key>-request#<nsp>#`. Socket.IO
//! servers using the Redis adapter talk on the same channels.

use std::sync::Arc;

use rmpv::ValueRef;
use serde::Deserialize;

use super::room_name::{names, RoomName};
use super::{
    args, check_size, distinct, msgpack, Emit, EmitterCommand, EmitterError, RoomChange, Sockets,
    TenantRule,
};

/// Socket.IO packet types a broadcast may carry: an event, and the same with binary parts.
const EVENT: u64 = 2;
const BINARY_EVENT: u64 = 5;

/// The patterns to `PSUBSCRIBE` for the emitters of `key`: broadcasts, then requests, on
/// namespace `nsp`, or on every namespace when `None`.
pub fn node_patterns(key: &str, nsp: Option<&str>) -> [String; 2] {
    let key = glob_escaped(key);
    match nsp.map(glob_escaped) {
        Some(nsp) => [format!("{key}#{nsp}#*"), format!("{key}-request#{nsp}#")],
        None => [format!("{key}#*"), format!("{key}-request#*")],
    }
}

/// `text` matching itself in a Redis glob pattern.
fn glob_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Decodes a message published on `channel` under `key`: a request on
/// `<key>-request#<nsp>#`, otherwise a broadcast.
pub fn decode_node(
    key: &str,
    channel: &str,
    message: &[u8],
    rule: &TenantRule,
) -> Result<EmitterCommand, EmitterError> {
    let is_request = channel
        .strip_prefix(key)
        .is_some_and(|rest| rest.starts_with("-request#"));
    if is_request {
        decode_node_request(key, channel, message, rule)
    } else {
        decode_node_emitter(key, channel, message, rule)
    }
}

/// Decodes a broadcast, `[uid, {type: 2, data: [event, ...args], nsp}, {rooms, except,
/// flags: {volatile, compress}}]` published on `<key>#<nsp>#` or `<key>#<nsp>#<room>#`, into
/// [`EmitterCommand::Publish`]. The uid (`"emitter"` from an emitter, a server's id from the
/// adapter) is not read.
pub fn decode_node_emitter(
    key: &str,
    channel: &str,
    message: &[u8],
    rule: &TenantRule,
) -> Result<EmitterCommand, EmitterError> {
    check_size(message)?;
    let malformed = |what: &str| EmitterError::Malformed(format!("broadcast: {what}"));
    let after_key = channel
        .strip_prefix(key)
        .and_then(|rest| rest.strip_prefix('#'))
        .ok_or_else(|| malformed(&format!("channel {channel:?} is not under key {key:?}")))?;
    let value = msgpack::read(message)?;
    let ValueRef::Array(parts) = &value else {
        return Err(malformed("not an array"));
    };
    let [_uid, ValueRef::Map(packet), ValueRef::Map(opts), ..] = parts.as_slice() else {
        return Err(malformed("not [uid, packet, opts]"));
    };

    match field(packet, "type") {
        Some(ValueRef::Integer(kind)) => match kind.as_u64() {
            Some(EVENT | BINARY_EVENT) => {}
            _ => {
                return Err(EmitterError::Unsupported(format!(
                    "Socket.IO packet type {kind} in a broadcast"
                )))
            }
        },
        _ => return Err(malformed("the packet has no type")),
    }
    let ns = match field(packet, "nsp") {
        None | Some(ValueRef::Nil) => "/",
        Some(ValueRef::String(nsp)) => nsp.as_str().ok_or_else(|| malformed("namespace"))?,
        Some(_) => return Err(malformed("the namespace is not a string")),
    };
    let Some(ValueRef::Array(data)) = field(packet, "data") else {
        return Err(malformed("the packet has no data array"));
    };
    let [ValueRef::String(event), rest @ ..] = data.as_slice() else {
        return Err(malformed("the data does not start with the event name"));
    };
    let event = event.as_str().ok_or_else(|| malformed("event name"))?;

    let except = room_names(field(opts, "except")).map_err(|()| malformed("opts.except"))?;
    let rooms = room_names(field(opts, "rooms")).map_err(|()| malformed("opts.rooms"))?;
    let volatile = match field(opts, "flags") {
        Some(ValueRef::Map(flags)) => {
            matches!(field(flags, "volatile"), Some(ValueRef::Boolean(true)))
        }
        _ => false,
    };

    // The channel repeats the namespace, and the room when there is one; the message is
    // what counts, as for the adapter, but the two must not tell different stories.
    let channel_room = after_key
        .strip_prefix(ns)
        .and_then(|rest| rest.strip_prefix('#'))
        .ok_or_else(|| malformed(&format!("channel {channel:?} is not of namespace {ns:?}")))?;
    if let Some(room) = channel_room.strip_suffix('#') {
        if !rooms.iter().any(|r| **r == *room) {
            return Err(malformed(&format!(
                "channel {channel:?} names a room the message does not target"
            )));
        }
    } else if !channel_room.is_empty() {
        return Err(malformed(&format!(
            "channel {channel:?} does not end with #"
        )));
    }

    let (array, attachments) = msgpack::args(rest)?;
    Emit {
        ns: ns.into(),
        rooms,
        except,
        event: event.into(),
        payload: args::payload(array, attachments)?,
        volatile,
        skip_sids: Vec::new(),
    }
    .command(rule)
}

/// The value of `key` in a map.
fn field<'v, 'a>(map: &'v [(ValueRef<'a>, ValueRef<'a>)], key: &str) -> Option<&'v ValueRef<'a>> {
    map.iter()
        .find(|(k, _)| matches!(k, ValueRef::String(k) if k.as_str() == Some(key)))
        .map(|(_, v)| v)
}

/// A list of room names: strings, or integers as their decimal text; none when absent.
fn room_names(value: Option<&ValueRef<'_>>) -> Result<Vec<Arc<str>>, ()> {
    let items = match value {
        None | Some(ValueRef::Nil) => return Ok(Vec::new()),
        Some(ValueRef::Array(items)) => items,
        Some(_) => return Err(()),
    };
    items
        .iter()
        .map(|item| match item {
            ValueRef::String(name) => name.as_str().map(Arc::from).ok_or(()),
            ValueRef::Integer(n) => Ok(Arc::from(n.to_string())),
            _ => Err(()),
        })
        .collect()
}

/// Request types, as the adapter numbers them.
mod request_type {
    pub(super) const SOCKETS: u64 = 0;
    pub(super) const ALL_ROOMS: u64 = 1;
    pub(super) const REMOTE_JOIN: u64 = 2;
    pub(super) const REMOTE_LEAVE: u64 = 3;
    pub(super) const REMOTE_DISCONNECT: u64 = 4;
    pub(super) const REMOTE_FETCH: u64 = 5;
    pub(super) const SERVER_SIDE_EMIT: u64 = 6;
}

/// A request: `{type, opts: {rooms, except}, rooms}` or `{type, opts, close}`, as an emitter
/// writes them; servers add `uid` and `requestId`, and name one socket by `sid` instead of
/// `opts`.
#[derive(Deserialize)]
struct Request {
    #[serde(rename = "type")]
    kind: u64,
    opts: Option<Selection>,
    #[serde(default)]
    rooms: Vec<RoomName>,
    #[serde(default)]
    close: bool,
}

#[derive(Deserialize)]
struct Selection {
    #[serde(default)]
    rooms: Vec<RoomName>,
    #[serde(default)]
    except: Vec<RoomName>,
}

/// Decodes a request published on `<key>-request#<nsp>#`: `socketsJoin`, `socketsLeave` and
/// `disconnectSockets` into [`EmitterCommand::Rooms`] (join and leave) and
/// [`Disconnect`](EmitterCommand::Disconnect); `serverSideEmit` and the requests that Socket.IO
/// servers send one another into [`EmitterCommand::Ignored`].
pub fn decode_node_request(
    key: &str,
    channel: &str,
    message: &[u8],
    rule: &TenantRule,
) -> Result<EmitterCommand, EmitterError> {
    use request_type::*;

    check_size(message)?;
    let ns = channel
        .strip_prefix(key)
        .and_then(|rest| rest.strip_prefix("-request#"))
        .and_then(|rest| rest.strip_suffix('#'))
        .filter(|ns| !ns.is_empty())
        .ok_or_else(|| {
            EmitterError::Malformed(format!(
                "request: channel {channel:?} is not a request channel of key {key:?}"
            ))
        })?;
    // The adapter's own test: JSON starts with `{`; anything else is MessagePack, which
    // only servers send (broadcasts that await acknowledgements).
    if message.first() != Some(&b'{') {
        return Err(EmitterError::Unsupported(
            "a MessagePack request, which only Socket.IO servers send".into(),
        ));
    }
    let request: Request = serde_json::from_slice(message)
        .map_err(|e| EmitterError::Malformed(format!("request: {e}")))?;

    let selection = match (request.kind, request.opts) {
        (SERVER_SIDE_EMIT, _) => {
            return Ok(EmitterCommand::Ignored(
                "serverSideEmit: addressed to Socket.IO servers, not to clients",
            ))
        }
        (SOCKETS | ALL_ROOMS | REMOTE_FETCH, _) => {
            return Ok(EmitterCommand::Ignored(
                "a query between Socket.IO servers, which awaits their answers",
            ))
        }
        (REMOTE_JOIN | REMOTE_LEAVE | REMOTE_DISCONNECT, None) => {
            return Ok(EmitterCommand::Ignored(
                "a request between Socket.IO servers about one of their sockets",
            ))
        }
        (REMOTE_JOIN | REMOTE_LEAVE | REMOTE_DISCONNECT, Some(selection)) => selection,
        (kind, _) => return Err(EmitterError::Unsupported(format!("request type {kind}"))),
    };
    let selected = distinct(names(selection.rooms));
    let except = distinct(names(selection.except));
    let rooms = distinct(names(request.rooms));
    let ns: Arc<str> = ns.into();

    if request.kind == REMOTE_DISCONNECT {
        let tenant = rule.tenant(selected.iter().map(|r| &**r))?;
        return Ok(EmitterCommand::Disconnect {
            tenant,
            ns,
            sockets: Sockets::InRooms {
                rooms: selected,
                except,
            },
            close: request.close,
        });
    }
    if rooms.is_empty() {
        return Err(EmitterError::Malformed(
            "request: no rooms to join or leave".into(),
        ));
    }
    let tenant = rule.tenant(selected.iter().chain(&rooms).map(|r| &**r))?;
    let sockets = Sockets::InRooms {
        rooms: selected,
        except,
    };
    let change = if request.kind == REMOTE_JOIN {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_glob_characters() {
        assert_eq!(
            node_patterns("socket.io", None),
            ["socket.io#*", "socket.io-request#*"]
        );
        assert_eq!(
            node_patterns("k*", Some("/a[1]")),
            [r"k\*#/a\[1\]#*", r"k\*-request#/a\[1\]#"]
        );
    }

    #[test]
    fn requests_and_broadcasts_are_told_apart_by_channel() {
        let rule = TenantRule::Fixed("acme".into());
        let request = br#"{"type":4,"opts":{"rooms":[],"except":[]},"close":false}"#;
        assert!(matches!(
            decode_node("socket.io", "socket.io-request#/#", request, &rule),
            Ok(EmitterCommand::Disconnect { .. })
        ));
        assert!(matches!(
            decode_node("socket.io", "socket.io#/#", request, &rule),
            Err(EmitterError::Malformed(_))
        ));
        assert!(matches!(
            decode_node("socket.io", "socket.io-request#/", request, &rule),
            Err(EmitterError::Malformed(_))
        ));
    }
}
