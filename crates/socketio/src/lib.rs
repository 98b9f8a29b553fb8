//! Engine.IO v4 and Socket.IO v5 for Roomcast.
//!
//! The protocols themselves are sans-IO codecs and state machines: bytes, requests and the
//! current time go in; packets, payloads and events come out.
//!
//! - [`engineio`]: the transport layer: packets, polling payloads, the handshake and the
//!   [`Session`] state machine (heartbeat, upgrade from polling to WebSocket);
//! - [`socketio`]: the packet layer carried in Engine.IO messages: namespaces, events,
//!   acknowledgements and binary attachments.
//!
//! Over them sits a thin tokio and hyper runtime:
//!
//! - [`engine`]: an Engine.IO endpoint ([`EngineIo`]) for any [`EngineHandler`]: polling,
//!   WebSocket, the upgrade between them, one bounded outgoing queue per session;
//! - [`io`]: the Socket.IO server ([`SocketIo`]): namespaces and their
//!   [`NamespaceHandler`]s, sockets ([`SocketRef`]) that are members of the shared room
//!   index, events, acks and binary attachments both ways;
//! - [`config`]: the endpoints' settings.

pub mod config;
pub mod engine;
pub mod engineio;
pub mod io;
pub mod socketio;
#[cfg(test)]
mod testkit;

pub use config::{Config, Cors};
pub use engine::{ClientAddr, EngineConn, EngineHandler, EngineIo, Message};
pub use engineio::{CloseReason, Session, SessionConfig, Sid, Transport};
pub use io::{
    encode_event, encode_payload, AckError, AckSender, Args, BroadcastOperator, ConnectError,
    EmitError, NamespaceHandler, Prepared, SocketIo, SocketRef,
};
pub use socketio::{Reassembler, ReassemblyLimits};
