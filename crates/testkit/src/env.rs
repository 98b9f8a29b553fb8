//! What the machine offers: the shared Redis and RabbitMQ, the Redis binaries, and unique key
//! prefixes for tests that share one service. The shared PostgreSQL is in `postgres`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::resp;

/// The port of the machine's shared Redis.
const SHARED_PORT: u16 = 6379;
/// How long the shared Redis has to answer `PING`.
const SHARED_TIMEOUT: Duration = Duration::from_secs(2);

static NEXT_PREFIX: AtomicU64 = AtomicU64::new(0);

/// Whether the tests run in CI (`CI=true`), where an absent service is a failure.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports an absent service: a line on stderr, or a panic under `CI=true`.
pub(crate) fn absent(message: &str) {
    if in_ci() {
        panic!("{message} (CI=true: an absent service is a failure)");
    }
    eprintln!("{message}: skipping the test");
}

/// The URL of the machine's shared Redis, `redis://127.0.0.1:6379/0`, if it answers `PING`
/// within 2 s.
///
/// When it does not, prints a line saying so and returns `None`; under `CI=true` it panics
/// instead. Tests against it must keep to keys under a [`unique_prefix`] and never flush it.
pub fn shared_redis() -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, SHARED_PORT));
    if resp::ping(addr, SHARED_TIMEOUT) {
        Some(format!("redis://127.0.0.1:{SHARED_PORT}/0"))
    } else {
        absent(&format!(
            "the shared Redis at {addr} is absent (no PONG within {SHARED_TIMEOUT:?})"
        ));
        None
    }
}

/// The port of the machine's RabbitMQ.
const RABBITMQ_PORT: u16 = 5672;

/// The URL of the machine's RabbitMQ (guest/guest, vhost `/`), if its port accepts a
/// connection within 2 s.
///
/// When it does not, prints a line saying so and returns `None`; under `CI=true` it panics
/// instead. Tests against it must name their exchanges and queues with a [`unique_prefix`]
/// and delete them after.
pub fn shared_rabbitmq() -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, RABBITMQ_PORT));
    if std::net::TcpStream::connect_timeout(&addr, SHARED_TIMEOUT).is_ok() {
        Some(format!("amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/%2f"))
    } else {
        absent(&format!(
            "the shared RabbitMQ at {addr} is absent (no connection within {SHARED_TIMEOUT:?})"
        ));
        None
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| Path::new(&dir).join(program).is_file())
    })
}

/// Whether `redis-server` and `redis-cli` are on `PATH`.
///
/// When one is missing, prints a line naming it and returns `false`; under `CI=true` it
/// panics instead.
pub fn require_redis_binaries() -> bool {
    let missing: Vec<&str> = ["redis-server", "redis-cli"]
        .into_iter()
        .filter(|program| !on_path(program))
        .collect();
    if missing.is_empty() {
        return true;
    }
    absent(&format!(
        "{} not found on PATH (install the redis-server package)",
        missing.join(" and ")
    ));
    false
}

/// A key prefix no other test uses: `<test>-<pid>-<n>`, with `n` counting up in this process.
pub fn unique_prefix(test: &str) -> String {
    let n = NEXT_PREFIX.fetch_add(1, Ordering::Relaxed);
    format!("{test}-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_never_repeat() {
        let a = unique_prefix("t");
        let b = unique_prefix("t");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t-{}-", std::process::id())));
    }

    #[test]
    fn shared_redis_is_the_default_port_when_present() {
        if let Some(url) = shared_redis() {
            assert_eq!(url, "redis://127.0.0.1:6379/0");
        }
    }
}
