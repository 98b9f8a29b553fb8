//! Encoders: server messages (and, for clients and tests, client messages) written straight
//! into one buffer with serde_json's string escaping, in the field order of the spec. The
//! result is the text frame's payload; WebSocket framing happens elsewhere.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::codes::{CloseCode, ErrorCode};
use super::parse::ClientMessage;

/// A JSON text under construction. Fields are written in a fixed order so that output is
/// byte-for-byte stable (`protocol/vectors/server.json`).
struct Json(Vec<u8>);

impl Json {
    fn with_capacity(capacity: usize) -> Json {
        Json(Vec::with_capacity(capacity))
    }

    /// Copies `text` as is: literal punctuation, keys, or JSON that is already valid.
    fn raw(&mut self, text: &str) -> &mut Json {
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    /// Writes `s` as a JSON string, quoted and escaped.
    fn str(&mut self, s: &str) -> &mut Json {
        // Serializing a `str` cannot fail and writing into a `Vec` never returns an I/O
        // error, so there is no error to report here.
        let _ = serde_json::to_writer(&mut self.0, s);
        self
    }

    fn u64(&mut self, n: u64) -> &mut Json {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.0.extend_from_slice(&digits[i..]);
        self
    }

    fn opt_id(&mut self, id: Option<u64>) -> &mut Json {
        match id {
            Some(id) => self.u64(id),
            None => self.raw("null"),
        }
    }

    fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.0))
    }
}

/// Room names, user ids and similar short strings: room for quotes and a few escapes.
fn estimate(s: &str) -> usize {
    s.len() + 8
}

/// An auto-joined room's place in a `welcome`'s `positions`: where its stream stands, and for
/// a room the client asked to resume, whether it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPosition<'a> {
    /// The room.
    pub room: &'a str,
    /// Its last offset.
    pub offset: u64,
    /// Its epoch.
    pub epoch: &'a str,
    /// For a room named in `auth.since`: whether every event after it follows the welcome.
    pub recovered: Option<bool>,
}

/// `{"type":"welcome","session":...,"user":...,"tenant":...,"rooms":[...],"heartbeat_ms":...}`
/// with `"expires_at"` (unix seconds of the token's `exp`) last when the token has one.
pub fn encode_welcome(
    session: &str,
    user: &str,
    tenant: &str,
    rooms: &[String],
    heartbeat_ms: u64,
    expires_at: Option<u64>,
) -> Bytes {
    encode_welcome_with(session, user, tenant, rooms, heartbeat_ms, expires_at, &[])
}

/// [`encode_welcome`] with the auto-joined rooms' `positions` last, when there are any:
/// `"positions":{"user:7":{"offset":3,"epoch":"...","recovered":true}}`.
pub fn encode_welcome_with(
    session: &str,
    user: &str,
    tenant: &str,
    rooms: &[String],
    heartbeat_ms: u64,
    expires_at: Option<u64>,
    positions: &[RoomPosition<'_>],
) -> Bytes {
    let capacity = 120
        + estimate(session)
        + estimate(user)
        + estimate(tenant)
        + rooms.iter().map(|r| estimate(r)).sum::<usize>()
        + positions
            .iter()
            .map(|p| 64 + estimate(p.room) + estimate(p.epoch))
            .sum::<usize>();
    let mut out = Json::with_capacity(capacity);
    out.raw(r#"{"type":"welcome","session":"#).str(session);
    out.raw(r#","user":"#).str(user);
    out.raw(r#","tenant":"#).str(tenant);
    out.raw(r#","rooms":["#);
    for (i, room) in rooms.iter().enumerate() {
        if i > 0 {
            out.raw(",");
        }
        out.str(room);
    }
    out.raw(r#"],"heartbeat_ms":"#).u64(heartbeat_ms);
    if let Some(expires_at) = expires_at {
        out.raw(r#","expires_at":"#).u64(expires_at);
    }
    if !positions.is_empty() {
        out.raw(r#","positions":{"#);
        for (i, p) in positions.iter().enumerate() {
            if i > 0 {
                out.raw(",");
            }
            out.str(p.room).raw(r#":{"offset":"#).u64(p.offset);
            out.raw(r#","epoch":"#).str(p.epoch);
            match p.recovered {
                Some(true) => out.raw(r#","recovered":true"#),
                Some(false) => out.raw(r#","recovered":false"#),
                None => &mut out,
            };
            out.raw("}");
        }
        out.raw("}");
    }
    out.raw("}").finish()
}

/// `{"type":"event","room":...,"event":...,"data":...,"offset":...,"epoch":...,"ns":...}`.
///
/// `room` is `None` for a tenant-wide broadcast and then omitted; `ns` is omitted when it is
/// `"/"`. `data` is copied verbatim. Encoded once per publish and shared by every recipient.
pub fn encode_event(
    room: Option<&str>,
    ns: &str,
    event: &str,
    data: &RawValue,
    offset: u64,
    epoch: &str,
) -> Bytes {
    let data = data.get();
    let capacity = 80
        + room.map_or(0, estimate)
        + estimate(ns)
        + estimate(event)
        + data.len()
        + estimate(epoch);
    let mut out = Json::with_capacity(capacity);
    out.raw(r#"{"type":"event""#);
    if let Some(room) = room {
        out.raw(r#","room":"#).str(room);
    }
    out.raw(r#","event":"#).str(event);
    out.raw(r#","data":"#).raw(data);
    out.raw(r#","offset":"#).u64(offset);
    out.raw(r#","epoch":"#).str(epoch);
    if ns != "/" {
        out.raw(r#","ns":"#).str(ns);
    }
    out.raw("}").finish()
}

/// `{"type":"reply","id":...,"ok":true}`.
pub fn encode_reply_ok(id: u64) -> Bytes {
    let mut out = Json::with_capacity(48);
    out.raw(r#"{"type":"reply","id":"#)
        .u64(id)
        .raw(r#","ok":true}"#)
        .finish()
}

/// `{"type":"reply","id":...,"ok":true,"expires_at":...}`: the answer to a `refresh`.
pub fn encode_reply_ok_expires(id: u64, expires_at: u64) -> Bytes {
    let mut out = Json::with_capacity(72);
    out.raw(r#"{"type":"reply","id":"#).u64(id);
    out.raw(r#","ok":true,"expires_at":"#).u64(expires_at);
    out.raw("}").finish()
}

/// `{"type":"reply","id":...,"ok":true,"recovered":...,"offset":...,"epoch":...}`: the answer
/// to a `subscribe` with `since`. `recovered` says whether every event after `since` follows
/// the reply; `offset` and `epoch` are the room's position (omitted when it has none).
pub fn encode_reply_recovered(id: u64, recovered: bool, position: Option<(u64, &str)>) -> Bytes {
    let mut out = Json::with_capacity(96 + position.map_or(0, |(_, e)| estimate(e)));
    out.raw(r#"{"type":"reply","id":"#).u64(id);
    out.raw(if recovered {
        r#","ok":true,"recovered":true"#
    } else {
        r#","ok":true,"recovered":false"#
    });
    if let Some((offset, epoch)) = position {
        out.raw(r#","offset":"#).u64(offset);
        out.raw(r#","epoch":"#).str(epoch);
    }
    out.raw("}").finish()
}

/// `{"type":"reply","id":...,"ok":true,"events":[...],"complete":...,"offset":...,"epoch":...}`:
/// the answer to a `history`. `events` are `event` messages' JSON texts, written as they are;
/// `offset` and `epoch` (the room's position) are omitted when the room has no stream.
pub fn encode_reply_history(
    id: u64,
    events: &[Bytes],
    complete: bool,
    position: Option<(u64, &str)>,
) -> Bytes {
    let size: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut out = Json::with_capacity(96 + size + position.map_or(0, |(_, e)| estimate(e)));
    out.raw(r#"{"type":"reply","id":"#).u64(id);
    out.raw(r#","ok":true,"events":["#);
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.raw(",");
        }
        out.raw(std::str::from_utf8(event).unwrap_or("null"));
    }
    out.raw(if complete {
        r#"],"complete":true"#
    } else {
        r#"],"complete":false"#
    });
    if let Some((offset, epoch)) = position {
        out.raw(r#","offset":"#).u64(offset);
        out.raw(r#","epoch":"#).str(epoch);
    }
    out.raw("}").finish()
}

/// `{"type":"reply","id":...,"ok":false,"error":{"code":...,"message":...}}`; `id` is `null`
/// when the request's id could not be read.
pub fn encode_reply_error(id: Option<u64>, code: ErrorCode, message: &str) -> Bytes {
    let mut out = Json::with_capacity(80 + estimate(message));
    out.raw(r#"{"type":"reply","id":"#).opt_id(id);
    out.raw(r#","ok":false,"error":{"code":""#)
        .raw(code.as_str());
    out.raw(r#"","message":"#).str(message);
    out.raw("}}").finish()
}

/// `{"type":"reply","id":...,"ok":true,"result":...}`: the answer to an `rpc`; `result` is the
/// backend's JSON, written as it was read.
pub fn encode_reply_result(id: u64, result: &serde_json::Value) -> Bytes {
    let result = result.to_string();
    let mut out = Json::with_capacity(48 + result.len());
    out.raw(r#"{"type":"reply","id":"#).u64(id);
    out.raw(r#","ok":true,"result":"#).raw(&result);
    out.raw("}").finish()
}

/// `{"type":"reply","id":...,"ok":false,"error":{"code":"refused","message":...,"reason":...}}`:
/// an `rpc` its backend refused, with the backend's message and own code.
pub fn encode_reply_refused(id: u64, reason: &str, message: &str) -> Bytes {
    let mut out = Json::with_capacity(96 + estimate(message) + estimate(reason));
    out.raw(r#"{"type":"reply","id":"#).u64(id);
    out.raw(r#","ok":false,"error":{"code":"refused","message":"#)
        .str(message);
    out.raw(r#","reason":"#).str(reason);
    out.raw("}}").finish()
}

/// `{"type":"pong","id":...}`, or `{"type":"pong"}` when the ping had no id.
pub fn encode_pong(id: Option<u64>) -> Bytes {
    let mut out = Json::with_capacity(40);
    out.raw(r#"{"type":"pong""#);
    if let Some(id) = id {
        out.raw(r#","id":"#).u64(id);
    }
    out.raw("}").finish()
}

/// `{"type":"disconnect","code":...,"reason":...,"reconnect":...}`, sent just before a close
/// frame with the same code; `reconnect` is [`CloseCode::reconnect`].
pub fn encode_disconnect(code: CloseCode, reason: &str) -> Bytes {
    let mut out = Json::with_capacity(72 + estimate(reason));
    out.raw(r#"{"type":"disconnect","code":"#)
        .u64(code.code().into());
    out.raw(r#","reason":"#).str(reason);
    out.raw(r#","reconnect":"#)
        .raw(if code.reconnect() { "true" } else { "false" });
    out.raw("}").finish()
}

/// The `data` and `ns` that end a `publish` and an `rpc`.
fn data_and_ns(out: &mut Json, data: &serde_json::value::RawValue, ns: &Option<String>) {
    out.raw(r#","data":"#).raw(data.get());
    if let Some(ns) = ns {
        out.raw(r#","ns":"#).str(ns);
    }
}

/// A client message in its canonical form: fields in the order of the spec's tables, absent
/// optional fields omitted, `publish.data` always written. [`super::parse`] reads it back to
/// an equal message.
pub fn encode_client(message: &ClientMessage) -> Bytes {
    let mut out = Json::with_capacity(128);
    out.raw(r#"{"type":""#).raw(message.kind()).raw("\"");
    match message {
        ClientMessage::Auth { token, since } => {
            out.raw(r#","token":"#).str(token);
            if let Some(since) = since {
                out.raw(r#","since":{"#);
                for (i, (room, s)) in since.iter().enumerate() {
                    if i > 0 {
                        out.raw(",");
                    }
                    out.str(room).raw(r#":{"offset":"#).u64(s.offset);
                    out.raw(r#","epoch":"#).str(&s.epoch).raw("}");
                }
                out.raw("}");
            }
        }
        ClientMessage::Subscribe {
            id,
            room,
            ns,
            tenant,
            ..
        }
        | ClientMessage::History {
            id,
            room,
            ns,
            tenant,
            ..
        }
        | ClientMessage::Unsubscribe {
            id,
            room,
            ns,
            tenant,
        } => {
            out.raw(r#","id":"#).u64(*id);
            out.raw(r#","room":"#).str(room);
            if let Some(ns) = ns {
                out.raw(r#","ns":"#).str(ns);
            }
            if let Some(tenant) = tenant {
                out.raw(r#","tenant":"#).str(tenant);
            }
            if let ClientMessage::Subscribe {
                since: Some(since), ..
            }
            | ClientMessage::History {
                since: Some(since), ..
            } = message
            {
                out.raw(r#","since":{"offset":"#).u64(since.offset);
                out.raw(r#","epoch":"#).str(&since.epoch).raw("}");
            }
            if let ClientMessage::History { limit, reverse, .. } = message {
                if let Some(limit) = limit {
                    out.raw(r#","limit":"#).u64(*limit);
                }
                if *reverse {
                    out.raw(r#","reverse":true"#);
                }
            }
        }
        ClientMessage::Publish {
            id,
            room,
            event,
            data,
            ns,
        } => {
            out.raw(r#","id":"#).u64(*id);
            out.raw(r#","room":"#).str(room);
            out.raw(r#","event":"#).str(event);
            data_and_ns(&mut out, data, ns);
        }
        ClientMessage::Rpc {
            id,
            method,
            data,
            ns,
        } => {
            out.raw(r#","id":"#).u64(*id);
            out.raw(r#","method":"#).str(method);
            data_and_ns(&mut out, data, ns);
        }
        ClientMessage::Refresh { id, token } => {
            out.raw(r#","id":"#).u64(*id);
            out.raw(r#","token":"#).str(token);
        }
        ClientMessage::Inbox {
            id,
            op,
            notification,
            options,
        } => {
            out.raw(r#","id":"#).u64(*id);
            out.raw(r#","op":"#).str(op.as_str());
            if let Some(n) = notification {
                out.raw(r#","notification":"#).raw(&n.to_string());
            }
            if !options.is_null() {
                out.raw(r#","options":"#).raw(&options.to_string());
            }
        }
        ClientMessage::Ping { id } => {
            if let Some(id) = id {
                out.raw(r#","id":"#).u64(*id);
            }
        }
    }
    out.raw("}").finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::parse::{parse, Since, MAX_ID};
    use serde_json::{json, Value};

    /// A small deterministic generator (xorshift64*) so the property tests need no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// A string mixing ASCII, everything JSON must escape, and multi-byte characters.
        fn string(&mut self, max_chars: u64) -> String {
            const SPECIAL: &[char] = &[
                '"',
                '\\',
                '/',
                '\n',
                '\r',
                '\t',
                '\u{8}',
                '\u{c}',
                '\0',
                '\u{1}',
                '\u{1f}',
                '\u{7f}',
                'é',
                'ß',
                '日',
                '\u{2028}',
                '\u{2029}',
                '\u{feff}',
                '😀',
                '\u{10ffff}',
            ];
            let len = self.below(max_chars + 1);
            (0..len)
                .map(|_| match self.below(3) {
                    0 => SPECIAL[self.below(SPECIAL.len() as u64) as usize],
                    _ => char::from(b' ' + self.below(95) as u8),
                })
                .collect()
        }
    }

    fn value(bytes: &Bytes) -> Value {
        match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => panic!("{:?} is not JSON: {e}", String::from_utf8_lossy(bytes)),
        }
    }

    fn raw(json: &str) -> Box<RawValue> {
        match RawValue::from_string(json.to_owned()) {
            Ok(r) => r,
            Err(e) => panic!("{json:?}: {e}"),
        }
    }

    #[test]
    fn event_round_trips_through_a_json_parser() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let room = (rng.below(4) != 0).then(|| rng.string(40));
            let ns = if rng.below(2) == 0 {
                "/".to_owned()
            } else {
                format!("/{}", rng.string(10))
            };
            let event = rng.string(30);
            let epoch = rng.string(16);
            let data_value = json!({ "text": rng.string(50), "n": rng.next(), "list": [rng.string(5), null, true] });
            let data = raw(&data_value.to_string());
            let offset = rng.next();

            let frame = encode_event(room.as_deref(), &ns, &event, &data, offset, &epoch);
            let v = value(&frame);
            let Some(obj) = v.as_object() else {
                panic!("not an object: {v}")
            };
            let mut expected = 5;
            assert_eq!(v["type"], "event");
            match &room {
                Some(room) => {
                    assert_eq!(v["room"], room.as_str());
                    expected += 1;
                }
                None => assert!(obj.get("room").is_none()),
            }
            if ns == "/" {
                assert!(obj.get("ns").is_none());
            } else {
                assert_eq!(v["ns"], ns.as_str());
                expected += 1;
            }
            assert_eq!(v["event"], event.as_str());
            assert_eq!(v["data"], data_value);
            assert_eq!(v["offset"].as_u64(), Some(offset));
            assert_eq!(v["epoch"], epoch.as_str());
            assert_eq!(obj.len(), expected);
        }
    }

    #[test]
    fn other_server_messages_round_trip() {
        let mut rng = Rng(7);
        for _ in 0..500 {
            let (s, u, t) = (rng.string(20), rng.string(20), rng.string(20));
            let rooms: Vec<String> = (0..rng.below(4)).map(|_| rng.string(12)).collect();
            let exp = (rng.below(2) == 0).then(|| rng.next());
            let v = value(&encode_welcome(&s, &u, &t, &rooms, 25_000, exp));
            assert_eq!(v["session"], s.as_str());
            assert_eq!(v["user"], u.as_str());
            assert_eq!(v["tenant"], t.as_str());
            assert_eq!(v["rooms"], json!(rooms));
            assert_eq!(v["expires_at"].as_u64(), exp);

            let message = rng.string(60);
            let id = (rng.below(3) != 0).then(|| rng.below(MAX_ID + 1));
            let v = value(&encode_reply_error(id, ErrorCode::Forbidden, &message));
            assert_eq!(v["id"].as_u64(), id);
            assert_eq!(
                v["error"],
                json!({ "code": "forbidden", "message": message })
            );

            let v = value(&encode_disconnect(CloseCode::SlowConsumer, &message));
            assert_eq!(
                v,
                json!({ "type": "disconnect", "code": 4008, "reason": message, "reconnect": true })
            );
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, MAX_ID, u64::MAX] {
            assert_eq!(
                encode_reply_ok(n),
                format!(r#"{{"type":"reply","id":{n},"ok":true}}"#)
            );
        }
    }

    #[test]
    fn client_messages_round_trip_through_the_parser() {
        let mut rng = Rng(42);
        let name = |rng: &mut Rng| format!("n{}", rng.string(60));
        for _ in 0..2000 {
            let id = rng.below(MAX_ID + 1);
            let ns = (rng.below(2) == 0).then(|| format!("/{}", rng.string(20)));
            let message = match rng.below(8) {
                0 => ClientMessage::Auth {
                    token: rng.string(80),
                    since: (rng.below(2) == 0).then(|| {
                        let mut rooms: Vec<(String, Since)> = (0..rng.below(3))
                            .map(|_| {
                                let since = Since {
                                    offset: rng.below(1000),
                                    epoch: name(&mut rng),
                                };
                                (name(&mut rng), since)
                            })
                            .collect();
                        rooms.sort_by(|a, b| a.0.cmp(&b.0));
                        rooms.dedup_by(|a, b| a.0 == b.0);
                        rooms
                    }),
                },
                1 => ClientMessage::Subscribe {
                    id,
                    room: name(&mut rng),
                    ns,
                    tenant: (rng.below(2) == 0).then(|| name(&mut rng)),
                    since: (rng.below(2) == 0).then(|| Since {
                        offset: rng.below(1000),
                        epoch: name(&mut rng),
                    }),
                },
                2 => ClientMessage::Unsubscribe {
                    id,
                    room: name(&mut rng),
                    ns,
                    tenant: None,
                },
                3 => ClientMessage::Publish {
                    id,
                    room: name(&mut rng),
                    event: name(&mut rng),
                    data: raw(&json!([rng.string(30), { "k": rng.next() }]).to_string()),
                    ns,
                },
                4 => ClientMessage::Refresh {
                    id,
                    token: rng.string(80),
                },
                5 => ClientMessage::Ping { id: Some(id) },
                6 => ClientMessage::History {
                    id,
                    room: name(&mut rng),
                    ns,
                    tenant: None,
                    since: (rng.below(2) == 0).then(|| Since {
                        offset: rng.below(1000),
                        epoch: name(&mut rng),
                    }),
                    limit: (rng.below(2) == 0).then(|| 1 + rng.below(1000)),
                    reverse: rng.below(2) == 0,
                },
                _ => ClientMessage::Ping { id: None },
            };
            let frame = encode_client(&message);
            assert_eq!(
                parse(&frame),
                Ok(message),
                "{:?}",
                String::from_utf8_lossy(&frame)
            );
        }
    }
}
