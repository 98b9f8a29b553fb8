//! Test tokens for `roomcast token`: the claims a server reads with its `[auth]` (user and
//! tenant claim names, issuer, audience), an expiry, claims of the operator's choosing, signed
//! with the configured HMAC secret. Public-key configurations cannot mint: the private key
//! belongs to whoever issues the tokens, never to the gateway.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::auth::mint_hmac;
use crate::config::{AuthConfig, JwtAlgorithm};

/// `roomcast token`'s default lifetime: an hour.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Why no token was minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The configuration verifies with a public key.
    #[error(
        "auth.algorithm is {0}: tokens for it are signed with a private key, which the gateway \
         does not hold; roomcast token signs HS256, HS384 and HS512 tokens with auth.secret"
    )]
    PublicKey(JwtAlgorithm),
    /// No `auth.secret`.
    #[error(
        "no auth.secret configured (or ROOMCAST_JWT_SECRET): roomcast token signs with the \
         secret the server verifies with"
    )]
    NoSecret,
    /// No tenant given, and none by default.
    #[error(
        "--tenant is required: tokens carry the tenant in the `{0}` claim (auth.tenant_claim) \
         and auth.default_tenant is unset"
    )]
    NoTenant(String),
    /// A lifetime that does not parse.
    #[error("`{0}` is not a lifetime: write a number of seconds, or one with a unit: 3600s, 90m, 24h, 7d")]
    Ttl(String),
    /// A claim that is not `name=value`.
    #[error("`{0}` is not a claim: write name=value (a value that parses as JSON is that JSON, e.g. roles='[\"admin\"]')")]
    Claim(String),
    /// The expiry does not fit a JWT's `exp`.
    #[error("the lifetime is too long")]
    TooLong,
}

/// What a token says: its user, its tenant, how long it lives, and further claims.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    /// The user id, put in `auth.user_claim`.
    pub user: String,
    /// The tenant, put in `auth.tenant_claim`; `None` leaves the claim out (the server then
    /// takes `auth.default_tenant`).
    pub tenant: Option<String>,
    /// From now to `exp`. Default [`DEFAULT_TTL`].
    pub ttl: Duration,
    /// Further claims, in order; one of the same name as a claim set above replaces it.
    pub claims: Vec<(String, Value)>,
}

/// Parses a lifetime: seconds (`3600`), or a number with a unit, `s`, `m`, `h` or `d` (`90m`,
/// `24h`). Zero is refused.
pub fn parse_ttl(text: &str) -> Result<Duration, TokenError> {
    let bad = || TokenError::Ttl(text.to_owned());
    let trimmed = text.trim();
    let (digits, unit) = match trimmed.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => trimmed.split_at(at),
        None => (trimmed, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(scale) {
        Some(0) | None => Err(bad()),
        Some(secs) => Ok(Duration::from_secs(secs)),
    }
}

/// Parses `name=value`: a value that is JSON (`7`, `true`, `["a","b"]`, `{"k":1}`) is that
/// JSON, anything else a string.
pub fn parse_claim(text: &str) -> Result<(String, Value), TokenError> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(TokenError::Claim(text.to_owned()));
    };
    if name.is_empty() {
        return Err(TokenError::Claim(text.to_owned()));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

/// The claims of `request` for a server configured with `auth`, at `now_unix` (seconds):
/// the user and tenant claims, `iat`, `exp`, `iss` and `aud` when the server checks them,
/// then `request.claims`.
pub fn claims(
    auth: &AuthConfig,
    request: &TokenRequest,
    now_unix: u64,
) -> Result<Map<String, Value>, TokenError> {
    let mut claims = Map::new();
    claims.insert(auth.user_claim.clone(), request.user.clone().into());
    match &request.tenant {
        Some(tenant) => {
            claims.insert(auth.tenant_claim.clone(), tenant.clone().into());
        }
        None if auth.default_tenant.is_empty() => {
            let named = request.claims.iter().any(|(n, _)| *n == auth.tenant_claim);
            if !named {
                return Err(TokenError::NoTenant(auth.tenant_claim.clone()));
            }
        }
        None => {}
    }
    let exp = now_unix
        .checked_add(request.ttl.as_secs())
        .filter(|exp| i64::try_from(*exp).is_ok())
        .ok_or(TokenError::TooLong)?;
    claims.insert("iat".into(), now_unix.into());
    claims.insert("exp".into(), exp.into());
    if !auth.issuer.is_empty() {
        claims.insert("iss".into(), auth.issuer.clone().into());
    }
    if !auth.audience.is_empty() {
        claims.insert("aud".into(), auth.audience.clone().into());
    }
    for (name, value) in &request.claims {
        claims.insert(name.clone(), value.clone());
    }
    Ok(claims)
}

/// A token of `request` that a server configured with `auth` accepts, signed with
/// `auth.secret` and `auth.algorithm` (HS256, HS384 or HS512).
pub fn mint(
    auth: &AuthConfig,
    request: &TokenRequest,
    now_unix: u64,
) -> Result<String, TokenError> {
    if !auth.algorithm.is_hmac() {
        return Err(TokenError::PublicKey(auth.algorithm));
    }
    if auth.secret.is_empty() {
        return Err(TokenError::NoSecret);
    }
    let claims = Value::Object(claims(auth, request, now_unix)?);
    mint_hmac(auth.algorithm, auth.secret.as_bytes(), &claims)
        .ok_or(TokenError::PublicKey(auth.algorithm))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::{now_unix, Verifier};

    fn request(user: &str, tenant: Option<&str>) -> TokenRequest {
        TokenRequest {
            user: user.into(),
            tenant: tenant.map(Into::into),
            ttl: DEFAULT_TTL,
            claims: Vec::new(),
        }
    }

    fn auth(secret: &str) -> AuthConfig {
        AuthConfig {
            secret: secret.into(),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn lifetimes_parse_with_and_without_a_unit() {
        assert_eq!(parse_ttl("3600s").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        for bad in [
            "",
            "h",
            "0",
            "0h",
            "1.5h",
            "-1h",
            "10x",
            "1 h",
            "99999999999999999999d",
        ] {
            assert!(matches!(parse_ttl(bad), Err(TokenError::Ttl(_))), "{bad:?}");
        }
    }

    #[test]
    fn claim_values_are_json_when_they_parse_and_strings_otherwise() {
        assert_eq!(parse_claim("n=7").unwrap(), ("n".into(), json!(7)));
        assert_eq!(
            parse_claim("admin=true").unwrap(),
            ("admin".into(), json!(true))
        );
        assert_eq!(
            parse_claim("roles=[\"a\",\"b\"]").unwrap(),
            ("roles".into(), json!(["a", "b"]))
        );
        assert_eq!(
            parse_claim("o={\"k\":1}").unwrap(),
            ("o".into(), json!({"k": 1}))
        );
        assert_eq!(
            parse_claim("s=hello").unwrap(),
            ("s".into(), json!("hello"))
        );
        assert_eq!(parse_claim("z=007").unwrap(), ("z".into(), json!("007")));
        assert_eq!(parse_claim("e=").unwrap(), ("e".into(), json!("")));
        assert_eq!(parse_claim("eq=a=b").unwrap(), ("eq".into(), json!("a=b")));
        assert!(matches!(parse_claim("novalue"), Err(TokenError::Claim(_))));
        assert!(matches!(parse_claim("=x"), Err(TokenError::Claim(_))));
    }

    #[test]
    fn claims_follow_the_configured_names() {
        let mut auth = auth("s");
        auth.user_claim = "uid".into();
        auth.tenant_claim = "org".into();
        auth.issuer = "https://issuer.example".into();
        auth.audience = "roomcast".into();
        let mut req = request("7", Some("acme"));
        req.ttl = Duration::from_secs(90);
        req.claims = vec![("roles".into(), json!(["admin"])), ("uid".into(), json!(8))];
        let claims = claims(&auth, &req, 1_000).unwrap();
        assert_eq!(
            Value::Object(claims),
            json!({
                "uid": 8, "org": "acme", "iat": 1000, "exp": 1090,
                "iss": "https://issuer.example", "aud": "roomcast", "roles": ["admin"],
            })
        );
    }

    #[test]
    fn a_tenant_is_required_unless_there_is_a_default() {
        let mut auth = auth("s");
        let err = claims(&auth, &request("7", None), 0).unwrap_err();
        assert!(err.to_string().contains("`tenant_id` claim"), "{err}");
        let mut req = request("7", None);
        req.claims = vec![("tenant_id".into(), json!(42))];
        assert_eq!(claims(&auth, &req, 0).unwrap()["tenant_id"], json!(42));
        auth.default_tenant = "acme".into();
        let claims = claims(&auth, &request("7", None), 0).unwrap();
        assert!(!claims.contains_key("tenant_id"));
    }

    #[test]
    fn the_server_accepts_what_is_minted() {
        let secret = "a-secret-for-the-token-tests-0123456789-abcdef";
        for algorithm in [
            JwtAlgorithm::HS256,
            JwtAlgorithm::HS384,
            JwtAlgorithm::HS512,
        ] {
            let mut auth = auth(secret);
            auth.algorithm = algorithm;
            auth.audience = "roomcast".into();
            let token = mint(&auth, &request("7", Some("acme")), now_unix()).unwrap();
            let identity = Verifier::new(&auth).unwrap().verify(&token).unwrap();
            assert_eq!(
                (identity.user.as_str(), identity.tenant.as_str()),
                ("7", "acme")
            );
            let exp = identity.expires_at.unwrap();
            assert!(exp > now_unix() + 3500 && exp <= now_unix() + 3600, "{exp}");
        }
    }

    #[test]
    fn public_key_and_secretless_configurations_cannot_mint() {
        for algorithm in [
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ] {
            let auth = AuthConfig {
                algorithm,
                public_key_file: "jwt.pub.pem".into(),
                ..AuthConfig::default()
            };
            let err = mint(&auth, &request("7", Some("acme")), 0).unwrap_err();
            assert!(
                matches!(err, TokenError::PublicKey(a) if a == algorithm),
                "{err}"
            );
        }
        let err = mint(&auth(""), &request("7", Some("acme")), 0).unwrap_err();
        assert!(matches!(err, TokenError::NoSecret), "{err}");
    }
}
