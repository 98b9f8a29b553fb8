//! Authentication errors: [`AuthError`] for a token that is refused (the client's fault, shown
//! to it in close frames and replies) and [`AuthSetupError`] for a verifier that cannot be built
//! (the operator's fault, at start).

use std::path::PathBuf;

use jsonwebtoken::errors::ErrorKind;

use crate::config::NO_KEY_MESSAGE;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was given.
    #[error("missing token")]
    Missing,
    /// Not a JWT: wrong shape, bad base64 or JSON, or an unsupported header.
    #[error("malformed token")]
    Malformed,
    /// The signature does not verify with the configured key.
    #[error("invalid token signature")]
    InvalidSignature,
    /// The header names another algorithm than the configured one (including `none`).
    #[error("token algorithm not allowed")]
    WrongAlgorithm,
    /// `exp` is in the past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("invalid token issuer")]
    InvalidIssuer,
    /// `aud` is not (or does not contain) the configured audience.
    #[error("invalid token audience")]
    InvalidAudience,
    /// A required claim is absent (or null).
    #[error("token claim `{0}` is missing")]
    MissingClaim(String),
    /// A claim has the wrong type or value.
    #[error("token claim `{claim}` is invalid: {problem}")]
    InvalidClaim {
        /// The claim's name.
        claim: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl AuthError {
    /// A short text for the client, e.g. in a close frame's reason (at most 24 bytes, far below
    /// the 123 a close reason may hold).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "token missing",
            AuthError::Malformed => "malformed token",
            AuthError::InvalidSignature => "invalid signature",
            AuthError::WrongAlgorithm => "algorithm not allowed",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::InvalidIssuer => "invalid issuer",
            AuthError::InvalidAudience => "invalid audience",
            AuthError::MissingClaim(_) => "missing claim",
            AuthError::InvalidClaim { .. } => "invalid claim",
        }
    }

    pub(crate) fn invalid_claim(claim: &str, problem: &'static str) -> AuthError {
        AuthError::InvalidClaim {
            claim: claim.to_string(),
            problem,
        }
    }
}

impl From<&ErrorKind> for AuthError {
    fn from(kind: &ErrorKind) -> AuthError {
        // `ErrorKind` is non-exhaustive, so a catch-all arm is unavoidable; every variant known
        // today is listed so that the choice for each is visible.
        match kind {
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => AuthError::Malformed,
            ErrorKind::InvalidSignature => AuthError::InvalidSignature,
            // Key problems found while verifying: the token cannot be proven genuine. The
            // verifier checks its key at start, so these point at a key the backend does not
            // parse the way the check did.
            ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::RsaFailedSigning
            | ErrorKind::Signing(_)
            | ErrorKind::Provider(_) => AuthError::InvalidSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm,
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
            ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim {
                claim: claim.clone(),
                problem: "wrong format",
            },
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::InvalidIssuer,
            ErrorKind::InvalidAudience => AuthError::InvalidAudience,
            ErrorKind::InvalidSubject => AuthError::invalid_claim("sub", "unexpected subject"),
            _ => AuthError::Malformed,
        }
    }
}

/// Why a [`Verifier`](super::Verifier) could not be built from `[auth]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    /// Neither a secret nor a public key file is configured for the algorithm.
    #[error("{}", NO_KEY_MESSAGE)]
    NoKey,
    /// The public key file could not be read.
    #[error("auth.public_key_file: cannot read {}: {source}", path.display())]
    ReadKey {
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The public key file is not a PEM public key usable with the configured algorithm.
    #[error("auth.public_key_file: {} is not a {algorithm} public key in PEM form ({message})", path.display())]
    InvalidKey {
        /// The configured path.
        path: PathBuf,
        /// The configured algorithm.
        algorithm: &'static str,
        /// The key parser's message.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_short_enough_for_close_frames() {
        let all = [
            AuthError::Missing,
            AuthError::Malformed,
            AuthError::InvalidSignature,
            AuthError::WrongAlgorithm,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::InvalidIssuer,
            AuthError::InvalidAudience,
            AuthError::MissingClaim("tenant_id".into()),
            AuthError::invalid_claim("sub", "empty"),
        ];
        for e in all {
            assert!(!e.reason().is_empty() && e.reason().len() <= 24, "{e:?}");
        }
        assert_eq!(AuthError::Expired.reason(), "token expired");
    }

    #[test]
    fn jsonwebtoken_kinds_map_to_auth_errors() {
        assert_eq!(
            AuthError::from(&ErrorKind::ExpiredSignature),
            AuthError::Expired
        );
        assert_eq!(
            AuthError::from(&ErrorKind::ImmatureSignature),
            AuthError::NotYetValid
        );
        assert_eq!(
            AuthError::from(&ErrorKind::InvalidAlgorithm),
            AuthError::WrongAlgorithm
        );
        assert_eq!(
            AuthError::from(&ErrorKind::InvalidSignature),
            AuthError::InvalidSignature
        );
        assert_eq!(
            AuthError::from(&ErrorKind::InvalidToken),
            AuthError::Malformed
        );
        assert_eq!(
            AuthError::from(&ErrorKind::MissingRequiredClaim("exp".into())),
            AuthError::MissingClaim("exp".into())
        );
    }
}
