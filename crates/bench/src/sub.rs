//! One subscriber of either protocol: connected from one of several loopback source addresses
//! (each address has its own ephemeral ports, so tens of thousands of connections to one server
//! port do not run out of them), authenticated with its token, in its room, then reading
//! events into its fleet's [`Recorder`] until told to close.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::sync::watch;

use crate::client::{check_welcome, snippet, Drops, HoldEnd, OpenError};
use crate::fleet::Dialer;
use crate::stats::{Order, Recorder};
use crate::wire::{self, find_tick, parse_sio, Protocol, SioFrame, Tokens};
use crate::wsconn::{WsConn, WsError};

/// Time allowed for the close handshake of one connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A subscriber's connection.
pub(crate) type Stream = WsConn;

/// Opens subscribers of one protocol to a server, or to the nodes of a cluster in turn.
pub(crate) struct SubDialer {
    /// The protocol spoken.
    pub(crate) protocol: Protocol,
    /// The server's addresses, at least one: subscriber `id` connects to the one at `id`
    /// modulo their count, so that the nodes of a cluster get equal shares.
    pub(crate) servers: Vec<SocketAddr>,
    /// The subscribers' tokens, which also name their rooms.
    pub(crate) tokens: Tokens,
    /// Local addresses to connect from, used in turn.
    pub(crate) sources: Vec<IpAddr>,
    /// Where arrivals are recorded.
    pub(crate) recorder: Arc<Recorder>,
}

impl SubDialer {
    /// Connects subscriber `id`, authenticates it and waits until it is in its room.
    pub(crate) async fn open(&self, id: usize) -> Result<Stream, OpenError> {
        let token = self.tokens.token(id).map_err(OpenError::Token)?;
        let source = self.sources[id % self.sources.len().max(1)];
        let server = self.servers[id % self.servers.len().max(1)];
        match self.protocol {
            Protocol::Native => {
                let path = format!("/ws?token={token}");
                let mut ws = connect(server, source, &path).await?;
                let text = first_text(&mut ws).await?;
                check_welcome(&text, vec![self.tokens.room(id)])?;
                Ok(ws)
            }
            Protocol::SocketIo => {
                let mut ws = connect(server, source, wire::SOCKET_IO_PATH).await?;
                sio_handshake(&mut ws, &wire::sio_connect(&token), &mut |_| {}).await?;
                Ok(ws)
            }
        }
    }

    /// Reads events until `stop`, recording each tick; answers Engine.IO pings. Everything a
    /// read brings is recorded at once, with one clock reading and one lock.
    async fn receive(
        &self,
        ws: &mut Stream,
        stop: &mut watch::Receiver<bool>,
        drops: &Drops,
    ) -> bool {
        let mut order = Order::default();
        let mut ticks = Vec::new();
        let native = self.protocol == Protocol::Native;
        // One wait for the stop signal for the connection's life: registering it afresh on
        // every read would take the signal's lock, shared by every connection, each time.
        let stopped = stop.wait_for(|stop| *stop);
        tokio::pin!(stopped);
        loop {
            let (mut pings, mut ended) = (0, None);
            let mut on_text = |text: &[u8]| {
                let tick = if native {
                    find_tick(text)
                } else {
                    match parse_sio(text) {
                        SioFrame::Event(event) => find_tick(event),
                        SioFrame::Ping => {
                            pings += 1;
                            None
                        }
                        SioFrame::Close => {
                            ended = Some("the server closed the Engine.IO session");
                            None
                        }
                        SioFrame::Disconnect => {
                            ended = Some("the server sent a Socket.IO disconnect");
                            None
                        }
                        _ => None,
                    }
                };
                ticks.extend(tick);
            };
            let read = tokio::select! {
                biased;
                read = ws.read_some(&mut on_text) => read,
                _ = &mut stopped => return true,
            };
            if !ticks.is_empty() {
                let now = wire::unix_now().as_nanos() as u64;
                self.recorder.record_all(&mut order, &ticks, now);
                ticks.clear();
            }
            if let Err(e) = read {
                drops.record(e.to_string());
                return false;
            }
            if let Some(ended) = ended {
                drops.record(ended.into());
                return false;
            }
            for _ in 0..pings {
                if let Err(e) = send(ws, wire::PONG).await {
                    drops.record(e.to_string());
                    return false;
                }
            }
        }
    }
}

impl Dialer for SubDialer {
    type Conn = Stream;

    async fn dial(self: Arc<Self>, id: usize) -> Result<Stream, OpenError> {
        self.open(id).await
    }

    async fn hold(
        self: Arc<Self>,
        mut ws: Stream,
        mut stop: watch::Receiver<bool>,
        drops: Arc<Drops>,
    ) -> HoldEnd {
        if !self.receive(&mut ws, &mut stop, &drops).await {
            return HoldEnd::Dropped;
        }
        match tokio::time::timeout(CLOSE_TIMEOUT, ws.close()).await {
            Ok(Ok(())) => HoldEnd::Closed,
            Ok(Err(_)) | Err(_) => HoldEnd::CloseFailed,
        }
    }
}

/// Opens a TCP connection from `source` (any port) to `server` and upgrades it at `path`.
pub(crate) async fn connect(
    server: SocketAddr,
    source: IpAddr,
    path: &str,
) -> Result<Stream, OpenError> {
    let from = source.to_string();
    let io = |error| OpenError::Connect {
        from: from.clone(),
        error,
    };
    let socket = match server {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(io)?;
    // Lets a port whose previous connection sits in TIME_WAIT be bound again.
    socket.set_reuseaddr(true).map_err(io)?;
    socket.bind(SocketAddr::new(source, 0)).map_err(io)?;
    let stream = socket.connect(server).await.map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    WsConn::upgrade(stream, server, path)
        .await
        .map_err(OpenError::from)
}

/// The Socket.IO handshake on a connection upgraded at [`wire::SOCKET_IO_PATH`]: the Engine.IO
/// open packet, then the namespace connect `connect`, pings answered, up to the `CONNECT`
/// answer, whose frame it returns. Events that come before the answer (the missed events a
/// recovered session is sent first) are handed to `on_event`, each as its payload after `42`.
pub(crate) async fn sio_handshake(
    ws: &mut Stream,
    connect: &str,
    on_event: &mut impl FnMut(&[u8]),
) -> Result<String, OpenError> {
    let open = first_text(ws).await?;
    if parse_sio(open.as_bytes()) != SioFrame::Open {
        return Err(OpenError::SocketIo(format!(
            "the first message is not an Engine.IO open packet: {}",
            snippet(&open)
        )));
    }
    send(ws, connect).await?;
    loop {
        let text = first_text(ws).await?;
        match parse_sio(text.as_bytes()) {
            SioFrame::Connected => return Ok(text),
            SioFrame::Ping => send(ws, wire::PONG).await?,
            SioFrame::ConnectError(data) => {
                return Err(OpenError::SocketIo(format!(
                    "connect refused: {}",
                    snippet(&String::from_utf8_lossy(data))
                )))
            }
            SioFrame::Close => return Err(OpenError::SocketIo("closed by the server".into())),
            SioFrame::Disconnect => {
                return Err(OpenError::SocketIo("disconnected by the server".into()))
            }
            SioFrame::Event(payload) => on_event(payload),
            SioFrame::Open | SioFrame::Other => {}
        }
    }
}

/// The next text message; pings before it are answered.
async fn first_text(ws: &mut Stream) -> Result<String, OpenError> {
    ws.next_text().await.map_err(OpenError::from)
}

pub(crate) async fn send(ws: &mut Stream, text: &str) -> Result<(), OpenError> {
    ws.send_text(text)
        .await
        .map_err(|e| OpenError::Ws(WsError::Io(e)))
}
