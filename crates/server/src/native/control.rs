//! [`NativeControl`]: a native connection's handle in the room index's live table, through
//! which the API disconnects it and a shutdown sends it elsewhere.

use std::any::Any;
use std::sync::{Arc, Weak};

use roomcast_engine::rooms::{Closing, ConnId, Control};
use roomcast_engine::OutQueue;

use super::close_request;
use super::session::NativeSession;
use crate::proto::CloseCode;

/// Weak: the live table keeps no connection's queue alive.
pub(crate) struct NativeControl {
    id: ConnId,
    queue: Weak<OutQueue>,
}

impl NativeControl {
    pub(crate) fn new(id: ConnId, queue: &Arc<OutQueue>) -> Self {
        Self {
            id,
            queue: Arc::downgrade(queue),
        }
    }
}

impl Control for NativeControl {
    /// A `disconnect` message, then the close frame with the same code (protocol/codes.md):
    /// 4004 for the API's disconnect, 1001 for a shutdown.
    fn close(&self, how: Closing<'_>) {
        let Some(queue) = self.queue.upgrade() else {
            return;
        };
        let request = match how {
            Closing::Disconnect(reason) => close_request(CloseCode::Disconnected, reason),
            Closing::GoingAway => close_request(CloseCode::GoingAway, "server shutting down"),
        };
        queue.request_close(request);
    }

    fn session_id(&self) -> String {
        NativeSession::session_id(self.id)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
