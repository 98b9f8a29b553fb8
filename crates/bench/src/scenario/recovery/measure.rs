//! The measurement of `recovery`: the clients opened around the first event, the node killed,
//! the missed events published, then the storm of reconnections timed, with the CPU it cost,
//! and summed up as printed lines and one JSON result.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::clients::{event_data, Clients, Outcome, Shared, Verdict};
use super::{fleet_sources, Args, SCENARIO, TARGET};
use crate::fleet::Fleet;
use crate::procfs;
use crate::publisher::OneByOne;
use crate::scenario::r3;
use crate::stats::Latency;
use crate::target::Bed;
use crate::wire;

/// Time allowed for every client to hold the first event's offset, and, after the kill, to see
/// its connection end.
const SETUP_WAIT: Duration = Duration::from_secs(10);
/// How often the counters are looked at while waiting for the clients.
const POLL: Duration = Duration::from_millis(2);
/// Time given to events that might still come after the last outcome (none should).
const DRAIN: Duration = Duration::from_millis(500);
/// The sessions' keys under the run's prefix: `<prefix>:sio:{<pid>}`.
const SESSION_KEYS: &str = "sio:";

/// Waits until `done` holds, at most `limit`; how long it took, or `None`.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> Option<Duration> {
    let began = Instant::now();
    while !done() {
        if began.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
    Some(began.elapsed())
}

/// The summary of `durations`, in milliseconds.
fn latency_of(durations: &[Duration]) -> Latency {
    let mut hist = Latency::histogram();
    for d in durations {
        hist.saturating_record((d.as_micros() as u64).max(1));
    }
    Latency::of(&hist)
}

/// CPU time of one process, when it can be read.
fn cpu(pid: Option<u32>) -> Option<Duration> {
    procfs::sample(pid?).ok().map(|s| s.cpu)
}

pub(super) async fn measure(
    args: &Args,
    bed: &mut Bed,
    fleet: &mut Fleet<Clients>,
    shared: &Shared,
    outcomes: &mut mpsc::UnboundedReceiver<Outcome>,
) -> Result<Value> {
    let name = format!("{SCENARIO} / {}", TARGET.name());
    let n = args.clients;
    let no_offset = ((n as f64 * args.no_offset_percent / 100.0).round() as usize).min(n);
    let early = n - no_offset;
    let mut publisher = OneByOne::connect(bed.publish_api()).await?;
    // Sessions there before the clients (the start-up probe's): not theirs.
    let sessions_before = count_sessions(bed, &name).await;

    // The clients that keep an offset, the first event, then the others.
    let first = fleet.open(0..early).await?;
    publisher
        .post(wire::broadcast_body(&event_data(0)))
        .await
        .context("publishing the first event")?;
    let got_first = wait_until(SETUP_WAIT, || {
        shared.with_offset.load(Ordering::Relaxed) >= early
    })
    .await;
    if got_first.is_none() {
        eprintln!(
            "{name}: only {} of {early} clients received the first event within {} s",
            shared.with_offset.load(Ordering::Relaxed),
            SETUP_WAIT.as_secs()
        );
    }
    let second = fleet.open(early..n).await?;
    let mut handshakes = first.latencies;
    handshakes.extend(second.latencies);
    let handshake = latency_of(&handshakes);
    let open_secs = (first.elapsed + second.elapsed).as_secs_f64();
    let sources = fleet_sources(args);
    println!(
        "{name}: {n} clients on node 2 of 2 (from {sources} loopback addresses) opened in \
         {open_secs:.1} s, {} of them with the first event's offset; handshake {}",
        shared.with_offset.load(Ordering::Relaxed),
        handshake.text(),
    );

    // The sessions reach Redis, then the node dies.
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let sessions = match (count_sessions(bed, &name).await, sessions_before) {
        (Some(now), Some(before)) => Some(now.saturating_sub(before)),
        _ => None,
    };
    let with_offset = shared.with_offset.load(Ordering::Relaxed);
    let dropped_before_kill = shared.lost.load(Ordering::Relaxed);
    bed.ensure_running()?;
    let doomed = bed.nodes.remove(0);
    let killed = Instant::now();
    doomed.kill().await.context("killing node 2")?;
    let ended = wait_until(SETUP_WAIT, || shared.lost.load(Ordering::Relaxed) >= n)
        .await
        .map(|_| killed.elapsed());
    let lost = shared.lost.load(Ordering::Relaxed);
    println!(
        "{name}: node 2 killed {} ms after the last connect, with {} of the clients' sessions \
         in Redis; {}",
        args.settle_ms,
        sessions.map_or("?".into(), |s| s.to_string()),
        match ended {
            Some(took) => format!(
                "every connection ended within {:.1} ms",
                took.as_secs_f64() * 1e3
            ),
            None => format!(
                "{lost} of {n} connections ended within {} s",
                SETUP_WAIT.as_secs()
            ),
        },
    );

    // The events the clients miss, through the survivor.
    for k in 1..=args.missed {
        publisher
            .post(wire::broadcast_body(&event_data(k)))
            .await
            .with_context(|| format!("publishing missed event {k}"))?;
    }

    // The storm.
    let node_pid = Some(bed.server.pid());
    let redis_pid = bed.redis.as_ref().and_then(|r| r.info.pid);
    let own_pid = Some(std::process::id());
    let (node_before, redis_before, own_before) = (cpu(node_pid), cpu(redis_pid), cpu(own_pid));
    let machine_before = procfs::machine_cpu()?;
    let tcp_before = procfs::tcp_counters().ok();
    let start = Instant::now();
    shared.storm.send_replace(Some(start));
    let spread = if args.reconnect_rate > 0.0 {
        Duration::from_secs_f64(n as f64 / args.reconnect_rate)
    } else {
        Duration::ZERO
    };
    let deadline = start + spread + Duration::from_secs(args.recover_secs) + DRAIN;
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        match tokio::time::timeout_at(deadline, outcomes.recv()).await {
            Ok(Some(outcome)) => all.push(outcome),
            Ok(None) | Err(_) => break,
        }
    }
    let storm = all
        .iter()
        .map(|o| o.done.saturating_duration_since(start))
        .max()
        .unwrap_or_default();
    let used =
        |before: Option<Duration>, pid| Some(cpu(pid)?.saturating_sub(before?).as_secs_f64());
    let node_cpu = used(node_before, node_pid);
    let redis_cpu = used(redis_before, redis_pid);
    let own_cpu = used(own_before, own_pid);
    let machine = procfs::machine_cpu()?
        .busy
        .saturating_sub(machine_before.busy)
        .as_secs_f64();
    let others =
        (machine - node_cpu.unwrap_or(0.0) - redis_cpu.unwrap_or(0.0) - own_cpu.unwrap_or(0.0))
            .max(0.0);
    let tcp = match (procfs::tcp_counters().ok(), tcp_before) {
        (Some(after), Some(before)) => Some(after.since(before)),
        _ => None,
    };
    tokio::time::sleep(DRAIN).await;
    bed.ensure_running()?;

    let count = |verdict| all.iter().filter(|o| o.verdict == verdict).count();
    let recovered = count(Verdict::Recovered);
    let no_outcome = n - all.len();
    let not_recovered = n - recovered;
    let mut reasons = serde_json::Map::new();
    for verdict in Verdict::NOT_RECOVERED {
        reasons.insert(verdict.name().into(), json!(count(verdict)));
    }
    reasons.insert("no_outcome".into(), json!(no_outcome));
    let took: Vec<Duration> = all
        .iter()
        .filter(|o| o.verdict == Verdict::Recovered)
        .map(|o| o.took)
        .collect();
    let per_client = latency_of(&took);
    let recovered_without_offset = all
        .iter()
        .filter(|o| o.verdict == Verdict::Recovered && !o.had_offset)
        .count();
    let reconnected_without_offset = all.iter().filter(|o| !o.had_offset).count();
    let retried = all.iter().filter(|o| o.attempts > 1).count();
    let close_unseen = all.iter().filter(|o| !o.saw_close).count();
    let failed_attempts = by_kind(all.iter().flat_map(|o| &o.errors));
    let late_events = shared.late_events.load(Ordering::Relaxed);
    let all_recovered = (recovered == n).then_some(storm);
    let secs = |x: Option<f64>| x.map_or("?".to_string(), |x| format!("{x:.2}"));
    let mut not = Verdict::NOT_RECOVERED
        .iter()
        .filter(|v| count(**v) > 0)
        .map(|v| format!("{} {}", v.name().replace('_', " "), count(*v)))
        .collect::<Vec<_>>();
    if no_outcome > 0 {
        not.push(format!("no outcome {no_outcome}"));
    }
    println!(
        "{name}: {n} clients reconnected to node 1: {recovered} recovered, {not_recovered} \
         not{}; {} missed events each; {}; per client {}",
        if not.is_empty() {
            String::new()
        } else {
            format!(" ({})", not.join(", "))
        },
        args.missed,
        match all_recovered {
            Some(all) => format!("all recovered within {:.3} s", all.as_secs_f64()),
            None => format!("the last outcome after {:.3} s", storm.as_secs_f64()),
        },
        per_client.text(),
    );
    println!(
        "{name}: {retried} clients tried more than once{}; CPU over the storm: Redis {} s, \
         node 1 {} s, generator {} s, other processes {others:.2} s{}",
        if failed_attempts.is_empty() {
            String::new()
        } else {
            format!(
                " (failed attempts: {})",
                failed_attempts
                    .iter()
                    .map(|(kind, n)| format!("{n} x {kind}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        secs(redis_cpu),
        secs(node_cpu),
        secs(own_cpu),
        tcp.map_or(String::new(), |t| format!(
            "; the machine's listen queue overflows {}, SYN retransmits {}",
            t.listen_overflows, t.syn_retransmits
        )),
    );
    if late_events > 0 {
        println!("{name}: {late_events} events came after their client's outcome");
    }
    let redis = bed
        .redis
        .as_ref()
        .map(|r| json!({"version": r.info.version, "pid": r.info.pid, "prefix": r.prefix}));
    let storm_secs = storm.as_secs_f64();
    let in_cores = |x: Option<f64>| x.filter(|_| storm_secs > 0.0).map(|x| r3(x / storm_secs));
    let settings = json!({
        "max_disconnection_ms": args.max_disconnection_ms,
        "connect_rate": args.connect_rate,
        "reconnect_rate": args.reconnect_rate,
        "retry_ms": args.retry_ms,
        "recover_secs": args.recover_secs,
        "settle_ms": args.settle_ms,
        "no_offset_percent": args.no_offset_percent,
    });
    let setup = json!({
        "open_secs": r3(open_secs),
        "handshake": handshake.to_json(),
        "with_offset": with_offset,
        "sessions_in_redis_at_kill": sessions,
        "dropped_before_kill": dropped_before_kill,
        "connections_ended": lost,
        "connections_ended_ms": ended.map(|d| r3(d.as_secs_f64() * 1e3)),
    });
    let cpu_secs = json!({
        "redis": redis_cpu.map(r3),
        "node": node_cpu.map(r3),
        "generator": own_cpu.map(r3),
        "others": r3(others),
    });
    let cores = json!({
        "redis": in_cores(redis_cpu),
        "node": in_cores(node_cpu),
        "generator": in_cores(own_cpu),
    });
    let failed_attempts: serde_json::Map<String, Value> = failed_attempts
        .into_iter()
        .map(|(kind, n)| (kind, json!(n)))
        .collect();
    Ok(json!({
        "scenario": SCENARIO,
        "target": TARGET.name(),
        "protocol": TARGET.protocol().name(),
        "available": true,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "nodes": 2,
        "redis": redis,
        "clients": n,
        "sources": sources,
        "missed_events": args.missed,
        "settings": settings,
        "setup": setup,
        "recovered": recovered,
        "not_recovered": not_recovered,
        "not_recovered_by_reason": reasons,
        "reconnected_without_offset": reconnected_without_offset,
        "recovered_without_offset": recovered_without_offset,
        "retried": retried,
        "failed_attempts": failed_attempts,
        "close_unseen": close_unseen,
        "late_events": late_events,
        "storm_secs": r3(storm_secs),
        "all_recovered_secs": all_recovered.map(|d| r3(d.as_secs_f64())),
        "recovery": per_client.to_json(),
        "cpu_secs": cpu_secs,
        "cores": cores,
        "listen_overflows": tcp.map(|t| t.listen_overflows),
        "syn_retransmits": tcp.map(|t| t.syn_retransmits),
    }))
}

/// The recovery sessions under the run's prefix in Redis, when it can tell.
async fn count_sessions(bed: &Bed, name: &str) -> Option<u64> {
    let redis = bed.redis.as_ref()?;
    match redis.count_keys(SESSION_KEYS).await {
        Ok(count) => Some(count),
        Err(e) => {
            eprintln!("{name}: cannot count the sessions in Redis: {e:#}");
            None
        }
    }
}

/// Like texts counted, most frequent first.
fn by_kind<'a>(texts: impl Iterator<Item = &'a String>) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for text in texts {
        match counts.iter_mut().find(|(kind, _)| kind == text) {
            Some((_, n)) => *n += 1,
            None => counts.push((text.clone(), 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_kind_most_frequent_first() {
        let texts: Vec<String> = ["HTTP 429", "ended", "HTTP 429", "HTTP 503", "HTTP 429"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            by_kind(texts.iter()),
            [
                ("HTTP 429".to_string(), 3),
                ("HTTP 503".to_string(), 1),
                ("ended".to_string(), 1),
            ]
        );
    }
}
