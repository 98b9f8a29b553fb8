//! `[lifecycle]`: what becomes of the moments of a connection's life and of presence: a
//! session's connect and disconnect, a user's first and last connection (online, offline) and
//! a room's first and last member (occupied, vacated), cluster-wide. Each kind may go to an
//! HTTP webhook (`[lifecycle.webhook]`) and be published to rooms (`[[lifecycle.publish]]`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A moment of a connection's life, or of presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LifecycleKind {
    /// A session started (a native connection authenticated, a Socket.IO namespace joined).
    Connect,
    /// A session ended, with its reason.
    Disconnect,
    /// A user's first session in the cluster.
    UserOnline,
    /// A user's last session in the cluster ended.
    UserOffline,
    /// A room's first member in the cluster.
    RoomOccupied,
    /// A room's last member in the cluster left.
    RoomVacated,
}

impl LifecycleKind {
    /// Every kind.
    pub const ALL: [LifecycleKind; 6] = [
        LifecycleKind::Connect,
        LifecycleKind::Disconnect,
        LifecycleKind::UserOnline,
        LifecycleKind::UserOffline,
        LifecycleKind::RoomOccupied,
        LifecycleKind::RoomVacated,
    ];

    /// The name used in configuration and in the webhook's events.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleKind::Connect => "connect",
            LifecycleKind::Disconnect => "disconnect",
            LifecycleKind::UserOnline => "user_online",
            LifecycleKind::UserOffline => "user_offline",
            LifecycleKind::RoomOccupied => "room_occupied",
            LifecycleKind::RoomVacated => "room_vacated",
        }
    }
}

/// `[lifecycle]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// The webhook the events are posted to. Default: none.
    pub webhook: Option<WebhookConfig>,
    /// Events published to rooms. Default `[]`.
    pub publish: Vec<LifecyclePublish>,
}

impl LifecycleConfig {
    /// Whether anything is done with the events of `kind`.
    pub fn wants(&self, kind: LifecycleKind) -> bool {
        self.webhook
            .as_ref()
            .is_some_and(|w| w.kinds.contains(&kind))
            || self.publish.iter().any(|p| p.kind == Some(kind))
    }
}

/// `[lifecycle.webhook]`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where batches are posted, `http://host:port/path`. Required.
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Roomcast-Signature` header, as for RPC backends.
    /// Required (at least 16 bytes).
    pub secret: String,
    /// The kinds posted. Default: every kind.
    pub kinds: Vec<LifecycleKind>,
    /// Most events in one post. Default `100`.
    pub batch_max: usize,
    /// How long an event waits for others to share its post, in milliseconds. Default `100`.
    pub flush_ms: u64,
    /// Events waiting to be posted; past it new ones are dropped and counted. Default `10000`.
    pub queue_max: usize,
    /// Deadline of one post, in milliseconds. Default `5000`.
    pub timeout_ms: u64,
    /// Posts of one batch before it is given up (and its events counted as dropped).
    /// Default `5`.
    pub max_attempts: u32,
    /// First wait before a post is tried again, in milliseconds, doubling. Default `200`.
    pub retry_min_ms: u64,
    /// Longest wait between two posts of a batch, in milliseconds. Default `10000`.
    pub retry_max_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            secret: String::new(),
            kinds: LifecycleKind::ALL.to_vec(),
            batch_max: 100,
            flush_ms: 100,
            queue_max: 10_000,
            timeout_ms: 5_000,
            max_attempts: 5,
            retry_min_ms: 200,
            retry_max_ms: 10_000,
        }
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("kinds", &self.kinds)
            .field("batch_max", &self.batch_max)
            .field("queue_max", &self.queue_max)
            .finish_non_exhaustive()
    }
}

/// One entry of `lifecycle.publish`: the events of a kind published to rooms of their tenant.
/// Templates read `{user}`, `{tenant}`, `{session}`, `{transport}`, `{namespace}`, `{room}`,
/// `{reason}`, `{node}` and `{now}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecyclePublish {
    /// The kind published. Required.
    pub kind: Option<LifecycleKind>,
    /// The event name, e.g. `"user:online"`. Required.
    pub event: String,
    /// Room templates, e.g. `["tenant:{tenant}"]`. Give rooms or `broadcast = true`.
    pub rooms: Vec<String>,
    /// The whole tenant. Default `false`.
    pub broadcast: bool,
    /// The namespace. Default `"/"`.
    pub namespace: String,
    /// The data, a JSON template. Default: the event as the webhook has it.
    pub data: Option<Value>,
}

impl Default for LifecyclePublish {
    fn default() -> Self {
        LifecyclePublish {
            kind: None,
            event: String::new(),
            rooms: Vec::new(),
            broadcast: false,
            namespace: "/".into(),
            data: None,
        }
    }
}
