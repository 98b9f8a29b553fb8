//! [`Hub`]: local delivery. For a publication with its positions assigned, it collects the
//! matching members from the room index, encodes the event once per (wire format, room
//! position), and pushes the same bytes to every member's bounded queue.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use roomcast_broker::{ConnId, Deliver, Payload, Position, Publication, Target};
use roomcast_engine::rooms::{Member, RoomIndex, WireFormat};
use roomcast_engine::ws::{frame, OpCode};
use roomcast_engine::{OutQueue, Outbound, QueueLimits};
use roomcast_socketio::SocketIo;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::metrics::Metrics;
use crate::proto;

/// Local delivery of one node.
#[derive(Debug)]
pub struct Hub {
    index: Arc<RoomIndex>,
    queue_limits: QueueLimits,
    /// Deliveries are counted here, where they happen, whichever node published.
    metrics: Arc<Metrics>,
    /// For events with binary attachments, which Socket.IO groups per transport.
    sio: OnceLock<Arc<SocketIo>>,
}

impl Hub {
    /// A hub over `index`; `queue_limits` tells when a queue is too full for volatile events.
    pub fn new(index: Arc<RoomIndex>, queue_limits: QueueLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            index,
            queue_limits,
            metrics,
            sio: OnceLock::new(),
        }
    }

    /// The room index.
    pub fn index(&self) -> &Arc<RoomIndex> {
        &self.index
    }

    /// The Socket.IO endpoint whose sockets are members (once).
    pub fn set_socketio(&self, sio: Arc<SocketIo>) {
        let _ = self.sio.set(sio);
    }
}

impl Deliver for Hub {
    /// Each targeted room is a stream of its own: a native connection in two targeted rooms
    /// gets the event once per room, each with that room's offset, so no room stream has
    /// gaps. Everything else reaches a connection at most once per publication, and user
    /// targets not at all when a room target already did.
    fn deliver(
        &self,
        p: &Publication,
        position: &mut dyn FnMut(usize) -> Option<Position>,
    ) -> usize {
        self.deliver_skipping(p, position, &[])
    }
}

impl Hub {
    /// [`Deliver::deliver`], leaving out the connections of `skip` besides the publication's
    /// own exclusions (an emitter's list of sessions to skip).
    pub fn deliver_skipping(
        &self,
        p: &Publication,
        position: &mut dyn FnMut(usize) -> Option<Position>,
        skip: &[ConnId],
    ) -> usize {
        // With one target, members are distinct already.
        let single = match &p.target {
            Target::Tenant { rooms, users, .. } => rooms.len() + users.len() <= 1,
            Target::TenantWide { .. } | Target::Platform => true,
        };
        let mut fan = Fanout {
            hub: self,
            p,
            seen: (!single).then(HashSet::new),
            excluded: self.excluded(p, skip),
            members: Vec::new(),
            delivered: 0,
        };
        match &p.target {
            Target::Tenant {
                tenant,
                rooms,
                users,
            } => {
                for (i, room) in rooms.iter().enumerate() {
                    let Some(key) = p.room_key(i) else { continue };
                    // The position is taken with the members it reaches, in one moment.
                    let pos = self
                        .index
                        .collect_members_then(&key, &mut fan.members, || position(i))
                        .flatten();
                    fan.send(Some(room), pos.as_ref());
                }
                for user in users {
                    self.index
                        .collect_user_in(tenant, user, &p.ns, &mut fan.members);
                    // User deliveries name the user's room, outside any room stream
                    // (protocol/README.md section 5.2).
                    fan.send(Some(&format!("user:{user}")), None);
                }
            }
            Target::TenantWide { tenant } => {
                self.index
                    .collect_tenant_in(tenant, &p.ns, &mut fan.members);
                fan.send(None, None);
            }
            Target::Platform => {
                self.index.collect_all(&mut fan.members);
                fan.send(None, None);
            }
        }
        self.metrics
            .deliveries
            .fetch_add(fan.delivered as u64, std::sync::atomic::Ordering::Relaxed);
        fan.delivered
    }

    /// The members of the publication's `except` rooms and the connections of `skip`, `None`
    /// when there are none.
    fn excluded(&self, p: &Publication, skip: &[ConnId]) -> Option<HashSet<ConnId>> {
        if p.except.is_empty() && skip.is_empty() {
            return None;
        }
        let mut excluded: HashSet<ConnId> = skip.iter().copied().collect();
        let Some(tenant) = p.target.tenant() else {
            return Some(excluded);
        };
        let mut members = Vec::new();
        for room in &p.except {
            let key = roomcast_broker::RoomKey {
                tenant: tenant.into(),
                ns: p.ns.clone(),
                room: room.clone(),
            };
            self.index.collect_members_then(&key, &mut members, || ());
            excluded.extend(members.drain(..).map(|m| m.id));
        }
        Some(excluded)
    }
}

struct Fanout<'a> {
    hub: &'a Hub,
    p: &'a Publication,
    /// Connections served so far; `None` when the publication has one target.
    seen: Option<HashSet<ConnId>>,
    /// Members of the `except` rooms.
    excluded: Option<HashSet<ConnId>>,
    members: Vec<Member>,
    delivered: usize,
}

impl Fanout<'_> {
    /// Encodes once per wire format and pushes to the collected members not yet served.
    fn send(&mut self, room: Option<&str>, pos: Option<&Position>) {
        if self.members.is_empty() {
            return;
        }
        let p = self.p;
        let mut native: Option<Outbound> = None;
        let mut socketio: Option<Vec<Outbound>> = None;
        let mut members = std::mem::take(&mut self.members);
        for m in members.drain(..) {
            if Some(m.id) == p.exclude || self.excluded.as_ref().is_some_and(|e| e.contains(&m.id))
            {
                continue;
            }
            let first = self.seen.as_mut().is_none_or(|seen| seen.insert(m.id));
            if p.volatile && half_full(&m.queue, self.hub.queue_limits) {
                continue;
            }
            let pushed = match m.format {
                WireFormat::Native => {
                    // Room streams are complete for native connections.
                    if !(first || pos.is_some()) {
                        continue;
                    }
                    let item = native.get_or_insert_with(|| encode_native(p, room, pos));
                    m.queue.push(item.clone()).is_ok()
                }
                WireFormat::SocketIo => {
                    if !first {
                        continue;
                    }
                    let items = socketio.get_or_insert_with(|| {
                        roomcast_socketio::encode_payload(
                            &p.ns,
                            &p.event,
                            &p.payload,
                            p.log_offset.as_deref(),
                        )
                    });
                    match items.as_slice() {
                        [item] => m.queue.push(item.clone()).is_ok(),
                        items => self
                            .hub
                            .sio
                            .get()
                            .is_some_and(|sio| sio.push_items(m.id, items)),
                    }
                }
            };
            // A full queue marked itself overflowed: its driver closes it and counts it.
            if pushed {
                self.delivered += 1;
            }
        }
        self.members = members;
    }
}

fn half_full(queue: &OutQueue, limits: QueueLimits) -> bool {
    let (messages, bytes) = queue.len();
    messages * 2 > limits.max_messages || bytes * 2 > limits.max_bytes
}

/// The native `event` frame: `data` is the one argument; several arguments (a Socket.IO relay
/// or emitter) arrive as their array, binary attachments as base64 strings.
fn encode_native(p: &Publication, room: Option<&str>, pos: Option<&Position>) -> Outbound {
    Outbound::Frame(frame::encoded(OpCode::Text, &native_event(p, room, pos)))
}

/// The native `event` message's JSON text (what [`encode_native`] frames): also what a
/// resuming client is sent again, and what `GET /api/history` lists.
pub(crate) fn native_event(
    p: &Publication,
    room: Option<&str>,
    pos: Option<&Position>,
) -> bytes::Bytes {
    let (offset, epoch) = pos.map_or((0, ""), |pos| (pos.offset, &*pos.epoch));
    let encode = |data: &RawValue| proto::encode_event(room, &p.ns, &p.event, data, offset, epoch);
    match &p.payload {
        Payload::Json(data) => encode(data),
        Payload::Args { array, attachments } => match native_data(array, attachments) {
            Some(data) => encode(&data),
            None => encode(array),
        },
    }
}

/// Socket.IO arguments as native `data`: the argument itself when there is one, else the
/// array; placeholders replaced by their attachment in base64. `None` when the array can be
/// sent as it is.
fn native_data(array: &RawValue, attachments: &[bytes::Bytes]) -> Option<Box<RawValue>> {
    if attachments.is_empty() {
        let items: Vec<&RawValue> = serde_json::from_str(array.get()).ok()?;
        return match items.as_slice() {
            [one] => Some((*one).to_owned()),
            _ => None,
        };
    }
    let mut value: Value = serde_json::from_str(array.get()).ok()?;
    fill_placeholders(&mut value, attachments);
    let value = match value {
        Value::Array(mut items) if items.len() == 1 => items.pop().unwrap_or(Value::Null),
        other => other,
    };
    serde_json::value::to_raw_value(&value).ok()
}

fn fill_placeholders(value: &mut Value, attachments: &[bytes::Bytes]) {
    use base64::Engine as _;
    match value {
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            let data = map
                .get("num")
                .and_then(Value::as_u64)
                .and_then(|n| attachments.get(n as usize));
            if let Some(data) = data {
                *value = Value::String(base64::engine::general_purpose::STANDARD.encode(data));
            }
        }
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| fill_placeholders(v, attachments)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| fill_placeholders(v, attachments)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn one_argument_is_the_native_data() {
        assert_eq!(
            native_data(&raw(r#"[{"a":1}]"#), &[]).unwrap().get(),
            r#"{"a":1}"#
        );
        assert!(native_data(&raw(r#"[1,2]"#), &[]).is_none());
    }

    #[test]
    fn attachments_become_base64() {
        let data = native_data(
            &raw(r#"["x",{"_placeholder":true,"num":0}]"#),
            &[bytes::Bytes::from_static(b"\x01\x02")],
        )
        .unwrap();
        assert_eq!(data.get(), r#"["x","AQI="]"#);
    }
}
