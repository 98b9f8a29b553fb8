//! [`ClusterOptions`]: what a node needs to join a cluster.

use std::sync::Arc;
use std::time::Duration;

use roomcast_broker::{HistoryPolicy, LogLimits};

/// A node's cluster settings, from the server's `[cluster]` section.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `redis://[[user:]password@]host[:port][/db]`, `rediss://` for TLS, and
    /// `redis-cluster://` or `rediss-cluster://` for a Redis Cluster (any one node).
    pub url: String,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// Prefix of every key and channel, so several clusters can share one Redis.
    pub prefix: String,
    /// How often the node renews its registry entry.
    pub heartbeat: Duration,
    /// How long an entry lives without renewal: a node killed without warning leaves the
    /// registry within this time after its last heartbeat.
    pub node_ttl: Duration,
    /// How long a room's offset counter lives after its last publish; a room published to
    /// after that starts a new epoch.
    pub stream_ttl: Duration,
    /// Deadline of every Redis command and of every request to other nodes.
    pub timeout: Duration,
    /// Which channels carry publications.
    pub channels: ChannelMode,
    /// The rooms that keep their last events (in a Redis stream each), `None`: none.
    pub history: Option<Arc<dyn HistoryPolicy>>,
    /// The recovery log's bounds (one Redis stream per tenant namespace), when Socket.IO
    /// connection state recovery is on; `None`: off.
    pub recovery: Option<LogLimits>,
}

/// Which channels carry publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelMode {
    /// One shard channel per tenant: a publication is one message, whatever its rooms; a
    /// node receives its tenants' events, rooms it has no member in included.
    #[default]
    Tenant,
    /// One shard channel per room (users, tenant-wide and platform-wide publications keep
    /// the tenant's and the platform's): a node receives only its rooms' events, and rooms
    /// spread over a Redis Cluster's shards; a publication to several rooms is one message
    /// per room, so a Socket.IO socket in several of them gets it once per room.
    Room,
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// The URL is not one Redis accepts.
    #[error("cluster.redis: {0}")]
    Url(String),
    /// The heartbeat does not fit in the TTL.
    #[error("cluster.heartbeat_ms must be less than cluster.node_ttl_ms")]
    Heartbeat,
    /// Recovery needs one order for all rooms of a tenant: one channel per tenant.
    #[error("socketio.recovery needs cluster.channels = \"tenant\" (one order per tenant)")]
    RecoveryChannels,
}

/// The least a starting node waits for Redis to answer.
const JOIN_WAIT: Duration = Duration::from_secs(10);

impl ClusterOptions {
    /// How long a starting node waits for Redis: `timeout`, and at least 10 s, so that a
    /// node starting with Redis (or on a busy machine) is not refused by a short deadline
    /// meant for commands.
    pub fn join_deadline(&self) -> Duration {
        self.timeout.max(JOIN_WAIT)
    }

    /// Checks the settings together.
    pub fn check(&self) -> Result<(), OptionsError> {
        fred::types::config::Config::from_url(&self.url)
            .map_err(|e| OptionsError::Url(e.details().to_string()))?;
        if self.heartbeat >= self.node_ttl {
            return Err(OptionsError::Heartbeat);
        }
        if self.recovery.is_some() && self.channels == ChannelMode::Room {
            return Err(OptionsError::RecoveryChannels);
        }
        Ok(())
    }

    /// Whether the URL names a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        let scheme = self.url.split("://").next().unwrap_or_default();
        scheme.ends_with("-cluster")
    }
}
