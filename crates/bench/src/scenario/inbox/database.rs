//! The inbox scenario's databases, each fresh and empty: a SQLite file in a new temporary
//! directory, removed with it; or `roomcast_bench_inbox_<pid>` on the PostgreSQL at
//! `--postgres`, created for the measurement and dropped `WITH (FORCE)` after. Nothing else on
//! that server is touched: a database of that name that is already there is an error, not
//! something to drop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor, Row};

use crate::procfs;

/// How long connecting to PostgreSQL may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database the inbox runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    /// The command-line and results name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }

    /// A comma-separated list of names.
    pub(super) fn parse_list(text: &str) -> Result<Vec<Kind>, String> {
        text.split(',')
            .map(|name| match name.trim() {
                "sqlite" => Ok(Kind::Sqlite),
                "postgres" => Ok(Kind::Postgres),
                other => Err(format!(
                    "unknown database `{other}` (known: sqlite, postgres)"
                )),
            })
            .collect()
    }
}

/// Whether the PostgreSQL at `server` accepts a connection; why not, if it does not.
pub(super) async fn reachable(server: &str) -> Result<(), String> {
    match admin(server).await {
        Ok(conn) => {
            let _ = conn.close().await;
            Ok(())
        }
        Err(e) => Err(format!(
            "no PostgreSQL at {}: {e:#}",
            roomcast_inbox::redact(server)
        )),
    }
}

/// A connection to the server's `postgres` database.
async fn admin(server: &str) -> Result<PgConnection> {
    let options = PgConnectOptions::from_str(server)
        .with_context(|| format!("`{server}` is not a PostgreSQL URL"))?
        .database("postgres");
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| anyhow!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(anyhow::Error::from)
}

/// A fresh database: its URL, and where it lives.
pub(super) struct Fresh {
    pub(super) url: String,
    place: Place,
}

enum Place {
    Sqlite { dir: PathBuf },
    Postgres { admin: PgConnection, name: String },
}

impl Fresh {
    /// A new, empty database of `kind` (PostgreSQL's on `server`).
    pub(super) async fn create(kind: Kind, server: &str) -> Result<Fresh> {
        match kind {
            Kind::Sqlite => {
                let dir = std::env::temp_dir().join(format!(
                    "roomcast-bench-inbox-{}-{}",
                    std::process::id(),
                    &crate::target::random_text()[..8]
                ));
                std::fs::create_dir(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                Ok(Fresh {
                    url: format!("sqlite://{}/inbox.db", dir.display()),
                    place: Place::Sqlite { dir },
                })
            }
            Kind::Postgres => {
                let mut admin = admin(server).await?;
                let name = format!("roomcast_bench_inbox_{}", std::process::id());
                admin
                    .execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await
                    .with_context(|| format!("cannot create the database {name}"))?;
                Ok(Fresh {
                    url: format!("{}/{name}", server.trim_end_matches('/')),
                    place: Place::Postgres { admin, name },
                })
            }
        }
    }

    /// Which database it is.
    pub(super) fn kind(&self) -> Kind {
        match self.place {
            Place::Sqlite { .. } => Kind::Sqlite,
            Place::Postgres { .. } => Kind::Postgres,
        }
    }

    /// Removes the database: the directory, or the PostgreSQL database whoever is still
    /// connected to it.
    pub(super) async fn remove(self) -> Result<()> {
        match self.place {
            Place::Sqlite { dir } => std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display())),
            Place::Postgres { mut admin, name } => {
                admin
                    .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await
                    .with_context(|| format!("cannot drop the database {name}"))?;
                let _ = admin.close().await;
                Ok(())
            }
        }
    }

    /// The CPU time of the PostgreSQL backends serving this database, by process id; empty
    /// for SQLite, whose work is the server's own.
    pub(super) async fn backends_cpu(&mut self) -> Result<HashMap<u32, Duration>> {
        let Place::Postgres { admin, name } = &mut self.place else {
            return Ok(HashMap::new());
        };
        let rows = sqlx::query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind(name.as_str())
            .fetch_all(&mut *admin)
            .await?;
        let mut cpu = HashMap::new();
        for row in rows {
            let pid: i32 = row.try_get(0)?;
            let Ok(pid) = u32::try_from(pid) else {
                continue;
            };
            // A backend that has just exited is left out.
            if let Ok(sample) = procfs::sample(pid) {
                cpu.insert(pid, sample.cpu);
            }
        }
        Ok(cpu)
    }

    /// Updates PostgreSQL's statistics of the tables, as its manual advises after a bulk
    /// load (autovacuum would, at a moment of its choosing); nothing for SQLite.
    pub(super) async fn analyze(&mut self) -> Result<()> {
        if let Place::Postgres { .. } = self.place {
            let options = PgConnectOptions::from_str(&self.url)?;
            let mut conn = options.connect().await?;
            conn.execute("ANALYZE").await?;
            let _ = conn.close().await;
        }
        Ok(())
    }

    /// The database's size on disk: SQLite's file and its write-ahead log, PostgreSQL's
    /// `pg_database_size`.
    pub(super) async fn size_bytes(&mut self) -> Result<u64> {
        match &mut self.place {
            Place::Sqlite { dir } => {
                let mut total = 0;
                for entry in std::fs::read_dir(&*dir)? {
                    total += entry?.metadata()?.len();
                }
                Ok(total)
            }
            Place::Postgres { admin, name } => {
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size($1)")
                    .bind(name.as_str())
                    .fetch_one(&mut *admin)
                    .await?;
                Ok(u64::try_from(size).unwrap_or(0))
            }
        }
    }
}

/// CPU time spent between two samples of [`Fresh::backends_cpu`]; a backend started in
/// between counts whole.
pub(super) fn cpu_since(
    before: &HashMap<u32, Duration>,
    after: &HashMap<u32, Duration>,
) -> Duration {
    after
        .iter()
        .map(|(pid, now)| now.saturating_sub(before.get(pid).copied().unwrap_or_default()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_are_named_in_a_list() {
        assert_eq!(
            Kind::parse_list("sqlite, postgres"),
            Ok(vec![Kind::Sqlite, Kind::Postgres])
        );
        assert!(Kind::parse_list("mysql").is_err());
    }

    #[test]
    fn a_backend_started_between_samples_counts_whole() {
        let before = HashMap::from([(1, Duration::from_millis(10))]);
        let after = HashMap::from([
            (1, Duration::from_millis(30)),
            (2, Duration::from_millis(5)),
        ]);
        assert_eq!(cpu_since(&before, &after), Duration::from_millis(25));
    }
}
