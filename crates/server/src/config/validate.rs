//! The checks on a loaded configuration's values: a JWT key is present, numbers are in range,
//! the Socket.IO path and origins are well formed. The first failure is returned, naming its
//! key. What must be compiled to be checked (room templates, ACL patterns, event routes, the
//! public key file) is checked by building the server's plan (`crate::plan`), which runs these
//! checks too.

use std::collections::HashSet;

use super::{Config, ConfigError, MAX_ID_BYTES};

const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl Config {
    /// Checks the values that need nothing but the configuration itself. Fails with
    /// [`ConfigError::NoKey`] when neither a secret (HS*) nor a public key file
    /// (RS256/ES256/EdDSA) is set, and with [`ConfigError::Invalid`] naming the key for any other
    /// problem. Room templates, ACL patterns and event routes are compiled, and the key file
    /// read, when the server's plan is built (`Plan::build`), which runs these checks first: a
    /// configuration is valid when its plan builds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_credentials()?;
        self.validate_settings()
    }

    /// The checks of `[auth]` and `[api]`, the first ones run.
    pub(crate) fn validate_credentials(&self) -> Result<(), ConfigError> {
        self.validate_auth()?;
        self.validate_api()
    }

    /// The checks of every other section, run once the rooms' templates and ACL compile.
    pub(crate) fn validate_settings(&self) -> Result<(), ConfigError> {
        positive(
            "rooms.max_per_connection",
            self.rooms.max_per_connection as u64,
        )?;
        self.validate_limits()?;
        within(
            "heartbeat.interval_ms",
            self.heartbeat.interval_ms,
            1,
            HOUR_MS,
        )?;
        within(
            "heartbeat.timeout_ms",
            self.heartbeat.timeout_ms,
            1,
            HOUR_MS,
        )?;
        within("shutdown.grace_ms", self.shutdown.grace_ms, 1, HOUR_MS)?;
        if self.heartbeat.timeout_ms <= self.heartbeat.interval_ms {
            return Err(ConfigError::invalid(
                "heartbeat.timeout_ms",
                "must be greater than heartbeat.interval_ms",
            ));
        }
        validate_log_level(&self.log.level)?;
        if let Some(cluster) = &self.cluster {
            validate_cluster(cluster)?;
        }
        for (i, rule) in self.history.rooms.iter().enumerate() {
            let key = |field: &str| format!("history.rooms[{i}].{field}");
            if rule.pattern.is_empty() || rule.pattern.contains(['{', '}']) {
                return Err(ConfigError::invalid(
                    key("pattern"),
                    "must be a room name, with `*` for any run of characters (no {claims})",
                ));
            }
            within(&key("max_events"), rule.max_events as u64, 1, 10_000)?;
            within(&key("max_age_ms"), rule.max_age_ms, 1, 24 * HOUR_MS)?;
        }
        positive("history.max_rooms", self.history.max_rooms as u64)?;
        within(
            "api.idempotency_window_ms",
            self.api.idempotency_window_ms,
            1,
            24 * HOUR_MS,
        )?;
        self.socketio.validate()?;
        self.validate_backends()?;
        self.validate_inbox()
    }

    /// `[inbox]`, and the inbox routes that need it.
    fn validate_inbox(&self) -> Result<(), ConfigError> {
        for (i, ns) in self.socketio.namespaces.iter().enumerate() {
            for (j, route) in ns.events.iter().enumerate() {
                if route.action == Some(super::RouteAction::Inbox) && self.inbox.is_none() {
                    return Err(ConfigError::invalid(
                        format!("socketio.namespaces[{i}].events[{j}].action"),
                        "\"inbox\" needs the inbox: add an [inbox] section",
                    ));
                }
            }
        }
        let Some(inbox) = &self.inbox else {
            return Ok(());
        };
        let scheme = inbox.database.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("sqlite" | "postgres" | "postgresql")) {
            return Err(ConfigError::invalid(
                "inbox.database",
                "must be a sqlite://path or a postgres://user@host/database URL",
            ));
        }
        within(
            "inbox.max_connections",
            inbox.max_connections.into(),
            1,
            1_000,
        )?;
        // A client's inbox operation waits on its connection's lane: it must be over first.
        within(
            "inbox.timeout_ms",
            inbox.timeout_ms,
            1,
            self.limits.command_timeout_ms,
        )?;
        within(
            "inbox.max_per_user",
            inbox.max_per_user.into(),
            1,
            10_000_000,
        )?;
        within("inbox.max_age_days", inbox.max_age_days.into(), 1, 36_500)?;
        within("inbox.max_page_size", inbox.max_page_size.into(), 1, 10_000)?;
        within(
            "inbox.page_size",
            inbox.page_size.into(),
            1,
            inbox.max_page_size.into(),
        )?;
        within(
            "inbox.max_recipients",
            inbox.max_recipients as u64,
            1,
            1_000_000,
        )?;
        within(
            "inbox.max_in_flight",
            inbox.max_in_flight as u64,
            1,
            100_000,
        )?;
        for (i, live) in inbox.live.iter().enumerate() {
            let key = format!("inbox.live[{i}].namespace");
            if !live.namespace.starts_with('/') {
                return Err(ConfigError::invalid(key, "must start with `/`"));
            }
            if let Some(j) = inbox.live[..i]
                .iter()
                .position(|other| other.namespace == live.namespace)
            {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{}` has inbox.live[{j}] already", live.namespace),
                ));
            }
        }
        Ok(())
    }

    /// `[rpc]`, `[auth.connect_proxy]`, and the backends that `rpc` routes name.
    fn validate_backends(&self) -> Result<(), ConfigError> {
        self.rpc.validate(self.limits.command_timeout_ms)?;
        if let Some(proxy) = &self.auth.connect_proxy {
            proxy.validate(self.socketio.connect_timeout_ms)?;
        }
        for (i, ns) in self.socketio.namespaces.iter().enumerate() {
            for (j, route) in ns.events.iter().enumerate() {
                let key = format!("socketio.namespaces[{i}].events[{j}]");
                if route.action == Some(super::RouteAction::Rpc) {
                    self.rpc
                        .backend_named(&format!("{key}.backend"), &route.backend)?;
                }
            }
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        // A key of the other kind is checked first: it most likely means a forgotten
        // auth.algorithm, which "no key configured" would not point at.
        if auth.algorithm.is_hmac() {
            if !auth.public_key_file.is_empty() {
                return Err(ConfigError::invalid(
                    "auth.public_key_file",
                    format!(
                        "is set, but auth.algorithm = \"{}\" verifies with auth.secret; \
                         set auth.algorithm to \"RS256\", \"ES256\" or \"EdDSA\" to use the key",
                        auth.algorithm
                    ),
                ));
            }
            if auth.secret.is_empty() && !self.proxy_only() {
                return Err(ConfigError::NoKey);
            }
        } else {
            if !auth.secret.is_empty() {
                return Err(ConfigError::invalid(
                    "auth.secret",
                    format!(
                        "is set, but auth.algorithm = \"{}\" verifies with auth.public_key_file",
                        auth.algorithm
                    ),
                ));
            }
            if auth.public_key_file.is_empty() && !self.proxy_only() {
                return Err(ConfigError::NoKey);
            }
        }
        not_empty("auth.user_claim", &auth.user_claim)?;
        not_empty("auth.tenant_claim", &auth.tenant_claim)?;
        not_empty("auth.roles_claim", &auth.roles_claim)?;
        if !auth.default_tenant.is_empty() {
            id("auth.default_tenant", &auth.default_tenant)?;
        }
        within("auth.auth_timeout_ms", auth.auth_timeout_ms, 1, HOUR_MS)?;
        within("auth.leeway_secs", auth.leeway_secs, 0, 3600)
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        let api = &self.api;
        // A key listed twice would be ambiguous between platform and tenant scope.
        let mut seen = HashSet::new();
        for (i, key) in api.keys.iter().enumerate() {
            let name = format!("api.keys[{i}]");
            not_empty(&name, key)?;
            if !seen.insert(key.as_str()) {
                return Err(ConfigError::invalid(name, "duplicate key"));
            }
        }
        for (i, entry) in api.tenant_keys.iter().enumerate() {
            id(&format!("api.tenant_keys[{i}].tenant"), &entry.tenant)?;
            let name = format!("api.tenant_keys[{i}].key");
            not_empty(&name, &entry.key)?;
            if !seen.insert(entry.key.as_str()) {
                return Err(ConfigError::invalid(name, "duplicate key"));
            }
        }
        positive("api.max_body_bytes", api.max_body_bytes as u64)
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        positive("limits.max_connections", l.max_connections as u64)?;
        positive("limits.messages_per_second", l.messages_per_second.into())?;
        positive("limits.messages_burst", l.messages_burst.into())?;
        positive("limits.max_publish_targets", l.max_publish_targets as u64)?;
        positive(
            "limits.commands_per_connection",
            l.commands_per_connection as u64,
        )?;
        within(
            "limits.commands_in_flight",
            l.commands_in_flight as u64,
            1,
            MAX_COMMANDS_IN_FLIGHT,
        )?;
        within(
            "limits.command_timeout_ms",
            l.command_timeout_ms,
            1,
            HOUR_MS,
        )?;
        positive("limits.max_violations", l.max_violations.into())?;
        positive("limits.max_message_bytes", l.max_message_bytes as u64)?;
        positive("limits.max_frame_bytes", l.max_frame_bytes as u64)?;
        positive("limits.max_publish_bytes", l.max_publish_bytes as u64)?;
        if l.max_frame_bytes > l.max_message_bytes {
            return Err(ConfigError::invalid(
                "limits.max_frame_bytes",
                "must not exceed limits.max_message_bytes",
            ));
        }
        if l.max_publish_bytes > l.max_message_bytes {
            return Err(ConfigError::invalid(
                "limits.max_publish_bytes",
                "must not exceed limits.max_message_bytes",
            ));
        }
        positive("limits.queue_messages", l.queue_messages as u64)?;
        positive("limits.queue_bytes", l.queue_bytes as u64)?;
        within("limits.body_timeout_ms", l.body_timeout_ms, 1, HOUR_MS)?;
        let largest = self.api.max_body_bytes.max(if self.socketio.enabled {
            self.socketio.max_payload
        } else {
            0
        });
        if l.max_body_buffer_bytes < largest {
            return Err(ConfigError::invalid(
                "limits.max_body_buffer_bytes",
                format!(
                    "must be at least {largest} (api.max_body_bytes and socketio.max_payload), \
                     or the largest bodies allowed could never be read"
                ),
            ));
        }
        Ok(())
    }
}

/// The longest duration any setting accepts: one hour, in milliseconds.
const HOUR_MS: u64 = 3_600_000;

/// `value` must lie in `min..=max`: bounds keep deadlines computed from it from overflowing.
fn validate_cluster(c: &super::ClusterConfig) -> Result<(), ConfigError> {
    within("cluster.heartbeat_ms", c.heartbeat_ms, 10, HOUR_MS)?;
    within("cluster.node_ttl_ms", c.node_ttl_ms, 20, HOUR_MS)?;
    within("cluster.timeout_ms", c.timeout_ms, 1, HOUR_MS)?;
    within(
        "cluster.stream_ttl_ms",
        c.stream_ttl_ms,
        1_000,
        365 * 24 * HOUR_MS,
    )?;
    if c.heartbeat_ms * 2 > c.node_ttl_ms {
        return Err(ConfigError::invalid(
            "cluster.node_ttl_ms",
            "must be at least twice cluster.heartbeat_ms",
        ));
    }
    if c.prefix.is_empty() || c.prefix.contains(['{', '}']) {
        return Err(ConfigError::invalid(
            "cluster.prefix",
            "must be non-empty and hold no '{' or '}'",
        ));
    }
    if c.node_id.len() > super::MAX_ID_BYTES {
        return Err(ConfigError::invalid(
            "cluster.node_id",
            format!("must be at most {} bytes", super::MAX_ID_BYTES),
        ));
    }
    for (i, e) in c.emitters.iter().enumerate() {
        let key = format!("cluster.emitters[{i}]");
        match (e.tenant.is_empty(), e.tenant_from_room.is_empty()) {
            (false, false) => {
                return Err(ConfigError::invalid(
                    &key,
                    "set tenant or tenant_from_room, not both",
                ))
            }
            (true, true) => return Err(ConfigError::invalid(
                &key,
                "needs tenant (a fixed tenant) or tenant_from_room (a pattern holding {tenant})",
            )),
            _ => {}
        }
    }
    Ok(())
}

fn within(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            key,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// The most requests a node lets wait at once (`limits.commands_in_flight`).
const MAX_COMMANDS_IN_FLIGHT: u64 = 10_000_000;

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be > 0"));
    }
    Ok(())
}

fn not_empty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty"));
    }
    Ok(())
}

/// Tenant names: non-empty, at most [`MAX_ID_BYTES`], no control characters.
fn id(key: &str, value: &str) -> Result<(), ConfigError> {
    not_empty(key, value)?;
    if value.len() > MAX_ID_BYTES {
        return Err(ConfigError::invalid(
            key,
            format!("longer than {MAX_ID_BYTES} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::invalid(key, "contains control characters"));
    }
    Ok(())
}

/// A level, or comma-separated `target=level` directives as `RUST_LOG` takes them.
fn validate_log_level(filter: &str) -> Result<(), ConfigError> {
    let valid = |level: &str| LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str());
    let ok = !filter.trim().is_empty()
        && filter.split(',').all(|directive| {
            let directive = directive.trim();
            match directive.rsplit_once('=') {
                Some((target, level)) => !target.is_empty() && valid(level),
                // A bare target is valid for tracing too, but far more often a mistyped level.
                None => valid(directive),
            }
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            "log.level",
            format!(
                "`{filter}` is not a level ({}) nor `target=level` directives",
                LOG_LEVELS.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JwtAlgorithm, TenantKey};

    fn valid() -> Config {
        let mut c = Config::default();
        c.auth.secret = "secret".into();
        c
    }

    fn error(c: &Config) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn secret_or_key_is_required_for_the_algorithm() {
        valid().validate().unwrap();
        let mut c = valid();
        c.auth.algorithm = JwtAlgorithm::RS256;
        c.auth.secret.clear();
        assert!(matches!(c.validate(), Err(ConfigError::NoKey)));
        c.auth.public_key_file = "/keys/rs.pem".into();
        c.validate().unwrap();
        c.auth.secret = "s".into();
        assert!(
            error(&c).starts_with("auth.secret: is set, but"),
            "{}",
            error(&c)
        );
        let mut c = Config::default();
        c.auth.public_key_file = "/keys/rs.pem".into();
        assert!(error(&c).starts_with("auth.public_key_file: is set, but"));
    }

    #[test]
    fn zero_limits_are_named() {
        let mut c = valid();
        c.limits.max_connections = 0;
        assert_eq!(error(&c), "limits.max_connections: must be > 0");
        let mut c = valid();
        c.limits.messages_per_second = 0;
        assert_eq!(error(&c), "limits.messages_per_second: must be > 0");
        let mut c = valid();
        c.limits.max_frame_bytes = c.limits.max_message_bytes + 1;
        assert_eq!(
            error(&c),
            "limits.max_frame_bytes: must not exceed limits.max_message_bytes"
        );
        let mut c = valid();
        c.limits.max_connections_per_tenant = 0;
        c.limits.max_connections_per_user = 0;
        c.validate().unwrap();
    }

    #[test]
    fn body_bounds_are_checked() {
        let mut c = valid();
        c.limits.body_timeout_ms = 0;
        assert_eq!(
            error(&c),
            "limits.body_timeout_ms: must be between 1 and 3600000"
        );
        let mut c = valid();
        c.limits.max_body_buffer_bytes = c.socketio.max_payload - 1;
        assert!(
            error(&c).starts_with("limits.max_body_buffer_bytes: must be at least 1048576"),
            "{}",
            error(&c)
        );
        c.api.max_body_bytes = 1000;
        c.socketio.enabled = false;
        c.validate().unwrap();
    }

    #[test]
    fn heartbeat_timeout_must_exceed_interval() {
        let mut c = valid();
        c.heartbeat.timeout_ms = c.heartbeat.interval_ms;
        assert_eq!(
            error(&c),
            "heartbeat.timeout_ms: must be greater than heartbeat.interval_ms"
        );
        c.heartbeat.interval_ms = 0;
        assert_eq!(
            error(&c),
            "heartbeat.interval_ms: must be between 1 and 3600000"
        );
    }

    #[test]
    fn durations_are_bounded_so_deadlines_cannot_overflow() {
        let mut c = valid();
        c.auth.auth_timeout_ms = u64::MAX;
        assert_eq!(
            error(&c),
            "auth.auth_timeout_ms: must be between 1 and 3600000"
        );
        let mut c = valid();
        c.auth.leeway_secs = u64::MAX;
        assert_eq!(error(&c), "auth.leeway_secs: must be between 0 and 3600");
        let mut c = valid();
        c.shutdown.grace_ms = 0;
        assert_eq!(
            error(&c),
            "shutdown.grace_ms: must be between 1 and 3600000"
        );
    }

    #[test]
    fn api_keys_must_be_non_empty_and_unique() {
        let mut c = valid();
        c.api.keys = vec!["a".into(), "".into()];
        assert_eq!(error(&c), "api.keys[1]: must not be empty");
        let mut c = valid();
        c.api.keys = vec!["a".into()];
        c.api.tenant_keys = vec![TenantKey {
            tenant: "acme".into(),
            key: "a".into(),
        }];
        assert_eq!(error(&c), "api.tenant_keys[0].key: duplicate key");
        c.api.tenant_keys[0] = TenantKey {
            tenant: "".into(),
            key: "b".into(),
        };
        assert_eq!(error(&c), "api.tenant_keys[0].tenant: must not be empty");
        c.api.tenant_keys[0].tenant = "t".repeat(129);
        assert_eq!(
            error(&c),
            "api.tenant_keys[0].tenant: longer than 128 bytes"
        );
    }

    #[test]
    fn log_levels() {
        for ok in ["info", "WARN", "roomcast_server=debug,info", "hyper=off"] {
            validate_log_level(ok).unwrap();
        }
        for bad in ["", "loud", "hyper=loud", "=info", "infoo"] {
            let e = validate_log_level(bad).unwrap_err().to_string();
            assert!(e.starts_with("log.level: "), "{e}");
        }
    }
}
