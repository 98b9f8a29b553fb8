//! The WebSocket paths over real sockets: a session opened over WebSocket, and the upgrade
//! of a polling session, where packets queued for polling (a binary event among them) must
//! come out on the WebSocket, in order, once the upgrade completes.

// Test helpers panic on the unexpected, as the tests themselves do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roomcast_engine::driver::IoStats;
use roomcast_engine::rooms::RoomIndex;
use roomcast_socketio::{
    engine::ticker, AckSender, Args, Config, ConnectError, NamespaceHandler, SocketIo, SocketRef,
};
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Answers `message` with `message-back` and the same arguments.
struct Echo;

impl NamespaceHandler for Echo {
    fn on_connect(
        &self,
        _: &SocketRef,
        _: Option<&RawValue>,
        _: &http::request::Parts,
    ) -> Result<(), ConnectError> {
        Ok(())
    }

    fn on_event(&self, socket: &SocketRef, event: &str, args: Args, _: Option<AckSender>) {
        if event == "message" {
            socket.emit_args("message-back", &args).unwrap();
        }
    }
}

async fn serve() -> String {
    serve_with(Echo, None).await
}

/// Serves `handler` on the main namespace (and on `alias` as another name of it); the address.
async fn serve_with(handler: impl NamespaceHandler, alias: Option<&str>) -> String {
    let index = Arc::new(RoomIndex::new(16));
    let config = Config {
        ping_interval: Duration::from_secs(60),
        ..Config::default()
    };
    let io = SocketIo::new(
        config,
        index,
        ticker(Duration::from_millis(50)),
        Arc::new(IoStats::default()),
    );
    io.namespace("/", Arc::new(handler));
    if let Some(alias) = alias {
        io.alias(alias, "/");
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(io.serve(listener));
    addr.to_string()
}

/// One HTTP/1.1 request on a fresh connection; the response body.
async fn http(addr: &str, method: &str, query: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} /socket.io/?{query} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split("\r\n\r\n").nth(1).unwrap().to_owned()
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_session() {
    let addr = serve().await;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(next_text(&mut ws).await.contains(r#""upgrades":[]"#));
    ws.send(Message::text("40")).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with(r#"40{"sid":"#));
    ws.send(Message::text(
        r#"451-["message",{"_placeholder":true,"num":0}]"#,
    ))
    .await
    .unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"451-["message-back",{"_placeholder":true,"num":0}]"#
    );
    let attachment = ws.next().await.unwrap().unwrap();
    assert_eq!(attachment, Message::binary(vec![1, 2, 3]));
}

#[tokio::test]
async fn upgrade_hands_the_queue_over_in_order() {
    let addr = serve().await;
    let open = http(&addr, "GET", "EIO=4&transport=polling", "").await;
    let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    let session = format!("EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(&addr, "POST", &session, "40").await, "ok");
    assert!(http(&addr, "GET", &session, "")
        .await
        .starts_with(r#"40{"sid":"#));

    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    // Answered while polling still owns the queue: a binary event, then a text one.
    let body =
        "451-[\"message\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID\x1e42[\"message\",\"after\"]";
    assert_eq!(http(&addr, "POST", &session, body).await, "ok");
    ws.send(Message::text("5")).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"451-["message-back",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1, 2, 3])
    );
    assert_eq!(next_text(&mut ws).await, r#"42["message-back","after"]"#);
    // And from now on over the WebSocket only.
    ws.send(Message::text(r#"42["message","ws"]"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, r#"42["message-back","ws"]"#);
}

#[tokio::test]
async fn get_after_the_probe_carries_the_connect_answer() {
    // socket.io-client sends `40` over polling while probing, and `5` only once its next GET
    // completes: that GET must carry the CONNECT answer, not wait for the upgrade.
    let addr = serve().await;
    let open = http(&addr, "GET", "EIO=4&transport=polling", "").await;
    let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    let session = format!("EIO=4&transport=polling&sid={sid}");

    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    assert_eq!(http(&addr, "POST", &session, "40").await, "ok");
    let polled = http(&addr, "GET", &session, "").await;
    assert!(polled.starts_with(r#"40{"sid":"#), "{polled}");

    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text(r#"42["message","ws"]"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, r#"42["message-back","ws"]"#);
}

/// Puts every socket in room `r` of tenant `t` (user: the auth's `user`); `relay` sends its
/// arguments to the room as `relayed`, then tells the sender `relayed-done`.
struct Room;

impl NamespaceHandler for Room {
    fn on_connect(
        &self,
        socket: &SocketRef,
        auth: Option<&RawValue>,
        _: &http::request::Parts,
    ) -> Result<(), ConnectError> {
        let auth: serde_json::Value = auth
            .map(|a| serde_json::from_str(a.get()).unwrap())
            .unwrap_or_default();
        assert!(socket.set_identity("t", auth["user"].as_str().unwrap_or("anonymous")));
        assert_eq!(socket.join("r"), Ok(true));
        Ok(())
    }

    fn on_event(&self, socket: &SocketRef, event: &str, args: Args, _: Option<AckSender>) {
        if event == "relay" {
            socket.to("r").emit_args("relayed", &args);
            socket.emit_args("relayed-done", &Args::empty()).unwrap();
        }
    }
}

#[tokio::test]
async fn upgrade_keeps_the_alias_of_what_the_room_index_queued_meanwhile() {
    let addr = serve_with(Room, Some("/ws")).await;

    // A polling client of the alias, in room r.
    let open = http(&addr, "GET", "EIO=4&transport=polling", "").await;
    let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    let session = format!("EIO=4&transport=polling&sid={sid}");
    let connect = r#"40/ws,{"user":"a"}"#;
    assert_eq!(http(&addr, "POST", &session, connect).await, "ok");
    assert!(http(&addr, "GET", &session, "")
        .await
        .starts_with(r#"40/ws,{"sid":"#));
    // Another client, of the namespace's own name, in the same room.
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut other, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_text(&mut other).await;
    other
        .send(Message::text(r#"40{"user":"b"}"#))
        .await
        .unwrap();
    assert!(next_text(&mut other).await.starts_with(r#"40{"sid":"#));

    // The first client upgrades; while polling still owns its queue, the other relays to the
    // room: the event is queued under the namespace's own name.
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    other.send(Message::text(r#"42["relay",1]"#)).await.unwrap();
    assert_eq!(next_text(&mut other).await, r#"42["relayed-done"]"#);
    ws.send(Message::text("5")).await.unwrap();
    // It comes out on the WebSocket under the name the client connected with.
    assert_eq!(next_text(&mut ws).await, r#"42/ws,["relayed",1]"#);
}

/// [`Echo`], its connects carried out from a task of their own (as a connect that looks a
/// session up elsewhere is).
struct Prepares;

impl NamespaceHandler for Prepares {
    fn prepare(
        &self,
        _: Option<&RawValue>,
        _: &http::request::Parts,
    ) -> Option<futures_util::future::BoxFuture<'static, roomcast_socketio::Prepared>> {
        Some(Box::pin(async {
            tokio::task::yield_now().await;
            roomcast_socketio::Prepared::default()
        }))
    }

    fn on_connect(
        &self,
        socket: &SocketRef,
        auth: Option<&RawValue>,
        req: &http::request::Parts,
    ) -> Result<(), ConnectError> {
        Echo.on_connect(socket, auth, req)
    }

    fn on_event(&self, socket: &SocketRef, event: &str, args: Args, ack: Option<AckSender>) {
        Echo.on_event(socket, event, args, ack);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_as_soon_as_a_task_connected_socket_is_answered_finds_it() {
    let addr = serve_with(Prepares, None).await;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    // The client may send once it has the CONNECT answer; the socket must be there by then,
    // however the connection's task and the connecting one interleave.
    for i in 0..200 {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        next_text(&mut ws).await;
        ws.send(Message::text("40")).await.unwrap();
        assert!(next_text(&mut ws).await.starts_with(r#"40{"sid":"#));
        ws.send(Message::text(format!(r#"42["message",{i}]"#)))
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut ws).await,
            format!(r#"42["message-back",{i}]"#),
            "connection {i}"
        );
    }
}
