//! The server configuration: the `roomcast.toml` schema with its embedded defaults, the
//! loader that overlays `ROOMCAST_*` environment variables ([`Config::load`]), and the checks that
//! run on its values ([`Config::validate`]; the server's plan compiles the rest). Every error
//! names the key it is about.
//!
//! - `error`: [`ConfigError`];
//! - one file per section: `auth`, `api`, `rooms`, `limits` (with `[heartbeat]`), `process`
//!   (`[shutdown]` and `[log]`), `socketio`, `cluster`, `history`, `ingest`, `backends`
//!   (`[rpc]` and `[auth.connect_proxy]`), `lifecycle`, `inbox`, `routes` (`[[api.routes]]`);
//!   this file holds the whole [`Config`];
//! - `load`: TOML text or file, then `env` (the `ROOMCAST_*` overlay), then `schema` (the
//!   key-by-key walk that names the key at fault) and serde;
//! - `validate`: the checks on values;
//! - `show`: the configuration as TOML with its secrets hidden (`roomcast check-config`).

mod api;
mod auth;
mod backends;
mod cluster;
mod env;
mod error;
mod history;
mod inbox;
mod ingest;
mod lifecycle;
mod limits;
mod load;
mod process;
mod recovery;
mod rooms;
mod routes;
mod schema;
mod show;
mod socketio;
mod validate;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use api::{ApiConfig, TenantKey};
pub use auth::{AuthConfig, JwtAlgorithm};
pub(crate) use backends::path as check_path;
pub use backends::{BackendConfig, ConnectProxyConfig, MethodConfig, ProxyMode, RpcConfig};
pub use cluster::{redacted_url, ChannelsConfig, ClusterConfig, EmitterBinding, EmitterKind};
pub use env::process_env;
pub use error::ConfigError;
pub(crate) use error::NO_KEY_MESSAGE;
pub use history::{HistoryConfig, HistoryRule};
pub use inbox::{InboxConfig, InboxLive, InboxOp};
pub use ingest::{
    AmqpPreset, AmqpSourceConfig, ExchangeConfig, IngestConfig, IngestEmit, IngestRule, QueueConfig,
};
pub use lifecycle::{LifecycleConfig, LifecycleKind, LifecyclePublish, WebhookConfig};
pub use limits::{HeartbeatConfig, LimitsConfig};
pub use process::{LogConfig, LogFormat, ShutdownConfig};
pub use recovery::RecoveryConfig;
pub use rooms::{AclRule, RoomsConfig};
pub use routes::{ApiRoute, RouteAuth, RouteBroadcast, RouteOperation};
pub use show::HIDDEN;
pub use socketio::{
    ConnectErrorMessages, EmitTemplate, EventRoute, NamespaceConfig, RouteAction, SocketIoConfig,
};

/// The longest tenant name or user id accepted, in bytes; room keys and metrics labels embed them.
pub const MAX_ID_BYTES: usize = 128;

/// The whole configuration. Every key is optional: a missing one takes the default stated on it
/// ([`Config::default`] is exactly these defaults, without any JWT key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to listen on. Default `"127.0.0.1:8080"`. Env: `ROOMCAST_LISTEN`.
    pub listen: SocketAddr,
    /// JWT verification of clients (`[auth]`).
    pub auth: AuthConfig,
    /// The HTTP API (`[api]`).
    pub api: ApiConfig,
    /// Automatic rooms and the room ACL (`[rooms]`).
    pub rooms: RoomsConfig,
    /// Connection, rate and size limits (`[limits]`).
    pub limits: LimitsConfig,
    /// Keep-alive pings (`[heartbeat]`).
    pub heartbeat: HeartbeatConfig,
    /// Graceful shutdown (`[shutdown]`).
    pub shutdown: ShutdownConfig,
    /// Logging (`[log]`).
    pub log: LogConfig,
    /// Socket.IO clients and the routing of their events (`[socketio]`).
    pub socketio: SocketIoConfig,
    /// Cluster mode over Redis (`[cluster]`); one node in memory when absent.
    pub cluster: Option<ClusterConfig>,
    /// Rooms that keep their last events (`[history]`); none by default.
    pub history: HistoryConfig,
    /// Events taken from message brokers (`[ingest]`); none by default.
    pub ingest: IngestConfig,
    /// Lifecycle events to a webhook and to rooms (`[lifecycle]`); none by default.
    pub lifecycle: LifecycleConfig,
    /// HTTP backends that answer client events and `rpc` commands (`[rpc]`); none by default.
    pub rpc: RpcConfig,
    /// The notification inbox (`[inbox]`); off when absent (`--dev` turns it on).
    pub inbox: Option<InboxConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            auth: AuthConfig::default(),
            api: ApiConfig::default(),
            rooms: RoomsConfig::default(),
            limits: LimitsConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            socketio: SocketIoConfig::default(),
            cluster: None,
            history: HistoryConfig::default(),
            ingest: IngestConfig::default(),
            lifecycle: LifecycleConfig::default(),
            rpc: RpcConfig::default(),
            inbox: None,
        }
    }
}

/// What `Debug` shows of a secret: nothing when unset, a placeholder otherwise.
fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

impl Config {
    /// Whether the connect proxy authenticates every client (`auth.connect_proxy.mode =
    /// "only"`): then no JWT key is needed.
    pub fn proxy_only(&self) -> bool {
        self.auth
            .connect_proxy
            .as_ref()
            .is_some_and(|p| p.mode == ProxyMode::Only)
    }

    /// Configuration for `roomcast --dev`: the embedded defaults with a random HS256 secret and
    /// a random platform API key (`api.keys[0]`). Returns the config and the secret.
    pub fn dev() -> (Config, String) {
        Config::default().into_dev()
    }

    /// Turns this configuration into a development one: HS256 with a fresh random secret (any
    /// public key file is dropped) unless an HS256 secret is configured already (so that the
    /// nodes of a development cluster accept one another's tokens), and a random platform API
    /// key appended to `api.keys` when it has none, and the inbox on (its defaults, a SQLite
    /// file in the working directory) unless configured. Returns the config and the secret.
    pub fn into_dev(mut self) -> (Config, String) {
        let configured = self.auth.algorithm == JwtAlgorithm::HS256 && !self.auth.secret.is_empty();
        let secret = if configured {
            self.auth.secret.clone()
        } else {
            random_token()
        };
        self.auth.algorithm = JwtAlgorithm::HS256;
        self.auth.secret = secret.clone();
        self.auth.public_key_file.clear();
        if self.api.keys.is_empty() {
            self.api.keys.push(format!("dev-{}", random_token()));
        }
        self.inbox.get_or_insert_with(InboxConfig::default);
        (self, secret)
    }
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dev_mode_keeps_a_configured_secret_and_key() {
        let (_, random) = Config::dev();
        let mut c = Config::default();
        c.auth.secret = "shared-by-the-nodes".into();
        c.api.keys = vec!["k".into()];
        let (dev, secret) = c.into_dev();
        assert_eq!(secret, "shared-by-the-nodes");
        assert_eq!(dev.api.keys, ["k"]);
        assert_ne!(random, secret);
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.auth.algorithm, JwtAlgorithm::HS256);
        assert_eq!(c.auth.leeway_secs, 30);
        assert!(c.auth.require_exp);
        assert_eq!(c.auth.user_claim, "sub");
        assert_eq!(c.auth.tenant_claim, "tenant_id");
        assert_eq!(c.auth.roles_claim, "roles");
        assert_eq!(c.auth.auth_timeout(), Duration::from_secs(10));
        assert_eq!(c.api.max_body_bytes, 1_048_576);
        assert_eq!(c.rooms.auto_join, ["user:{sub}", "tenant:{tenant_id}"]);
        assert_eq!(c.rooms.max_per_connection, 256);
        assert_eq!(c.limits.max_connections, 100_000);
        assert_eq!(c.limits.messages_per_second, 50);
        assert_eq!(c.limits.messages_burst, 100);
        assert_eq!(c.limits.max_violations, 10);
        assert_eq!(c.limits.queue_messages, 1024);
        assert_eq!(c.limits.queue_bytes, 4_194_304);
        assert_eq!(c.limits.body_timeout(), Duration::from_secs(10));
        assert_eq!(c.limits.max_body_buffer_bytes, 67_108_864);
        assert_eq!(c.socketio.max_pending_sessions, 10_000);
        assert_eq!(c.socketio.max_pending_sessions_per_ip, 256);
        assert_eq!(c.heartbeat.interval(), Duration::from_secs(25));
        assert_eq!(c.heartbeat.timeout(), Duration::from_secs(60));
        assert_eq!(c.shutdown.grace(), Duration::from_secs(10));
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn default_has_no_key_and_fails_validation_clearly() {
        let err = Config::default().validate().unwrap_err();
        assert!(matches!(err, ConfigError::NoKey));
        let text = err.to_string();
        assert!(text.contains("auth.secret"), "{text}");
        assert!(text.contains("ROOMCAST_JWT_SECRET"), "{text}");
        assert!(text.contains("auth.public_key_file"), "{text}");
        assert!(text.contains("--dev"), "{text}");
    }

    #[test]
    fn dev_config_has_random_secret_and_api_key() {
        let (a, secret_a) = Config::dev();
        let (_, secret_b) = Config::dev();
        assert_ne!(secret_a, secret_b);
        assert_eq!(secret_a.len(), 43);
        assert_eq!(a.auth.secret, secret_a);
        assert_eq!(a.api.keys.len(), 1);
        a.validate().unwrap();
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let mut c = Config::default();
        c.auth.secret = "s3cr3t-value".into();
        c.api.keys.push("api-k3y".into());
        c.api.tenant_keys.push(TenantKey {
            tenant: "acme".into(),
            key: "tenant-k3y".into(),
        });
        c.api.metrics_key = "metrics-k3y".into();
        let text = format!("{c:?}");
        for secret in ["s3cr3t-value", "api-k3y", "tenant-k3y", "metrics-k3y"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("acme"));
    }

    #[test]
    fn example_file_parses_and_validates_once_a_secret_is_present() {
        let example = include_str!("../../../../roomcast.example.toml");
        let mut config = Config::from_toml_str(example).unwrap();
        assert!(matches!(config.validate(), Err(ConfigError::NoKey)));
        config.auth.secret = "a-secret-for-the-example".into();
        config.validate().unwrap();
        // The example documents the defaults; it must not drift from them.
        let mut expected = Config::default();
        expected.auth.secret = config.auth.secret.clone();
        assert_eq!(config, expected);
    }
}
