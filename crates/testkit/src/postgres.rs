//! [`shared_postgres`]: a database of a test's own on the machine's shared PostgreSQL, created
//! for it and dropped with its [`PgDatabase`] guard.
//!
//! The work runs on a thread of its own with a current-thread tokio runtime, so that the calls
//! and the guard's drop work alike in plain tests and inside async ones (where blocking on the
//! test's own runtime would panic).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::env::absent;

/// The shared PostgreSQL's address; it trusts `postgres` from there without a password.
const HOST: &str = "127.0.0.1";
const PORT: u16 = 5432;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long creating or dropping a database may take.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A database on the shared PostgreSQL that no other test uses, dropped (`WITH (FORCE)`,
/// whoever is still connected) when this guard is.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
}

impl PgDatabase {
    /// Its name, `roomcast_test_<pid>_<n>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL: `postgres://postgres@127.0.0.1:5432/<name>`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@{HOST}:{PORT}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = on_own_runtime(move || async move {
            let mut admin = admin().await?;
            let statement = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            bounded(admin.execute(statement.as_str())).await?;
            let _ = admin.close().await;
            Ok::<_, String>(())
        });
        if let Err(e) = dropped.and_then(|r| r) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// A new database on the machine's shared PostgreSQL (127.0.0.1:5432, user `postgres`, trust
/// authentication), if it accepts a connection within 2 s.
///
/// When it does not, prints a line saying so and returns `None`; under `CI=true` it panics
/// instead. It panics too when the server is there but refuses to create the database, a broken
/// setup either way.
pub fn shared_postgres() -> Option<PgDatabase> {
    let created = on_own_runtime(|| async {
        let mut admin = admin().await.map_err(Failure::Absent)?;
        let mut last = String::from("no attempt");
        for _ in 0..100 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("roomcast_test_{}_{n}", std::process::id());
            let statement = format!("CREATE DATABASE \"{name}\"");
            match bounded(admin.execute(statement.as_str())).await {
                Ok(_) => {
                    let _ = admin.close().await;
                    return Ok(PgDatabase { name });
                }
                // duplicate_database: one left by a killed process with the same pid.
                Err(e) if e.contains("42P04") => last = e,
                Err(e) => return Err(Failure::Broken(e)),
            }
        }
        Err(Failure::Broken(last))
    });
    match created {
        Ok(Ok(database)) => Some(database),
        Ok(Err(Failure::Absent(e))) => {
            absent(&format!(
                "the shared PostgreSQL at {HOST}:{PORT} is absent ({e})"
            ));
            None
        }
        Ok(Err(Failure::Broken(e))) | Err(e) => {
            panic!("the shared PostgreSQL at {HOST}:{PORT} could not create a database: {e}")
        }
    }
}

/// Why no database was made.
enum Failure {
    /// The server did not answer.
    Absent(String),
    /// The server answered, but refused.
    Broken(String),
}

/// A connection to the `postgres` database, without TLS (the server is this machine's).
async fn admin() -> Result<PgConnection, String> {
    let options = PgConnectOptions::new_without_pgpass()
        .host(HOST)
        .port(PORT)
        .username("postgres")
        .database("postgres")
        .ssl_mode(PgSslMode::Disable);
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
    }
}

/// `statement`'s outcome within [`STATEMENT_TIMEOUT`], its error with its SQLSTATE.
async fn bounded<T>(statement: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, String> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, statement).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(sqlx::Error::Database(e))) => Err(format!(
            "{} (SQLSTATE {})",
            e.message(),
            e.code().unwrap_or_default()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {STATEMENT_TIMEOUT:?}")),
    }
}

/// Runs `task` to completion on a new thread with a runtime of its own.
fn on_own_runtime<T, F>(task: impl FnOnce() -> F + Send + 'static) -> Result<T, String>
where
    F: Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no tokio runtime: {e}"))?;
        Ok(runtime.block_on(task()))
    })
    .join()
    .unwrap_or_else(|_| Err("the PostgreSQL helper thread panicked".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_are_created_and_dropped() {
        let Some(database) = shared_postgres() else {
            return;
        };
        let other = shared_postgres();
        assert!(other.as_ref().is_some_and(|o| o.name() != database.name()));
        assert!(database.url().ends_with(database.name()));
        let name = database.name().to_owned();
        drop(database);
        let exists = on_own_runtime(move || async move {
            let mut admin = admin().await?;
            let query = format!("SELECT 1 FROM pg_database WHERE datname = '{name}'");
            let rows = bounded(admin.fetch_all(query.as_str())).await?;
            Ok::<_, String>(!rows.is_empty())
        });
        assert_eq!(exists, Ok(Ok(false)));
    }

    #[tokio::test]
    async fn the_guard_drops_inside_async_tests() {
        if let Some(database) = shared_postgres() {
            drop(database);
        }
    }
}
