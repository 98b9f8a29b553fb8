//! One subscriber of either protocol: connected from one of several loopback source addresses
//! (each address has its own ephemeral ports, so tens of thousands of connections to one server
//! port do not run out of them), authenticated with its token, in its room, then reading
//! events into its fleet's [`Recorder`] until told to close.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::client::{self, check_welcome, describe, snippet, Drops, HoldEnd, OpenError};
use crate::fleet::Dialer;
use crate::stats::{Order, Recorder};
use crate::wire::{self, find_tick, parse_sio, Protocol, SioFrame, Tokens};

/// Time allowed for the close handshake of one connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A subscriber's connection.
pub(crate) type Stream = WebSocketStream<TcpStream>;

/// Opens subscribers of one protocol to one server.
pub(crate) struct SubDialer {
    /// The protocol spoken.
    pub(crate) protocol: Protocol,
    /// The server.
    pub(crate) server: SocketAddr,
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
        match self.protocol {
            Protocol::Native => {
                let url = format!("ws://{}/ws?token={token}", self.server);
                let mut ws = connect(self.server, source, &url).await?;
                let text = first_text(&mut ws).await?;
                check_welcome(&text, vec![self.tokens.room(id)])?;
                Ok(ws)
            }
            Protocol::SocketIo => {
                let url = format!("ws://{}{}", self.server, wire::SOCKET_IO_PATH);
                let mut ws = connect(self.server, source, &url).await?;
                let open = first_text(&mut ws).await?;
                if parse_sio(&open) != SioFrame::Open {
                    return Err(OpenError::SocketIo(format!(
                        "the first message is not an Engine.IO open packet: {}",
                        snippet(&open)
                    )));
                }
                send(&mut ws, wire::sio_connect(&token)).await?;
                loop {
                    let text = first_text(&mut ws).await?;
                    match parse_sio(&text) {
                        SioFrame::Connected => return Ok(ws),
                        SioFrame::Ping => send(&mut ws, wire::PONG.to_string()).await?,
                        SioFrame::ConnectError(data) => {
                            return Err(OpenError::SocketIo(format!(
                                "connect refused: {}",
                                snippet(data)
                            )))
                        }
                        SioFrame::Disconnect => {
                            return Err(OpenError::SocketIo("disconnected by the server".into()))
                        }
                        SioFrame::Open | SioFrame::Event(_) | SioFrame::Other => {}
                    }
                }
            }
        }
    }

    /// Reads events until `stop`, recording each tick; answers Engine.IO pings.
    async fn receive(
        &self,
        ws: &mut Stream,
        stop: &mut watch::Receiver<bool>,
        drops: &Drops,
    ) -> bool {
        let mut order = Order::default();
        loop {
            let message = tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return true,
                message = ws.next() => message,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    drops.record(format!("the server closed it with {}", describe(frame)));
                    return false;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    drops.record(e.to_string());
                    return false;
                }
                None => {
                    drops.record("the connection ended".into());
                    return false;
                }
            };
            let tick = match self.protocol {
                Protocol::Native => find_tick(&text),
                Protocol::SocketIo => match parse_sio(&text) {
                    SioFrame::Event(event) => find_tick(event),
                    SioFrame::Ping => {
                        if let Err(e) = send(ws, wire::PONG.to_string()).await {
                            drops.record(e.to_string());
                            return false;
                        }
                        None
                    }
                    SioFrame::Disconnect => {
                        drops.record("the server sent a Socket.IO disconnect".into());
                        return false;
                    }
                    _ => None,
                },
            };
            if let Some(tick) = tick {
                let now = wire::unix_now().as_nanos() as u64;
                self.recorder.record(&mut order, tick, now);
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
        match tokio::time::timeout(CLOSE_TIMEOUT, client::close(&mut ws)).await {
            Ok(Ok(())) => HoldEnd::Closed,
            Ok(Err(_)) | Err(_) => HoldEnd::CloseFailed,
        }
    }
}

/// Opens a TCP connection from `source` (any port) to `server` and upgrades it at `url`.
pub(crate) async fn connect(
    server: SocketAddr,
    source: IpAddr,
    url: &str,
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
    // Small buffers: the generator holds as many connections as the server and shares the
    // machine with it; events are small.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    match tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await {
        Ok((ws, _response)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err(OpenError::Refused {
                status: response.status().as_u16(),
                body: snippet(&String::from_utf8_lossy(body)),
            })
        }
        Err(e) => Err(OpenError::WebSocket(Box::new(e))),
    }
}

/// The next text message; pings and pongs before it are skipped (tungstenite answers pings).
async fn first_text(ws: &mut Stream) -> Result<String, OpenError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_string()),
            Some(Ok(Message::Binary(_))) => return Err(OpenError::Binary),
            Some(Ok(Message::Close(frame))) => return Err(OpenError::Closed(describe(frame))),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(e)) => return Err(OpenError::WebSocket(Box::new(e))),
            None => return Err(OpenError::Ended),
        }
    }
}

async fn send(ws: &mut Stream, text: String) -> Result<(), OpenError> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| OpenError::WebSocket(Box::new(e)))
}
