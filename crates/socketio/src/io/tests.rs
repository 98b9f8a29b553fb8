//! The Socket.IO layer over in-memory polling requests: namespaces, events and acks both
//! ways (binary included), rooms of the shared index, broadcasts, disconnects and shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roomcast_engine::driver::IoStats;
use roomcast_engine::rooms::{Member, RoomIndex, RoomKey, WireFormat};
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::*;
use crate::testkit::{clock, get, handshake, post, settle};

/// The conformance fixture's behaviour, plus rooms: identity from the auth payload
/// (`{"tenant","user","room"}`), `relay` to the room, `ask` to make the server wait for an
/// ack of the client.
#[derive(Default)]
struct Recorder {
    disconnects: Mutex<Vec<(String, String)>>,
    acks: Arc<Mutex<Vec<Result<String, AckError>>>>,
    refuse: bool,
}

impl NamespaceHandler for Recorder {
    fn on_connect(
        &self,
        socket: &SocketRef,
        auth: Option<&RawValue>,
        _req: &http::request::Parts,
    ) -> Result<(), ConnectError> {
        if self.refuse {
            return Err(ConnectError {
                message: "not allowed".to_owned(),
                data: Some(RawValue::from_string(r#"{"code":4003}"#.to_owned()).unwrap()),
            });
        }
        let raw = auth;
        let auth: serde_json::Value = auth
            .map(|a| serde_json::from_str(a.get()).unwrap())
            .unwrap_or_else(|| serde_json::json!({}));
        if let (Some(tenant), Some(user)) = (auth["tenant"].as_str(), auth["user"].as_str()) {
            assert!(socket.set_identity(tenant, user));
            assert!(!socket.set_identity(tenant, "other"), "first identity only");
            if let Some(room) = auth["room"].as_str() {
                assert_eq!(socket.join(room), Ok(true));
            }
        }
        if auth["expired"].as_bool() == Some(true) {
            socket.set_expiry(Some(Instant::now()));
        }
        match raw {
            Some(raw) => socket.emit("auth", raw).unwrap(),
            None => socket.emit("auth", &auth).unwrap(),
        }
        Ok(())
    }

    fn on_event(&self, socket: &SocketRef, event: &str, args: Args, ack: Option<AckSender>) {
        match event {
            "message" => socket.emit_args("message-back", &args).unwrap(),
            "message-with-ack" => ack.unwrap().send(&args).unwrap(),
            "relay" => {
                let room: String = args.get(0).unwrap();
                socket.to(&room).volatile().emit_args("relayed", &args);
            }
            "ask" => {
                let timeout = Duration::from_millis(args.get(0).unwrap_or(60_000));
                let acks = Arc::clone(&self.acks);
                socket.emit_with_ack("question", &Args::empty(), timeout, move |answer| {
                    acks.lock()
                        .unwrap()
                        .push(answer.map(|args| args.json().get().to_owned()));
                });
            }
            "leave" => socket.disconnect(),
            "file" => {
                let mut parts = crate::socketio::Attachments::new();
                let placeholder = parts.push(bytes::Bytes::from_static(b"\x00\xff"));
                let args = vec![serde_json::json!({"name": "f", "data": placeholder})];
                socket.emit_binary("file", args, parts.into_vec()).unwrap();
            }
            _ => {}
        }
    }

    fn on_disconnect(&self, socket: &SocketRef, reason: &str) {
        self.disconnects
            .lock()
            .unwrap()
            .push((socket.ns().to_owned(), reason.to_owned()));
    }
}

impl Recorder {
    fn acks(&self) -> Vec<Result<String, AckError>> {
        self.acks.lock().unwrap().clone()
    }
}

struct Setup {
    io: Arc<SocketIo>,
    index: Arc<RoomIndex>,
    main: Arc<Recorder>,
    tick: watch::Sender<Instant>,
}

fn setup(config: Config) -> Setup {
    let index = Arc::new(RoomIndex::new(16));
    let (tick, ticks) = clock();
    let io = SocketIo::new(config, index.clone(), ticks, Arc::new(IoStats::default()));
    let main = Arc::new(Recorder::default());
    io.namespace("/", main.clone());
    io.namespace("/custom", Arc::new(Recorder::default()));
    io.namespace(
        "/closed",
        Arc::new(Recorder {
            refuse: true,
            ..Recorder::default()
        }),
    );
    Setup {
        io,
        index,
        main,
        tick,
    }
}

fn config() -> Config {
    Config {
        ping_interval: Duration::from_secs(60),
        ping_timeout: Duration::from_secs(60),
        ..Config::default()
    }
}

/// Connects a polling client to `ns` with `auth`; its sid and socket id.
async fn connect(io: &Arc<SocketIo>, ns: &str, auth: &str) -> (String, String) {
    let (sid, _) = handshake(io).await;
    let prefix = if ns == "/" {
        String::new()
    } else {
        format!("{ns},")
    };
    assert_eq!(
        post(io, &sid, &format!("40{prefix}{auth}")).await.body,
        "ok"
    );
    let answer = get(io, &sid).await.body;
    let (connect, auth_event) = answer.split_once('\x1e').expect("two packets");
    let connected: serde_json::Value =
        serde_json::from_str(connect.strip_prefix(&format!("40{prefix}")).unwrap()).unwrap();
    let expected_auth = if auth.is_empty() { "{}" } else { auth };
    assert_eq!(
        auth_event,
        format!("42{prefix}[\"auth\",{expected_auth}]"),
        "CONNECT answered before anything emitted in on_connect"
    );
    (sid, connected["sid"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn namespaces_events_and_acks_as_in_the_test_suite() {
    let Setup { io, .. } = setup(config());
    let (sid, _) = connect(&io, "/", "").await;
    post(&io, &sid, r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        get(&io, &sid).await.body,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
    post(
        &io,
        &sid,
        r#"42456["message-with-ack",1,"2",{"3":[false]}]"#,
    )
    .await;
    assert_eq!(get(&io, &sid).await.body, r#"43456[1,"2",{"3":[false]}]"#);

    // A second namespace on the same connection.
    post(&io, &sid, r#"40/custom,{"token":"abc"}"#).await;
    let answer = get(&io, &sid).await.body;
    assert!(answer.starts_with("40/custom,{\"sid\":"), "{answer}");
    assert!(
        answer.ends_with(r#"42/custom,["auth",{"token":"abc"}]"#),
        "{answer}"
    );
    assert_eq!(io.socket_count(), 2);
    assert_eq!(io.connection_count(), 1);

    // Unknown and refused namespaces.
    post(&io, &sid, "40/random").await;
    assert_eq!(
        get(&io, &sid).await.body,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    post(&io, &sid, "40/closed,").await;
    assert_eq!(
        get(&io, &sid).await.body,
        r#"44/closed,{"message":"not allowed","data":{"code":4003}}"#
    );
}

#[tokio::test]
async fn binary_events_and_acks_over_polling() {
    let Setup { io, .. } = setup(config());
    let (sid, _) = connect(&io, "/", "").await;
    post(
        &io,
        &sid,
        "452-[\"message\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1ebAQID\x1ebBAUG",
    )
    .await;
    assert_eq!(
        get(&io, &sid).await.body,
        "452-[\"message-back\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1ebAQID\x1ebBAUG"
    );
    post(
        &io,
        &sid,
        "451-789[\"message-with-ack\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID",
    )
    .await;
    assert_eq!(
        get(&io, &sid).await.body,
        "461-789[{\"_placeholder\":true,\"num\":0}]\x1ebAQID"
    );
}

#[tokio::test]
async fn server_binary_emits() {
    let Setup { io, .. } = setup(config());
    let (sid, _) = connect(&io, "/", "").await;
    post(&io, &sid, r#"42["file"]"#).await;
    assert_eq!(
        get(&io, &sid).await.body,
        "451-[\"file\",{\"data\":{\"_placeholder\":true,\"num\":0},\"name\":\"f\"}]\x1ebAP8="
    );
}

#[tokio::test]
async fn server_acks_arrive_or_time_out() {
    let Setup { io, tick, main, .. } = setup(config());
    let (sid, _) = connect(&io, "/", "").await;
    post(&io, &sid, r#"42["ask"]"#).await;
    assert_eq!(get(&io, &sid).await.body, r#"420["question"]"#);
    post(&io, &sid, r#"430["answer",{"ok":true}]"#).await;
    assert_eq!(main.acks(), [Ok(r#"["answer",{"ok":true}]"#.to_owned())]);

    post(&io, &sid, r#"42["ask",0]"#).await;
    assert_eq!(get(&io, &sid).await.body, r#"421["question"]"#);
    tick.send(Instant::now()).unwrap();
    settle().await;
    assert_eq!(main.acks()[1], Err(AckError::Timeout));
    // A late answer is ignored.
    post(&io, &sid, "431[]").await;
    assert_eq!(main.acks().len(), 2);
}

#[tokio::test]
async fn rooms_relays_and_publishes_reach_other_members() {
    let Setup { io, index, .. } = setup(config());
    let auth = |user: &str| format!(r#"{{"tenant":"acme","user":"{user}","room":"chat:1"}}"#);
    let (a, a_id) = connect(&io, "/", &auth("1")).await;
    let (b, _) = connect(&io, "/", &auth("2")).await;
    let (other_tenant, _) =
        connect(&io, "/", r#"{"tenant":"zeta","user":"1","room":"chat:1"}"#).await;
    let key = RoomKey::new("acme", "/", "chat:1");
    assert_eq!(index.room_size(&key), 2);
    let socket = io
        .socket(index.user_connections("acme", "1")[0])
        .expect("registered");
    assert_eq!(socket.id(), a_id);
    assert_eq!(socket.rooms(), ["chat:1"]);
    assert_eq!(index.namespace_of(socket.conn_id()).as_deref(), Some("/"));

    // A relay reaches the room's other member, not the sender nor the other tenant.
    post(&io, &a, r#"42["relay","chat:1",{"typing":true}]"#).await;
    assert_eq!(
        get(&io, &b).await.body,
        r#"42["relayed","chat:1",{"typing":true}]"#
    );

    // A publish encodes once for every Socket.IO member of the room.
    let mut members: Vec<Member> = Vec::new();
    index.collect_members(&key, &mut members);
    let data = RawValue::from_string(r#"{"id":42}"#.to_owned()).unwrap();
    let item = encode_event("/", "order:updated", &data);
    for member in members.iter().filter(|m| m.format == WireFormat::SocketIo) {
        member.queue.push(item.clone()).unwrap();
    }
    let expected = r#"42["order:updated",{"id":42}]"#;
    assert_eq!(get(&io, &a).await.body, expected);
    assert_eq!(get(&io, &b).await.body, expected);

    // Nothing reached the other tenant: its next GET waits for the ping.
    let pending = tokio::time::timeout(Duration::from_millis(5), get(&io, &other_tenant)).await;
    assert!(pending.is_err());
}

#[tokio::test]
async fn an_alias_shares_its_namespaces_rooms_and_keeps_its_name_on_the_wire() {
    let Setup { io, index, .. } = setup(config());
    io.alias("/ws", "/");
    let auth = |user: &str| format!(r#"{{"tenant":"acme","user":"{user}","room":"chat:1"}}"#);
    let (main, _) = connect(&io, "/", &auth("1")).await;
    let (aliased, _) = connect(&io, "/ws", &auth("2")).await;
    let key = RoomKey::new("acme", "/", "chat:1");
    assert_eq!(index.room_size(&key), 2, "both in the namespace's room");
    let socket = io.socket(index.user_connections("acme", "2")[0]).unwrap();
    assert_eq!((socket.ns(), socket.room_ns()), ("/ws", "/"));
    assert_eq!(index.namespace_of(socket.conn_id()).as_deref(), Some("/"));

    // Relays both ways, each read under the name its client connected with.
    post(&io, &main, r#"42["relay","chat:1",1]"#).await;
    assert_eq!(
        get(&io, &aliased).await.body,
        r#"42/ws,["relayed","chat:1",1]"#
    );
    post(&io, &aliased, r#"42/ws,["relay","chat:1",2]"#).await;
    assert_eq!(get(&io, &main).await.body, r#"42["relayed","chat:1",2]"#);

    // A publish to the namespace, encoded once under its name, reaches both.
    let mut members: Vec<Member> = Vec::new();
    index.collect_members(&key, &mut members);
    let data = RawValue::from_string("7".to_owned()).unwrap();
    let item = encode_event("/", "e", &data);
    for member in &members {
        member.queue.push(item.clone()).unwrap();
    }
    assert_eq!(get(&io, &main).await.body, r#"42["e",7]"#);
    assert_eq!(get(&io, &aliased).await.body, r#"42/ws,["e",7]"#);

    // One socket per namespace per connection, whatever the name.
    post(&io, &aliased, "40").await;
    assert_eq!(
        get(&io, &aliased).await.body,
        r#"44{"message":"Already connected to this namespace under another name"}"#
    );
}

#[tokio::test]
async fn a_socket_expiry_calls_its_handler() {
    let Setup { io, tick, main, .. } = setup(config());
    let (sid, _) = connect(&io, "/", r#"{"expired":true}"#).await;
    tick.send(Instant::now()).unwrap();
    settle().await;
    // The default `on_expiry` disconnects the socket.
    assert_eq!(get(&io, &sid).await.body, "41");
    assert_eq!(
        main.disconnects.lock().unwrap().as_slice(),
        [("/".to_owned(), "server namespace disconnect".to_owned())]
    );
}

#[tokio::test]
async fn disconnects_from_either_side() {
    let Setup {
        io, index, main, ..
    } = setup(config());
    let (sid, _) = connect(&io, "/", r#"{"tenant":"t","user":"u"}"#).await;
    post(&io, &sid, r#"40/custom,"#).await;
    get(&io, &sid).await;

    // The server leaves the main namespace: DISCONNECT, out of the index, the connection
    // and the other namespace stay.
    post(&io, &sid, r#"42["leave"]"#).await;
    assert_eq!(get(&io, &sid).await.body, "41");
    assert_eq!(
        main.disconnects.lock().unwrap().as_slice(),
        [("/".to_owned(), "server namespace disconnect".to_owned())]
    );
    assert_eq!(index.connection_count(), 0);
    post(&io, &sid, r#"42["message","ignored"]"#).await;
    post(&io, &sid, r#"42/custom,["message","kept"]"#).await;
    assert_eq!(
        get(&io, &sid).await.body,
        r#"42/custom,["message-back","kept"]"#
    );

    // The client leaves: no packet back.
    post(&io, &sid, "40").await;
    get(&io, &sid).await;
    post(&io, &sid, "41").await;
    assert_eq!(
        main.disconnects.lock().unwrap()[1],
        ("/".to_owned(), "client namespace disconnect".to_owned())
    );
    assert_eq!(io.socket_count(), 1);
}

#[tokio::test]
async fn parse_errors_close_the_connection() {
    let Setup { io, main, .. } = setup(config());
    let (sid, _) = connect(&io, "/", "").await;
    post(&io, &sid, "42{}").await;
    assert_eq!(get(&io, &sid).await.body, "1");
    assert_eq!(get(&io, &sid).await.status, http::StatusCode::BAD_REQUEST);
    assert_eq!(
        main.disconnects.lock().unwrap().as_slice(),
        [("/".to_owned(), "parse error".to_owned())]
    );
    assert_eq!(io.connection_count(), 0);
}

#[tokio::test]
async fn connect_timeout_closes_idle_connections() {
    let Setup { io, tick, .. } = setup(Config {
        connect_timeout: Duration::ZERO,
        ..config()
    });
    let (sid, _) = handshake(&io).await;
    tick.send(Instant::now()).unwrap();
    settle().await;
    assert_eq!(get(&io, &sid).await.body, "1");
    assert_eq!(io.connection_count(), 0);
}

#[tokio::test]
async fn close_all_disconnects_then_closes() {
    let Setup {
        io, index, main, ..
    } = setup(config());
    let (sid, _) = connect(&io, "/", r#"{"tenant":"t","user":"u","room":"r"}"#).await;
    io.close_all("server shutting down");
    assert_eq!(get(&io, &sid).await.body, "41\x1e1");
    assert_eq!(
        main.disconnects.lock().unwrap().as_slice(),
        [("/".to_owned(), "server shutting down".to_owned())]
    );
    assert_eq!(index.connection_count(), 0);
    assert_eq!((io.socket_count(), io.connection_count()), (0, 0));
}

#[tokio::test]
async fn a_namespace_connection_ends_the_pending_state() {
    let Setup { io, .. } = setup(config());
    let (_idle, _) = handshake(&io).await;
    assert_eq!(io.pending_count(), 1);
    // A refused CONNECT does not admit the connection; an accepted one does.
    let (refused, _) = handshake(&io).await;
    assert_eq!(post(&io, &refused, "40/closed,").await.body, "ok");
    assert!(get(&io, &refused).await.body.starts_with("44/closed,"));
    assert_eq!(io.pending_count(), 2);
    connect(&io, "/", r#"{"tenant":"t","user":"u","room":"r"}"#).await;
    assert_eq!((io.connection_count(), io.pending_count()), (3, 2));
}
