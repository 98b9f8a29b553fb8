//! Running a server: bind the listen address, accept TCP connections and serve HTTP/1.1 on
//! them with hyper (upgrading `/ws` to WebSocket), tick the long-polling heartbeat clock, and
//! on shutdown tell every connection to reconnect elsewhere and wait for them to drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::Config;
use crate::plan::Plan;
use crate::startup::Summary;

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
}

/// Connections the kernel may hold for `accept` (capped by `net.core.somaxconn`): a burst of
/// reconnecting clients (a node's clients after another node died) must not overflow it, or
/// their connection attempts wait for the kernel's SYN retries (1 s, then 3 s).
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`] (tokio's `bind` asks for 128).
fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server rebinds while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Server {
    /// Builds the configuration's plan and binds the configured address.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        Server::bind_plan(Plan::build(&config)?).await
    }

    /// Binds the plan's configured address, to serve from the plan.
    pub async fn bind_plan(plan: Plan) -> anyhow::Result<Server> {
        let listen = plan.config().listen;
        let app = plan.start().await?;
        let listener =
            listen_on(listen).with_context(|| format!("binding listen address {listen}"))?;
        Ok(Server { app, listener })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Logs the address the server listens on and what is on, in one `info` line, and a
    /// warning when the HTTP API has no key.
    pub fn log_startup(&self) -> std::io::Result<()> {
        let app = &self.app;
        let inbox = app.inbox().map(|inbox| inbox.database());
        Summary::new(&app.config, self.local_addr()?, app.node_id(), inbox).log();
        Ok(())
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
        if app.history_store.get().is_some() {
            tokio::spawn(sweep_history(Arc::downgrade(&app)));
        }
        if let Some(writer) = app.sessions.get() {
            tokio::spawn(writer.clone().run(Arc::downgrade(&app)));
        }
        app.ingest.start(&app);
        app.lifecycle.start(&app);
        if let Some(inbox) = app.inbox() {
            tokio::spawn(crate::inbox::prune_loop(Arc::downgrade(inbox)));
        }
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
        // Nothing more is taken from the brokers; what is not acknowledged returns to them.
        app.ingest.stop();
        app.begin_shutdown();
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
        if let Some(cluster) = app.cluster() {
            cluster.leave().await;
        }
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
    let mut interval = tokio::time::interval(tick_period(&app.config));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        if !app.send_tick(Instant::now()) {
            return;
        }
    }
}

/// Once a second, drops kept history past its age (and rooms left with none).
pub(crate) async fn sweep_history(app: std::sync::Weak<App>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let Some(app) = app.upgrade() else { return };
        if let Some(store) = app.history_store.get() {
            store.sweep(Instant::now());
        }
    }
}

/// The period of the Socket.IO polling tick: fine enough for the heartbeat and the connect
/// deadline.
fn tick_period(config: &Config) -> Duration {
    let hb = config.heartbeat.interval() / 5;
    hb.clamp(Duration::from_millis(20), Duration::from_secs(1))
}
