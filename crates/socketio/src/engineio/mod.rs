//! Engine.IO v4, server side, without sockets: the packet and payload codecs, the handshake
//! checks and the session state machine over HTTP long-polling and WebSocket.

pub mod error;
pub mod handshake;
pub mod packet;
pub mod payload;
pub mod session;

pub use error::{Error, ErrorCode};
pub use handshake::{check_request, OpenData, Request, Sid, Transport};
pub use packet::{decode_binary, decode_text, Packet};
pub use payload::{decode_payload, encode_payload};
pub use session::{CloseReason, Event, GetReply, Session, SessionConfig};
