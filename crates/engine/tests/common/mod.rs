//! The test server and clients of the driver tests.
//!
//! A server per test: hyper's HTTP/1.1 on `127.0.0.1:0` hands each upgraded socket to
//! [`driver::run`] with a [`Reporter`] handler that tells the test what it saw. The test owns
//! every connection's outbound queue; each connection's timer drives its heartbeat. Clients are tokio-tungstenite,
//! or [`RawClient`] for the bytes a well-behaved client never sends.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use roomcast_engine::driver::{self, Ctx, DriverConfig, End, Handler, IoStats, Session};
use roomcast_engine::ws::{frame, ConnConfig, FrameLimits, OpCode};
use roomcast_engine::{Lane, LaneLimits, OutQueue, Outbound, QueueLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Close code the test servers give a slow consumer.
pub(crate) const SLOW_CONSUMER: u16 = 4008;
/// Close code the test servers give a peer silent past the idle timeout.
pub(crate) const HEARTBEAT_TIMEOUT: u16 = 4000;

/// Commands in flight on the test server's async lane, per node and per connection.
pub(crate) const LANE_PER_NODE: usize = 4;
pub(crate) const LANE_PER_CONNECTION: usize = 2;
/// The lane's timeout: `!slow` commands longer than this are answered `timeout <text>`.
pub(crate) const LANE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long any single step may take before the test fails instead of hanging. It bounds a
/// wait, it measures nothing.
const STEP_LIMIT: Duration = Duration::from_secs(20);
/// Socket buffer size asked for by the `tight` variants: the kernel rounds it up to a few
/// KiB, so a peer that stops reading blocks the other side's writes almost at once.
const TIGHT_BUFFER: u32 = 4096;
/// Long enough that no heartbeat or close deadline passes unless a test asks for it.
const NEVER: Duration = Duration::from_secs(3600);

/// Awaits `fut`, failing the test if it does not finish within [`STEP_LIMIT`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_LIMIT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("gave up waiting for {what}"),
    }
}

/// Driver settings with the given size limits and no heartbeat to speak of.
pub(crate) fn config(max_frame: usize, max_message: usize) -> DriverConfig {
    DriverConfig {
        conn: ConnConfig {
            limits: FrameLimits {
                max_frame,
                max_message,
            },
            ping_interval: NEVER,
            idle_timeout: NEVER,
            close_timeout: NEVER,
        },
        slow_consumer: (SLOW_CONSUMER, "slow consumer"),
        heartbeat_timeout: (HEARTBEAT_TIMEOUT, "heartbeat timeout"),
    }
}

/// What the handler of one connection saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    Text(Bytes),
    Binary(Bytes),
    Closed(End),
}

impl Seen {
    pub(crate) fn text(s: &str) -> Self {
        Seen::Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// Reports every event, echoes messages, and obeys two text commands:
///
/// - `!frame <text>`: answers `<text>` as a pre-encoded text frame ([`Outbound::Frame`]);
/// - `!close <code> <reason>`: queues the text `closing`, then closes with code and reason;
/// - `!slow <ms> <text>`: a command on the async lane that answers `<text>` after `<ms>`
///   milliseconds, `timeout <text>` past the lane's timeout, or `busy <text>` when refused.
///
/// Its farewell is the text `farewell <code> <reason>`.
struct Reporter {
    events: mpsc::UnboundedSender<Seen>,
    lane: Lane,
    lane_limits: Arc<LaneLimits>,
    queue: Arc<OutQueue>,
}

impl Reporter {
    fn slow(&mut self, command: &[u8], ctx: &mut Ctx<'_>) {
        let command = std::str::from_utf8(command).expect("text messages are UTF-8");
        let (ms, text) = command.split_once(' ').unwrap_or((command, ""));
        let ms: u64 = ms.parse().expect("milliseconds");
        let answer = |queue: &Arc<OutQueue>, prefix: &str, text: &str| {
            let text = Bytes::from(format!("{prefix}{text}"));
            let _ = queue.push(Outbound::Text(text));
        };
        let (queue, late) = (self.queue.clone(), self.queue.clone());
        let (text, late_text) = (text.to_owned(), text.to_owned());
        let work = async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            answer(&queue, "", &text);
        };
        let timed_out = move || answer(&late, "timeout ", &late_text);
        if self
            .lane
            .submit(&self.lane_limits, work, timed_out)
            .is_err()
        {
            ctx.send(Outbound::Text(Bytes::from(format!(
                "busy {}",
                command.split_once(' ').map_or("", |(_, t)| t)
            ))));
        }
    }
}

impl Handler for Reporter {
    fn on_text(&mut self, text: Bytes, ctx: &mut Ctx<'_>) {
        let _ = self.events.send(Seen::Text(text.clone()));
        if let Some(rest) = text.strip_prefix(b"!frame ".as_slice()) {
            ctx.send(Outbound::Frame(frame::encoded(OpCode::Text, rest)));
        } else if let Some(rest) = text.strip_prefix(b"!slow ".as_slice()) {
            self.slow(rest, ctx);
        } else if let Some(rest) = text.strip_prefix(b"!close ".as_slice()) {
            let rest = std::str::from_utf8(rest).expect("text messages are UTF-8");
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            ctx.send(Outbound::Text(Bytes::from_static(b"closing")));
            ctx.close(code.parse().expect("a close code"), reason);
        } else {
            ctx.send(Outbound::Text(text));
        }
    }

    fn on_binary(&mut self, data: Bytes, ctx: &mut Ctx<'_>) {
        let _ = self.events.send(Seen::Binary(data.clone()));
        ctx.send(Outbound::Binary(data));
    }

    fn on_tick(&mut self, _ctx: &mut Ctx<'_>) {}

    fn on_close(&mut self, end: &End) {
        let _ = self.events.send(Seen::Closed(end.clone()));
    }

    fn farewell(&mut self, code: u16, reason: &str) -> Option<Outbound> {
        Some(Outbound::Text(format!("farewell {code} {reason}").into()))
    }
}

/// One upgraded connection as the test sees it from the server side.
pub(crate) struct Accepted {
    /// The connection's outbound queue, as a publisher holds it.
    pub(crate) queue: Arc<OutQueue>,
    events: mpsc::UnboundedReceiver<Seen>,
}

impl Accepted {
    /// The handler's next event.
    pub(crate) async fn next(&mut self) -> Seen {
        within("a handler event", self.events.recv())
            .await
            .expect("the handler's events end with Closed")
    }

    /// The handler's next event if it already happened.
    pub(crate) fn try_next(&mut self) -> Option<Seen> {
        self.events.try_recv().ok()
    }

    /// Waits for `on_close`, the next event being expected to be it.
    pub(crate) async fn end(&mut self) -> End {
        match self.next().await {
            Seen::Closed(end) => end,
            other => panic!("expected on_close, the handler saw {other:?}"),
        }
    }
}

/// A server on `127.0.0.1:0` running every upgraded connection through the driver.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) stats: Arc<IoStats>,
    accepted: mpsc::UnboundedReceiver<Accepted>,
    accept_task: JoinHandle<()>,
}

impl TestServer {
    pub(crate) async fn start(config: DriverConfig, queue_limits: QueueLimits) -> Self {
        Self::start_with(config, queue_limits, false).await
    }

    /// A server whose sockets have small send and receive buffers (accepted sockets inherit
    /// them from the listener).
    pub(crate) async fn start_tight(config: DriverConfig, queue_limits: QueueLimits) -> Self {
        Self::start_with(config, queue_limits, true).await
    }

    async fn start_with(config: DriverConfig, queue_limits: QueueLimits, tight: bool) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        if tight {
            socket.set_send_buffer_size(TIGHT_BUFFER).unwrap();
            socket.set_recv_buffer_size(TIGHT_BUFFER).unwrap();
        }
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let listener = socket.listen(128).unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(IoStats::default());
        let (accepted_tx, accepted) = mpsc::unbounded_channel();
        let shared = Shared {
            config: Arc::new(config),
            stats: stats.clone(),
            queue_limits,
            lane: LaneLimits::new(LANE_PER_NODE, LANE_PER_CONNECTION, LANE_TIMEOUT),
            accepted: accepted_tx,
        };
        let accept_task = tokio::spawn(accept_loop(listener, shared));
        Self {
            addr,
            stats,
            accepted,
            accept_task,
        }
    }

    /// The next upgraded connection, in the order the handshakes completed.
    pub(crate) async fn accept(&mut self) -> Accepted {
        within("an upgraded connection", self.accepted.recv())
            .await
            .expect("the accept loop runs as long as the server")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// What every connection of a server shares.
#[derive(Clone)]
struct Shared {
    config: Arc<DriverConfig>,
    stats: Arc<IoStats>,
    queue_limits: QueueLimits,
    lane: Arc<LaneLimits>,
    accepted: mpsc::UnboundedSender<Accepted>,
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req| {
                let response = upgrade(&mut req, &shared);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn upgrade<B>(req: &mut http::Request<B>, shared: &Shared) -> http::Response<String> {
    let queue = Arc::new(OutQueue::new(shared.queue_limits));
    let (events_tx, events) = mpsc::unbounded_channel();
    let session = Session {
        handler: Reporter {
            events: events_tx,
            lane: Lane::new(),
            lane_limits: shared.lane.clone(),
            queue: queue.clone(),
        },
        queue: queue.clone(),
        config: shared.config.clone(),
        stats: shared.stats.clone(),
    };
    let run = |stream, prefix| async move { driver::run(stream, prefix, session).await };
    match roomcast_engine::upgrade::upgrade(req, run) {
        Ok(response) => {
            let _ = shared.accepted.send(Accepted { queue, events });
            response
        }
        Err(e) => e.reject_response(),
    }
}

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsResult = Result<Message, tokio_tungstenite::tungstenite::Error>;

/// A tokio-tungstenite client connected to `addr`.
pub(crate) async fn ws_connect(addr: SocketAddr) -> Ws {
    let url = format!("ws://{addr}/");
    let connect = tokio_tungstenite::connect_async_with_config(url, None, true);
    within("the WebSocket handshake", connect).await.unwrap().0
}

/// A tokio-tungstenite client over a socket with a small receive buffer: the server's
/// writes wait on this client's reads.
pub(crate) async fn ws_connect_tight(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(TIGHT_BUFFER).unwrap();
    let stream = within("a TCP connection", socket.connect(addr))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let url = format!("ws://{addr}/");
    within(
        "the WebSocket handshake",
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .unwrap()
    .0
}

/// The client's next message.
pub(crate) async fn ws_next<S>(ws: &mut S) -> Message
where
    S: futures_util::Stream<Item = WsResult> + Unpin,
{
    use futures_util::StreamExt as _;
    within("a message", ws.next())
        .await
        .expect("the connection is still up")
        .expect("no read error")
}

/// Reads until the server drops the connection, answering its close on the way.
pub(crate) async fn ws_drain<S>(ws: &mut S)
where
    S: futures_util::Stream<Item = WsResult> + Unpin,
{
    use futures_util::StreamExt as _;
    within("the end of the connection", async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// A frame as the server sent it (unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerFrame {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) payload: Bytes,
}

impl ServerFrame {
    pub(crate) fn text(s: &str) -> Self {
        Self {
            fin: true,
            opcode: OpCode::Text,
            payload: Bytes::copy_from_slice(s.as_bytes()),
        }
    }

    pub(crate) fn close(code: u16, reason: &str) -> Self {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        Self {
            fin: true,
            opcode: OpCode::Close,
            payload: payload.into(),
        }
    }
}

/// A client frame, masked as RFC 6455 requires of clients.
pub(crate) fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> BytesMut {
    let mut dst = BytesMut::new();
    frame::encode_masked(opcode, fin, payload, [0x1f, 0x2e, 0x3d, 0x4c], &mut dst);
    dst
}

/// A WebSocket client over a plain TCP stream: completes the handshake, then writes whatever
/// bytes the test gives it and parses what the server sends.
pub(crate) struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    /// The RFC 6455 section 1.3 example key and the accept value it must produce.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, &[], false).await
    }

    /// Connects and upgrades, writing `early` right behind the request in the same write (a
    /// client that does not wait for the 101); `tight` asks for small socket buffers.
    pub(crate) async fn connect_with(addr: SocketAddr, early: &[u8], tight: bool) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        if tight {
            socket.set_send_buffer_size(TIGHT_BUFFER).unwrap();
            socket.set_recv_buffer_size(TIGHT_BUFFER).unwrap();
        }
        let mut stream = within("a TCP connection", socket.connect(addr))
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            Self::KEY
        )
        .into_bytes();
        request.extend_from_slice(early);
        stream.write_all(&request).await.unwrap();
        let mut buf = BytesMut::new();
        let head_len = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = within("the 101 response", stream.read_buf(&mut buf))
                .await
                .unwrap();
            assert!(n > 0, "the server hung up during the handshake");
        };
        let head = buf.split_to(head_len);
        let head = std::str::from_utf8(&head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let accept = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-accept")
                    .then(|| value.trim())
            })
            .expect("a Sec-WebSocket-Accept header");
        assert_eq!(accept, Self::ACCEPT);
        Self { stream, buf }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        within("a write", self.stream.write_all(bytes))
            .await
            .unwrap();
    }

    /// Writes `bytes`, reporting a failed write; may wait as long as the server reads nothing.
    pub(crate) async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next frame from the server; `None` once the server closed the TCP connection.
    pub(crate) async fn frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some(frame) = parse_server_frame(&mut self.buf) {
                return Some(frame);
            }
            match within("a server frame", self.stream.read_buf(&mut self.buf)).await {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "connection closed inside a frame");
                    return None;
                }
                Ok(_) => {}
                // The server may close with our unread bytes in its buffer, which resets the
                // connection; what it sent before that was read already.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Every frame until the server closes the TCP connection.
    pub(crate) async fn frames_to_end(&mut self) -> Vec<ServerFrame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.frame().await {
            frames.push(frame);
        }
        frames
    }
}

/// Parses one unmasked server frame off the front of `buf`, if complete.
fn parse_server_frame(buf: &mut BytesMut) -> Option<ServerFrame> {
    if buf.len() < 2 {
        return None;
    }
    let (b0, b1) = (buf[0], buf[1]);
    assert_eq!(b0 & 0x70, 0, "reserved bits set by the server");
    assert_eq!(b1 & 0x80, 0, "server frames are never masked");
    let (header, len) = match b1 & 0x7F {
        126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() >= 10 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&buf[2..10]);
            (10, usize::try_from(u64::from_be_bytes(len)).unwrap())
        }
        126 | 127 => return None,
        short => (2, usize::from(short)),
    };
    if buf.len() < header + len {
        return None;
    }
    let opcode = OpCode::from_u8(b0 & 0x0F).expect("a known opcode");
    buf.advance(header);
    Some(ServerFrame {
        fin: b0 & 0x80 != 0,
        opcode,
        payload: buf.split_to(len).freeze(),
    })
}
