//! The publish path shared by the HTTP API and client publishes: resolve targets in the room
//! index, encode each distinct frame once, push the same bytes to every recipient.

use std::collections::HashSet;

use roomcast_engine::rooms::{ConnId, Member, Position, RoomKey};
use roomcast_engine::ws::{frame, OpCode};
use roomcast_engine::{Outbound, PushError};
use serde_json::value::RawValue;

use crate::app::App;
use crate::native::proto;

/// The wire-format tag of native protocol connections in the room index.
pub const NATIVE: u8 = 0;

/// Who an event goes to, inside one tenant unless `Platform`.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One tenant's rooms and users.
    Tenant {
        /// The tenant.
        tenant: &'a str,
        /// Room names.
        rooms: &'a [String],
        /// User ids.
        users: &'a [String],
        /// Every connection of the tenant.
        broadcast: bool,
    },
    /// Every connection of every tenant (platform keys only).
    Platform,
}

/// An event to publish.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Namespace (`/` by default).
    pub ns: &'a str,
    /// Event name.
    pub event: &'a str,
    /// Event data (JSON).
    pub data: &'a RawValue,
    /// A connection that must not receive it (the sender of a client publish).
    pub exclude: Option<ConnId>,
}

/// Publishes an event; returns the number of event frames queued.
///
/// Each targeted room is a stream of its own: a native connection in two targeted rooms gets
/// the event once per room, each with that room's offset, so no room stream has gaps. User,
/// tenant and platform targets reach a connection at most once per call, and not at all when
/// a room target already did.
pub fn publish(app: &App, scope: Scope<'_>, ev: Outgoing<'_>) -> usize {
    let mut fan = Fanout {
        seen: HashSet::new(),
        members: Vec::new(),
        delivered: 0,
        exclude: ev.exclude,
    };
    let tenant_label = match scope {
        Scope::Tenant {
            tenant,
            rooms,
            users,
            broadcast,
        } => {
            if broadcast {
                app.index.collect_tenant_in(tenant, ev.ns, &mut fan.members);
                fan.send(ev, None, None);
            } else {
                for (i, room) in rooms.iter().enumerate() {
                    if rooms[..i].contains(room) {
                        continue;
                    }
                    let key = RoomKey::new(tenant, ev.ns, room);
                    let _order = app.index.order_guard(&key);
                    if let Some(pos) = app.index.collect_room(&key, &mut fan.members) {
                        fan.send(ev, Some(room), Some(pos));
                    }
                }
                for user in users {
                    app.index
                        .collect_user_in(tenant, user, ev.ns, &mut fan.members);
                    // User deliveries name the user's room, outside any room stream
                    // (protocol/README.md section 5.2).
                    fan.send(ev, Some(&format!("user:{user}")), None);
                }
            }
            tenant
        }
        Scope::Platform => {
            app.index.collect_all(&mut fan.members);
            fan.send(ev, None, None);
            // Tenant names are 1 to 256 bytes of any text, so the label for platform-wide
            // broadcasts is one no tenant can share with them: the empty string.
            ""
        }
    };
    app.metrics.published(tenant_label, fan.delivered as u64);
    fan.delivered
}

struct Fanout {
    seen: HashSet<ConnId>,
    members: Vec<Member>,
    delivered: usize,
    exclude: Option<ConnId>,
}

impl Fanout {
    /// Encodes the frame once and pushes it to the collected members not yet served.
    fn send(&mut self, ev: Outgoing<'_>, room: Option<&str>, pos: Option<Position>) {
        if self.members.is_empty() {
            return;
        }
        let mut native: Option<Outbound> = None;
        let mut socketio: Option<Outbound> = None;
        for m in self.members.drain(..) {
            let first = self.seen.insert(m.id);
            // Room streams are complete for native connections; everything else is once per call.
            let room_stream = pos.is_some() && m.kind == NATIVE;
            if Some(m.id) == self.exclude || !(first || room_stream) {
                continue;
            }
            let frame = match m.kind {
                NATIVE => native
                    .get_or_insert_with(|| {
                        let (offset, epoch) = match &pos {
                            Some(p) => (p.offset, &*p.epoch),
                            None => (0, ""),
                        };
                        let json =
                            proto::encode_event(room, ev.ns, ev.event, ev.data, offset, epoch);
                        Outbound::Frame(frame::encoded(OpCode::Text, &json))
                    })
                    .clone(),
                roomcast_socketio::MEMBER_KIND => socketio
                    .get_or_insert_with(|| {
                        roomcast_socketio::encode_event(ev.ns, ev.event, ev.data)
                    })
                    .clone(),
                _ => continue,
            };
            match m.queue.push(frame) {
                Ok(()) => self.delivered += 1,
                Err(PushError::Full(_)) => {
                    // The queue marked itself overflowed; its driver closes it and counts it.
                }
                Err(_) => {}
            }
        }
    }
}
