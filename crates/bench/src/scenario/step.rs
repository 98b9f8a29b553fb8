//! One step of a ramp: publishing at one rate for a few seconds, waiting for the messages to
//! arrive, and what was seen, with the CPU time the server (every node of a cluster), the
//! cluster's Redis, the load generator and everything else on the machine spent meanwhile. Also which of server and generator ran out of CPU
//! first over a whole ramp.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{cpu_of, generator_pids, r3, server_sample};
use crate::procfs;
use crate::publisher::{Publisher, Schedule, Sent};
use crate::swarm::{Swarm, SwarmReport};
use crate::target::Bed;

use super::ramp::Plan;

/// One step's figures.
pub(super) struct Step {
    pub(super) phase: u32,
    pub(super) rate: f64,
    pub(super) sent: Sent,
    pub(super) expected: u64,
    pub(super) report: SwarmReport,
    /// Expected messages not received when the step's drain ended.
    pub(super) missing: u64,
    /// Of those, the ones that arrived later, before the end of the ramp.
    pub(super) late: u64,
    pub(super) deliveries_per_sec: f64,
    /// Summed over a cluster's nodes.
    pub(super) server_cpu: f64,
    /// The CPU time of the Redis a cluster shares, when it runs on this machine.
    pub(super) redis_cpu: Option<f64>,
    pub(super) generator_cpu: f64,
    /// CPU time of every other process on the machine, and time stolen by the hypervisor.
    pub(super) other_cpu: f64,
    pub(super) steal: f64,
    /// Wall time from the first publish to the end of the drain, over which CPU is counted.
    pub(super) wall: f64,
    pub(super) rss: u64,
    /// Run again at the rate of an earlier step, to confirm it.
    pub(super) repeat: bool,
}

impl Step {
    pub(super) fn clean(&self) -> bool {
        self.missing == 0 && self.sent.errors == 0 && self.report.dropped == 0
    }

    /// Messages never received.
    pub(super) fn lost(&self) -> u64 {
        self.missing - self.late
    }

    pub(super) fn json(&self) -> Value {
        let s = &self.report.stats;
        json!({
            "rate": r3(self.rate),
            "scheduled": self.sent.scheduled,
            "publish_ok": self.sent.ok(),
            "publish_errors": self.sent.errors,
            "first_publish_error": self.sent.first_error,
            "dispatch_lag_ms": r3(self.sent.dispatch_lag.as_secs_f64() * 1e3),
            "expected": self.expected,
            "received": s.received,
            "missing_at_drain": self.missing,
            "late": self.late,
            "lost": self.lost(),
            "out_of_order": s.out_of_order,
            "duplicates": s.duplicates,
            "dropped_connections": self.report.dropped,
            "first_drop": self.report.first_drop,
            "deliveries_per_sec": self.deliveries_per_sec.round(),
            "latency": s.latency().to_json(),
            "server_cpu_secs": r3(self.server_cpu),
            "server_cores": r3(self.server_cpu / self.wall),
            "server_cpu_us_per_delivery": r3(self.server_cpu * 1e6 / (s.received.max(1) as f64)),
            "generator_cpu_us_per_delivery":
                r3(self.generator_cpu * 1e6 / (s.received.max(1) as f64)),
            "redis_cpu_secs": self.redis_cpu.map(r3),
            "redis_cores": self.redis_cpu.map(|cpu| r3(cpu / self.wall)),
            "redis_cpu_us_per_delivery":
                self.redis_cpu.map(|cpu| r3(cpu * 1e6 / (s.received.max(1) as f64))),
            "generator_cores": r3(self.generator_cpu / self.wall),
            "other_cores": r3(self.other_cpu / self.wall),
            "steal_cores": r3(self.steal / self.wall),
            "server_rss_bytes": self.rss,
            "repeat": self.repeat,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_step(
    plan: &Plan,
    phase: u32,
    rate: f64,
    schedule: &Schedule,
    publisher: &Publisher,
    bed: &mut Bed,
    swarm: &mut Swarm,
) -> Result<Step> {
    let generator = generator_pids(swarm);
    let redis_pid = bed.redis.as_ref().and_then(|r| r.info.pid);
    let redis_cpu = || {
        redis_pid
            .and_then(|pid| procfs::sample(pid).ok())
            .map(|s| s.cpu)
    };
    let server_before = server_sample(bed)?.cpu;
    let redis_before = redis_cpu();
    let generator_before = cpu_of(&generator);
    let machine_before = procfs::machine_cpu()?;
    let began = Instant::now();
    let sent = publisher
        .run(phase, schedule, plan.drain + Duration::from_secs(5))
        .await;
    let expected: u64 = sent
        .ok_per_room
        .iter()
        .enumerate()
        .map(|(room, &ok)| ok * plan.layout.members(room, plan.connections))
        .sum();
    drain(swarm, phase, expected, plan.drain).await?;
    let wall = began.elapsed().as_secs_f64();
    let server_after = server_sample(bed)?;
    let redis_cpu = match (redis_before, redis_cpu()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let generator_cpu = cpu_of(&generator).saturating_sub(generator_before);
    let machine_after = procfs::machine_cpu()?;
    let server_cpu = server_after.cpu.saturating_sub(server_before);
    let other_cpu = machine_after
        .busy
        .saturating_sub(machine_before.busy)
        .saturating_sub(server_cpu + generator_cpu + redis_cpu.unwrap_or_default());
    let report = swarm.report(phase).await?;
    let unique = report.stats.received - report.stats.duplicates;
    let missing = expected.saturating_sub(unique);
    Ok(Step {
        phase,
        rate,
        deliveries_per_sec: unique as f64 / schedule.duration().as_secs_f64(),
        sent,
        expected,
        report,
        missing,
        late: 0,
        server_cpu: server_cpu.as_secs_f64(),
        redis_cpu: redis_cpu.map(|cpu| cpu.as_secs_f64()),
        generator_cpu: generator_cpu.as_secs_f64(),
        other_cpu: other_cpu.as_secs_f64(),
        steal: machine_after
            .steal
            .saturating_sub(machine_before.steal)
            .as_secs_f64(),
        wall,
        rss: server_after.rss_bytes,
        repeat: false,
    })
}

/// Waits until the swarm has received `expected` messages of `phase`, or they stop coming for
/// a second, or `limit` has passed.
pub(super) async fn drain(
    swarm: &mut Swarm,
    phase: u32,
    expected: u64,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = (u64::MAX, Instant::now());
    loop {
        let (received, _) = swarm.count(phase).await?;
        let now = Instant::now();
        if received >= expected || now >= deadline {
            return Ok(());
        }
        if received != last.0 {
            last = (received, now);
        } else if now - last.1 > Duration::from_secs(1) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which side ran out of CPU first over a ramp's `steps` (in rate order), on a machine of
/// `cores` cores: for server and generator, the first step at which its CPU reached 90 % of
/// the most it used in any step (where it stopped growing with the rate); the side that got
/// there at a lower rate saturated first. When the machine still had a fifth of its CPU idle
/// at the last step, neither did: the ramp stopped on latency.
pub(super) fn saturated_first(steps: &[&Step], cores: f64) -> Value {
    let Some(last) = steps.last() else {
        return json!({"side": "unknown", "why": "no steps"});
    };
    let busy =
        (last.server_cpu + last.redis_cpu.unwrap_or(0.0) + last.generator_cpu + last.other_cpu)
            / last.wall;
    if busy < 0.8 * cores {
        return json!({
            "side": "neither",
            "why": format!("{busy:.2} of {cores} cores busy at the last step"),
        });
    }
    let plateau = |cores_of: &dyn Fn(&Step) -> f64| {
        let most = steps.iter().map(|s| cores_of(s)).fold(0.0, f64::max);
        let at = steps
            .iter()
            .position(|s| cores_of(s) >= 0.9 * most)
            .unwrap_or(steps.len() - 1);
        (at, most)
    };
    let (server_at, server_most) = plateau(&|s: &Step| s.server_cpu / s.wall);
    let (generator_at, generator_most) = plateau(&|s: &Step| s.generator_cpu / s.wall);
    let side = match server_at.cmp(&generator_at) {
        std::cmp::Ordering::Less => "server",
        std::cmp::Ordering::Greater => "generator",
        std::cmp::Ordering::Equal => "both",
    };
    json!({
        "side": side,
        "why": format!(
            "server at {:.1} publishes/s ({server_most:.2} cores at most), generator at {:.1} \
             publishes/s ({generator_most:.2} cores at most); {busy:.2} of {cores} cores busy \
             at the last step",
            steps[server_at].rate, steps[generator_at].rate,
        ),
    })
}
