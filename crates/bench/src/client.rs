//! One benchmark client: the identity in its token, its handshake up to a checked `welcome`,
//! and holding the connection open (answering the server's pings) until told to close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wsconn::WsError;

/// Groups the users are spread over (the `group` claim).
const GROUPS: usize = 100;
/// Time allowed for the close handshake of one connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client connection.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The benchmark's users and their HS256 tokens: user `i` has `sub` `"i"`, is in tenant
/// `bench-{i % tenants}` and in group `i % 100`.
pub(crate) struct Identities {
    key: EncodingKey,
    header: Header,
    tenants: usize,
    expires_at: u64,
}

impl Identities {
    /// Tokens signed with `secret`, valid for `ttl` from now.
    pub(crate) fn new(secret: &str, tenants: usize, ttl: Duration) -> Identities {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Identities {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            tenants: tenants.max(1),
            expires_at: now + ttl.as_secs(),
        }
    }

    fn tenant(&self, i: usize) -> String {
        format!("bench-{}", i % self.tenants)
    }

    /// User `i`'s token.
    pub(crate) fn token(&self, i: usize) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = json!({
            "sub": i.to_string(),
            "tenant_id": self.tenant(i),
            "group": i % GROUPS,
            "exp": self.expires_at,
        });
        jsonwebtoken::encode(&self.header, &claims, &self.key)
    }

    /// The rooms the server's `auto_join` templates give user `i`, sorted.
    pub(crate) fn expected_rooms(&self, i: usize) -> Vec<String> {
        let mut rooms = vec![
            format!("user:{i}"),
            format!("tenant:{}", self.tenant(i)),
            format!("group:{}", i % GROUPS),
        ];
        rooms.sort();
        rooms
    }
}

/// Why a connection did not get as far as a correct `welcome`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("cannot mint the token: {0}")]
    Token(jsonwebtoken::errors::Error),
    #[error("upgrade refused with HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    /// Boxed: tungstenite's error is large and this travels through every result.
    #[error("{0}")]
    WebSocket(Box<tungstenite::Error>),
    #[error("no welcome within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("closed before the welcome with {0}")]
    Closed(String),
    #[error("the connection ended before the welcome")]
    Ended,
    #[error("the first data message is binary, not the text welcome")]
    Binary,
    #[error("the first text message is not a welcome: {0}")]
    NotWelcome(String),
    #[error("the welcome lists rooms {got:?}, expected {want:?}")]
    Rooms { got: Vec<String>, want: Vec<String> },
    #[error("cannot connect from {from}: {error}")]
    Connect { from: String, error: std::io::Error },
    #[error("the Socket.IO handshake failed: {0}")]
    SocketIo(String),
    /// From the subscribers' own WebSocket client.
    #[error("{0}")]
    Ws(WsError),
}

impl From<WsError> for OpenError {
    fn from(e: WsError) -> OpenError {
        match e {
            WsError::Refused(status, body) => OpenError::Refused {
                status,
                body: snippet(&body),
            },
            WsError::Closed(close) => OpenError::Closed(close),
            WsError::Ended => OpenError::Ended,
            e => OpenError::Ws(e),
        }
    }
}

impl OpenError {
    /// A label under which like failures are counted together.
    pub(crate) fn kind(&self) -> String {
        match self {
            OpenError::Token(_) => "token".into(),
            OpenError::Refused { status, .. } => format!("HTTP {status}"),
            OpenError::WebSocket(e) => e.to_string(),
            OpenError::Timeout(_) => "timeout".into(),
            OpenError::Closed(close) => close.clone(),
            OpenError::Ended => "ended".into(),
            OpenError::Binary => "binary".into(),
            OpenError::NotWelcome(_) => "not a welcome".into(),
            OpenError::Rooms { .. } => "wrong rooms".into(),
            OpenError::Connect { error, .. } => format!("connect: {}", error.kind()),
            OpenError::SocketIo(_) => "socket.io handshake".into(),
            OpenError::Ws(WsError::Io(e)) => format!("io: {}", e.kind()),
            OpenError::Ws(e) => e.to_string(),
        }
    }
}

/// Connects to `url` and waits for the first text message, which must be a `welcome` listing
/// exactly `want` (sorted). Pings before it are answered; the caller bounds the time taken.
pub(crate) async fn open(
    url: &str,
    want: Vec<String>,
    config: WebSocketConfig,
) -> Result<Ws, OpenError> {
    let mut ws = match tokio_tungstenite::connect_async_with_config(url, Some(config), true).await {
        Ok((ws, _response)) => ws,
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            return Err(OpenError::Refused {
                status: response.status().as_u16(),
                body: snippet(&String::from_utf8_lossy(body)),
            });
        }
        Err(e) => return Err(OpenError::WebSocket(Box::new(e))),
    };
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                check_welcome(text.as_str(), want)?;
                return Ok(ws);
            }
            Some(Ok(Message::Binary(_))) => return Err(OpenError::Binary),
            Some(Ok(Message::Close(frame))) => return Err(OpenError::Closed(describe(frame))),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(e)) => return Err(OpenError::WebSocket(Box::new(e))),
            None => return Err(OpenError::Ended),
        }
    }
}

pub(crate) fn check_welcome(text: &str, want: Vec<String>) -> Result<(), OpenError> {
    let not_welcome = || OpenError::NotWelcome(snippet(text));
    let value: Value = serde_json::from_str(text).map_err(|_| not_welcome())?;
    if value.get("type").and_then(Value::as_str) != Some("welcome") {
        return Err(not_welcome());
    }
    let rooms = value
        .get("rooms")
        .and_then(Value::as_array)
        .ok_or_else(not_welcome)?;
    let mut got: Vec<String> = rooms
        .iter()
        .map(|room| {
            room.as_str()
                .map_or_else(|| room.to_string(), str::to_string)
        })
        .collect();
    got.sort();
    if got != want {
        return Err(OpenError::Rooms { got, want });
    }
    Ok(())
}

pub(crate) fn describe(frame: Option<CloseFrame>) -> String {
    match frame {
        Some(frame) => format!(
            "close code {} {:?}",
            u16::from(frame.code),
            frame.reason.as_str()
        ),
        None => "a close frame without a code".into(),
    }
}

/// The first 200 characters of `text`, for error messages.
pub(crate) fn snippet(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Connections the server ended while they were held, and the first reason seen.
#[derive(Debug, Default)]
pub(crate) struct Drops {
    count: AtomicUsize,
    /// A std mutex: set once, read at the end, never held across an `.await`.
    first: Mutex<Option<String>>,
}

impl Drops {
    pub(crate) fn record(&self, reason: String) {
        if self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            if let Ok(mut first) = self.first.lock() {
                *first = Some(reason);
            }
        }
    }

    /// How many connections were dropped, and why the first one was.
    pub(crate) fn get(&self) -> (usize, Option<String>) {
        let first = self.first.lock().ok().and_then(|first| first.clone());
        (self.count.load(Ordering::Relaxed), first)
    }
}

/// How a held connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldEnd {
    /// We closed it and the server completed the close handshake.
    Closed,
    /// We closed it and the handshake failed or timed out.
    CloseFailed,
    /// The server closed it or it broke while held; see [`Drops`].
    Dropped,
}

/// Keeps `ws` open, reading (which also answers pings) until `stop` turns true, then closes it.
pub(crate) async fn hold(
    mut ws: Ws,
    mut stop: watch::Receiver<bool>,
    drops: Arc<Drops>,
) -> HoldEnd {
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            message = ws.next() => match message {
                Some(Ok(Message::Close(frame))) => {
                    drops.record(format!("the server closed it with {}", describe(frame)));
                    return HoldEnd::Dropped;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    drops.record(e.to_string());
                    return HoldEnd::Dropped;
                }
                None => {
                    drops.record("the connection ended".into());
                    return HoldEnd::Dropped;
                }
            }
        }
    }
    match tokio::time::timeout(CLOSE_TIMEOUT, close(&mut ws)).await {
        Ok(Ok(())) => HoldEnd::Closed,
        Ok(Err(_)) | Err(_) => HoldEnd::CloseFailed,
    }
}

/// Sends a close frame and reads until the server's reply ends the stream.
pub(crate) async fn close<S>(ws: &mut WebSocketStream<S>) -> Result<(), tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.close(None).await?;
    while let Some(message) = ws.next().await {
        message?;
    }
    Ok(())
}

/// Idle native connections with the memory scenario's identities: a checked welcome, then
/// nothing but the server's pings.
pub(crate) struct NativeDialer {
    url_prefix: String,
    identities: Identities,
}

impl NativeDialer {
    /// Connections to the server at `addr` for `identities`.
    pub(crate) fn new(addr: SocketAddr, identities: Identities) -> NativeDialer {
        NativeDialer {
            url_prefix: format!("ws://{addr}/ws?token="),
            identities,
        }
    }
}

impl crate::fleet::Dialer for NativeDialer {
    type Conn = Ws;

    async fn dial(self: Arc<Self>, id: usize) -> Result<Ws, OpenError> {
        let token = self.identities.token(id).map_err(OpenError::Token)?;
        let url = format!("{}{token}", self.url_prefix);
        // Small client buffers: the client holds as many connections as the server and shares
        // the machine with it, and idle connections read only a welcome and pings.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        open(&url, self.identities.expected_rooms(id), config).await
    }

    async fn hold(
        self: Arc<Self>,
        ws: Ws,
        stop: watch::Receiver<bool>,
        drops: Arc<Drops>,
    ) -> HoldEnd {
        hold(ws, stop, drops).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> Vec<String> {
        Identities::new("s", 10, Duration::from_secs(60)).expected_rooms(123)
    }

    #[test]
    fn expected_rooms_follow_the_claims() {
        assert_eq!(want(), ["group:23", "tenant:bench-3", "user:123"]);
    }

    #[test]
    fn a_welcome_with_the_rooms_in_any_order_passes() {
        let text = r#"{"type":"welcome","session":"s1","user":"123","tenant":"bench-3",
            "rooms":["user:123","tenant:bench-3","group:23"],"heartbeat_ms":25000}"#;
        check_welcome(text, want()).unwrap();
    }

    #[test]
    fn a_welcome_with_two_rooms_fails() {
        let text = r#"{"type":"welcome","rooms":["user:123","tenant:bench-3"]}"#;
        assert!(matches!(
            check_welcome(text, want()),
            Err(OpenError::Rooms { .. })
        ));
    }

    #[test]
    fn another_message_first_fails() {
        let text = r#"{"type":"error","code":4001}"#;
        assert!(matches!(
            check_welcome(text, want()),
            Err(OpenError::NotWelcome(_))
        ));
    }

    #[test]
    fn tokens_carry_the_claims() {
        let ids = Identities::new("secret", 10, Duration::from_secs(3600));
        let token = ids.token(42).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"secret"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "42");
        assert_eq!(data.claims["tenant_id"], "bench-2");
        assert_eq!(data.claims["group"], 42);
    }
}
