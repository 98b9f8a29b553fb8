//! The identity a verified token grants: user, tenant, roles and the raw claims, read from the
//! claim names configured in `[auth]`; and the smaller part of it a live connection keeps.

use serde_json::{Map, Value};

use super::{AuthError, Claims};
use crate::config::{AuthConfig, MAX_ID_BYTES};

/// Who a connection is, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`auth.user_claim`, default `sub`); an integer claim is rendered in decimal.
    pub user: String,
    /// The tenant (`auth.tenant_claim`, default `tenant_id`, else `auth.default_tenant`).
    pub tenant: String,
    /// The roles (`auth.roles_claim`, default `roles`): a string claim gives one role, an array
    /// one per element; absent gives none.
    pub roles: Vec<String>,
    /// Every claim of the token, for claim templates and the ACL.
    pub claims: Map<String, Value>,
    /// `exp` in Unix seconds, when the token has one.
    pub expires_at: Option<u64>,
    /// Whether the roles include `auth.admin_role` (platform admin, may observe other tenants).
    pub admin: bool,
}

impl Identity {
    /// What a connection keeps of this identity once authenticated. Call it after
    /// [`RoomPolicy::retain_used_claims`](crate::acl::RoomPolicy::retain_used_claims): every
    /// claim still in [`Identity::claims`] is kept.
    pub fn into_session(self) -> SessionIdentity {
        SessionIdentity {
            user: self.user.into_boxed_str(),
            tenant: self.tenant.into_boxed_str(),
            claims: Claims::from(self.claims),
            expires_at: self.expires_at,
            admin: self.admin,
        }
    }
}

/// The part of an [`Identity`] a live connection keeps for its lifetime: exactly sized ids, the
/// admin flag instead of the roles (nothing after authentication reads them), and the claims in
/// their compact form. Memory per connection is a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    /// The user id, as in [`Identity::user`].
    pub user: Box<str>,
    /// The tenant, as in [`Identity::tenant`].
    pub tenant: Box<str>,
    /// The claims the room policy reads.
    pub claims: Claims,
    /// `exp` in Unix seconds, when the token has one.
    pub expires_at: Option<u64>,
    /// Whether the roles include `auth.admin_role`.
    pub admin: bool,
}

/// The claim names and defaults that shape an [`Identity`], from `[auth]`.
#[derive(Debug, Clone)]
pub(crate) struct ClaimNames {
    user: String,
    tenant: String,
    default_tenant: String,
    roles: String,
    admin_role: String,
}

impl ClaimNames {
    pub(crate) fn new(config: &AuthConfig) -> ClaimNames {
        ClaimNames {
            user: config.user_claim.clone(),
            tenant: config.tenant_claim.clone(),
            default_tenant: config.default_tenant.clone(),
            roles: config.roles_claim.clone(),
            admin_role: config.admin_role.clone(),
        }
    }

    /// Builds the identity from the claims of a token whose signature and times were checked.
    pub(crate) fn identity(&self, claims: Map<String, Value>) -> Result<Identity, AuthError> {
        let user = match id_claim(&claims, &self.user)? {
            Some(user) => user,
            None => return Err(AuthError::MissingClaim(self.user.clone())),
        };
        let tenant = match id_claim(&claims, &self.tenant)? {
            Some(tenant) => tenant,
            None if !self.default_tenant.is_empty() => self.default_tenant.clone(),
            None => return Err(AuthError::MissingClaim(self.tenant.clone())),
        };
        let roles = roles_claim(&claims, &self.roles)?;
        let admin = !self.admin_role.is_empty() && roles.contains(&self.admin_role);
        let expires_at = claims.get("exp").and_then(unix_seconds);
        Ok(Identity {
            user,
            tenant,
            roles,
            claims,
            expires_at,
            admin,
        })
    }
}

/// A user id or tenant: a non-empty string or an integer, at most [`MAX_ID_BYTES`] bytes, without
/// control characters (they end up in room keys, logs and metrics labels). Absent or null gives
/// `None`.
fn id_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    let text = match claims.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => {
            return Err(AuthError::invalid_claim(
                name,
                "must be a string or an integer",
            ))
        }
    };
    if text.is_empty() {
        return Err(AuthError::invalid_claim(name, "empty"));
    }
    if text.len() > MAX_ID_BYTES {
        return Err(AuthError::invalid_claim(name, "longer than 128 bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err(AuthError::invalid_claim(
            name,
            "contains control characters",
        ));
    }
    Ok(Some(text))
}

fn roles_claim(claims: &Map<String, Value>, name: &str) -> Result<Vec<String>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(role)) if role.is_empty() => Ok(Vec::new()),
        Some(Value::String(role)) => Ok(vec![role.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(role) => Ok(role.clone()),
                _ => Err(AuthError::invalid_claim(
                    name,
                    "must be a string or an array of strings",
                )),
            })
            .collect(),
        Some(_) => Err(AuthError::invalid_claim(
            name,
            "must be a string or an array of strings",
        )),
    }
}

/// A NumericDate as jsonwebtoken reads it: an unsigned integer, or a float rounded.
fn unix_seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f.round() as u64)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(default_tenant: &str, admin_role: &str) -> ClaimNames {
        let config = AuthConfig {
            default_tenant: default_tenant.into(),
            admin_role: admin_role.into(),
            ..AuthConfig::default()
        };
        ClaimNames::new(&config)
    }

    fn identity(names: &ClaimNames, claims: Value) -> Result<Identity, AuthError> {
        match claims {
            Value::Object(map) => names.identity(map),
            _ => Err(AuthError::Malformed),
        }
    }

    #[test]
    fn reads_user_tenant_roles_and_expiry() {
        let id = identity(
            &names("", "super_admin"),
            json!({"sub": "7", "tenant_id": "acme", "roles": ["staff", "super_admin"], "exp": 99}),
        )
        .unwrap();
        assert_eq!((id.user.as_str(), id.tenant.as_str()), ("7", "acme"));
        assert_eq!(id.roles, ["staff", "super_admin"]);
        assert!(id.admin);
        assert_eq!(id.expires_at, Some(99));
        assert_eq!(id.claims["tenant_id"], "acme");
    }

    #[test]
    fn numeric_ids_render_in_decimal() {
        let id = identity(
            &names("", ""),
            json!({"sub": 42, "tenant_id": -3, "exp": 1.6}),
        )
        .unwrap();
        assert_eq!((id.user.as_str(), id.tenant.as_str()), ("42", "-3"));
        assert_eq!(id.expires_at, Some(2));
        let e = identity(&names("", ""), json!({"sub": 4.2, "tenant_id": "t"})).unwrap_err();
        assert_eq!(
            e,
            AuthError::invalid_claim("sub", "must be a string or an integer")
        );
    }

    #[test]
    fn tenant_falls_back_to_the_default_only_when_configured() {
        let e = identity(&names("", ""), json!({"sub": "7"})).unwrap_err();
        assert_eq!(e, AuthError::MissingClaim("tenant_id".into()));
        let id = identity(&names("main", ""), json!({"sub": "7", "tenant_id": null})).unwrap();
        assert_eq!(id.tenant, "main");
        let id = identity(&names("main", ""), json!({"sub": "7", "tenant_id": "acme"})).unwrap();
        assert_eq!(id.tenant, "acme");
    }

    #[test]
    fn bad_ids_are_rejected() {
        let n = names("", "");
        let e = identity(&n, json!({"tenant_id": "t"})).unwrap_err();
        assert_eq!(e, AuthError::MissingClaim("sub".into()));
        let e = identity(&n, json!({"sub": "", "tenant_id": "t"})).unwrap_err();
        assert_eq!(e, AuthError::invalid_claim("sub", "empty"));
        let e = identity(&n, json!({"sub": "7", "tenant_id": "t".repeat(129)})).unwrap_err();
        assert_eq!(
            e,
            AuthError::invalid_claim("tenant_id", "longer than 128 bytes")
        );
        identity(&n, json!({"sub": "u".repeat(128), "tenant_id": "t"})).unwrap();
        let e = identity(&n, json!({"sub": "a\nb", "tenant_id": "t"})).unwrap_err();
        assert_eq!(e.reason(), "invalid claim");
        let e = identity(&n, json!({"sub": ["7"], "tenant_id": "t"})).unwrap_err();
        assert_eq!(e.reason(), "invalid claim");
    }

    #[test]
    fn roles_may_be_a_string_or_an_array() {
        let n = names("", "admin");
        let id = identity(&n, json!({"sub": "1", "tenant_id": "t", "roles": "admin"})).unwrap();
        assert_eq!(id.roles, ["admin"]);
        assert!(id.admin);
        let id = identity(&n, json!({"sub": "1", "tenant_id": "t"})).unwrap();
        assert!(id.roles.is_empty() && !id.admin && id.expires_at.is_none());
        let e = identity(&n, json!({"sub": "1", "tenant_id": "t", "roles": [1]})).unwrap_err();
        assert_eq!(e.reason(), "invalid claim");
        let id = identity(
            &names("", ""),
            json!({"sub": "1", "tenant_id": "t", "roles": ""}),
        )
        .unwrap();
        assert!(!id.admin, "an empty admin_role grants nobody");
    }

    #[test]
    fn a_session_keeps_ids_expiry_admin_and_the_remaining_claims() {
        let mut id = identity(
            &names("", "super_admin"),
            json!({"sub": "7", "tenant_id": "acme", "roles": ["staff", "super_admin"], "exp": 99}),
        )
        .unwrap();
        id.claims.retain(|name, _| name == "sub");
        let session = id.into_session();
        assert_eq!((&*session.user, &*session.tenant), ("7", "acme"));
        assert_eq!((session.expires_at, session.admin), (Some(99), true));
        assert_eq!(session.claims.len(), 1);
        assert_eq!(session.claims.get("sub"), Some(&json!("7")));
        assert_eq!(session.claims.get("roles"), None);
    }
}
