//! Socket.IO connection state recovery (`[socketio.recovery]`), as socket.io-client 4.x
//! expects it: the `CONNECT` answer carries a private session id (`pid`) beside the socket
//! id; every broadcast event that is not volatile carries its offset in the tenant
//! namespace's recovery log as its last argument, which the client keeps; a client that
//! reconnects with `auth.pid` and `auth.offset` gets its socket id, its rooms and what it
//! missed, before the `CONNECT` answer, and `socket.recovered` is true.
//!
//! Sessions are kept by the broker (in Redis for a cluster, so a node's death loses none),
//! written when a socket connects, joins or leaves a room, and disconnects, by one task per
//! node ([`SessionWriter`]). A session also keeps the log position of its connect, so that a
//! client that received nothing yet (and so has no offset) recovers too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use roomcast_broker::{
    BoxFuture, Broker, ConnId, LogLimits, Missed, Publication, Recovering, Target,
};
use roomcast_socketio::{Prepared, SocketRef};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::app::App;

/// The most connection ids a session remembers (to leave out what it published itself).
const MAX_CONNS: usize = 8;

/// How often changed sessions are written.
const WRITE_EVERY: Duration = Duration::from_millis(200);

/// Disconnect reasons after which a session waits for its client (socket.io's own list); a
/// client or server that ended the session on purpose ends it for good.
const RECOVERABLE: [&str; 6] = [
    "transport error",
    "transport close",
    "forced close",
    "ping timeout",
    "server shutting down",
    "forced server close",
];

/// The recovery log's bounds from `[socketio.recovery]`, `None` when recovery is off.
pub(crate) fn log_limits(config: &crate::config::Config) -> Option<LogLimits> {
    let recovery = &config.socketio.recovery;
    (config.socketio.enabled && recovery.enabled).then(|| LogLimits {
        max_events: recovery.max_events,
        max_age: recovery.max_disconnection(),
        max_total: recovery.max_total_events,
    })
}

/// A recoverable session as the broker keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    /// The socket id.
    pub sid: String,
    pub tenant: String,
    pub user: String,
    /// The namespace's registered name.
    pub ns: String,
    /// The rooms of its tenant it is in.
    pub rooms: Vec<String>,
    /// Its connection ids, latest last: publications they made are not replayed to it.
    pub conns: Vec<u64>,
    /// The log position when it first connected: where a client with no offset resumes.
    pub offset: String,
}

/// A connected socket's session: kept in the socket's state.
#[derive(Debug)]
pub(crate) struct LiveSession {
    pub pid: String,
    pub record: SessionRecord,
}

/// What [`prepare`] found for a `CONNECT` naming a session: the socket's state until its
/// `on_connect` takes it.
pub(crate) struct Restoring {
    pid: String,
    record: SessionRecord,
    recovering: Box<dyn Recovering>,
}

/// The socket's state while it connects: a session to restore, or none.
pub(crate) type Pending = Option<Restoring>;

/// `auth.pid` and `auth.offset` of a `CONNECT`, when it names a session.
fn named_session(auth: Option<&RawValue>) -> Option<(String, Option<String>)> {
    let value: Value = serde_json::from_str(auth?.get()).ok()?;
    let pid = value.get("pid")?.as_str()?;
    if pid.is_empty() || pid.len() > 128 {
        return None;
    }
    let offset = value
        .get("offset")
        .and_then(Value::as_str)
        .filter(|o| o.len() <= 64)
        .map(str::to_owned);
    Some((pid.to_owned(), offset))
}

/// For a `CONNECT` naming a session: the work of finding it (the session, then what its
/// client missed), which the connect waits for. `None` when recovery is off or the
/// `CONNECT` names no session.
pub(crate) fn prepare(
    app: &Arc<App>,
    ns: &str,
    auth: Option<&RawValue>,
    token: Option<String>,
) -> Option<BoxFuture<'static, Prepared>> {
    let recovery = &app.config.socketio.recovery;
    if !recovery.enabled {
        return None;
    }
    let (pid, offset) = named_session(auth)?;
    let app = app.clone();
    let ns = ns.to_owned();
    // The whole log's bound: what the socket missed is chosen among it, then bounded again.
    let limit = recovery.max_events;
    let ttl = recovery.max_disconnection();
    Some(Box::pin(async move {
        let broker = app.node.broker();
        let record = match broker.take_session(&pid).await {
            Ok(Some(text)) => serde_json::from_str::<SessionRecord>(&text).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "recovery: session lookup failed");
                None
            }
        };
        let Some(record) = record.filter(|r| r.ns == ns) else {
            app.metrics.recovery(false);
            return Prepared::default();
        };
        // Only the session's own user recovers it; another's attempt leaves it in place.
        let identity = token.as_deref().and_then(|t| app.verifier.verify(t).ok());
        if identity.is_none_or(|i| i.tenant != record.tenant || i.user != record.user) {
            if let Ok(text) = serde_json::to_string(&record) {
                let owner = record.conns.last().copied().unwrap_or(0);
                let _ = broker.put_session(&pid, text, owner, ttl).await;
            }
            app.metrics.recovery(false);
            return Prepared::default();
        }
        let after = offset.unwrap_or_else(|| record.offset.clone());
        match broker
            .recover(&record.tenant, &record.ns, &after, limit)
            .await
        {
            Ok(recovering) if recovering.complete() => Prepared {
                sid: Some(record.sid.clone()),
                state: Some(Box::new(Some(Restoring {
                    pid,
                    record,
                    recovering,
                }) as Pending)),
            },
            Ok(_) => {
                app.metrics.recovery(false);
                Prepared::default()
            }
            Err(e) => {
                tracing::warn!(error = %e, "recovery: log read failed");
                app.metrics.recovery(false);
                Prepared::default()
            }
        }
    }))
}

/// What one recovery may replay: half the socket's queue (in messages and in bytes), so that
/// live events still fit behind them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayBudget {
    messages: usize,
    bytes: usize,
}

impl ReplayBudget {
    pub(crate) fn of(app: &App) -> ReplayBudget {
        ReplayBudget {
            messages: (app.queue_limits.max_messages / 2).max(1),
            bytes: app.queue_limits.max_bytes / 2,
        }
    }
}

/// Whether a logged publication reached (or would have reached) a socket of `record`.
fn reaches(p: &Publication, record: &SessionRecord, rooms: &[&str]) -> bool {
    if p.exclude
        .is_some_and(|ConnId(id)| record.conns.contains(&id))
    {
        return false;
    }
    if p.except.iter().any(|room| rooms.contains(&&**room)) {
        return false;
    }
    match &p.target {
        Target::Tenant {
            rooms: to, users, ..
        } => {
            to.iter().any(|room| rooms.contains(&&**room))
                || users.iter().any(|user| **user == *record.user)
        }
        Target::TenantWide { .. } => true,
        Target::Platform => false,
    }
}

/// Restores a session for a socket whose `on_connect` found one prepared, with the identity
/// its token gives (`tenant`, `user`): registers the socket and joins its rooms that
/// `may_join` allows (and the token's `auto_rooms`) between two deliveries of the broker,
/// then queues what it missed ahead of the `CONNECT` answer. `None` when the session cannot
/// be restored (another identity, the log no longer continues its offset, or more was
/// missed than `budget`): the socket is a new session then (registered, in no room yet).
pub(crate) fn restore(
    socket: &SocketRef,
    restoring: Restoring,
    tenant: &str,
    user: &str,
    auto_rooms: &[String],
    may_join: &mut dyn FnMut(&str) -> bool,
    budget: ReplayBudget,
) -> Option<LiveSession> {
    let Restoring {
        pid,
        mut record,
        recovering,
    } = restoring;
    if record.tenant != tenant || record.user != user {
        return None;
    }
    let mut rooms: Vec<String> = record
        .rooms
        .iter()
        .filter(|room| may_join(room))
        .cloned()
        .collect();
    for room in auto_rooms {
        if !rooms.contains(room) {
            rooms.push(room.clone());
        }
    }
    let mut replay = None;
    recovering.finish(&mut |missed: Missed| {
        // Registered here, under the broker's order: a tenant-wide or user delivery reaches
        // the socket either in the log or live, not both.
        socket.set_identity(tenant, user);
        if !missed.complete {
            return;
        }
        let names: Vec<&str> = rooms.iter().map(String::as_str).collect();
        let reached: Vec<(Arc<str>, Arc<Publication>)> = missed
            .events
            .into_iter()
            .filter(|(_, p)| reaches(p, &record, &names))
            .collect();
        let bytes: usize = reached
            .iter()
            .map(|(offset, p)| p.payload.size() + p.event.len() + offset.len() + 32)
            .sum();
        if reached.len() > budget.messages || bytes > budget.bytes {
            return;
        }
        let joined: Vec<String> = rooms
            .iter()
            .filter(|room| socket.join(room).is_ok())
            .cloned()
            .collect();
        replay = Some((reached, joined));
    });
    let (reached, joined) = replay?;
    // Queued outside the broker's order, ahead of what its holds keep back (the live
    // events since the joins), so that they still come first.
    for (offset, p) in &reached {
        let items =
            roomcast_socketio::encode_payload(socket.ns(), &p.event, &p.payload, Some(offset));
        if socket.send_ahead(&items).is_err() {
            return None;
        }
    }
    record.rooms = joined;
    record.conns.push(socket.conn_id().0);
    if record.conns.len() > MAX_CONNS {
        record.conns.remove(0);
    }
    Some(LiveSession { pid, record })
}

/// The recovery log's position of `tenant`'s namespace `ns` now, when the broker can tell
/// at once (empty otherwise: [`fill_position`] finds it later). Taken before a new socket
/// joins its rooms, so that nothing delivered to it is at or before it.
pub(crate) fn position_now(app: &App, tenant: &str, ns: &str) -> String {
    let mut position = app.node.broker().log_position(tenant, ns);
    match position
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(Ok(offset)) => offset.to_string(),
        _ => String::new(),
    }
}

/// A new session for a socket of `tenant` and `user`, starting at log `position`.
pub(crate) fn start(socket: &SocketRef, tenant: &str, user: &str, position: String) -> LiveSession {
    LiveSession {
        pid: roomcast_socketio::Sid::random().to_string(),
        record: SessionRecord {
            sid: socket.id().to_owned(),
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            ns: socket.room_ns().to_owned(),
            rooms: socket.rooms(),
            conns: vec![socket.conn_id().0],
            offset: position,
        },
    }
}

/// Finds the log position of a session [`position_now`] could not tell, and keeps it with
/// the session: `update` puts it in the socket's session and writes it.
pub(crate) fn fill_position(
    app: &Arc<App>,
    tenant: &str,
    ns: &str,
    update: impl FnOnce(String) + Send + 'static,
) {
    let app = app.clone();
    let (tenant, ns) = (tenant.to_owned(), ns.to_owned());
    tokio::spawn(async move {
        match app.node.broker().log_position(&tenant, &ns).await {
            Ok(position) => update(position.to_string()),
            Err(e) => tracing::warn!(error = %e, "recovery: log position unknown"),
        }
    });
}

/// Writes changed sessions to the broker from one task, in the order of the changes.
#[derive(Debug)]
pub(crate) struct SessionWriter {
    /// Each changed session's latest record, or its end.
    changed: Mutex<HashMap<String, Change>>,
    /// A broker that stores at once (a single node's): written to on the spot instead.
    inline: Option<Arc<dyn Broker>>,
    /// How long a session waits for its client (`max_disconnection_ms`).
    ttl: Duration,
    /// The connection each session of this node's sockets is on: a socket whose session
    /// was recovered by a newer connection (before its own close was seen) writes nothing
    /// when it closes.
    owners: Mutex<HashMap<String, u64>>,
}

#[derive(Debug)]
enum Change {
    /// Connected, or waiting for its client: kept for `max_disconnection_ms` from now, as
    /// written by connection `.1`.
    Keep(String, u64),
    /// Ended for good by connection `.0`.
    End(u64),
}

impl SessionWriter {
    /// A writer; with `inline` (a single node's broker, which stores at once) every change
    /// is written on the spot.
    pub(crate) fn new(inline: Option<Arc<dyn Broker>>, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            changed: Mutex::new(HashMap::new()),
            inline,
            ttl,
            owners: Mutex::new(HashMap::new()),
        })
    }

    fn change(&self, pid: &str, change: Change) {
        if let Some(broker) = &self.inline {
            let mut write = match change {
                Change::Keep(text, owner) => broker.put_session(pid, text, owner, self.ttl),
                Change::End(owner) => broker.end_session(pid, owner),
            };
            let done = write
                .as_mut()
                .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
            if let std::task::Poll::Ready(Err(e)) = done {
                tracing::warn!(error = %e, "recovery: session not kept");
            }
            return;
        }
        self.changed().insert(pid.to_owned(), change);
    }

    fn changed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Change>> {
        lock(&self.changed)
    }

    /// The session of `live` changed (connected, joined, left).
    pub(crate) fn keep(&self, live: &LiveSession) {
        if let Some(conn) = live.record.conns.last() {
            lock(&self.owners).insert(live.pid.clone(), *conn);
        }
        self.write(live);
    }

    fn write(&self, live: &LiveSession) {
        if let Ok(text) = serde_json::to_string(&live.record) {
            let owner = live.record.conns.last().copied().unwrap_or(0);
            self.change(&live.pid, Change::Keep(text, owner));
        }
    }

    /// The socket of `live` disconnected for `reason`.
    pub(crate) fn disconnected(&self, live: &LiveSession, reason: &str) {
        {
            let mut owners = lock(&self.owners);
            if owners.get(&live.pid) != live.record.conns.last() {
                // Recovered meanwhile by a newer connection of this node: its session now.
                return;
            }
            owners.remove(&live.pid);
        }
        if RECOVERABLE.contains(&reason) {
            self.write(live);
        } else {
            let owner = live.record.conns.last().copied().unwrap_or(0);
            self.change(&live.pid, Change::End(owner));
        }
    }

    /// Writes what changed, every [`WRITE_EVERY`] at most, and extends the sessions of
    /// connected sockets four times per `max_disconnection_ms`, until the app is gone.
    pub(crate) async fn run(self: Arc<Self>, app: Weak<App>) {
        let mut last_touch = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(WRITE_EVERY).await;
            let Some(app) = app.upgrade() else { return };
            let ttl = self.ttl;
            let changed: Vec<(String, Change)> = self.changed().drain().collect();
            let broker = app.node.broker().clone();
            for (pid, change) in changed {
                let done = match change {
                    Change::Keep(text, owner) => broker.put_session(&pid, text, owner, ttl).await,
                    Change::End(owner) => broker.end_session(&pid, owner).await,
                };
                if let Err(e) = done {
                    tracing::warn!(error = %e, "recovery: session not written");
                }
            }
            if last_touch.elapsed() >= ttl / 4 {
                last_touch = tokio::time::Instant::now();
                let pids: Vec<String> = lock(&self.owners).keys().cloned().collect();
                if !pids.is_empty() {
                    if let Err(e) = broker.touch_sessions(pids, ttl).await {
                        tracing::warn!(error = %e, "recovery: sessions not extended");
                    }
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single inserts, removes and drains: a poisoned map is consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
