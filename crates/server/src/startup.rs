//! What a starting server says about itself, and how: the log subscriber ([`init_logging`]:
//! stderr, text or JSON), one `info` line naming the address it listens on and what is on
//! (authentication, API keys and routes, Socket.IO, cluster, ingestion, inbox, lifecycle
//! webhook) without a secret, and a warning when the HTTP API has no key.

use std::net::SocketAddr;

use crate::config::{redacted_url, Config, LogConfig, LogFormat, ProxyMode, RouteAuth};

/// Installs the process's log subscriber: stderr, filtered by `ROOMCAST_LOG_FILTER` or else
/// `log.level`, as text or JSON lines (`log.format`). Call it once.
pub fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROOMCAST_LOG_FILTER")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The facts of the startup line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    listen: SocketAddr,
    auth: &'static str,
    connect_proxy: Option<&'static str>,
    api_keys: usize,
    tenant_keys: usize,
    /// `[[api.routes]]`, and of them those answered without a key.
    api_routes: (usize, usize),
    socketio_path: Option<String>,
    /// `socketio.extra_paths`, separated by commas; `None` without any.
    socketio_extra_paths: Option<String>,
    cluster: Option<(String, String)>,
    ingest_sources: usize,
    inbox: Option<(&'static str, String)>,
    lifecycle_webhook: bool,
}

impl Summary {
    /// The summary of a server started from `config`, bound to `listen`, known in its cluster
    /// as `node` and with its inbox (when on) in a database of kind `inbox_kind`.
    pub(crate) fn new(
        config: &Config,
        listen: SocketAddr,
        node: &str,
        inbox_kind: Option<&'static str>,
    ) -> Summary {
        let keyless = config.auth.secret.is_empty() && config.auth.public_key_file.is_empty();
        Summary {
            listen,
            // A proxy deciding every client reads no token, whatever the algorithm says.
            auth: if config.proxy_only() && keyless {
                "connect_proxy"
            } else {
                config.auth.algorithm.as_str()
            },
            connect_proxy: config.auth.connect_proxy.as_ref().map(|p| match p.mode {
                ProxyMode::Fallback => "fallback",
                ProxyMode::Only => "only",
            }),
            api_keys: config.api.keys.len(),
            tenant_keys: config.api.tenant_keys.len(),
            api_routes: (
                config.api.routes.len(),
                config
                    .api
                    .routes
                    .iter()
                    .filter(|r| r.auth == RouteAuth::None)
                    .count(),
            ),
            socketio_path: config
                .socketio
                .enabled
                .then(|| config.socketio.engine_path()),
            socketio_extra_paths: (config.socketio.enabled
                && !config.socketio.extra_paths.is_empty())
            .then(|| config.socketio.extra_engine_paths().join(",")),
            cluster: config
                .cluster
                .as_ref()
                .map(|c| (node.to_owned(), redacted_url(&c.redis))),
            ingest_sources: config.ingest.amqp.len(),
            inbox: config.inbox.as_ref().map(|i| {
                let kind = inbox_kind.unwrap_or_else(|| database_kind(&i.database));
                (kind, redacted_url(&i.database))
            }),
            lifecycle_webhook: config.lifecycle.webhook.is_some(),
        }
    }

    /// Whether no API key of either kind is configured: every HTTP API call is then refused.
    pub(crate) fn no_api_key(&self) -> bool {
        self.api_keys == 0 && self.tenant_keys == 0
    }

    /// Logs the line, and the warning when there is no API key.
    pub(crate) fn log(&self) {
        tracing::info!(
            listen = %self.listen,
            auth = self.auth,
            connect_proxy = self.connect_proxy,
            api_keys = self.api_keys,
            tenant_keys = self.tenant_keys,
            api_routes = self.api_routes.0,
            api_routes_without_key = self.api_routes.1,
            socketio = self.socketio_path.is_some(),
            socketio_path = self.socketio_path.as_deref(),
            socketio_extra_paths = self.socketio_extra_paths.as_deref(),
            cluster = self.cluster.is_some(),
            node = self.cluster.as_ref().map(|c| c.0.as_str()),
            redis = self.cluster.as_ref().map(|c| c.1.as_str()),
            ingest_sources = self.ingest_sources,
            inbox = self.inbox.is_some(),
            inbox_database = self.inbox.as_ref().map(|i| i.0),
            inbox_url = self.inbox.as_ref().map(|i| i.1.as_str()),
            lifecycle_webhook = self.lifecycle_webhook,
            "listening"
        );
        if self.no_api_key() {
            tracing::warn!(
                "no API key configured (api.keys, api.tenant_keys or ROOMCAST_API_KEY): every \
                 HTTP API call will be refused"
            );
        }
    }
}

/// The kind of an inbox database URL, as the inbox's store names it.
fn database_kind(url: &str) -> &'static str {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        "postgres"
    } else {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    #[test]
    fn the_defaults_are_one_node_with_socketio_and_no_key() {
        let summary = Summary::new(&Config::default(), addr(), "standalone", None);
        assert_eq!(
            summary,
            Summary {
                listen: addr(),
                auth: "HS256",
                connect_proxy: None,
                api_keys: 0,
                tenant_keys: 0,
                api_routes: (0, 0),
                socketio_path: Some("/socket.io/".into()),
                socketio_extra_paths: None,
                cluster: None,
                ingest_sources: 0,
                inbox: None,
                lifecycle_webhook: false,
            }
        );
        assert!(summary.no_api_key());
    }

    #[test]
    fn what_is_on_is_named_without_credentials() {
        let config = Config::from_toml_str(
            r#"
            [auth]
            algorithm = "RS256"
            public_key_file = "jwt.pub.pem"
            [api]
            tenant_keys = [{ tenant = "acme", key = "k" }]
            [[api.routes]]
            path = "/up"
            operation = "health"
            auth = "none"
            [[api.routes]]
            path = "/who"
            operation = "connections"
            [socketio]
            enabled = false
            [cluster]
            redis = "redis://:pa55@redis.example:6379/0"
            [inbox]
            database = "postgres://app:pa55@db.example/roomcast"
            [lifecycle.webhook]
            url = "http://127.0.0.1:1/hook"
            secret = "0123456789abcdef"
            "#,
        )
        .unwrap();
        let summary = Summary::new(&config, addr(), "node-a", None);
        assert_eq!(summary.auth, "RS256");
        assert!(!summary.no_api_key());
        assert_eq!(summary.api_routes, (2, 1));
        assert_eq!(summary.socketio_path, None);
        assert_eq!(summary.socketio_extra_paths, None);
        assert_eq!(
            summary.cluster,
            Some(("node-a".into(), "redis://***@redis.example:6379/0".into()))
        );
        assert_eq!(
            summary.inbox,
            Some(("postgres", "postgres://***@db.example/roomcast".into()))
        );
        assert!(summary.lifecycle_webhook);
        assert!(!format!("{summary:?}").contains("pa55"));
    }

    #[test]
    fn extra_socketio_paths_are_named() {
        let config = Config::from_toml_str(
            "[socketio]\npath = \"/socket.io\"\nextra_paths = [\"/ws/socket.io\", \"/rt/\"]",
        )
        .unwrap();
        let summary = Summary::new(&config, addr(), "standalone", None);
        assert_eq!(summary.socketio_path.as_deref(), Some("/socket.io/"));
        assert_eq!(
            summary.socketio_extra_paths.as_deref(),
            Some("/ws/socket.io/,/rt/")
        );
    }
}
