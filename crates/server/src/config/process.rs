//! `[shutdown]` and `[log]`: how the process drains on a signal and what it logs.

use std::time::Duration;

use serde::Deserialize;

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
