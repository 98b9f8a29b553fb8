//! Socket.IO v4 for the roomcast server: the `[socketio]` configuration turned into a
//! [`SocketIo`] endpoint whose namespaces authenticate with the same JWTs, join the same room
//! index and follow the same ACL as native clients.

mod namespace;
pub mod routing;

use std::sync::{Arc, Weak};

use roomcast_socketio::{Cors, SocketIo};

use crate::app::App;
use crate::config::ConfigError;
use namespace::ConfiguredNamespace;
use routing::Router;

/// Builds the endpoint for `app`, or `None` when `socketio.enabled` is false.
pub(crate) fn build(app: &Arc<App>) -> Result<Option<Arc<SocketIo>>, ConfigError> {
    let config = &app.config.socketio;
    if !config.enabled {
        return Ok(None);
    }
    let router = Arc::new(Router::from_config(config, &app.config.rooms.auto_join)?);
    let endpoint = roomcast_socketio::Config {
        path: config.engine_path(),
        ping_interval: config.ping_interval(),
        ping_timeout: config.ping_timeout(),
        max_payload: config.max_payload,
        connect_timeout: config.connect_timeout(),
        cors: Cors {
            allowed_origins: config.cors_origins.clone(),
            credentials: config.cors_credentials,
        },
        queue: app.queue_limits,
        // A Socket.IO message may be as large as max_payload on either transport.
        ws: {
            let mut ws = app.driver.conn.clone();
            ws.limits.max_frame = ws.limits.max_frame.max(config.max_payload);
            ws.limits.max_message = ws.limits.max_message.max(config.max_payload);
            ws
        },
        body_timeout: app.config.limits.body_timeout(),
        body_budget: app.bodies.clone(),
        max_pending_sessions: config.max_pending_sessions,
        max_pending_sessions_per_ip: config.max_pending_sessions_per_ip,
        ..roomcast_socketio::Config::default()
    };
    let sio = SocketIo::new(
        endpoint,
        app.index.clone(),
        app.tick.clone(),
        app.metrics.io.clone(),
    );
    let weak: Weak<App> = Arc::downgrade(app);
    let mut names: Vec<(String, String)> = router
        .namespaces()
        .map(|n| (n.to_owned(), n.to_owned()))
        .collect();
    for ns in &config.namespaces {
        names.extend(ns.aliases.iter().map(|a| (a.clone(), ns.name.clone())));
    }
    for (served, configured) in names {
        let handler = ConfiguredNamespace::new(weak.clone(), router.clone(), configured);
        sio.namespace(&served, Arc::new(handler));
    }
    Ok(Some(sio))
}
