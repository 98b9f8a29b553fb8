//! [`Config`]: the settings of an Engine.IO or Socket.IO endpoint, with the reference
//! server's defaults, and [`Cors`] for polling requests from browsers on other origins.

use std::time::Duration;

use roomcast_engine::body::BodyBudget;
use roomcast_engine::driver::DriverConfig;
use roomcast_engine::ws::{ConnConfig, FrameLimits};
use roomcast_engine::QueueLimits;

use crate::engineio::SessionConfig;

/// The longest duration taken from a configuration or a caller: longer ones count as this
/// long, so that adding one to an `Instant` cannot overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `d`, at most [`MAX_DURATION`].
pub(crate) fn bounded(d: Duration) -> Duration {
    d.min(MAX_DURATION)
}

/// The close code and reason of a WebSocket whose queue overflowed (the same code as native
/// connections, see `protocol/codes.md`).
const SLOW_CONSUMER: (u16, &str) = (4008, "slow consumer");
/// The close code and reason of a WebSocket silent past the transport's idle timeout.
const HEARTBEAT_TIMEOUT: (u16, &str) = (4000, "heartbeat timeout");

/// Settings of one endpoint. `Default` gives the reference server's values. Durations longer
/// than a year count as a year.
#[derive(Debug, Clone)]
pub struct Config {
    /// The path prefix served. Default: `/socket.io/`.
    pub path: String,
    /// More path prefixes served as [`path`](Self::path) is, by the same endpoint: the same
    /// sessions and namespaces, for clients written against another mount point. Default:
    /// none.
    pub extra_paths: Vec<String>,
    /// How often the server pings. Default: 25 s.
    pub ping_interval: Duration,
    /// How long the server waits for a pong. Default: 20 s.
    pub ping_timeout: Duration,
    /// The largest polling payload and message, in bytes, both ways. Default: 1 000 000.
    pub max_payload: usize,
    /// How long a new connection has to join a namespace before it is closed (Socket.IO
    /// only). Default: 45 s.
    pub connect_timeout: Duration,
    /// How long a client has to complete an upgrade to WebSocket. Default: 10 s.
    pub upgrade_timeout: Duration,
    /// Cross-origin access for polling requests. Default: none (no CORS headers).
    pub cors: Cors,
    /// Bounds of each session's outgoing queue; past them the client is closed as a slow
    /// consumer. Default: [`QueueLimits::default`] (1024 messages, 4 MiB).
    pub queue: QueueLimits,
    /// The WebSocket transport's settings. Default: frames and messages up to 1 000 000 bytes,
    /// WebSocket pings after 25 s of silence, closed after 60 s (the Engine.IO heartbeat
    /// normally keeps the connection busier than that).
    pub ws: ConnConfig,
    /// Connection state recovery (Socket.IO only). Not implemented: must be `false`.
    /// Default: `false`.
    pub recovery: bool,
    /// How long a polling `POST` body may take to arrive whole; past it the request is
    /// answered 408 and the session closes. Default: 10 s.
    pub body_timeout: Duration,
    /// The bytes of request bodies being read at once; a `POST` that does not fit is answered
    /// 503 at once and its session closes. Clones of a budget share it: give the same one to
    /// everything that reads bodies in the process. Default: a budget of its own, 64 MiB.
    pub body_budget: BodyBudget,
    /// Most sessions handshaken and not yet past their application's admission (Socket.IO:
    /// connected to no namespace yet); past it a handshake is answered 503. `0`: no bound.
    /// Default: 10 000.
    pub max_pending_sessions: usize,
    /// [`max_pending_sessions`](Self::max_pending_sessions) per client address (a
    /// [`ClientAddr`](crate::engine::ClientAddr) in the request's extensions); past it a
    /// handshake is answered 429. `0`: no bound. Behind a reverse proxy every client has the
    /// proxy's address. Default: 256.
    pub max_pending_sessions_per_ip: usize,
}

impl Default for Config {
    fn default() -> Self {
        let max_payload = 1_000_000;
        Self {
            path: "/socket.io/".to_owned(),
            extra_paths: Vec::new(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload,
            connect_timeout: Duration::from_secs(45),
            upgrade_timeout: Duration::from_secs(10),
            cors: Cors::default(),
            queue: QueueLimits::default(),
            ws: ConnConfig {
                limits: FrameLimits {
                    max_frame: max_payload,
                    max_message: max_payload,
                },
                ..ConnConfig::default()
            },
            recovery: false,
            body_timeout: roomcast_engine::body::DEFAULT_TIMEOUT,
            body_budget: BodyBudget::default(),
            max_pending_sessions: 10_000,
            max_pending_sessions_per_ip: 256,
        }
    }
}

impl Config {
    /// The settings of each Engine.IO session.
    pub(crate) fn session(&self) -> SessionConfig {
        SessionConfig {
            ping_interval: bounded(self.ping_interval),
            ping_timeout: bounded(self.ping_timeout),
            max_payload: self.max_payload,
            upgrade_timeout: bounded(self.upgrade_timeout),
            ..SessionConfig::default()
        }
    }

    /// The settings of each WebSocket transport's driver.
    pub(crate) fn driver(&self) -> DriverConfig {
        DriverConfig {
            conn: self.ws.clone(),
            slow_consumer: SLOW_CONSUMER,
            heartbeat_timeout: HEARTBEAT_TIMEOUT,
        }
    }

    /// Whether `path` (without the query) is served by this endpoint: it starts with
    /// [`path`](Self::path) or one of the [`extra_paths`](Self::extra_paths), or is one of them
    /// without its trailing slash.
    pub(crate) fn matches(&self, path: &str) -> bool {
        std::iter::once(&self.path)
            .chain(&self.extra_paths)
            .any(|prefix| path.starts_with(prefix.as_str()) || path == prefix.trim_end_matches('/'))
    }
}

/// Cross-origin resource sharing for polling requests. WebSocket upgrades are not subject to
/// CORS; check their `Origin` in the handler when it matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    /// The origins allowed (`https://app.example.com`), compared exactly; `"*"` allows any
    /// origin (the request's origin is reflected). Empty: no CORS headers at all. Default:
    /// empty.
    pub allowed_origins: Vec<String>,
    /// Whether to send `Access-Control-Allow-Credentials: true` (cookies, HTTP auth).
    /// Default: false.
    pub credentials: bool,
}

impl Cors {
    /// Whether a request from `origin` gets CORS headers.
    pub(crate) fn allows(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_matching() {
        let config = Config::default();
        assert!(config.matches("/socket.io/"));
        assert!(config.matches("/socket.io"));
        assert!(config.matches("/socket.io/extra"));
        assert!(!config.matches("/socket.iox"));
        assert!(!config.matches("/"));
        let ws = Config {
            path: "/ws/".into(),
            ..Config::default()
        };
        assert!(ws.matches("/ws/") && ws.matches("/ws") && !ws.matches("/wss"));
    }

    #[test]
    fn extra_paths_are_matched_as_the_path_is() {
        let config = Config {
            extra_paths: vec!["/ws/socket.io/".into()],
            ..Config::default()
        };
        for served in [
            "/socket.io/",
            "/socket.io",
            "/ws/socket.io/",
            "/ws/socket.io",
        ] {
            assert!(config.matches(served), "{served}");
        }
        for other in ["/ws", "/ws/", "/ws/socket.iox", "/api/socket.io/", "/"] {
            assert!(!config.matches(other), "{other}");
        }
    }

    #[test]
    fn cors_origins() {
        let none = Cors::default();
        assert!(!none.allows("https://a.example"));
        let some = Cors {
            allowed_origins: vec!["https://a.example".into()],
            credentials: false,
        };
        assert!(some.allows("https://a.example"));
        assert!(!some.allows("https://b.example"));
        let any = Cors {
            allowed_origins: vec!["*".into()],
            credentials: true,
        };
        assert!(any.allows("https://b.example"));
    }

    #[test]
    fn session_settings_follow_the_config() {
        let config = Config {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            ..Config::default()
        };
        let session = config.session();
        assert_eq!(session.ping_interval, Duration::from_millis(300));
        assert_eq!(session.ping_timeout, Duration::from_millis(200));
        assert_eq!(session.max_payload, 1_000_000);
        assert!(session.allow_upgrades);
        assert_eq!(config.driver().conn.limits.max_message, 1_000_000);
    }
}
