//! Socket.IO v4 for the roomcast server: the `[socketio]` configuration turned into a
//! [`SocketIo`] endpoint whose namespaces authenticate with the same JWTs, join the same room
//! index and follow the same ACL as native clients.

mod namespace;
pub(crate) mod recovery;
pub mod routing;

use std::sync::{Arc, Weak};

use roomcast_engine::ws::ConnConfig;
use roomcast_engine::QueueLimits;
use roomcast_socketio::{Cors, SocketIo};

use crate::app::App;
use crate::config::{LimitsConfig, SocketIoConfig};
use namespace::ConfiguredNamespace;
use routing::Router;

/// The Socket.IO endpoint compiled from `[socketio]`: its settings, its router, and the
/// aliases of its namespaces.
#[derive(Debug)]
pub(crate) struct Endpoint {
    config: roomcast_socketio::Config,
    router: Arc<Router>,
    /// Each alias with the namespace it stands for.
    aliases: Vec<(String, String)>,
}

impl Endpoint {
    /// The endpoint for `config`, routed by `router`; `queue` bounds every socket's outbound
    /// queue and `ws` holds the WebSocket settings of native connections.
    pub(crate) fn new(
        config: &SocketIoConfig,
        limits: &LimitsConfig,
        router: Router,
        queue: QueueLimits,
        ws: &ConnConfig,
    ) -> Endpoint {
        let endpoint = roomcast_socketio::Config {
            path: config.engine_path(),
            extra_paths: config.extra_engine_paths(),
            ping_interval: config.ping_interval(),
            ping_timeout: config.ping_timeout(),
            max_payload: config.max_payload,
            connect_timeout: config.connect_timeout(),
            cors: Cors {
                allowed_origins: config.cors_origins.clone(),
                credentials: config.cors_credentials,
            },
            queue,
            // A Socket.IO message may be as large as max_payload on either transport.
            ws: {
                let mut ws = ws.clone();
                ws.limits.max_frame = ws.limits.max_frame.max(config.max_payload);
                ws.limits.max_message = ws.limits.max_message.max(config.max_payload);
                ws
            },
            body_timeout: limits.body_timeout(),
            max_pending_sessions: config.max_pending_sessions,
            max_pending_sessions_per_ip: config.max_pending_sessions_per_ip,
            ..roomcast_socketio::Config::default()
        };
        let aliases = config
            .namespaces
            .iter()
            .flat_map(|ns| ns.aliases.iter().map(|a| (a.clone(), ns.name.clone())))
            .collect();
        Endpoint {
            config: endpoint,
            router: Arc::new(router),
            aliases,
        }
    }

    /// Starts the endpoint for `app`: its namespaces share `app`'s room index, tick and
    /// counters.
    pub(crate) fn start(self, app: &Arc<App>) -> Arc<SocketIo> {
        let Endpoint {
            mut config,
            router,
            aliases,
        } = self;
        config.body_budget = app.bodies.clone();
        let sio = SocketIo::new(
            config,
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
        for (alias, configured) in aliases {
            sio.alias(&alias, &configured);
        }
        sio
    }
}
