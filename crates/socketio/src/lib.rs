//! Engine.IO v4 and Socket.IO v5 over the Roomcast engine, as sans-IO codecs and state
//! machines: bytes, requests and the current time go in; packets, payloads and events come
//! out. The tokio and HTTP glue lives in the server crate.
//!
//! - [`engineio`]: the transport layer: packets, polling payloads, the handshake and the
//!   [`Session`] state machine (heartbeat, upgrade from polling to WebSocket);
//! - [`socketio`]: the packet layer carried in Engine.IO messages: namespaces, events,
//!   acknowledgements and binary attachments.

pub mod engineio;
pub mod socketio;

pub use engineio::{Session, SessionConfig, Sid, Transport};
pub use socketio::{Reassembler, ReassemblyLimits};
