//! The messages a client sends ([`ClientMessage`]), as [`super::parse`] reads them from text
//! frames and [`super::encode_client`] writes them.

use serde_json::value::RawValue;

use crate::config::InboxOp;

/// A message a client sends. Unknown fields are ignored; a `null` field is the same as an
/// absent one.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum ClientMessage {
    /// `{"type":"auth","token":...}`: the first message when the upgrade carried no token.
    Auth {
        /// The JWT, not yet validated.
        token: String,
        /// The last position the client has of auto-joined rooms, to resume them; rooms in
        /// name order.
        since: Option<Vec<(String, Since)>>,
    },
    /// `{"type":"subscribe","id":...,"room":...}`: join a room the ACL allows.
    Subscribe {
        /// Request id, echoed in the reply.
        id: u64,
        /// Room name, 1 to 256 bytes.
        room: String,
        /// Namespace; `None` means `"/"`.
        ns: Option<String>,
        /// Another tenant to observe (platform admins only); `None` means the own tenant.
        tenant: Option<String>,
        /// The last position the client has of the room: the events after it are sent first.
        since: Option<Since>,
    },
    /// `{"type":"unsubscribe","id":...,"room":...}`: leave a room.
    Unsubscribe {
        /// Request id, echoed in the reply.
        id: u64,
        /// Room name, 1 to 256 bytes.
        room: String,
        /// Namespace; `None` means `"/"`.
        ns: Option<String>,
        /// The tenant given at subscribe time, if any.
        tenant: Option<String>,
    },
    /// `{"type":"publish","id":...,"room":...,"event":...,"data":...}`: emit to a room.
    Publish {
        /// Request id, echoed in the reply.
        id: u64,
        /// Room name, 1 to 256 bytes.
        room: String,
        /// Event name, 1 to 256 bytes.
        event: String,
        /// The JSON text of `data`, verbatim as the client wrote it; `null` when absent.
        data: Box<RawValue>,
        /// Namespace; `None` means `"/"`.
        ns: Option<String>,
    },
    /// `{"type":"refresh","id":...,"token":...}`: replace the session's token before it expires.
    Refresh {
        /// Request id, echoed in the reply.
        id: u64,
        /// The new JWT, not yet validated.
        token: String,
    },
    /// `{"type":"history","id":...,"room":...}`: the events a room keeps.
    History {
        /// Request id, echoed in the reply.
        id: u64,
        /// Room name, 1 to 256 bytes.
        room: String,
        /// Namespace; `None` means `"/"`.
        ns: Option<String>,
        /// Another tenant's room (platform admins only); `None` means the own tenant.
        tenant: Option<String>,
        /// Only the events after this position; `None`: every kept one.
        since: Option<Since>,
        /// At most this many events, 1 to [`MAX_HISTORY_LIMIT`]; `None` means 100.
        limit: Option<u64>,
        /// The newest first (the last `limit` events); `false` means the oldest first.
        reverse: bool,
    },
    /// `{"type":"rpc","id":...,"method":...,"data":...}`: a call to a backend method.
    Rpc {
        /// Request id, echoed in the reply.
        id: u64,
        /// The method, 1 to 256 bytes, a key of `[rpc.methods]`.
        method: String,
        /// The JSON text of `data`, verbatim; `null` when absent.
        data: Box<RawValue>,
        /// Namespace passed to the backend; `None` means `"/"`.
        ns: Option<String>,
    },
    /// `{"type":"inbox","id":...,"op":...}`: an operation on the caller's notification inbox.
    Inbox {
        /// Request id, echoed in the reply.
        id: u64,
        /// What is done.
        op: InboxOp,
        /// `read` and `dismiss`: the notification's id.
        notification: Option<i64>,
        /// `list`: `read`, `dismissed`, `type`, `priority`, `cursor`, `limit` (an object, or
        /// null).
        options: serde_json::Value,
    },
    /// `{"type":"ping"}` or `{"type":"ping","id":...}`: answered by a `pong` with the same id.
    Ping {
        /// Optional request id.
        id: Option<u64>,
    },
}

impl ClientMessage {
    /// The wire `type` of this message.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Auth { .. } => "auth",
            ClientMessage::Subscribe { .. } => "subscribe",
            ClientMessage::Unsubscribe { .. } => "unsubscribe",
            ClientMessage::Publish { .. } => "publish",
            ClientMessage::Refresh { .. } => "refresh",
            ClientMessage::History { .. } => "history",
            ClientMessage::Rpc { .. } => "rpc",
            ClientMessage::Inbox { .. } => "inbox",
            ClientMessage::Ping { .. } => "ping",
        }
    }

    /// The request id the answer must carry (`None` for `auth` and for a `ping` without one).
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientMessage::Auth { .. } => None,
            ClientMessage::Subscribe { id, .. }
            | ClientMessage::Unsubscribe { id, .. }
            | ClientMessage::Publish { id, .. }
            | ClientMessage::Refresh { id, .. }
            | ClientMessage::History { id, .. }
            | ClientMessage::Rpc { id, .. }
            | ClientMessage::Inbox { id, .. } => Some(*id),
            ClientMessage::Ping { id } => *id,
        }
    }
}

/// A position in a room's stream, as a client gives it back (`subscribe.since`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since {
    /// The offset of the last event the client has.
    pub offset: u64,
    /// The epoch that offset belongs to.
    pub epoch: String,
}

impl Since {
    /// The stream position it names.
    pub fn position(&self) -> roomcast_broker::Position {
        roomcast_broker::Position {
            offset: self.offset,
            epoch: self.epoch.as_str().into(),
        }
    }
}

/// `data` compares by its JSON text, as it is forwarded.
impl PartialEq for ClientMessage {
    fn eq(&self, other: &Self) -> bool {
        use ClientMessage as M;
        match (self, other) {
            (
                M::Auth {
                    token: a,
                    since: s1,
                },
                M::Auth {
                    token: b,
                    since: s2,
                },
            ) => a == b && s1 == s2,
            (
                M::Subscribe {
                    id,
                    room,
                    ns,
                    tenant,
                    since,
                },
                M::Subscribe {
                    id: i2,
                    room: r2,
                    ns: n2,
                    tenant: t2,
                    since: s2,
                },
            ) => id == i2 && room == r2 && ns == n2 && tenant == t2 && since == s2,
            (
                M::Unsubscribe {
                    id,
                    room,
                    ns,
                    tenant,
                },
                M::Unsubscribe {
                    id: i2,
                    room: r2,
                    ns: n2,
                    tenant: t2,
                },
            ) => id == i2 && room == r2 && ns == n2 && tenant == t2,
            (
                M::Publish {
                    id,
                    room,
                    event,
                    data,
                    ns,
                },
                M::Publish {
                    id: i2,
                    room: r2,
                    event: e2,
                    data: d2,
                    ns: n2,
                },
            ) => id == i2 && room == r2 && event == e2 && data.get() == d2.get() && ns == n2,
            (M::Refresh { id, token }, M::Refresh { id: i2, token: t2 }) => id == i2 && token == t2,
            (
                M::History {
                    id,
                    room,
                    ns,
                    tenant,
                    since,
                    limit,
                    reverse,
                },
                M::History {
                    id: i2,
                    room: r2,
                    ns: n2,
                    tenant: t2,
                    since: s2,
                    limit: l2,
                    reverse: v2,
                },
            ) => (id, room, ns, tenant, since, limit, reverse) == (i2, r2, n2, t2, s2, l2, v2),
            (
                M::Rpc {
                    id,
                    method,
                    data,
                    ns,
                },
                M::Rpc {
                    id: i2,
                    method: m2,
                    data: d2,
                    ns: n2,
                },
            ) => (id, method, data.get(), ns) == (i2, m2, d2.get(), n2),
            (
                M::Inbox {
                    id,
                    op,
                    notification,
                    options,
                },
                M::Inbox {
                    id: i2,
                    op: o2,
                    notification: n2,
                    options: p2,
                },
            ) => (id, op, notification, options) == (i2, o2, n2, p2),
            (M::Ping { id }, M::Ping { id: i2 }) => id == i2,
            _ => false,
        }
    }
}

impl Eq for ClientMessage {}
