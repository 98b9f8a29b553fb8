//! Counters of the inbox, rendered into `GET /metrics`:
//! `roomcast_inbox_operations_total{op,outcome}` (outcome `ok` or `failed`: the database was
//! down, locked past the timeout, or failed), the time they took
//! (`roomcast_inbox_operation_seconds_sum` and `_count`, per op),
//! `roomcast_inbox_busy_total`, `roomcast_inbox_notifications_created_total` and
//! `roomcast_inbox_live_failed_total`. Ops are a fixed list, so the map stays small.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Per (op, succeeded): how many, and the microseconds they took.
type Tally = BTreeMap<(&'static str, bool), (u64, u64)>;

/// The counters. A std mutex: held only to bump or render a few entries, never across an
/// `.await`.
#[derive(Debug, Default)]
pub struct InboxMetrics {
    /// Per (op, ok): count, and microseconds spent.
    ops: Mutex<Tally>,
    busy: AtomicU64,
    created: AtomicU64,
    live_failed: AtomicU64,
    /// Whether the last operation failed (`/health` says degraded until one succeeds).
    failing: AtomicBool,
}

impl InboxMetrics {
    pub(super) fn operation(&self, op: &'static str, ok: bool, took: Duration) {
        self.failing.store(!ok, Ordering::Relaxed);
        let mut ops = lock(&self.ops);
        let entry = ops.entry((op, ok)).or_default();
        entry.0 += 1;
        entry.1 = entry.1.saturating_add(took.as_micros() as u64);
    }

    pub(super) fn busy(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn created(&self, n: u64) {
        self.created.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn live_failed(&self) {
        self.live_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the last operation failed.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Operations that failed so far (for `/health`).
    pub fn failed(&self) -> u64 {
        lock(&self.ops)
            .iter()
            .filter(|((_, ok), _)| !ok)
            .map(|(_, (n, _))| n)
            .sum()
    }

    /// Appends the Prometheus text of every counter to `out`.
    pub fn render(&self, out: &mut String) {
        let ops = lock(&self.ops);
        let _ = writeln!(
            out,
            "# HELP roomcast_inbox_operations_total Inbox operations, by op and outcome.\n\
             # TYPE roomcast_inbox_operations_total counter"
        );
        for ((op, ok), (n, _)) in ops.iter() {
            let outcome = if *ok { "ok" } else { "failed" };
            let _ = writeln!(
                out,
                "roomcast_inbox_operations_total{{op=\"{op}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP roomcast_inbox_operation_seconds Time inbox operations took in the database.\n\
             # TYPE roomcast_inbox_operation_seconds summary"
        );
        let mut per_op: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for ((op, _), (n, micros)) in ops.iter() {
            let entry = per_op.entry(op).or_default();
            entry.0 += n;
            entry.1 += micros;
        }
        for (op, (n, micros)) in per_op {
            let seconds = micros as f64 / 1e6;
            let _ = writeln!(
                out,
                "roomcast_inbox_operation_seconds_sum{{op=\"{op}\"}} {seconds}\n\
                 roomcast_inbox_operation_seconds_count{{op=\"{op}\"}} {n}"
            );
        }
        for (name, help, value) in [
            (
                "roomcast_inbox_busy_total",
                "Inbox operations refused because inbox.max_in_flight were running.",
                &self.busy,
            ),
            (
                "roomcast_inbox_notifications_created_total",
                "Notifications stored (one per user; one for a tenant-wide one).",
                &self.created,
            ),
            (
                "roomcast_inbox_live_failed_total",
                "Live inbox events that could not be published (the change was stored).",
                &self.live_failed,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_operations_and_counters() {
        let m = InboxMetrics::default();
        m.operation("read", true, Duration::from_millis(2));
        m.operation("read", false, Duration::from_millis(3));
        m.busy();
        m.created(3);
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains("roomcast_inbox_operations_total{op=\"read\",outcome=\"ok\"} 1\n"));
        assert!(
            text.contains("roomcast_inbox_operations_total{op=\"read\",outcome=\"failed\"} 1\n")
        );
        assert!(text.contains("roomcast_inbox_operation_seconds_sum{op=\"read\"} 0.005\n"));
        assert!(text.contains("roomcast_inbox_operation_seconds_count{op=\"read\"} 2\n"));
        assert!(text.contains("roomcast_inbox_busy_total 1\n"));
        assert!(text.contains("roomcast_inbox_notifications_created_total 3\n"));
        assert_eq!(m.failed(), 1);
        assert!(m.failing());
    }
}
