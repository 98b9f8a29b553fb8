//! `[shutdown]` and `[log]`: how the process drains on a signal, and what it logs and how.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[shutdown]`: graceful shutdown on SIGTERM/SIGINT.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Log filter: a level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or
    /// comma-separated `target=level` directives. Default `"info"`.
    pub level: String,
    /// How each line is written: `"text"` (human-readable) or `"json"` (one JSON object per
    /// line, for log collectors). Default `"text"`. Env: `ROOMCAST_LOG__FORMAT`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines. The default.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, and the event's `fields`
    /// (its `message` among them).
    Json,
}
