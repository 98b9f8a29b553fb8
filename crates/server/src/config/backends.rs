//! `[rpc]` and `[auth.connect_proxy]`: the HTTP backends Roomcast calls on a client's behalf.
//! Named RPC backends (`[rpc.backends.<name>]`) answer Socket.IO routes with `action = "rpc"`
//! and the native `rpc` command, whose methods `[rpc.methods]` maps to a backend and a path;
//! the connect proxy turns a handshake (cookies, headers, query, Socket.IO auth payload) into
//! an identity. Tables keyed by name, not arrays, so that every key has a `ROOMCAST_*` name:
//! `ROOMCAST_RPC__BACKENDS__ODOO__SECRET`, `ROOMCAST_AUTH__CONNECT_PROXY__SECRET`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{redacted, ConfigError};

/// `[rpc]`: backends and the methods of the native `rpc` command.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// The backends, by name (lowercase letters, digits, `_` and `-`, as environment
    /// variables give them). Default: none.
    pub backends: BTreeMap<String, BackendConfig>,
    /// The methods native clients may call, by name, e.g.
    /// `"dashboard.state" = { backend = "odoo", path = "/state" }`. Default: none.
    pub methods: BTreeMap<String, MethodConfig>,
}

/// One entry of `[rpc.backends]`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Where calls are posted, `http://host:port/path` (a route's or method's `path` is
    /// appended). Required.
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Roomcast-Signature` header. Required (at least 16 bytes).
    pub secret: String,
    /// How long one call may take, connecting and reading the answer included, in
    /// milliseconds; at most `limits.command_timeout_ms`. Default `5000`.
    pub timeout_ms: u64,
    /// Calls to this backend in flight at once on this node; more are answered `busy`.
    /// Default `256`.
    pub max_in_flight: usize,
    /// The largest answer body read, in bytes; a larger one is an error. Default `1048576`.
    pub max_response_bytes: usize,
    /// Claims of the caller's token sent along (`claims` of the body), besides user and
    /// tenant. Default `[]`.
    pub claims: Vec<String>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            url: String::new(),
            secret: String::new(),
            timeout_ms: 5_000,
            max_in_flight: 256,
            max_response_bytes: 1_048_576,
            claims: Vec::new(),
        }
    }
}

// Written by hand so that the secret never reaches a log line.
impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendConfig")
            .field("url", &self.url)
            .field("secret", &redacted(&self.secret))
            .field("timeout_ms", &self.timeout_ms)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("claims", &self.claims)
            .finish()
    }
}

/// One entry of `[rpc.methods]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    /// The backend's name in `[rpc.backends]`. Required.
    pub backend: String,
    /// Appended to the backend's `url`, e.g. `"/state"`. Default `""`.
    pub path: String,
}

/// When the connect proxy is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProxyMode {
    /// When the client presents no token; a token is verified as a JWT. The default.
    #[default]
    Fallback,
    /// For every client: tokens are not looked at, and no JWT key is needed.
    Only,
}

/// `[auth.connect_proxy]`: a backend that authenticates handshakes.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectProxyConfig {
    /// Where handshakes are posted, `http://host:port/path`. Required.
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Roomcast-Signature` header. Required (at least 16 bytes).
    pub secret: String,
    /// `fallback` or `only`. Default `"fallback"`.
    pub mode: ProxyMode,
    /// How long the backend may take to answer, in milliseconds. Default `3000`.
    pub timeout_ms: u64,
    /// Handshakes being checked at once on this node; more are refused as unavailable.
    /// Default `1024`.
    pub max_in_flight: usize,
    /// The largest answer body read, in bytes. Default `65536`.
    pub max_response_bytes: usize,
    /// Cookies forwarded by name, e.g. `["session_id"]`; `["*"]` forwards every one (other
    /// applications' cookies of the domain included). Default `[]`: none.
    pub cookies: Vec<String>,
    /// Origins whose pages may connect through the proxy, e.g. `["https://app.example.com"]`;
    /// `["*"]` any. A handshake whose `Origin` header is neither listed nor the server's own
    /// host (same origin) is refused before the backend is asked: a browser sends the user's
    /// cookies with a WebSocket from any page, so that another site's page cannot connect as
    /// its visitor. Handshakes without `Origin` (not from a browser) are not concerned.
    /// Default: `socketio.cors_origins`.
    pub origins: Option<Vec<String>>,
    /// Request headers forwarded by name (lowercase). Socket.IO connections keep only
    /// `authorization`, `origin` and `x-forwarded-for` of their handshake. Default `[]`.
    pub headers: Vec<String>,
    /// Query parameters forwarded by name. Default `[]`.
    pub query: Vec<String>,
}

impl Default for ConnectProxyConfig {
    fn default() -> Self {
        ConnectProxyConfig {
            url: String::new(),
            secret: String::new(),
            mode: ProxyMode::Fallback,
            timeout_ms: 3_000,
            max_in_flight: 1_024,
            max_response_bytes: 65_536,
            cookies: Vec::new(),
            origins: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }
}

impl fmt::Debug for ConnectProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectProxyConfig")
            .field("url", &self.url)
            .field("secret", &redacted(&self.secret))
            .field("mode", &self.mode)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("cookies", &self.cookies)
            .field("origins", &self.origins)
            .field("headers", &self.headers)
            .field("query", &self.query)
            .finish()
    }
}

/// Below this a backend secret is refused: the signature is the backend's only proof.
const MIN_SECRET_BYTES: usize = 16;

impl RpcConfig {
    /// Checks names, URLs, secrets and bounds; `command_timeout_ms` bounds the timeouts (the
    /// async lane answers `timeout` past it, before a backend's own timeout could).
    pub(crate) fn validate(&self, command_timeout_ms: u64) -> Result<(), ConfigError> {
        for (name, backend) in &self.backends {
            let key = format!("rpc.backends.{name}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
            {
                return Err(ConfigError::invalid(
                    key,
                    "a backend name is lowercase letters, digits, `_` and `-`",
                ));
            }
            endpoint(&key, &backend.url, &backend.secret)?;
            positive(&key, "max_in_flight", backend.max_in_flight as u64)?;
            positive(
                &key,
                "max_response_bytes",
                backend.max_response_bytes as u64,
            )?;
            positive(&key, "timeout_ms", backend.timeout_ms)?;
            if backend.timeout_ms > command_timeout_ms {
                return Err(ConfigError::invalid(
                    format!("{key}.timeout_ms"),
                    "must be at most limits.command_timeout_ms",
                ));
            }
        }
        for (name, method) in &self.methods {
            let key = format!("rpc.methods.\"{name}\"");
            if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                return Err(ConfigError::invalid(key, "a method is 1 to 256 bytes"));
            }
            self.backend_named(&format!("{key}.backend"), &method.backend)?;
            path(&format!("{key}.path"), &method.path)?;
        }
        Ok(())
    }

    /// Checks that `name` (at `key`) is a configured backend.
    pub(crate) fn backend_named(&self, key: &str, name: &str) -> Result<(), ConfigError> {
        if self.backends.contains_key(name) {
            return Ok(());
        }
        Err(ConfigError::invalid(
            key,
            format!("`{name}` is not a backend of [rpc.backends]"),
        ))
    }
}

impl ConnectProxyConfig {
    /// Checks the URL, secret and bounds; its timeout must leave the Socket.IO connect time.
    pub(crate) fn validate(&self, connect_timeout_ms: u64) -> Result<(), ConfigError> {
        let key = "auth.connect_proxy";
        endpoint(key, &self.url, &self.secret)?;
        positive(key, "timeout_ms", self.timeout_ms)?;
        positive(key, "max_in_flight", self.max_in_flight as u64)?;
        positive(key, "max_response_bytes", self.max_response_bytes as u64)?;
        if self.timeout_ms >= connect_timeout_ms {
            return Err(ConfigError::invalid(
                format!("{key}.timeout_ms"),
                "must be below socketio.connect_timeout_ms",
            ));
        }
        for (field, names) in [("headers", &self.headers), ("query", &self.query)] {
            if let Some(i) = names.iter().position(|n| n.is_empty()) {
                return Err(ConfigError::invalid(
                    format!("{key}.{field}[{i}]"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

/// A route's or method's path: empty, or starting with `/`.
pub(crate) fn path(key: &str, path: &str) -> Result<(), ConfigError> {
    if path.is_empty() || (path.starts_with('/') && !path.chars().any(char::is_whitespace)) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        "must start with `/` and hold no spaces",
    ))
}

fn endpoint(key: &str, url: &str, secret: &str) -> Result<(), ConfigError> {
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {}
        _ => {
            return Err(ConfigError::invalid(
                format!("{key}.url"),
                "must be an http:// URL, e.g. \"http://127.0.0.1:8069/roomcast\" \
                 (https is not supported: put the backend on a private network or a sidecar)",
            ))
        }
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::invalid(
            format!("{key}.secret"),
            format!("required, at least {MIN_SECRET_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn positive(key: &str, field: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(
            format!("{key}.{field}"),
            "must be > 0",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn err(text: &str) -> String {
        let mut c = match Config::from_toml_str(text) {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        c.auth.secret = "a-secret-for-the-tests".into();
        c.validate()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    const BACKEND: &str = "[rpc.backends.odoo]\nurl = \"http://127.0.0.1:1/x\"\n\
                           secret = \"0123456789abcdef\"\n";

    #[test]
    fn backends_and_methods_are_checked_by_key() {
        assert_eq!(err(BACKEND), "");
        let e = err(&format!("{BACKEND}nope = 1"));
        assert_eq!(e, "rpc.backends.odoo.nope: unknown key");
        let e = err("[rpc.backends.odoo]\nurl = \"https://h/x\"\nsecret = \"0123456789abcdef\"");
        assert!(
            e.starts_with("rpc.backends.odoo.url: must be an http:// URL"),
            "{e}"
        );
        let e = err("[rpc.backends.odoo]\nurl = \"http://h/x\"\nsecret = \"short\"");
        assert!(e.starts_with("rpc.backends.odoo.secret: required"), "{e}");
        let e = err(&format!("{BACKEND}timeout_ms = 60000"));
        assert!(
            e.starts_with("rpc.backends.odoo.timeout_ms: must be at most"),
            "{e}"
        );
        let e = err(&format!(
            "{BACKEND}[rpc.methods]\n\"a.b\" = {{ backend = \"nope\" }}"
        ));
        assert!(
            e.starts_with("rpc.methods.\"a.b\".backend: `nope` is not"),
            "{e}"
        );
        let e = err(&format!(
            "{BACKEND}[rpc.methods]\n\"a.b\" = {{ backend = \"odoo\", p = 1 }}"
        ));
        assert_eq!(e, "rpc.methods.\"a.b\".p: unknown key");
    }

    #[test]
    fn the_connect_proxy_is_checked_by_key() {
        let ok =
            "[auth.connect_proxy]\nurl = \"http://127.0.0.1:1/c\"\nsecret = \"0123456789abcdef\"\n";
        assert_eq!(err(ok), "");
        assert_eq!(
            err(&format!("{ok}nope = 1")),
            "auth.connect_proxy.nope: unknown key"
        );
        let e = err(&format!("{ok}mode = \"sometimes\""));
        assert!(
            e.starts_with("auth.connect_proxy.mode: unknown variant"),
            "{e}"
        );
        let e = err(&format!("{ok}timeout_ms = 45000"));
        assert!(
            e.starts_with("auth.connect_proxy.timeout_ms: must be below"),
            "{e}"
        );
    }

    #[test]
    fn a_proxy_deciding_every_client_needs_no_jwt_key() {
        let only = "[auth.connect_proxy]\nurl = \"http://127.0.0.1:1/c\"\n\
                    secret = \"0123456789abcdef\"\nmode = \"only\"\n";
        let config = Config::from_toml_str(only).unwrap_or_default();
        assert!(config.proxy_only());
        config.validate().unwrap();
        crate::Plan::build(&config).unwrap();
        let fallback = only.replace("\"only\"", "\"fallback\"");
        let config = Config::from_toml_str(&fallback).unwrap_or_default();
        assert!(matches!(
            config.validate(),
            Err(crate::config::ConfigError::NoKey)
        ));
    }

    #[test]
    fn secrets_do_not_reach_debug_output() {
        let c = Config::from_toml_str(&format!(
            "{BACKEND}\n[auth.connect_proxy]\nurl = \"http://127.0.0.1:1/c\"\n\
             secret = \"fedcba9876543210\""
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let backends = format!("{:?}", crate::backend::Backends::new(&c));
        assert!(backends.contains("Secret(***)"), "{backends}");
        for secret in ["0123456789abcdef", "fedcba9876543210"] {
            assert!(!backends.contains(secret), "{backends}");
            // Nor as the bytes a derived `Debug` of a byte slice would print.
            let bytes = format!("{:?}", secret.as_bytes());
            assert!(!backends.contains(&bytes[1..bytes.len() - 1]), "{backends}");
        }
    }
}
