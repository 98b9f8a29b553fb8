//! Counters for `GET /metrics`, rendered in the Prometheus text format.
//!
//! Hot-path counters are relaxed atomics; gauges that the room index already knows
//! (connections per tenant) are read at scrape time instead of being maintained. The
//! process's own metrics (memory, CPU, file descriptors) are in `process`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use roomcast_broker::BrokerStatus;
use roomcast_engine::driver::IoStats;
use roomcast_engine::rooms::TenantCount;

mod process;

pub use process::render as render_process;

/// Most tenants with a label of their own in `roomcast_tenant_publishes_total`.
const MAX_TENANT_LABELS: usize = 10_000;
/// The label shared by tenants past [`MAX_TENANT_LABELS`].
const OTHER_TENANTS: &str = "_other";

/// Counts by reason, for a counter with a `reason` label.
#[derive(Debug, Default)]
pub struct ByReason(Mutex<BTreeMap<&'static str, u64>>);

impl ByReason {
    /// Counts one for `reason`.
    pub fn add(&self, reason: &'static str) {
        *lock(&self.0).entry(reason).or_default() += 1;
    }

    /// The counts, by reason, sorted.
    pub fn list(&self) -> Vec<(&'static str, u64)> {
        lock(&self.0).iter().map(|(r, n)| (*r, *n)).collect()
    }
}

/// Why a connection attempt was refused or a session ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rejection {
    /// A token failed verification.
    AuthFailed,
    /// No token arrived in time.
    AuthTimeout,
    /// A connection limit was reached.
    Limit,
}

impl Rejection {
    fn label(self) -> &'static str {
        match self {
            Rejection::AuthFailed => "auth_failed",
            Rejection::AuthTimeout => "auth_timeout",
            Rejection::Limit => "limit",
        }
    }
}

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Socket traffic, shared with every connection driver.
    pub io: std::sync::Arc<IoStats>,
    /// Connections authenticated since start.
    pub connections_opened: AtomicU64,
    /// Events published (one per API or client publish call).
    pub publishes: AtomicU64,
    /// Event frames queued to connections.
    pub deliveries: AtomicU64,
    /// Native connections closed because their outbound queue overflowed (Socket.IO ones
    /// are counted by the Socket.IO runtime in [`IoStats::slow_consumers`]; the metric is
    /// the sum).
    pub slow_consumers: AtomicU64,
    /// Requests refused by the inbound rate limit.
    pub rate_limited: AtomicU64,
    /// Socket.IO `CONNECT`s that named a session: recovered, and not (a new session given).
    recoveries: [AtomicU64; 2],
    // Low-rate counters keyed by label; a std mutex held only to bump or render.
    rejections: Mutex<BTreeMap<Rejection, u64>>,
    publishes_by_tenant: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Counts a Socket.IO `CONNECT` that named a session, recovered or not.
    pub fn recovery(&self, recovered: bool) {
        self.recoveries[usize::from(recovered)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused connection or failed authentication.
    pub fn reject(&self, why: Rejection) {
        *lock(&self.rejections).entry(why).or_default() += 1;
    }

    /// Counts a publish for a tenant (its deliveries are counted where they happen, by the
    /// hub of each node).
    pub fn published(&self, tenant: &str) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
        let mut map = lock(&self.publishes_by_tenant);
        let full = map.len() >= MAX_TENANT_LABELS;
        match map.get_mut(tenant) {
            Some(n) => *n += 1,
            None if !full => {
                map.insert(tenant.to_owned(), 1);
            }
            // Past the cap, new tenants share one label so the map stays bounded.
            None => *map.entry(OTHER_TENANTS.to_owned()).or_default() += 1,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, tenants: &[TenantCount], broker: &BrokerStatus) -> String {
        let mut out = String::with_capacity(2048);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let total: usize = tenants.iter().map(|t| t.connections).sum();
        gauge(
            &mut out,
            "roomcast_connections",
            "Open authenticated connections.",
            total as u64,
        );
        header(
            &mut out,
            "roomcast_tenant_connections",
            "gauge",
            "Open connections per tenant.",
        );
        for t in tenants {
            let _ = writeln!(
                out,
                "roomcast_tenant_connections{{tenant=\"{}\"}} {}",
                escape(&t.tenant),
                t.connections
            );
        }
        counter(
            &mut out,
            "roomcast_connections_opened_total",
            "Connections authenticated since start.",
            load(&self.connections_opened),
        );
        counter(
            &mut out,
            "roomcast_messages_in_total",
            "Messages received from clients.",
            load(&self.io.messages_in),
        );
        counter(
            &mut out,
            "roomcast_frames_out_total",
            "Frames written to clients.",
            load(&self.io.frames_out),
        );
        counter(
            &mut out,
            "roomcast_bytes_in_total",
            "Bytes read from client sockets.",
            load(&self.io.bytes_in),
        );
        counter(
            &mut out,
            "roomcast_bytes_out_total",
            "Bytes written to client sockets.",
            load(&self.io.bytes_out),
        );
        counter(
            &mut out,
            "roomcast_publishes_total",
            "Publish calls (API and clients).",
            load(&self.publishes),
        );
        counter(
            &mut out,
            "roomcast_deliveries_total",
            "Event frames queued to connections.",
            load(&self.deliveries),
        );
        counter(
            &mut out,
            "roomcast_slow_consumer_closes_total",
            "Connections closed because their outbound queue overflowed.",
            load(&self.slow_consumers) + load(&self.io.slow_consumers),
        );
        counter(
            &mut out,
            "roomcast_rate_limited_total",
            "Client requests refused by the rate limit.",
            load(&self.rate_limited),
        );
        header(
            &mut out,
            "roomcast_socketio_recoveries_total",
            "counter",
            "Socket.IO connects that named a session to recover, by result.",
        );
        for (result, n) in [("recovered", 1), ("new_session", 0)] {
            let _ = writeln!(
                out,
                "roomcast_socketio_recoveries_total{{result=\"{result}\"}} {}",
                load(&self.recoveries[n])
            );
        }
        header(
            &mut out,
            "roomcast_rejections_total",
            "counter",
            "Failed authentications and refused connections, by reason.",
        );
        for (why, n) in lock(&self.rejections).iter() {
            let _ = writeln!(
                out,
                "roomcast_rejections_total{{reason=\"{}\"}} {n}",
                why.label()
            );
        }
        header(
            &mut out,
            "roomcast_tenant_publishes_total",
            "counter",
            "Publish calls per tenant.",
        );
        for (tenant, n) in lock(&self.publishes_by_tenant).iter() {
            let _ = writeln!(
                out,
                "roomcast_tenant_publishes_total{{tenant=\"{}\"}} {n}",
                escape(tenant)
            );
        }
        render_broker(&mut out, broker);
        out
    }
}

/// The emitter bindings' counters (cluster mode): messages acted on, and dropped by reason.
pub fn render_emitters(out: &mut String, handled: u64, dropped: &[(&str, u64)]) {
    counter(
        out,
        "roomcast_emitter_handled_total",
        "Socket.IO emitter messages acted on by this node.",
        handled,
    );
    header(
        out,
        "roomcast_emitter_dropped_total",
        "counter",
        "Socket.IO emitter messages dropped: no_tenant, pickled, malformed, unsupported.",
    );
    for (reason, n) in dropped {
        let _ = writeln!(
            out,
            "roomcast_emitter_dropped_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

/// The broker's state: whether it reaches the other nodes, and what it could not carry.
fn render_broker(out: &mut String, b: &BrokerStatus) {
    header(
        out,
        "roomcast_broker_up",
        "gauge",
        "1 when the broker reaches the other nodes (always 1 for a single node), by kind.",
    );
    let _ = writeln!(
        out,
        "roomcast_broker_up{{kind=\"{}\"}} {}",
        b.kind,
        u8::from(b.degraded.is_none())
    );
    counter(
        out,
        "roomcast_broker_local_only_publishes_total",
        "Publications delivered on this node only because the broker could not be reached.",
        b.local_only,
    );
    counter(
        out,
        "roomcast_broker_failed_publishes_total",
        "Publications refused (503) because the broker failed while taking them.",
        b.failed,
    );
    counter(
        out,
        "roomcast_broker_lost_total",
        "Publications from the broker lost because delivery on this node fell behind.",
        b.lost,
    );
    counter(
        out,
        "roomcast_broker_undecodable_total",
        "Messages on the broker's channels that could not be decoded.",
        b.undecodable,
    );
    counter(
        out,
        "roomcast_broker_received_total",
        "Publications received from the broker.",
        b.received,
    );
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The single node's history (`[history]`): rooms keeping some, and events not kept because
/// `history.max_rooms` rooms already did.
pub fn render_history(out: &mut String, rooms: u64, not_kept: u64) {
    gauge(
        out,
        "roomcast_history_rooms",
        "Rooms keeping history on this node, empty ones included.",
        rooms,
    );
    counter(
        out,
        "roomcast_history_not_kept_total",
        "Events not kept because history.max_rooms rooms already kept history.",
        not_kept,
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// Escapes a label value (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_tenant_labels() {
        let m = Metrics::default();
        m.published("acme");
        m.deliveries.fetch_add(3, Ordering::Relaxed);
        m.published("a\"b");
        m.deliveries.fetch_add(1, Ordering::Relaxed);
        m.reject(Rejection::AuthFailed);
        let broker = BrokerStatus {
            kind: "redis",
            degraded: Some("down".into()),
            local_only: 5,
            failed: 2,
            ..BrokerStatus::default()
        };
        let text = m.render(
            &[TenantCount {
                tenant: "acme".into(),
                connections: 2,
                users: 1,
            }],
            &broker,
        );
        assert!(text.contains("roomcast_broker_up{kind=\"redis\"} 0\n"));
        assert!(text.contains("roomcast_broker_local_only_publishes_total 5\n"));
        assert!(text.contains("roomcast_broker_failed_publishes_total 2\n"));
        assert!(text.contains("roomcast_connections 2\n"));
        assert!(text.contains("roomcast_tenant_connections{tenant=\"acme\"} 2\n"));
        assert!(text.contains("roomcast_deliveries_total 4\n"));
        assert!(text.contains("roomcast_tenant_publishes_total{tenant=\"a\\\"b\"} 1\n"));
        assert!(text.contains("roomcast_rejections_total{reason=\"auth_failed\"} 1\n"));
    }
}
