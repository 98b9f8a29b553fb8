//! Sans-IO codec of the native protocol v1 (`protocol/README.md`): text frame payloads in,
//! [`ClientMessage`]s out; server messages encoded once into [`bytes::Bytes`]. No sockets, no
//! clock: the session layer decides what to answer, this module only reads and writes JSON.

mod codes;
mod encode;
mod message;
mod parse;

pub use codes::{CloseCode, ErrorCode};
pub use encode::{
    encode_client, encode_disconnect, encode_event, encode_pong, encode_reply_error,
    encode_reply_history, encode_reply_ok, encode_reply_ok_expires, encode_reply_recovered,
    encode_reply_refused, encode_reply_result, encode_welcome, encode_welcome_with, RoomPosition,
};
pub use parse::{
    depth, parse, room_positions, ClientMessage, ParseError, Since, MAX_DATA_DEPTH,
    MAX_HISTORY_LIMIT, MAX_ID, MAX_NAME_BYTES, MAX_SINCE_ROOMS,
};

/// Checks every golden vector of `protocol/vectors/` and the fuzz seeds copied from them.
#[cfg(test)]
mod vectors {
    use super::*;
    use serde_json::value::RawValue;
    use serde_json::{json, Value};

    const CLIENT: &str = include_str!("../../../protocol/vectors/client.json");
    const SERVER: &str = include_str!("../../../protocol/vectors/server.json");
    const FRAMES: &str = include_str!("../../../protocol/vectors/frames.json");

    fn entries(file: &str) -> Vec<Value> {
        match serde_json::from_str(file) {
            Ok(Value::Array(entries)) => entries,
            other => panic!("a vector file is not a JSON array: {other:?}"),
        }
    }

    fn text<'a>(entry: &'a Value, key: &str) -> &'a str {
        match entry[key].as_str() {
            Some(s) => s,
            None => panic!("{key} is not a string in {entry}"),
        }
    }

    fn value(data: &RawValue) -> Value {
        match serde_json::from_str(data.get()) {
            Ok(v) => v,
            Err(e) => panic!("data {data} is not JSON: {e}"),
        }
    }

    /// The canonical form `client.json` states parsed messages in: every field of the
    /// message, absent optional fields as `null`, `data` as a JSON value.
    fn canonical(message: &ClientMessage) -> Value {
        match message {
            ClientMessage::Auth { token, since } => {
                let since = since.as_ref().map(|rooms| {
                    rooms
                        .iter()
                        .map(|(room, s)| {
                            (room.clone(), json!({"offset": s.offset, "epoch": s.epoch}))
                        })
                        .collect::<serde_json::Map<String, Value>>()
                });
                json!({ "type": "auth", "token": token, "since": since })
            }
            ClientMessage::Subscribe {
                id,
                room,
                ns,
                tenant,
                since,
            } => {
                let since = since
                    .as_ref()
                    .map(|s| json!({"offset": s.offset, "epoch": s.epoch}));
                json!({ "type": "subscribe", "id": id, "room": room, "ns": ns, "tenant": tenant, "since": since })
            }
            ClientMessage::Unsubscribe {
                id,
                room,
                ns,
                tenant,
            } => {
                json!({ "type": "unsubscribe", "id": id, "room": room, "ns": ns, "tenant": tenant })
            }
            ClientMessage::Publish {
                id,
                room,
                event,
                data,
                ns,
            } => {
                json!({ "type": "publish", "id": id, "room": room, "event": event, "data": value(data), "ns": ns })
            }
            ClientMessage::Refresh { id, token } => {
                json!({ "type": "refresh", "id": id, "token": token })
            }
            ClientMessage::Ping { id } => json!({ "type": "ping", "id": id }),
            ClientMessage::Rpc {
                id,
                method,
                data,
                ns,
            } => {
                json!({ "type": "rpc", "id": id, "method": method, "data": value(data), "ns": ns })
            }
            ClientMessage::History {
                id,
                room,
                ns,
                tenant,
                since,
                limit,
                reverse,
            } => {
                let since = since
                    .as_ref()
                    .map(|s| json!({"offset": s.offset, "epoch": s.epoch}));
                json!({ "type": "history", "id": id, "room": room, "ns": ns, "tenant": tenant,
                        "since": since, "limit": limit, "reverse": reverse })
            }
            ClientMessage::Inbox {
                id,
                op,
                notification,
                options,
            } => {
                json!({ "type": "inbox", "id": id, "op": op.as_str(),
                        "notification": notification, "options": options })
            }
        }
    }

    #[test]
    fn client_vectors() {
        let entries = entries(CLIENT);
        assert!(entries.len() > 50);
        for entry in &entries {
            let name = text(entry, "name");
            let frame = text(entry, "frame");
            match (
                parse(frame.as_bytes()),
                entry.get("expect"),
                entry.get("error"),
            ) {
                (Ok(message), Some(expect), None) => {
                    assert_eq!(&canonical(&message), expect, "{name}");
                    // The canonical encoding reads back to the same message.
                    assert_eq!(
                        parse(&encode_client(&message)).as_ref(),
                        Ok(&message),
                        "{name}"
                    );
                }
                (Err(e), None, Some(error)) => {
                    assert_eq!(e.code.as_str(), text(error, "code"), "{name}: {e}");
                    assert_eq!(e.id, error["id"].as_u64(), "{name}: {e}");
                    assert!(error["id"].is_u64() || error["id"].is_null(), "{name}");
                }
                (got, _, _) => panic!("{name}: got {got:?} for {entry}"),
            }
        }
    }

    fn id(message: &Value) -> Option<u64> {
        message["id"].as_u64()
    }

    fn encode(message: &Value) -> bytes::Bytes {
        let u64_of = |key: &str| match message[key].as_u64() {
            Some(n) => n,
            None => panic!("{key} is not a u64 in {message}"),
        };
        match text(message, "type") {
            "welcome" => {
                let rooms: Vec<String> = match serde_json::from_value(message["rooms"].clone()) {
                    Ok(rooms) => rooms,
                    Err(e) => panic!("rooms in {message}: {e}"),
                };
                let positions: Vec<RoomPosition<'_>> = message["positions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| RoomPosition {
                        room: text(p, "room"),
                        offset: p["offset"].as_u64().expect("an offset"),
                        epoch: text(p, "epoch"),
                        recovered: p["recovered"].as_bool(),
                    })
                    .collect();
                encode_welcome_with(
                    text(message, "session"),
                    text(message, "user"),
                    text(message, "tenant"),
                    &rooms,
                    u64_of("heartbeat_ms"),
                    message["expires_at"].as_u64(),
                    &positions,
                )
            }
            "event" => {
                let data = match RawValue::from_string(text(message, "data_raw").to_owned()) {
                    Ok(data) => data,
                    Err(e) => panic!("data_raw in {message}: {e}"),
                };
                encode_event(
                    message["room"].as_str(),
                    text(message, "ns"),
                    text(message, "event"),
                    &data,
                    u64_of("offset"),
                    text(message, "epoch"),
                )
            }
            "reply" => match (message["ok"].as_bool(), message["expires_at"].as_u64()) {
                (Some(true), None) if message.get("events_raw").is_some() => {
                    let events: Vec<bytes::Bytes> = message["events_raw"]
                        .as_array()
                        .expect("events_raw is an array")
                        .iter()
                        .map(|e| bytes::Bytes::from(e.as_str().expect("a JSON text").to_owned()))
                        .collect();
                    let position = message["offset"]
                        .as_u64()
                        .map(|offset| (offset, text(message, "epoch")));
                    encode_reply_history(
                        u64_of("id"),
                        &events,
                        message["complete"] == true,
                        position,
                    )
                }
                (Some(true), None) if message.get("result").is_some() => {
                    encode_reply_result(u64_of("id"), &message["result"])
                }
                (Some(false), None) if message.get("reason").is_some() => encode_reply_refused(
                    u64_of("id"),
                    text(message, "reason"),
                    text(message, "message"),
                ),
                (Some(true), None) if message.get("recovered").is_some() => {
                    let position = message["offset"]
                        .as_u64()
                        .map(|offset| (offset, text(message, "epoch")));
                    encode_reply_recovered(u64_of("id"), message["recovered"] == true, position)
                }
                (Some(true), None) => encode_reply_ok(u64_of("id")),
                (Some(true), Some(expires_at)) => encode_reply_ok_expires(u64_of("id"), expires_at),
                _ => {
                    let code = ErrorCode::from_wire(text(message, "code"));
                    let Some(code) = code else {
                        panic!("unknown code in {message}")
                    };
                    encode_reply_error(id(message), code, text(message, "message"))
                }
            },
            "pong" => encode_pong(id(message)),
            "disconnect" => {
                let code = u16::try_from(u64_of("code"))
                    .ok()
                    .and_then(CloseCode::from_code);
                let Some(code) = code else {
                    panic!("unknown close code in {message}")
                };
                encode_disconnect(code, text(message, "reason"))
            }
            other => panic!("unknown server message type {other}"),
        }
    }

    #[test]
    fn server_vectors() {
        let entries = entries(SERVER);
        assert!(entries.len() > 20);
        for entry in &entries {
            let name = text(entry, "name");
            let bytes = encode(&entry["message"]);
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                text(entry, "frame"),
                "{name}"
            );
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 6455 section 5.2 framing of one final text frame, masked when a mask is given.
    fn text_frame(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![0x81];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            len @ 0..=125 => out.push(mask_bit | len as u8),
            len @ 126..=0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        match mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    #[test]
    fn frame_vectors() {
        let named = |file: &str, prefix: &str| -> Vec<(String, String)> {
            let frame = |e: &Value| {
                (
                    format!("{prefix}:{}", text(e, "name")),
                    text(e, "frame").to_owned(),
                )
            };
            entries(file).iter().map(frame).collect()
        };
        let sources = [named(CLIENT, "client"), named(SERVER, "server")].concat();
        let entries = entries(FRAMES);
        assert!(entries.iter().any(|e| e["mask"].is_string()));
        assert!(entries.iter().any(|e| e["mask"].is_null()));
        for entry in &entries {
            let name = text(entry, "name");
            let payload = text(entry, "text");
            let source = text(entry, "source");
            assert!(
                sources.iter().any(|(n, f)| n == source && f == payload),
                "{name}: text is not the frame of vector {source}"
            );
            let mask = entry["mask"].as_str().map(|m| {
                let bytes: Vec<u8> = (0..m.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(m.get(i..i + 2)?, 16).ok())
                    .collect();
                match <[u8; 4]>::try_from(bytes) {
                    Ok(mask) => mask,
                    Err(_) => panic!("{name}: mask must be 4 bytes of hex"),
                }
            });
            assert_eq!(
                hex(&text_frame(payload.as_bytes(), mask)),
                text(entry, "hex"),
                "{name}"
            );
        }
    }

    /// `fuzz/seeds/native_parse/` holds exactly the frames of `client.json`, one file each.
    #[test]
    fn fuzz_seeds_match_client_vectors() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/native_parse");
        let mut seeds: Vec<(String, Vec<u8>)> = match std::fs::read_dir(dir) {
            Ok(files) => files
                .filter_map(Result::ok)
                .map(|f| {
                    let name = f.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read(f.path()).unwrap_or_default())
                })
                .collect(),
            Err(e) => panic!("{dir}: {e}"),
        };
        seeds.sort();
        let mut expected: Vec<(String, Vec<u8>)> = entries(CLIENT)
            .iter()
            .map(|e| {
                (
                    text(e, "name").to_owned(),
                    text(e, "frame").as_bytes().to_vec(),
                )
            })
            .collect();
        expected.sort();
        assert_eq!(seeds, expected);
    }

    #[test]
    fn vector_names_are_unique() {
        for file in [CLIENT, SERVER, FRAMES] {
            let mut names: Vec<String> = entries(file)
                .iter()
                .map(|e| text(e, "name").to_owned())
                .collect();
            let count = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), count);
        }
    }
}
