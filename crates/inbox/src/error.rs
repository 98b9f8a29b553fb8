//! [`StoreError`]: what can go wrong with the inbox's storage, and the one place that sorts the
//! database driver's errors into it.

use sqlx::error::DatabaseError;

/// A failure of the inbox's storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot be reached or cannot serve now: no connection within the acquire
    /// timeout, I/O, the database down, locked or busy past its timeout. Worth trying again
    /// later.
    #[error("the inbox database is unavailable: {0}")]
    Unavailable(String),
    /// The configuration is wrong: a malformed URL, an unsupported scheme, a zero bound.
    #[error("the inbox database is misconfigured: {0}")]
    Invalid(String),
    /// The schema could not be brought up to date.
    #[error("the inbox database's migrations failed: {0}")]
    Migration(String),
    /// The database refused or failed a statement for another reason (a constraint, a value it
    /// could not decode): not something that waiting cures.
    #[error("the inbox database failed a statement: {0}")]
    Database(String),
}

impl StoreError {
    /// Sorts an error of the database driver.
    pub(crate) fn from_sqlx(error: sqlx::Error) -> Self {
        // `sqlx::Error` is non-exhaustive: what is not named here is a failed statement.
        match error {
            sqlx::Error::PoolTimedOut => Self::Unavailable(
                "no connection became free or could be opened within the acquire timeout".into(),
            ),
            sqlx::Error::PoolClosed => Self::Unavailable("the connection pool is closed".into()),
            sqlx::Error::Io(e) => Self::Unavailable(format!("I/O: {e}")),
            sqlx::Error::Tls(e) => Self::Unavailable(format!("TLS: {e}")),
            sqlx::Error::WorkerCrashed => {
                Self::Unavailable("the SQLite connection's worker thread stopped".into())
            }
            sqlx::Error::Database(e) if is_transient(e.as_ref()) => {
                Self::Unavailable(e.message().to_owned())
            }
            sqlx::Error::Configuration(e) => Self::Invalid(e.to_string()),
            sqlx::Error::Migrate(e) => Self::Migration(e.to_string()),
            other => Self::Database(other.to_string()),
        }
    }

    /// Whether waiting and trying again may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Whether a database's error says it cannot serve now, rather than that the statement is wrong.
fn is_transient(error: &dyn DatabaseError) -> bool {
    let Some(code) = error.code() else {
        return false;
    };
    if error
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        // Extended result codes; the primary code is the low byte.
        let primary = code.parse::<i32>().map_or(0, |c| c & 0xff);
        // BUSY, LOCKED, IOERR, FULL (the disk), CANTOPEN.
        matches!(primary, 5 | 6 | 10 | 13 | 14)
    } else {
        // PostgreSQL SQLSTATE: connection exceptions, insufficient resources, operator
        // intervention (shutdown, cannot connect now, statement timeout), serialization failure,
        // deadlock, lock not available.
        code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57")
            || matches!(&*code, "40001" | "40P01" | "55P03")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_and_io_are_unavailable() {
        assert!(StoreError::from_sqlx(sqlx::Error::PoolTimedOut).is_unavailable());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(StoreError::from_sqlx(sqlx::Error::Io(refused)).is_unavailable());
        assert!(!StoreError::from_sqlx(sqlx::Error::RowNotFound).is_unavailable());
    }

    #[test]
    fn messages_say_what_failed() {
        let e = StoreError::from_sqlx(sqlx::Error::PoolTimedOut);
        assert!(e
            .to_string()
            .starts_with("the inbox database is unavailable: "));
    }
}
