//! RabbitMQ ingestion (`roomcast-bench ingest`): the end-to-end latency of a message from its
//! publish to RabbitMQ to its delivery, at a steady rate, and the rate a burst is carried at.

use std::fmt::Write as _;

use serde_json::Value;

use super::{fmt_int, fmt_opt, num, one_line, Scenario};

/// The scenario's name in the results.
pub(super) const INGEST: &str = "ingest";
/// The one target it measures.
const TARGET: &str = "roomcast-native";

fn ms(v: &Value) -> String {
    fmt_opt(v, |x| format!("{x:.1} ms"))
}

pub(super) fn section(out: &mut String, s: &Scenario<'_>) {
    let _ = writeln!(out, "## Ingestion from RabbitMQ\n");
    let Some(r) = s.get(TARGET) else {
        let _ = writeln!(out, "Not measured.\n");
        return;
    };
    if r["available"] == false {
        let reason = r["reason"].as_str().unwrap_or("?");
        let _ = writeln!(out, "**Not available**: {reason}\n");
        return;
    }
    if let Some(e) = r["error"].as_str() {
        let _ = writeln!(out, "**The run failed**: {}\n", one_line(e));
        return;
    }
    let (steady, burst) = (&r["steady"], &r["burst"]);
    let _ = writeln!(
        out,
        "Roomcast, one node, consumes a queue of the run's own on the local RabbitMQ with one \
         rule publishing every message to one room of {} native subscribers; messages of {} \
         bytes are published with lapin (persistent, with publisher confirmations), each \
         carrying its send time. Latency runs from the publish to RabbitMQ until a subscriber \
         has the event: {} messages at {} per second. Then {} messages are published as fast \
         as the confirmations allow, and the rate is the messages over the time until the last \
         subscriber has the last one.\n",
        fmt_opt(&r["clients"], fmt_int),
        fmt_opt(&r["size"], fmt_int),
        fmt_opt(&steady["messages"], fmt_int),
        fmt_opt(&steady["rate"], fmt_int),
        fmt_opt(&burst["messages"], fmt_int),
    );
    let _ = writeln!(
        out,
        "| Steady rate | p50 | p99 | max | Burst: messages/s | deliveries/s | burst p99 | \
         server CPU per message |\n|---|---|---|---|---|---|---|---|"
    );
    let complete = |phase: &Value| {
        if phase["complete"] == false {
            " (incomplete)"
        } else {
            ""
        }
    };
    let _ = writeln!(
        out,
        "| {}/s{} | {} | {} | {} | {}{} | {} | {} | {} |\n",
        fmt_opt(&steady["rate"], fmt_int),
        complete(steady),
        ms(&steady["latency"]["p50_ms"]),
        ms(&steady["latency"]["p99_ms"]),
        ms(&steady["latency"]["max_ms"]),
        fmt_opt(&burst["messages_per_sec"], fmt_int),
        complete(burst),
        fmt_opt(&burst["deliveries_per_sec"], fmt_int),
        ms(&burst["latency"]["p99_ms"]),
        match num(&burst["cpu_us_per_message"]) {
            Some(us) => format!("{us:.1} us"),
            None => "n/a".into(),
        },
    );
}
