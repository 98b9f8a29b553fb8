//! Socket.IO connection state recovery after a node's death (`roomcast-bench recovery`): one
//! storm of reconnections, how many clients got their session and missed events back, how long
//! it took, and what it cost the Redis and the surviving node.

use std::fmt::Write as _;

use serde_json::Value;

use super::{fmt_int, fmt_opt, label, num, one_line, Scenario};

/// The scenario's name in the results.
pub(super) const RECOVERY: &str = "recovery";
/// The one target it measures.
const TARGET: &str = "roomcast-socketio";

/// Seconds with two decimals, or `n/a`.
fn secs(v: &Value) -> String {
    fmt_opt(v, |x| format!("{x:.2} s"))
}

/// Milliseconds from a latency summary, whole above 100 ms.
fn ms(v: &Value) -> String {
    fmt_opt(v, |x| {
        if x >= 100.0 {
            format!("{} ms", fmt_int(x))
        } else {
            format!("{x:.1} ms")
        }
    })
}

pub(super) fn section(out: &mut String, s: &Scenario<'_>) {
    let _ = writeln!(out, "## Recovery after a node's death\n");
    let Some(r) = s.get(TARGET) else {
        let _ = writeln!(out, "Not measured.");
        for (target, r) in &s.rows {
            if r["available"] == false {
                let _ = writeln!(
                    out,
                    "\n- {}: **not available**: {}",
                    label(target),
                    r["reason"].as_str().unwrap_or("?")
                );
            } else if let Some(e) = r["error"].as_str() {
                let _ = writeln!(
                    out,
                    "\n- {}: **the run failed**: {}",
                    label(target),
                    one_line(e)
                );
            }
        }
        out.push('\n');
        return;
    };
    let settings = &r["settings"];
    let setup = &r["setup"];
    let missed = fmt_opt(&r["missed_events"], fmt_int);
    let clients = num(&r["clients"]).unwrap_or(0.0);
    let with_offset = num(&setup["with_offset"]);
    let pace = match num(&settings["reconnect_rate"]) {
        Some(rate) if rate > 0.0 => format!("at {} per second", fmt_int(rate)),
        _ => "all at once".to_string(),
    };
    let _ = writeln!(
        out,
        "Roomcast over Socket.IO as two processes sharing one Redis ({}, never flushed: the \
         run's keys are under a prefix of its own), with `[socketio.recovery]` on \
         (`max_disconnection_ms` {}). {} clients connect to the second node over WebSocket, from \
         {} loopback addresses: {} of them before one tenant-wide event, whose offset they \
         keep, the others after it, so that they reconnect with no offset. {} ms after the last \
         connect the node is killed with SIGKILL; once every client has seen its connection \
         end, {missed} tenant-wide events are published through the first node, and the \
         clients reconnect to it {pace}, each with its `pid` and its last offset, as \
         socket.io-client does (an attempt that fails before its answer is tried again {} ms \
         later). A client has recovered when the `CONNECT` answer gives back its socket id and \
         `pid` and it has received the {missed} missed events, in order and once; its recovery \
         time runs from the start of its reconnection until then. CPU is counted from the \
         first reconnection until the last client's outcome.\n",
        r["redis"]["version"]
            .as_str()
            .map_or("Redis".to_string(), |v| format!("Redis {v}")),
        fmt_opt(&settings["max_disconnection_ms"], fmt_int),
        fmt_int(clients),
        fmt_opt(&r["sources"], fmt_int),
        with_offset.map_or("n/a".into(), fmt_int),
        fmt_opt(&settings["settle_ms"], fmt_int),
        fmt_opt(&settings["retry_ms"], fmt_int),
    );
    let until_all = match num(&r["all_recovered_secs"]) {
        Some(x) => format!("{x:.2} s"),
        None => format!("n/a (the last outcome after {})", secs(&r["storm_secs"])),
    };
    let latency = &r["recovery"];
    let _ = writeln!(
        out,
        "| Clients | recovered | not recovered | missed events per client | until every client \
         had recovered | per client p50 | p99 | max | Redis CPU | surviving node CPU | generator \
         CPU |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| {} | {} | {} | {missed} | {until_all} | {} | {} | {} | {} | {} | {} |",
        fmt_int(clients),
        fmt_opt(&r["recovered"], fmt_int),
        fmt_opt(&r["not_recovered"], fmt_int),
        ms(&latency["p50_ms"]),
        ms(&latency["p99_ms"]),
        ms(&latency["max_ms"]),
        secs(&r["cpu_secs"]["redis"]),
        secs(&r["cpu_secs"]["node"]),
        secs(&r["cpu_secs"]["generator"]),
    );
    let mut notes = Vec::new();
    if num(&r["not_recovered"]).is_some_and(|n| n > 0.0) {
        let reasons = &r["not_recovered_by_reason"];
        notes.push(format!(
            "Not recovered: {} with a new session (new socket id or `pid`), {} with their \
             session but not every missed event in order and once, {} never answered, {} \
             without an outcome.",
            fmt_opt(&reasons["new_session"], fmt_int),
            fmt_opt(&reasons["wrong_events"], fmt_int),
            fmt_opt(&reasons["failed"], fmt_int),
            fmt_opt(&reasons["no_outcome"], fmt_int),
        ));
    }
    notes.push(format!(
        "Reconnected without an offset: {}, of which {} recovered. The clients' sessions in \
         Redis at the kill: {} of {}; every connection to the killed node had ended within {} \
         of the kill.",
        fmt_opt(&r["reconnected_without_offset"], fmt_int),
        fmt_opt(&r["recovered_without_offset"], fmt_int),
        fmt_opt(&setup["sessions_in_redis_at_kill"], fmt_int),
        fmt_int(clients),
        fmt_opt(&setup["connections_ended_ms"], |x| format!("{x:.1} ms")),
    ));
    if num(&r["retried"]).is_some_and(|n| n > 0.0) {
        let attempts: Vec<String> = r["failed_attempts"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(kind, n)| format!("{} x {kind}", fmt_opt(n, fmt_int)))
            .collect();
        notes.push(format!(
            "Clients that tried more than once: {} (failed attempts: {}).",
            fmt_opt(&r["retried"], fmt_int),
            attempts.join(", ")
        ));
    }
    if num(&r["late_events"]).is_some_and(|n| n > 0.0) {
        notes.push(format!(
            "Events that came after their client's outcome (none should): {}.",
            fmt_opt(&r["late_events"], fmt_int)
        ));
    }
    if let Some(overflows) = num(&r["listen_overflows"]).filter(|n| *n > 0.0) {
        notes.push(format!(
            "During the storm the machine counted {} connection attempts dropped by a full \
             accept queue and {} SYNs sent again: the client's kernel sends a dropped SYN again \
             after 1 s, then 3 s, which is where the slowest clients' time goes.",
            fmt_int(overflows),
            fmt_opt(&r["syn_retransmits"], fmt_int),
        ));
    }
    let _ = writeln!(out, "\n{}", notes.join(" "));
    if let Some(command) = r["command"].as_str() {
        let _ = writeln!(out, "\nCommand: `{command}`");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::render;

    fn env() -> serde_json::Value {
        json!({"machine": {}, "versions": {}, "commands": []})
    }

    #[test]
    fn the_storm_reads_as_counts_times_and_cpu() {
        let results = vec![json!({
            "scenario": "recovery", "target": "roomcast-socketio", "available": true,
            "command": "target/release/roomcast-bench recovery --clients 500",
            "redis": {"version": "7.0.15"}, "clients": 10000, "sources": 40,
            "missed_events": 5,
            "settings": {"max_disconnection_ms": 120000, "reconnect_rate": 0.0,
                "retry_ms": 500, "settle_ms": 500},
            "setup": {"with_offset": 9000, "sessions_in_redis_at_kill": 10000,
                "connections_ended_ms": 14.2},
            "recovered": 9998, "not_recovered": 2,
            "not_recovered_by_reason": {"new_session": 2, "wrong_events": 0, "failed": 0,
                "no_outcome": 0},
            "reconnected_without_offset": 1000, "recovered_without_offset": 1000,
            "retried": 3, "failed_attempts": {"HTTP 429": 3},
            "storm_secs": 3.318, "all_recovered_secs": null,
            "recovery": {"p50_ms": 831.49, "p99_ms": 3287.04, "max_ms": 3295.23},
            "cpu_secs": {"redis": 0.21, "node": 1.73, "generator": 0.81},
            "listen_overflows": 9115, "syn_retransmits": 6199,
        })];
        let text = render(&results, &env(), None, None);
        assert!(text.contains("## Recovery after a node's death"), "{text}");
        assert!(
            text.contains(
                "| 10,000 | 9,998 | 2 | 5 | n/a (the last outcome after 3.32 s) | 831 ms | \
                 3,287 ms | 3,295 ms | 0.21 s | 1.73 s | 0.81 s |"
            ),
            "{text}"
        );
        assert!(
            text.contains("Not recovered: 2 with a new session"),
            "{text}"
        );
        assert!(text.contains("(failed attempts: 3 x HTTP 429)"), "{text}");
        assert!(text.contains("9,115 connection attempts dropped"), "{text}");
        assert!(
            text.contains("Command: `target/release/roomcast-bench recovery --clients 500`"),
            "{text}"
        );
    }

    #[test]
    fn a_storm_where_every_client_recovered_gives_its_time() {
        let results = vec![json!({
            "scenario": "recovery", "target": "roomcast-socketio", "available": true,
            "clients": 500, "missed_events": 5, "settings": {}, "setup": {},
            "recovered": 500, "not_recovered": 0, "all_recovered_secs": 0.5,
            "recovery": {"p50_ms": 1.14, "p99_ms": 13.36, "max_ms": 18.74},
            "cpu_secs": {"redis": 0.01, "node": 0.07, "generator": 0.02},
            "listen_overflows": 0,
        })];
        let text = render(&results, &env(), None, None);
        assert!(
            text.contains("| 500 | 500 | 0 | 5 | 0.50 s | 1.1 ms | 13.4 ms | 18.7 ms |"),
            "{text}"
        );
        assert!(!text.contains("Not recovered:"), "{text}");
        assert!(!text.contains("accept queue"), "{text}");
    }

    #[test]
    fn an_unavailable_run_says_why() {
        let results = vec![
            json!({"scenario": "recovery", "target": "roomcast-socketio",
            "available": false, "reason": "no Redis at redis://127.0.0.1:6379/0"}),
        ];
        let text = render(&results, &env(), None, None);
        assert!(
            text.contains(
                "## Recovery after a node's death\n\nNot measured.\n\n- Roomcast, Socket.IO: \
                 **not available**: no Redis"
            ),
            "{text}"
        );
    }
}
