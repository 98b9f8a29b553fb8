//! JWT authentication of clients: a [`Verifier`] built once from `[auth]` checks a token's
//! signature with the one configured algorithm and key, its times and issuer/audience, and turns
//! its claims into an [`Identity`], of which a live connection keeps a [`SessionIdentity`].

mod claims;
mod error;
mod identity;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::config::{AuthConfig, JwtAlgorithm};

pub use claims::{ClaimSource, Claims};
pub use error::{AuthError, AuthSetupError};
pub use identity::{Identity, SessionIdentity};

use identity::ClaimNames;

/// Below this, an HS secret is guessable offline from any token; RFC 7518 asks for at least the
/// hash size. Shorter secrets are accepted with a warning.
const MIN_SECRET_BYTES: usize = 32;

/// Verifies client tokens. Cheap to share behind an `Arc`: it holds the parsed key and the
/// validation settings, and does no I/O after [`Verifier::new`].
#[derive(Debug, Clone)]
pub struct Verifier {
    algorithm: JwtAlgorithm,
    key: DecodingKey,
    validation: Validation,
    leeway_secs: u64,
    names: ClaimNames,
}

impl Verifier {
    /// Builds the verifier: the UTF-8 bytes of `auth.secret` for HS*, or the PEM public key read
    /// from `auth.public_key_file` for RS256/ES256/EdDSA (checked to be a public key of that kind).
    pub fn new(config: &AuthConfig) -> Result<Verifier, AuthSetupError> {
        let algorithm = config.algorithm;
        let key = if algorithm.is_hmac() {
            if config.secret.is_empty() {
                return Err(AuthSetupError::NoKey);
            }
            if config.secret.len() < MIN_SECRET_BYTES {
                tracing::warn!(
                    "auth.secret is shorter than {MIN_SECRET_BYTES} bytes: \
                     use a long random secret (e.g. `openssl rand -base64 32`)"
                );
            }
            DecodingKey::from_secret(config.secret.as_bytes())
        } else {
            if config.public_key_file.is_empty() {
                return Err(AuthSetupError::NoKey);
            }
            load_public_key(algorithm, &PathBuf::from(&config.public_key_file))?
        };

        let mut validation = Validation::new(jwt_algorithm(algorithm));
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true; // when present; required only with require_exp
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::new();
        if config.require_exp {
            validation.required_spec_claims.insert("exp".into());
        }
        if !config.issuer.is_empty() {
            validation.set_issuer(&[&config.issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        // Without a configured audience, `aud` is not looked at (jsonwebtoken would otherwise
        // refuse every token that has one).
        validation.validate_aud = !config.audience.is_empty();
        if validation.validate_aud {
            validation.set_audience(&[&config.audience]);
            validation.required_spec_claims.insert("aud".into());
        }

        Ok(Verifier {
            algorithm,
            key,
            validation,
            leeway_secs: config.leeway_secs,
            names: ClaimNames::new(config),
        })
    }

    /// The one algorithm tokens must use.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Verifies `token` (the compact JWT, without any `Bearer ` prefix) and returns the identity
    /// it grants. The header must name exactly the configured algorithm (`none` and every other
    /// one are [`AuthError::WrongAlgorithm`]); `exp` and `nbf` are checked with the leeway.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.check_header(token)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::from(e.kind()))?;
        self.names.identity(data.claims)
    }

    /// The identity that `claims`, vouched for by other means than a token (the connect
    /// proxy's answer), grant: read with the same claim names as a token's.
    pub fn identity_of(&self, claims: Map<String, Value>) -> Result<Identity, AuthError> {
        self.names.identity(claims)
    }

    /// Whether a connection whose token expires at `expires_at` (its [`Identity::expires_at`])
    /// has outlived it at `now_unix` (seconds), with the same leeway as [`Verifier::verify`]. A
    /// token without `exp` never expires.
    pub fn expired(&self, expires_at: Option<u64>, now_unix: u64) -> bool {
        expires_at.is_some_and(|exp| exp.saturating_add(self.leeway_secs) < now_unix)
    }

    /// When [`expired`](Self::expired) turns true for a token expiring at `expires_at`, on
    /// the monotonic clock as the system clock reads now; `None` for no expiry (or one too
    /// far ahead to represent).
    pub fn expiry_deadline(&self, expires_at: Option<u64>) -> Option<Instant> {
        let first_expired = expires_at?
            .saturating_add(self.leeway_secs)
            .saturating_add(1);
        let at = UNIX_EPOCH.checked_add(Duration::from_secs(first_expired))?;
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        Instant::now().checked_add(left)
    }

    /// Reads the header before jsonwebtoken does, so that an algorithm it cannot even name
    /// (`none`) is reported as a wrong algorithm rather than a malformed token, and so that
    /// critical extensions, which we do not implement, are refused (RFC 7515, 4.1.11).
    fn check_header(&self, token: &str) -> Result<(), AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| AuthError::Malformed)?;
        let header: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        match header.get("alg") {
            Some(Value::String(alg)) if alg == self.algorithm.as_str() => {}
            Some(Value::String(_)) => return Err(AuthError::WrongAlgorithm),
            _ => return Err(AuthError::Malformed),
        }
        if header.contains_key("crit") {
            return Err(AuthError::Malformed);
        }
        Ok(())
    }
}

fn jwt_algorithm(algorithm: JwtAlgorithm) -> Algorithm {
    match algorithm {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

fn load_public_key(algorithm: JwtAlgorithm, path: &PathBuf) -> Result<DecodingKey, AuthSetupError> {
    let invalid = |message: String| AuthSetupError::InvalidKey {
        path: path.clone(),
        algorithm: algorithm.as_str(),
        message,
    };
    let pem = std::fs::read(path).map_err(|source| AuthSetupError::ReadKey {
        path: path.clone(),
        source,
    })?;
    // jsonwebtoken would take the public half out of some private key files; a private key has
    // no business on the gateway, so say so instead.
    if pem
        .windows(b"PRIVATE KEY-----".len())
        .any(|w| w == b"PRIVATE KEY-----")
    {
        return Err(invalid(
            "it is a private key: configure the public key".into(),
        ));
    }
    let key = match algorithm {
        JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
        JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(&pem),
        JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
        JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => {
            return Err(invalid("HS algorithms use auth.secret".into()))
        }
    }
    .map_err(|e| invalid(e.to_string()))?;
    // Building the signature checker parses EC and Ed keys (a P-384 key for ES256 fails here);
    // RSA keys are parsed on each verification.
    jsonwebtoken::crypto::verify("AA", b"probe", &key, jwt_algorithm(algorithm))
        .map_err(|e| invalid(e.to_string()))?;
    Ok(key)
}

/// Signs `claims` with `secret` and an HMAC `algorithm` (HS256, HS384 or HS512), for
/// `roomcast token`; `None` for the public-key algorithms, whose private key the gateway never
/// holds.
pub fn mint_hmac(algorithm: JwtAlgorithm, secret: &[u8], claims: &Value) -> Option<String> {
    if !algorithm.is_hmac() {
        return None;
    }
    jsonwebtoken::encode(
        &Header::new(jwt_algorithm(algorithm)),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .ok()
}

/// The current time in Unix seconds, for [`Verifier::expired`]; 0 if the clock is before 1970.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "test-secret-with-enough-bytes-for-hs512-0123456789";

    fn key_path(name: &str) -> String {
        format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn key_pem(name: &str) -> Vec<u8> {
        std::fs::read(key_path(name)).unwrap()
    }

    fn hs_config(algorithm: JwtAlgorithm) -> AuthConfig {
        AuthConfig {
            algorithm,
            secret: SECRET.into(),
            ..AuthConfig::default()
        }
    }

    fn pk_config(algorithm: JwtAlgorithm, public: &str) -> AuthConfig {
        AuthConfig {
            algorithm,
            public_key_file: key_path(public),
            ..AuthConfig::default()
        }
    }

    fn claims(extra: Value) -> Value {
        let mut base = json!({"sub": "7", "tenant_id": "acme", "exp": now_unix() + 3600});
        if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
            base.extend(extra);
        }
        base
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
    }

    fn hs(alg: Algorithm, claims: &Value) -> String {
        sign(alg, &EncodingKey::from_secret(SECRET.as_bytes()), claims)
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn hmac_tokens_verify() {
        for (config_alg, alg) in [
            (JwtAlgorithm::HS256, Algorithm::HS256),
            (JwtAlgorithm::HS384, Algorithm::HS384),
            (JwtAlgorithm::HS512, Algorithm::HS512),
        ] {
            let v = Verifier::new(&hs_config(config_alg)).unwrap();
            let id = v
                .verify(&hs(alg, &claims(json!({"roles": ["staff"]}))))
                .unwrap();
            assert_eq!((id.user.as_str(), id.tenant.as_str()), ("7", "acme"));
            assert_eq!(id.roles, ["staff"]);
            assert!(id.expires_at.is_some());
        }
    }

    #[test]
    fn public_key_tokens_verify() {
        let cases = [
            (
                JwtAlgorithm::RS256,
                Algorithm::RS256,
                "rs256",
                EncodingKey::from_rsa_pem as fn(&[u8]) -> _,
            ),
            (
                JwtAlgorithm::ES256,
                Algorithm::ES256,
                "es256",
                EncodingKey::from_ec_pem,
            ),
            (
                JwtAlgorithm::EdDSA,
                Algorithm::EdDSA,
                "ed25519",
                EncodingKey::from_ed_pem,
            ),
        ];
        for (config_alg, alg, name, private) in cases {
            let v = Verifier::new(&pk_config(config_alg, &format!("{name}_public.pem"))).unwrap();
            let key = private(&key_pem(&format!("{name}_private.pem"))).unwrap();
            let id = v.verify(&sign(alg, &key, &claims(json!({})))).unwrap();
            assert_eq!(id.user, "7", "{name}");
            // A token signed by another key of the same kind does not verify.
            let other = hs(Algorithm::HS256, &claims(json!({})));
            assert_eq!(v.verify(&other), Err(AuthError::WrongAlgorithm), "{name}");
        }
    }

    #[test]
    fn expiry_and_not_before_honor_the_leeway() {
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        let now = now_unix();
        let t = hs(Algorithm::HS256, &claims(json!({"exp": now - 100})));
        assert_eq!(v.verify(&t), Err(AuthError::Expired));
        let t = hs(Algorithm::HS256, &claims(json!({"exp": now - 10})));
        assert!(v.verify(&t).is_ok(), "within the 30 s leeway");
        let t = hs(Algorithm::HS256, &claims(json!({"nbf": now + 1000})));
        assert_eq!(v.verify(&t), Err(AuthError::NotYetValid));
        let t = hs(Algorithm::HS256, &claims(json!({"nbf": now + 10})));
        assert!(v.verify(&t).is_ok());
    }

    #[test]
    fn exp_is_required_unless_configured_otherwise() {
        let no_exp = json!({"sub": "7", "tenant_id": "acme"});
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        assert_eq!(
            v.verify(&hs(Algorithm::HS256, &no_exp)),
            Err(AuthError::MissingClaim("exp".into()))
        );
        let config = AuthConfig {
            require_exp: false,
            ..hs_config(JwtAlgorithm::HS256)
        };
        let v = Verifier::new(&config).unwrap();
        let id = v.verify(&hs(Algorithm::HS256, &no_exp)).unwrap();
        assert_eq!(id.expires_at, None);
        assert!(!v.expired(id.expires_at, u64::MAX));
    }

    #[test]
    fn expired_check_for_live_connections() {
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        let id = v.verify(&hs(Algorithm::HS256, &claims(json!({})))).unwrap();
        let exp = id.expires_at.unwrap();
        assert!(!v.expired(id.expires_at, exp));
        assert!(!v.expired(id.expires_at, exp + 30));
        assert!(v.expired(id.expires_at, exp + 31));
    }

    #[test]
    fn expiry_deadline_is_when_expired_turns_true() {
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(v.expiry_deadline(None), None);
        // Expired long ago (past the 30 s leeway): due now.
        let due = v.expiry_deadline(Some(now_unix - 100)).unwrap();
        assert!(due <= Instant::now());
        // Expiring in an hour: due an hour and the leeway from now, give or take a second.
        let due = v.expiry_deadline(Some(now_unix + 3600)).unwrap();
        let left = due.duration_since(Instant::now()).as_secs_f64();
        assert!((3629.0..=3632.0).contains(&left), "{left}");
        assert_eq!(v.expiry_deadline(Some(u64::MAX)), None);
    }

    #[test]
    fn bad_signatures_are_rejected() {
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        let other = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"other"),
            &claims(json!({})),
        );
        assert_eq!(v.verify(&other), Err(AuthError::InvalidSignature));
        // Same signature, payload swapped for another user's.
        let good = hs(Algorithm::HS256, &claims(json!({})));
        let parts: Vec<&str> = good.split('.').collect();
        let forged_payload = b64(claims(json!({"sub": "8"})).to_string().as_bytes());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(v.verify(&forged), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn other_algorithms_are_rejected() {
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        let t = hs(Algorithm::HS512, &claims(json!({})));
        assert_eq!(v.verify(&t), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn public_key_used_as_hmac_secret_is_rejected() {
        // The classic confusion attack: an RS256 verifier handed an HS256 token whose HMAC key
        // is the (public) PEM text.
        let v = Verifier::new(&pk_config(JwtAlgorithm::RS256, "rs256_public.pem")).unwrap();
        let t = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(&key_pem("rs256_public.pem")),
            &claims(json!({})),
        );
        assert_eq!(v.verify(&t), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn alg_none_is_rejected() {
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64(claims(json!({})).to_string().as_bytes());
        assert_eq!(
            v.verify(&format!("{header}.{payload}.")),
            Err(AuthError::WrongAlgorithm)
        );
        let header = b64(br#"{"alg":"None","typ":"JWT"}"#);
        assert_eq!(
            v.verify(&format!("{header}.{payload}.")),
            Err(AuthError::WrongAlgorithm)
        );
        // A real HS256 signature does not help a `none` header.
        let good = hs(Algorithm::HS256, &claims(json!({})));
        let sig = good.rsplit('.').next().unwrap();
        let header = b64(br#"{"alg":"none"}"#);
        assert_eq!(
            v.verify(&format!("{header}.{payload}.{sig}")),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn malformed_and_missing_tokens() {
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        assert_eq!(v.verify(""), Err(AuthError::Missing));
        assert_eq!(v.verify("   "), Err(AuthError::Missing));
        for bad in [
            "abc",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "!!.!!.!!",
            "\u{e9}.\u{e9}.\u{e9}",
        ] {
            assert_eq!(v.verify(bad), Err(AuthError::Malformed), "{bad}");
        }
        let header = b64(br#"{"alg":"HS256"}"#);
        assert_eq!(
            v.verify(&format!("{header}.bm90IGpzb24.sig")),
            Err(AuthError::InvalidSignature)
        );
        let no_alg = b64(br#"{"typ":"JWT"}"#);
        assert_eq!(
            v.verify(&format!("{no_alg}.e30.sig")),
            Err(AuthError::Malformed)
        );
        // Signed correctly, but with a critical extension we do not implement.
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        let t = jsonwebtoken::encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert_eq!(v.verify(&t.unwrap()), Err(AuthError::Malformed));
    }

    #[test]
    fn tenant_claim_and_default_tenant() {
        let no_tenant = json!({"sub": "7", "exp": now_unix() + 60});
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        let t = hs(Algorithm::HS256, &no_tenant);
        assert_eq!(
            v.verify(&t),
            Err(AuthError::MissingClaim("tenant_id".into()))
        );
        let config = AuthConfig {
            default_tenant: "main".into(),
            ..hs_config(JwtAlgorithm::HS256)
        };
        let id = Verifier::new(&config).unwrap().verify(&t).unwrap();
        assert_eq!(id.tenant, "main");
    }

    #[test]
    fn numeric_subject_and_custom_claim_names() {
        let config = AuthConfig {
            user_claim: "uid".into(),
            tenant_claim: "org".into(),
            roles_claim: "perms".into(),
            admin_role: "super_admin".into(),
            ..hs_config(JwtAlgorithm::HS256)
        };
        let v = Verifier::new(&config).unwrap();
        let t = hs(
            Algorithm::HS256,
            &claims(json!({"uid": 42, "org": 9, "perms": "super_admin"})),
        );
        let id = v.verify(&t).unwrap();
        assert_eq!((id.user.as_str(), id.tenant.as_str()), ("42", "9"));
        assert!(id.admin);
        assert_eq!(id.claims["sub"], "7");
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let config = AuthConfig {
            issuer: "https://auth.example".into(),
            audience: "roomcast".into(),
            ..hs_config(JwtAlgorithm::HS256)
        };
        let v = Verifier::new(&config).unwrap();
        let ok = claims(json!({"iss": "https://auth.example", "aud": ["web", "roomcast"]}));
        assert!(v.verify(&hs(Algorithm::HS256, &ok)).is_ok());
        let t = hs(
            Algorithm::HS256,
            &claims(json!({"iss": "https://evil.example", "aud": "roomcast"})),
        );
        assert_eq!(v.verify(&t), Err(AuthError::InvalidIssuer));
        let t = hs(
            Algorithm::HS256,
            &claims(json!({"iss": "https://auth.example", "aud": "other"})),
        );
        assert_eq!(v.verify(&t), Err(AuthError::InvalidAudience));
        let t = hs(Algorithm::HS256, &claims(json!({"aud": "roomcast"})));
        assert_eq!(v.verify(&t), Err(AuthError::MissingClaim("iss".into())));
        // Not configured: neither is looked at.
        let v = Verifier::new(&hs_config(JwtAlgorithm::HS256)).unwrap();
        let t = hs(
            Algorithm::HS256,
            &claims(json!({"iss": "anyone", "aud": "anything"})),
        );
        assert!(v.verify(&t).is_ok());
    }

    #[test]
    fn setup_errors() {
        let none = AuthConfig::default();
        assert!(matches!(Verifier::new(&none), Err(AuthSetupError::NoKey)));
        let no_file = AuthConfig {
            algorithm: JwtAlgorithm::RS256,
            ..AuthConfig::default()
        };
        assert!(matches!(
            Verifier::new(&no_file),
            Err(AuthSetupError::NoKey)
        ));
        let missing = pk_config(JwtAlgorithm::RS256, "does-not-exist.pem");
        assert!(matches!(
            Verifier::new(&missing),
            Err(AuthSetupError::ReadKey { .. })
        ));
        for (alg, file) in [
            (JwtAlgorithm::RS256, "es256_public.pem"),
            (JwtAlgorithm::ES256, "ed25519_public.pem"),
            (JwtAlgorithm::EdDSA, "rs256_public.pem"),
            (JwtAlgorithm::ES256, "es256_private.pem"),
            (JwtAlgorithm::RS256, "README.md"),
        ] {
            let e = Verifier::new(&pk_config(alg, file)).unwrap_err();
            assert!(
                matches!(e, AuthSetupError::InvalidKey { .. }),
                "{alg} {file}: {e}"
            );
            assert!(e.to_string().starts_with("auth.public_key_file: "), "{e}");
        }
    }

    #[test]
    fn minted_dev_tokens_verify() {
        let (config, secret) = crate::config::Config::dev();
        let v = Verifier::new(&config.auth).unwrap();
        let token = mint_hmac(JwtAlgorithm::HS256, secret.as_bytes(), &claims(json!({}))).unwrap();
        assert_eq!(v.verify(&token).unwrap().user, "7");
    }
}
