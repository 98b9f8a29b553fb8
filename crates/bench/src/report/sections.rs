//! One section of `BENCHMARKS.md` per scenario: what was run (read back from the results, so
//! the text always matches the run), a summary table across servers, the ratios of Roomcast to
//! its peers, the servers that could not be measured, and for the ramps every step.

use std::fmt::Write as _;

use serde_json::Value;

use super::{ceiling, fmt_int, fmt_opt, label, ms, num, ratios, Scenario};

/// The sample of an idle result at `connections`.
pub(super) fn point(r: &Value, connections: u64) -> Option<&Value> {
    r["points"]
        .as_array()?
        .iter()
        .find(|p| p["connections"].as_u64() == Some(connections))
}

fn kib(v: &Value) -> String {
    fmt_opt(v, |x| format!("{x:.2} KiB"))
}

pub(super) fn idle(out: &mut String, s: &Scenario<'_>) {
    let _ = writeln!(out, "## Idle memory per connection\n");
    let Some(any) = s.any() else {
        let _ = writeln!(out, "Not measured.");
        s.missing(out);
        out.push('\n');
        return;
    };
    let mut counts: Vec<u64> = s
        .measured()
        .flat_map(|(_, r)| r["points"].as_array().into_iter().flatten())
        .filter_map(|p| p["connections"].as_u64())
        .collect();
    counts.sort_unstable();
    counts.dedup();
    let last = counts.last().copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "Authenticated subscribers, each in one room, idle. The server's resident memory is \
         sampled after a {}-connection warm-up and at each count after {} s idle; the cost per \
         connection is the growth over the warm-up divided by the connections added. \
         (`roomcast-bench memory`, in the README, measures native connections in 3 rooms each, \
         in one process.)\n",
        fmt_opt(&any["warmup"], fmt_int),
        fmt_opt(&any["idle_secs"], |x| format!("{x:.0}")),
    );
    let mut head = String::from("| Server |");
    let mut rule = String::from("|---|");
    for n in &counts {
        let _ = write!(head, " per connection at {} |", fmt_int(*n as f64));
        rule.push_str("---|");
    }
    let _ = write!(
        head,
        " RSS at {n} | opening rate | handshake p99 | server CPU per connect |",
        n = fmt_int(last as f64)
    );
    rule.push_str("---|---|---|---|");
    let _ = writeln!(out, "{head}\n{rule}");
    for (target, r) in s.measured() {
        let mut row = format!("| {} |", label(target));
        for n in &counts {
            let figure = point(r, *n).map_or(Value::Null, |p| p["per_connection_kib"].clone());
            let _ = write!(row, " {} |", kib(&figure));
        }
        let top = point(r, last).cloned().unwrap_or(Value::Null);
        let rate = match (num(&top["opened"]), num(&top["open_secs"])) {
            (Some(n), Some(secs)) if secs > 0.0 => format!("{}/s", fmt_int(n / secs)),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            out,
            "{row} {} | {rate} | {} ms | {} |",
            fmt_opt(&top["server"]["rss_bytes"], |x| format!(
                "{:.1} MiB",
                x / 1048576.0
            )),
            ms(&top["handshake"]["p99_ms"]),
            fmt_opt(&top["server_cpu_per_connect_us"], |x| format!("{x:.0} us")),
        );
    }
    ratios(
        out,
        &format!(
            "memory per connection at {} (lower is better)",
            fmt_int(last as f64)
        ),
        |t| {
            s.get(t)
                .and_then(|r| point(r, last))
                .and_then(|p| num(&p["per_connection_kib"]))
        },
    );
    s.missing(out);
    out.push('\n');
}

pub(super) fn ramp(out: &mut String, s: &Scenario<'_>, title: &str) {
    let _ = writeln!(out, "## {title}\n");
    let Some(any) = s.any() else {
        let _ = writeln!(out, "Not measured.");
        s.missing(out);
        out.push('\n');
        return;
    };
    let rooms = num(&any["rooms"]).unwrap_or(1.0);
    let connections = num(&any["connections"]).unwrap_or(0.0);
    let lanes = num(&any["lanes"]).unwrap_or(1.0);
    let max_p99 = fmt_opt(&any["max_p99_ms"], |x| format!("{x:.0}"));
    let target_p99 = fmt_opt(&any["target_p99_ms"], |x| format!("{x:.0}"));
    let spread = if rooms <= 1.0 {
        "one room".to_string()
    } else {
        format!(
            "{} rooms of {}, each publish to a room drawn at random (seeded)",
            fmt_int(rooms),
            fmt_int(connections / rooms)
        )
    };
    let _ = writeln!(
        out,
        "{} subscribers in {spread}; {}-byte events posted on {} keep-alive HTTP/1.1 \
         connection{} (dealt in turn; each connection numbers its messages, which are checked \
         for order per connection); {} s per step, \
         from {} publishes/s, the rate multiplied by {} each step until p99 passes {max_p99} \
         ms, a message goes missing, a subscriber is dropped or a publish fails; then the \
         sustained step once more, on a server started afresh, and from there up towards the \
         next step in thirds of it, each held twice in a row to count.\n",
        fmt_int(connections),
        fmt_opt(&any["size"], fmt_int),
        fmt_int(lanes),
        if lanes > 1.0 { "s" } else { "" },
        fmt_opt(&any["step_secs"], |x| format!("{x}")),
        fmt_opt(&any["start_rate"], |x| format!("{x}")),
        fmt_opt(&any["factor"], |x| format!("{x}")),
    );
    let _ = writeln!(
        out,
        "| Server | deliveries/s at p99 <= {target_p99} ms | sustained deliveries/s (p99 <= \
         {max_p99} ms, nothing lost) | at that rate: publishes/s | p50 | p99 | p99.9 | max | \
         out of order | server cores | generator cores | server CPU per delivery | generator \
         CPU per delivery | saturated first | RSS per connection | the ramp stopped |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (target, r) in s.measured() {
        let b = &r["sustained"];
        let _ =
            writeln!(
            out,
            "| {} | {} | {} | {} | {} ms | {} ms | {} ms | {} ms | {} | {} | {} | {} | {} | {} | \
             {} | {} |",
            label(target),
            fmt_opt(&r["best"]["deliveries_per_sec"], fmt_int),
            fmt_opt(&b["deliveries_per_sec"], fmt_int),
            fmt_opt(&b["rate"], |x| format!("{x:.1}")),
            ms(&b["latency"]["p50_ms"]),
            ms(&b["latency"]["p99_ms"]),
            ms(&b["latency"]["p999_ms"]),
            ms(&b["latency"]["max_ms"]),
            fmt_opt(&b["out_of_order"], fmt_int),
            fmt_opt(&b["server_cores"], |x| format!("{x:.2}")),
            fmt_opt(&b["generator_cores"], |x| format!("{x:.2}")),
            fmt_opt(&b["server_cpu_us_per_delivery"], |x| format!("{x:.2} us")),
            fmt_opt(&b["generator_cpu_us_per_delivery"], |x| format!("{x:.2} us")),
            r["saturated_first"]["side"].as_str().unwrap_or("n/a"),
            fmt_opt(&r["rss_per_connection_bytes"], |x| format!("{:.2} KiB", x / 1024.0)),
            r["stopped"].as_str().unwrap_or("?"),
        );
    }
    let figure = |key: &'static str| {
        move |t: &str| s.get(t).and_then(|r| num(&r[key]["deliveries_per_sec"]))
    };
    ratios(
        out,
        &format!("deliveries per second at p99 <= {target_p99} ms"),
        figure("best"),
    );
    ratios(
        out,
        &format!("sustained deliveries per second (p99 <= {max_p99} ms)"),
        figure("sustained"),
    );
    ratios(
        out,
        "server CPU per delivery at the sustained rate (lower is better)",
        |t| {
            s.get(t)
                .and_then(|r| num(&r["sustained"]["server_cpu_us_per_delivery"]))
        },
    );
    s.missing(out);
    out.push('\n');
    ceiling::section(out, s);
    for (target, r) in s.measured() {
        steps(out, label(target), r);
    }
    out.push('\n');
}

/// Every step of `r`, folded, under the heading `name`; with the Redis server's CPU when the
/// steps have it (a cluster's).
pub(super) fn steps(out: &mut String, name: &str, r: &Value) {
    let all = r["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
    let redis = all.iter().any(|step| num(&step["redis_cores"]).is_some());
    let _ =
        writeln!(
        out,
        "\n<details><summary>{name}: every step</summary>\n\n| publishes/s | deliveries/s | p50 | \
         p99 | p99.9 | max | lost | late | out of order | dropped | publish errors | server \
         cores |{} generator cores | other processes' cores | server CPU per delivery |{} \
         generator CPU per delivery |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|{}---|---|---|{}---|",
        if redis { " Redis cores |" } else { "" },
        if redis { " Redis CPU per delivery |" } else { "" },
        if redis { "---|" } else { "" },
        if redis { "---|" } else { "" },
    );
    for step in all {
        let (redis_cores, redis_cpu) = if redis {
            (
                format!(
                    " {} |",
                    fmt_opt(&step["redis_cores"], |x| format!("{x:.2}"))
                ),
                format!(
                    " {} |",
                    fmt_opt(&step["redis_cpu_us_per_delivery"], |x| format!("{x:.2} us"))
                ),
            )
        } else {
            (String::new(), String::new())
        };
        let _ =
            writeln!(
            out,
            "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{redis_cores} {} | {} \
             | {} |{redis_cpu} {} |",
            fmt_opt(&step["rate"], |x| format!("{x:.1}")),
            if step["repeat"] == true { " (again)" } else { "" },
            fmt_opt(&step["deliveries_per_sec"], fmt_int),
            ms(&step["latency"]["p50_ms"]),
            ms(&step["latency"]["p99_ms"]),
            ms(&step["latency"]["p999_ms"]),
            ms(&step["latency"]["max_ms"]),
            fmt_opt(&step["lost"], fmt_int),
            fmt_opt(&step["late"], fmt_int),
            fmt_opt(&step["out_of_order"], fmt_int),
            fmt_opt(&step["dropped_connections"], fmt_int),
            fmt_opt(&step["publish_errors"], fmt_int),
            fmt_opt(&step["server_cores"], |x| format!("{x:.2}")),
            fmt_opt(&step["generator_cores"], |x| format!("{x:.2}")),
            fmt_opt(&step["other_cores"], |x| format!("{x:.2}")),
            fmt_opt(&step["server_cpu_us_per_delivery"], |x| format!("{x:.2} us")),
            fmt_opt(&step["generator_cpu_us_per_delivery"], |x| format!("{x:.2} us")),
        );
    }
    let _ = writeln!(out, "\n</details>");
}

pub(super) fn churn(out: &mut String, s: &Scenario<'_>) {
    let _ = writeln!(out, "## Connection churn with authentication\n");
    let Some(any) = s.any() else {
        let _ = writeln!(out, "Not measured.");
        s.missing(out);
        out.push('\n');
        return;
    };
    let _ = writeln!(
        out,
        "{} workers, for {} s, each connect, present a fresh HS256 token (checked by every \
         server), wait until they are in their room (the native `welcome`, the Socket.IO \
         connect acknowledgement), and close with a close handshake, one connection after the \
         other.\n",
        fmt_opt(&any["workers"], fmt_int),
        fmt_opt(&any["secs"], |x| format!("{x:.0}")),
    );
    let _ = writeln!(
        out,
        "| Server | connects/s | disconnects/s | handshake p50 | p99 | max | failures | server \
         cores | server CPU per connection | generator cores | other processes' cores |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (target, r) in s.measured() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ms | {} ms | {} ms | {} | {} | {} | {} | {} |",
            label(target),
            fmt_opt(&r["connects_per_sec"], fmt_int),
            fmt_opt(&r["disconnects_per_sec"], fmt_int),
            ms(&r["handshake"]["p50_ms"]),
            ms(&r["handshake"]["p99_ms"]),
            ms(&r["handshake"]["max_ms"]),
            fmt_opt(&r["failures"], fmt_int),
            fmt_opt(&r["server_cores"], |x| format!("{x:.2}")),
            fmt_opt(&r["server_cpu_us_per_connection"], |x| format!("{x:.0} us")),
            fmt_opt(&r["generator_cores"], |x| format!("{x:.2}")),
            fmt_opt(&r["other_cores"], |x| format!("{x:.2}")),
        );
    }
    ratios(out, "connects per second", |t| {
        s.get(t).and_then(|r| num(&r["connects_per_sec"]))
    });
    ratios(out, "server CPU per connection (lower is better)", |t| {
        s.get(t)
            .and_then(|r| num(&r["server_cpu_us_per_connection"]))
    });
    s.missing(out);
    out.push('\n');
}
