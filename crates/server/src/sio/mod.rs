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
        ..roomcast_socketio::Config::default()
    };
    let sio = SocketIo::new(
        endpoint,
        app.index.clone(),
        app.tick.clone(),
        app.metrics.io.clone(),
    );
    let weak: Weak<App> = Arc::downgrade(app);
    for name in router.namespaces() {
        let handler = ConfiguredNamespace::new(weak.clone(), router.clone(), name.to_owned());
        sio.namespace(name, Arc::new(handler));
    }
    // An alias is another name of its namespace: same handler, same rooms (keyed by the
    // namespace's name, where publishes to it look), while its clients keep reading and
    // writing their packets under the alias.
    for ns in &config.namespaces {
        for alias in &ns.aliases {
            sio.alias(alias, &ns.name);
        }
    }
    Ok(Some(sio))
}
