//! The native protocol v1 (see `protocol/README.md`): message codec, session logic and the
//! `/ws` upgrade.

mod control;
mod resume;
pub mod session;
mod upgrade;

pub use upgrade::upgrade;

/// The native protocol's codec, a module of its own ([`crate::proto`]), under its former path.
pub use crate::proto;

/// The close request for `code`: the `disconnect` message, then the close frame with the same
/// code and reason (protocol/codes.md).
pub fn close_request(code: proto::CloseCode, reason: &str) -> roomcast_engine::CloseRequest {
    roomcast_engine::CloseRequest {
        code: code.code(),
        reason: reason.to_owned(),
        last_message: Some(roomcast_engine::Outbound::Text(proto::encode_disconnect(
            code, reason,
        ))),
    }
}
