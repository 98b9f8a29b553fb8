//! Counters of the backend calls, rendered into `GET /metrics`:
//! `roomcast_rpc_calls_total{backend,outcome}`, the time calls took
//! (`roomcast_rpc_call_seconds_sum` and `_count`, per backend), and
//! `roomcast_connect_proxy_calls_total{outcome}`. Labels come from the configuration (backend
//! names) and a fixed list (outcomes), so the maps stay small.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How a backend call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    /// A result (RPC) or an identity (connect proxy).
    Ok,
    /// The backend refused (4xx).
    Refused,
    /// No answer in time.
    Timeout,
    /// Down, failed (5xx), or an answer that could not be read.
    Unavailable,
    /// Not sent: `max_in_flight` calls were running.
    Busy,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Busy => "busy",
        }
    }
}

/// The counters. A std mutex: held only to bump or render a few entries, never across an
/// `.await`.
#[derive(Debug, Default)]
pub struct BackendMetrics {
    calls: Mutex<BTreeMap<(String, Outcome), u64>>,
    /// Per backend: microseconds spent in calls that were sent, and their number.
    time: Mutex<BTreeMap<String, (u64, u64)>>,
    connect: Mutex<BTreeMap<Outcome, u64>>,
}

impl BackendMetrics {
    /// Counts an RPC call to `backend` that took `took` (zero when it was not sent).
    pub(crate) fn call(&self, backend: &str, outcome: Outcome, took: Duration) {
        *lock(&self.calls)
            .entry((backend.to_owned(), outcome))
            .or_default() += 1;
        if outcome != Outcome::Busy {
            let mut time = lock(&self.time);
            let entry = time.entry(backend.to_owned()).or_default();
            entry.0 = entry.0.saturating_add(took.as_micros() as u64);
            entry.1 += 1;
        }
    }

    /// Counts a connect proxy call.
    pub(crate) fn connect(&self, outcome: Outcome) {
        *lock(&self.connect).entry(outcome).or_default() += 1;
    }

    /// Appends the Prometheus text of every counter to `out`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP roomcast_rpc_calls_total Calls to RPC backends, by backend and outcome.\n\
             # TYPE roomcast_rpc_calls_total counter"
        );
        for ((backend, outcome), n) in lock(&self.calls).iter() {
            let _ = writeln!(
                out,
                "roomcast_rpc_calls_total{{backend=\"{backend}\",outcome=\"{}\"}} {n}",
                outcome.label()
            );
        }
        let _ = writeln!(
            out,
            "# HELP roomcast_rpc_call_seconds Time RPC calls took, until their answer or failure.\n\
             # TYPE roomcast_rpc_call_seconds summary"
        );
        for (backend, (micros, count)) in lock(&self.time).iter() {
            let seconds = *micros as f64 / 1e6;
            let _ = writeln!(
                out,
                "roomcast_rpc_call_seconds_sum{{backend=\"{backend}\"}} {seconds}\n\
                 roomcast_rpc_call_seconds_count{{backend=\"{backend}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP roomcast_connect_proxy_calls_total Handshakes checked by the connect proxy, \
             by outcome.\n# TYPE roomcast_connect_proxy_calls_total counter"
        );
        for (outcome, n) in lock(&self.connect).iter() {
            let _ = writeln!(
                out,
                "roomcast_connect_proxy_calls_total{{outcome=\"{}\"}} {n}",
                outcome.label()
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
    fn renders_calls_time_and_connects() {
        let m = BackendMetrics::default();
        m.call("odoo", Outcome::Ok, Duration::from_millis(250));
        m.call("odoo", Outcome::Ok, Duration::from_millis(250));
        m.call("odoo", Outcome::Busy, Duration::ZERO);
        m.connect(Outcome::Refused);
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains("roomcast_rpc_calls_total{backend=\"odoo\",outcome=\"ok\"} 2\n"));
        assert!(text.contains("roomcast_rpc_calls_total{backend=\"odoo\",outcome=\"busy\"} 1\n"));
        assert!(text.contains("roomcast_rpc_call_seconds_sum{backend=\"odoo\"} 0.5\n"));
        assert!(text.contains("roomcast_rpc_call_seconds_count{backend=\"odoo\"} 2\n"));
        assert!(text.contains("roomcast_connect_proxy_calls_total{outcome=\"refused\"} 1\n"));
    }
}
