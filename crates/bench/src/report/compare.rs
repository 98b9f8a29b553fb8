//! The run set beside the previous one (`bench/last-run/`, kept by `bench/run.sh`): each
//! headline figure before and now, and whether it changed beyond the noise the benchmark
//! itself shows between runs of one commit.
//!
//! Figures that depend on how busy the machine was are read against a peer measured in the
//! same run (CPU per delivery as a multiple of the ceiling's or socketioxide's), so that a
//! slower machine does not read as a regression. The tolerances:
//!
//! - a sustained rate found by a ramp moves by whole steps: one step (the ramp's factor,
//!   1.25) either way is noise, since two runs of one commit have differed by one;
//! - CPU read against a peer: 15 %, the most that two runs of one commit differed by;
//! - idle memory per connection: 3 %;
//! - the inbox's rates and latencies, which have no peer to be read against: 25 %, a first
//!   bound, wider than the others, until runs of one commit show what they differ by.

use std::fmt::Write as _;

use serde_json::Value;

use super::{ceiling, fmt_int, inbox, num, Scenario};

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// How far a figure may move between two runs of one commit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Noise {
    /// By this fraction.
    Relative(f64),
    /// By one step of a ramp with this factor.
    Step(f64),
}

const CPU_NOISE: Noise = Noise::Relative(0.15);
const MEMORY_NOISE: Noise = Noise::Relative(0.03);
const CHURN_NOISE: Noise = Noise::Relative(0.15);
const INBOX_NOISE: Noise = Noise::Relative(0.25);

struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    better: Better,
    noise: Noise,
}

/// The ramp factor of a result (1.25 unless it says otherwise).
fn step_noise(r: &Value) -> Noise {
    Noise::Step(num(&r["factor"]).unwrap_or(1.25))
}

/// The figures compared between runs, as far as `results` measured them.
fn figures(results: &[Value]) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut push = |name: String, value: Option<f64>, unit, better, noise| {
        if let Some(value) = value {
            out.push(Figure {
                name,
                value,
                unit,
                better,
                noise,
            });
        }
    };
    let idle = Scenario::of(results, "idle");
    let fanout = Scenario::of(results, "fanout");
    let rooms = Scenario::of(results, "rooms");
    let churn = Scenario::of(results, "churn");
    let cluster = Scenario::of(results, super::cluster::CLUSTER);
    for (target, what) in [
        ("roomcast-native", "native protocol"),
        ("roomcast-socketio", "Socket.IO"),
    ] {
        if let Some(r) = idle.get(target) {
            let kib = r["points"]
                .as_array()
                .and_then(|points| points.last())
                .and_then(|p| num(&p["per_connection_kib"]));
            push(
                format!("Idle memory per connection at the largest count, {what}"),
                kib,
                "KiB",
                Better::Lower,
                MEMORY_NOISE,
            );
        }
        if let Some(r) = fanout.get(target) {
            push(
                format!("Fan-out, sustained deliveries/s, {what}"),
                num(&r["sustained"]["deliveries_per_sec"]),
                "",
                Better::Higher,
                step_noise(r),
            );
            if let Some(c) = fanout.get(ceiling::CEILING) {
                push(
                    format!("Fan-out, server CPU per delivery over the ceiling's, {what}"),
                    ceiling::cpu_ratio(r, c).map(|(ratio, _)| ratio),
                    "x",
                    Better::Lower,
                    CPU_NOISE,
                );
            }
        }
        if let Some(r) = rooms.get(target) {
            push(
                format!("Many rooms, sustained deliveries/s, {what}"),
                num(&r["sustained"]["deliveries_per_sec"]),
                "",
                Better::Higher,
                step_noise(r),
            );
            if let Some(x) = rooms.get("socketioxide") {
                push(
                    format!("Many rooms, server CPU per delivery over socketioxide's, {what}"),
                    ceiling::cpu_ratio(r, x).map(|(ratio, _)| ratio),
                    "x",
                    Better::Lower,
                    CPU_NOISE,
                );
            }
        }
        if let (Some(r), Some(x)) = (churn.get(target), churn.get("socketioxide")) {
            let per = |r: &Value| num(&r["server_cpu_us_per_connection"]);
            push(
                format!("Churn, server CPU per connection over socketioxide's, {what}"),
                per(r)
                    .zip(per(x))
                    .and_then(|(a, b)| (b > 0.0).then(|| a / b)),
                "x",
                Better::Lower,
                CHURN_NOISE,
            );
        }
    }
    if let Some(r) = cluster.get("roomcast-native") {
        push(
            "Cluster fan-out, sustained deliveries/s, native protocol".to_owned(),
            num(&r["sustained"]["deliveries_per_sec"]),
            "",
            Better::Higher,
            step_noise(r),
        );
    }
    for (database, name) in inbox::DATABASES {
        let Some(r) = inbox::measured(results, database) else {
            continue;
        };
        let inbox_figures = [
            (
                "created/s, one user per create",
                &r["delivery"]["created_per_sec"],
                "",
                Better::Higher,
            ),
            (
                "created/s, every client's user per create",
                &r["batch"]["created_per_sec"],
                "",
                Better::Higher,
            ),
            (
                "create to event p50",
                &r["delivery"]["latency"]["p50_ms"],
                "ms",
                Better::Lower,
            ),
            (
                "bulk load rows/s",
                &r["load"]["rows_per_sec"],
                "",
                Better::Higher,
            ),
            (
                "heavy user's counts p50",
                &r["reads"]["heavy_counts"]["p50_ms"],
                "ms",
                Better::Lower,
            ),
            (
                "heavy user's deep page p50",
                &r["reads"]["deep_page"]["p50_ms"],
                "ms",
                Better::Lower,
            ),
        ];
        for (what, figure, unit, better) in inbox_figures {
            push(
                format!("Inbox, {what}, {name}"),
                num(figure),
                unit,
                better,
                INBOX_NOISE,
            );
        }
    }
    out
}

/// `now` against `before`: better or worse beyond `noise`, or within it.
fn verdict(before: f64, now: f64, better: Better, noise: Noise) -> &'static str {
    if before <= 0.0 {
        return "n/a";
    }
    if now <= 0.0 {
        return if better == Better::Higher {
            "**worse beyond noise**"
        } else {
            "n/a"
        };
    }
    // Above 1 when `now` is worse.
    let worse = match better {
        Better::Higher => before / now,
        Better::Lower => now / before,
    };
    let limit = match noise {
        Noise::Relative(f) => 1.0 + f,
        // One whole step, with room for the rounding of the rates.
        Noise::Step(factor) => factor * 1.001,
    };
    if worse > limit {
        "**worse beyond noise**"
    } else if 1.0 / worse > limit {
        "better beyond noise"
    } else {
        "within noise"
    }
}

fn value(f: &Figure) -> String {
    match f.unit {
        "" => fmt_int(f.value),
        "x" => format!("{:.2}x", f.value),
        unit => format!("{:.2} {unit}", f.value),
    }
}

fn noise_text(noise: Noise) -> String {
    match noise {
        Noise::Relative(f) => format!("±{:.0} %", f * 100.0),
        Noise::Step(factor) => format!("one ramp step (x{factor})"),
    }
}

/// The section: every figure of this run beside the previous run's, with its verdict.
pub(super) fn section(out: &mut String, results: &[Value], previous: Option<(&[Value], &Value)>) {
    let _ = writeln!(out, "## Since the previous run\n");
    let Some((before_results, before_env)) = previous else {
        let _ = writeln!(
            out,
            "No previous run was kept (`bench/last-run/`), so nothing is compared.\n"
        );
        return;
    };
    let _ = writeln!(
        out,
        "The previous run (commit {}, {}) and this one, figure by figure. A figure moves \
         beyond noise when it changed by more than two runs of one commit have differed by: \
         one step of a ramp for a sustained rate, 15 % for CPU read against a peer of the same \
         run, 3 % for memory; 25 % for the inbox's rates and latencies, a first bound until \
         runs of one commit show what they differ by.\n",
        before_env["versions"]["roomcast"]
            .as_str()
            .unwrap_or("unknown"),
        before_env["started"].as_str().unwrap_or("unknown date"),
    );
    let before = figures(before_results);
    let _ = writeln!(
        out,
        "| Figure | previous run | this run | noise | |\n|---|---|---|---|---|"
    );
    let mut worse = 0;
    let now_figures = figures(results);
    // A figure the previous run had and this one lacks (a server that failed, a ramp that
    // sustained nothing) is the worst change of all.
    for then in &before {
        if !now_figures.iter().any(|f| f.name == then.name) {
            worse += 1;
            let _ = writeln!(
                out,
                "| {} | {} | not measured | | **worse beyond noise** |",
                then.name,
                value(then)
            );
        }
    }
    for now in now_figures {
        let Some(then) = before.iter().find(|f| f.name == now.name) else {
            let _ = writeln!(out, "| {} | n/a | {} | | new |", now.name, value(&now));
            continue;
        };
        let v = verdict(then.value, now.value, now.better, now.noise);
        worse += usize::from(v.starts_with("**worse"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {v} |",
            now.name,
            value(then),
            value(&now),
            noise_text(now.noise)
        );
    }
    let _ = writeln!(
        out,
        "\n{}\n",
        if worse == 0 {
            "No figure got worse beyond noise.".to_owned()
        } else {
            format!("{worse} figure(s) got worse beyond noise.")
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ramp_step_is_noise_and_two_are_not() {
        let step = Noise::Step(1.25);
        assert_eq!(verdict(1000.0, 800.0, Better::Higher, step), "within noise");
        assert_eq!(
            verdict(1000.0, 640.0, Better::Higher, step),
            "**worse beyond noise**"
        );
        assert_eq!(
            verdict(1000.0, 1562.5, Better::Higher, step),
            "better beyond noise"
        );
    }

    #[test]
    fn lower_is_better_for_costs() {
        let cpu = Noise::Relative(0.15);
        assert_eq!(verdict(1.0, 1.1, Better::Lower, cpu), "within noise");
        assert_eq!(
            verdict(1.0, 1.2, Better::Lower, cpu),
            "**worse beyond noise**"
        );
        assert_eq!(verdict(1.0, 0.8, Better::Lower, cpu), "better beyond noise");
    }

    #[test]
    fn a_figure_no_longer_measured_is_worse() {
        let before = vec![serde_json::json!({
            "scenario": "idle", "target": "roomcast-native", "available": true,
            "points": [{"connections": 19000, "per_connection_kib": 3.5}],
        })];
        let env = serde_json::json!({"versions": {"roomcast": "abc1234"}, "started": "then"});
        let mut out = String::new();
        section(&mut out, &[], Some((&before, &env)));
        assert!(out.contains("not measured"), "{out}");
        assert!(out.contains("1 figure(s) got worse beyond noise"), "{out}");
        assert_eq!(
            verdict(100.0, 0.0, Better::Higher, Noise::Step(1.25)),
            "**worse beyond noise**"
        );
    }

    #[test]
    fn without_a_previous_run_nothing_is_compared() {
        let mut out = String::new();
        section(&mut out, &[], None);
        assert!(out.contains("nothing is compared"), "{out}");
    }

    #[test]
    fn inbox_figures_are_new_at_first_then_judged() {
        let run = |created: f64| {
            vec![serde_json::json!({
                "scenario": "inbox", "target": "roomcast-native", "database": "sqlite",
                "available": true, "delivery": {"created_per_sec": created},
                "reads": {"heavy_counts": {"p50_ms": 2.0}},
            })]
        };
        let env = serde_json::json!({"versions": {"roomcast": "abc1234"}, "started": "then"});
        let mut out = String::new();
        section(&mut out, &run(1000.0), Some((&[], &env)));
        assert!(
            out.contains("| Inbox, created/s, one user per create, SQLite | n/a | 1,000 | | new |"),
            "{out}"
        );
        assert!(out.contains("No figure got worse beyond noise."), "{out}");
        let mut out = String::new();
        let before = run(1000.0);
        section(&mut out, &run(700.0), Some((&before, &env)));
        assert!(
            out.contains("| 1,000 | 700 | ±25 % | **worse beyond noise** |"),
            "{out}"
        );
        assert!(
            out.contains(
                "| Inbox, heavy user's counts p50, SQLite | 2.00 ms | 2.00 ms | ±25 % | within noise |"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_figure_of_both_runs_is_judged() {
        let run = |kib: f64| {
            vec![serde_json::json!({
                "scenario": "idle", "target": "roomcast-native", "available": true,
                "points": [{"connections": 19000, "per_connection_kib": kib}],
            })]
        };
        let env = serde_json::json!({"versions": {"roomcast": "abc1234"}, "started": "then"});
        let mut out = String::new();
        let before = run(3.5);
        section(&mut out, &run(3.9), Some((&before, &env)));
        assert!(out.contains("abc1234"), "{out}");
        assert!(out.contains("| 3.50 KiB | 3.90 KiB |"), "{out}");
        assert!(out.contains("1 figure(s) got worse beyond noise"), "{out}");
    }
}
