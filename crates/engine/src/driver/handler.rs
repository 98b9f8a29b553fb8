//! What a connection's task asks of the application protocol (native, Socket.IO): the
//! [`Handler`] trait, the [`Ctx`] it answers through during one call, and the [`End`] it is
//! told about once the connection is over.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::queue::{OutQueue, Outbound};

/// What the application protocol (native, Socket.IO) does with a connection's messages.
///
/// The handler runs inside the connection's task, without `.await`: it parses, updates
/// shared state briefly, and answers through [`Ctx`].
pub trait Handler: Send + 'static {
    /// A complete, UTF-8 validated text message.
    fn on_text(&mut self, text: Bytes, ctx: &mut Ctx<'_>);
    /// A complete binary message.
    fn on_binary(&mut self, data: Bytes, ctx: &mut Ctx<'_>);
    /// A deadline passed: the handler's own (see [`deadline`](Self::deadline)) or the
    /// connection's heartbeat. It may come early; the handler acts on what is due at
    /// [`Ctx::now`].
    fn on_tick(&mut self, ctx: &mut Ctx<'_>);
    /// When [`on_tick`](Self::on_tick) must run next (an authentication deadline, a token's
    /// expiry), or `None` when nothing of the handler's own is due. Asked after every call
    /// into the handler and after each wake-up of the task. Default: `None`.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// The connection ended; called exactly once, last.
    fn on_close(&mut self, end: &End);
    /// Items just taken from the queue, `pending[from..]`, before any is written: a handler
    /// may rewrite them for this connection (a Socket.IO connection that names a namespace by
    /// an alias). Default: nothing.
    fn on_outgoing(&mut self, pending: &mut VecDeque<Outbound>, from: usize) {
        let _ = (pending, from);
    }
    /// A last message to send before a close the driver decides on its own (slow consumer,
    /// heartbeat timeout), such as a protocol's `disconnect` message. Default: none.
    fn farewell(&mut self, code: u16, reason: &str) -> Option<Outbound> {
        let _ = (code, reason);
        None
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// The close code sent or received, if any.
    pub code: Option<u16>,
    /// The connection was closed because its outbound queue overflowed.
    pub slow_consumer: bool,
}

/// The handler's view of its connection during one call.
#[derive(Debug)]
pub struct Ctx<'a> {
    queue: &'a OutQueue,
    now: Instant,
    close: Option<(u16, String)>,
}

impl<'a> Ctx<'a> {
    /// A context for one call into the handler at `now`.
    pub(super) fn new(queue: &'a OutQueue, now: Instant) -> Ctx<'a> {
        Ctx {
            queue,
            now,
            close: None,
        }
    }

    /// The close the handler asked for during the call, if any.
    pub(super) fn into_close(self) -> Option<(u16, String)> {
        self.close
    }
}

impl Ctx<'_> {
    /// The time of this event.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Queues a frame or message. A full queue marks the connection as a slow consumer and
    /// the item is dropped: the connection is about to be closed anyway.
    pub fn send(&mut self, item: impl Into<Outbound>) {
        let _ = self.queue.push(item);
    }

    /// Closes the connection after what was already queued.
    pub fn close(&mut self, code: u16, reason: impl Into<String>) {
        if self.close.is_none() {
            self.close = Some((code, reason.into()));
        }
    }
}
