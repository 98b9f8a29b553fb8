//! `roomcast-bench report`: writes `BENCHMARKS.md` from the scenarios' JSON lines, the run's
//! environment (machine, versions, commands; written by `bench/run.sh`) and the hand-written
//! analysis of what limits the figures. Pure text in, text out: the per-scenario sections are
//! in [`sections`].

mod backends;
mod ceiling;
mod cluster;
mod compare;
mod inbox;
mod recovery;
mod sections;

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

/// Roomcast's goals, reported against (never asserted).
const MEMORY_GOAL_KIB: f64 = 4.0;
const MEMORY_GOAL_AT: u64 = 19_000;
const FANOUT_GOALS: [(&str, f64); 2] = [("socketioxide", 2.0), ("node-socketio", 10.0)];

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
    /// A previous run to compare with: a directory holding its `results.jsonl` and
    /// `env.json`.
    #[arg(long)]
    previous: Option<PathBuf>,
}

/// The JSON lines of a results file.
fn read_results(path: &std::path::Path) -> Result<Vec<Value>> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("a line of {} is not JSON", path.display()))
}

pub(crate) fn run(args: Args) -> Result<()> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let results = read_results(&args.results)?;
    let env: Value = serde_json::from_str(&read(&args.env)?).context("the environment file")?;
    let analysis = match &args.analysis {
        Some(path) => Some(read(path)?),
        None => None,
    };
    let previous = match &args.previous {
        Some(dir) => {
            let results = read_results(&dir.join("results.jsonl"))?;
            let env: Value = serde_json::from_str(&read(&dir.join("env.json"))?)
                .context("the previous run's environment file")?;
            Some((results, env))
        }
        None => None,
    };
    let previous = previous.as_ref().map(|(r, e)| (r.as_slice(), e));
    let text = render(&results, &env, analysis.as_deref(), previous);
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The targets in report order, with their display names.
const TARGETS: [(&str, &str); 6] = [
    (ceiling::CEILING, "Ceiling (bench/peers/ceiling)"),
    ("roomcast-native", "Roomcast, native protocol"),
    (HISTORY, "Roomcast, native protocol, history kept"),
    ("roomcast-socketio", "Roomcast, Socket.IO"),
    ("socketioxide", "socketioxide"),
    ("node-socketio", "Node socket.io"),
];
const ROOMCAST: [&str; 2] = ["roomcast-native", "roomcast-socketio"];
/// Roomcast's native protocol with every room keeping its last 100 events in memory.
const HISTORY: &str = "roomcast-native-history";
/// Keeping history may cost at most this much server CPU per delivery over not keeping it.
const HISTORY_GOAL: f64 = 1.10;
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

    /// Any measured result, for the settings all targets share.
    fn any(&self) -> Option<&'a Value> {
        self.measured().next().map(|(_, r)| r)
    }

    /// Lines for targets not measured, and why.
    fn missing(&self, out: &mut String) {
        let mut lines = Vec::new();
        for (target, r) in &self.rows {
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
        for (target, label) in TARGETS {
            // The ceiling is measured where it applies (one room), not everywhere.
            if target != ceiling::CEILING && !self.rows.iter().any(|(t, _)| *t == target) {
                lines.push(format!("- {label}: not run"));
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{}", lines.join("\n"));
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

/// `1234567` as `1,234,567`.
fn fmt_int(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
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

/// Milliseconds with one decimal, or `n/a`.
fn ms(v: &Value) -> String {
    fmt_opt(v, |x| format!("{x:.1}"))
}

/// `a / b` as `2.30x`, or `n/a`.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_string(),
    }
}

/// Ratio lines: each Roomcast target's figure over each peer's.
fn ratios(out: &mut String, what: &str, figure: impl Fn(&str) -> Option<f64>) {
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

pub(crate) fn render(
    results: &[Value],
    env: &Value,
    analysis: Option<&str>,
    previous: Option<(&[Value], &Value)>,
) -> String {
    let mut out = String::new();
    header(&mut out, env);
    goals(&mut out, results);
    compare::section(&mut out, results, previous);
    sections::idle(&mut out, &Scenario::of(results, "idle"));
    sections::ramp(
        &mut out,
        &Scenario::of(results, "fanout"),
        "Fan-out to one room",
    );
    cluster::section(
        &mut out,
        &Scenario::of(results, cluster::CLUSTER),
        &Scenario::of(results, "fanout"),
    );
    sections::ramp(
        &mut out,
        &Scenario::of(results, "rooms"),
        "Many small rooms",
    );
    sections::churn(&mut out, &Scenario::of(results, "churn"));
    recovery::section(&mut out, &Scenario::of(results, recovery::RECOVERY));
    backends::ingest(&mut out, &Scenario::of(results, backends::INGEST));
    backends::rpc(&mut out, &Scenario::of(results, backends::RPC));
    inbox::section(&mut out, results);
    if let Some(analysis) = analysis {
        out.push('\n');
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
        "Written by `bash bench/run.sh` (see the README) from the run of {}, whose scenarios \
         took {} s. Every figure below was measured in that one run, on one machine, with one \
         load generator (`roomcast-bench`, in this workspace) driving every server over \
         loopback; figures from another run or machine do not compare with these.\n",
        s(&env["started"]),
        fmt_opt(&env["duration_secs"], |x| format!("{x:.0}")),
    );
    let _ = writeln!(out, "## Machine\n\n| | |\n|---|---|");
    let _ = writeln!(out, "| CPU | {} ({} cores) |", s(&m["cpu"]), s(&m["nproc"]));
    let _ = writeln!(out, "| Memory | {} |", s(&m["memory"]));
    let _ = writeln!(out, "| Kernel | {} |", s(&m["kernel"]));
    let _ = writeln!(out, "| Open files per process | {} |", s(&m["nofile"]));
    let _ = writeln!(out, "| Ephemeral ports | {} |", s(&m["ports"]));
    let _ = writeln!(
        out,
        "| Load average before the run | {} |",
        s(&m["load_before"])
    );
    let _ = writeln!(out, "\n## Versions\n\n| | |\n|---|---|");
    for (key, name) in [
        ("roomcast", "Roomcast (this commit)"),
        ("rustc", "rustc"),
        ("node", "Node.js"),
        ("socketio", "socket.io (npm)"),
        ("socketioxide", "socketioxide (crates.io)"),
    ] {
        let _ = writeln!(out, "| {name} | {} |", s(&v[key]));
    }
    // The cluster scenario's adapters, when the run recorded them.
    for (key, name) in [
        ("socketio_redis_adapter", "@socket.io/redis-adapter (npm)"),
        ("redis_npm", "redis (npm client of the adapter)"),
        ("socketioxide_redis", "socketioxide-redis (crates.io)"),
    ] {
        if v[key].is_string() {
            let _ = writeln!(out, "| {name} | {} |", s(&v[key]));
        }
    }
    let _ = writeln!(out, "\n## Commands\n\n```sh");
    for c in env["commands"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "{}", s(c));
    }
    let _ = writeln!(out, "```\n\n## Method\n");
    let _ = writeln!(
        out,
        "- Every server binds 127.0.0.1 and is started fresh for each scenario with a \
         throwaway HS256 secret; the servers are measured one after the other, never at once.\n\
         - Subscribers connect from 127.0.0.1 to 127.0.0.4 (so that ephemeral ports never run \
         out), in child processes of the generator holding at most 19,000 connections each. \
         Each presents a token whose `room` claim names its room: Roomcast joins it through \
         `auto_join = [\"{{room}}\"]`, the peers after checking the token's signature. \
         Roomcast's Socket.IO figures and the peers' come from the same minimal Engine.IO v4 \
         / Socket.IO v5 client on the WebSocket transport.\n\
         - Publishers post Roomcast's `POST /api/publish` body (the peers take the same) on \
         keep-alive HTTP/1.1 connections, from a schedule computed before each step: every \
         message carries its room sequence number and its *scheduled* send time, and latency \
         runs from that time to the arrival, so a stall anywhere (server, generator, kernel) \
         shows up as latency, never as fewer sends. The generator's timer adds up to 1 ms.\n\
         - A message is *lost* when it never arrived (checked again at the end of the ramp), \
         *out of order* when it arrived after a higher sequence number of its room on the same \
         connection. CPU is the server's user and system time over the step (`/proc`), which \
         on loopback includes the kernel's work of delivering to the receiving socket.\n\
         - The generator runs on the same 2 cores as the server: its CPU is reported next to \
         the server's, and it bounds every server's figures alike. So is the CPU time of every \
         other process on the machine during each step (\"other processes' cores\", from \
         `/proc/stat`): a step where it is not near zero was disturbed.\n\
         - *Saturated first*: for the server and for the generator, the first step at which its \
         CPU reached 90 % of the most it used in any step of the ramp (it stopped growing with \
         the rate); the side that got there at a lower rate ran out of CPU first. When a fifth \
         of the machine's CPU was still idle at the last step, neither did.\n\
         - The sustained step is run once more after the ramp, once the servers are idle \
         again (the ramp's last step overloads them, and its backlog must not weigh on the \
         repeat); the sustained figure is that repeat's (or the next lower step's that held \
         twice), so that one lucky step does not make a capacity.\n"
    );
}

fn goals(out: &mut String, results: &[Value]) {
    let idle = Scenario::of(results, "idle");
    let fanout = Scenario::of(results, "fanout");
    let rooms = Scenario::of(results, "rooms");
    let cluster = Scenario::of(results, cluster::CLUSTER);
    let _ = writeln!(
        out,
        "## Goals\n\nRoomcast's targets, reported against (benchmarks, never asserted in \
         tests).\n\n| Goal | Measured | |\n|---|---|---|"
    );
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    };
    let memory = idle.get("roomcast-native").and_then(|r| {
        sections::point(r, MEMORY_GOAL_AT).and_then(|p| num(&p["per_connection_kib"]))
    });
    let _ = writeln!(
        out,
        "| Idle memory at most {MEMORY_GOAL_KIB} KiB per native connection at {} connections \
         | {} | {} |",
        fmt_int(MEMORY_GOAL_AT as f64),
        memory.map_or("n/a".into(), |k| format!("{k:.2} KiB")),
        verdict(memory.map(|k| k <= MEMORY_GOAL_KIB)),
    );
    let limit = fanout
        .any()
        .and_then(|r| num(&r["target_p99_ms"]))
        .unwrap_or(50.0);
    let best = |t: &str| {
        fanout
            .get(t)
            .and_then(|r| num(&r["best"]["deliveries_per_sec"]))
    };
    for roomcast in ROOMCAST {
        if fanout.get(roomcast).is_none() {
            continue;
        }
        for (peer, goal) in FANOUT_GOALS {
            let (a, b) = (best(roomcast), best(peer));
            // Without a step within the limit Roomcast has no figure to compare: the goal is
            // missed. A peer without one is beaten at any ratio.
            let (why, met) = match (a, b) {
                (None, _) => (
                    format!("no step of {} met p99 <= {limit} ms", label(roomcast)),
                    Some(false),
                ),
                (Some(a), None) => (
                    format!(
                        "{} vs none: no step of {} met p99 <= {limit} ms",
                        fmt_int(a),
                        label(peer)
                    ),
                    Some(true),
                ),
                (Some(a), Some(b)) => (
                    format!("{} vs {}", fmt_int(a), fmt_int(b)),
                    Some(b > 0.0 && a / b >= goal),
                ),
            };
            let _ = writeln!(
                out,
                "| Fan-out deliveries/s at p99 <= {limit} ms, {} at least {goal}x {} | {} ({why}) \
                 | {} |",
                label(roomcast),
                label(peer),
                ratio(a, b),
                verdict(met),
            );
        }
    }
    // For reference: the same comparison at the ramp's own latency limit.
    let max_p99 = fanout
        .any()
        .and_then(|r| num(&r["max_p99_ms"]))
        .unwrap_or(1000.0);
    let sustained = |t: &str| {
        fanout
            .get(t)
            .and_then(|r| num(&r["sustained"]["deliveries_per_sec"]))
    };
    for roomcast in ROOMCAST {
        let Some(a) = sustained(roomcast) else {
            continue;
        };
        for (peer, _) in FANOUT_GOALS {
            if let Some(b) = sustained(peer) {
                let _ = writeln!(
                    out,
                    "| For reference, not a goal: sustained fan-out deliveries/s (p99 <= \
                     {max_p99} ms), {} vs {} | {} ({} vs {}) | |",
                    label(roomcast),
                    label(peer),
                    ratio(Some(a), Some(b)),
                    fmt_int(a),
                    fmt_int(b),
                );
            }
        }
    }
    if let (Some(h), Some(r)) = (fanout.get(HISTORY), fanout.get("roomcast-native")) {
        // CPU per delivery at the highest rate both sustained: finer than the ramp's steps.
        let measured = ceiling::cpu_ratio(h, r);
        let _ = writeln!(
            out,
            "| History in memory (100 events per room) costs at most {:.0} % of fan-out: server \
             CPU per delivery over the same server's without history | {} | {} |",
            (HISTORY_GOAL - 1.0) * 100.0,
            measured.map_or("n/a".into(), |(x, rate)| format!(
                "{x:.2}x (at {rate:.1} publishes/s, the highest rate both sustained; sustained \
                 deliveries/s {} vs {})",
                fmt_opt(&h["sustained"]["deliveries_per_sec"], fmt_int),
                fmt_opt(&r["sustained"]["deliveries_per_sec"], fmt_int),
            )),
            verdict(measured.map(|(x, _)| x <= HISTORY_GOAL)),
        );
    }
    if let Some(c) = fanout.get(ceiling::CEILING) {
        for roomcast in ROOMCAST {
            let Some(r) = fanout.get(roomcast) else {
                continue;
            };
            let measured = ceiling::cpu_ratio(r, c);
            let _ = writeln!(
                out,
                "| Fan-out server CPU per delivery at most {}x the ceiling's, {} | {} | {} |",
                ceiling::CPU_GOAL,
                label(roomcast),
                measured.map_or("n/a".into(), |(x, rate)| format!(
                    "{x:.2}x (at {rate:.1} publishes/s, the highest rate both sustained)"
                )),
                verdict(measured.map(|(x, _)| x <= ceiling::CPU_GOAL)),
            );
        }
    }
    cluster::goals(out, &cluster, verdict);
    type Label = fn(&str) -> &str;
    let labels: [(&str, &Scenario<'_>, Label); 3] = [
        ("fan-out", &fanout, label),
        ("cluster fan-out", &cluster, cluster::label),
        ("many rooms", &rooms, label),
    ];
    for (name, scenario, label) in labels {
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
                "warmup": 200, "idle_secs": 2,
                "points": [{"connections": 19000, "per_connection_kib": 3.5,
                    "server": {"rss_bytes": 70_000_000}, "opened": 18800, "open_secs": 7.5,
                    "handshake": {"p99_ms": 2.0}}]}),
            json!({"scenario": "idle", "target": "socketioxide", "available": true,
                "points": [{"connections": 19000, "per_connection_kib": 7.0}]}),
            json!({"scenario": "fanout", "target": "roomcast-native", "available": true,
                "connections": 10000, "rooms": 1, "target_p99_ms": 50.0,
                "best": {"deliveries_per_sec": 400000.0, "rate": 40.0}, "steps": [],
                "lost_below_saturation": 0, "stopped": "p99"}),
            json!({"scenario": "fanout", "target": "node-socketio", "available": true,
                "best": {"deliveries_per_sec": 50000.0}, "steps": [], "stopped": "p99"}),
            json!({"scenario": "fanout", "target": "socketioxide", "available": true,
                "best": null, "steps": [], "stopped": "p99"}),
            json!({"scenario": "fanout", "target": "roomcast-socketio", "available": false,
                "reason": "Roomcast does not speak Socket.IO"}),
        ];
        let env = json!({"machine": {"nproc": "2"}, "versions": {},
            "commands": ["bash bench/run.sh"]});
        let text = render(
            &results,
            &env,
            Some("## What limits Roomcast\n\ntext"),
            None,
        );
        assert!(text.contains("| 3.50 KiB | met |"), "{text}");
        assert!(
            text.contains("Roomcast, native protocol / socketioxide: **0.50x**"),
            "{text}"
        );
        assert!(
            text.contains("8.00x (400,000 vs 50,000) | **missed** |"),
            "{text}"
        );
        assert!(
            text.contains(
                "n/a (400,000 vs none: no step of socketioxide met p99 <= 50 ms) | met |"
            ),
            "{text}"
        );
        assert!(text.contains("- Roomcast, Socket.IO: **not available**: Roomcast does not"));
        assert!(text.ends_with("text\n"));
    }
}
