//! `[inbox]`: the notification inbox, persisted per tenant and user (a SQLite file by default,
//! PostgreSQL when configured), and the live events it sends to a user's connections when a
//! notification is created, read, dismissed, or all are read. Present (even empty) means on;
//! `roomcast --dev` turns it on with the defaults.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::EmitTemplate;

/// `[inbox]`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// `sqlite://path/to/file.db` (created on first start) or `postgres://user:pass@host/db`.
    /// Default `"sqlite://roomcast-inbox.db"`. Env: `ROOMCAST_INBOX__DATABASE`.
    pub database: String,
    /// Connections to the database. Default `8` (SQLite writes one at a time whatever this is).
    pub max_connections: u32,
    /// Deadline of one inbox operation, waiting for a connection or a lock included, in ms.
    /// Default `5000`.
    pub timeout_ms: u64,
    /// The most notifications kept per user; the oldest go first. Default `1000`.
    pub max_per_user: u32,
    /// How long a notification is kept, in days. Default `90`.
    pub max_age_days: u32,
    /// The priorities counted as urgent (`counts.urgent`). Default `["high", "urgent"]`.
    pub urgent: Vec<String>,
    /// Notifications in a list page when the client names no limit. Default `50`.
    pub page_size: u32,
    /// The most notifications in one list page. Default `200`.
    pub max_page_size: u32,
    /// The most users one create names. Default `1000`.
    pub max_recipients: usize,
    /// Inbox operations running at once on this node; past it a client's is refused as busy
    /// and an API call answered 503. Default `64`.
    pub max_in_flight: usize,
    /// The live events, per namespace (`[[inbox.live]]`). Default: one for `/`, with the
    /// default event names.
    pub live: Vec<InboxLive>,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            database: "sqlite://roomcast-inbox.db".into(),
            max_connections: 8,
            timeout_ms: 5_000,
            max_per_user: 1_000,
            max_age_days: 90,
            urgent: vec!["high".into(), "urgent".into()],
            page_size: 50,
            max_page_size: 200,
            max_recipients: 1_000,
            max_in_flight: 64,
            live: vec![InboxLive::default()],
        }
    }
}

impl InboxConfig {
    /// `timeout_ms`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// `max_age_days`.
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_age_days) * 86_400)
    }
}

impl fmt::Debug for InboxConfig {
    /// The database URL's password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxConfig")
            .field("database", &super::redacted_url(&self.database))
            .field("max_connections", &self.max_connections)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_per_user", &self.max_per_user)
            .field("max_age_days", &self.max_age_days)
            .field("urgent", &self.urgent)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

/// One entry of `inbox.live`: what a user's connections to `namespace` receive. Each event's
/// `data` is a template over the moment's fields: a created notification's own (`{id}`,
/// `{title}`, `{message}`, `{type}`, `{priority}`, `{created_at}`, ...), `{id}` for read and
/// dismissed, `{count}` for all read; `{user}` and `{tenant}` in each.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxLive {
    /// The namespace. Default `"/"` (native connections receive every namespace's).
    pub namespace: String,
    /// On create. Default `{ event = "new_notification" }`, data the notification.
    pub created: Option<EmitTemplate>,
    /// On read, to the user's other connections. Default
    /// `{ event = "notification_read" }`, data `{ notification_id }`.
    pub read: Option<EmitTemplate>,
    /// On dismiss, to the user's other connections. Default
    /// `{ event = "notification_dismissed" }`, data `{ notification_id }`.
    pub dismissed: Option<EmitTemplate>,
    /// On read-all. Default `{ event = "all_notifications_read" }`, data `{ count }`.
    pub all_read: Option<EmitTemplate>,
}

impl Default for InboxLive {
    fn default() -> Self {
        InboxLive {
            namespace: "/".into(),
            created: None,
            read: None,
            dismissed: None,
            all_read: None,
        }
    }
}

/// What an `inbox` route (or a native `inbox` command) does with the caller's own inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InboxOp {
    /// `{total, unread, urgent}`.
    Counts,
    /// A page of notifications, newest first: `{notifications, next_cursor}`.
    List,
    /// Mark one read: `{notification_id, success, changed}`.
    Read,
    /// Dismiss one: `{notification_id, success, changed}`.
    Dismiss,
    /// Mark every unread one read: `{count}`.
    ReadAll,
}

impl InboxOp {
    /// The name used in configuration and in the native protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxOp::Counts => "counts",
            InboxOp::List => "list",
            InboxOp::Read => "read",
            InboxOp::Dismiss => "dismiss",
            InboxOp::ReadAll => "read_all",
        }
    }

    /// The op named `name`, as [`as_str`](Self::as_str) gives it.
    pub fn parse(name: &str) -> Option<InboxOp> {
        [
            InboxOp::Counts,
            InboxOp::List,
            InboxOp::Read,
            InboxOp::Dismiss,
            InboxOp::ReadAll,
        ]
        .into_iter()
        .find(|op| op.as_str() == name)
    }
}
