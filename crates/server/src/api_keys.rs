//! API keys for the HTTP API: platform keys reach every tenant, tenant keys only their own.

use crate::config::ApiConfig;

/// What a request's key allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A platform key: every tenant, platform-wide broadcasts.
    Platform,
    /// A tenant key: that tenant only.
    Tenant(String),
}

/// The configured keys.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    platform: Vec<String>,
    tenants: Vec<(String, String)>,
    metrics: Option<String>,
}

impl ApiKeys {
    /// Keys from the `[api]` section.
    pub fn from_config(api: &ApiConfig) -> Self {
        Self {
            platform: api.keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
            tenants: api
                .tenant_keys
                .iter()
                .map(|t| (t.key.clone(), t.tenant.clone()))
                .collect(),
            metrics: Some(api.metrics_key.clone()).filter(|k| !k.is_empty()),
        }
    }

    /// The principal of an `Authorization` header value, if its bearer key is known.
    pub fn principal(&self, authorization: Option<&str>) -> Option<Principal> {
        let key = bearer(authorization?)?;
        // Every key is compared, in constant time per key, so timing tells nothing of which
        // key almost matched.
        let mut found = None;
        for k in &self.platform {
            if ct_eq(k.as_bytes(), key.as_bytes()) {
                found = Some(Principal::Platform);
            }
        }
        for (k, tenant) in &self.tenants {
            if ct_eq(k.as_bytes(), key.as_bytes()) && found.is_none() {
                found = Some(Principal::Tenant(tenant.clone()));
            }
        }
        found
    }

    /// Whether a `/metrics` request may read: always when no metrics key is configured.
    pub fn metrics_allowed(&self, authorization: Option<&str>) -> bool {
        match &self.metrics {
            None => true,
            Some(k) => authorization
                .and_then(bearer)
                .is_some_and(|key| ct_eq(k.as_bytes(), key.as_bytes())),
        }
    }
}

/// The token of a `Bearer` authorization value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys {
            platform: vec!["plat".into()],
            tenants: vec![("tk".into(), "acme".into())],
            metrics: None,
        }
    }

    #[test]
    fn resolves_principals() {
        let k = keys();
        assert_eq!(k.principal(Some("Bearer plat")), Some(Principal::Platform));
        assert_eq!(
            k.principal(Some("bearer tk")),
            Some(Principal::Tenant("acme".into()))
        );
        assert_eq!(k.principal(Some("Bearer nope")), None);
        assert_eq!(k.principal(Some("Basic plat")), None);
        assert_eq!(k.principal(Some("Bearer ")), None);
        assert_eq!(k.principal(None), None);
        assert!(k.metrics_allowed(None));
    }
}
