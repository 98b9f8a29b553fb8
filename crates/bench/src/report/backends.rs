//! Roomcast with the systems beside it: RabbitMQ ingestion (`roomcast-bench ingest`: the
//! end-to-end latency of a message from its publish to RabbitMQ to its delivery, at a steady
//! rate, and the rate a burst is carried at) and the RPC proxy (`roomcast-bench rpc`: what it
//! adds to a backend call, and the calls one node carries).

use std::fmt::Write as _;

use serde_json::Value;

use super::{fmt_int, fmt_opt, num, one_line, Scenario};

/// The scenario's name in the results.
pub(super) const INGEST: &str = "ingest";
/// The RPC scenario's name in the results.
pub(super) const RPC: &str = "rpc";
/// The one target they measure.
const TARGET: &str = "roomcast-native";

fn ms(v: &Value) -> String {
    fmt_opt(v, |x| format!("{x:.2} ms"))
}

/// The scenario's result when it was measured; otherwise says why not.
fn measured<'a>(out: &mut String, s: &'a Scenario<'_>) -> Option<&'a Value> {
    let Some(r) = s.get(TARGET) else {
        let _ = writeln!(out, "Not measured.\n");
        return None;
    };
    if r["available"] == false {
        let reason = r["reason"].as_str().unwrap_or("?");
        let _ = writeln!(out, "**Not available**: {reason}\n");
        return None;
    }
    if let Some(e) = r["error"].as_str() {
        let _ = writeln!(out, "**The run failed**: {}\n", one_line(e));
        return None;
    }
    Some(r)
}

pub(super) fn ingest(out: &mut String, s: &Scenario<'_>) {
    let _ = writeln!(out, "## Ingestion from RabbitMQ\n");
    let Some(r) = measured(out, s) else {
        return;
    };
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

pub(super) fn rpc(out: &mut String, s: &Scenario<'_>) {
    let _ = writeln!(out, "## RPC proxy\n");
    let Some(r) = measured(out, s) else {
        return;
    };
    let concurrent = &r["concurrent"];
    let _ = writeln!(
        out,
        "A backend in the load generator's process (hyper, HTTP/1.1 keep-alive) answers every \
         POST with a small JSON result. {} calls are made one at a time, directly (a keep-alive \
         client posting the body Roomcast would) and through Roomcast (a native client's `rpc` \
         command: the server signs the call, posts it to the backend on a pooled connection \
         and answers with the result). Then {} native clients call at once, each waiting for \
         its answer before the next.\n",
        fmt_opt(&r["calls"], fmt_int),
        fmt_opt(&concurrent["clients"], fmt_int),
    );
    let _ = writeln!(
        out,
        "| | p50 | p99 | max |\n|---|---|---|---|\n\
         | Direct HTTP call | {} | {} | {} |\n\
         | Through Roomcast (`rpc`) | {} | {} | {} |\n\
         | Added by the proxy | {} | {} | |\n\
         | {} clients at once: {} calls/s | {} | {} | {} |\n",
        ms(&r["direct"]["p50_ms"]),
        ms(&r["direct"]["p99_ms"]),
        ms(&r["direct"]["max_ms"]),
        ms(&r["proxied"]["p50_ms"]),
        ms(&r["proxied"]["p99_ms"]),
        ms(&r["proxied"]["max_ms"]),
        ms(&r["added_p50_ms"]),
        ms(&r["added_p99_ms"]),
        fmt_opt(&concurrent["clients"], fmt_int),
        fmt_opt(&concurrent["calls_per_sec"], fmt_int),
        ms(&concurrent["latency"]["p50_ms"]),
        ms(&concurrent["latency"]["p99_ms"]),
        ms(&concurrent["latency"]["max_ms"]),
    );
}
