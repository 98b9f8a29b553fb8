//! The server's shared state and its accept loop.
//!
//! [`App`] is built once from the [`Plan`] of the [`Config`] and shared by every connection
//! and request.
//! [`Server::run`] accepts TCP connections, serves HTTP/1.1 on them with hyper (upgrading
//! `/ws` to WebSocket), ticks the long-polling heartbeat clock, and on shutdown tells every
//! connection to reconnect elsewhere and waits for them to drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use roomcast_engine::body::BodyBudget;
use roomcast_engine::driver::DriverConfig;
use roomcast_engine::rooms::{RoomIndex, WireFormat};
use roomcast_engine::{LaneLimits, QueueLimits};
use roomcast_socketio::SocketIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::acl::RoomPolicy;
use crate::api_keys::ApiKeys;
use crate::auth::Verifier;
use crate::config::Config;
use crate::limits::ConnLimits;
use crate::metrics::Metrics;
use crate::node::{Node, PublishLimits};
use crate::plan::Plan;

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
}

impl App {
    /// Builds the shared state from a configuration: its [`Plan`], then [`App::from_plan`].
    pub fn new(config: Config) -> anyhow::Result<Arc<App>> {
        Ok(App::from_plan(Plan::build(&config)?))
    }

    /// Builds the shared state from a plan, whose parts it takes over.
    pub fn from_plan(plan: Plan) -> Arc<App> {
        let Plan {
            config,
            verifier,
            policy,
            keys,
            limits,
            driver,
            queue_limits,
            socketio,
        } = plan;
        let epoch = format!("{:x}", rand::random::<u64>());
        let (tick_tx, tick) = watch::channel(Instant::now());
        let index = Arc::new(RoomIndex::new(config.rooms.max_per_connection));
        let metrics = Arc::new(Metrics::default());
        let l = &config.limits;
        let lane = LaneLimits::new(
            l.commands_in_flight,
            l.commands_per_connection,
            l.command_timeout(),
        );
        let node = Node::in_memory(
            index.clone(),
            queue_limits,
            epoch.clone(),
            metrics.clone(),
            PublishLimits {
                max_targets: l.max_publish_targets,
                lane: lane.clone(),
            },
        );
        let app = Arc::new(App {
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
            config,
        });
        if let Some(endpoint) = socketio {
            let sio = endpoint.start(&app);
            app.node.hub().set_socketio(sio.clone());
            sio.set_relay(Arc::new(crate::sio::NodeRelay(Arc::downgrade(&app.node))));
            let _ = app.sio.set(sio);
        }
        app
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
        self.index.live_connections(WireFormat::Native).len()
    }

    /// Asks every connection in the index's live table to reconnect elsewhere (native: 1001;
    /// Socket.IO sockets: their transport closes), and every one that arrives from now on.
    fn close_live(&self) {
        self.index.close_live();
    }

    /// The period of the Socket.IO polling tick: fine enough for the heartbeat and the
    /// connect deadline.
    fn tick_period(&self) -> Duration {
        let hb = self.config.heartbeat.interval() / 5;
        hb.clamp(Duration::from_millis(20), Duration::from_secs(1))
    }
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
}

impl Server {
    /// Builds the configuration's plan and binds the configured address.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        Server::bind_plan(Plan::build(&config)?).await
    }

    /// Binds the plan's configured address, to serve from the plan.
    pub async fn bind_plan(plan: Plan) -> anyhow::Result<Server> {
        let listen = plan.config().listen;
        let app = App::from_plan(plan);
        let listener = TcpListener::bind(&listen)
            .await
            .with_context(|| format!("binding listen address {listen}"))?;
        Ok(Server { app, listener })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves until `shutdown` resolves, then drains: every connection is told to reconnect
    /// elsewhere (close 1001), and the call returns when all are gone or the grace period ends.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server { app, listener } = self;
        let ticker = tokio::spawn(tick_loop(app.clone()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| crate::http::handle(app.clone(), peer, req));
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10))
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades();
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, %peer, "http connection error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        let grace = Duration::from_millis(app.config.shutdown.grace_ms);
        // Socket.IO connections are Engine.IO sessions, counted whether or not they joined a
        // namespace: a session that never did still holds a client that must reconnect.
        let left = |app: &App| {
            app.live_connections() + app.socketio().map_or(0, |sio| sio.connection_count())
        };
        tracing::info!(
            connections = left(&app),
            socketio = app.socketio().map_or(0, |sio| sio.connection_count()),
            grace_ms = grace.as_millis() as u64,
            "shutting down: asking clients to reconnect elsewhere"
        );
        app.shutting_down.store(true, Ordering::Release);
        app.close_live();
        if let Some(sio) = app.socketio() {
            // Socket.IO clients must reconnect elsewhere: close the transports, no DISCONNECT;
            // polling sessions with no GET pending end at once.
            sio.close_transports();
        }
        let deadline = Instant::now() + grace;
        while left(&app) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ticker.abort();
        let left = left(&app);
        if left > 0 {
            tracing::warn!(left, "grace period over, dropping remaining connections");
        } else {
            tracing::info!("all connections drained");
        }
        Ok(())
    }
}

/// One timer for all Socket.IO polling sessions.
async fn tick_loop(app: Arc<App>) {
    let mut interval = tokio::time::interval(app.tick_period());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        if app.tick_tx.send(Instant::now()).is_err() {
            return;
        }
    }
}
