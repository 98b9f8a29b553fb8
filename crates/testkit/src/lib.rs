//! Services for tests: private Redis servers and clusters started from the `redis-server` and
//! `redis-cli` binaries on `PATH`, and the machine's shared Redis, RabbitMQ and PostgreSQL when
//! they are there.
//!
//! - [`RedisServer`]: one server on a free port of 127.0.0.1, killed on drop, restartable on
//!   the same port to test reconnection.
//! - [`RedisCluster`]: a Redis Cluster of masters without replicas, stopped on drop.
//! - [`shared_redis`], [`shared_rabbitmq`], [`shared_postgres`], [`require_redis_binaries`]:
//!   what a test may use, with a clear line when it is absent, and a failure under `CI=true`,
//!   where an absent service is a broken setup.
//! - [`PgDatabase`]: a PostgreSQL database of a test's own, dropped with it.
//! - [`unique_prefix`]: key prefixes that never collide, so that tests can share one Redis
//!   without flushing it; [`TempDir`]: a directory of a test's own, removed with it.
//!
//! The Redis checks use the standard library alone: they speak RESP over a plain socket or run
//! `redis-cli`, so that a Redis client under test is never also the one that checks it.
//! PostgreSQL is driven with `sqlx`.

mod cluster;
mod env;
mod postgres;
mod process;
mod resp;
mod server;
mod tempdir;

pub use cluster::RedisCluster;
pub use env::{require_redis_binaries, shared_rabbitmq, shared_redis, unique_prefix};
pub use postgres::{shared_postgres, PgDatabase};
pub use server::RedisServer;
pub use tempdir::TempDir;
