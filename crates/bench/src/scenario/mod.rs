//! The scenarios that measure every target the same way, and what they share: the options
//! naming the targets and the load generator's resources, CPU and memory samples of the server
//! and of the generator itself, and one JSON line per target appended to the results file
//! that `roomcast-bench report` turns into `BENCHMARKS.md`.

pub(crate) mod churn;
pub(crate) mod cluster;
pub(crate) mod idle;
pub(crate) mod inbox;
pub(crate) mod ingest;
pub(crate) mod ramp;
pub(crate) mod recovery;
pub(crate) mod rpc;
mod step;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::capacity;
use crate::procfs::{self, Sample};
use crate::swarm::{Swarm, SwarmSpec};
use crate::target::{loopback_sources, parse_targets, with_server_output, Bed, Programs, Target};

/// Options every multi-target scenario takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Common {
    /// Servers to measure: `all`, or a comma-separated list of roomcast-native,
    /// roomcast-socketio, socketioxide, node-socketio, ceiling (`all` takes the ceiling in
    /// `fanout` only, and leaves roomcast-socketio out of `cluster`).
    #[arg(long, default_value = "all")]
    pub(crate) targets: String,
    #[command(flatten)]
    pub(crate) programs: Programs,
    /// Loopback source addresses to connect from: 127.0.0.1 to 127.0.0.N.
    #[arg(long, default_value_t = 4)]
    pub(crate) sources: usize,
    /// Most subscribers per fleet process (a process may hold about 20,000 open files).
    #[arg(long, default_value_t = 19_000)]
    pub(crate) per_process: usize,
    /// Subscriber connection attempts started per second.
    #[arg(long, default_value_t = 2500.0)]
    pub(crate) connect_rate: f64,
    /// Most subscriber handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub(crate) in_flight: usize,
    /// Seconds allowed for one subscriber's handshake.
    #[arg(long, default_value_t = 15)]
    pub(crate) timeout_secs: u64,
    /// Append each target's result as one JSON line to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) results: Option<PathBuf>,
}

impl Common {
    pub(crate) fn targets(&self) -> Result<Vec<Target>> {
        parse_targets(&self.targets).map_err(anyhow::Error::msg)
    }

    pub(crate) fn source_addrs(&self) -> Vec<IpAddr> {
        loopback_sources(self.sources)
    }

    /// A swarm of subscribers for the started `bed`.
    pub(crate) fn swarm(&self, bed: &Bed, rooms: usize) -> Swarm {
        Swarm::new(SwarmSpec {
            protocol: bed.target.protocol(),
            servers: bed.addrs(),
            rooms,
            secret: bed.secret.clone(),
            rate: self.connect_rate,
            in_flight: self.in_flight,
            timeout: Duration::from_secs(self.timeout_secs),
            sources: self.source_addrs(),
            per_process: self.per_process,
        })
    }

    /// Appends `result` to the results file, if one was given.
    pub(crate) fn save(&self, result: &Value) -> Result<()> {
        save(self.results.as_deref(), result)
    }
}

/// Appends `result` as one JSON line to the results file `path`, if one was given.
pub(crate) fn save(path: Option<&Path>, result: &Value) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(file, "{result}").with_context(|| format!("cannot write {}", path.display()))
}

/// Raises this process's open-file limit (fleet processes inherit it) and gives it.
pub(crate) fn prepare() -> Result<capacity::FdLimit> {
    let limit = capacity::raise_nofile_limit()?;
    if let Some(old) = limit.raised_from {
        eprintln!("open-file limit raised from {old} to {}", limit.soft);
    }
    Ok(limit)
}

/// The result line of a target that could not be measured.
pub(crate) fn unavailable(scenario: &str, target: Target, reason: &str) -> Value {
    println!("{scenario} / {}: not available: {reason}", target.name());
    json!({
        "scenario": scenario,
        "target": target.name(),
        "available": false,
        "reason": reason,
    })
}

/// The result line of a target whose run failed.
pub(crate) fn failed(scenario: &str, target: Target, error: &anyhow::Error) -> Value {
    println!("{scenario} / {}: FAILED: {error:#}", target.name());
    json!({
        "scenario": scenario,
        "target": target.name(),
        "available": true,
        "error": format!("{error:#}"),
    })
}

/// Ends a measurement with subscribers: closes them, stops the server and gives the result
/// line, with how the subscribers closed or, on failure, the server's last output.
pub(crate) async fn conclude(
    scenario: &str,
    measured: Result<Value>,
    swarm: Swarm,
    mut bed: Bed,
) -> Result<Value> {
    let target = bed.target;
    let measured = measured.map_err(|e| with_server_output(e, &mut bed));
    let closed = swarm.close().await;
    bed.stop().await?;
    Ok(match measured {
        Ok(mut result) => {
            result["closed"] = json!({"clean": closed.clean, "failed": closed.failed,
                "ended_by_server": closed.dropped});
            result
        }
        Err(e) => failed(scenario, target, &e),
    })
}

/// The server's processes (every node of a cluster) as one: memory, CPU time and threads
/// summed.
pub(crate) fn server_sample(bed: &Bed) -> Result<Sample> {
    let mut sum = procfs::sample(bed.server.pid())?;
    for node in &bed.nodes {
        let s = procfs::sample(node.pid())?;
        sum.rss_bytes += s.rss_bytes;
        sum.peak_rss_bytes += s.peak_rss_bytes;
        sum.cpu += s.cpu;
        sum.threads += s.threads;
    }
    Ok(sum)
}

/// CPU time of a set of processes (the load generator's).
pub(crate) fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter()
        .filter_map(|&pid| procfs::sample(pid).ok())
        .map(|s| s.cpu)
        .sum()
}

/// The generator's processes: this one and the fleets.
pub(crate) fn generator_pids(swarm: &Swarm) -> Vec<u32> {
    let mut pids = swarm.pids();
    pids.push(std::process::id());
    pids
}

/// A sample as JSON.
pub(crate) fn sample_json(s: &Sample) -> Value {
    json!({
        "rss_bytes": s.rss_bytes,
        "peak_rss_bytes": s.peak_rss_bytes,
        "cpu_secs": s.cpu.as_secs_f64(),
        "threads": s.threads,
    })
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Rounds to three decimals for the results file.
pub(crate) fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A native client of user `id` of the benchmark's tenant, auto-joined to `room` (the
/// server's `auto_join` is `["{room}"]`), connected from 127.0.0.1 to `server` and welcomed.
pub(crate) async fn welcomed_native(
    server: std::net::SocketAddr,
    secret: &str,
    id: usize,
    room: &str,
) -> Result<crate::wsconn::WsConn> {
    let claims = json!({"sub": id.to_string(), "tenant_id": crate::wire::TENANT, "room": room});
    welcomed(server, secret, claims).await
}

/// A native client presenting a token of `claims` (and an hour's `exp`), signed with `secret`,
/// connected from 127.0.0.1 to `server` and welcomed.
pub(crate) async fn welcomed(
    server: std::net::SocketAddr,
    secret: &str,
    mut claims: Value,
) -> Result<crate::wsconn::WsConn> {
    claims["exp"] = json!(crate::wire::unix_now().as_secs() + 3600);
    let who = claims["sub"].as_str().unwrap_or("?").to_owned();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("sign a token")?;
    let localhost = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let mut ws = crate::sub::connect(server, localhost, &format!("/ws?token={token}"))
        .await
        .map_err(|e| anyhow::anyhow!("client {who}: {e}"))?;
    let welcome = ws.next_text().await?;
    if !welcome.contains("\"welcome\"") {
        anyhow::bail!("client {who}: {welcome}");
    }
    Ok(ws)
}
