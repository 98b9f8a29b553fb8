//! `idle`: what an idle subscriber costs each server in resident memory, at several
//! connection counts (10,000 and 19,000 by default). Each subscriber is authenticated and in
//! one room. The server's RSS is sampled after a warm-up (which pays the one-time growth of the
//! runtime, allocator arenas and maps) and at each checkpoint after the connections sat idle;
//! the cost per connection is the growth over the warm-up divided by the connections added.

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::{conclude, cpu_of, generator_pids, mib, r3, sample_json, unavailable, Common};
use crate::procfs;
use crate::swarm::Swarm;
use crate::target::Bed;

const SCENARIO: &str = "idle";

/// Options of `roomcast-bench idle`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// Connection counts at which memory is sampled, comma-separated, increasing.
    #[arg(long, value_delimiter = ',', default_value = "10000,19000")]
    checkpoints: Vec<usize>,
    /// Connections opened before the baseline sample.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Seconds the connections sit idle before each sample.
    #[arg(long, default_value_t = 2)]
    idle_secs: u64,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let mut last = 0;
    for &checkpoint in &args.checkpoints {
        if checkpoint <= args.warmup.max(last) {
            bail!(
                "--checkpoints must increase and exceed --warmup ({})",
                args.warmup
            );
        }
        last = checkpoint;
    }
    super::prepare()?;
    for target in args.common.targets()? {
        let result =
            match Bed::start(target, &args.common.programs, &args.common.source_addrs()).await? {
                Err(reason) => unavailable(SCENARIO, target, &reason.0),
                Ok(mut bed) => {
                    let mut swarm = args.common.swarm(&bed, 1);
                    let measured = measure(&args, &mut bed, &mut swarm).await;
                    conclude(SCENARIO, measured, swarm, bed).await?
                }
            };
        args.common.save(&result)?;
    }
    Ok(())
}

async fn measure(args: &Args, bed: &mut Bed, swarm: &mut Swarm) -> Result<Value> {
    let pid = bed.server.pid();
    let idle = Duration::from_secs(args.idle_secs);
    let start = procfs::sample(pid)?;
    swarm.open(0..args.warmup).await?;
    settle(idle, bed, swarm).await?;
    let baseline = procfs::sample(pid)?;
    let mut points = Vec::new();
    let mut opened_to = args.warmup;
    let target = bed.target;
    for &checkpoint in &args.checkpoints {
        let cpu_before = procfs::sample(pid)?.cpu;
        let opened = swarm.open(opened_to..checkpoint).await?;
        let cpu_open = procfs::sample(pid)?.cpu.saturating_sub(cpu_before);
        opened_to = checkpoint;
        settle(idle, bed, swarm).await?;
        let after = procfs::sample(pid)?;
        let per = (after.rss_bytes as f64 - baseline.rss_bytes as f64)
            / (checkpoint - args.warmup) as f64;
        println!(
            "{SCENARIO} / {}: {checkpoint} connections: rss {} ({:.2} KiB per connection over \
             the {}-connection baseline); opened {} in {:.1} s from {} processes, handshake {}",
            target.name(),
            mib(after.rss_bytes),
            per / 1024.0,
            args.warmup,
            opened.count,
            opened.secs,
            opened.processes,
            opened.handshakes.text(),
        );
        points.push(json!({
            "connections": checkpoint,
            "server": sample_json(&after),
            "per_connection_bytes": per.round(),
            "per_connection_kib": r3(per / 1024.0),
            "opened": opened.count,
            "open_secs": r3(opened.secs),
            "fleet_processes": swarm.pids().len(),
            "handshake": opened.handshakes.to_json(),
            "server_cpu_open_secs": r3(cpu_open.as_secs_f64()),
            "server_cpu_per_connect_us": r3(cpu_open.as_secs_f64() * 1e6 / opened.count.max(1) as f64),
        }));
    }
    Ok(json!({
        "scenario": SCENARIO,
        "target": target.name(),
        "protocol": target.protocol().name(),
        "available": true,
        "warmup": args.warmup,
        "idle_secs": args.idle_secs,
        "rooms_per_connection": 1,
        "server_start": sample_json(&start),
        "server_baseline": sample_json(&baseline),
        "points": points,
        "generator_cpu_secs": r3(cpu_of(&generator_pids(swarm)).as_secs_f64()),
    }))
}

/// Lets the connections sit idle, then checks that the server and all of them are still there.
async fn settle(idle: Duration, bed: &mut Bed, swarm: &mut Swarm) -> Result<()> {
    tokio::time::sleep(idle).await;
    bed.server.ensure_running()?;
    let (_, dropped) = swarm.count(0).await?;
    if dropped > 0 {
        bail!("the server ended {dropped} idle connections");
    }
    Ok(())
}
