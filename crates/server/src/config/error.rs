//! Why a configuration could not be loaded or was rejected: [`ConfigError`], whose every
//! variant names the key (or the file, or the environment variable) it is about.

use std::path::PathBuf;

/// Why a configuration could not be loaded or was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file (or an environment value) is not valid TOML.
    #[error("{origin}: invalid TOML: {message}")]
    Parse {
        /// The file name, or the environment variable.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key that the schema does not have, e.g. `limits.nope`.
    #[error("{key}: unknown key{}", env_note(.env))]
    UnknownKey {
        /// The dotted path of the key, e.g. `limits.nope` or `rooms.acl[2].patern`.
        key: String,
        /// The environment variable that set it, when one did.
        env: Option<String>,
    },
    /// A key whose value has the wrong type or is out of range.
    #[error("{key}: {message}{}", env_note(.env))]
    Invalid {
        /// The dotted path of the key, e.g. `limits.max_connections`.
        key: String,
        /// What is wrong with it.
        message: String,
        /// The environment variable that set it, when one did.
        env: Option<String>,
    },
    /// An environment variable that cannot be applied (bad name, or a path through a non-table).
    #[error("{var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// No JWT secret or public key is configured: the server refuses to start.
    #[error("{}", NO_KEY_MESSAGE)]
    NoKey,
}

/// The text of [`ConfigError::NoKey`], also used by the token verifier.
pub(crate) const NO_KEY_MESSAGE: &str =
    "no JWT key configured: set auth.secret (or ROOMCAST_JWT_SECRET) \
     for HS256/HS384/HS512, or auth.public_key_file (or ROOMCAST_JWT_PUBLIC_KEY_FILE) with \
     auth.algorithm = \"RS256\", \"ES256\" or \"EdDSA\"; or run `roomcast --dev` for a throwaway \
     development secret";

fn env_note(env: &Option<String>) -> String {
    match env {
        Some(var) => format!(" (set by {var})"),
        None => String::new(),
    }
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
            env: None,
        }
    }
}
