//! A Socket.IO v5 client over Engine.IO v4 WebSocket (tokio-tungstenite), for tests that hold a
//! native and a Socket.IO client side by side. It answers Engine.IO pings and reads the packets
//! the server sends: events, acks, `DISCONNECT`, `CONNECT_ERROR`, and the close frame.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Server, RECV_TIMEOUT};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a Socket.IO client received (Engine.IO pings are answered and not reported).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SioIncoming {
    /// `CONNECT` answered: the namespace.
    Connected(String),
    /// An event: namespace, name, arguments.
    Event(String, String, Vec<Value>),
    /// An ack: namespace, id, arguments.
    Ack(String, u64, Vec<Value>),
    /// `DISCONNECT` from the server: the namespace.
    Disconnect(String),
    /// `CONNECT_ERROR`: the namespace and its payload.
    ConnectError(String, Value),
    /// A close frame: code and reason.
    Close(Option<(u16, String)>),
    /// The stream ended without a close frame.
    Gone(String),
}

/// One Engine.IO WebSocket connection speaking Socket.IO.
pub(crate) struct SioClient {
    ws: Ws,
    buffered: VecDeque<SioIncoming>,
}

impl std::fmt::Debug for SioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SioClient").finish_non_exhaustive()
    }
}

impl Server {
    /// Opens an Engine.IO WebSocket at the default path and reads its open packet.
    pub(crate) async fn sio_open(&self) -> SioClient {
        self.sio_open_with_cookie(None).await
    }

    /// [`Server::sio_open`] with a `Cookie` header on the handshake, as a browser sends it.
    pub(crate) async fn sio_open_with_cookie(&self, cookie: Option<&str>) -> SioClient {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", self.addr);
        let mut req = url.into_client_request().expect("a valid URL");
        if let Some(cookie) = cookie {
            let value = cookie.parse().expect("a valid header value");
            req.headers_mut().insert(http::header::COOKIE, value);
        }
        let (mut ws, _) = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .expect("Engine.IO connect timed out")
            .expect("Engine.IO upgrade");
        match tokio::time::timeout(RECV_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Text(open)))) => {
                assert!(
                    open.starts_with('0'),
                    "expected the open packet, got {open}"
                );
            }
            other => panic!("expected the open packet, got {other:?}"),
        }
        SioClient {
            ws,
            buffered: VecDeque::new(),
        }
    }

    /// A Socket.IO client connected to namespace `ns` with `auth` `{"token": token}`.
    pub(crate) async fn sio_connect(&self, ns: &str, token: &str) -> SioClient {
        let mut client = self.sio_open().await;
        client.connect(ns, token).await;
        client
    }
}

fn prefix(ns: &str) -> String {
    if ns == "/" {
        String::new()
    } else {
        format!("{ns},")
    }
}

/// Parses a Socket.IO packet (after the Engine.IO `4`).
fn parse(packet: &str) -> SioIncoming {
    let (kind, mut rest) = packet.split_at(1);
    let mut ns = "/".to_owned();
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        ns = rest[..end].to_owned();
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let id: Option<u64> = rest[..digits].parse().ok();
    let json = &rest[digits..];
    let value = || -> Value {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("bad packet JSON {packet:?}: {e}"))
    };
    match kind {
        "0" => SioIncoming::Connected(ns),
        "1" => SioIncoming::Disconnect(ns),
        "2" => {
            let Value::Array(mut args) = value() else {
                panic!("an event is an array: {packet}");
            };
            let name = args.remove(0).as_str().expect("an event name").to_owned();
            SioIncoming::Event(ns, name, args)
        }
        "3" => {
            let Value::Array(args) = value() else {
                panic!("an ack is an array: {packet}");
            };
            SioIncoming::Ack(ns, id.expect("an ack id"), args)
        }
        "4" => SioIncoming::ConnectError(ns, value()),
        _ => panic!("unexpected packet {packet:?}"),
    }
}

impl SioClient {
    async fn send(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send a text frame");
    }

    /// Sends `CONNECT` to `ns` with `{"token": token}` and waits for the answer.
    pub(crate) async fn connect(&mut self, ns: &str, token: &str) {
        let auth = serde_json::json!({ "token": token });
        self.send(format!("40{}{auth}", prefix(ns))).await;
        match self.next_packet().await {
            SioIncoming::Connected(got) => assert_eq!(got, ns),
            other => panic!("expected CONNECT to {ns}, got {other:?}"),
        }
    }

    /// Sends `CONNECT` to `ns` with this auth payload (or none) and waits for the answer.
    pub(crate) async fn connect_with(&mut self, ns: &str, auth: Option<Value>) {
        let auth = auth.map(|a| a.to_string()).unwrap_or_default();
        self.send(format!("40{}{auth}", prefix(ns))).await;
        match self.next_packet().await {
            SioIncoming::Connected(got) => assert_eq!(got, ns),
            other => panic!("expected CONNECT to {ns}, got {other:?}"),
        }
    }

    /// Sends `CONNECT` to `ns` with this auth payload and returns the `CONNECT_ERROR` message.
    pub(crate) async fn connect_refused(&mut self, ns: &str, auth: Option<Value>) -> String {
        let auth = auth.map(|a| a.to_string()).unwrap_or_default();
        self.send(format!("40{}{auth}", prefix(ns))).await;
        match self.next_packet().await {
            SioIncoming::ConnectError(_, payload) => payload["message"]
                .as_str()
                .expect("a CONNECT_ERROR message")
                .to_owned(),
            other => panic!("expected CONNECT_ERROR, got {other:?}"),
        }
    }

    /// Emits `event` with `args` (a JSON array of arguments) on `ns`.
    pub(crate) async fn emit(&mut self, ns: &str, event: &str, args: Value) {
        self.send(event_packet(ns, event, args)).await;
    }

    /// Emits `event` with `args` on `ns`, asking for ack `id`.
    pub(crate) async fn emit_with_ack(&mut self, ns: &str, event: &str, id: u64, args: Value) {
        let Value::Array(mut items) = args else {
            panic!("event arguments are an array");
        };
        items.insert(0, Value::String(event.to_owned()));
        self.send(format!("42{}{id}{}", prefix(ns), Value::Array(items)))
            .await;
    }

    /// Queues an emit without flushing; [`SioClient::flush`] sends what was queued. `false`
    /// when the connection is gone (a flood test expects that).
    pub(crate) async fn feed_emit(&mut self, ns: &str, event: &str, args: Value) -> bool {
        self.ws
            .feed(Message::text(event_packet(ns, event, args)))
            .await
            .is_ok()
    }

    /// Sends what [`SioClient::feed_emit`] queued; `false` when the connection is gone.
    pub(crate) async fn flush(&mut self) -> bool {
        self.ws.flush().await.is_ok()
    }

    /// The next packet within `timeout` (`None` on timeout); pings are answered on the way.
    pub(crate) async fn next_within(&mut self, timeout: Duration) -> Option<SioIncoming> {
        if let Some(packet) = self.buffered.pop_front() {
            return Some(packet);
        }
        let read = async {
            loop {
                match self.ws.next().await {
                    None => return SioIncoming::Gone("end of stream".into()),
                    Some(Err(e)) => return SioIncoming::Gone(e.to_string()),
                    Some(Ok(Message::Text(text))) => {
                        let text = text.as_str();
                        if text == "2" {
                            let _ = self.ws.send(Message::text("3")).await;
                        } else if let Some(packet) = text.strip_prefix('4') {
                            return parse(packet);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return SioIncoming::Close(
                            frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                        )
                    }
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(timeout, read).await.ok()
    }

    /// The next packet, failing after [`RECV_TIMEOUT`].
    pub(crate) async fn next_packet(&mut self) -> SioIncoming {
        match self.next_within(RECV_TIMEOUT).await {
            Some(packet) => packet,
            None => panic!("nothing arrived within {RECV_TIMEOUT:?}"),
        }
    }

    /// The next event named `name`, skipping other events; its namespace and arguments.
    pub(crate) async fn event(&mut self, name: &str) -> (String, Vec<Value>) {
        loop {
            match self.next_packet().await {
                SioIncoming::Event(ns, got, args) if got == name => return (ns, args),
                SioIncoming::Event(..) => {}
                other => panic!("expected event {name}, got {other:?}"),
            }
        }
    }

    /// Waits for the close frame, skipping events and `DISCONNECT`; its code.
    pub(crate) async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.next_packet().await {
                SioIncoming::Close(frame) => return frame.map(|(code, _)| code),
                SioIncoming::Gone(why) => panic!("no close frame: {why}"),
                _ => {}
            }
        }
    }

    /// Asserts that nothing but pings arrives for `quiet`.
    pub(crate) async fn expect_nothing(&mut self, quiet: Duration) {
        if let Some(packet) = self.next_within(quiet).await {
            panic!("expected nothing, got {packet:?}");
        }
    }
}

fn event_packet(ns: &str, event: &str, args: Value) -> String {
    let Value::Array(mut items) = args else {
        panic!("event arguments are an array");
    };
    items.insert(0, Value::String(event.to_owned()));
    format!("42{}{}", prefix(ns), Value::Array(items))
}
