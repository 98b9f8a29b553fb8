//! `[auth]`: the JWT algorithm and key, and the claims a verified token is read with.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::redacted;

/// The JWT signature algorithm. It is fixed by configuration: a token whose header names any
/// other algorithm (including `none`) is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `auth.secret`. The default.
    #[default]
    HS256,
    /// HMAC-SHA384 with `auth.secret`.
    HS384,
    /// HMAC-SHA512 with `auth.secret`.
    HS512,
    /// RSASSA-PKCS1-v1_5 SHA-256 with the RSA public key in `auth.public_key_file`.
    RS256,
    /// ECDSA P-256 SHA-256 with the EC public key in `auth.public_key_file`.
    ES256,
    /// Ed25519 with the public key in `auth.public_key_file`.
    EdDSA,
}

impl JwtAlgorithm {
    /// The name used in configuration and in the JWT `alg` header.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether the algorithm verifies with a shared secret (HS*) rather than a public key.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[auth]`: how client tokens are verified and turned into an identity.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Signature algorithm, one of `HS256`, `HS384`, `HS512`, `RS256`, `ES256`, `EdDSA`.
    /// Default `"HS256"`. Env: `ROOMCAST_JWT_ALGORITHM`.
    pub algorithm: JwtAlgorithm,
    /// Shared secret for HS* (its UTF-8 bytes are the HMAC key). Default `""` (none: the server
    /// refuses to start without a secret or key). Env: `ROOMCAST_JWT_SECRET`.
    pub secret: String,
    /// PEM public key file for RS256/ES256/EdDSA. Default `""`. Env: `ROOMCAST_JWT_PUBLIC_KEY_FILE`.
    pub public_key_file: String,
    /// Required `iss` value; `""` (the default) skips the issuer check.
    pub issuer: String,
    /// Required `aud` value; `""` (the default) skips the audience check.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default `30`.
    pub leeway_secs: u64,
    /// Whether tokens must carry `exp`. Default `true`.
    pub require_exp: bool,
    /// Claim holding the user id (string or integer). Default `"sub"`.
    pub user_claim: String,
    /// Claim holding the tenant (string or integer). Default `"tenant_id"`.
    pub tenant_claim: String,
    /// Tenant for tokens without the tenant claim; `""` (the default) makes the claim required.
    pub default_tenant: String,
    /// Claim holding the roles: a string or an array of strings. Default `"roles"`.
    pub roles_claim: String,
    /// Platform-admin role that may observe other tenants (e.g. `"super_admin"`); `""` (the
    /// default) means nobody may.
    pub admin_role: String,
    /// How long a connection may take to send its first `auth` frame, in milliseconds.
    /// Default `10000`.
    pub auth_timeout_ms: u64,
    /// `[auth.connect_proxy]`: a backend that authenticates handshakes without a token (or
    /// every one). Default: none.
    pub connect_proxy: Option<super::ConnectProxyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: String::new(),
            public_key_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway_secs: 30,
            require_exp: true,
            user_claim: "sub".into(),
            tenant_claim: "tenant_id".into(),
            default_tenant: String::new(),
            roles_claim: "roles".into(),
            admin_role: String::new(),
            auth_timeout_ms: 10_000,
            connect_proxy: None,
        }
    }
}

impl AuthConfig {
    /// `auth_timeout_ms` as a duration.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }

    /// `leeway_secs` as a duration.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_secs)
    }
}

// Written by hand so that secrets never reach a log line.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithm", &self.algorithm)
            .field("secret", &redacted(&self.secret))
            .field("public_key_file", &self.public_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("require_exp", &self.require_exp)
            .field("user_claim", &self.user_claim)
            .field("tenant_claim", &self.tenant_claim)
            .field("default_tenant", &self.default_tenant)
            .field("roles_claim", &self.roles_claim)
            .field("admin_role", &self.admin_role)
            .field("auth_timeout_ms", &self.auth_timeout_ms)
            .field("connect_proxy", &self.connect_proxy)
            .finish()
    }
}
