//! `[socketio]`: the Socket.IO v4 endpoint (Engine.IO path, heartbeat, payload size, CORS) and,
//! per namespace, the rooms joined on connect, the greeting, and the routes that turn events a
//! client emits into room joins, relays and replies. The routes are compiled and checked
//! when the server's plan is built, by the Socket.IO routing (`crate::sio::routing`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ConfigError, RecoveryConfig};

/// Paths Roomcast serves itself, which no Engine.IO path may shadow.
const TAKEN_PATHS: [&str; 4] = ["/ws", "/health", "/metrics", "/api"];

/// `[socketio]`: the Socket.IO endpoint and its namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketIoConfig {
    /// Whether Socket.IO clients are served. Default `true`.
    pub enabled: bool,
    /// The Engine.IO path, what `socket.io-client` calls `path` (the URL's own path is the
    /// namespace). A missing trailing `/` is added. Default `"/socket.io/"`.
    pub path: String,
    /// More Engine.IO paths serving the same Socket.IO server (its namespaces, rooms and
    /// sessions), for clients written against another mount point: `["/ws/socket.io/"]` beside
    /// `path = "/socket.io/"` serves both `io("http://host/ws", { path: "/socket.io" })` and
    /// `io("http://host/", { path: "/ws/socket.io" })`. Each follows the rules of `path`, and
    /// none may repeat another. Default `[]`.
    pub extra_paths: Vec<String>,
    /// Interval between Engine.IO pings, in milliseconds. Default `25000`.
    pub ping_interval_ms: u64,
    /// How long to wait for the pong before closing, in milliseconds. Default `20000`.
    pub ping_timeout_ms: u64,
    /// Largest Engine.IO message or polling request body, in bytes (`maxHttpBufferSize`).
    /// Default `1000000`.
    pub max_payload: usize,
    /// How long a client may take to connect to a namespace after the Engine.IO handshake, in
    /// milliseconds. Default `45000`.
    pub connect_timeout_ms: u64,
    /// Origins allowed by CORS, e.g. `["https://app.example.com"]`; `["*"]` allows any origin;
    /// `[]` (the default) sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// Whether CORS answers carry `Access-Control-Allow-Credentials: true` (not with `["*"]`).
    /// Default `false`.
    pub cors_credentials: bool,
    /// The namespaces served, with their event routes. Default `[]`: the main namespace `/` only,
    /// with `rooms.auto_join`, no greeting and no routes.
    pub namespaces: Vec<NamespaceConfig>,
    /// Most Engine.IO sessions handshaken but connected to no namespace yet (not
    /// authenticated), all clients together; past it a handshake is answered 503. `0`: no
    /// bound. Default `10000`.
    pub max_pending_sessions: usize,
    /// Most such sessions per client address; past it a handshake is answered 429. `0`: no
    /// bound. Behind a reverse proxy every client has the proxy's address: raise it or set
    /// `0`. Default `256`.
    pub max_pending_sessions_per_ip: usize,
    /// `[socketio.errors]`: the messages of refused `CONNECT`s. Default: see
    /// [`ConnectErrorMessages`].
    pub errors: ConnectErrorMessages,
    /// `[socketio.recovery]`: connection state recovery. Default: off.
    pub recovery: RecoveryConfig,
}

/// `[socketio.errors]`: the `message` of the `CONNECT_ERROR` for each refusal of a `CONNECT`,
/// what `socket.io-client` gives its `connect_error` handler as `err.message` (seed 004's
/// client compares it with `"Authentication required"` and `"Invalid or expired token"`).
/// The refusals and their answers are listed in `protocol/socketio.md`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectErrorMessages {
    /// No token (in the `auth` payload, `Authorization: Bearer`, or `?token=`). Default
    /// `"authentication required"`.
    pub token_missing: String,
    /// A token that fails validation other than by expiry (signature, algorithm, claims, `nbf`,
    /// issuer, audience). Default: unset, the specific reason (`"invalid signature"`,
    /// `"malformed token"`, `"missing claim"`...).
    pub token_invalid: Option<String>,
    /// A token already expired (past `exp` plus the leeway). Default `"token expired"`.
    pub token_expired: String,
    /// A global, tenant or user connection limit. Default: unset, the limit's own message
    /// (`"user connection limit reached"`...).
    pub connection_limit: Option<String>,
    /// The server is shutting down. Default `"server shutting down"`.
    pub shutting_down: String,
}

impl Default for ConnectErrorMessages {
    fn default() -> Self {
        ConnectErrorMessages {
            token_missing: "authentication required".into(),
            token_invalid: None,
            token_expired: "token expired".into(),
            connection_limit: None,
            shutting_down: "server shutting down".into(),
        }
    }
}

impl ConnectErrorMessages {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, message) in [
            ("token_missing", Some(&self.token_missing)),
            ("token_invalid", self.token_invalid.as_ref()),
            ("token_expired", Some(&self.token_expired)),
            ("connection_limit", self.connection_limit.as_ref()),
            ("shutting_down", Some(&self.shutting_down)),
        ] {
            if message.is_some_and(|m| m.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    format!("socketio.errors.{key}"),
                    "must not be empty: clients tell refusals apart by it",
                ));
            }
        }
        Ok(())
    }
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            enabled: true,
            path: "/socket.io/".into(),
            extra_paths: Vec::new(),
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            max_payload: 1_000_000,
            connect_timeout_ms: 45_000,
            cors_origins: Vec::new(),
            cors_credentials: false,
            namespaces: Vec::new(),
            max_pending_sessions: 10_000,
            max_pending_sessions_per_ip: 256,
            errors: ConnectErrorMessages::default(),
            recovery: RecoveryConfig::default(),
        }
    }
}

impl SocketIoConfig {
    /// `path` with its trailing `/`, as requests are matched against it.
    pub fn engine_path(&self) -> String {
        with_slash(&self.path)
    }

    /// `extra_paths`, each with its trailing `/`, as requests are matched against them.
    pub fn extra_engine_paths(&self) -> Vec<String> {
        self.extra_paths.iter().map(|p| with_slash(p)).collect()
    }

    /// `ping_interval_ms` as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// `ping_timeout_ms` as a duration.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    /// `connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Whether CORS allows any origin (`cors_origins = ["*"]`).
    pub fn cors_any_origin(&self) -> bool {
        self.cors_origins.iter().any(|o| o == "*")
    }

    /// Checks the section's own settings (paths, numbers, CORS); its namespaces and routes are
    /// compiled, and checked, when the server's plan is built. Errors name the key
    /// (`socketio.cors_origins[1]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_paths()?;
        for (key, value) in [
            ("socketio.ping_interval_ms", self.ping_interval_ms),
            ("socketio.ping_timeout_ms", self.ping_timeout_ms),
            ("socketio.max_payload", self.max_payload as u64),
            ("socketio.connect_timeout_ms", self.connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be > 0"));
            }
        }
        self.validate_cors()?;
        self.errors.validate()?;
        self.recovery.validate()
    }

    fn validate_paths(&self) -> Result<(), ConfigError> {
        validate_path("socketio.path", &self.path)?;
        let mut served = vec![self.engine_path()];
        for (i, path) in self.extra_paths.iter().enumerate() {
            let key = format!("socketio.extra_paths[{i}]");
            validate_path(&key, path)?;
            let path = with_slash(path);
            if served.contains(&path) {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{path}` is served already, by `path` or an earlier entry"),
                ));
            }
            served.push(path);
        }
        Ok(())
    }

    fn validate_cors(&self) -> Result<(), ConfigError> {
        for (i, origin) in self.cors_origins.iter().enumerate() {
            let key = format!("socketio.cors_origins[{i}]");
            if origin == "*" {
                if self.cors_origins.len() > 1 {
                    return Err(ConfigError::invalid(
                        key,
                        "\"*\" allows every origin and must be the only entry",
                    ));
                }
                continue;
            }
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = rest.is_some_and(|host| {
                !host.is_empty()
                    && !host.contains('/')
                    && !host
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#'))
            });
            if !valid {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "`{origin}` is not an origin: write scheme://host[:port] without a path, \
                         e.g. \"https://app.example.com\", or \"*\""
                    ),
                ));
            }
        }
        if self.cors_credentials && self.cors_any_origin() {
            return Err(ConfigError::invalid(
                "socketio.cors_credentials",
                "cannot be true with cors_origins = [\"*\"]: browsers refuse credentials for any \
                 origin; list the origins instead",
            ));
        }
        Ok(())
    }
}

/// `path` with a trailing `/`.
fn with_slash(path: &str) -> String {
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}

/// Checks one Engine.IO path; `key` names it in errors.
fn validate_path(key: &str, path: &str) -> Result<(), ConfigError> {
    let bad = |message: &str| Err(ConfigError::invalid(key, message));
    if !path.starts_with('/') {
        return bad("must start with `/`, e.g. \"/socket.io/\"");
    }
    if path == "/" || path.contains("//") {
        return bad("must name a path below `/`, e.g. \"/socket.io/\"");
    }
    if path
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '%'))
    {
        return bad("must not contain spaces, control characters, `?`, `#` or `%`");
    }
    let trimmed = path.trim_end_matches('/');
    if let Some(taken) = TAKEN_PATHS
        .iter()
        .find(|t| trimmed == **t || (**t == "/api" && trimmed.starts_with("/api/")))
    {
        return bad(&format!("`{taken}` is served by Roomcast itself"));
    }
    Ok(())
}

/// One entry of `socketio.namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceConfig {
    /// The namespace, e.g. `"/"` or `"/provisioning"`. Required. It is a dimension of the room
    /// key: rooms of different namespaces are different rooms.
    pub name: String,
    /// Other names clients may connect with that mean this namespace (same rooms, same routes),
    /// e.g. `["/ws/provisioning"]` for clients that put a mount prefix in the URL, which
    /// `socket.io-client` reads as part of the namespace. Default `[]`.
    pub aliases: Vec<String>,
    /// Claim templates of the rooms joined on connect to this namespace, as `rooms.auto_join`.
    /// Default: `rooms.auto_join`.
    pub auto_join: Option<Vec<String>>,
    /// Event sent to the client once it is connected to the namespace, e.g.
    /// `{ event = "connected", data = { user_id = "{sub}" } }`. Its data may use claims,
    /// `{socket.id}` and `{now}`. Default: none.
    pub greeting: Option<EmitTemplate>,
    /// How refusals are told (a room the ACL refuses, a missing argument), for routes without
    /// their own `error`; `{error}` is the message. With an ack requested, the data answers
    /// the ack instead. Default `{ event = "error", data = { message = "{error}" } }`.
    pub error: Option<EmitTemplate>,
    /// What client-emitted events do. An event without a route is ignored. Default `[]`.
    pub events: Vec<EventRoute>,
}

/// One entry of `socketio.namespaces[].events`: what an event emitted by a client does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventRoute {
    /// The event name, e.g. `"subscribe_tenant_updates"`. Required.
    pub event: String,
    /// `join`, `leave`, `relay`, `reply` or `rpc`. Required.
    pub action: Option<RouteAction>,
    /// Template of the room, for `join`, `leave` and `relay`, e.g. `"tenant:{args.0.tenant_id}"`.
    /// Every placeholder must give a non-empty string or a number, else the event is refused.
    pub room: String,
    /// `join` and `leave` only: template of the tenant whose room it is, e.g.
    /// `"{args.0.tenant}"`, for the platform-admin role (`auth.admin_role`) to observe other
    /// tenants, as the native `subscribe` does with its `tenant` field. A tenant other than the
    /// socket's own is refused to every other token, and then the room ACL does not apply (it
    /// speaks of the token's own tenant). Rendered empty (a missing argument): the socket's own
    /// tenant. Default `""`: always the socket's own tenant.
    pub tenant: String,
    /// Answer to the sender once the action is done, e.g.
    /// `{ event = "subscribed", data = { tenant_id = "{args.0.tenant_id}" } }`. When the client
    /// asked for an ack, `data` answers the ack instead of the event; without `event`, only acks
    /// are answered. Default: none (a requested ack is answered with no arguments).
    pub reply: Option<EmitTemplate>,
    /// `relay` only: what the room receives. `event` defaults to the route's event and `data` to
    /// the client's own arguments, unchanged. Default: none (relay the event as it came).
    pub relay: Option<EmitTemplate>,
    /// `relay` only: receivers whose queue is full miss the event instead of being disconnected
    /// (typing indicators). Default `false`.
    pub volatile: bool,
    /// How a refusal of this event is told; see [`NamespaceConfig::error`]. Default: the
    /// namespace's. For `rpc`, a backend's refusal and its failures are told so too.
    pub error: Option<EmitTemplate>,
    /// `rpc` only: the backend of `[rpc.backends]` the event is posted to. Required for `rpc`.
    pub backend: String,
    /// `rpc` only: appended to the backend's `url`, e.g. `"/data-refresh"`. Default `""`.
    pub path: String,
    /// `inbox` only: what is done with the sender's inbox: `counts`, `list`, `read`, `dismiss`
    /// or `read_all`. Required for `inbox`.
    pub op: Option<super::InboxOp>,
    /// `inbox` only, `read` and `dismiss`: template of the notification's id. Default
    /// `"{args.0.notification_id}"`.
    pub notification: String,
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RouteAction {
    /// Join the sender to `room`, under the room ACL (subscribe).
    Join,
    /// Remove the sender from `room`.
    Leave,
    /// Send the event to `room`, except to the sender, under the room ACL (publish).
    Relay,
    /// Only answer (`reply`), e.g. `ping` -> `pong`.
    Reply,
    /// Post the event to a backend (`backend`, `path`) and answer with its result: `reply`
    /// renders `{result}`, and sends the result itself when it has no `data`.
    Rpc,
    /// Act on the sender's notification inbox (`op`) and answer with the result as `rpc`
    /// does: `reply` renders `{result}`.
    Inbox,
}

impl RouteAction {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteAction::Join => "join",
            RouteAction::Leave => "leave",
            RouteAction::Relay => "relay",
            RouteAction::Reply => "reply",
            RouteAction::Rpc => "rpc",
            RouteAction::Inbox => "inbox",
        }
    }
}

/// An event to send: its name and a JSON data template. In `data`, a string that is exactly one
/// placeholder keeps the JSON type of its value (`"{args.0.tenant_id}"` stays a number);
/// placeholders inside longer strings render as text; a missing value is `null`, or nothing
/// inside text. The Socket.IO routing module (`crate::sio::routing`) lists the placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmitTemplate {
    /// The event name. Required for `greeting` and `error`; optional for `reply` (ack only) and
    /// `relay` (the route's event).
    pub event: String,
    /// The event's single argument; absent: no argument (or, for `relay`, the client's own).
    pub data: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn error(text: &str) -> String {
        let mut config = match Config::from_toml_str(text) {
            Ok(config) => config,
            Err(e) => return e.to_string(),
        };
        config.auth.secret = "s".into();
        config.validate().unwrap_err().to_string()
    }

    fn valid(text: &str) -> Config {
        let mut config = Config::from_toml_str(text).unwrap();
        config.auth.secret = "s".into();
        config.validate().unwrap();
        config
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let c = SocketIoConfig::default();
        assert!(c.enabled);
        assert_eq!(c.engine_path(), "/socket.io/");
        assert_eq!(c.ping_interval(), Duration::from_secs(25));
        assert_eq!(c.ping_timeout(), Duration::from_secs(20));
        assert_eq!(c.max_payload, 1_000_000);
        assert_eq!(c.connect_timeout(), Duration::from_secs(45));
        assert!(c.cors_origins.is_empty() && !c.cors_credentials && !c.cors_any_origin());
        assert!(c.namespaces.is_empty());
        assert_eq!(c.errors.token_missing, "authentication required");
        assert_eq!(c.errors.token_invalid, None);
        assert_eq!(c.errors.token_expired, "token expired");
        assert_eq!(c.errors.connection_limit, None);
        assert_eq!(c.errors.shutting_down, "server shutting down");
        assert_eq!(Config::default().socketio, c);
    }

    #[test]
    fn a_full_section_parses() {
        let c = valid(
            r#"
            [socketio]
            path = "/ws/socket.io"
            cors_origins = ["https://app.example.com", "http://localhost:5173"]
            cors_credentials = true
            [[socketio.namespaces]]
            name = "/"
            aliases = ["/ws"]
            auto_join = ["user:{sub}"]
            greeting = { event = "connected", data = { user_id = "{sub}" } }
            [[socketio.namespaces.events]]
            event = "subscribe_tenant_updates"
            action = "join"
            room = "tenant:{args.0.tenant_id}"
            reply = { event = "subscribed", data = { tenant_id = "{args.0.tenant_id}" } }
            [[socketio.namespaces.events]]
            event = "typing"
            action = "relay"
            room = "chat:{args.0.roomId}"
            volatile = true
            [[socketio.namespaces]]
            name = "/provisioning"
            "#,
        );
        let s = &c.socketio;
        assert_eq!(s.engine_path(), "/ws/socket.io/");
        assert_eq!(s.namespaces.len(), 2);
        let route = &s.namespaces[0].events[0];
        assert_eq!(route.action, Some(RouteAction::Join));
        assert_eq!(
            route.reply.as_ref().map(|r| r.event.as_str()),
            Some("subscribed")
        );
        assert!(s.namespaces[0].events[1].volatile);
        assert_eq!(s.namespaces[1].auto_join, None);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        assert_eq!(
            error("[socketio]\npth = \"/x/\""),
            "socketio.pth: unknown key"
        );
        assert_eq!(
            error("[[socketio.namespaces]]\nname = \"/\"\nevnts = []"),
            "socketio.namespaces[0].evnts: unknown key"
        );
        assert_eq!(
            error(
                "[[socketio.namespaces]]\nname = \"/\"\n[[socketio.namespaces]]\nname = \"/a\"\n\
                 [[socketio.namespaces.events]]\nevent = \"e\"\naction = \"reply\"\nrum = \"x\""
            ),
            "socketio.namespaces[1].events[0].rum: unknown key"
        );
        let e = error(
            "[[socketio.namespaces]]\nname = \"/\"\n[[socketio.namespaces.events]]\n\
             event = \"e\"\naction = \"jion\"",
        );
        assert!(
            e.starts_with("socketio.namespaces[0].events[0].action: unknown variant `jion`"),
            "{e}"
        );
        let e = error(
            "[[socketio.namespaces]]\nname = \"/\"\n[[socketio.namespaces.events]]\n\
             event = \"e\"\naction = \"reply\"\nreply = { evnt = \"x\" }",
        );
        assert!(
            e.starts_with("socketio.namespaces[0].events[0].reply: unknown field"),
            "{e}"
        );
        let e = error("[socketio]\nping_interval_ms = \"soon\"");
        assert!(
            e.starts_with("socketio.ping_interval_ms: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn path_numbers_and_cors_are_checked() {
        for (bad, start) in [
            ("socket.io", "socketio.path: must start with `/`"),
            ("/", "socketio.path: must name a path"),
            ("/a b/", "socketio.path: must not contain"),
            ("/ws/", "socketio.path: `/ws` is served by Roomcast itself"),
            ("/api/sio/", "socketio.path: `/api` is served"),
        ] {
            let e = error(&format!("[socketio]\npath = \"{bad}\""));
            assert!(e.starts_with(start), "{bad}: {e}");
        }
        valid("[socketio]\npath = \"/ws/socket.io/\"");
        assert_eq!(
            error("[socketio]\nping_timeout_ms = 0"),
            "socketio.ping_timeout_ms: must be > 0"
        );
        let e = error("[socketio]\ncors_origins = [\"https://a.example/\"]");
        assert!(
            e.starts_with("socketio.cors_origins[0]: `https://a.example/` is not"),
            "{e}"
        );
        let e = error("[socketio]\ncors_origins = [\"https://a.example\", \"*\"]");
        assert!(e.starts_with("socketio.cors_origins[1]: \"*\""), "{e}");
        let e = error("[socketio]\ncors_origins = [\"*\"]\ncors_credentials = true");
        assert!(
            e.starts_with("socketio.cors_credentials: cannot be true"),
            "{e}"
        );
        let c = valid("[socketio]\ncors_origins = [\"*\"]");
        assert!(c.socketio.cors_any_origin());
    }

    #[test]
    fn connect_error_messages_are_configurable() {
        let c = valid(
            "[socketio.errors]\ntoken_missing = \"Authentication required\"\n\
             token_invalid = \"Invalid or expired token\"\n\
             token_expired = \"Invalid or expired token\"",
        );
        assert_eq!(c.socketio.errors.token_missing, "Authentication required");
        assert_eq!(
            c.socketio.errors.token_invalid.as_deref(),
            Some("Invalid or expired token")
        );
        assert_eq!(c.socketio.errors.shutting_down, "server shutting down");
        assert_eq!(
            error("[socketio.errors]\ntoken_expired = \" \""),
            "socketio.errors.token_expired: must not be empty: clients tell refusals apart by it"
        );
        let e = error("[socketio.errors]\ntoken_expird = \"x\"");
        assert!(
            e.starts_with("socketio.errors: unknown field `token_expird`"),
            "{e}"
        );
    }

    #[test]
    fn environment_variables_reach_the_section() {
        let env = vec![
            (
                "ROOMCAST_SOCKETIO__ENABLED".to_string(),
                "false".to_string(),
            ),
            ("ROOMCAST_SOCKETIO__PATH".to_string(), "/rt/".to_string()),
        ];
        let c = Config::load(None, env).unwrap();
        assert!(!c.socketio.enabled);
        assert_eq!(c.socketio.path, "/rt/");
    }
}
