//! Connecting: clear and quick errors for wrong URLs and absent databases, the SQLite file's
//! settings, and SQLite's numbered parameters, which the store's SQL relies on.

use std::time::Duration;

use roomcast_inbox::{SqlStore, StoreError, StoreOptions};
use roomcast_testkit::TempDir;
use sqlx::{Connection, Row};

/// A bound on calls that must fail fast, so that a hang fails the test instead of stalling it.
const HANG: Duration = Duration::from_secs(20);

async fn connect(url: &str, acquire_timeout: Duration) -> Result<SqlStore, StoreError> {
    let options = StoreOptions {
        acquire_timeout,
        ..StoreOptions::new(url)
    };
    tokio::time::timeout(HANG, SqlStore::connect(&options))
        .await
        .expect("connect answers")
}

#[tokio::test]
async fn malformed_urls_are_invalid() {
    for url in [
        "postgres://app:s3cret@127.0.0.1:notaport/inbox",
        "mysql://app:s3cret@127.0.0.1/inbox",
        "inbox.db",
        "",
        "sqlite::memory:",
        "sqlite://inbox.db?mode=memory",
        "sqlite://inbox.db?colour=blue",
    ] {
        let error = connect(url, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{url}: {error:?}");
        let message = error.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(
            message.starts_with("the inbox database is misconfigured: "),
            "{message}"
        );
    }
    let zero = StoreOptions {
        max_per_user: 0,
        ..StoreOptions::new("sqlite://unused.db")
    };
    let error = SqlStore::connect(&zero).await.unwrap_err();
    assert!(error.to_string().contains("max_per_user"), "{error}");
}

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable_at_once() {
    let url = "postgres://app:s3cret@127.0.0.1:1/inbox";
    let error = connect(url, Duration::from_millis(500)).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("refused"), "{message}");
    assert!(
        message.contains("postgres://app:***@127.0.0.1:1/inbox"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn a_sqlite_file_out_of_reach_is_unavailable() {
    let dir = TempDir::new("inbox").unwrap();
    let url = format!("sqlite://{}/missing/inbox.db", dir.path().display());
    let error = connect(&url, Duration::from_secs(1)).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(error.to_string().contains("unable to open"), "{error}");
}

#[tokio::test]
async fn the_sqlite_file_is_created_in_wal_mode() {
    let dir = TempDir::new("inbox").unwrap();
    let path = dir.path().join("inbox.db");
    let url = format!("sqlite://{}", path.display());
    let store = connect(&url, Duration::from_secs(5)).await.unwrap();
    assert_eq!(store.kind(), "sqlite");
    assert!(path.is_file());
    assert!(!format!("{store:?}").is_empty());
    store.close().await;

    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('notifications', 'receipts') ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, ["notifications", "receipts"]);
}

/// The store's SQL numbers its parameters `$1, $2, ...`, uses some twice and some out of order;
/// SQLite takes `$N` as a named parameter, which sqlx binds by its number.
#[tokio::test]
async fn numbered_parameters_work_on_sqlite() {
    sqlx::any::install_default_drivers();
    let dir = TempDir::new("inbox").unwrap();
    let url = format!("sqlite://{}/params.db?mode=rwc", dir.path().display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let row = sqlx::query("SELECT $2 || $1 AS joined, $1 AS first, $3 + $3 AS twice")
        .bind("a")
        .bind("b")
        .bind(21_i64)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("joined"), "ba");
    assert_eq!(row.get::<String, _>("first"), "a");
    assert_eq!(row.get::<i64, _>("twice"), 42);
}
