//! The server under test as a child process, and an HTTP/1.1 client for its API.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{token, Client, Config, PLATFORM_KEY, RECV_TIMEOUT};

/// How long the server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The line the server prints once bound.
const LISTENING: &str = "roomcast listening on ";

/// A running `roomcast` process, killed on drop.
pub(crate) struct Server {
    child: Child,
    /// The address it listens on.
    pub(crate) addr: SocketAddr,
    config_path: PathBuf,
    stderr: Arc<Mutex<String>>,
    /// Set once the stderr reader has read to the end of the pipe.
    stderr_done: Arc<AtomicBool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
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
        let stderr_done = Arc::new(AtomicBool::new(false));
        if let Some(mut pipe) = child.stderr.take() {
            let log = stderr.clone();
            let done = stderr_done.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                done.store(true, Ordering::Release);
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
            stderr_done,
        };
        match found {
            Ok(addr) => {
                server.addr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("listening address {addr:?}: {e}"));
                server
            }
            Err(_) => {
                // Give the stderr reader a moment to collect the reason of an early exit.
                std::thread::sleep(Duration::from_millis(200));
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

    /// Waits for the process to exit, and for what it wrote to stderr to be read to the end
    /// (its last lines may still be in the pipe when it exits), failing after `timeout`.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.child.try_wait().expect("query the child") {
                Some(status) if self.stderr_done.load(Ordering::Acquire) => return status,
                Some(_) if tokio::time::Instant::now() >= deadline => {
                    panic!("the server's stderr was not closed within {timeout:?} of its exit")
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
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
            format!("Bearer {token}")
                .parse()
                .expect("a valid header value"),
        );
        Client::open(req).await
    }

    /// Connects with `token` in the query and waits for `welcome`.
    pub(crate) async fn connect(&self, token: &str) -> Client {
        let mut client = self.connect_query(token).await;
        let welcome = client.recv_json().await;
        assert_eq!(
            welcome["type"], "welcome",
            "expected welcome, got {welcome}"
        );
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
            .api(
                "POST",
                "/api/publish",
                Some(PLATFORM_KEY),
                Some(&body.to_string()),
            )
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

    /// `POST /api/publish` with `key`; asserts 200.
    pub(crate) async fn publish_with(&mut self, key: &str, body: &Value) -> Value {
        let (status, text) = self
            .request("POST", "/api/publish", Some(key), Some(&body.to_string()))
            .await;
        assert_eq!(status, 200, "publish {body} answered {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}
