//! The Socket.IO server: [`SocketIo`] runs the Socket.IO protocol on an Engine.IO endpoint
//! ([`EngineIo`]) and hands each namespace's sockets to its [`NamespaceHandler`]. Sockets are
//! members of the shared [`RoomIndex`], so one publish reaches native and Socket.IO clients
//! alike; [`encode_event`] is how a publish encodes its event once for all Socket.IO members.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use roomcast_engine::driver::IoStats;
use roomcast_engine::rooms::{ConnId, RoomIndex, WireFormat};
use roomcast_engine::QueueLimits;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::engine::{EngineIo, Resp};
use crate::socketio::ReassemblyLimits;

mod alias;
mod args;
mod broadcast;
mod client;
mod control;
mod encode;
mod handler;
mod socket;
#[cfg(test)]
mod tests;

pub use args::{AckError, Args, EmitError, NotAnArray};
pub use broadcast::BroadcastOperator;
pub use encode::{encode_event, encode_payload};
pub use handler::{ConnectError, NamespaceHandler, Prepared};
pub use socket::{AckSender, SocketRef};

/// The most attachments a client's binary packet may announce.
const MAX_ATTACHMENTS: usize = 10;

/// What every socket of one endpoint shares.
pub(crate) struct Shared {
    index: Arc<RoomIndex>,
    connect_timeout: Duration,
    queue_limits: QueueLimits,
    reassembly: ReassemblyLimits,
    // Std locks: namespaces are read per CONNECT and written before serving; sockets are
    // updated per connect and disconnect. Never held across an `.await` or a handler call.
    namespaces: RwLock<HashMap<Arc<str>, Registered>>,
}

/// A name clients may connect to.
#[derive(Clone)]
enum Registered {
    /// A namespace and its handler.
    Namespace(Arc<dyn NamespaceHandler>),
    /// Another name of this namespace.
    Alias(Arc<str>),
}

/// What a `CONNECT` to a registered name gets.
struct Resolved {
    handler: Arc<dyn NamespaceHandler>,
    /// The namespace's registered name, which its rooms are keyed by.
    name: Arc<str>,
    /// Whether the namespace has other names (aliases, or the name an alias stands for).
    aliased: bool,
}

impl Shared {
    fn namespace(&self, requested: &str) -> Option<Resolved> {
        let namespaces = read(&self.namespaces);
        let (name, handler) = match namespaces.get_key_value(requested)? {
            (name, Registered::Namespace(handler)) => (name.clone(), handler.clone()),
            (_, Registered::Alias(name)) => match namespaces.get(name)? {
                Registered::Namespace(handler) => (name.clone(), handler.clone()),
                Registered::Alias(_) => return None,
            },
        };
        let aliased = namespaces
            .values()
            .any(|r| matches!(r, Registered::Alias(of) if *of == name));
        Some(Resolved {
            handler,
            name,
            aliased,
        })
    }

    /// The registered name of the namespace `name` means (itself, or what it is an alias of).
    fn canonical(&self, name: &str) -> Option<Arc<str>> {
        match read(&self.namespaces).get_key_value(name)? {
            (name, Registered::Namespace(_)) => Some(name.clone()),
            (_, Registered::Alias(of)) => Some(of.clone()),
        }
    }

    /// The connected socket with this id, found in the index's live table.
    fn socket(&self, id: ConnId) -> Option<SocketRef> {
        control::socket_of(&self.index.live_connection(id)?)
    }

    /// The connected sockets of this endpoint.
    fn sockets(&self) -> Vec<SocketRef> {
        self.index
            .live_connections(WireFormat::SocketIo)
            .iter()
            .filter_map(control::socket_of)
            .collect()
    }
}

/// A Socket.IO endpoint. Register namespaces, then route requests to
/// [`handle`](Self::handle) (or [`serve`](Self::serve) a listener).
pub struct SocketIo {
    engine: Arc<EngineIo<client::Clients>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIo")
            .field("engine", &self.engine)
            .field("sockets", &self.socket_count())
            .finish_non_exhaustive()
    }
}

impl SocketIo {
    /// The room-index id of the connected socket whose Socket.IO id (the `sid` its client
    /// sees) is `sid`, in namespace `ns` or one of its aliases (a scan of the sockets: for
    /// occasional commands, not for delivery).
    pub fn socket_by_sid(&self, sid: &str, ns: &str) -> Option<ConnId> {
        let sockets = self.shared.sockets();
        sockets
            .iter()
            .find(|s| s.id() == sid && (s.ns() == ns || s.room_ns() == ns))
            .map(SocketRef::conn_id)
    }
}

impl SocketIo {
    /// An endpoint whose sockets join rooms of `index` (shared with the native protocol, so
    /// that one publish reaches both). `tick` is the heartbeat clock of long-polling sessions
    /// (its period bounds the precision of their heartbeat, connect timeout and ack
    /// timeouts; WebSocket sessions keep their own deadlines), `stats` counts WebSocket
    /// traffic.
    pub fn new(
        config: Config,
        index: Arc<RoomIndex>,
        tick: watch::Receiver<Instant>,
        stats: Arc<IoStats>,
    ) -> Arc<Self> {
        if config.recovery {
            tracing::warn!("Socket.IO connection state recovery is not implemented: ignored");
        }
        let shared = Arc::new(Shared {
            index,
            connect_timeout: crate::config::bounded(config.connect_timeout),
            queue_limits: config.queue,
            reassembly: ReassemblyLimits {
                max_attachments: MAX_ATTACHMENTS,
                max_bytes: config.max_payload,
            },
            namespaces: RwLock::new(HashMap::new()),
        });
        let clients = client::Clients {
            shared: shared.clone(),
        };
        let engine = EngineIo::new(config, clients, tick, stats);
        Arc::new(Self { engine, shared })
    }

    /// Registers (or replaces) the handler of namespace `name` (`/`, `/dashboard`...). A
    /// `CONNECT` to a namespace without one is answered `{"message":"Invalid namespace"}`.
    pub fn namespace(&self, name: &str, handler: Arc<dyn NamespaceHandler>) {
        write(&self.shared.namespaces).insert(name.into(), Registered::Namespace(handler));
    }

    /// Registers `alias` as another name of namespace `name` (registered before or after): a
    /// client connecting to `alias` is a socket of `name`, handled by its handler and in its
    /// rooms, and the client still reads and writes its packets under `alias`. A client
    /// connected under one name of a namespace is refused `CONNECT` under another.
    pub fn alias(&self, alias: &str, name: &str) {
        write(&self.shared.namespaces).insert(alias.into(), Registered::Alias(name.into()));
    }

    /// Queues items encoded by [`encode_payload`] to the socket with this room-index id: one
    /// item as it is, several (an event with attachments) as one group encoded for the
    /// transport the socket's connection is on.
    pub fn push_items(&self, id: ConnId, items: &[roomcast_engine::Outbound]) -> bool {
        self.shared
            .socket(id)
            .is_some_and(|s| s.engine().push_group(items).is_ok())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.engine.config()
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Arc<EngineIo<client::Clients>> {
        &self.engine
    }

    /// Whether a request for `path` (without the query) is for this endpoint.
    pub fn matches(&self, path: &str) -> bool {
        self.engine.matches(path)
    }

    /// Answers one request: polling `GET`/`POST`, `OPTIONS` preflight, or a WebSocket
    /// upgrade (with or without a session).
    pub async fn handle(self: &Arc<Self>, req: http::Request<Incoming>) -> Resp {
        self.engine.handle(req).await
    }

    /// Serves HTTP/1.1 on `listener`: this endpoint's paths, and 404 for anything else.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> io::Result<()> {
        self.engine.clone().serve(listener).await
    }

    /// Open connections (Engine.IO sessions), whatever their namespaces.
    pub fn connection_count(&self) -> usize {
        self.engine.session_count()
    }

    /// Connected sockets (one per namespace per connection).
    pub fn socket_count(&self) -> usize {
        self.shared.sockets().len()
    }

    /// The connected sockets.
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.shared.sockets()
    }

    /// The connected socket with this room-index id.
    pub fn socket(&self, id: ConnId) -> Option<SocketRef> {
        self.shared.socket(id)
    }

    /// Graceful shutdown: every socket gets `DISCONNECT` (its handler `on_disconnect` with
    /// `reason`), then every connection is closed after what is queued (close code 1001 over
    /// WebSocket). Stop routing new requests here first.
    pub fn close_all(&self, reason: &str) {
        let sockets = self.shared.sockets();
        for socket in sockets {
            socket.close(reason, true);
        }
        self.engine.close_all();
    }
}

impl SocketIo {
    /// Shutdown of one node among several: every connection's transport is closed (1001 over
    /// WebSocket) without a `DISCONNECT`, so clients see `transport close` and reconnect, to
    /// another node. Long-polling connections with no `GET` pending end at once (see
    /// [`EngineIo::shutdown`]). [`close_all`](Self::close_all) is for ending sessions for good.
    pub fn close_transports(&self) {
        self.engine.shutdown();
    }

    /// Open connections that joined no namespace yet (bounded by
    /// [`Config::max_pending_sessions`]).
    pub fn pending_count(&self) -> usize {
        self.engine.pending_count()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Single inserts and removes: a poisoned lock is still consistent.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
