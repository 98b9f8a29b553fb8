//! [`SocketControl`]: a socket's handle in the room index's live table, through which a
//! server's API disconnects it and a shutdown sends its client elsewhere, and through which
//! the endpoint finds a socket by its id.

use std::any::Any;
use std::sync::Weak;

use roomcast_engine::rooms::{Closing, Control, Live};

use super::socket::{SocketInner, SocketRef};

/// Weak: the live table keeps no socket, and so no connection, alive.
pub(super) struct SocketControl(pub(super) Weak<SocketInner>);

impl SocketControl {
    pub(super) fn socket(&self) -> Option<SocketRef> {
        self.0.upgrade().map(SocketRef)
    }
}

/// The socket behind a live connection, when it is a connected socket of this endpoint.
pub(super) fn socket_of(live: &Live) -> Option<SocketRef> {
    live.control
        .as_any()
        .downcast_ref::<SocketControl>()
        .and_then(SocketControl::socket)
}

impl Control for SocketControl {
    fn close(&self, how: Closing<'_>) {
        let Some(socket) = self.socket() else {
            return;
        };
        match how {
            // The socket leaves its namespace with DISCONNECT ("io server disconnect"), which
            // clients do not retry by themselves; the connection and its other sockets stay.
            Closing::Disconnect(_) => socket.disconnect(),
            // The whole transport closes, without DISCONNECT: clients see "transport close"
            // and reconnect, to another node.
            Closing::GoingAway => socket.engine().close_with(1001, "server shutting down"),
        }
    }

    /// The id the server's API knows it by (its room-index id in hex, as for native
    /// connections), not the Socket.IO `sid` its client sees.
    fn session_id(&self) -> String {
        self.socket()
            .map(|s| format!("{:x}", s.conn_id().0))
            .unwrap_or_default()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
