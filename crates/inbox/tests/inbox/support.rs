//! The databases the scenarios run on, and small makers of notifications.

use std::sync::Arc;
use std::time::Duration;

use roomcast_inbox::{NewNotification, Owner, SqlStore, Store, StoreOptions};
use roomcast_testkit::{PgDatabase, TempDir};
use sqlx::Connection;

/// A database of the test's own, removed with it.
pub(crate) struct Db {
    pub(crate) url: String,
    guard: Guard,
}

/// What removes the database: held for its drop.
enum Guard {
    Sqlite { _dir: TempDir },
    Postgres { _database: PgDatabase },
}

impl Db {
    /// A SQLite file, `inbox.db`, in a fresh directory (the store creates the file).
    pub(crate) fn sqlite() -> Self {
        let dir = TempDir::new("inbox").expect("a temporary directory");
        Self {
            url: format!("sqlite://{}/inbox.db", dir.path().display()),
            guard: Guard::Sqlite { _dir: dir },
        }
    }

    /// A fresh database on the shared PostgreSQL, if it is there.
    pub(crate) fn postgres() -> Option<Self> {
        let database = roomcast_testkit::shared_postgres()?;
        Some(Self {
            url: database.url(),
            guard: Guard::Postgres {
                _database: database,
            },
        })
    }

    pub(crate) fn is_sqlite(&self) -> bool {
        matches!(self.guard, Guard::Sqlite { .. })
    }

    /// The options the scenarios start from.
    pub(crate) fn options(&self) -> StoreOptions {
        StoreOptions {
            url: self.url.clone(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(10),
            max_per_user: 1_000,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }

    /// The store with the scenarios' options, as the server holds it.
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.open_with(|_| {}).await)
    }

    /// The store with the scenarios' options as `adjust` changes them.
    pub(crate) async fn open_with(&self, adjust: impl FnOnce(&mut StoreOptions)) -> SqlStore {
        let mut options = self.options();
        adjust(&mut options);
        SqlStore::connect(&options).await.expect("the store opens")
    }

    /// How many rows `table` holds, read past the store.
    pub(crate) async fn rows(&self, table: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        let count = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        count
    }
}

/// An `info`, `low` notification titled `title`, with nothing else.
pub(crate) fn note(title: &str) -> NewNotification {
    tagged(title, "info", "low")
}

/// A notification titled `title` of type `kind` and priority `priority`.
pub(crate) fn tagged(title: &str, kind: &str, priority: &str) -> NewNotification {
    NewNotification {
        title: title.to_owned(),
        message: format!("{title}, in full"),
        kind: kind.to_owned(),
        priority: priority.to_owned(),
        action_url: None,
        action_label: None,
        metadata: None,
        data: None,
    }
}

/// User `user` of tenant `t1`.
pub(crate) fn reader(user: &str) -> Owner {
    Owner::new("t1", user)
}

/// The ids of `owner`'s notifications, newest first, all of them.
pub(crate) async fn ids(store: &dyn Store, owner: &Owner) -> Vec<i64> {
    let page = store
        .list(owner, &Default::default(), None, 10_000)
        .await
        .unwrap();
    assert_eq!(page.next, None);
    page.notifications.iter().map(|n| n.id).collect()
}
