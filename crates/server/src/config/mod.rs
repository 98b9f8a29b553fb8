//! The server configuration: the `roomcast.toml` schema with its embedded defaults, the
//! loader that overlays `ROOMCAST_*` environment variables ([`Config::load`]), and the checks that
//! run before start ([`Config::validate`]). Every error names the key it is about.

mod load;
mod socketio;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use load::process_env;
pub use socketio::{
    ConnectErrorMessages, EmitTemplate, EventRoute, NamespaceConfig, RouteAction, SocketIoConfig,
};

/// The longest tenant name or user id accepted, in bytes; room keys and metrics labels embed them.
pub const MAX_ID_BYTES: usize = 128;

/// Why a configuration could not be loaded or was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file (or an environment value) is not valid TOML.
    #[error("{origin}: invalid TOML: {message}")]
    Parse {
        /// The file name, or the environment variable.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key that the schema does not have, e.g. `limits.nope`.
    #[error("{key}: unknown key{}", env_note(.env))]
    UnknownKey {
        /// The dotted path of the key, e.g. `limits.nope` or `rooms.acl[2].patern`.
        key: String,
        /// The environment variable that set it, when one did.
        env: Option<String>,
    },
    /// A key whose value has the wrong type or is out of range.
    #[error("{key}: {message}{}", env_note(.env))]
    Invalid {
        /// The dotted path of the key, e.g. `limits.max_connections`.
        key: String,
        /// What is wrong with it.
        message: String,
        /// The environment variable that set it, when one did.
        env: Option<String>,
    },
    /// An environment variable that cannot be applied (bad name, or a path through a non-table).
    #[error("{var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// No JWT secret or public key is configured: the server refuses to start.
    #[error("{}", NO_KEY_MESSAGE)]
    NoKey,
}

/// The text of [`ConfigError::NoKey`], also used by the token verifier.
pub(crate) const NO_KEY_MESSAGE: &str =
    "no JWT key configured: set auth.secret (or ROOMCAST_JWT_SECRET) \
     for HS256/HS384/HS512, or auth.public_key_file (or ROOMCAST_JWT_PUBLIC_KEY_FILE) with \
     auth.algorithm = \"RS256\", \"ES256\" or \"EdDSA\"; or run `roomcast --dev` for a throwaway \
     development secret";

fn env_note(env: &Option<String>) -> String {
    match env {
        Some(var) => format!(" (set by {var})"),
        None => String::new(),
    }
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
            env: None,
        }
    }
}

/// The whole configuration. Every key is optional: a missing one takes the default stated on it
/// ([`Config::default`] is exactly these defaults, without any JWT key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
        }
    }
}

/// The JWT signature algorithm. It is fixed by configuration: a token whose header names any
/// other algorithm (including `none`) is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `auth.secret`. The default.
    #[default]
    HS256,
    /// HMAC-SHA384 with `auth.secret`.
    HS384,
    /// HMAC-SHA512 with `auth.secret`.
    HS512,
    /// RSASSA-PKCS1-v1_5 SHA-256 with the RSA public key in `auth.public_key_file`.
    RS256,
    /// ECDSA P-256 SHA-256 with the EC public key in `auth.public_key_file`.
    ES256,
    /// Ed25519 with the public key in `auth.public_key_file`.
    EdDSA,
}

impl JwtAlgorithm {
    /// The name used in configuration and in the JWT `alg` header.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether the algorithm verifies with a shared secret (HS*) rather than a public key.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[auth]`: how client tokens are verified and turned into an identity.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Signature algorithm, one of `HS256`, `HS384`, `HS512`, `RS256`, `ES256`, `EdDSA`.
    /// Default `"HS256"`. Env: `ROOMCAST_JWT_ALGORITHM`.
    pub algorithm: JwtAlgorithm,
    /// Shared secret for HS* (its UTF-8 bytes are the HMAC key). Default `""` (none: the server
    /// refuses to start without a secret or key). Env: `ROOMCAST_JWT_SECRET`.
    pub secret: String,
    /// PEM public key file for RS256/ES256/EdDSA. Default `""`. Env: `ROOMCAST_JWT_PUBLIC_KEY_FILE`.
    pub public_key_file: String,
    /// Required `iss` value; `""` (the default) skips the issuer check.
    pub issuer: String,
    /// Required `aud` value; `""` (the default) skips the audience check.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default `30`.
    pub leeway_secs: u64,
    /// Whether tokens must carry `exp`. Default `true`.
    pub require_exp: bool,
    /// Claim holding the user id (string or integer). Default `"sub"`.
    pub user_claim: String,
    /// Claim holding the tenant (string or integer). Default `"tenant_id"`.
    pub tenant_claim: String,
    /// Tenant for tokens without the tenant claim; `""` (the default) makes the claim required.
    pub default_tenant: String,
    /// Claim holding the roles: a string or an array of strings. Default `"roles"`.
    pub roles_claim: String,
    /// Platform-admin role that may observe other tenants (e.g. `"super_admin"`); `""` (the
    /// default) means nobody may.
    pub admin_role: String,
    /// How long a connection may take to send its first `auth` frame, in milliseconds.
    /// Default `10000`.
    pub auth_timeout_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: String::new(),
            public_key_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway_secs: 30,
            require_exp: true,
            user_claim: "sub".into(),
            tenant_claim: "tenant_id".into(),
            default_tenant: String::new(),
            roles_claim: "roles".into(),
            admin_role: String::new(),
            auth_timeout_ms: 10_000,
        }
    }
}

impl AuthConfig {
    /// `auth_timeout_ms` as a duration.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }

    /// `leeway_secs` as a duration.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_secs)
    }
}

// Written by hand so that secrets never reach a log line.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithm", &self.algorithm)
            .field("secret", &redacted(&self.secret))
            .field("public_key_file", &self.public_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("require_exp", &self.require_exp)
            .field("user_claim", &self.user_claim)
            .field("tenant_claim", &self.tenant_claim)
            .field("default_tenant", &self.default_tenant)
            .field("roles_claim", &self.roles_claim)
            .field("admin_role", &self.admin_role)
            .field("auth_timeout_ms", &self.auth_timeout_ms)
            .finish()
    }
}

fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

/// `[api]`: the HTTP API's keys and limits.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Platform API keys (`Authorization: Bearer <key>`), allowed for every tenant and for
    /// platform-wide broadcasts. Default `[]`. Env: `ROOMCAST_API_KEY` (comma-separated, appended).
    pub keys: Vec<String>,
    /// Keys limited to one tenant. Default `[]`.
    pub tenant_keys: Vec<TenantKey>,
    /// Largest accepted request body, in bytes. Default `1048576` (1 MiB).
    pub max_body_bytes: usize,
    /// When non-empty, `GET /metrics` requires `Authorization: Bearer <metrics_key>`.
    /// Default `""` (metrics are public).
    pub metrics_key: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            keys: Vec::new(),
            tenant_keys: Vec::new(),
            max_body_bytes: 1024 * 1024,
            metrics_key: String::new(),
        }
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("tenant_keys", &self.tenant_keys)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("metrics_key", &redacted(&self.metrics_key))
            .finish()
    }
}

/// One entry of `api.tenant_keys`: an API key that may only touch one tenant.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantKey {
    /// The tenant this key is limited to. Required (default `""` is rejected).
    pub tenant: String,
    /// The key itself. Required (default `""` is rejected).
    pub key: String,
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKey")
            .field("tenant", &self.tenant)
            .field("key", &redacted(&self.key))
            .finish()
    }
}

/// `[rooms]`: rooms joined on connect and the ACL for client subscribe and publish.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// Claim templates rendered on connect; each rendered room is joined (an array claim gives
    /// one room per element, a missing claim none). Default `["user:{sub}", "tenant:{tenant_id}"]`.
    pub auto_join: Vec<String>,
    /// Most rooms one connection may be in, auto-joined ones included. Default `256`.
    pub max_per_connection: usize,
    /// Rules for the rooms clients may subscribe or publish to. Default `[]`.
    pub acl: Vec<AclRule>,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            auto_join: vec!["user:{sub}".into(), "tenant:{tenant_id}".into()],
            max_per_connection: 256,
            acl: Vec::new(),
        }
    }
}

/// One entry of `rooms.acl`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclRule {
    /// Room pattern: literal text, `{claim}` placeholders matched literally against the
    /// connection's claims, and `*` matching any run of characters. Required.
    pub pattern: String,
    /// Whether matching rooms may be subscribed to. Default `true`.
    pub subscribe: bool,
    /// Whether clients may publish to matching rooms. Default `false`.
    pub publish: bool,
    /// Namespace the rule applies to (e.g. `"/dashboard"`); `""` (the default) means any.
    pub namespace: String,
}

impl Default for AclRule {
    fn default() -> Self {
        AclRule {
            pattern: String::new(),
            subscribe: true,
            publish: false,
            namespace: String::new(),
        }
    }
}

/// `[limits]`: bounds on connections, inbound rates, sizes and outbound queues.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most concurrent connections on this node. Default `100000`.
    pub max_connections: usize,
    /// Most concurrent connections per tenant; `0` (the default) means unlimited.
    pub max_connections_per_tenant: usize,
    /// Most concurrent connections per user; `0` (the default) means unlimited.
    pub max_connections_per_user: usize,
    /// Inbound messages per second per connection (token bucket refill). Default `50`.
    pub messages_per_second: u32,
    /// Token bucket size: inbound messages allowed in a burst. Default `100`.
    pub messages_burst: u32,
    /// Protocol violations (bad requests, rate overruns) before the connection is closed with
    /// 4006. Default `10`.
    pub max_violations: u32,
    /// Largest inbound message, after reassembling fragments, in bytes. Default `65536`.
    pub max_message_bytes: usize,
    /// Largest inbound WebSocket frame, in bytes. Default `65536`.
    pub max_frame_bytes: usize,
    /// Largest `data` of a client `publish`, in bytes (at most `max_message_bytes`); a larger
    /// one is refused with `payload_too_large`. Default `32768`.
    pub max_publish_bytes: usize,
    /// Outbound queue bound per connection, in messages. Default `1024`.
    pub queue_messages: usize,
    /// Outbound queue bound per connection, in bytes. Default `4194304` (4 MiB).
    pub queue_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 100_000,
            max_connections_per_tenant: 0,
            max_connections_per_user: 0,
            messages_per_second: 50,
            messages_burst: 100,
            max_violations: 10,
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 64 * 1024,
            max_publish_bytes: 32 * 1024,
            queue_messages: 1024,
            queue_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `[heartbeat]`: server pings and the silence after which a connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// Interval between server pings, in milliseconds. Default `25000`.
    pub interval_ms: u64,
    /// A connection silent for this long is closed, in milliseconds. Default `60000`.
    pub timeout_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval_ms: 25_000,
            timeout_ms: 60_000,
        }
    }
}

impl HeartbeatConfig {
    /// `interval_ms` as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `[shutdown]`: graceful shutdown on SIGTERM/SIGINT.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long to drain connections before exiting, in milliseconds. Default `10000`.
    pub grace_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_ms: 10_000 }
    }
}

impl ShutdownConfig {
    /// `grace_ms` as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Log filter: a level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or
    /// comma-separated `target=level` directives. Default `"info"`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Configuration for `roomcast --dev`: the embedded defaults with a random HS256 secret and
    /// a random platform API key (`api.keys[0]`). Returns the config and the secret.
    pub fn dev() -> (Config, String) {
        Config::default().into_dev()
    }

    /// Turns this configuration into a development one: HS256 with a fresh random secret (any
    /// public key file is dropped), and a random platform API key appended to `api.keys` when
    /// it has none. Returns the config and the secret.
    pub fn into_dev(mut self) -> (Config, String) {
        let secret = random_token();
        self.auth.algorithm = JwtAlgorithm::HS256;
        self.auth.secret = secret.clone();
        self.auth.public_key_file.clear();
        if self.api.keys.is_empty() {
            self.api.keys.push(format!("dev-{}", random_token()));
        }
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
    use super::*;

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
        assert_eq!(c.heartbeat.interval(), Duration::from_secs(25));
        assert_eq!(c.heartbeat.timeout(), Duration::from_secs(60));
        assert_eq!(c.shutdown.grace(), Duration::from_secs(10));
        assert_eq!(c.log.level, "info");
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
