//! The vocabulary of [`Session`](super::Session): its configuration, the events it reports,
//! why it closes, and how a pending polling `GET` is to be answered.

use std::time::Duration;

use bytes::Bytes;

use crate::engineio::error::Error;

/// Timing and size settings of a session. Durations are added to the current time: keep them
/// far below `Instant`'s range (the runtime bounds them to a year).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long after the handshake, and after each pong, the server pings. Default: 25 s.
    pub ping_interval: Duration,
    /// How long the server waits for a pong before closing. Default: 20 s.
    pub ping_timeout: Duration,
    /// The largest polling payload and message, in bytes, both ways. Default: 1 000 000.
    pub max_payload: usize,
    /// How long a client has from opening the WebSocket to sending `5`. Default: 10 s.
    pub upgrade_timeout: Duration,
    /// How long a polling session closed by the server waits for the `GET` that delivers its
    /// last packets. Default: 30 s.
    pub close_timeout: Duration,
    /// Whether polling sessions may upgrade to WebSocket. Default: true.
    pub allow_upgrades: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(30),
            allow_upgrades: true,
        }
    }
}

/// What the session tells its owner.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text message from the client.
    Message(Bytes),
    /// A binary message from the client.
    Binary(Bytes),
    /// The upgrade completed: the WebSocket is now the transport, polling requests are refused.
    Upgraded,
    /// The upgrade failed (timeout, unexpected packet, WebSocket gone, session closed): close
    /// the probing WebSocket; the session goes on over polling unless it closed.
    UpgradeCancelled,
    /// The session is over. Over polling a pending (or, after a server close, the next) `GET`
    /// may still be owed its last answer: see [`Session::poll_get`](super::Session::poll_get).
    Closed(CloseReason),
}

/// Why a session closed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet.
    ClientClose,
    /// The transport went away: the WebSocket closed, or a polling request was aborted.
    TransportClose,
    /// No pong within `ping_timeout`.
    PingTimeout,
    /// [`Session::close`](super::Session::close) was called.
    ServerClose,
    /// The outgoing queue overflowed: the client reads too slowly.
    SlowConsumer,
    /// The client broke the protocol.
    Error(Error),
}

impl CloseReason {
    /// The reason as Socket.IO names it in `disconnect` handlers.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ClientClose | Self::TransportClose => "transport close",
            Self::PingTimeout => "ping timeout",
            Self::ServerClose => "forced close",
            Self::SlowConsumer => "transport error",
            Self::Error(_) => "parse error",
        }
    }
}

/// How to answer the pending polling `GET`, from [`Session::poll_get`](super::Session::poll_get).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetReply {
    /// A payload of the packets queued for the client, up to `max_payload` bytes.
    Data,
    /// `6` (noop): a WebSocket took over, or the client closed the session.
    Noop,
    /// `1` (close): the session is over.
    Close,
    /// Refused with this error: the `GET` raced an upgrade that completed.
    Refused(Error),
}

impl GetReply {
    /// The body of a `Noop` or `Close` answer; `None` for the others.
    pub fn body(self) -> Option<&'static [u8]> {
        match self {
            Self::Data | Self::Refused(_) => None,
            Self::Noop => Some(b"6"),
            Self::Close => Some(b"1"),
        }
    }
}
