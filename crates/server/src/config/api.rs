//! `[api]`: the HTTP API's platform and tenant keys and its limits.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::redacted;
use super::routes::ApiRoute;

/// `[api]`: the HTTP API's keys and limits.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Platform API keys (`Authorization: Bearer <key>`), allowed for every tenant and for
    /// platform-wide broadcasts. Default `[]`. Env: `ROOMCAST_API_KEY` (comma-separated, appended).
    pub keys: Vec<String>,
    /// Keys limited to one tenant. Default `[]`.
    pub tenant_keys: Vec<TenantKey>,
    /// Largest accepted request body, in bytes. Default `1048576` (1 MiB).
    pub max_body_bytes: usize,
    /// When non-empty, `GET /metrics` requires `Authorization: Bearer <metrics_key>`.
    /// Default `""` (metrics are public).
    pub metrics_key: String,
    /// How long a publish's `idempotency_key` is remembered: a retry within it gets the first
    /// answer and publishes nothing. Default `300000` (5 minutes), at most a day.
    pub idempotency_window_ms: u64,
    /// Extra routes answered by the API's operations (`[[api.routes]]`). Default `[]`.
    pub routes: Vec<ApiRoute>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            keys: Vec::new(),
            tenant_keys: Vec::new(),
            max_body_bytes: 1024 * 1024,
            metrics_key: String::new(),
            idempotency_window_ms: 300_000,
            routes: Vec::new(),
        }
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("tenant_keys", &self.tenant_keys)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("metrics_key", &redacted(&self.metrics_key))
            .field("idempotency_window_ms", &self.idempotency_window_ms)
            .field("routes", &self.routes)
            .finish()
    }
}

/// One entry of `api.tenant_keys`: an API key that may only touch one tenant.
#[derive(Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantKey {
    /// The tenant this key is limited to. Required (default `""` is rejected).
    pub tenant: String,
    /// The key itself. Required (default `""` is rejected).
    pub key: String,
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKey")
            .field("tenant", &self.tenant)
            .field("key", &redacted(&self.key))
            .finish()
    }
}
