//! The test harness: the real `roomcast` binary as a child process on `127.0.0.1:0`, native
//! clients over tokio-tungstenite, token minting, and a small HTTP client for the API.
//!
//! Every wait has a timeout, and a timeout is a failure: a test either sees the behaviour it
//! asserts or fails saying what it waited for.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The HS256 secret every test server verifies tokens with.
pub(crate) const SECRET: &str = "e2e-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
/// A platform API key.
pub(crate) const PLATFORM_KEY: &str = "e2e-platform-key";
/// A tenant key for `acme`.
pub(crate) const ACME_KEY: &str = "e2e-acme-key";
/// A tenant key for `globex`.
pub(crate) const GLOBEX_KEY: &str = "e2e-globex-key";

/// How long any single expected message, close or HTTP answer may take. Generous: the machine
/// may be busy building; a test never asserts that something was fast.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The line the server prints once bound.
const LISTENING: &str = "roomcast listening on ";

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// A server configuration, built as a TOML table over the harness defaults.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    table: toml::Table,
}

impl Config {
    /// The defaults of every test: port 0, the test secret, a platform key and tenant keys for
    /// `acme` and `globex`, the ACL `order:*` (subscribe) and `chat:*` (subscribe and publish),
    /// warnings-only logs.
    pub(crate) fn new() -> Config {
        let text = format!(
            r#"
listen = "127.0.0.1:0"
[auth]
secret = "{SECRET}"
[api]
keys = ["{PLATFORM_KEY}"]
tenant_keys = [{{ tenant = "acme", key = "{ACME_KEY}" }}, {{ tenant = "globex", key = "{GLOBEX_KEY}" }}]
[rooms]
acl = [{{ pattern = "order:*" }}, {{ pattern = "chat:*", publish = true }}]
[log]
level = "warn"
"#
        );
        Config {
            table: toml::from_str(&text).expect("the default test configuration is valid TOML"),
        }
    }

    /// Sets the key at a dotted path (`limits.queue_messages`) to a value written in TOML
    /// (`16`, `"text"`, `[1, 2]`, `[{ pattern = "x" }]`).
    pub(crate) fn set(mut self, path: &str, toml_value: &str) -> Config {
        let parsed: toml::Table = toml::from_str(&format!("v = {toml_value}"))
            .unwrap_or_else(|e| panic!("{path} = {toml_value}: {e}"));
        let value = parsed["v"].clone();
        let mut keys: Vec<&str> = path.split('.').collect();
        let last = keys.pop().expect("a non-empty path");
        let mut table = &mut self.table;
        for key in keys {
            table = table
                .entry(key)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key} is not a table"));
        }
        table.insert(last.to_owned(), value);
        self
    }

    fn render(&self) -> String {
        toml::to_string(&self.table).expect("a TOML table renders")
    }
}

// ---------------------------------------------------------------------------------------------
// The server process

/// A running `roomcast` process, killed on drop.
pub(crate) struct Server {
    child: Child,
    /// The address it listens on.
    pub(crate) addr: SocketAddr,
    config_path: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}

fn unique_config_path() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "roomcast-e2e-{}-{}-{nanos}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Server {
    /// Starts the server with the harness defaults.
    pub(crate) async fn start_default() -> Server {
        Server::start(Config::new()).await
    }

    /// Writes `config` to a fresh temporary file, starts the binary with it and waits for its
    /// listening line.
    pub(crate) async fn start(config: Config) -> Server {
        let config_path = unique_config_path();
        std::fs::write(&config_path, config.render()).expect("write the test configuration");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"));
        // Variables from the environment running the tests would change the configuration.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ROOMCAST_") {
                command.env_remove(key);
            }
        }
        command
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the roomcast binary");

        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let log = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            // Keeps reading after the listening line so that the pipe never fills.
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let found = tokio::task::spawn_blocking(move || rx.recv_timeout(START_TIMEOUT))
            .await
            .expect("the waiting thread does not panic");
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            config_path,
            stderr,
        };
        match found {
            Ok(addr) => {
                server.addr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("listening address {addr:?}: {e}"));
                server
            }
            Err(_) => {
                let status = server.child.try_wait();
                panic!(
                    "the server did not print its listening line (exit status {status:?}); stderr:\n{}",
                    server.stderr_text()
                );
            }
        }
    }

    /// What the server wrote to stderr so far.
    pub(crate) fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to the process.
    pub(crate) fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for the process to exit, failing after `timeout`.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.child.try_wait().expect("query the child") {
                Some(status) => return status,
                None if tokio::time::Instant::now() >= deadline => {
                    panic!("the server did not exit within {timeout:?}")
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The WebSocket URL of `/ws` with an optional query string.
    pub(crate) fn ws_url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("ws://{}/ws", self.addr)
        } else {
            format!("ws://{}/ws?{query}", self.addr)
        }
    }

    /// Opens `/ws` without a token.
    pub(crate) async fn connect_anonymous(&self) -> Client {
        Client::open(self.ws_url("").into_client_request().expect("a valid URL")).await
    }

    /// Opens `/ws?token=...` without waiting for anything.
    pub(crate) async fn connect_query(&self, token: &str) -> Client {
        let url = self.ws_url(&format!("token={token}"));
        Client::open(url.into_client_request().expect("a valid URL")).await
    }

    /// Opens `/ws` with `Authorization: Bearer <token>` without waiting for anything.
    pub(crate) async fn connect_header(&self, token: &str) -> Client {
        let mut req = self.ws_url("").into_client_request().expect("a valid URL");
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a valid header value"),
        );
        Client::open(req).await
    }

    /// Connects with `token` in the query and waits for `welcome`.
    pub(crate) async fn connect(&self, token: &str) -> Client {
        let mut client = self.connect_query(token).await;
        let welcome = client.recv_json().await;
        assert_eq!(welcome["type"], "welcome", "expected welcome, got {welcome}");
        client.welcome = welcome;
        client
    }

    /// Connects user `sub` of `tenant` with a one-hour token and waits for `welcome`.
    pub(crate) async fn connect_user(&self, sub: &str, tenant: &str) -> Client {
        self.connect(&token(sub, tenant)).await
    }

    /// One HTTP/1.1 request; the answer's status and body (JSON, or a JSON string holding the
    /// text when the body is not JSON).
    pub(crate) async fn api(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, text) = self.http(method, path, key, body).await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// One HTTP/1.1 request on a fresh connection; the answer's status and body text.
    pub(crate) async fn http(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut http = Http::connect(self.addr).await;
        http.request(method, path, key, body).await
    }

    /// A keep-alive HTTP connection, for many calls in a row.
    pub(crate) async fn http_conn(&self) -> Http {
        Http::connect(self.addr).await
    }

    /// `POST /api/publish` with the platform key; asserts 200 and returns the answer.
    pub(crate) async fn publish(&self, body: Value) -> Value {
        let (status, answer) = self
            .api("POST", "/api/publish", Some(PLATFORM_KEY), Some(&body.to_string()))
            .await;
        assert_eq!(status, 200, "publish {body} answered {answer}");
        answer
    }

    /// The value of an unlabelled metric from `GET /metrics`.
    pub(crate) async fn metric(&self, name: &str) -> u64 {
        let (status, text) = self.http("GET", "/metrics", None, None).await;
        assert_eq!(status, 200, "/metrics answered {text}");
        text.lines()
            .find_map(|line| {
                let (n, v) = line.split_once(' ')?;
                (n == name).then(|| v.trim().parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("metric {name} not in:\n{text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config_path);
        if std::thread::panicking() {
            let log = self.stderr_text();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- roomcast stderr (last lines) ---\n{tail}\n---");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// An HTTP/1.1 client connection (hyper), reused for consecutive requests.
pub(crate) struct Http {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Http {
        let stream = tokio::time::timeout(RECV_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("HTTP connect timed out")
            .expect("HTTP connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Http { addr, sender }
    }

    /// Sends one request and reads the whole answer.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        if self.sender.ready().await.is_err() {
            *self = Http::connect(self.addr).await;
        }
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.addr.to_string());
        if let Some(key) = key {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let body = Full::new(Bytes::from(body.unwrap_or_default().to_owned()));
        let req = req.body(body).expect("a valid request");
        let call = async {
            let resp = self.sender.send_request(req).await.expect("HTTP request");
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .expect("HTTP body")
                .to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        };
        tokio::time::timeout(RECV_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {RECV_TIMEOUT:?}"))
    }

    /// `POST /api/publish` with the platform key; asserts 200.
    pub(crate) async fn publish(&mut self, body: &Value) -> Value {
        self.publish_with(PLATFORM_KEY, body).await
    }

    /// `POST /api/publish` with `key`; asserts 200.
    pub(crate) async fn publish_with(&mut self, key: &str, body: &Value) -> Value {
        let (status, text) = self
            .request("POST", "/api/publish", Some(key), Some(&body.to_string()))
            .await;
        assert_eq!(status, 200, "publish {body} answered {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// Claims for user `sub` of `tenant`, valid for an hour.
pub(crate) fn claims(sub: &str, tenant: &str) -> Value {
    json!({"sub": sub, "tenant_id": tenant, "exp": now_unix() + 3600})
}

/// An HS256 token with the test secret for user `sub` of `tenant`, valid for an hour.
pub(crate) fn token(sub: &str, tenant: &str) -> String {
    sign(&claims(sub, tenant))
}

/// An HS256 token with the test secret.
pub(crate) fn sign(claims: &Value) -> String {
    sign_with(Algorithm::HS256, SECRET, claims)
}

/// A token signed with any HMAC algorithm and secret.
pub(crate) fn sign_with(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HMAC signing cannot fail")
}

/// An unsigned token: header `{"alg":"none"}` and an empty signature.
pub(crate) fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(claims))
}

// ---------------------------------------------------------------------------------------------
// Native clients

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
        f.debug_struct("Client").field("welcome", &self.welcome).finish_non_exhaustive()
    }
}

/// What arrived on a connection, ping and pong frames aside.
#[derive(Debug)]
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
    async fn open(req: http::Request<()>) -> Client {
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
        self.ws.close(Some(frame)).await.expect("send a close frame");
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
                    Some(Err(e)) => return Incoming::Gone(describe(&e)),
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
        assert_eq!(msg["type"], "disconnect", "expected disconnect {code}, got {msg}");
        assert_eq!(msg["code"], code, "disconnect code in {msg}");
        assert!(msg["reason"].is_string(), "reason in {msg}");
        assert!(msg["reconnect"].is_boolean(), "reconnect in {msg}");
        match self.next_incoming().await {
            Incoming::Close(Some((got, reason))) => {
                assert_eq!(got, code, "close code after {msg}");
                assert_eq!(reason, msg["reason"].as_str().unwrap_or_default(), "close reason");
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
            assert_eq!(value["type"], "event", "waiting for answer {id}, got {value}");
            skipped.push_back(value);
        };
        // Keep arrival order: what was skipped comes before anything buffered later.
        skipped.append(&mut self.buffered);
        self.buffered = skipped;
        found
    }

    /// `subscribe` to `room` in `/`; returns the reply.
    pub(crate) async fn subscribe(&mut self, room: &str) -> Value {
        self.request(json!({"type": "subscribe", "room": room})).await
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

fn describe(e: &WsError) -> String {
    format!("{e}")
}

/// The code of a failed reply, asserting that it is a failed reply.
pub(crate) fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["ok"], false, "{reply}");
    reply["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {reply}"))
}
