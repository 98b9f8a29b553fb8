//! `fanout` and `rooms`: subscribers spread over rooms, publishes at a fixed open-loop rate
//! for a few seconds per step, the rate stepped up until the 99th percentile of end-to-end
//! latency passes a limit, a message is lost, a subscriber is dropped or a publish fails.
//!
//! - `fanout`: one room of 10,000 subscribers, 100-byte events, from 4 publishes per second up
//!   by a quarter each step, until p99 passes 1 s (one publish to 10,000 subscribers is itself
//!   a wave of 10,000 writes, which on a small machine takes longer than 100 ms to reach the
//!   last subscriber, whatever the server); the ceiling (`bench/peers/ceiling`) is measured
//!   first, so that every server's figures read as a fraction of it;
//! - `rooms`: 10,000 subscribers in 1,000 rooms of 10, each publish to a room drawn at random,
//!   from 2,000 publishes per second up by a quarter each step, until p99 passes 100 ms;
//! - `cluster` ([`super::cluster`]): the fan-out's steps with 9,000 subscribers spread over the
//!   three nodes of a cluster.
//!
//! Two figures sum a ramp up: the highest delivery rate of a step whose p99 stayed within
//! `--target-p99-ms` (50 ms) with nothing lost, and the highest delivery rate sustained with
//! nothing lost and p99 within `--max-p99-ms` (the server's capacity). The sustained step is
//! run once more after the ramp, on servers started afresh with their subscribers opened and
//! warmed up again (the ramp ends by overloading them, and a repeat on the same processes ran
//! slower than the same step had in the ramp, long after their CPU was idle again: at 222
//! publishes/s to 10,000 subscribers, p99 779 ms in the ramp and 1,967 ms in the repeat), and
//! the figure is the repeat's (or, if it fails, the next lower step that holds twice): one
//! lucky step does not make a capacity. When the repeat holds, the same fresh servers climb
//! from it towards the next step (which failed in the ramp) in thirds of the ramp's factor,
//! each rate held twice in a row to count: the figure then reads to a third of a step, not a
//! whole one.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::step::{run_step, saturated_first, Step};
use super::{conclude, mib, r3, sample_json, server_sample, unavailable, Common};
use crate::publisher::{Publisher, Schedule};
use crate::swarm::Swarm;
use crate::target::{Bed, ClusterSpec, Target};
use crate::wire::Layout;

/// How many of the best steps are tried again, highest first, until one holds.
const CONFIRM_TRIES: usize = 3;
/// Before a repeat, the servers' CPU must fall below this many cores over one sample ...
const IDLE_CORES: f64 = 0.05;
/// ... of this long ...
const COOL_DOWN_SAMPLE: Duration = Duration::from_millis(500);
/// ... waiting at most this long.
const COOL_DOWN_LIMIT: Duration = Duration::from_secs(15);
/// Most warm-up phases run before the ramp, until one delivers everything.
const WARMUP_TRIES: usize = 3;
/// The confirmation climbs from the ramp's best rung to the next in this many parts (a rate
/// `factor^(1/FINER)` apart).
const FINER: u32 = 3;

/// Which of the ramps, with its defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Fanout,
    Rooms,
    Cluster,
}

struct Defaults {
    connections: usize,
    rooms: usize,
    start_rate: f64,
    factor: f64,
    steps: usize,
    lanes: usize,
    max_p99_ms: f64,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fanout => "fanout",
            Kind::Rooms => "rooms",
            Kind::Cluster => "cluster",
        }
    }

    fn defaults(self) -> Defaults {
        match self {
            Kind::Fanout => Defaults {
                connections: 10_000,
                rooms: 1,
                start_rate: 4.0,
                factor: 1.25,
                steps: 28,
                lanes: 4,
                max_p99_ms: 1000.0,
            },
            Kind::Cluster => Defaults {
                connections: 9_000,
                ..Kind::Fanout.defaults()
            },
            Kind::Rooms => Defaults {
                connections: 10_000,
                rooms: 1_000,
                start_rate: 2000.0,
                factor: 1.25,
                steps: 12,
                lanes: 8,
                max_p99_ms: 100.0,
            },
        }
    }
}

/// Options of `roomcast-bench fanout` and `roomcast-bench rooms`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// Subscribers. Default: 10000 (9000 in cluster).
    #[arg(long)]
    connections: Option<usize>,
    /// Rooms they are spread over. Default: 1 (fanout), 1000 (rooms).
    #[arg(long)]
    rooms: Option<usize>,
    /// Bytes of each event's data.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Publishes per second of the first step. Default: 4 (fanout, cluster), 2000 (rooms).
    #[arg(long)]
    start_rate: Option<f64>,
    /// Rate multiplier from one step to the next. Default: 1.25.
    #[arg(long)]
    factor: Option<f64>,
    /// Most steps. Default: 28 (fanout, cluster), 12 (rooms).
    #[arg(long)]
    steps: Option<usize>,
    /// Seconds of publishing per step.
    #[arg(long, default_value_t = 3.0)]
    step_secs: f64,
    /// Keep-alive HTTP connections publishing, the schedule dealt to them in turn. Default: 4
    /// (fanout, cluster), 8 (rooms).
    #[arg(long)]
    lanes: Option<usize>,
    /// The ramp stops after a step whose p99 exceeds this. Default: 1000 (fanout, cluster), 100
    /// (rooms).
    #[arg(long)]
    max_p99_ms: Option<f64>,
    /// The headline figure is the best step with a p99 at most this.
    #[arg(long, default_value_t = 50.0)]
    target_p99_ms: f64,
    /// Most seconds to wait for a step's last messages after its last publish.
    #[arg(long, default_value_t = 3.0)]
    drain_secs: f64,
}

/// The resolved settings of one run.
pub(super) struct Plan {
    kind: Kind,
    pub(super) connections: usize,
    pub(super) layout: Layout,
    size: usize,
    start_rate: f64,
    factor: f64,
    steps: usize,
    step: Duration,
    lanes: usize,
    max_p99: f64,
    target_p99: f64,
    pub(super) drain: Duration,
}

pub(crate) async fn run(kind: Kind, args: Args) -> Result<()> {
    run_with(kind, args, None).await
}

/// Runs the ramp of `kind` against every target, each one process or, with `cluster`, the
/// nodes of a cluster.
pub(crate) async fn run_with(kind: Kind, args: Args, cluster: Option<ClusterSpec>) -> Result<()> {
    let d = kind.defaults();
    let plan = Plan {
        kind,
        connections: args.connections.unwrap_or(d.connections),
        layout: Layout {
            rooms: args.rooms.unwrap_or(d.rooms).max(1),
        },
        size: args.size,
        start_rate: args.start_rate.unwrap_or(d.start_rate),
        factor: args.factor.unwrap_or(d.factor),
        steps: args.steps.unwrap_or(d.steps),
        step: Duration::from_secs_f64(args.step_secs),
        lanes: args.lanes.unwrap_or(d.lanes),
        max_p99: args.max_p99_ms.unwrap_or(d.max_p99_ms),
        target_p99: args.target_p99_ms,
        drain: Duration::from_secs_f64(args.drain_secs),
    };
    super::prepare()?;
    let common = &args.common;
    let mut targets = common.targets()?;
    if common.targets == "all" {
        match kind {
            Kind::Fanout => {
                targets.insert(0, Target::Ceiling);
                // What keeping history costs, beside the same server without it.
                if let Some(i) = targets.iter().position(|t| *t == Target::RoomcastNative) {
                    targets.insert(i + 1, Target::RoomcastNativeHistory);
                }
            }
            // One of Roomcast's protocols keeps the standard run short; `--targets` adds the
            // other. History kept in Redis, beside the same nodes without it.
            Kind::Cluster => {
                targets.retain(|t| *t != Target::RoomcastSocketIo);
                if let Some(i) = targets.iter().position(|t| *t == Target::RoomcastNative) {
                    targets.insert(i + 1, Target::RoomcastNativeHistory);
                }
            }
            Kind::Rooms => {}
        }
    }
    for target in targets {
        if target == Target::Ceiling && plan.layout.rooms > 1 {
            let reason = "the ceiling has no rooms: it sends every publish to every subscriber";
            common.save(&unavailable(kind.name(), target, reason))?;
            continue;
        }
        let sources = common.source_addrs();
        let started = match &cluster {
            None => Bed::start(target, &common.programs, &sources).await?,
            Some(cluster) => {
                Bed::start_cluster(target, &common.programs, &sources, cluster).await?
            }
        };
        let result = match started {
            Err(reason) => unavailable(kind.name(), target, &reason.0),
            Ok(mut bed) => {
                let mut swarm = common.swarm(&bed, plan.layout.rooms);
                let measured = measure(&plan, &mut bed, &mut swarm).await;
                let candidates = measured
                    .as_ref()
                    .map(|(_, c)| c.clone())
                    .unwrap_or_default();
                let ramp = conclude(kind.name(), measured.map(|(v, _)| v), swarm, bed).await?;
                if ramp.get("error").is_some() || candidates.is_empty() {
                    ramp
                } else {
                    // The sustained step again, on a server started afresh like the ramp's.
                    let fresh = match &cluster {
                        None => Bed::start(target, &common.programs, &sources).await?,
                        Some(cluster) => {
                            Bed::start_cluster(target, &common.programs, &sources, cluster).await?
                        }
                    };
                    match fresh {
                        Err(reason) => with_repeats(ramp, Err(reason.0)),
                        Ok(mut bed) => {
                            let mut swarm = common.swarm(&bed, plan.layout.rooms);
                            let confirmed = confirm(&plan, &candidates, &mut bed, &mut swarm).await;
                            let repeats = conclude(kind.name(), confirmed, swarm, bed).await?;
                            with_repeats(ramp, Ok(repeats))
                        }
                    }
                }
            }
        };
        common.save(&result)?;
    }
    Ok(())
}

/// A bed with its subscribers open and its publish path warmed up.
struct Ready {
    publisher: Publisher,
    opened: crate::swarm::SwarmOpened,
    start: crate::procfs::Sample,
    after_open: crate::procfs::Sample,
    per_conn: f64,
}

/// Opens the subscribers and warms the publish path up.
async fn get_ready(plan: &Plan, bed: &mut Bed, swarm: &mut Swarm) -> Result<Ready> {
    let name = plan.kind.name();
    let target = bed.target;
    let start = server_sample(bed)?;
    let opened = swarm.open(0..plan.connections).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_open = server_sample(bed)?;
    let per_conn = (after_open.rss_bytes as f64 - start.rss_bytes as f64) / opened.count as f64;
    println!(
        "{name} / {}: {} subscribers in {} rooms{} opened in {:.1} s ({} processes), rss {} \
         ({:.2} KiB per connection)",
        target.name(),
        opened.count,
        plan.layout.rooms,
        if bed.nodes.is_empty() {
            String::new()
        } else {
            format!(" on {} nodes", bed.nodes.len() + 1)
        },
        opened.secs,
        opened.processes,
        mib(after_open.rss_bytes),
        per_conn / 1024.0,
    );
    let room_names = (0..plan.layout.rooms)
        .map(|i| plan.layout.room_name(i))
        .collect();
    let publisher =
        Publisher::connect(bed.publish_api(), plan.lanes, room_names, plan.size).await?;

    // Phase 0 warms up the publish path (and Node's JIT); its figures are dropped. It runs
    // again until it delivers everything: a cluster node subscribes to the Redis channel when
    // its first subscriber arrives, and the ramp must not race that.
    for attempt in 1..=WARMUP_TRIES {
        let warm = Schedule::new(
            plan.start_rate,
            Duration::from_secs(1),
            plan.layout.rooms,
            plan.lanes,
            0,
        );
        let warm_step = run_step(plan, 0, plan.start_rate, &warm, &publisher, bed, swarm).await?;
        if warm_step.clean() {
            break;
        }
        eprintln!(
            "{name} / {}: warm-up {attempt} of {WARMUP_TRIES} lost messages",
            target.name()
        );
    }
    Ok(Ready {
        publisher,
        opened,
        start,
        after_open,
        per_conn,
    })
}

/// The ramp: the result line (its sustained figure from the ramp alone, see [`with_repeats`])
/// and the rates to confirm, highest first.
async fn measure(plan: &Plan, bed: &mut Bed, swarm: &mut Swarm) -> Result<(Value, Vec<f64>)> {
    let name = plan.kind.name();
    let target = bed.target;
    let Ready {
        publisher,
        opened,
        start,
        after_open,
        per_conn,
    } = get_ready(plan, bed, swarm).await?;
    let mut steps = Vec::new();
    let mut stopped = format!("all {} steps ran", plan.steps);
    let mut rate = plan.start_rate;
    // A step over the latency limit is run once more at the same rate before the ramp stops:
    // one pause (a garbage collection, a burst of timers) should not end it. A lost message,
    // a failed publish or a dropped subscriber ends it at once.
    let mut retried = false;
    let mut rates_done = 0;
    let mut phase = 0u32;
    while rates_done < plan.steps {
        phase += 1;
        let step = step_at(plan, phase, rate, &publisher, bed, swarm).await?;
        let latency = step.report.stats.latency();
        println!(
            "{name} / {}: {:>8.1} publishes/s -> {:>9.0} deliveries/s, {}; missing {}, out of \
             order {}, publish errors {}, dropped {}; server {:.2} cores, {}generator {:.2} \
             cores, others {:.2} cores",
            target.name(),
            rate,
            step.deliveries_per_sec,
            latency.text(),
            step.missing,
            step.report.stats.out_of_order,
            step.sent.errors,
            step.report.dropped,
            step.server_cpu / step.wall,
            step.redis_cpu.map_or(String::new(), |cpu| format!(
                "redis {:.2} cores, ",
                cpu / step.wall
            )),
            step.generator_cpu / step.wall,
            step.other_cpu / step.wall,
        );
        let stop = if !step.clean() {
            Some(format!(
                "{} not received, {} publish errors, {} connections dropped",
                step.missing, step.sent.errors, step.report.dropped
            ))
        } else if latency.p99 > plan.max_p99 {
            Some(format!(
                "p99 {:.1} ms passed {} ms{}",
                latency.p99,
                plan.max_p99,
                if retried { " twice" } else { "" }
            ))
        } else {
            None
        };
        let may_retry = step.clean() && !retried;
        steps.push(step);
        bed.ensure_running()?;
        match stop {
            Some(_) if may_retry => {
                println!("{name} / {}: once more at the same rate", target.name());
                retried = true;
            }
            Some(why) => {
                stopped = format!("at {rate:.1} publishes/s: {why}");
                break;
            }
            None => {
                retried = false;
                rates_done += 1;
                rate *= plan.factor;
            }
        }
    }
    println!("{name} / {}: stopped {stopped}", target.name());
    // Messages missing at the end of a step's drain may still have come: count them as late,
    // not lost.
    if steps.iter().any(|s| s.missing > 0) {
        tokio::time::sleep(plan.drain).await;
        for step in steps.iter_mut().filter(|s| s.missing > 0) {
            let report = swarm.report(step.phase).await?;
            step.late = (report.stats.received - report.stats.duplicates).min(step.missing);
        }
    }
    let secs = plan.step.as_secs_f64();
    let ramp: Vec<&Step> = steps.iter().collect();
    let saturated = saturated_first(&ramp, cores());
    let best_within = |limit: f64| {
        steps
            .iter()
            .filter(|s| s.clean() && s.report.stats.latency().p99 <= limit)
            .max_by(|a, b| a.deliveries_per_sec.total_cmp(&b.deliveries_per_sec))
    };
    let best = best_within(plan.target_p99).map(Step::json);
    let first_sustained = best_within(plan.max_p99).map(Step::json);
    let lost_below_saturation: u64 = steps
        .iter()
        .filter(|s| s.report.stats.latency().p99 <= plan.max_p99)
        .map(Step::lost)
        .sum();
    // The sustained step, or the next lower ones, to run again until one holds twice.
    let mut candidates: Vec<f64> = steps
        .iter()
        .filter(|s| s.clean() && s.report.stats.latency().p99 <= plan.max_p99)
        .map(|s| s.rate)
        .collect();
    candidates.sort_by(|a, b| b.total_cmp(a));
    candidates.dedup();
    candidates.truncate(CONFIRM_TRIES);
    let redis = bed
        .redis
        .as_ref()
        .map(|r| json!({"version": r.info.version, "pid": r.info.pid, "prefix": r.prefix}));
    let result = json!({
        "scenario": name,
        "target": target.name(),
        "protocol": target.protocol().name(),
        "available": true,
        "connections": opened.count,
        "nodes": bed.nodes.len() + 1,
        "redis": redis,
        "rooms": plan.layout.rooms,
        "size": plan.size,
        "step_secs": secs,
        "start_rate": plan.start_rate,
        "factor": plan.factor,
        "lanes": plan.lanes,
        "max_p99_ms": plan.max_p99,
        "target_p99_ms": plan.target_p99,
        "open_secs": r3(opened.secs),
        "fleet_processes": opened.processes,
        "handshake": opened.handshakes.to_json(),
        "server_start": sample_json(&start),
        "server_after_open": sample_json(&after_open),
        "rss_per_connection_bytes": per_conn.round(),
        "steps": steps.iter().map(Step::json).collect::<Vec<_>>(),
        "best": best,
        "sustained": first_sustained.clone(),
        "sustained_confirmed": false,
        "sustained_first_run": first_sustained,
        "saturated_first": saturated,
        "cores": cores(),
        "stopped": stopped,
        "lost_below_saturation": lost_below_saturation,
    });
    Ok((result, candidates))
}

/// Runs the rates of `candidates` again, highest first, on a server that has run nothing
/// else (the ramp's last steps overloaded the first one, which slows it long after its CPU
/// is idle again), until one holds: `{"sustained": step or null, "repeats": [steps]}`. When
/// the ramp's best holds, the rates between it and the next rung (which failed in the ramp)
/// are tried upwards in [`FINER`] steps, each held twice in a row to count, so that the
/// figure is not a rung of the ramp's ladder; the first that does not hold ends the climb,
/// the only overload this server sees.
async fn confirm(
    plan: &Plan,
    candidates: &[f64],
    bed: &mut Bed,
    swarm: &mut Swarm,
) -> Result<Value> {
    let name = plan.kind.name();
    let target = bed.target;
    let ready = get_ready(plan, bed, swarm).await?;
    let mut repeats = Vec::new();
    let mut sustained = None;
    let mut phase = 0u32;
    let mut held_best = false;
    for (i, &rate) in candidates.iter().enumerate() {
        if i > 0 {
            // A failed repeat overloaded this server too: let its backlog clear.
            cool_down(bed).await?;
        }
        phase += 1;
        let (holds, json) = try_rate(plan, phase, rate, "again", &ready, bed, swarm).await?;
        repeats.push(json.clone());
        if holds {
            sustained = Some(json);
            held_best = i == 0;
            break;
        }
    }
    if held_best {
        let best = candidates[0];
        'finer: for k in 1..FINER {
            let rate = best * plan.factor.powf(k as f64 / FINER as f64);
            let mut last = None;
            for _ in 0..2 {
                cool_down(bed).await?;
                phase += 1;
                let (holds, json) =
                    try_rate(plan, phase, rate, "between the rungs", &ready, bed, swarm).await?;
                repeats.push(json.clone());
                if !holds {
                    break 'finer;
                }
                last = Some(json);
            }
            sustained = last;
        }
    }
    if sustained.is_none() {
        println!(
            "{name} / {}: no step held twice; the sustained figure is the first run's",
            target.name()
        );
    }
    Ok(json!({"sustained": sustained, "repeats": repeats}))
}

/// One step at `rate` on the confirmation's server: whether it holds, and its line.
async fn try_rate(
    plan: &Plan,
    phase: u32,
    rate: f64,
    what: &str,
    ready: &Ready,
    bed: &mut Bed,
    swarm: &mut Swarm,
) -> Result<(bool, Value)> {
    let mut step = step_at(plan, phase, rate, &ready.publisher, bed, swarm).await?;
    step.repeat = true;
    let latency = step.report.stats.latency();
    let holds = step.clean() && latency.p99 <= plan.max_p99;
    println!(
        "{} / {}: {rate:>8.1} publishes/s {what}, on a fresh server -> {:>9.0} deliveries/s, \
         {}; {}",
        plan.kind.name(),
        bed.target.name(),
        step.deliveries_per_sec,
        latency.text(),
        if holds { "holds" } else { "does not hold" },
    );
    bed.ensure_running()?;
    Ok((holds, step.json()))
}

/// The ramp's result line with what its repeats found: their steps added, and the sustained
/// figure the repeat's when one held (the first run's otherwise); or why they could not run.
fn with_repeats(mut ramp: Value, repeats: Result<Value, String>) -> Value {
    match repeats {
        Ok(r) if r.get("error").is_none() => {
            if let (Some(steps), Some(more)) =
                (ramp["steps"].as_array_mut(), r["repeats"].as_array())
            {
                steps.extend(more.iter().cloned());
            }
            if !r["sustained"].is_null() {
                ramp["sustained"] = r["sustained"].clone();
                ramp["sustained_confirmed"] = json!(true);
            }
        }
        Ok(r) => ramp["repeat_error"] = r["error"].clone(),
        Err(reason) => ramp["repeat_error"] = json!(reason),
    }
    ramp
}

/// One step of the plan's length at `rate` publishes per second, as phase `phase`.
async fn step_at(
    plan: &Plan,
    phase: u32,
    rate: f64,
    publisher: &Publisher,
    bed: &mut Bed,
    swarm: &mut Swarm,
) -> Result<Step> {
    let schedule = Schedule::new(
        rate,
        plan.step,
        plan.layout.rooms,
        plan.lanes,
        u64::from(phase),
    );
    run_step(plan, phase, rate, &schedule, publisher, bed, swarm).await
}

/// The machine's cores, as the scheduler offers them to this process.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Waits until the servers are idle: less than [`IDLE_CORES`] of CPU over half a second,
/// at most [`COOL_DOWN_LIMIT`].
async fn cool_down(bed: &Bed) -> Result<()> {
    let began = std::time::Instant::now();
    let mut before = server_sample(bed)?.cpu;
    while began.elapsed() < COOL_DOWN_LIMIT {
        tokio::time::sleep(COOL_DOWN_SAMPLE).await;
        let now = server_sample(bed)?.cpu;
        let used = now.saturating_sub(before).as_secs_f64() / COOL_DOWN_SAMPLE.as_secs_f64();
        before = now;
        if used < IDLE_CORES {
            return Ok(());
        }
    }
    println!(
        "servers still busy after {} s; going on",
        COOL_DOWN_LIMIT.as_secs()
    );
    Ok(())
}
