//! The messages that backends' Socket.IO emitters publish through Redis, decoded into
//! [`Publication`]s and commands: `@socket.io/redis-emitter` ([`decode_node`]) and
//! python-socketio's Redis managers ([`decode_python`]). Emitters know nothing of tenants: a
//! [`TenantRule`] gives each message one. Pure functions of a channel and its bytes, with no
//! Redis connection.
//!
//! Room names are kept as the emitter wrote them (a number becomes its decimal text). A
//! Socket.IO server also knows each socket by a room named after its id; here such a name is a
//! room name like any other.

mod args;
mod msgpack;
mod node;
mod python;
mod room_name;
mod tenant;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use roomcast_broker::{Payload, Publication, Target};

pub use node::{decode_node, decode_node_emitter, decode_node_request, node_patterns};
pub use python::{decode_python, PYTHON_CHANNEL};
pub use tenant::{RoomPattern, TenantRule};

/// Deepest nesting of an event's arguments: the argument array is one level, so `[[1]]` is two.
pub const MAX_DEPTH: usize = 64;

/// Largest message decoded, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Most values (numbers, strings, arrays, ...) a message may hold, counted before any is
/// decoded: it bounds the memory a message takes while decoded to about ten megabytes,
/// whatever its size.
pub const MAX_VALUES: usize = 1 << 17;

/// What an emitter's message asks of Roomcast.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EmitterCommand {
    /// Publish an event.
    Publish {
        /// The event, for `Target::Tenant` with the rooms named (no users), or
        /// `Target::TenantWide` for a broadcast to a whole namespace; `except` and `volatile`
        /// as the emitter set them; `Payload::Args`.
        publication: Publication,
        /// Socket.IO session ids that must not receive it (python-socketio's `skip_sid`).
        skip_sids: Vec<Arc<str>>,
    },
    /// Make sockets join or leave rooms (`socketsJoin`, `socketsLeave`; python-socketio's
    /// `enter_room`, `leave_room`, and its `close_room`, which makes every member leave).
    Rooms {
        /// Join or leave.
        change: RoomChange,
        /// The tenant of the sockets and rooms.
        tenant: Arc<str>,
        /// The namespace.
        ns: Arc<str>,
        /// Which sockets.
        sockets: Sockets,
        /// The rooms to join or leave.
        rooms: Vec<Arc<str>>,
    },
    /// Disconnect sockets from the namespace (`disconnectSockets`, python-socketio's
    /// `disconnect`).
    Disconnect {
        /// The tenant of the sockets.
        tenant: Arc<str>,
        /// The namespace.
        ns: Arc<str>,
        /// Which sockets.
        sockets: Sockets,
        /// Whether to close the underlying connection too, not only leave the namespace.
        close: bool,
    },
    /// A well-formed message that Roomcast does not act on, and why: requests between
    /// Socket.IO servers (`serverSideEmit`, queries that await answers), acknowledgements
    /// returned between python-socketio servers.
    Ignored(&'static str),
}

/// The sockets a command applies to, within its tenant and namespace.
/// What [`EmitterCommand::Rooms`] does to the sockets' rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomChange {
    /// Join them.
    Join,
    /// Leave them.
    Leave,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sockets {
    /// The members of any of `rooms`, or every socket when `rooms` is empty, less the
    /// members of any of `except`.
    InRooms {
        /// Rooms whose members are selected.
        rooms: Vec<Arc<str>>,
        /// Rooms whose members are left out.
        except: Vec<Arc<str>>,
    },
    /// The socket of this Socket.IO session id.
    Sid(Arc<str>),
}

/// Why a message was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitterError {
    /// A pickled message, which python-socketio published before 5.14. Pickles run code
    /// when loaded, so they are never loaded.
    #[error(
        "pickled message (python-socketio before 5.14): refused unread; \
         upgrade the emitter to python-socketio 5.14 or later, which publishes JSON"
    )]
    Pickled,
    /// Not the shape the emitter publishes.
    #[error("malformed emitter message: {0}")]
    Malformed(String),
    /// The tenant rule gives the message no tenant.
    #[error(
        "no tenant for the emitter message: it names no room matching the tenant pattern, \
         or rooms of two tenants"
    )]
    NoTenant,
    /// A well-formed message of a kind Roomcast does not decode.
    #[error("unsupported emitter message: {0}")]
    Unsupported(String),
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("emitter message of {0} bytes, over the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// More values than [`MAX_VALUES`].
    #[error("emitter message of more than {MAX_VALUES} values")]
    TooManyValues,
    /// Arguments nested deeper than [`MAX_DEPTH`].
    #[error("emitter message nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A room pattern without `{tenant}`, or with it twice.
    #[error("tenant room pattern: {0}")]
    Pattern(String),
}

fn check_size(message: &[u8]) -> Result<(), EmitterError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(EmitterError::TooLarge(message.len()));
    }
    Ok(())
}

/// Drops repeated names, keeping the first of each.
fn distinct(mut names: Vec<Arc<str>>) -> Vec<Arc<str>> {
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.retain(|name| seen.insert(name.clone()));
    names
}

/// What an emit becomes: the tenant from its rooms, all its rooms' members, or every socket of
/// the tenant when it names none.
struct Emit {
    ns: Arc<str>,
    rooms: Vec<Arc<str>>,
    except: Vec<Arc<str>>,
    event: Arc<str>,
    payload: Payload,
    volatile: bool,
    skip_sids: Vec<Arc<str>>,
}

impl Emit {
    fn command(self, rule: &TenantRule) -> Result<EmitterCommand, EmitterError> {
        let rooms = distinct(self.rooms);
        let tenant = rule.tenant(rooms.iter().map(|room| &**room))?;
        let target = if rooms.is_empty() {
            Target::TenantWide { tenant }
        } else {
            Target::Tenant {
                tenant,
                rooms,
                users: Vec::new(),
            }
        };
        let mut publication = Publication::new(&self.ns, target, &self.event, self.payload);
        publication.except = distinct(self.except);
        publication.volatile = self.volatile;
        Ok(EmitterCommand::Publish {
            publication,
            skip_sids: distinct(self.skip_sids),
        })
    }
}
