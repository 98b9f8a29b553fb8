//! [`NamespaceHandler`]: what an application does with the sockets of one namespace, and
//! [`ConnectError`], its refusal of a `CONNECT`.

use std::any::Any;

use roomcast_broker::BoxFuture;
use serde_json::value::RawValue;

use super::args::Args;
use super::socket::{AckSender, SocketRef};

/// The application side of one namespace.
///
/// Calls run inside the connection's runtime, without `.await`, and for one client never
/// overlap: do the work (join rooms, emit, spawn a task for anything slow) and return.
pub trait NamespaceHandler: Send + Sync + 'static {
    /// Asked first for every `CONNECT`: `Some` makes the connect wait for work that has to
    /// (a session to look up elsewhere), within the endpoint's connect timeout;
    /// [`on_connect`](Self::on_connect) then runs from a task of its own, with the socket
    /// made as [`Prepared`] says, and may overlap this client's calls for its other
    /// namespaces. One such connect at a time per namespace of a client; a `CONNECT` to a
    /// namespace while one to it waits is refused. Default: `None`, the connect is carried
    /// out at once.
    fn prepare(
        &self,
        auth: Option<&RawValue>,
        req: &http::request::Parts,
    ) -> Option<BoxFuture<'static, Prepared>> {
        let _ = (auth, req);
        None
    }

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

/// What [`NamespaceHandler::prepare`] found for a `CONNECT`.
#[derive(Default)]
pub struct Prepared {
    /// The socket's id (a recovered session's), instead of a new one.
    pub sid: Option<String>,
    /// The socket's state ([`SocketRef::with_state`]) when `on_connect` runs.
    pub state: Option<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sid", &self.sid)
            .field("state", &self.state.is_some())
            .finish()
    }
}
