//! What is published and where it goes: [`Publication`], its [`Target`] and [`Payload`], the
//! [`RoomKey`] every room is known by, and the stream [`Position`] a broker assigns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A process-wide unique connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// The next connection id of this process.
static NEXT: AtomicU64 = AtomicU64::new(1);

impl ConnId {
    /// The next id of this process.
    pub fn next() -> Self {
        ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// Makes the ids of this process start at `first` (at least 1), when none was given yet:
    /// nodes of a cluster start at random so their ids do not repeat across nodes.
    pub fn start_at(first: u64) {
        let _ = NEXT.compare_exchange(1, first.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// The key of a room: every lookup starts at its tenant, so a room name never crosses tenants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoomKey {
    /// The tenant the room lives in.
    pub tenant: Arc<str>,
    /// The namespace (`/` by default).
    pub ns: Arc<str>,
    /// The room name.
    pub room: Arc<str>,
}

impl RoomKey {
    /// Builds a key from borrowed parts.
    pub fn new(tenant: &str, ns: &str, room: &str) -> Self {
        Self {
            tenant: tenant.into(),
            ns: ns.into(),
            room: room.into(),
        }
    }
}

/// A room's stream position given to one publication: the offset it got and the epoch that
/// offsets compare within.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Per-room counter, starting at 1.
    pub offset: u64,
    /// Changes whenever the room's counter restarts.
    pub epoch: Arc<str>,
}

/// Who a publication goes to. Exhaustive on purpose: every place that delivers must decide
/// for a new kind of target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Rooms and users of one tenant. Each room is a stream of its own; user deliveries are
    /// outside any room stream.
    Tenant {
        /// The tenant.
        tenant: Arc<str>,
        /// Room names, distinct.
        rooms: Vec<Arc<str>>,
        /// User ids, distinct.
        users: Vec<Arc<str>>,
    },
    /// Every connection of one tenant that reaches the namespace.
    TenantWide {
        /// The tenant.
        tenant: Arc<str>,
    },
    /// Every connection of every tenant (platform keys only).
    Platform,
}

impl Target {
    /// The tenant, or `None` for platform-wide publications.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Target::Tenant { tenant, .. } | Target::TenantWide { tenant } => Some(tenant),
            Target::Platform => None,
        }
    }

    /// The tenant as it is kept, for a caller that needs it after giving the target away.
    pub fn tenant_name(&self) -> Option<&Arc<str>> {
        match self {
            Target::Tenant { tenant, .. } | Target::TenantWide { tenant } => Some(tenant),
            Target::Platform => None,
        }
    }

    /// The targeted rooms (none for tenant-wide and platform-wide publications).
    pub fn rooms(&self) -> &[Arc<str>] {
        match self {
            Target::Tenant { rooms, .. } => rooms,
            Target::TenantWide { .. } | Target::Platform => &[],
        }
    }
}

/// The arguments of an event. Exhaustive on purpose: every encoder must decide for a new form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Payload {
    /// One JSON argument: the HTTP API's `data`, a native client's publish.
    Json(Box<RawValue>),
    /// Arguments as Socket.IO carries them: a JSON array whose
    /// `{"_placeholder":true,"num":n}` objects stand for `attachments[n]`.
    Args {
        /// The JSON array.
        array: Box<RawValue>,
        /// The binary attachments, numbered from 0.
        attachments: Vec<Bytes>,
    },
}

impl Payload {
    /// The JSON text carried, for size checks: the one argument, or the array.
    pub fn json(&self) -> &RawValue {
        match self {
            Payload::Json(raw) => raw,
            Payload::Args { array, .. } => array,
        }
    }

    /// Bytes carried in all: the JSON and the attachments.
    pub fn size(&self) -> usize {
        match self {
            Payload::Json(raw) => raw.get().len(),
            Payload::Args { array, attachments } => {
                array.get().len() + attachments.iter().map(Bytes::len).sum::<usize>()
            }
        }
    }
}

/// One event to publish: owned, so it can cross tasks and, serialized, nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    /// Namespace (`/` by default).
    pub ns: Arc<str>,
    /// Who it goes to.
    pub target: Target,
    /// Event name.
    pub event: Arc<str>,
    /// Its arguments.
    pub payload: Payload,
    /// A connection that must not receive it (the sender of a client publish or relay).
    pub exclude: Option<ConnId>,
    /// Rooms of the target's tenant whose members must not receive it (a Socket.IO
    /// emitter's `except`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<Arc<str>>,
    /// Stale once late (typing indicators): members whose queue is more than half full are
    /// skipped, and it takes no room offset.
    pub volatile: bool,
    /// Retries within the broker's window carrying the same key are published once.
    pub idempotency_key: Option<String>,
    /// The position of each room of [`Target::rooms`], in the same order, as the broker
    /// assigned them: `None` for a room that got none (volatile, or no stream). Empty until
    /// published.
    pub positions: Vec<Option<Position>>,
    /// Kept in its tenant namespace's recovery log, for Socket.IO clients to recover after
    /// a disconnection (set by the node, for namespaces with recovery on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logged: bool,
    /// Its offset in that log, as the broker gave it; Socket.IO members receive it as the
    /// event's last argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_offset: Option<Arc<str>>,
    /// Refused ([`BrokerError::Unavailable`](crate::BrokerError::Unavailable)) rather than
    /// delivered to this node's members alone when the other nodes are out of reach: its
    /// producer keeps it and tries again (a message taken from a queue, acknowledged only
    /// once the whole cluster has it).
    #[serde(skip)]
    pub whole_cluster: bool,
}

impl Publication {
    /// A publication of one JSON argument to `target`, with no exclusion and no key.
    pub fn new(ns: &str, target: Target, event: &str, payload: Payload) -> Self {
        Self {
            ns: ns.into(),
            target,
            event: event.into(),
            payload,
            exclude: None,
            except: Vec::new(),
            volatile: false,
            idempotency_key: None,
            positions: Vec::new(),
            logged: false,
            log_offset: None,
            whole_cluster: false,
        }
    }

    /// The key of the `i`th targeted room.
    pub fn room_key(&self, i: usize) -> Option<RoomKey> {
        let Target::Tenant { tenant, rooms, .. } = &self.target else {
            return None;
        };
        rooms.get(i).map(|room| RoomKey {
            tenant: tenant.clone(),
            ns: self.ns.clone(),
            room: room.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_and_back() {
        let mut p = Publication::new(
            "/",
            Target::Tenant {
                tenant: "acme".into(),
                rooms: vec!["order:1".into()],
                users: vec!["7".into()],
            },
            "order:shipped",
            Payload::Args {
                array: RawValue::from_string(r#"[{"a":1},{"_placeholder":true,"num":0}]"#.into())
                    .unwrap(),
                attachments: vec![Bytes::from_static(b"\x00\x01")],
            },
        );
        p.positions = vec![Some(Position {
            offset: 3,
            epoch: "e".into(),
        })];
        let text = serde_json::to_string(&p).unwrap();
        let back: Publication = serde_json::from_str(&text).unwrap();
        assert_eq!(back.target, p.target);
        assert_eq!(back.positions, p.positions);
        assert_eq!(back.payload.size(), p.payload.size());
        assert_eq!(back.room_key(0), Some(RoomKey::new("acme", "/", "order:1")));
        assert_eq!(back.room_key(1), None);
    }
}
