//! A native protocol client over tokio-tungstenite, with the waits the tests need.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::RECV_TIMEOUT;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A native protocol client.
pub(crate) struct Client {
    ws: Ws,
    /// Messages read while waiting for something else (events before a reply).
    buffered: VecDeque<Value>,
    next_id: u64,
    /// The `welcome` message, once received by [`Server::connect`].
    pub(crate) welcome: Value,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("welcome", &self.welcome)
            .finish_non_exhaustive()
    }
}

/// What arrived on a connection, ping and pong frames aside.
#[derive(Debug)]
// The payloads of `Binary` and `Gone` are only read through `Debug`, in failure messages.
#[allow(dead_code)]
pub(crate) enum Incoming {
    /// A text message, parsed.
    Json(Value),
    /// A binary message.
    Binary(Vec<u8>),
    /// A close frame: its code and reason (`None` without a status).
    Close(Option<(u16, String)>),
    /// The stream ended or failed without a close frame.
    Gone(String),
}

impl Client {
    pub(crate) async fn open(req: http::Request<()>) -> Client {
        let (ws, _resp) = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .expect("WebSocket connect timed out")
            .expect("WebSocket upgrade");
        Client {
            ws,
            buffered: VecDeque::new(),
            next_id: 1_000_000,
            welcome: Value::Null,
        }
    }

    /// The session id from `welcome`.
    pub(crate) fn session(&self) -> String {
        self.welcome["session"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {}", self.welcome))
            .to_owned()
    }

    /// Sends a text frame.
    pub(crate) async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send a text frame");
    }

    /// Sends a JSON message.
    pub(crate) async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a binary frame.
    pub(crate) async fn send_binary(&mut self, data: &[u8]) {
        self.ws
            .send(Message::binary(data.to_vec()))
            .await
            .expect("send a binary frame");
    }

    /// Queues frames without flushing each; [`Client::flush`] sends them together.
    pub(crate) async fn feed_text(&mut self, text: &str) {
        self.ws
            .feed(Message::text(text.to_owned()))
            .await
            .expect("queue a text frame");
    }

    /// Flushes frames queued by [`Client::feed_text`].
    pub(crate) async fn flush(&mut self) {
        self.ws.flush().await.expect("flush");
    }

    /// Starts the closing handshake with `code`.
    pub(crate) async fn close(&mut self, code: u16) {
        let frame = CloseFrame {
            code: code.into(),
            reason: "bye".into(),
        };
        self.ws
            .close(Some(frame))
            .await
            .expect("send a close frame");
    }

    /// The next thing that arrives, ping and pong frames aside, within `timeout`; `None` on
    /// timeout. Buffered messages come first.
    pub(crate) async fn next_within(&mut self, timeout: Duration) -> Option<Incoming> {
        if let Some(value) = self.buffered.pop_front() {
            return Some(Incoming::Json(value));
        }
        let read = async {
            loop {
                match self.ws.next().await {
                    None => return Incoming::Gone("end of stream".into()),
                    Some(Err(e)) => return Incoming::Gone(e.to_string()),
                    Some(Ok(Message::Text(text))) => {
                        let value = serde_json::from_str(text.as_str())
                            .unwrap_or_else(|e| panic!("server sent invalid JSON {text:?}: {e}"));
                        return Incoming::Json(value);
                    }
                    Some(Ok(Message::Binary(data))) => return Incoming::Binary(data.to_vec()),
                    Some(Ok(Message::Close(frame))) => {
                        return Incoming::Close(
                            frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                        )
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                }
            }
        };
        tokio::time::timeout(timeout, read).await.ok()
    }

    /// The next thing that arrives, failing after [`RECV_TIMEOUT`].
    pub(crate) async fn next_incoming(&mut self) -> Incoming {
        match self.next_within(RECV_TIMEOUT).await {
            Some(incoming) => incoming,
            None => panic!("nothing arrived within {RECV_TIMEOUT:?}"),
        }
    }

    /// The next JSON message, failing on timeout, on a close or on anything else.
    pub(crate) async fn recv_json(&mut self) -> Value {
        match self.next_incoming().await {
            Incoming::Json(value) => value,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// Like [`Client::recv_json`] with a longer timeout.
    pub(crate) async fn recv_json_within(&mut self, timeout: Duration) -> Value {
        match self.next_within(timeout).await {
            Some(Incoming::Json(value)) => value,
            Some(other) => panic!("expected a JSON message, got {other:?}"),
            None => panic!("nothing arrived within {timeout:?}"),
        }
    }

    /// The next event within `timeout`, `None` when nothing came; anything but an event
    /// fails.
    pub(crate) async fn next_event_within(&mut self, timeout: Duration) -> Option<Value> {
        match self.next_within(timeout).await? {
            Incoming::Json(value) if value["type"] == "event" => Some(value),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next message, which must be an `event`.
    pub(crate) async fn recv_event(&mut self) -> Value {
        let value = self.recv_json().await;
        assert_eq!(value["type"], "event", "expected an event, got {value}");
        value
    }

    /// Asserts that the next thing to arrive is a close frame with `code`; then lets the
    /// client answer it.
    pub(crate) async fn expect_close(&mut self, code: u16) {
        match self.next_incoming().await {
            Incoming::Close(Some((got, reason))) => {
                assert_eq!(got, code, "close code (reason {reason:?})")
            }
            other => panic!("expected close {code}, got {other:?}"),
        }
        self.finish().await;
    }

    /// Asserts a `disconnect` message with `code`, then the close frame with the same code
    /// and reason. Returns the `disconnect` message.
    pub(crate) async fn expect_disconnect(&mut self, code: u16) -> Value {
        self.expect_disconnect_within(code, RECV_TIMEOUT).await
    }

    /// [`Client::expect_disconnect`] with its own timeout for the `disconnect` message.
    pub(crate) async fn expect_disconnect_within(&mut self, code: u16, timeout: Duration) -> Value {
        let msg = self.recv_json_within(timeout).await;
        assert_eq!(
            msg["type"], "disconnect",
            "expected disconnect {code}, got {msg}"
        );
        assert_eq!(msg["code"], code, "disconnect code in {msg}");
        assert!(msg["reason"].is_string(), "reason in {msg}");
        assert!(msg["reconnect"].is_boolean(), "reconnect in {msg}");
        match self.next_incoming().await {
            Incoming::Close(Some((got, reason))) => {
                assert_eq!(got, code, "close code after {msg}");
                assert_eq!(
                    reason,
                    msg["reason"].as_str().unwrap_or_default(),
                    "close reason"
                );
            }
            other => panic!("expected close {code} after {msg}, got {other:?}"),
        }
        self.finish().await;
        msg
    }

    /// Lets tungstenite send its answer to the server's close and read to the end.
    async fn finish(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Asserts that no message arrives for `quiet` (only used to check an absence, after the
    /// presence of everything else was checked).
    pub(crate) async fn expect_no_message(&mut self, quiet: Duration) {
        if let Some(incoming) = self.next_within(quiet).await {
            panic!("expected nothing, got {incoming:?}");
        }
    }

    /// Sends a request with a fresh id (the `id` field is set here) and returns its answer
    /// (`reply`, or `pong` for `ping`); events that arrive first are kept for `recv_*`.
    pub(crate) async fn request(&mut self, mut message: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        message["id"] = json!(id);
        self.send_json(&message).await;
        self.answer(id).await
    }

    /// Waits for the `reply` or `pong` with `id`, keeping the events that come first.
    pub(crate) async fn answer(&mut self, id: u64) -> Value {
        let mut skipped = VecDeque::new();
        let found = loop {
            let value = match self.next_within(RECV_TIMEOUT).await {
                Some(Incoming::Json(value)) => value,
                Some(other) => panic!("waiting for the answer to request {id}, got {other:?}"),
                None => panic!("no answer to request {id} within {RECV_TIMEOUT:?}"),
            };
            let answer = matches!(value["type"].as_str(), Some("reply" | "pong"));
            if answer && value["id"] == id {
                break value;
            }
            assert_eq!(
                value["type"], "event",
                "waiting for answer {id}, got {value}"
            );
            skipped.push_back(value);
        };
        // Keep arrival order: what was skipped comes before anything buffered later.
        skipped.append(&mut self.buffered);
        self.buffered = skipped;
        found
    }

    /// `subscribe` to `room` in `/`; returns the reply.
    pub(crate) async fn subscribe(&mut self, room: &str) -> Value {
        self.request(json!({"type": "subscribe", "room": room}))
            .await
    }

    /// `subscribe` that must succeed.
    pub(crate) async fn join(&mut self, room: &str) {
        let reply = self.subscribe(room).await;
        assert_eq!(reply["ok"], true, "subscribe {room}: {reply}");
    }

    /// A `ping` round trip: everything the server queued for this connection before it read
    /// the ping has arrived (and is buffered) once this returns.
    pub(crate) async fn sync(&mut self) {
        let pong = self.request(json!({"type": "ping"})).await;
        assert_eq!(pong["type"], "pong", "{pong}");
    }

    /// Every event received so far (after a [`Client::sync`], all that were queued).
    pub(crate) fn take_buffered(&mut self) -> Vec<Value> {
        self.buffered.drain(..).collect()
    }
}

/// The code of a failed reply, asserting that it is a failed reply.
pub(crate) fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["ok"], false, "{reply}");
    reply["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {reply}"))
}
