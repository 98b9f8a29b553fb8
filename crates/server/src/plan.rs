//! The server's plan: everything a [`Config`] compiles into before the server starts (the room
//! policy, the Socket.IO router and endpoint, the JWT verifier, the API keys, the connection
//! limits, the driver and queue settings), built once by [`Plan::build`]. Validating a
//! configuration is building its plan: what cannot be compiled is an error naming its key, and
//! the server starts from a plan, never from a configuration that was only checked.

use std::sync::Arc;
use std::time::Duration;

use roomcast_engine::driver::DriverConfig;
use roomcast_engine::ws::{ConnConfig, FrameLimits};
use roomcast_engine::QueueLimits;

use crate::acl::RoomPolicy;
use crate::api_keys::ApiKeys;
use crate::app::{App, AppParts};
use crate::auth::{AuthSetupError, Verifier};
use crate::config::{Config, ConfigError};
use crate::history::HistoryRules;
use crate::http::ApiRoutes;
use crate::inbox::Inbox;
use crate::ingest::Ingest;
use crate::lifecycle::Lifecycle;
use crate::limits::ConnLimits;
use crate::proto::CloseCode;
use crate::sio::routing::Router;
use crate::sio::Endpoint;

/// Why a configuration has no plan: the server refuses to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A key is missing, mistyped or out of range, or a room template, ACL pattern or event
    /// route does not compile. The message names the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The JWT verifier cannot be built: the public key file cannot be read or holds no key
    /// for the algorithm. The message names `auth.public_key_file`.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
}

/// A configuration compiled for the server to start from ([`Plan::into_app`]).
#[derive(Debug)]
pub struct Plan {
    /// What the server's shared state is built from.
    pub(crate) parts: AppParts,
    /// The Socket.IO endpoint, when `socketio.enabled`.
    pub(crate) socketio: Option<Endpoint>,
}

impl Plan {
    /// Starts the server's shared state from the plan: the [`App`], with its Socket.IO
    /// endpoint attached when `socketio.enabled`.
    pub fn into_app(self) -> Arc<App> {
        let app = App::from_parts(self.parts);
        if let Some(endpoint) = self.socketio {
            app.attach_socketio(endpoint.start(&app));
        }
        app
    }

    /// [`into_app`](Self::into_app), joining the cluster first when `[cluster]` is set.
    pub async fn start(self) -> anyhow::Result<Arc<App>> {
        let app = App::start(self.parts).await?;
        if let Some(config) = &app.config.inbox {
            app.attach_inbox(Inbox::open(config, app.node.clone()).await?);
        }
        if let Some(endpoint) = self.socketio {
            app.attach_socketio(endpoint.start(&app));
        }
        Ok(app)
    }

    /// Checks `config` and compiles it. The first problem found is returned: the checks of
    /// [`Config::validate`] and the compilation of what they cannot check run in one fixed
    /// order, so the error reported for a configuration with several problems does not depend
    /// on which part finds it. The public key file, if any, is read here.
    pub fn build(config: &Config) -> Result<Plan, PlanError> {
        config.validate_credentials()?;
        let policy = RoomPolicy::from_config(&config.rooms)?;
        config.validate_settings()?;
        // Compiled even when Socket.IO is disabled: a route that does not compile is an error
        // either way.
        let router = Router::from_config(&config.socketio, &config.rooms.auto_join)?;
        let verifier = Verifier::new(&jwt_settings(config))?;
        if let Some(cluster) = &config.cluster {
            check_cluster(cluster, config)?;
        }
        let history = HistoryRules::from_config(&config.history)?.map(Arc::new);
        let ingest = Ingest::compile(config)?;
        let lifecycle = Lifecycle::compile(config)?;
        let routes = ApiRoutes::compile(config)?;
        if let Some(inbox) = &config.inbox {
            Inbox::check(inbox)?;
        }
        let l = &config.limits;
        let limits = ConnLimits::new(
            l.max_connections,
            l.max_connections_per_tenant,
            l.max_connections_per_user,
        );
        let driver = driver_config(config);
        let queue_limits = QueueLimits {
            max_messages: l.queue_messages,
            max_bytes: l.queue_bytes,
        };
        let socketio = config.socketio.enabled.then(|| {
            Endpoint::new(
                &config.socketio,
                &config.limits,
                router,
                queue_limits,
                &driver.conn,
            )
        });
        Ok(Plan {
            parts: AppParts {
                config: config.clone(),
                verifier,
                policy,
                keys: ApiKeys::from_config(&config.api),
                limits,
                driver,
                queue_limits,
                history,
                ingest,
                lifecycle,
                routes,
            },
            socketio,
        })
    }

    /// The configuration the plan was built from.
    pub fn config(&self) -> &Config {
        &self.parts.config
    }
}

/// The `[auth]` the JWT verifier is built from. When the connect proxy authenticates every
/// client and no JWT key is configured, a random secret stands in: no token is looked at then,
/// and the verifier only reads the proxy's identities through the claim names.
fn jwt_settings(config: &Config) -> std::borrow::Cow<'_, crate::config::AuthConfig> {
    let auth = &config.auth;
    let keyless = auth.secret.is_empty() && auth.public_key_file.is_empty();
    if !(config.proxy_only() && keyless) {
        return std::borrow::Cow::Borrowed(auth);
    }
    let mut stand_in = auth.clone();
    stand_in.algorithm = crate::config::JwtAlgorithm::HS256;
    stand_in.secret = crate::config::random_token();
    std::borrow::Cow::Owned(stand_in)
}

/// What `[cluster]` holds that only the cluster's parts can check: the Redis URL and the
/// emitters' tenant patterns.
fn check_cluster(
    cluster: &crate::config::ClusterConfig,
    config: &Config,
) -> Result<(), ConfigError> {
    crate::cluster::options(cluster, config)
        .check()
        .map_err(|e| ConfigError::invalid("cluster.redis", e.to_string()))?;
    for (i, binding) in cluster.emitters.iter().enumerate() {
        crate::cluster::emitter_rule(binding).map_err(|e| {
            ConfigError::invalid(
                format!("cluster.emitters[{i}].tenant_from_room"),
                e.to_string(),
            )
        })?;
    }
    Ok(())
}

/// The settings of every WebSocket connection's driver: frame limits, heartbeat, and the close
/// codes of the closes the driver decides on its own.
fn driver_config(config: &Config) -> DriverConfig {
    let l = &config.limits;
    DriverConfig {
        conn: ConnConfig {
            limits: FrameLimits {
                max_frame: l.max_frame_bytes,
                max_message: l.max_message_bytes,
            },
            ping_interval: config.heartbeat.interval(),
            idle_timeout: config.heartbeat.timeout(),
            close_timeout: Duration::from_secs(5),
        },
        slow_consumer: (
            CloseCode::SlowConsumer.code(),
            CloseCode::SlowConsumer.reason(),
        ),
        heartbeat_timeout: (
            CloseCode::HeartbeatTimeout.code(),
            CloseCode::HeartbeatTimeout.reason(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AclRule, JwtAlgorithm};

    fn valid() -> Config {
        let mut c = Config::default();
        c.auth.secret = "secret".into();
        c
    }

    fn error(c: &Config) -> String {
        Plan::build(c).unwrap_err().to_string()
    }

    #[test]
    fn room_templates_and_patterns_are_checked() {
        let mut c = valid();
        c.rooms.auto_join.push("shop:{shop_ids".into());
        assert!(
            error(&c).starts_with("rooms.auto_join[2]: "),
            "{}",
            error(&c)
        );
        let mut c = valid();
        let rule = |p: &str| AclRule {
            pattern: p.into(),
            ..AclRule::default()
        };
        c.rooms.acl = vec![rule("order:*"), rule("a"), rule("chat:{room}}")];
        assert!(
            error(&c).starts_with("rooms.acl[2].pattern: "),
            "{}",
            error(&c)
        );
        c.rooms.acl[2] = rule("");
        assert_eq!(error(&c), "rooms.acl[2].pattern: must not be empty");
    }

    #[test]
    fn checks_run_in_one_order_across_layers() {
        // A bad ACL pattern is reported before a bad limit, as it always was.
        let mut c = valid();
        c.rooms.acl = vec![AclRule {
            pattern: "chat:{room}}".into(),
            ..AclRule::default()
        }];
        c.limits.max_connections = 0;
        assert!(
            error(&c).starts_with("rooms.acl[0].pattern: "),
            "{}",
            error(&c)
        );
        // A bad key is reported before a bad ACL pattern.
        c.api.keys = vec![String::new()];
        assert_eq!(error(&c), "api.keys[0]: must not be empty");
    }

    #[test]
    fn routes_are_compiled_even_with_socketio_disabled() {
        let mut c = Config::from_toml_str(
            "[socketio]\nenabled = false\n[[socketio.namespaces]]\nname = \"/\"\n\
             [[socketio.namespaces.events]]\nevent = \"e\"\naction = \"join\"\nroom = \"{args.0\"",
        )
        .unwrap();
        c.auth.secret = "s".into();
        assert!(
            error(&c).starts_with("socketio.namespaces[0].events[0].room: "),
            "{}",
            error(&c)
        );
    }

    #[test]
    fn an_unreadable_key_file_names_its_key() {
        let mut c = Config::default();
        c.auth.algorithm = JwtAlgorithm::RS256;
        c.auth.public_key_file = "/nonexistent/roomcast-key.pem".into();
        c.validate().unwrap();
        let e = Plan::build(&c).unwrap_err();
        assert!(matches!(e, PlanError::Auth(_)), "{e}");
        assert!(e.to_string().starts_with("auth.public_key_file: "), "{e}");
    }

    #[test]
    fn the_example_file_builds_once_a_secret_is_present() {
        let example = include_str!("../../../roomcast.example.toml");
        let mut config = Config::from_toml_str(example).unwrap();
        assert!(matches!(
            Plan::build(&config),
            Err(PlanError::Config(ConfigError::NoKey))
        ));
        config.auth.secret = "a-secret-for-the-example".into();
        let plan = Plan::build(&config).unwrap();
        assert_eq!(plan.config(), &config);
        assert_eq!(plan.socketio.is_some(), config.socketio.enabled);
    }
}
