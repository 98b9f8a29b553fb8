//! `roomcast-bench report`: writes `BENCHMARKS.md` from the scenarios' JSON lines, the run's
//! environment (machine, versions, commands; written by `bench/run.sh`) and the hand-written
//! analysis of what limits the figures. Pure text in, text out.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

/// The issue's goals, reported against (never asserted).
const MEMORY_GOAL_KIB: f64 = 4.0;
const MEMORY_GOAL_AT: u64 = 19_000;
const FANOUT_GOAL_VS_SOCKETIOXIDE: f64 = 2.0;
const FANOUT_GOAL_VS_NODE: f64 = 10.0;

/// Options of `roomcast-bench report`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The scenarios' results, one JSON object per line.
    #[arg(long)]
    results: PathBuf,
    /// The run's environment: a JSON object with `machine`, `versions`, `commands`, `started`,
    /// `duration_secs`.
    #[arg(long)]
    env: PathBuf,
    /// Markdown appended as the analysis section.
    #[arg(long)]
    analysis: Option<PathBuf>,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let results: Vec<Value> = read(&args.results)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a results line is not JSON")?;
    let env: Value = serde_json::from_str(&read(&args.env)?).context("the environment file")?;
    let analysis = match &args.analysis {
        Some(path) => Some(read(path)?),
        None => None,
    };
    let text = render(&results, &env, analysis.as_deref());
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The targets in report order, with their display names.
const TARGETS: [(&str, &str); 4] = [
    ("roomcast-native", "Roomcast, native protocol"),
    ("roomcast-socketio", "Roomcast, Socket.IO"),
    ("socketioxide", "socketioxide"),
    ("node-socketio", "Node socket.io"),
];
const ROOMCAST: [&str; 2] = ["roomcast-native", "roomcast-socketio"];
const PEERS: [&str; 2] = ["socketioxide", "node-socketio"];

fn label(target: &str) -> &str {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map_or(target, |(_, label)| label)
}

/// The results of one scenario, by target.
struct Scenario<'a> {
    rows: Vec<(&'a str, &'a Value)>,
}

impl<'a> Scenario<'a> {
    fn of(results: &'a [Value], name: &str) -> Scenario<'a> {
        let mut rows = Vec::new();
        for (target, _) in TARGETS {
            // The last result of a target wins: a scenario run again replaces the earlier one.
            if let Some(r) = results
                .iter()
                .rev()
                .find(|r| r["scenario"] == name && r["target"] == target)
            {
                rows.push((target, r));
            }
        }
        Scenario { rows }
    }

    /// Results that measured something.
    fn measured(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + '_ {
        self.rows
            .iter()
            .copied()
            .filter(|(_, r)| r["available"] == true && r.get("error").is_none())
    }

    fn get(&self, target: &str) -> Option<&'a Value> {
        self.measured().find(|(t, _)| *t == target).map(|(_, r)| r)
    }

    /// Lines for targets not measured, and why.
    fn missing(&self, out: &mut String) {
        for (target, r) in &self.rows {
            if r["available"] == false {
                let _ = writeln!(
                    out,
                    "- {}: **not available**: {}",
                    label(target),
                    r["reason"].as_str().unwrap_or("?")
                );
            } else if let Some(e) = r["error"].as_str() {
                let _ = writeln!(
                    out,
                    "- {}: **the run failed**: {}",
                    label(target),
                    one_line(e)
                );
            }
        }
        for (target, label) in TARGETS {
            if !self.rows.iter().any(|(t, _)| *t == target) {
                let _ = writeln!(out, "- {label}: not run");
            }
        }
    }
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    line.chars().take(300).collect()
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn fmt_int(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn fmt_opt(v: &Value, f: impl Fn(f64) -> String) -> String {
    num(v).map_or_else(|| "n/a".to_string(), f)
}

fn ms(v: &Value) -> String {
    fmt_opt(v, |x| format!("{x:.1}"))
}

/// `a / b` as `2.3x`, or `n/a`.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_string(),
    }
}

pub(crate) fn render(results: &[Value], env: &Value, analysis: Option<&str>) -> String {
    let mut out = String::new();
    header(&mut out, env);
    goals(&mut out, results);
    idle(&mut out, &Scenario::of(results, "idle"));
    ramp(
        &mut out,
        &Scenario::of(results, "fanout"),
        "Fan-out to one room",
        "One room of 10,000 subscribers, 100-byte events published through `POST /api/publish` \
         on one keep-alive HTTP/1.1 connection, the publish rate stepped up by half each step \
         until p99 passes 100 ms or a message is lost.",
    );
    ramp(
        &mut out,
        &Scenario::of(results, "rooms"),
        "Many small rooms",
        "10,000 subscribers in 1,000 rooms of 10, each publish to a room drawn at random \
         (seeded), through 8 keep-alive HTTP/1.1 connections (a room always on the same one, so \
         that its messages reach the server in order), the rate doubling each step.",
    );
    churn(&mut out, &Scenario::of(results, "churn"));
    if let Some(analysis) = analysis {
        out.push_str("\n");
        out.push_str(analysis.trim_end());
        out.push('\n');
    }
    out
}

fn header(out: &mut String, env: &Value) {
    let m = &env["machine"];
    let v = &env["versions"];
    let s = |x: &Value| x.as_str().unwrap_or("?").to_string();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by `bash bench/run.sh` (see the README) on {}, in {} s. Every figure below \
         was measured in that one run, on one machine, with one load generator \
         (`roomcast-bench`, this workspace) driving every server over loopback. Figures from \
         another run or machine are not comparable with these.\n",
        s(&env["started"]),
        fmt_opt(&env["duration_secs"], |x| format!("{x:.0}")),
    );
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| CPU | {} ({} cores) |", s(&m["cpu"]), s(&m["nproc"]));
    let _ = writeln!(out, "| Memory | {} |", s(&m["memory"]));
    let _ = writeln!(out, "| Kernel | {} |", s(&m["kernel"]));
    let _ = writeln!(out, "| Open files per process | {} |", s(&m["nofile"]));
    let _ = writeln!(out, "| Ephemeral ports | {} |\n", s(&m["ports"]));
    let _ = writeln!(out, "## Versions\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    for (key, name) in [
        ("roomcast", "Roomcast (this commit)"),
        ("rustc", "rustc"),
        ("node", "Node.js"),
        ("socketio", "socket.io (npm)"),
        ("socketioxide", "socketioxide (crates.io)"),
    ] {
        let _ = writeln!(out, "| {name} | {} |", s(&v[key]));
    }
    let _ = writeln!(out, "\n## Commands\n");
    let _ = writeln!(out, "```sh");
    if let Some(commands) = env["commands"].as_array() {
        for c in commands {
            let _ = writeln!(out, "{}", s(c));
        }
    }
    let _ = writeln!(out, "```\n");
    let _ = writeln!(
        out,
        "Every server binds 127.0.0.1 and is started fresh for each scenario with a throwaway \
         HS256 secret. Subscribers connect from 127.0.0.1 to 127.0.0.4 in child processes of \
         the generator (at most 19,000 connections each), present a token whose `room` claim \
         names their room (Roomcast joins it through `auto_join = [\"{{room}}\"]`, the peers \
         after checking the signature), and every message carries its sequence number and its \
         *scheduled* send time: latency runs from the schedule to the arrival, so a stall \
         anywhere shows up as latency, not as fewer sends. Roomcast's Socket.IO figures and \
         the peers' use the same minimal Engine.IO v4 / Socket.IO v5 client on the WebSocket \
         transport.\n"
    );
}

fn goals(out: &mut String, results: &[Value]) {
    let idle = Scenario::of(results, "idle");
    let fanout = Scenario::of(results, "fanout");
    let rooms = Scenario::of(results, "rooms");
    let _ = writeln!(out, "## Goals\n");
    let _ = writeln!(
        out,
        "The issue's targets, reported against (benchmarks, never asserted in tests).\n"
    );
    let _ = writeln!(out, "| Goal | Measured | |\n|---|---|---|");
    let memory = idle.get("roomcast-native").and_then(|r| {
        r["points"]
            .as_array()?
            .iter()
            .find(|p| p["connections"].as_u64() == Some(MEMORY_GOAL_AT))
            .and_then(|p| num(&p["per_connection_kib"]))
    });
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    };
    let _ = writeln!(
        out,
        "| Idle memory at most {MEMORY_GOAL_KIB} KiB per native connection at {} connections \
         | {} | {} |",
        fmt_int(MEMORY_GOAL_AT as f64),
        memory.map_or("n/a".into(), |k| format!("{k:.2} KiB")),
        verdict(memory.map(|k| k <= MEMORY_GOAL_KIB)),
    );
    let best = |target: &str| {
        fanout
            .get(target)
            .and_then(|r| num(&r["best"]["deliveries_per_sec"]))
    };
    for roomcast in ROOMCAST {
        for (peer, goal) in [
            ("socketioxide", FANOUT_GOAL_VS_SOCKETIOXIDE),
            ("node-socketio", FANOUT_GOAL_VS_NODE),
        ] {
            let (a, b) = (best(roomcast), best(peer));
            let ratio_value = match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let _ = writeln!(
                out,
                "| Fan-out deliveries/s at p99 <= 50 ms, {} vs {}: at least {goal}x | {} ({} vs \
                 {}) | {} |",
                label(roomcast),
                label(peer),
                ratio(a, b),
                a.map_or("n/a".into(), fmt_int),
                b.map_or("n/a".into(), fmt_int),
                verdict(ratio_value.map(|r| r >= goal)),
            );
        }
    }
    for (name, scenario) in [("fan-out", &fanout), ("many rooms", &rooms)] {
        for roomcast in ROOMCAST {
            if let Some(r) = scenario.get(roomcast) {
                let lost = r["lost_below_saturation"].as_u64();
                let _ = writeln!(
                    out,
                    "| No message lost below saturation ({name}, {}) | {} lost | {} |",
                    label(roomcast),
                    lost.map_or("n/a".into(), |n| n.to_string()),
                    verdict(lost.map(|n| n == 0)),
                );
            }
        }
    }
    out.push('\n');
}

fn idle(out: &mut String, s: &Scenario<'_>) {
    let _ = writeln!(out, "## Idle memory per connection\n");
    let _ = writeln!(
        out,
        "Authenticated subscribers, each in one room, idle. The server's resident memory is \
         sampled after a 200-connection warm-up and again at each count, after 2 s idle; the \
         cost per connection is the growth over the warm-up divided by the connections added. \
         (`roomcast-bench memory`, in the README, measures native connections in 3 rooms \
         each.)\n"
    );
    let _ = writeln!(
        out,
        "| Server | at 10,000: per connection | at 19,000: per connection | RSS at 19,000 | \
         open rate | handshake p99 at 19,000 | server CPU per connect |\n|---|---|---|---|---|---|---|"
    );
    let point = |r: &Value, n: u64| -> Option<Value> {
        r["points"]
            .as_array()?
            .iter()
            .find(|p| p["connections"].as_u64() == Some(n))
            .cloned()
    };
    for (target, r) in s.measured() {
        let p10 = point(r, 10_000).unwrap_or(Value::Null);
        let p19 = point(r, 19_000).unwrap_or(Value::Null);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} ms | {} |",
            label(target),
            fmt_opt(&p10["per_connection_kib"], |x| format!("{x:.2} KiB")),
            fmt_opt(&p19["per_connection_kib"], |x| format!("{x:.2} KiB")),
            fmt_opt(&p19["server"]["rss_bytes"], |x| format!(
                "{:.1} MiB",
                x / 1048576.0
            )),
            match (num(&p19["opened"]), num(&p19["open_secs"])) {
                (Some(n), Some(secs)) if secs > 0.0 => format!("{}/s", fmt_int(n / secs)),
                _ => "n/a".into(),
            },
            ms(&p19["handshake"]["p99_ms"]),
            fmt_opt(&p19["server_cpu_per_connect_us"], |x| format!("{x:.0} us")),
        );
    }
    let kib = |target: &str, n: u64| {
        s.get(target)
            .and_then(|r| point(r, n))
            .and_then(|p| num(&p["per_connection_kib"]))
    };
    ratios(
        out,
        "memory per connection at 19,000 (lower is better)",
        |t| kib(t, 19_000),
    );
    s.missing(out);
    out.push('\n');
}

/// Ratio lines: each Roomcast target's figure over each peer's.
fn ratios(out: &mut String, what: &str, figure: impl Fn(&str) -> Option<f64>) {
    let mut lines = Vec::new();
    for roomcast in ROOMCAST {
        let Some(a) = figure(roomcast) else { continue };
        for peer in PEERS {
            if let Some(b) = figure(peer) {
                lines.push(format!(
                    "{} / {}: {}",
                    label(roomcast),
                    label(peer),
                    ratio(Some(a), Some(b))
                ));
            }
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "\nRatios, {what}: {}.\n", lines.join("; "));
    }
}

fn ramp(out: &mut String, s: &Scenario<'_>, title: &str, intro: &str) {
    let _ = writeln!(out, "## {title}\n\n{intro}\n");
    let _ = writeln!(
        out,
        "Best step with p99 <= 50 ms and nothing lost, per server:\n\n| Server | deliveries/s | \
         publishes/s | p50 | p99 | p99.9 | max | lost | out of order | server cores | server \
         CPU per 1,000 deliveries | RSS per connection | stopped |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (target, r) in s.measured() {
        let b = &r["best"];
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ms | {} ms | {} ms | {} ms | {} | {} | {} | {} | {} | {} |",
            label(target),
            fmt_opt(&b["deliveries_per_sec"], fmt_int),
            fmt_opt(&b["rate"], |x| format!("{x:.1}")),
            ms(&b["latency"]["p50_ms"]),
            ms(&b["latency"]["p99_ms"]),
            ms(&b["latency"]["p999_ms"]),
            ms(&b["latency"]["max_ms"]),
            fmt_opt(&b["lost"], fmt_int),
            fmt_opt(&b["out_of_order"], fmt_int),
            fmt_opt(&b["server_cores"], |x| format!("{x:.2}")),
            fmt_opt(&b["server_cpu_us_per_1k_deliveries"], |x| format!(
                "{x:.0} us"
            )),
            fmt_opt(&r["rss_per_connection_bytes"], |x| format!(
                "{:.2} KiB",
                x / 1024.0
            )),
            r["stopped"].as_str().unwrap_or("?"),
        );
    }
    ratios(out, "deliveries per second at p99 <= 50 ms", |t| {
        s.get(t).and_then(|r| num(&r["best"]["deliveries_per_sec"]))
    });
    s.missing(out);
    for (target, r) in s.measured() {
        let _ = writeln!(
            out,
            "\n<details><summary>{}: every step</summary>\n\n| publishes/s | deliveries/s | \
             p50 | p99 | p99.9 | max | lost | out of order | dropped | publish errors | server \
             cores | generator cores |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
            label(target)
        );
        for step in r["steps"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt_opt(&step["rate"], |x| format!("{x:.1}")),
                fmt_opt(&step["deliveries_per_sec"], fmt_int),
                ms(&step["latency"]["p50_ms"]),
                ms(&step["latency"]["p99_ms"]),
                ms(&step["latency"]["p999_ms"]),
                ms(&step["latency"]["max_ms"]),
                fmt_opt(&step["lost"], fmt_int),
                fmt_opt(&step["out_of_order"], fmt_int),
                fmt_opt(&step["dropped_connections"], fmt_int),
                fmt_opt(&step["publish_errors"], fmt_int),
                fmt_opt(&step["server_cores"], |x| format!("{x:.2}")),
                fmt_opt(&step["generator_cores"], |x| format!("{x:.2}")),
            );
        }
        let _ = writeln!(out, "\n</details>");
    }
    out.push('\n');
}

fn churn(out: &mut String, s: &Scenario<'_>) {
    let _ = writeln!(out, "## Connection churn with authentication\n");
    let _ = writeln!(
        out,
        "32 workers each connect, present a fresh HS256 token (checked by every server), wait \
         until they are in their room (the native `welcome`, the Socket.IO connect \
         acknowledgement), and close with a close handshake, for 8 s.\n"
    );
    let _ = writeln!(
        out,
        "| Server | connects/s | disconnects/s | handshake p50 | p99 | max | failures | server \
         cores | server CPU per connection |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (target, r) in s.measured() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ms | {} ms | {} ms | {} | {} | {} |",
            label(target),
            fmt_opt(&r["connects_per_sec"], fmt_int),
            fmt_opt(&r["disconnects_per_sec"], fmt_int),
            ms(&r["handshake"]["p50_ms"]),
            ms(&r["handshake"]["p99_ms"]),
            ms(&r["handshake"]["max_ms"]),
            fmt_opt(&r["failures"], fmt_int),
            fmt_opt(&r["server_cores"], |x| format!("{x:.2}")),
            fmt_opt(&r["server_cpu_us_per_connection"], |x| format!("{x:.0} us")),
        );
    }
    ratios(out, "connects per second", |t| {
        s.get(t).and_then(|r| num(&r["connects_per_sec"]))
    });
    s.missing(out);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(fmt_int(0.0), "0");
        assert_eq!(fmt_int(999.4), "999");
        assert_eq!(fmt_int(1234567.0), "1,234,567");
        assert_eq!(fmt_int(-1000.0), "-1,000");
    }

    #[test]
    fn a_report_names_goals_ratios_and_missing_targets() {
        let results = vec![
            json!({"scenario": "idle", "target": "roomcast-native", "available": true,
                "points": [{"connections": 19000, "per_connection_kib": 3.5,
                    "server": {"rss_bytes": 70_000_000}, "opened": 18800, "open_secs": 7.5,
                    "handshake": {"p99_ms": 2.0}}]}),
            json!({"scenario": "idle", "target": "socketioxide", "available": true,
                "points": [{"connections": 19000, "per_connection_kib": 7.0}]}),
            json!({"scenario": "fanout", "target": "roomcast-native", "available": true,
                "best": {"deliveries_per_sec": 400000.0, "rate": 40.0}, "steps": [],
                "lost_below_saturation": 0, "stopped": "p99"}),
            json!({"scenario": "fanout", "target": "node-socketio", "available": true,
                "best": {"deliveries_per_sec": 50000.0}, "steps": [], "stopped": "p99"}),
            json!({"scenario": "fanout", "target": "roomcast-socketio", "available": false,
                "reason": "Roomcast does not speak Socket.IO"}),
        ];
        let env =
            json!({"machine": {"nproc": "2"}, "versions": {}, "commands": ["bash bench/run.sh"]});
        let text = render(&results, &env, Some("## What limits Roomcast\n\ntext"));
        assert!(text.contains("| 3.50 KiB | met |"), "{text}");
        assert!(
            text.contains("Roomcast, native protocol / socketioxide: 0.50x"),
            "{text}"
        );
        assert!(
            text.contains("8.00x (400,000 vs 50,000) | **missed** |"),
            "{text}"
        );
        assert!(text.contains("Roomcast, Socket.IO: **not available**: Roomcast does not speak"));
        assert!(text.ends_with("text\n"));
    }
}
