//! What the load generator writes and reads, without sockets: the benchmark's tokens, the
//! `tick` event's data (a sequence number, its scheduled send time, the phase it belongs to
//! and the publishing connection that sent it, padded to a fixed size), the publish request
//! body, and the client side of Engine.IO v4 / Socket.IO v5 over WebSocket. Every server
//! echoes the data object it was given, so reading a tick back is a search for four keys in
//! the received bytes.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use memchr::memmem;
use serde_json::{json, Value};

/// The tenant every benchmark connection belongs to.
pub(crate) const TENANT: &str = "bench-0";
/// The event name of published messages.
pub(crate) const EVENT: &str = "tick";
/// The Engine.IO path and query of a WebSocket-only Socket.IO connection.
pub(crate) const SOCKET_IO_PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// Which protocol a subscriber speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Roomcast's JSON protocol at `/ws`, the token in the query.
    Native,
    /// Socket.IO v5 over Engine.IO v4 on WebSocket, the token in the namespace connect.
    SocketIo,
}

impl Protocol {
    /// The command-line and report name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Native => "native",
            Protocol::SocketIo => "socketio",
        }
    }

    /// Parses [`name`](Self::name).
    pub(crate) fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "native" => Some(Protocol::Native),
            "socketio" => Some(Protocol::SocketIo),
            _ => None,
        }
    }
}

/// How subscribers are spread over rooms: `rooms` rooms, subscriber `id` in room `id % rooms`.
/// One room is named `bench`; more are `r0`, `r1`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Rooms, at least 1.
    pub(crate) rooms: usize,
}

impl Layout {
    /// The room index of subscriber `id`.
    pub(crate) fn room_of(self, id: usize) -> usize {
        id % self.rooms.max(1)
    }

    /// The name of room `index`.
    pub(crate) fn room_name(self, index: usize) -> String {
        if self.rooms <= 1 {
            "bench".to_string()
        } else {
            format!("r{index}")
        }
    }

    /// How many of the subscribers `0..n` are in room `index`.
    pub(crate) fn members(self, index: usize, n: usize) -> u64 {
        let rooms = self.rooms.max(1);
        (n / rooms + usize::from(index < n % rooms)) as u64
    }
}

/// HS256 tokens for the benchmark's subscribers: user `i` has `sub` `"i"`, tenant
/// [`TENANT`] and a `room` claim naming its room. Roomcast joins that room through its
/// `auto_join = ["{room}"]` template; the peers read the same claim after checking the
/// signature.
pub(crate) struct Tokens {
    key: EncodingKey,
    header: Header,
    layout: Layout,
    expires_at: u64,
}

impl Tokens {
    /// Tokens signed with `secret`, valid for `ttl` from now.
    pub(crate) fn new(secret: &str, layout: Layout, ttl: Duration) -> Tokens {
        Tokens {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            layout,
            expires_at: unix_now().as_secs() + ttl.as_secs(),
        }
    }

    /// User `id`'s token.
    pub(crate) fn token(&self, id: usize) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = json!({
            "sub": id.to_string(),
            "tenant_id": TENANT,
            "room": self.layout.room_name(self.layout.room_of(id)),
            "exp": self.expires_at,
        });
        jsonwebtoken::encode(&self.header, &claims, &self.key)
    }

    /// The room of user `id`.
    pub(crate) fn room(&self, id: usize) -> String {
        self.layout.room_name(self.layout.room_of(id))
    }
}

/// Time since the Unix epoch. Senders and receivers run on one machine and read the same
/// clock, so a difference of two readings from two processes is a latency.
pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// One published message as a subscriber sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tick {
    /// Position in the sequence of its room and lane for this phase, from 0.
    pub(crate) seq: u64,
    /// The publishing connection ("lane") that sent it: messages of one lane reach the server
    /// in order, so their order is what a subscriber checks.
    pub(crate) lane: u32,
    /// Scheduled send time, nanoseconds since the Unix epoch.
    pub(crate) sent_ns: u64,
    /// The measurement phase it belongs to.
    pub(crate) phase: u32,
}

/// The `data` of a tick, `{"seq":..,"l":..,"t":..,"p":..,"pad":"xx.."}`, padded to `size`
/// bytes (or as short as it can be when `size` is smaller).
pub(crate) fn tick_data(tick: Tick, size: usize) -> String {
    let mut data = format!(
        r#"{{"seq":{},"l":{},"t":{},"p":{},"pad":""#,
        tick.seq, tick.lane, tick.sent_ns, tick.phase
    );
    let pad = size.saturating_sub(data.len() + 2);
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str("\"}");
    data
}

/// The body of a publish request: Roomcast's `POST /api/publish` shape, which the peers take
/// too. `data` is JSON text.
pub(crate) fn publish_body(room: &str, data: &str) -> String {
    format!(r#"{{"tenant":"{TENANT}","rooms":["{room}"],"event":"{EVENT}","data":{data}}}"#)
}

/// The body of a tenant-wide publish: every connection of [`TENANT`] in the main namespace.
/// `data` is JSON text.
pub(crate) fn broadcast_body(data: &str) -> String {
    format!(
        r#"{{"tenant":"{TENANT}","broadcast":true,"namespace":"/","event":"{EVENT}","data":{data}}}"#
    )
}

/// Reads a tick back from a received text message of either protocol: the digits after
/// `"seq":`, `"l":`, `"t":` and `"p":`. `None` when the message carries no tick (a welcome).
/// A server that echoes the data as it came is read with one vectorized search for `"seq":`
/// and three comparisons; one that reorders the keys, with one pass over the quotes.
pub(crate) fn find_tick(text: &[u8]) -> Option<Tick> {
    as_written(text).or_else(|| any_order(text))
}

/// `"seq":S,"l":L,"t":T,"p":P`, as [`tick_data`] writes it.
fn as_written(text: &[u8]) -> Option<Tick> {
    static SEQ: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(KEYS[0]));
    let (seq, end) = number_at(text, SEQ.find(text)? + KEYS[0].len())?;
    let next = |at: usize, key: &[u8]| {
        let value = text.get(at..)?.strip_prefix(b",")?.strip_prefix(key)?;
        number_at(text, text.len() - value.len())
    };
    let (lane, end) = next(end, KEYS[1])?;
    let (sent_ns, end) = next(end, KEYS[2])?;
    let (phase, _) = next(end, KEYS[3])?;
    Some(Tick {
        seq,
        lane: u32::try_from(lane).ok()?,
        sent_ns,
        phase: u32::try_from(phase).ok()?,
    })
}

/// The four keys' first occurrences, in any order: one pass over the quotes.
fn any_order(text: &[u8]) -> Option<Tick> {
    let mut found: [Option<u64>; 4] = [None; 4];
    let mut missing = found.len();
    let mut at = 0;
    while missing > 0 {
        let quote = at + memchr::memchr(b'"', text.get(at..)?)?;
        at = quote + 1;
        let rest = &text[quote..];
        let key = match rest.get(1) {
            Some(b's') => 0,
            Some(b'l') => 1,
            Some(b't') => 2,
            Some(b'p') => 3,
            _ => continue,
        };
        if found[key].is_some() || !rest.starts_with(KEYS[key]) {
            continue;
        }
        let (value, end) = number_at(text, quote + KEYS[key].len())?;
        found[key] = Some(value);
        missing -= 1;
        at = end;
    }
    let [seq, lane, sent_ns, phase] = found;
    Some(Tick {
        seq: seq?,
        lane: u32::try_from(lane?).ok()?,
        sent_ns: sent_ns?,
        phase: u32::try_from(phase?).ok()?,
    })
}

const KEYS: [&[u8]; 4] = [b"\"seq\":", b"\"l\":", b"\"t\":", b"\"p\":"];

/// The number starting at `start`, and where it ends; `None` without a digit there.
fn number_at(text: &[u8], start: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut end = start;
    while let Some(&b) = text.get(end) {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        end += 1;
    }
    (end > start).then_some((value, end))
}

/// A text frame from a Socket.IO server, as the subscriber acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SioFrame<'a> {
    /// `0{...}`: the Engine.IO handshake.
    Open,
    /// `2`: a heartbeat; answer [`PONG`].
    Ping,
    /// `40...`: the main namespace accepted the connect.
    Connected,
    /// `44{...}`: the connect was refused, with the server's data.
    ConnectError(&'a [u8]),
    /// Engine.IO `1`: the server closed the session (socketioxide does when a pong is
    /// overdue or its per-socket buffer is full at a ping).
    Close,
    /// `41`: the server disconnected the main namespace.
    Disconnect,
    /// `42[...]`: an event in the main namespace.
    Event(&'a [u8]),
    /// Anything else (a noop, an ack, another namespace).
    Other,
}

/// The answer to a heartbeat ping.
pub(crate) const PONG: &str = "3";

/// Classifies one Socket.IO text frame.
pub(crate) fn parse_sio(text: &[u8]) -> SioFrame<'_> {
    match text {
        [b'0', ..] => SioFrame::Open,
        [b'2', ..] => SioFrame::Ping,
        [b'1', ..] => SioFrame::Close,
        [b'4', b'1', ..] => SioFrame::Disconnect,
        [b'4', b'0', ..] => SioFrame::Connected,
        [b'4', b'4', ..] => SioFrame::ConnectError(&text[2..]),
        [b'4', b'2', ..] => SioFrame::Event(&text[2..]),
        _ => SioFrame::Other,
    }
}

/// The namespace connect with the token as auth data: `40{"token":"..."}`.
pub(crate) fn sio_connect(token: &str) -> String {
    format!("40{}", json!({ "token": token }))
}

/// The namespace connect of a client asking for its session back, as socket.io-client's
/// connection state recovery sends it: `40{"token":"...","pid":"...","offset":"..."}`, the
/// offset left out when the client has received no event yet.
pub(crate) fn sio_reconnect(token: &str, pid: &str, offset: Option<&str>) -> String {
    let mut auth = json!({ "token": token, "pid": pid });
    if let Some(offset) = offset {
        auth["offset"] = json!(offset);
    }
    format!("40{auth}")
}

/// The main namespace's `CONNECT` answer, `40{"sid":"...","pid":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectAnswer {
    /// The socket id.
    pub(crate) sid: String,
    /// The private session id a server with connection state recovery adds.
    pub(crate) pid: Option<String>,
}

/// Reads the `CONNECT` answer of the main namespace from a whole frame; `None` for another
/// frame, another namespace's answer or one without a socket id.
pub(crate) fn sio_connect_answer(text: &[u8]) -> Option<ConnectAnswer> {
    let data: Value = serde_json::from_slice(text.strip_prefix(b"40")?).ok()?;
    Some(ConnectAnswer {
        sid: data.get("sid")?.as_str()?.to_owned(),
        pid: data.get("pid").and_then(Value::as_str).map(str::to_owned),
    })
}

/// An event of the main namespace, read from the payload after `42`: `["name", args...]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SioEvent {
    pub(crate) name: String,
    /// The arguments after the name.
    pub(crate) args: Vec<Value>,
}

impl SioEvent {
    /// Parses an event's payload; `None` when it is not a JSON array led by a string.
    pub(crate) fn parse(payload: &[u8]) -> Option<SioEvent> {
        let Value::Array(mut items) = serde_json::from_slice(payload).ok()? else {
            return None;
        };
        if items.is_empty() {
            return None;
        }
        let Value::String(name) = items.remove(0) else {
            return None;
        };
        Some(SioEvent { name, args: items })
    }

    /// The event's offset in its recovery log: the last argument, when it is a string and
    /// follows the data (a server with connection state recovery appends it to every
    /// broadcast that is not volatile).
    pub(crate) fn offset(&self) -> Option<&str> {
        match self.args.as_slice() {
            [_, .., Value::String(offset)] => Some(offset),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Tick = Tick {
        seq: 42,
        lane: 2,
        sent_ns: 1_700_000_000_123_456_789,
        phase: 3,
    };

    #[test]
    fn tick_data_has_the_asked_size_and_reads_back() {
        let data = tick_data(TICK, 100);
        assert_eq!(data.len(), 100);
        assert!(serde_json::from_str::<serde_json::Value>(&data).is_ok());
        assert_eq!(find_tick(data.as_bytes()), Some(TICK));
    }

    #[test]
    fn a_small_size_gives_the_shortest_data() {
        let data = tick_data(TICK, 10);
        assert!(data.ends_with(r#""pad":""}"#), "{data}");
        assert_eq!(find_tick(data.as_bytes()), Some(TICK));
    }

    #[test]
    fn ticks_read_back_from_either_protocol_in_any_key_order() {
        let native = format!(
            r#"{{"type":"event","room":"bench","event":"tick","data":{},"offset":7,"epoch":"e-1"}}"#,
            tick_data(TICK, 100)
        );
        assert_eq!(find_tick(native.as_bytes()), Some(TICK));
        // A server that re-serializes with sorted keys.
        let sorted = r#"42["tick",{"l":2,"p":3,"pad":"xx","seq":42,"t":1700000000123456789}]"#;
        assert_eq!(find_tick(sorted.as_bytes()), Some(TICK));
        let welcome = r#"{"type":"welcome","session":"1","rooms":["bench"]}"#;
        assert_eq!(find_tick(welcome.as_bytes()), None);
        // Keys that only start like the tick's are not taken for them.
        let lookalike =
            r#"{"type":"x","pad":"","tick":1,"seq":42,"l":2,"t":1700000000123456789,"p":3}"#;
        assert_eq!(find_tick(lookalike.as_bytes()), Some(TICK));
        let truncated = r#"{"seq":42,"l":2,"t":"#;
        assert_eq!(find_tick(truncated.as_bytes()), None);
        // Both ways read the same.
        let data = tick_data(TICK, 100);
        assert_eq!(as_written(data.as_bytes()), any_order(data.as_bytes()));
        assert_eq!(as_written(sorted.as_bytes()), None);
    }

    #[test]
    fn socket_io_frames() {
        assert_eq!(
            parse_sio(br#"0{"sid":"a","pingInterval":25000}"#),
            SioFrame::Open
        );
        assert_eq!(parse_sio(b"2"), SioFrame::Ping);
        assert_eq!(parse_sio(br#"40{"sid":"b"}"#), SioFrame::Connected);
        assert_eq!(parse_sio(b"40"), SioFrame::Connected);
        assert_eq!(
            parse_sio(br#"44{"message":"invalid token"}"#),
            SioFrame::ConnectError(br#"{"message":"invalid token"}"#)
        );
        assert_eq!(parse_sio(b"41"), SioFrame::Disconnect);
        assert_eq!(parse_sio(b"1"), SioFrame::Close);
        assert_eq!(
            parse_sio(br#"42["tick",{}]"#),
            SioFrame::Event(br#"["tick",{}]"#)
        );
        assert_eq!(parse_sio(b"6"), SioFrame::Other);
        assert_eq!(parse_sio(b""), SioFrame::Other);
    }

    #[test]
    fn connect_carries_the_token() {
        assert_eq!(sio_connect("a.b.c"), r#"40{"token":"a.b.c"}"#);
    }

    #[test]
    fn reconnects_name_the_session_and_the_offset_if_any() {
        let with: Value = serde_json::from_str(
            sio_reconnect("a.b.c", "p1", Some("1700000000000-3"))
                .strip_prefix("40")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            with,
            json!({"token": "a.b.c", "pid": "p1", "offset": "1700000000000-3"})
        );
        let without = sio_reconnect("a.b.c", "p1", None);
        let without: Value = serde_json::from_str(without.strip_prefix("40").unwrap()).unwrap();
        assert_eq!(without, json!({"token": "a.b.c", "pid": "p1"}));
    }

    #[test]
    fn connect_answers_give_the_socket_id_and_the_pid() {
        assert_eq!(
            sio_connect_answer(br#"40{"sid":"s1","pid":"p1"}"#),
            Some(ConnectAnswer {
                sid: "s1".into(),
                pid: Some("p1".into())
            })
        );
        assert_eq!(
            sio_connect_answer(br#"40{"sid":"s1"}"#),
            Some(ConnectAnswer {
                sid: "s1".into(),
                pid: None
            })
        );
        // Another namespace, no socket id, not an answer.
        assert_eq!(sio_connect_answer(br#"40/chat,{"sid":"s1"}"#), None);
        assert_eq!(sio_connect_answer(br#"40{"pid":"p1"}"#), None);
        assert_eq!(sio_connect_answer(b"40"), None);
        assert_eq!(sio_connect_answer(br#"42["tick",{}]"#), None);
    }

    #[test]
    fn events_give_their_arguments_and_offset() {
        let event = SioEvent::parse(br#"["tick",{"n":2},"1700000000000-7"]"#).unwrap();
        assert_eq!(event.name, "tick");
        assert_eq!(event.args[0]["n"], 2);
        assert_eq!(event.offset(), Some("1700000000000-7"));
        // No offset: the data alone, even when it is a string.
        let plain = SioEvent::parse(br#"["tick",{"n":2}]"#).unwrap();
        assert_eq!(plain.offset(), None);
        assert_eq!(
            SioEvent::parse(br#"["tick","text"]"#).unwrap().offset(),
            None
        );
        assert_eq!(SioEvent::parse(br#"["tick"]"#).unwrap().offset(), None);
        assert_eq!(SioEvent::parse(b"[]"), None);
        assert_eq!(SioEvent::parse(br#"[1,"x"]"#), None);
        assert_eq!(SioEvent::parse(b"{}"), None);
        assert_eq!(SioEvent::parse(b"[\"tick\""), None);
    }

    #[test]
    fn broadcasts_reach_the_whole_tenant() {
        let value: Value = serde_json::from_str(&broadcast_body(r#"{"n":1}"#)).unwrap();
        assert_eq!(value["tenant"], TENANT);
        assert_eq!(value["broadcast"], true);
        assert_eq!(value["namespace"], "/");
        assert_eq!(value["event"], EVENT);
        assert_eq!(value["data"]["n"], 1);
        assert!(value.get("rooms").is_none());
    }

    #[test]
    fn publish_body_is_roomcasts_shape() {
        let body = publish_body("r7", r#"{"seq":1}"#);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["tenant"], TENANT);
        assert_eq!(value["rooms"][0], "r7");
        assert_eq!(value["event"], EVENT);
        assert_eq!(value["data"]["seq"], 1);
    }

    #[test]
    fn layout_spreads_subscribers_evenly() {
        let one = Layout { rooms: 1 };
        assert_eq!(one.room_name(one.room_of(12345)), "bench");
        assert_eq!(one.members(0, 10_000), 10_000);
        let many = Layout { rooms: 1000 };
        assert_eq!(many.room_name(many.room_of(12_345)), "r345");
        assert_eq!(many.members(999, 10_000), 10);
        let uneven = Layout { rooms: 3 };
        let counts: Vec<u64> = (0..3).map(|r| uneven.members(r, 10)).collect();
        assert_eq!(counts, [4, 3, 3]);
    }

    #[test]
    fn tokens_carry_the_room_claim() {
        let tokens = Tokens::new("secret", Layout { rooms: 1000 }, Duration::from_secs(60));
        let token = tokens.token(1234).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"secret"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["room"], "r234");
        assert_eq!(data.claims["tenant_id"], TENANT);
        assert_eq!(tokens.room(1234), "r234");
    }
}
