//! `[cluster]`: several nodes over Redis. Without this section the server is one node, in
//! memory.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[cluster]`: the Redis a node joins its cluster through, and the Socket.IO emitters whose
/// messages it takes. Present (even empty) means cluster mode.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The Redis URL: `redis://[[user:]password@]host[:port][/db]`, `rediss://` for TLS,
    /// `redis-cluster://host:port[?node=host:port...]` (or `rediss-cluster://`) for a Redis
    /// Cluster. Default `"redis://127.0.0.1:6379/0"`. Env: `ROOMCAST_CLUSTER__REDIS`.
    pub redis: String,
    /// This node's id, unique in the cluster. Default: generated at start.
    pub node_id: String,
    /// Prefix of every key and channel, so that clusters can share a Redis. Default
    /// `"roomcast"`.
    pub prefix: String,
    /// How often a node renews its registry entry, in ms. Default `2000`.
    pub heartbeat_ms: u64,
    /// How long a registry entry lives without renewal, in ms: a node that dies without
    /// warning leaves the registry at most this long after its last heartbeat. Default `6000`.
    pub node_ttl_ms: u64,
    /// How long a room's offset counter lives after its last publish, in ms; a later publish
    /// starts a new epoch. Default `86400000` (a day).
    pub stream_ttl_ms: u64,
    /// Deadline of every Redis command and of every request to other nodes, in ms (a
    /// starting node waits for Redis this long, and at least 10 s). Default `2000`.
    pub timeout_ms: u64,
    /// Which Redis shard channels carry publications: `"tenant"` (one per tenant) or
    /// `"room"` (one per room). Default `"tenant"`; see the README's cluster section.
    pub channels: ChannelsConfig,
    /// The Socket.IO emitters whose messages this cluster delivers (`[[cluster.emitters]]`).
    pub emitters: Vec<EmitterBinding>,
}

/// `cluster.channels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelsConfig {
    /// One channel per tenant.
    #[default]
    Tenant,
    /// One channel per room.
    Room,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: "redis://127.0.0.1:6379/0".into(),
            node_id: String::new(),
            prefix: "roomcast".into(),
            heartbeat_ms: 2_000,
            node_ttl_ms: 6_000,
            stream_ttl_ms: 86_400_000,
            timeout_ms: 2_000,
            channels: ChannelsConfig::Tenant,
            emitters: Vec::new(),
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    /// The Redis URL's password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis", &redacted_url(&self.redis))
            .field("node_id", &self.node_id)
            .field("prefix", &self.prefix)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("node_ttl_ms", &self.node_ttl_ms)
            .field("stream_ttl_ms", &self.stream_ttl_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("channels", &self.channels)
            .field("emitters", &self.emitters)
            .finish()
    }
}

/// A URL (Redis, database, AMQP, HTTP) without its credentials (`redis://***@host:port/db`),
/// and with the value of a `password` query parameter (which PostgreSQL URLs may carry)
/// hidden, for logs and messages.
pub fn redacted_url(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    };
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

impl ClusterConfig {
    /// `heartbeat_ms` as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// `node_ttl_ms` as a duration.
    pub fn node_ttl(&self) -> Duration {
        Duration::from_millis(self.node_ttl_ms)
    }

    /// `stream_ttl_ms` as a duration.
    pub fn stream_ttl(&self) -> Duration {
        Duration::from_millis(self.stream_ttl_ms)
    }

    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Which emitter library publishes on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EmitterKind {
    /// Node's `@socket.io/redis-emitter` (and `@socket.io/redis-adapter` servers).
    #[default]
    SocketIo,
    /// python-socketio's `RedisManager` and `AsyncRedisManager`.
    PythonSocketio,
}

/// `[[cluster.emitters]]`: one emitter's channels and the tenant its messages belong to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmitterBinding {
    /// `"socket-io"` (Node's emitter) or `"python-socketio"`. Default `"socket-io"`.
    pub kind: EmitterKind,
    /// The emitter's key (Node, default `"socket.io"`) or channel (Python, default
    /// `"socketio"`). Default: the library's own default.
    pub channel: String,
    /// Every message of this emitter belongs to this tenant. Set this or `tenant_from_room`.
    pub tenant: String,
    /// The tenant is read from the targeted room names with this pattern, holding
    /// `{tenant}` once (for example `"tenant:{tenant}"`); a message whose tenant cannot be read
    /// is dropped, logged and counted.
    pub tenant_from_room: String,
}

impl Default for EmitterBinding {
    fn default() -> Self {
        EmitterBinding {
            kind: EmitterKind::SocketIo,
            channel: String::new(),
            tenant: String::new(),
            tenant_from_room: String::new(),
        }
    }
}

impl EmitterBinding {
    /// The channel or key, with the library's default when unset.
    pub fn channel(&self) -> &str {
        match (self.channel.as_str(), self.kind) {
            ("", EmitterKind::SocketIo) => "socket.io",
            ("", EmitterKind::PythonSocketio) => "socketio",
            (channel, _) => channel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_password_stays_out_of_debug_output() {
        let c = ClusterConfig {
            redis: "rediss://user:pa55word@redis.example:6380/1".into(),
            ..ClusterConfig::default()
        };
        let text = format!("{c:?}");
        assert!(!text.contains("pa55word"), "{text}");
        assert!(text.contains("rediss://***@redis.example:6380/1"), "{text}");
        assert_eq!(redacted_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            redacted_url("postgres://h/db?sslmode=require&Password=pw&x=1"),
            "postgres://h/db?sslmode=require&Password=***&x=1"
        );
    }
}
