//! The server's shared state: [`App`] is built once from the compiled configuration
//! ([`crate::Plan`]) and shared by every connection and request. It owns the draining flag that a shutdown raises
//! (the registry of live connections is the room index's); [`crate::serve`] runs the server around it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use roomcast_broker::{Broker, MemoryBroker};
use roomcast_engine::body::BodyBudget;
use roomcast_engine::driver::DriverConfig;
use roomcast_engine::rooms::{RoomIndex, RoomKey, WireFormat};
use roomcast_engine::{LaneLimits, QueueLimits};
use roomcast_socketio::SocketIo;
use tokio::sync::watch;

use crate::acl::RoomPolicy;
use crate::api_keys::ApiKeys;
use crate::auth::Verifier;
use crate::backend::Backends;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::history::HistoryRules;
use crate::http::ApiRoutes;
use crate::inbox::Inbox;
use crate::ingest::Ingest;
use crate::lifecycle::Lifecycle;
use crate::limits::ConnLimits;
use crate::metrics::Metrics;
use crate::node::{Hub, Node, PublishLimits};
use crate::sio::recovery::SessionWriter;

/// State shared by every connection and request of one server.
#[derive(Debug)]
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// JWT verification.
    pub verifier: Verifier,
    /// Auto-join templates and the room ACL.
    pub policy: RoomPolicy,
    /// The room index (membership; the node's hub delivers through it).
    pub index: Arc<RoomIndex>,
    /// The publish path: every producer calls [`Node::publish`].
    pub node: Arc<Node>,
    /// Connection limits.
    pub limits: Arc<ConnLimits>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// API keys.
    pub keys: ApiKeys,
    /// Settings of every connection driver.
    pub driver: Arc<DriverConfig>,
    /// Outbound queue bounds.
    pub queue_limits: QueueLimits,
    /// The bytes of request bodies being read at once, shared by the API and Socket.IO
    /// polling (`limits.max_body_buffer_bytes`).
    pub bodies: BodyBudget,
    /// Bounds of the async command lane, shared by every connection.
    pub lane: Arc<LaneLimits>,
    /// This process's stream epoch prefix.
    pub epoch: String,
    /// When the server started.
    pub started: Instant,
    /// The periodic tick of Socket.IO's long-polling sessions (WebSocket connections have
    /// timers of their own).
    pub tick: watch::Receiver<Instant>,
    tick_tx: watch::Sender<Instant>,
    shutting_down: AtomicBool,
    sio: OnceLock<Arc<SocketIo>>,
    cluster: Option<Arc<Cluster>>,
    /// The single node's broker when it keeps history, for its periodic sweep.
    pub(crate) history_store: OnceLock<Arc<MemoryBroker>>,
    /// The rooms that keep history (`[history]`), `None` when none does.
    pub history_rules: Option<Arc<HistoryRules>>,
    /// Writes recoverable Socket.IO sessions, when `[socketio.recovery]` is on.
    pub(crate) sessions: OnceLock<Arc<SessionWriter>>,
    /// The message broker sources (`[ingest]`), consumed while the server runs.
    pub ingest: Ingest,
    /// Lifecycle events (`[lifecycle]`): sessions' starts and ends, presence.
    pub lifecycle: Arc<Lifecycle>,
    /// The RPC backends and the connect proxy (`[rpc]`, `[auth.connect_proxy]`).
    pub backends: Arc<Backends>,
    /// The configured extra HTTP routes (`[[api.routes]]`).
    pub routes: ApiRoutes,
    inbox: OnceLock<Arc<Inbox>>,
}

/// The parts every node starts from, whichever its broker.
struct Core {
    index: Arc<RoomIndex>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    lane: Arc<LaneLimits>,
    epoch: String,
}

impl Core {
    fn new(parts: &AppParts) -> Core {
        let l = &parts.config.limits;
        let index = Arc::new(RoomIndex::new(parts.config.rooms.max_per_connection));
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(index.clone(), parts.queue_limits, metrics.clone()));
        Core {
            index,
            hub,
            metrics,
            lane: LaneLimits::new(
                l.commands_in_flight,
                l.commands_per_connection,
                l.command_timeout(),
            ),
            epoch: format!("{:x}", rand::random::<u64>()),
        }
    }
}

/// What [`App::from_parts`] is built from: the server-wide parts of a compiled configuration
/// ([`crate::Plan::into_app`] gives them).
#[derive(Debug)]
pub struct AppParts {
    /// The validated configuration.
    pub config: Config,
    /// JWT verification.
    pub verifier: Verifier,
    /// Auto-join templates and the room ACL.
    pub policy: RoomPolicy,
    /// API keys.
    pub keys: ApiKeys,
    /// Connection limits, nothing counted yet.
    pub limits: ConnLimits,
    /// Settings of every connection driver.
    pub driver: DriverConfig,
    /// Outbound queue bounds.
    pub queue_limits: QueueLimits,
    /// The rooms that keep history, `None` when none does.
    pub history: Option<Arc<HistoryRules>>,
    /// The message broker sources (`[ingest]`), not started.
    pub ingest: Ingest,
    /// Lifecycle events (`[lifecycle]`), not started.
    pub lifecycle: Lifecycle,
    /// The extra HTTP routes (`[[api.routes]]`).
    pub routes: ApiRoutes,
}

impl App {
    /// Builds the shared state of a single node (the in-memory broker) from its parts; the
    /// Socket.IO endpoint, if any, is attached next ([`attach_socketio`](Self::attach_socketio)).
    pub fn from_parts(parts: AppParts) -> Arc<App> {
        let core = Core::new(&parts);
        let mut broker = MemoryBroker::new(core.hub.clone(), core.epoch.clone());
        if let Some(rules) = &parts.history {
            broker = broker.with_history(rules.clone(), parts.config.history.max_rooms);
        }
        if let Some(limits) = crate::sio::recovery::log_limits(&parts.config) {
            broker = broker.with_recovery(limits, parts.config.socketio.recovery.max_sessions);
        }
        let broker = Arc::new(broker);
        let app = Self::assemble(parts, core, broker.clone(), None);
        if app.config.history.rooms.is_empty() && app.sessions.get().is_none() {
            return app;
        }
        let _ = app.history_store.set(broker);
        app
    }

    /// Builds the shared state from its parts, joining the cluster when `[cluster]` is set
    /// (which needs Redis to answer within `cluster.timeout_ms`).
    pub async fn start(parts: AppParts) -> anyhow::Result<Arc<App>> {
        let Some(settings) = parts.config.cluster.clone() else {
            return Ok(Self::from_parts(parts));
        };
        let core = Core::new(&parts);
        let history = parts
            .history
            .clone()
            .map(|rules| rules as Arc<dyn roomcast_broker::HistoryPolicy>);
        let cluster = Cluster::join(&settings, &parts.config, core.hub.clone(), history).await?;
        let broker = cluster.broker();
        let app = Self::assemble(parts, core, broker, Some(cluster.clone()));
        cluster.serve(&app).await?;
        Ok(app)
    }

    fn assemble(
        parts: AppParts,
        core: Core,
        broker: Arc<dyn Broker>,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<App> {
        let AppParts {
            config,
            verifier,
            policy,
            keys,
            limits,
            driver,
            queue_limits,
            history,
            ingest,
            lifecycle,
            routes,
        } = parts;
        let Core {
            index,
            hub,
            metrics,
            lane,
            epoch,
        } = core;
        let (tick_tx, tick) = watch::channel(Instant::now());
        let sessions = OnceLock::new();
        if crate::sio::recovery::log_limits(&config).is_some() {
            // A single node's broker keeps sessions in process: written on the spot.
            let inline = cluster.is_none().then(|| broker.clone());
            let ttl = config.socketio.recovery.max_disconnection();
            let _ = sessions.set(SessionWriter::new(inline, ttl));
        }
        let node = Node::with_broker(
            hub,
            broker,
            metrics.clone(),
            PublishLimits {
                max_targets: config.limits.max_publish_targets,
                lane: lane.clone(),
                logged: sessions.get().is_some(),
            },
        );
        let lifecycle = Arc::new(lifecycle);
        if let Some(rooms) = lifecycle.rooms() {
            node.also_observe(rooms);
        }
        Arc::new(App {
            index,
            node,
            verifier,
            policy,
            limits: Arc::new(limits),
            metrics,
            keys,
            driver: Arc::new(driver),
            queue_limits,
            bodies: BodyBudget::new(config.limits.max_body_buffer_bytes),
            lane,
            epoch,
            started: Instant::now(),
            tick,
            tick_tx,
            shutting_down: AtomicBool::new(false),
            sio: OnceLock::new(),
            cluster,
            history_store: OnceLock::new(),
            history_rules: history,
            sessions,
            ingest,
            lifecycle,
            backends: Arc::new(Backends::new(&config)),
            routes,
            inbox: OnceLock::new(),
            config,
        })
    }

    /// Whether `room` keeps history (a `[history]` rule names it).
    pub fn keeps_history(&self, room: &RoomKey) -> bool {
        use roomcast_broker::HistoryPolicy;
        self.history_rules
            .as_ref()
            .is_some_and(|rules| rules.limits(room).is_some())
    }

    /// This node's id: the cluster's name for it, or `standalone` for a single node.
    pub fn node_id(&self) -> &str {
        self.cluster.as_ref().map_or("standalone", |c| c.node_id())
    }

    /// The cluster this node belongs to, `None` for a single node.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Attaches the Socket.IO endpoint (once): the hub reaches its sockets.
    pub fn attach_socketio(&self, sio: Arc<SocketIo>) {
        self.node.hub().set_socketio(sio.clone());
        let _ = self.sio.set(sio);
    }

    /// Attaches the inbox (once), opened after the rest of the state.
    pub fn attach_inbox(&self, inbox: Arc<Inbox>) {
        let _ = self.inbox.set(inbox);
    }

    /// The notification inbox, when `[inbox]` is on.
    pub fn inbox(&self) -> Option<&Arc<Inbox>> {
        self.inbox.get()
    }

    /// The Socket.IO endpoint, when `socketio.enabled`.
    pub fn socketio(&self) -> Option<&Arc<SocketIo>> {
        self.sio.get()
    }

    /// Whether the server is draining.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Native connections whose task is running (authenticated or not).
    pub fn live_connections(&self) -> usize {
        self.index.live_count_of(WireFormat::Native)
    }

    /// Starts the drain: raises the flag (new native upgrades and Socket.IO connects are
    /// refused from now on), then asks every live connection to reconnect elsewhere; the
    /// index's live table sends away those tracked later too.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.close_live();
    }

    /// Ticks the clock of the long-polling sessions; false once nothing can listen.
    pub(crate) fn send_tick(&self, now: Instant) -> bool {
        self.tick_tx.send(now).is_ok()
    }

    /// Asks every connection in the index's live table to reconnect elsewhere (native: 1001;
    /// Socket.IO sockets: their transport closes), and every one that arrives from now on.
    fn close_live(&self) {
        self.index.close_live();
    }
}
