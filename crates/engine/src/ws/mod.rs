//! RFC 6455, server side, without sockets: the upgrade check, the frame codec and the
//! connection state machine. Bytes and the current time go in; messages, events and the
//! bytes owed to the peer come out.

pub mod conn;
pub mod error;
pub mod frame;
pub mod handshake;
mod utf8;

pub use conn::{ConnConfig, Connection, Event, TickAction};
pub use error::ProtocolError;
pub use frame::{Frame, FrameLimits, OpCode};
pub use handshake::HandshakeError;
