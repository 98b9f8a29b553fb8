//! `[socketio.recovery]`: Socket.IO connection state recovery. A client that loses its
//! connection and comes back within `max_disconnection_ms` gets its session again: the same
//! socket id, its rooms, and the events it missed. Off by default.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[socketio.recovery]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// Whether sessions are recoverable. Default `false`.
    pub enabled: bool,
    /// How long a session waits for its client, in milliseconds (socket.io's
    /// `maxDisconnectionDuration`). Default `120000`.
    pub max_disconnection_ms: u64,
    /// The most events kept per tenant namespace for clients to recover; a client that
    /// missed more gets a new session. Default `10000`.
    pub max_events: usize,
    /// The most events kept for all tenant namespaces together (on one node; in a cluster,
    /// Redis keeps them). Default `200000`.
    pub max_total_events: usize,
    /// The most sessions waiting for their client at once (on one node). Default `100000`.
    pub max_sessions: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            enabled: false,
            max_disconnection_ms: 120_000,
            max_events: 10_000,
            max_total_events: 200_000,
            max_sessions: 100_000,
        }
    }
}

impl RecoveryConfig {
    /// `max_disconnection_ms` as a duration.
    pub fn max_disconnection(&self) -> Duration {
        Duration::from_millis(self.max_disconnection_ms)
    }

    /// Checks the bounds. Errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        for (key, value, max) in [
            (
                "max_disconnection_ms",
                self.max_disconnection_ms,
                86_400_000,
            ),
            ("max_events", self.max_events as u64, 1_000_000),
            (
                "max_total_events",
                self.max_total_events as u64,
                100_000_000,
            ),
            ("max_sessions", self.max_sessions as u64, 100_000_000),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError::invalid(
                    format!("socketio.recovery.{key}"),
                    format!("must be between 1 and {max}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_bounded_when_on() {
        let c = RecoveryConfig::default();
        assert!(!c.enabled);
        assert!(c.validate().is_ok());
        let zero = RecoveryConfig {
            enabled: true,
            max_events: 0,
            ..RecoveryConfig::default()
        };
        let err = zero.validate().unwrap_err().to_string();
        assert!(err.contains("socketio.recovery.max_events"), "{err}");
    }
}
