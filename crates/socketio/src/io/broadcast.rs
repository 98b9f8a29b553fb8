//! [`BroadcastOperator`]: an event from one socket to the other Socket.IO members of a room
//! of its tenant and namespace, encoded once for all of them: the library's own relay. A
//! server with a publish path of its own (Roomcast's node, which reaches native members and
//! other nodes too) publishes relays there instead.

use roomcast_engine::rooms::{Member, WireFormat};
use roomcast_engine::OutQueue;
use serde::Serialize;

use super::args::{Args, EmitError};
use super::encode;
use super::socket::SocketRef;

/// An emit to a room, excluding the sender.
#[derive(Debug)]
pub struct BroadcastOperator<'a> {
    socket: &'a SocketRef,
    room: &'a str,
    volatile: bool,
}

impl<'a> BroadcastOperator<'a> {
    pub(super) fn new(socket: &'a SocketRef, room: &'a str) -> Self {
        Self {
            socket,
            room,
            volatile: false,
        }
    }

    /// Skips members whose queue is more than half full instead of adding to it: for events
    /// that are stale by the time a slow client would read them (typing indicators).
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Emits an event with one argument; returns how many sockets it was queued to.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<usize, EmitError> {
        let args = Args::one(data).map_err(|_| EmitError::Serialize)?;
        Ok(self.emit_args(event, &args))
    }

    /// Emits an event with these arguments; returns how many sockets it was queued to.
    pub fn emit_args(&self, event: &str, args: &Args) -> usize {
        let Some(key) = self.socket.room_key(self.room) else {
            return 0;
        };
        let shared = &self.socket.0.shared;
        let mut members: Vec<Member> = Vec::new();
        shared.index.collect_members(&key, &mut members);
        members.retain(|m| m.format == WireFormat::SocketIo && m.id != self.socket.conn_id());
        if self.volatile {
            let limits = shared.queue_limits;
            members.retain(|m| !half_full(&m.queue, limits));
        }
        let items = encode::event(self.socket.ns(), None, event, args);
        let mut sent = 0;
        if let [item] = items.as_slice() {
            // The common case: one text item, the same bytes for every member whatever
            // its transport.
            for member in &members {
                if member.queue.push(item.clone()).is_ok() {
                    sent += 1;
                }
            }
        } else {
            // Attachments go as a group encoded for each member's transport.
            for member in &members {
                let Some(target) = shared.socket(member.id) else {
                    continue;
                };
                if target.engine().push_group(&items).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    }
}

fn half_full(queue: &OutQueue, limits: roomcast_engine::QueueLimits) -> bool {
    let (messages, bytes) = queue.len();
    messages * 2 > limits.max_messages || bytes * 2 > limits.max_bytes
}
