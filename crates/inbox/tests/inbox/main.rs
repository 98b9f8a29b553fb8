//! The inbox's behaviour against real databases: every scenario runs on a SQLite file in a fresh
//! directory and on a fresh database of the machine's shared PostgreSQL (skipped with a line when
//! it is absent, a failure under `CI=true`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs each named scenario, an `async fn(Db)`, as two tests: `<scenario>::sqlite` and
/// `<scenario>::postgres`.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(crate::support::Db::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = crate::support::Db::postgres() {
                    super::$scenario(db).await;
                }
            }
        }
    )*};
}

mod connect;
mod create_list;
mod import;
mod race;
mod retention;
mod state;
mod support;
