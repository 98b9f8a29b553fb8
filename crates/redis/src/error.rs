//! [`RedisError`]: what can go wrong talking to Redis, for the broker and the registry alike.

/// A failed Redis command or connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// Redis, or the connection to it, failed; the text is the client's error.
    #[error("redis: {0}")]
    Redis(String),
    /// No answer before the deadline (`cluster.timeout_ms`).
    #[error("redis: timed out")]
    Timeout,
    /// A setting or an argument that cannot work.
    #[error("redis: {0}")]
    Invalid(String),
}

impl From<fred::error::Error> for RedisError {
    fn from(e: fred::error::Error) -> Self {
        match e.kind() {
            fred::error::ErrorKind::Timeout => Self::Timeout,
            _ => Self::Redis(e.to_string()),
        }
    }
}

impl From<tokio::time::error::Elapsed> for RedisError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Self::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::{Error, ErrorKind};

    #[test]
    fn a_client_timeout_is_a_timeout() {
        let e = Error::new(ErrorKind::Timeout, "Request timed out.");
        assert_eq!(RedisError::from(e), RedisError::Timeout);
        let e = Error::new(ErrorKind::IO, "connection refused");
        assert_eq!(
            RedisError::from(e).to_string(),
            "redis: IO Error: connection refused"
        );
    }
}
