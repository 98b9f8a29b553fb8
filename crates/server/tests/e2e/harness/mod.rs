//! The test harness: the real `roomcast` binary as a child process on `127.0.0.1:0`
//! ([`server`]), native clients over tokio-tungstenite ([`client`]) and Socket.IO clients over
//! Engine.IO WebSocket ([`sio`]), the configuration written
//! for each server, and token minting.
//!
//! Every wait has a timeout, and a timeout is a failure: a test either sees the behaviour it
//! asserts or fails saying what it waited for.

mod backend;
mod client;
mod server;
mod sio;
mod tcp_proxy;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub(crate) use backend::{down_url, Backend, BACKEND_SECRET};
pub(crate) use client::{error_code, Client, Incoming};
pub(crate) use server::Server;
pub(crate) use sio::SioIncoming;
pub(crate) use tcp_proxy::TcpProxy;

/// The HS256 secret every test server verifies tokens with.
pub(crate) const SECRET: &str = "e2e-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
/// A platform API key.
pub(crate) const PLATFORM_KEY: &str = "e2e-platform-key";
/// A tenant key for `acme`.
pub(crate) const ACME_KEY: &str = "e2e-acme-key";
/// A tenant key for `globex`.
pub(crate) const GLOBEX_KEY: &str = "e2e-globex-key";

/// How long any single expected message, close or HTTP answer may take. Generous: the machine
/// may be busy building; a test never asserts that something was fast.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A server configuration, built as a TOML table over the harness defaults.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    table: toml::Table,
}

impl Config {
    /// The defaults of every test: port 0, the test secret, a platform key and tenant keys for
    /// `acme` and `globex`, the ACL `order:*` (subscribe) and `chat:*` (subscribe and publish),
    /// warnings-only logs.
    pub(crate) fn new() -> Config {
        let text = format!(
            r#"
listen = "127.0.0.1:0"
[auth]
secret = "{SECRET}"
[api]
keys = ["{PLATFORM_KEY}"]
tenant_keys = [{{ tenant = "acme", key = "{ACME_KEY}" }}, {{ tenant = "globex", key = "{GLOBEX_KEY}" }}]
[rooms]
acl = [{{ pattern = "order:*" }}, {{ pattern = "chat:*", publish = true }}]
[log]
level = "warn"
"#
        );
        Config {
            table: toml::from_str(&text).expect("the default test configuration is valid TOML"),
        }
    }

    /// Sets the key at a dotted path (`limits.queue_messages`) to a value written in TOML
    /// (`16`, `"text"`, `[1, 2]`, `[{ pattern = "x" }]`).
    pub(crate) fn set(mut self, path: &str, toml_value: &str) -> Config {
        let parsed: toml::Table = toml::from_str(&format!("v = {toml_value}"))
            .unwrap_or_else(|e| panic!("{path} = {toml_value}: {e}"));
        let value = parsed["v"].clone();
        let mut keys: Vec<&str> = path.split('.').collect();
        let last = keys.pop().expect("a non-empty path");
        let mut table = &mut self.table;
        for key in keys {
            table = table
                .entry(key)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key} is not a table"));
        }
        table.insert(last.to_owned(), value);
        self
    }

    /// Adds the top-level keys of a TOML document (`[[ingest.amqp]]` sources, say), replacing
    /// those set already.
    pub(crate) fn with(mut self, text: &str) -> Config {
        let parsed: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        self.table.extend(parsed);
        self
    }

    fn render(&self) -> String {
        toml::to_string(&self.table).expect("a TOML table renders")
    }
}

/// Claims for user `sub` of `tenant`, valid for an hour.
pub(crate) fn claims(sub: &str, tenant: &str) -> Value {
    json!({"sub": sub, "tenant_id": tenant, "exp": now_unix() + 3600})
}

/// An HS256 token with the test secret for user `sub` of `tenant`, valid for an hour.
pub(crate) fn token(sub: &str, tenant: &str) -> String {
    sign(&claims(sub, tenant))
}

/// An HS256 token with the test secret.
pub(crate) fn sign(claims: &Value) -> String {
    sign_with(Algorithm::HS256, SECRET, claims)
}

/// A token signed with any HMAC algorithm and secret.
pub(crate) fn sign_with(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HMAC signing cannot fail")
}

/// An unsigned token: header `{"alg":"none"}` and an empty signature.
pub(crate) fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}
