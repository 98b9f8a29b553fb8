//! [`NamespaceHandler`]: what an application does with the sockets of one namespace, and
//! [`ConnectError`], its refusal of a `CONNECT`.

use serde_json::value::RawValue;

use super::args::Args;
use super::socket::{AckSender, SocketRef};

/// The application side of one namespace.
///
/// Calls run inside the connection's runtime, without `.await`, and for one client never
/// overlap: do the work (join rooms, emit, spawn a task for anything slow) and return.
pub trait NamespaceHandler: Send + Sync + 'static {
    /// A client asks to join the namespace. `auth` is the `CONNECT` payload (`None` when the
    /// client sent none), `req` the head of the connection's handshake request (headers and
    /// query, for tokens given there).
    ///
    /// `Err` answers `CONNECT_ERROR`; `Ok` accepts: the `CONNECT` answer is sent when this
    /// returns, before anything emitted from here. Set the socket's identity
    /// ([`SocketRef::set_identity`]) before joining rooms.
    fn on_connect(
        &self,
        socket: &SocketRef,
        auth: Option<&RawValue>,
        req: &http::request::Parts,
    ) -> Result<(), ConnectError>;

    /// An `EVENT` or `BINARY_EVENT` from the client: `args` are the arguments after the
    /// event name (with the binary attachments), `ack` is set when the client asked for an
    /// acknowledgement.
    fn on_event(&self, socket: &SocketRef, event: &str, args: Args, ack: Option<AckSender>);

    /// The socket left the namespace: `reason` as Socket.IO names it (`client namespace
    /// disconnect`, `server namespace disconnect`, `transport close`, `ping timeout`,
    /// `parse error`, `server shutting down`...). Called once. Default: nothing.
    fn on_disconnect(&self, socket: &SocketRef, reason: &str) {
        let _ = (socket, reason);
    }

    /// The time set with [`SocketRef::set_expiry`] has come (it may come late, never early).
    /// Set a later one to be called again. Default: disconnect the socket.
    fn on_expiry(&self, socket: &SocketRef) {
        socket.disconnect();
    }
}

/// A refused `CONNECT`: sent to the client as `CONNECT_ERROR` `{"message", "data"}`.
#[derive(Debug, Clone)]
pub struct ConnectError {
    /// What the client's `connect_error` handler gets as `err.message`.
    pub message: String,
    /// Extra details (`err.data`), if any.
    pub data: Option<Box<RawValue>>,
}

impl ConnectError {
    /// A refusal with a message and no data.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }
}
