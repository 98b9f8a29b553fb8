//! The fan-out read against the ceiling (`bench/peers/ceiling`, the least any server must do
//! to deliver it): each server's sustained deliveries and its CPU per delivery as fractions of
//! the ceiling's from the same run, the load generator's CPU per delivery beside the
//! server's, and which of the two ran out of CPU first.

use std::fmt::Write as _;

use serde_json::Value;

use super::{fmt_int, fmt_opt, label, num, Scenario};

/// The ceiling's target name.
pub(super) const CEILING: &str = "ceiling";
/// Roomcast's goal: server CPU per delivery at most this many times the ceiling's.
pub(super) const CPU_GOAL: f64 = 1.5;

/// A step that delivered everything with p99 within the ramp's limit.
fn sustained(step: &Value, max_p99: f64) -> bool {
    let zero = |key: &str| step[key].as_u64() == Some(0);
    zero("missing_at_drain")
        && zero("publish_errors")
        && zero("dropped_connections")
        && num(&step["latency"]["p99_ms"]).is_some_and(|p99| p99 <= max_p99)
}

/// The last sustained step of `r` at `rate` (a repeat, when there is one).
fn step_at(r: &Value, rate: f64, max_p99: f64) -> Option<&Value> {
    r["steps"].as_array()?.iter().rev().find(|s| {
        num(&s["rate"]).is_some_and(|x| (x - rate).abs() <= 1e-6 * rate.max(1.0))
            && sustained(s, max_p99)
    })
}

/// The highest publish rate at which both `r` and the ceiling `c` sustained a step, with the
/// two steps: server CPU per delivery compares at equal load there, whatever each one's
/// sustained rate was (more events queued per socket make every delivery cheaper).
pub(super) fn common_step<'a>(r: &'a Value, c: &'a Value) -> Option<(f64, &'a Value, &'a Value)> {
    let max_p99 = num(&r["max_p99_ms"]).unwrap_or(1000.0);
    let mut rates: Vec<f64> = r["steps"]
        .as_array()?
        .iter()
        .filter(|s| sustained(s, max_p99))
        .filter_map(|s| num(&s["rate"]))
        .collect();
    rates.sort_by(|a, b| b.total_cmp(a));
    rates.into_iter().find_map(|rate| {
        let ours = step_at(r, rate, max_p99)?;
        let theirs = step_at(c, rate, num(&c["max_p99_ms"]).unwrap_or(max_p99))?;
        Some((rate, ours, theirs))
    })
}

/// Server CPU per delivery of `r` over the ceiling's, at the highest rate both sustained.
pub(super) fn cpu_ratio(r: &Value, c: &Value) -> Option<(f64, f64)> {
    let (rate, ours, theirs) = common_step(r, c)?;
    let a = num(&ours["server_cpu_us_per_delivery"])?;
    let b = num(&theirs["server_cpu_us_per_delivery"])?;
    (b > 0.0).then_some((a / b, rate))
}

fn us(v: &Value) -> String {
    fmt_opt(v, |x| format!("{x:.2} us"))
}

/// The section, when the ceiling was measured.
pub(super) fn section(out: &mut String, s: &Scenario<'_>) {
    let Some(c) = s.get(CEILING) else {
        return;
    };
    let _ = writeln!(
        out,
        "### Against the ceiling\n\n\
         The ceiling (`bench/peers/ceiling`) takes the same subscribers and the same publish \
         trigger with no rooms and no authentication, builds each publish's frame once and \
         writes it to every connection with ideal batching (one `sendmsg` per socket per \
         visit, carrying everything queued for it), one epoll loop per sender thread (half the \
         cores: the generator reads on the other half). It was measured \
         in this run with the same generator. A server's sustained deliveries/s are read as a \
         fraction of the ceiling's (higher is better); its CPU per delivery as a multiple of \
         the ceiling's at the highest publish rate both sustained (lower is better; \
         Roomcast's goal is at most {CPU_GOAL}x), since CPU per delivery falls as the rate \
         rises and more events share a send. The generator's CPU per delivery is beside the \
         server's: when it is the larger, the generator bounds the figure.\n"
    );
    let _ = writeln!(
        out,
        "| Server | sustained deliveries/s | of the ceiling's | server CPU per delivery | \
         generator CPU per delivery | compared at publishes/s | server CPU per delivery \
         there | the ceiling's | multiple of the ceiling's | generator CPU per delivery \
         there | saturated first |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let ceiling_rate = num(&c["sustained"]["deliveries_per_sec"]);
    let mut rows: Vec<(&str, &Value)> = vec![(CEILING, c)];
    rows.extend(s.measured().filter(|(t, _)| *t != CEILING));
    for (target, r) in rows {
        let b = &r["sustained"];
        let fraction = match (num(&b["deliveries_per_sec"]), ceiling_rate) {
            (Some(a), Some(c)) if c > 0.0 => format!("{:.2}", a / c),
            _ => "n/a".into(),
        };
        let common = common_step(r, c);
        let (at, ours, theirs) = match common {
            Some((rate, ours, theirs)) => (format!("{rate:.1}"), ours, theirs),
            None => ("n/a".into(), &Value::Null, &Value::Null),
        };
        let multiple = cpu_ratio(r, c).map_or("n/a".into(), |(x, _)| format!("**{x:.2}x**"));
        let side = &r["saturated_first"];
        let saturated = match (side["side"].as_str(), side["why"].as_str()) {
            (Some(side), Some(why)) => format!("{side} ({why})"),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {fraction} | {} | {} | {at} | {} | {} | {multiple} | {} | {saturated} |",
            label(target),
            fmt_opt(&b["deliveries_per_sec"], fmt_int),
            us(&b["server_cpu_us_per_delivery"]),
            us(&b["generator_cpu_us_per_delivery"]),
            us(&ours["server_cpu_us_per_delivery"]),
            us(&theirs["server_cpu_us_per_delivery"]),
            us(&ours["generator_cpu_us_per_delivery"]),
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(rate: f64, cpu: f64, p99: f64) -> Value {
        json!({"rate": rate, "missing_at_drain": 0, "publish_errors": 0,
            "dropped_connections": 0, "latency": {"p99_ms": p99},
            "server_cpu_us_per_delivery": cpu, "generator_cpu_us_per_delivery": 0.5})
    }

    #[test]
    fn cpu_compares_at_the_highest_rate_both_sustained() {
        let ceiling = json!({"max_p99_ms": 1000.0, "steps": [
            step(10.0, 0.5, 100.0), step(12.5, 0.4, 100.0), step(15.6, 0.3, 100.0)]});
        let server = json!({"max_p99_ms": 1000.0, "steps": [
            step(10.0, 1.0, 100.0), step(12.5, 0.8, 300.0), step(15.6, 0.5, 2000.0),
            step(12.5, 0.6, 400.0)]});
        // 15.6 failed its latency limit; at 12.5 the repeat (the last step) is taken.
        let (ratio, rate) = cpu_ratio(&server, &ceiling).unwrap();
        assert_eq!(rate, 12.5);
        assert!((ratio - 1.5).abs() < 1e-9, "{ratio}");
    }
}
