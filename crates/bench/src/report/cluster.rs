//! The fan-out across a cluster: each server as several processes sharing one Redis (Roomcast's
//! `[cluster]`, the peers' Redis adapters), its CPU summed over its nodes and the Redis
//! server's beside it; the ratios of Roomcast to the peers, and of each server's cluster to its
//! single process in the `fanout` scenario of the same run, which is what cluster mode costs.

use std::fmt::Write as _;

use serde_json::Value;

use super::sections::steps;
use super::{fmt_int, fmt_opt, ms, num, one_line, ratio, Scenario, PEERS, ROOMCAST};

/// The scenario's name in the results.
pub(super) const CLUSTER: &str = "cluster";
/// Roomcast's goals: its sustained cluster fan-out at least this many times each peer's.
pub(super) const GOALS: [(&str, f64); 2] = [("socketioxide", 2.0), ("node-socketio", 10.0)];

/// The targets as clusters, in report order.
const LABELS: [(&str, &str); 5] = [
    ("roomcast-native", "Roomcast cluster, native protocol"),
    (
        "roomcast-native-history",
        "Roomcast cluster, native protocol, history kept in Redis streams",
    ),
    ("roomcast-socketio", "Roomcast cluster, Socket.IO"),
    ("socketioxide", "socketioxide + socketioxide-redis"),
    ("node-socketio", "Node socket.io + @socket.io/redis-adapter"),
];

/// A target's name as a cluster.
pub(super) fn label(target: &str) -> &str {
    LABELS
        .iter()
        .find(|(name, _)| *name == target)
        .map_or(target, |(_, label)| label)
}

/// The sustained deliveries per second of `target` in `s`.
pub(super) fn sustained(s: &Scenario<'_>, target: &str) -> Option<f64> {
    s.get(target)
        .and_then(|r| num(&r["sustained"]["deliveries_per_sec"]))
}

/// The sustained deliveries per second, marked when no repeat confirmed them.
fn held(r: &Value) -> String {
    let figure = fmt_opt(&r["sustained"]["deliveries_per_sec"], fmt_int);
    if r["sustained_confirmed"] == false && !r["sustained"].is_null() {
        format!("{figure} (*held once*)")
    } else {
        figure
    }
}

fn us(v: &Value) -> String {
    fmt_opt(v, |x| format!("{x:.2} us"))
}

/// Server and Redis CPU per delivery together, at the sustained step.
fn total_cpu(r: &Value) -> Option<f64> {
    let b = &r["sustained"];
    Some(
        num(&b["server_cpu_us_per_delivery"])?
            + num(&b["redis_cpu_us_per_delivery"]).unwrap_or(0.0),
    )
}

/// The section: `s` is the cluster scenario, `single` the fan-out of the same run.
pub(super) fn section(out: &mut String, s: &Scenario<'_>, single: &Scenario<'_>) {
    let _ = writeln!(out, "## Fan-out across a cluster\n");
    let Some(any) = s.any() else {
        let _ = writeln!(out, "Not measured.");
        missing(out, s);
        out.push('\n');
        return;
    };
    let nodes = fmt_opt(&any["nodes"], fmt_int);
    let max_p99 = fmt_opt(&any["max_p99_ms"], |x| format!("{x:.0}"));
    let redis = &any["redis"];
    let _ = writeln!(
        out,
        "The fan-out above with each server run as {nodes} processes on this machine sharing \
         one Redis ({}, the machine's own, never flushed: every server gets a key and channel \
         prefix unique to the run): Roomcast with `[cluster]`, the peers with their Redis \
         adapters. {} subscribers in one room, spread evenly over the nodes (each connects to \
         the next node in turn); every publish is posted to the first node only, which \
         passes it on through Redis to the others. {}-byte events on {} keep-alive HTTP/1.1 \
         connections, {} s per step, from {} publishes/s, the rate multiplied by {} each step \
         until p99 passes {max_p99} ms, a message goes missing, a subscriber is dropped or a \
         publish fails; then the sustained step once more, on servers started afresh, and \
         from there up towards the next step in thirds of it, each held twice in a row to \
         count. Server CPU is summed over the {nodes} processes; the Redis server's CPU (from `/proc`) is beside it, not in it.\n",
        redis["version"]
            .as_str()
            .map_or("Redis".to_string(), |v| format!("Redis {v}")),
        fmt_opt(&any["connections"], fmt_int),
        fmt_opt(&any["size"], fmt_int),
        fmt_opt(&any["lanes"], fmt_int),
        fmt_opt(&any["step_secs"], |x| format!("{x}")),
        fmt_opt(&any["start_rate"], |x| format!("{x}")),
        fmt_opt(&any["factor"], |x| format!("{x}")),
    );
    let _ = writeln!(
        out,
        "| Server | processes | sustained deliveries/s (p99 <= {max_p99} ms, nothing lost) | at \
         that rate: publishes/s | p50 | p99 | p99.9 | max | out of order | server cores (all \
         nodes) | Redis cores | generator cores | server CPU per delivery (all nodes) | Redis \
         CPU per delivery | generator CPU per delivery | saturated first | RSS per connection \
         (all nodes) | the ramp stopped |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (target, r) in s.measured() {
        let b = &r["sustained"];
        let _ =
            writeln!(
            out,
            "| {} | {} | {} | {} | {} ms | {} ms | {} ms | {} ms | {} | {} | {} | {} | {} | {} \
             | {} | {} | {} | {} |",
            label(target),
            fmt_opt(&r["nodes"], fmt_int),
            held(r),
            fmt_opt(&b["rate"], |x| format!("{x:.1}")),
            ms(&b["latency"]["p50_ms"]),
            ms(&b["latency"]["p99_ms"]),
            ms(&b["latency"]["p999_ms"]),
            ms(&b["latency"]["max_ms"]),
            fmt_opt(&b["out_of_order"], fmt_int),
            fmt_opt(&b["server_cores"], |x| format!("{x:.2}")),
            fmt_opt(&b["redis_cores"], |x| format!("{x:.2}")),
            fmt_opt(&b["generator_cores"], |x| format!("{x:.2}")),
            us(&b["server_cpu_us_per_delivery"]),
            us(&b["redis_cpu_us_per_delivery"]),
            us(&b["generator_cpu_us_per_delivery"]),
            r["saturated_first"]["side"].as_str().unwrap_or("n/a"),
            fmt_opt(&r["rss_per_connection_bytes"], |x| format!("{:.2} KiB", x / 1024.0)),
            r["stopped"].as_str().unwrap_or("?"),
        );
    }
    if s.measured().any(|(_, r)| r["sustained_confirmed"] == false) {
        let _ = writeln!(
            out,
            "\n*Held once*: no repeat of that step or of the two below it held again (a \
             subscriber dropped by the server stays missing from every later step); the figure \
             is the ramp's own step."
        );
    }
    ratio_lines(
        out,
        &format!("sustained deliveries per second (p99 <= {max_p99} ms)"),
        |t| sustained(s, t),
    );
    ratio_lines(
        out,
        "server CPU per delivery at the sustained rate, all nodes (lower is better)",
        |t| {
            s.get(t)
                .and_then(|r| num(&r["sustained"]["server_cpu_us_per_delivery"]))
        },
    );
    against_single(out, s, single);
    missing(out, s);
    out.push('\n');
    for (target, r) in s.measured() {
        steps(out, label(target), r);
    }
    out.push('\n');
}

/// Each Roomcast cluster's figure over each peer cluster's.
fn ratio_lines(out: &mut String, what: &str, figure: impl Fn(&str) -> Option<f64>) {
    let mut lines = Vec::new();
    for roomcast in ROOMCAST {
        let Some(a) = figure(roomcast) else { continue };
        for peer in PEERS {
            if let Some(b) = figure(peer) {
                lines.push(format!(
                    "{} / {}: **{}**",
                    label(roomcast),
                    label(peer),
                    ratio(Some(a), Some(b))
                ));
            }
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "\nRatios, {what}: {}.", lines.join("; "));
    }
}

/// The "cluster / single node" line: each server's cluster against its one process in the
/// fan-out of the same run.
fn against_single(out: &mut String, s: &Scenario<'_>, single: &Scenario<'_>) {
    let mut lines = Vec::new();
    for (target, _) in LABELS {
        let (Some(c), Some(one)) = (s.get(target), single.get(target)) else {
            continue;
        };
        let rate = ratio(sustained(s, target), sustained(single, target));
        let cpu = ratio(total_cpu(c), total_cpu(one));
        lines.push(format!(
            "{}: sustained deliveries/s **{rate}** ({} to {} subscribers on {} processes vs {} \
             to {} on one), server and Redis CPU per delivery **{cpu}** ({} vs {})",
            super::label(target),
            fmt_opt(&c["sustained"]["deliveries_per_sec"], fmt_int),
            fmt_opt(&c["connections"], fmt_int),
            fmt_opt(&c["nodes"], fmt_int),
            fmt_opt(&one["sustained"]["deliveries_per_sec"], fmt_int),
            fmt_opt(&one["connections"], fmt_int),
            total_cpu(c).map_or("n/a".into(), |x| format!("{x:.2} us")),
            total_cpu(one).map_or("n/a".into(), |x| format!("{x:.2} us")),
        ));
    }
    if lines.is_empty() {
        let _ = writeln!(
            out,
            "\nCluster / single node: not available (the `fanout` scenario was not run, or no \
             server was measured in both)."
        );
    } else {
        let _ = writeln!(
            out,
            "\nCluster / single node (the `fanout` scenario above, same run): {}.",
            lines.join("; ")
        );
    }
}

/// Lines for the targets not measured, and why.
fn missing(out: &mut String, s: &Scenario<'_>) {
    let mut lines = Vec::new();
    for (target, r) in &s.rows {
        if r["available"] == false {
            lines.push(format!(
                "- {}: **not available**: {}",
                label(target),
                r["reason"].as_str().unwrap_or("?")
            ));
        } else if let Some(e) = r["error"].as_str() {
            lines.push(format!(
                "- {}: **the run failed**: {}",
                label(target),
                one_line(e)
            ));
        }
    }
    for (target, name) in LABELS {
        if !s.rows.iter().any(|(t, _)| *t == target) {
            let why = if target == "roomcast-socketio" {
                " (the standard run measures Roomcast's cluster over its native protocol only; \
                 `--targets roomcast-socketio` adds it)"
            } else {
                ""
            };
            lines.push(format!("- {name}: not run{why}"));
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "\n{}", lines.join("\n"));
    }
}

/// The goal rows: Roomcast's sustained cluster fan-out over each peer's.
pub(super) fn goals(
    out: &mut String,
    s: &Scenario<'_>,
    verdict: impl Fn(Option<bool>) -> &'static str,
) {
    let Some(any) = s.any() else {
        return;
    };
    let max_p99 = num(&any["max_p99_ms"]).unwrap_or(1000.0);
    for roomcast in ROOMCAST {
        if s.get(roomcast).is_none() {
            continue;
        }
        for (peer, goal) in GOALS {
            let (a, b) = (sustained(s, roomcast), sustained(s, peer));
            let (measured, met) = match (a, b, s.get(peer).is_some()) {
                (_, _, false) => (format!("n/a ({} not measured)", label(peer)), None),
                (None, _, true) => (
                    format!("n/a (no step of {} held)", label(roomcast)),
                    Some(false),
                ),
                (Some(a), None, true) => (
                    format!(
                        "n/a ({} vs none: no step of {} held)",
                        fmt_int(a),
                        label(peer)
                    ),
                    Some(true),
                ),
                (Some(a), Some(b), true) => (
                    format!(
                        "{} ({} vs {})",
                        ratio(Some(a), Some(b)),
                        fmt_int(a),
                        fmt_int(b)
                    ),
                    Some(b > 0.0 && a / b >= goal),
                ),
            };
            let _ = writeln!(
                out,
                "| Cluster fan-out, sustained deliveries/s (p99 <= {max_p99} ms, nothing lost), \
                 {} at least {goal}x {} | {measured} | {} |",
                label(roomcast),
                label(peer),
                verdict(met),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::render;

    fn cluster(target: &str, deliveries: f64, cpu: f64) -> serde_json::Value {
        json!({"scenario": "cluster", "target": target, "available": true, "nodes": 3,
            "connections": 9000, "max_p99_ms": 1000.0, "redis": {"version": "7.0.15"},
            "sustained": {"deliveries_per_sec": deliveries, "server_cpu_us_per_delivery": cpu,
                "redis_cpu_us_per_delivery": 0.5, "redis_cores": 0.1},
            "steps": [{"rate": 10.0, "redis_cores": 0.1, "redis_cpu_us_per_delivery": 0.5}],
            "lost_below_saturation": 0, "stopped": "p99"})
    }

    #[test]
    fn the_cluster_reads_against_peers_and_its_single_node() {
        let results = vec![
            json!({"scenario": "fanout", "target": "roomcast-native", "available": true,
                "connections": 10000, "max_p99_ms": 1000.0,
                "sustained": {"deliveries_per_sec": 1_000_000.0,
                    "server_cpu_us_per_delivery": 1.0},
                "steps": [], "stopped": "p99"}),
            cluster("roomcast-native", 600_000.0, 2.0),
            cluster("socketioxide", 100_000.0, 10.0),
            json!({"scenario": "cluster", "target": "node-socketio", "available": false,
                "reason": "no node_modules"}),
        ];
        let env = json!({"machine": {}, "versions": {"socketioxide_redis": "0.4.4"},
            "commands": []});
        let text = render(&results, &env, None, None);
        assert!(text.contains("## Fan-out across a cluster"), "{text}");
        assert!(
            text.contains("| socketioxide-redis (crates.io) | 0.4.4 |"),
            "{text}"
        );
        assert!(
            text.contains(
                "Roomcast cluster, native protocol / socketioxide + socketioxide-redis: **6.00x**"
            ),
            "{text}"
        );
        // 600,000 over 1,000,000; (2.0 + 0.5) over 1.0 (no Redis on one node).
        assert!(
            text.contains("Roomcast, native protocol: sustained deliveries/s **0.60x**"),
            "{text}"
        );
        assert!(
            text.contains("server and Redis CPU per delivery **2.50x**"),
            "{text}"
        );
        assert!(
            text.contains(
                "at least 2x socketioxide + socketioxide-redis | 6.00x (600,000 vs \
                100,000) | met |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "- Node socket.io + @socket.io/redis-adapter: **not available**: no \
                node_modules"
            ),
            "{text}"
        );
        assert!(text.contains("| Redis cores |"), "{text}");
    }
}
