//! [`SqlStore::connect`]: the connection pool, each connection's settings, and the schema's
//! migrations, for SQLite and PostgreSQL alike.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row};

use crate::error::StoreError;
use crate::redact::{redact, scrub, scrub_error};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How to reach the inbox's database, and the inbox's bounds.
#[derive(Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH` (the file is created if missing; `sqlite:///abs/path` for an absolute
    /// path) or `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (`postgresql://` too).
    pub url: String,
    /// The most connections the pool opens (default 8). SQLite writes one at a time whatever
    /// the size; its readers do not wait for the writer.
    pub max_connections: u32,
    /// How long a call waits for a connection, opening it included (default 5 s); then it
    /// fails with [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// How long a statement waits for a lock another connection holds (default 5 s): SQLite's
    /// `busy_timeout`, PostgreSQL's `lock_timeout`.
    pub busy_timeout: Duration,
    /// The most notifications of their own a user keeps (default 1,000, at least 1): creating
    /// one more drops their oldest. Tenant-wide notifications are bounded by age alone.
    pub max_per_user: u32,
    /// How long a notification is kept (default 90 days): [`crate::Store::prune`] deletes older
    /// ones.
    pub max_age: Duration,
}

impl StoreOptions {
    /// The options for `url`, with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            max_per_user: 1_000,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("url", &redact(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("busy_timeout", &self.busy_timeout)
            .field("max_per_user", &self.max_per_user)
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// The database behind the store: the one thing its SQL differs by is the migrations and each
/// connection's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Result<Self, StoreError> {
        let Some((scheme, _)) = url.split_once(':') else {
            return Err(StoreError::Invalid(format!(
                "`{}` is not a database URL: expected sqlite://PATH or postgres://HOST/DATABASE",
                redact(url)
            )));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            other => Err(StoreError::Invalid(format!(
                "unsupported scheme `{other}` in `{}`: expected sqlite:// or postgres://",
                redact(url)
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The inbox's storage in SQLite or PostgreSQL, with one set of SQL for both. Cheap to share:
/// it is a connection pool.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// SQLite's one writer at a time, taken in turn (see [`SqlStore::write_turn`]); `None` for
    /// PostgreSQL, which writes concurrently.
    writer: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// How long a writer waits for its turn.
    busy: Duration,
    pub(crate) max_per_user: u32,
    pub(crate) max_age_ms: i64,
    url: String,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("kind", &self.kind())
            .field("url", &self.url)
            .field("connections", &self.pool.size())
            .field("max_per_user", &self.max_per_user)
            .field("max_age_ms", &self.max_age_ms)
            .finish()
    }
}

impl SqlStore {
    /// Connects, brings the schema up to date and opens the pool.
    ///
    /// A first connection is opened here, within `acquire_timeout`, so that a wrong URL or a
    /// database that is down is reported at once and as it is (the pool alone would retry a
    /// refused connection until its timeout and then say only that it timed out, and would
    /// hide a failed setting of a connection the same way).
    pub async fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        if options.max_connections == 0 {
            return Err(StoreError::Invalid(
                "max_connections must be at least 1".into(),
            ));
        }
        if options.max_per_user == 0 {
            return Err(StoreError::Invalid(
                "max_per_user must be at least 1".into(),
            ));
        }
        let backend = Backend::of(&options.url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_url(&options.url)?,
            Backend::Postgres => options.url.clone(),
        };
        sqlx::any::install_default_drivers();
        let connect_options = AnyConnectOptions::from_str(&url).map_err(|e| {
            StoreError::Invalid(scrub(
                &format!("malformed URL `{}`: {e}", redact(&options.url)),
                &options.url,
            ))
        })?;
        let busy = options.busy_timeout;

        let mut first = tokio::time::timeout(options.acquire_timeout, connect_options.connect())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "no connection to {} within {:?}",
                    redact(&options.url),
                    options.acquire_timeout
                ))
            })?
            .map_err(|e| {
                let e = StoreError::from_sqlx(e);
                scrub_error(e, &options.url, &redact(&options.url))
            })?;
        configure(&mut first, backend, busy)
            .await
            .map_err(StoreError::from_sqlx)?;
        if let Err(error) = first.close().await {
            tracing::debug!(%error, "closing the inbox's first connection");
        }

        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _meta| Box::pin(configure(conn, backend, busy)))
            .connect_lazy_with(connect_options);
        migrate(&pool, backend).await?;
        tracing::debug!(kind = backend.name(), url = %redact(&options.url), "inbox database ready");
        Ok(Self {
            pool,
            backend,
            writer: (backend == Backend::Sqlite)
                .then(|| std::sync::Arc::new(tokio::sync::Semaphore::new(1))),
            busy: options.busy_timeout,
            max_per_user: options.max_per_user,
            max_age_ms: i64::try_from(options.max_age.as_millis()).unwrap_or(i64::MAX),
            url: redact(&options.url),
        })
    }

    /// The turn to write. SQLite takes one writer at a time, and its busy handler retries a
    /// blocked writer by sleeping, so under many writers some wait past any deadline while
    /// others go through; this process's writers queue here instead, first come first served,
    /// each waiting at most `busy_timeout` (writers of other processes sharing the file still
    /// meet SQLite's handler). `None` for PostgreSQL.
    pub(crate) async fn write_turn(
        &self,
    ) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, StoreError> {
        let Some(writer) = &self.writer else {
            return Ok(None);
        };
        match tokio::time::timeout(self.busy, writer.acquire()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            Ok(Err(_)) => Err(StoreError::Unavailable("the inbox store is closed".into())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "the inbox database is busy: no turn to write within {:?}",
                self.busy
            ))),
        }
    }

    /// The database: `"sqlite"` or `"postgres"`.
    pub fn kind(&self) -> &'static str {
        self.backend.name()
    }

    /// Closes the pool's connections, waiting for those in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Brings the schema up to date.
///
/// PostgreSQL's migrations hold an advisory lock, so that servers starting together migrate one
/// at a time; the wait is bounded by the other's migration. SQLite's have no lock across
/// connections: of two servers migrating a new file at once, one fails on the tables the other
/// made (each migration is a transaction, so nothing is left half done), and on a second look
/// finds them applied.
async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    const ATTEMPTS: u32 = 3;
    let migrator = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    let mut attempt = 1;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(error) if backend == Backend::Sqlite && attempt < ATTEMPTS => {
                tracing::debug!(%error, attempt, "the inbox's migrations, again");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(StoreError::Migration(error.to_string())),
        }
    }
}

/// Each connection's settings, set when it is opened.
///
/// SQLite: WAL, so that readers never wait for the writer; `synchronous=FULL`, so that a write
/// the API acknowledged survives a power loss (`NORMAL` would be faster, but in WAL mode it may
/// lose the last transactions on power loss); a lock held by another connection waited for up
/// to `busy`; foreign keys enforced (receipts go with their notification).
///
/// PostgreSQL: a lock waited for up to `busy`. Its commits are durable by default.
async fn configure(
    conn: &mut AnyConnection,
    backend: Backend,
    busy: Duration,
) -> Result<(), sqlx::Error> {
    // Both take a 32-bit count of milliseconds.
    let busy_ms = busy.as_millis().min(i32::MAX as u128);
    match backend {
        Backend::Sqlite => {
            // The timeout first, so that the switch to WAL waits for a lock like the rest.
            conn.execute(format!("PRAGMA busy_timeout = {busy_ms}").as_str())
                .await?;
            // Switching a new file to WAL takes an exclusive lock that SQLite does not wait
            // for (busy_timeout does not apply): a busy answer is tried again until `busy`.
            let deadline = Instant::now().checked_add(busy);
            let mode: String = loop {
                match conn.fetch_one("PRAGMA journal_mode = WAL").await {
                    Ok(row) => break row.try_get(0)?,
                    Err(e) if is_busy(&e) && deadline.is_none_or(|d| Instant::now() < d) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(sqlx::Error::Configuration(
                    format!("SQLite kept the journal mode `{mode}`: the inbox needs WAL").into(),
                ));
            }
            conn.execute("PRAGMA synchronous = FULL").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
        }
        Backend::Postgres => {
            // Every wait on the server's side bounded: a lock, a statement, a transaction
            // left open by a caller that gave up.
            conn.execute(format!("SET lock_timeout = {busy_ms}").as_str())
                .await?;
            conn.execute(format!("SET statement_timeout = {busy_ms}").as_str())
                .await?;
            conn.execute(format!("SET idle_in_transaction_session_timeout = {busy_ms}").as_str())
                .await?;
        }
    }
    Ok(())
}

/// Whether SQLite answered that the database is busy or locked.
fn is_busy(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|e| e.code());
    let primary = code.and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
    matches!(primary, Some(5 | 6))
}

/// A SQLite URL that creates the file if it is missing, unless it names a mode itself. An
/// in-memory database is refused: it is not storage, and the pool would give each connection a
/// database of its own.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = path.trim_start_matches("sqlite:").trim_start_matches("//");
    let params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if path.is_empty() || path == ":memory:" || params.contains(&"mode=memory") {
        return Err(StoreError::Invalid(format!(
            "`{url}` is an in-memory SQLite database: the inbox needs a file"
        )));
    }
    if params.iter().any(|p| p.starts_with("mode=")) {
        Ok(url.to_owned())
    } else if query.is_empty() {
        Ok(format!("{}?mode=rwc", url.trim_end_matches('?')))
    } else {
        Ok(format!("{url}&mode=rwc"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_never_show_the_password() {
        let options = StoreOptions::new("postgres://app:s3cret@db/inbox");
        assert!(!format!("{options:?}").contains("s3cret"));
    }

    #[test]
    fn connecting_may_move_between_threads() {
        fn send<T: Send>(_: &T) {}
        let options = StoreOptions::new("sqlite://never-opened.db");
        send(&SqlStore::connect(&options));
    }

    #[test]
    fn schemes_choose_the_backend() {
        assert_eq!(Backend::of("sqlite://inbox.db"), Ok(Backend::Sqlite));
        assert_eq!(Backend::of("sqlite:inbox.db"), Ok(Backend::Sqlite));
        assert_eq!(Backend::of("postgres://db/x"), Ok(Backend::Postgres));
        assert_eq!(Backend::of("postgresql://db/x"), Ok(Backend::Postgres));
        assert!(matches!(
            Backend::of("mysql://db/x"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            Backend::of("inbox.db"),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn sqlite_files_are_created_unless_a_mode_is_named() {
        assert_eq!(
            sqlite_url("sqlite:///tmp/a.db").as_deref(),
            Ok("sqlite:///tmp/a.db?mode=rwc")
        );
        assert_eq!(
            sqlite_url("sqlite://a.db?cache=private").as_deref(),
            Ok("sqlite://a.db?cache=private&mode=rwc")
        );
        assert_eq!(
            sqlite_url("sqlite://a.db?mode=ro").as_deref(),
            Ok("sqlite://a.db?mode=ro")
        );
        assert!(sqlite_url("sqlite::memory:").is_err());
        assert!(sqlite_url("sqlite://a.db?mode=memory").is_err());
    }
}
