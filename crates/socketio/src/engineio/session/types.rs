//! The vocabulary of [`Session`](super::Session): its configuration, the events it reports,
//! why it closes, and why it refuses a send.

use std::time::Duration;

use bytes::Bytes;

use crate::engineio::error::Error;

/// Timing and size settings of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long after the handshake, and after each pong, the server pings. Default: 25 s.
    pub ping_interval: Duration,
    /// How long the server waits for a pong before closing. Default: 20 s.
    pub ping_timeout: Duration,
    /// The largest polling payload and message, in bytes, both ways. Default: 1 000 000.
    pub max_payload: usize,
    /// Bound on the outgoing buffer: data bytes plus a per-packet overhead. A packet that does
    /// not fit is refused with [`SendError::Full`], unless the buffer is empty. Default: 1 MiB.
    pub max_buffered_bytes: usize,
    /// How long a client has from opening the WebSocket to sending `5`. Default: 10 s.
    pub upgrade_timeout: Duration,
    /// How long a closed polling session keeps its last packets for the next `GET`.
    /// Default: 30 s.
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
            max_buffered_bytes: 1 << 20,
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
    /// The session is over. Its last packets (a close packet, after the buffered data for a
    /// server close) may still wait in [`Session::take_batch`](super::Session::take_batch) / [`Session::poll_outgoing`](super::Session::poll_outgoing).
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
            Self::Error(_) => "parse error",
        }
    }
}

/// A refused [`Session::send`](super::Session::send); the packet comes back.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError<T> {
    /// The outgoing buffer is full: the client reads too slowly.
    #[error("outgoing buffer full")]
    Full(T),
    /// The session is closed.
    #[error("session closed")]
    Closed(T),
}

impl<T> SendError<T> {
    /// The refused value.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(value) | Self::Closed(value) => value,
        }
    }
}

/// Why the session refused a send, before the refused value is attached.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    Full,
    Closed,
}

impl Refusal {
    pub(super) fn with<T>(self, value: T) -> SendError<T> {
        match self {
            Self::Full => SendError::Full(value),
            Self::Closed => SendError::Closed(value),
        }
    }
}
