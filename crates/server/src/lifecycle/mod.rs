//! Lifecycle events (`[lifecycle]`): a session's connect and disconnect, a user's first and last
//! session (online, offline) and a room's first and last member (occupied, vacated), posted to
//! a webhook ([`webhook`]) and published to rooms ([`publish`]).
//!
//! The moments are taken where they happen without waiting: a session's start and end from
//! the client core of both protocols ([`Lifecycle::session`]), a room's first member and last
//! from the room index's transitions. They go through one bounded queue to one task, which
//! turns them into events in their order: on one node a user's first session here is its
//! first; in a cluster the task asks the presence sets in Redis ([`roomcast_redis::Presence`])
//! whether it is the first in the cluster, so that each user goes online once, whichever node
//! it connects to. A moment that finds the queue full is dropped and counted.

mod publish;
#[cfg(test)]
mod tests;
pub mod webhook;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::SystemTime;

use roomcast_engine::rooms::{RoomKey, Transitions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::app::App;
use crate::config::{Config, ConfigError, LifecycleKind};
use crate::sio::routing::template::rfc3339_millis;
use publish::Publishes;
use webhook::Webhook;

/// A user of a tenant: `(tenant, user)`.
type UserKey = (Arc<str>, Arc<str>);

/// Moments waiting for the lifecycle task, at most.
const MOMENTS: usize = 65_536;

/// How a session reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// A native WebSocket connection (`/ws`).
    Native,
    /// A Socket.IO socket (one namespace of one client).
    SocketIo,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Native => "websocket",
            Transport::SocketIo => "socketio",
        }
    }
}

/// One lifecycle event, as the webhook posts it and templates read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: LifecycleKind,
    /// When, on this node's clock.
    pub at: SystemTime,
    /// The tenant.
    pub tenant: Arc<str>,
    /// The user (sessions and user presence).
    pub user: Option<Arc<str>>,
    /// The session id (sessions).
    pub session: Option<Arc<str>>,
    /// How the session came (sessions).
    pub transport: Option<Transport>,
    /// The namespace (Socket.IO sessions, rooms).
    pub namespace: Option<Arc<str>>,
    /// The room (room presence).
    pub room: Option<Arc<str>>,
    /// Why the session ended (disconnect).
    pub reason: Option<Arc<str>>,
}

impl Event {
    /// The event as JSON: `{"kind","at","tenant",...}`, absent fields left out.
    pub fn to_json(&self, node: &str) -> Value {
        let mut value = json!({
            "kind": self.kind.as_str(),
            "at": rfc3339_millis(self.at),
            "node": node,
            "tenant": &*self.tenant,
        });
        let fields = [
            ("user", self.user.as_deref()),
            ("session", self.session.as_deref()),
            ("transport", self.transport.map(Transport::as_str)),
            ("namespace", self.namespace.as_deref()),
            ("room", self.room.as_deref()),
            ("reason", self.reason.as_deref()),
        ];
        for (name, field) in fields {
            if let Some(text) = field {
                value[name] = Value::String(text.to_owned());
            }
        }
        value
    }
}

/// What a session is, for its events.
#[derive(Debug)]
pub struct SessionInfo {
    /// Its tenant.
    pub tenant: Arc<str>,
    /// Its user.
    pub user: Arc<str>,
    /// Its id (a native session id, or a Socket.IO socket id).
    pub session: Arc<str>,
    /// How it came.
    pub transport: Transport,
    /// Its Socket.IO namespace.
    pub namespace: Option<Arc<str>>,
}

#[derive(Debug)]
enum Moment {
    Session(Event),
    /// A user's first session here (`UserOnline`) or its last (`UserOffline`).
    User(LifecycleKind, Arc<str>, Arc<str>),
    /// A room's first member here (`RoomOccupied`) or its last (`RoomVacated`).
    Room(LifecycleKind, RoomKey),
}

/// Counts for `GET /metrics`.
#[derive(Debug, Default)]
pub struct LifecycleCounters {
    /// Events made.
    pub events: AtomicU64,
    /// Moments dropped: the lifecycle queue was full.
    pub dropped: AtomicU64,
    /// Presence checks Redis did not answer (the event was not made).
    pub presence_failed: AtomicU64,
    /// Publishes of lifecycle events that failed.
    pub publish_failed: AtomicU64,
}

/// The node's lifecycle events.
#[derive(Debug)]
pub struct Lifecycle {
    wanted: [bool; 6],
    tx: mpsc::Sender<Moment>,
    rx: Mutex<Option<mpsc::Receiver<Moment>>>,
    /// Sessions per user on this node, when user presence is wanted. A std mutex: held for
    /// one map update, never across an await.
    users: Mutex<HashMap<UserKey, usize>>,
    publishes: Publishes,
    webhook: Option<Arc<Webhook>>,
    /// Counts.
    pub counters: Arc<LifecycleCounters>,
}

fn slot(kind: LifecycleKind) -> usize {
    match kind {
        LifecycleKind::Connect => 0,
        LifecycleKind::Disconnect => 1,
        LifecycleKind::UserOnline => 2,
        LifecycleKind::UserOffline => 3,
        LifecycleKind::RoomOccupied => 4,
        LifecycleKind::RoomVacated => 5,
    }
}

impl Lifecycle {
    /// Compiles `config.lifecycle`; the error names the key at fault.
    pub fn compile(config: &Config) -> Result<Lifecycle, ConfigError> {
        let lifecycle = &config.lifecycle;
        let mut wanted = [false; 6];
        for kind in LifecycleKind::ALL {
            wanted[slot(kind)] = lifecycle.wants(kind);
        }
        let webhook = lifecycle
            .webhook
            .as_ref()
            .map(|w| Webhook::compile(w).map(Arc::new))
            .transpose()?;
        let (tx, rx) = mpsc::channel(MOMENTS);
        Ok(Lifecycle {
            wanted,
            tx,
            rx: Mutex::new(Some(rx)),
            users: Mutex::new(HashMap::new()),
            publishes: Publishes::compile(&lifecycle.publish)?,
            webhook,
            counters: Arc::default(),
        })
    }

    fn wants(&self, kind: LifecycleKind) -> bool {
        self.wanted[slot(kind)]
    }

    /// Whether any kind is wanted.
    pub fn enabled(&self) -> bool {
        self.wanted.iter().any(|w| *w)
    }

    fn send(&self, moment: Moment) {
        if self.tx.try_send(moment).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A session started: its `connect`, and its user's `user_online` when it is the user's
    /// first. The guard's drop is its end: `disconnect` with the reason given to it, and
    /// `user_offline` when it was the user's last.
    pub fn session(self: &Arc<Self>, info: SessionInfo) -> Option<SessionGuard> {
        if !self.enabled() {
            return None;
        }
        let info = Arc::new(info);
        if self.wants(LifecycleKind::Connect) {
            self.send(Moment::Session(session_event(
                LifecycleKind::Connect,
                &info,
                None,
            )));
        }
        if self.wants(LifecycleKind::UserOnline) || self.wants(LifecycleKind::UserOffline) {
            let key = (info.tenant.clone(), info.user.clone());
            // Queued under the lock: a user's firsts and lasts keep the order of its counts.
            let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
            let count = users.entry(key).or_insert(0);
            *count += 1;
            if *count == 1 {
                self.send(Moment::User(
                    LifecycleKind::UserOnline,
                    info.tenant.clone(),
                    info.user.clone(),
                ));
            }
        }
        Some(SessionGuard {
            lifecycle: Arc::downgrade(self),
            info,
            reason: None,
        })
    }

    fn ended(&self, info: &SessionInfo, reason: Option<&str>) {
        if self.wants(LifecycleKind::Disconnect) {
            let reason = reason.unwrap_or("closed");
            self.send(Moment::Session(session_event(
                LifecycleKind::Disconnect,
                info,
                Some(reason.into()),
            )));
        }
        if self.wants(LifecycleKind::UserOnline) || self.wants(LifecycleKind::UserOffline) {
            let key = (info.tenant.clone(), info.user.clone());
            // Queued under the lock, as in `session`.
            let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
            match users.get_mut(&key) {
                Some(count) if *count > 1 => *count -= 1,
                Some(_) => {
                    users.remove(&key);
                    self.send(Moment::User(
                        LifecycleKind::UserOffline,
                        info.tenant.clone(),
                        info.user.clone(),
                    ));
                }
                None => {}
            }
        }
    }

    /// Starts the task that makes the events and hands them on (once).
    pub(crate) fn start(self: &Arc<Self>, app: &Arc<App>) {
        let Some(rx) = self
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        if !self.enabled() {
            return;
        }
        if let Some(webhook) = &self.webhook {
            webhook.start(app.node_id());
        }
        tokio::spawn(run(self.clone(), rx, Arc::downgrade(app)));
        let presence = [
            LifecycleKind::UserOnline,
            LifecycleKind::UserOffline,
            LifecycleKind::RoomOccupied,
            LifecycleKind::RoomVacated,
        ];
        if let Some(cluster) = app.cluster() {
            if presence.into_iter().any(|k| self.wants(k)) {
                let every = cluster.heartbeat();
                tokio::spawn(reap(self.clone(), Arc::downgrade(app), every));
            }
        }
    }

    /// The event of a presence set a dead node's reaping left empty: its user went offline,
    /// its room was vacated, with the node.
    fn reaped(&self, tenant: String, name: &str) -> Option<Event> {
        let (kind, user, room) = match name.split_once('\u{1f}') {
            Some(("u", user)) => (LifecycleKind::UserOffline, Some(user.into()), None),
            Some(("r", room)) => {
                let (ns, room) = room.split_once('\u{1f}')?;
                (
                    LifecycleKind::RoomVacated,
                    None,
                    Some((ns.into(), room.into())),
                )
            }
            _ => return None,
        };
        self.wants(kind).then(|| Event {
            kind,
            at: SystemTime::now(),
            tenant: tenant.into(),
            user,
            session: None,
            transport: None,
            namespace: room
                .as_ref()
                .map(|(ns, _): &(Arc<str>, Arc<str>)| ns.clone()),
            room: room.map(|(_, room)| room),
            reason: Some("node gone".into()),
        })
    }

    /// Watches the room index for rooms' first and last members, when room presence is
    /// wanted.
    pub(crate) fn rooms(self: &Arc<Self>) -> Option<Arc<dyn Transitions>> {
        (self.wants(LifecycleKind::RoomOccupied) || self.wants(LifecycleKind::RoomVacated))
            .then(|| Arc::new(RoomMoments(Arc::downgrade(self))) as Arc<dyn Transitions>)
    }

    /// The lifecycle's metrics, in the Prometheus text format (nothing when it is off).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        if !self.enabled() {
            return;
        }
        let c = &self.counters;
        let mut families = vec![
            (
                "roomcast_lifecycle_events_total",
                "Lifecycle events made.",
                c.events.load(Ordering::Relaxed),
            ),
            (
                "roomcast_lifecycle_dropped_total",
                "Lifecycle moments dropped: their queue was full.",
                c.dropped.load(Ordering::Relaxed),
            ),
            (
                "roomcast_lifecycle_presence_failed_total",
                "Presence checks Redis did not answer: no event made.",
                c.presence_failed.load(Ordering::Relaxed),
            ),
            (
                "roomcast_lifecycle_publish_failed_total",
                "Lifecycle events whose publish failed.",
                c.publish_failed.load(Ordering::Relaxed),
            ),
        ];
        if let Some(w) = &self.webhook {
            let w = &w.counters;
            families.extend([
                (
                    "roomcast_webhook_delivered_total",
                    "Lifecycle events the webhook's receiver took.",
                    w.delivered.load(Ordering::Relaxed),
                ),
                (
                    "roomcast_webhook_failed_posts_total",
                    "Webhook posts that failed (each attempt).",
                    w.failed_posts.load(Ordering::Relaxed),
                ),
                (
                    "roomcast_webhook_dropped_total{reason=\"queue_full\"}",
                    "Lifecycle events the webhook dropped: queue_full, given_up.",
                    w.dropped_full.load(Ordering::Relaxed),
                ),
                (
                    "roomcast_webhook_dropped_total{reason=\"given_up\"}",
                    "",
                    w.dropped_given_up.load(Ordering::Relaxed),
                ),
            ]);
        }
        for (name, help, value) in families {
            if !help.is_empty() {
                let family = name.split('{').next().unwrap_or(name);
                let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
            }
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

fn session_event(kind: LifecycleKind, info: &SessionInfo, reason: Option<Arc<str>>) -> Event {
    Event {
        kind,
        at: SystemTime::now(),
        tenant: info.tenant.clone(),
        user: Some(info.user.clone()),
        session: Some(info.session.clone()),
        transport: Some(info.transport),
        namespace: info.namespace.clone(),
        room: None,
        reason,
    }
}

/// A session's place in the lifecycle: dropped when the session ends.
#[derive(Debug)]
pub struct SessionGuard {
    lifecycle: Weak<Lifecycle>,
    info: Arc<SessionInfo>,
    reason: Option<Box<str>>,
}

impl SessionGuard {
    /// Why the session ends, for its `disconnect` (the first reason given stays).
    pub fn set_reason(&mut self, reason: &str) {
        if self.reason.is_none() {
            self.reason = Some(reason.into());
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(lifecycle) = self.lifecycle.upgrade() {
            lifecycle.ended(&self.info, self.reason.as_deref());
        }
    }
}

/// The room index's transitions, as moments.
struct RoomMoments(Weak<Lifecycle>);

impl std::fmt::Debug for RoomMoments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomMoments")
    }
}

impl Transitions for RoomMoments {
    fn first_in(&self, room: &RoomKey) {
        if let Some(lifecycle) = self.0.upgrade() {
            lifecycle.send(Moment::Room(LifecycleKind::RoomOccupied, room.clone()));
        }
    }

    fn last_out(&self, room: &RoomKey) {
        if let Some(lifecycle) = self.0.upgrade() {
            lifecycle.send(Moment::Room(LifecycleKind::RoomVacated, room.clone()));
        }
    }
}

/// The lifecycle task: each moment, in order, becomes an event (or, in a cluster, none when
/// another node's presence makes it no transition of the cluster), handed to the webhook and
/// published.
async fn run(lifecycle: Arc<Lifecycle>, mut rx: mpsc::Receiver<Moment>, app: Weak<App>) {
    while let Some(moment) = rx.recv().await {
        let Some(app) = app.upgrade() else { return };
        let event = match moment {
            Moment::Session(event) => Some(event),
            Moment::User(kind, tenant, user) => {
                presence(&lifecycle, &app, kind, tenant, None, Some(user)).await
            }
            Moment::Room(kind, RoomKey { tenant, ns, room }) => {
                presence(&lifecycle, &app, kind, tenant, Some((ns, room)), None).await
            }
        };
        if let Some(event) = event {
            dispatch(&lifecycle, &app, event).await;
        }
    }
}

/// Every heartbeat, removes the nodes that died from the presence sets; the users and rooms
/// they held alone go offline and vacated.
async fn reap(lifecycle: Arc<Lifecycle>, app: Weak<App>, every: std::time::Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(app) = app.upgrade() else { return };
        let Some(cluster) = app.cluster() else { return };
        let Some(live) = cluster.live_nodes().await else {
            continue;
        };
        let mut emptied = Vec::new();
        cluster.presence().reap(&live, &mut emptied).await;
        for (tenant, name) in emptied {
            if let Some(event) = lifecycle.reaped(tenant, &name) {
                dispatch(&lifecycle, &app, event).await;
            }
        }
    }
}

/// The event of a presence transition on this node, when it is one of the cluster (always on
/// one node), and when its kind is wanted.
async fn presence(
    lifecycle: &Lifecycle,
    app: &App,
    kind: LifecycleKind,
    tenant: Arc<str>,
    room: Option<(Arc<str>, Arc<str>)>,
    user: Option<Arc<str>>,
) -> Option<Event> {
    if let Some(cluster) = app.cluster() {
        let entering = matches!(
            kind,
            LifecycleKind::UserOnline | LifecycleKind::RoomOccupied
        );
        let name = match (&room, &user) {
            (Some((ns, room)), _) => format!("r\u{1f}{ns}\u{1f}{room}"),
            (None, Some(user)) => format!("u\u{1f}{user}"),
            (None, None) => return None,
        };
        let presence = cluster.presence();
        let changed = if entering {
            presence.enter(&tenant, &name).await
        } else {
            presence.leave(&tenant, &name).await
        };
        match changed {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                lifecycle
                    .counters
                    .presence_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, kind = kind.as_str(), "presence not checked");
                return None;
            }
        }
    }
    lifecycle.wants(kind).then(|| Event {
        kind,
        at: SystemTime::now(),
        tenant,
        user,
        session: None,
        transport: None,
        namespace: room.as_ref().map(|(ns, _)| ns.clone()),
        room: room.map(|(_, room)| room),
        reason: None,
    })
}

/// Hands `event` to the webhook and publishes it where configured.
pub(crate) async fn dispatch(lifecycle: &Lifecycle, app: &App, event: Event) {
    lifecycle.counters.events.fetch_add(1, Ordering::Relaxed);
    // Encoded once, for the webhook and the publish templates alike.
    let json = event.to_json(app.node_id());
    if let Some(webhook) = &lifecycle.webhook {
        webhook.push(event.kind, &json);
    }
    let Value::Object(fields) = json else {
        return;
    };
    for publication in lifecycle.publishes.publications(&event, &fields) {
        if let Err(e) = app.node.publish(publication).await {
            lifecycle
                .counters
                .publish_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, kind = event.kind.as_str(), "lifecycle event not published");
        }
    }
}
