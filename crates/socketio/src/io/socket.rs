//! [`SocketRef`]: one client's presence in one namespace. Its identity puts it in the room
//! index as a member of its own (one per namespace of a client, all sharing the client's
//! queue); it emits, joins and leaves rooms, waits for acks, and disconnects. Usable from any
//! task: nothing here takes the connection's lock.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use roomcast_engine::rooms::{ConnId, JoinError, Member, RoomKey, Tracked, WireFormat};
use roomcast_engine::{Outbound, QueueHold};
use serde::Serialize;

use super::args::{AckError, Args, EmitError};
use super::broadcast::BroadcastOperator;
use super::control::SocketControl;
use super::encode;
use super::handler::NamespaceHandler;
use super::Shared;
use crate::config::bounded;
use crate::engine::EngineConn;

/// `on_connect` is running: emits wait for the `CONNECT` answer.
const CONNECTING: u8 = 0;
const CONNECTED: u8 = 1;
const DISCONNECTED: u8 = 2;

/// A callback waiting for an ack.
type AckCallback = Box<dyn FnOnce(Result<Args, AckError>) + Send>;

/// A socket: one client in one namespace. Cheap to clone.
#[derive(Clone)]
pub struct SocketRef(pub(super) Arc<SocketInner>);

pub(super) struct SocketInner {
    id: String,
    /// The name the client connected with, which its packets carry.
    ns: Arc<str>,
    /// The namespace's registered name, which its rooms are keyed by (`ns` but for an alias).
    room_ns: Arc<str>,
    conn_id: ConnId,
    pub(super) conn: EngineConn,
    pub(super) shared: Arc<Shared>,
    handler: Arc<dyn NamespaceHandler>,
    req: Arc<http::request::Parts>,
    state: AtomicU8,
    next_ack: AtomicU64,
    // A std mutex: held for a state change, a buffered emit or an ack table update; never
    // across an `.await` or a call into the application.
    locked: Mutex<Locked>,
    /// The application's state for this socket ([`SocketRef::with_state`]). A mutex of its
    /// own, so that the application may call the socket's other methods while it holds it.
    app_state: Mutex<Option<Box<dyn Any + Send>>>,
}

#[derive(Default)]
struct Locked {
    /// Emits made while `on_connect` runs, sent after the `CONNECT` answer.
    pre_connect: Vec<Vec<Outbound>>,
    identity: Option<(Arc<str>, Arc<str>)>,
    acks: HashMap<u64, (Instant, AckCallback)>,
    /// When the handler's [`NamespaceHandler::on_expiry`] is due (a token's expiry).
    expiry: Option<Instant>,
    /// The socket's place in the index's live table, from connect to disconnect.
    tracked: Option<Tracked>,
    /// The private id of a recoverable session, sent in the `CONNECT` answer.
    pid: Option<Box<str>>,
}

impl std::fmt::Debug for SocketRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketRef")
            .field("id", &self.0.id)
            .field("ns", &self.0.ns)
            .field("conn_id", &self.0.conn_id)
            .finish_non_exhaustive()
    }
}

impl SocketRef {
    pub(super) fn new(
        ns: &str,
        room_ns: Arc<str>,
        conn: EngineConn,
        shared: Arc<Shared>,
        handler: Arc<dyn NamespaceHandler>,
        req: Arc<http::request::Parts>,
        id: Option<String>,
    ) -> Self {
        Self(Arc::new(SocketInner {
            id: id.unwrap_or_else(|| crate::engineio::Sid::random().to_string()),
            ns: ns.into(),
            room_ns,
            conn_id: ConnId::next(),
            conn,
            shared,
            handler,
            req,
            state: AtomicU8::new(CONNECTING),
            next_ack: AtomicU64::new(0),
            locked: Mutex::new(Locked::default()),
            app_state: Mutex::new(None),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        // Every update is a single insert, remove or push: a poisoned lock is consistent.
        self.0.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The socket id, sent to the client in the `CONNECT` answer.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The namespace, as the client named it (an alias, or the namespace's name).
    pub fn ns(&self) -> &str {
        &self.0.ns
    }

    /// The namespace's registered name, which the socket's rooms are keyed by: [`ns`](Self::ns)
    /// unless the client connected through an alias ([`SocketIo::alias`](super::SocketIo::alias)).
    pub fn room_ns(&self) -> &str {
        &self.0.room_ns
    }

    /// The socket's id in the room index.
    pub fn conn_id(&self) -> ConnId {
        self.0.conn_id
    }

    /// The underlying Engine.IO connection (shared by the client's sockets).
    pub fn engine(&self) -> &EngineConn {
        &self.0.conn
    }

    /// The head of the connection's handshake request: method, URI, version, and the headers
    /// a handler may need (`authorization`, `cookie`, `origin`, `x-forwarded-for`).
    pub fn handshake(&self) -> &http::request::Parts {
        &self.0.req
    }

    /// The tenant and user set by [`set_identity`](Self::set_identity).
    pub fn identity(&self) -> Option<(Arc<str>, Arc<str>)> {
        self.lock().identity.clone()
    }

    /// Whether the socket is in its namespace (connected, or connecting in `on_connect`).
    pub fn is_connected(&self) -> bool {
        self.0.state.load(Ordering::Acquire) != DISCONNECTED
    }

    /// Registers the socket in the room index as a member of `tenant` and `user`, in its
    /// namespace (wire format [`WireFormat::SocketIo`]); rooms can be joined from then on. Only the first
    /// call counts: `false` when an identity was already set or the socket is disconnected.
    pub fn set_identity(&self, tenant: &str, user: &str) -> bool {
        let mut locked = self.lock();
        if locked.identity.is_some() || !self.is_connected() {
            return false;
        }
        let member = Member {
            id: self.0.conn_id,
            format: WireFormat::SocketIo,
            queue: self.0.conn.queue().clone(),
        };
        self.0
            .shared
            .index
            .register_in(tenant, user, &self.0.room_ns, member);
        locked.identity = Some((tenant.into(), user.into()));
        true
    }

    /// Queues items encoded by [`encode_payload`](super::encode_payload) ahead of what a hold
    /// keeps back, in the order of the calls, and, while `on_connect` runs, ahead of the
    /// `CONNECT` answer: what a recovered session missed.
    pub fn send_ahead(&self, items: &[Outbound]) -> Result<(), EmitError> {
        self.0.conn.push_group_ahead(items).map_err(EmitError::from)
    }

    /// Makes the session recoverable under `pid` (a private id, which the `CONNECT` answer
    /// carries and a reconnecting client sends back): while `on_connect` runs.
    pub fn set_pid(&self, pid: &str) {
        self.lock().pid = Some(pid.into());
    }

    /// Holds back what reaches the connection from now on (room deliveries, other
    /// namespaces' packets) until the guard is dropped; a `CONNECT` answer made meanwhile,
    /// and what the handler emitted while connecting, go first once it is. For a handler
    /// whose joins must take effect elsewhere (a cluster's subscriptions) before the client
    /// hears that it connected or joined.
    pub fn hold_output(&self) -> QueueHold {
        self.0.conn.queue().hold()
    }

    /// Joins a room of the socket's tenant and namespace; `Ok(false)` if already in it.
    /// Fails without an identity, or past the rooms-per-connection bound.
    pub fn join(&self, room: &str) -> Result<bool, JoinError> {
        let key = self.room_key(room).ok_or(JoinError::NotRegistered)?;
        self.0.shared.index.join(self.0.conn_id, &key)
    }

    /// Joins a room of another tenant, in the socket's namespace: for an application that has
    /// decided the socket may observe that tenant (a platform admin). `Ok(false)` if already
    /// in it.
    pub fn join_in(&self, tenant: &str, room: &str) -> Result<bool, JoinError> {
        if self.lock().identity.is_none() {
            return Err(JoinError::NotRegistered);
        }
        let key = RoomKey::new(tenant, &self.0.room_ns, room);
        self.0.shared.index.join(self.0.conn_id, &key)
    }

    /// Leaves a room of another tenant; `false` when the socket was not in it.
    pub fn leave_in(&self, tenant: &str, room: &str) -> bool {
        let key = RoomKey::new(tenant, &self.0.room_ns, room);
        self.0.shared.index.leave(self.0.conn_id, &key)
    }

    /// Sets (or with `None` clears) the time at which the namespace handler's
    /// [`NamespaceHandler::on_expiry`] runs for this socket, once: a token's expiry. It is one
    /// of the connection's deadlines (on the polling tick for long-polling sessions).
    pub fn set_expiry(&self, at: Option<Instant>) {
        self.lock().expiry = at;
        // As for new ack deadlines: a busy connection's task learns of it.
        self.0.conn.queue().nudge();
    }

    /// Leaves a room; `false` when the socket was not in it.
    pub fn leave(&self, room: &str) -> bool {
        self.room_key(room)
            .is_some_and(|key| self.0.shared.index.leave(self.0.conn_id, &key))
    }

    /// The rooms the socket is in.
    pub fn rooms(&self) -> Vec<String> {
        self.0
            .shared
            .index
            .rooms_of(self.0.conn_id)
            .into_iter()
            .map(|key| key.room.to_string())
            .collect()
    }

    pub(super) fn room_key(&self, room: &str) -> Option<RoomKey> {
        let (tenant, _) = self.lock().identity.clone()?;
        Some(RoomKey {
            tenant,
            ns: self.0.room_ns.clone(),
            room: room.into(),
        })
    }

    /// Emits an event with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        let args = Args::one(data).map_err(|_| EmitError::Serialize)?;
        self.emit_args(event, &args)
    }

    /// Emits an event with these arguments (a binary event when they have attachments).
    pub fn emit_args(&self, event: &str, args: &Args) -> Result<(), EmitError> {
        self.send(encode::event(&self.0.ns, None, event, args))
    }

    /// Emits a binary event: `args` hold placeholders for `attachments` (build both with
    /// [`socketio::Attachments`](crate::socketio::Attachments)).
    pub fn emit_binary(
        &self,
        event: &str,
        args: Vec<serde_json::Value>,
        attachments: Vec<bytes::Bytes>,
    ) -> Result<(), EmitError> {
        self.emit_args(
            event,
            &Args::from_values(args).with_attachments(attachments),
        )
    }

    /// Emits an event and waits for the client's ack: `callback` gets its arguments, or the
    /// reason none came (it runs once, inside the runtime: keep it short). The timeout is
    /// one of the connection's deadlines (on the polling tick for long-polling sessions).
    pub fn emit_with_ack<F>(&self, event: &str, args: &Args, timeout: Duration, callback: F)
    where
        F: FnOnce(Result<Args, AckError>) + Send + 'static,
    {
        let id = self.0.next_ack.fetch_add(1, Ordering::Relaxed);
        {
            let mut locked = self.lock();
            if !self.is_connected() {
                drop(locked);
                return callback(Err(AckError::Disconnected));
            }
            locked
                .acks
                .insert(id, (Instant::now() + bounded(timeout), Box::new(callback)));
        }
        if let Err(err) = self.send(encode::event(&self.0.ns, Some(id), event, args)) {
            let pending = self.lock().acks.remove(&id);
            if let Some((_, callback)) = pending {
                callback(Err(AckError::Emit(err)));
            }
            return;
        }
        // The connection's task keeps its deadlines; a push to a busy queue does not wake it,
        // so tell it about the new one.
        self.0.conn.queue().nudge();
    }

    /// Emits to the other sockets in a room of this socket's tenant and namespace.
    pub fn to<'a>(&'a self, room: &'a str) -> BroadcastOperator<'a> {
        BroadcastOperator::new(self, room)
    }

    /// Disconnects the socket from its namespace (`DISCONNECT` to the client); the
    /// connection and the client's other namespaces stay.
    pub fn disconnect(&self) {
        self.close("server namespace disconnect", true);
    }

    /// Queues packets for the client: after the `CONNECT` answer while `on_connect` runs.
    pub(super) fn send(&self, items: Vec<Outbound>) -> Result<(), EmitError> {
        match self.0.state.load(Ordering::Acquire) {
            CONNECTED => self.push(&items),
            DISCONNECTED => Err(EmitError::Disconnected),
            _ => {
                let mut locked = self.lock();
                match self.0.state.load(Ordering::Acquire) {
                    CONNECTING => {
                        locked.pre_connect.push(items);
                        Ok(())
                    }
                    CONNECTED => {
                        drop(locked);
                        self.push(&items)
                    }
                    _ => Err(EmitError::Disconnected),
                }
            }
        }
    }

    fn push(&self, items: &[Outbound]) -> Result<(), EmitError> {
        self.0.conn.push_group(items).map_err(EmitError::from)
    }

    /// `on_connect` accepted: the `CONNECT` answer, then what was emitted meanwhile. `false`
    /// when the socket was disconnected meanwhile (its `DISCONNECT` follows the answer).
    pub(super) fn finish_connect(&self) -> bool {
        let mut locked = self.lock();
        // First of what the holds taken while connecting keep back (see `hold_output`).
        let _ = self.0.conn.queue().push_ahead(encode::connect(
            &self.0.ns,
            &self.0.id,
            locked.pid.as_deref(),
        ));
        locked.pid = None;
        for items in locked.pre_connect.drain(..) {
            let _ = self.0.conn.push_group_ahead(&items);
        }
        locked.pre_connect = Vec::new();
        self.0
            .state
            .compare_exchange(CONNECTING, CONNECTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Starts with `state` as the application's state (what a handler prepared).
    pub(super) fn with_initial_state(self, state: Option<Box<dyn Any + Send>>) -> Self {
        *self.state_slot() = state;
        self
    }

    fn state_slot(&self) -> MutexGuard<'_, Option<Box<dyn Any + Send>>> {
        // Replaced or read whole: a poisoned lock is still consistent.
        self.0
            .app_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `state` with the socket until it disconnects (a server's session of this
    /// client: its identity, limits and slot), replacing what was kept.
    pub fn set_state<T: Any + Send>(&self, state: T) {
        let mut slot = self.state_slot();
        // `close` empties the slot after marking the socket disconnected: a state set after
        // that is dropped at once, not kept by a socket nobody uses.
        if self.is_connected() {
            *slot = Some(Box::new(state));
        }
    }

    /// Runs `f` on the state kept with [`set_state`](Self::set_state); `None` when there is
    /// none of type `T` (not set, or the socket disconnected). `f` must not call
    /// `with_state` or `set_state` on the same socket.
    pub fn with_state<T: Any + Send, R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut slot = self.state_slot();
        slot.as_mut()?.downcast_mut::<T>().map(f)
    }

    /// Connected: into the index's live table, where the API and shutdown find it.
    pub(super) fn track(&self) {
        let control = Arc::new(SocketControl(Arc::downgrade(&self.0)));
        let tracked = self
            .0
            .shared
            .index
            .track(self.0.conn_id, WireFormat::SocketIo, control);
        // Checked under the socket's lock, which `close` takes the guard under: a socket
        // closed meanwhile drops the guard here (after the lock), leaving no entry behind.
        let late = {
            let mut locked = self.lock();
            if self.is_connected() {
                locked.tracked = Some(tracked);
                None
            } else {
                Some(tracked)
            }
        };
        drop(late);
    }

    /// `on_connect` refused: the socket never existed for the client.
    pub(super) fn abort(&self) {
        self.0.state.store(DISCONNECTED, Ordering::Release);
        let identity = {
            let mut locked = self.lock();
            locked.pre_connect = Vec::new();
            locked.acks.clear();
            locked.identity.take()
        };
        if identity.is_some() {
            self.0.shared.index.unregister(self.0.conn_id);
        }
    }

    /// Leaves the namespace for `reason`, once: the `DISCONNECT` packet if `notify`, out of
    /// the room index, pending acks failed, then the handler's `on_disconnect`.
    pub(super) fn close(&self, reason: &str, notify: bool) -> bool {
        let previous = self.0.state.swap(DISCONNECTED, Ordering::AcqRel);
        if previous == DISCONNECTED {
            return false;
        }
        let (identity, acks) = {
            let mut locked = self.lock();
            if notify && previous == CONNECTING {
                locked
                    .pre_connect
                    .push(vec![encode::disconnect(&self.0.ns)]);
            }
            (locked.identity.take(), std::mem::take(&mut locked.acks))
        };
        if notify && previous == CONNECTED {
            let _ = self.0.conn.push(encode::disconnect(&self.0.ns));
        }
        if identity.is_some() {
            self.0.shared.index.unregister(self.0.conn_id);
        }
        // Out of the live table (the guard dropped after the socket's lock is released).
        let tracked = self.lock().tracked.take();
        drop(tracked);
        for (_, callback) in acks.into_values() {
            callback(Err(AckError::Disconnected));
        }
        self.0.handler.on_disconnect(self, reason);
        // What the application kept for the socket goes with it.
        let state = self.state_slot().take();
        drop(state);
        true
    }

    /// The client acked event `id`.
    pub(super) fn on_ack(&self, id: u64, args: Args) {
        let pending = self.lock().acks.remove(&id);
        if let Some((_, callback)) = pending {
            callback(Ok(args));
        }
    }

    /// When the earliest ack this socket waits for times out, or its expiry is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let locked = self.lock();
        locked
            .acks
            .values()
            .map(|(deadline, _)| *deadline)
            .chain(locked.expiry)
            .min()
    }

    /// Runs the handler's `on_expiry` if the socket's expiry is due.
    pub(super) fn check_expiry(&self, now: Instant) {
        let due = {
            let mut locked = self.lock();
            match locked.expiry {
                Some(at) if now >= at => locked.expiry.take().is_some(),
                _ => false,
            }
        };
        if due && self.is_connected() {
            self.0.handler.clone().on_expiry(self);
        }
    }

    /// Fails the acks whose time is up.
    pub(super) fn expire_acks(&self, now: Instant) {
        let expired: Vec<AckCallback> = {
            let mut locked = self.lock();
            if locked.acks.is_empty() {
                return;
            }
            let ids: Vec<u64> = locked
                .acks
                .iter()
                .filter(|(_, (deadline, _))| now >= *deadline)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| locked.acks.remove(id))
                .map(|(_, callback)| callback)
                .collect()
        };
        for callback in expired {
            callback(Err(AckError::Timeout));
        }
    }

    pub(super) fn handler(&self) -> &Arc<dyn NamespaceHandler> {
        &self.0.handler
    }
}

/// Answers one event that asked for an ack. Dropped unused, the client's ack times out.
#[derive(Debug)]
pub struct AckSender {
    socket: SocketRef,
    id: u64,
}

impl AckSender {
    pub(super) fn new(socket: SocketRef, id: u64) -> Self {
        Self { socket, id }
    }

    /// Sends the ack with these arguments (a binary ack when they have attachments).
    pub fn send(self, args: &Args) -> Result<(), EmitError> {
        self.socket
            .send(encode::ack(&self.socket.0.ns, self.id, args))
    }
}
