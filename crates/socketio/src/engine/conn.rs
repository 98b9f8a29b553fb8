//! [`EngineConn`]: the application's handle on one Engine.IO session, to queue packets and
//! close it from any task; and the switch that tells producers which transport reads the
//! queue, for packets that must reach the client together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{BufMut, Bytes, BytesMut};
use roomcast_engine::{CloseRequest, OutQueue, Outbound, PushError};

use super::pending::PendingSlot;
use super::{group, lock, read, CLOSE_NORMAL};
use crate::engineio::Sid;

/// The application's handle on one session: cheap to clone, usable from any task.
#[derive(Debug, Clone)]
pub struct EngineConn {
    pub(super) sid: Sid,
    pub(super) queue: Arc<OutQueue>,
    pub(super) link: Arc<Link>,
}

/// Which transport reads a session's queue, for packets that must arrive together.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) websocket: AtomicBool,
    // A std lock: held to look at the transport and push one group (read), or to switch the
    // transport and take over the queue (write); never across an `.await`.
    pub(super) switch: RwLock<()>,
    /// The session's place among the pending sessions, until the application admits it or
    /// it closes. A std lock, taken once or twice per session.
    pub(super) pending: Mutex<Option<PendingSlot>>,
}

impl EngineConn {
    /// The session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The session's outgoing queue: Engine.IO packets, text ones in their text encoding
    /// (`Outbound::Text(b"4hello")`), binary messages as `Outbound::Binary`.
    pub fn queue(&self) -> &Arc<OutQueue> {
        &self.queue
    }

    /// Queues a text message (`data` without the Engine.IO `4`).
    pub fn send_text(&self, data: &[u8]) -> Result<(), PushError> {
        let mut packet = BytesMut::with_capacity(1 + data.len());
        packet.put_u8(b'4');
        packet.extend_from_slice(data);
        self.queue.push(Outbound::Text(packet.freeze()))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, data: Bytes) -> Result<(), PushError> {
        self.queue.push(Outbound::Binary(data))
    }

    /// Queues packets that must reach the client one after the other, with nothing from
    /// other producers between them (a Socket.IO binary packet and its attachments), as one
    /// queue item encoded for the transport reading the queue: several WebSocket frames in
    /// one `Outbound::Frame`, or several payload records in one `Outbound::Text`.
    pub fn push_group(&self, items: &[Outbound]) -> Result<(), PushError> {
        self.group(items, false)
    }

    /// [`push_group`](Self::push_group) ahead of what a [`QueueHold`] holds back
    /// ([`OutQueue::push_ahead`]).
    ///
    /// [`QueueHold`]: roomcast_engine::QueueHold
    pub fn push_group_ahead(&self, items: &[Outbound]) -> Result<(), PushError> {
        self.group(items, true)
    }

    fn group(&self, items: &[Outbound], ahead: bool) -> Result<(), PushError> {
        let push = |item: Outbound| {
            if ahead {
                self.queue.push_ahead(item)
            } else {
                self.queue.push(item)
            }
        };
        if let [item] = items {
            return push(item.clone());
        }
        let _reading = read(&self.link.switch);
        let group = if self.link.websocket.load(Ordering::Acquire) {
            Outbound::Frame(group::frames(items))
        } else {
            Outbound::Text(group::records(items))
        };
        push(group)
    }

    /// Queues encoded Engine.IO packets: `Outbound::Text` must hold a whole text packet
    /// (`4...`), `Outbound::Binary` a binary message. Complete WebSocket frames cannot go
    /// over polling: do not push `Outbound::Frame` here.
    pub fn push(&self, item: Outbound) -> Result<(), PushError> {
        self.queue.push(item)
    }

    /// Closes the session from the server side: what is queued is still delivered, then the
    /// close (a close packet over polling, a close frame over WebSocket).
    pub fn close(&self) {
        self.close_with(CLOSE_NORMAL, "server close");
    }

    /// [`close`](Self::close) with the WebSocket close code and reason to use (over polling the
    /// client gets a close packet, which carries neither).
    pub fn close_with(&self, code: u16, reason: &str) {
        self.queue.request_close(CloseRequest {
            code,
            reason: reason.to_owned(),
            last_message: None,
        });
    }

    /// Whether the session takes no more packets (closing or overflowed).
    pub fn is_closing(&self) -> bool {
        self.queue.is_closing()
    }

    /// The application admits the session (Socket.IO: it connected to a namespace): it no
    /// longer counts against the bounds on pending sessions. Idempotent.
    pub fn admit(&self) {
        let slot = lock(&self.link.pending).take();
        drop(slot);
    }
}
