//! The `memory` scenario: what one idle native WebSocket connection costs the server in
//! resident memory. It samples the server's RSS after a warm-up (which pays for the runtime's
//! one-time growth: worker stacks, allocator arenas, map capacity) and again after all N
//! connections are open and idle, and divides the difference by the connections in between.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;

use crate::capacity;
use crate::client::{Identities, NativeDialer};
use crate::fleet::{Closed, Fleet, Opened, Pace};
use crate::procfs::{self, Sample};
use crate::server::ServerProcess;

/// The per-connection budget the result is compared with, in KiB.
const TARGET_KIB: f64 = 8.0;
/// Lifetime of the clients' tokens: longer than any run.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Time allowed for the server to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Rooms each connection joins on connect, one per `auto_join` template below.
const AUTO_JOIN: &str = r#"["user:{sub}","tenant:{tenant_id}","group:{group}"]"#;

/// Options of `roomcast-bench memory`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The roomcast binary to measure. Default: target/release/roomcast in this workspace.
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// Connections to open in all, the warm-up included.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connection attempts started per second.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Most handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
    /// Tenants the users are spread over.
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Connections opened before the baseline sample.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Seconds the connections sit idle before each RSS sample.
    #[arg(long, default_value_t = 2)]
    idle_secs: u64,
    /// Seconds allowed for one connection's handshake and welcome.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

impl Args {
    fn validate(&self) -> Result<()> {
        if self.connections <= self.warmup {
            bail!(
                "--connections ({}) must be more than --warmup ({})",
                self.connections,
                self.warmup
            );
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("--rate must be a positive number of connections per second");
        }
        if self.in_flight == 0 || self.tenants == 0 || self.timeout_secs == 0 {
            bail!("--in-flight, --tenants and --timeout-secs must be at least 1");
        }
        Ok(())
    }
}

/// The samples and counts one run collects.
#[derive(Debug)]
struct Measured {
    /// The server's process id.
    pid: u32,
    /// The server before any connection.
    start: Sample,
    /// After the warm-up connections, idle.
    baseline: Sample,
    /// After all connections, idle.
    after: Sample,
    /// The connections opened after the baseline.
    opened: Opened,
}

/// Runs the scenario and prints its report.
pub(crate) async fn run(args: Args, json: bool) -> Result<()> {
    args.validate()?;
    let limit = capacity::raise_nofile_limit()?;
    if let Some(old) = limit.raised_from {
        eprintln!(
            "open-file limit of this process raised from {old} to {}",
            limit.soft
        );
    }
    capacity::check_connections_fit(args.connections, limit)?;

    let bin = args.server_bin.clone().unwrap_or_else(default_server_bin);
    let secret = random_text();
    let env = [
        ("ROOMCAST_LISTEN", "127.0.0.1:0".to_string()),
        ("ROOMCAST_JWT_SECRET", secret.clone()),
        ("ROOMCAST_API_KEY", random_text()),
        (
            "ROOMCAST_LIMITS__MAX_CONNECTIONS",
            args.connections.max(100_000).to_string(),
        ),
        ("ROOMCAST_ROOMS__AUTO_JOIN", AUTO_JOIN.to_string()),
        ("ROOMCAST_LOG__LEVEL", "warn".to_string()),
    ];
    eprintln!("starting {}", bin.display());
    let mut server = ServerProcess::start(&bin, &env, START_TIMEOUT).await?;
    eprintln!("server pid {} listening on {}", server.pid(), server.addr());

    let pace = Pace {
        rate: args.rate,
        in_flight: args.in_flight,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let dialer = NativeDialer::new(
        server.addr(),
        Identities::new(&secret, args.tenants, TOKEN_TTL),
    );
    let mut fleet = Fleet::new(dialer, pace);
    let measured = measure(&args, &mut server, &mut fleet).await;
    eprintln!("closing the connections");
    let closed = fleet.close(Duration::from_secs(10)).await;
    // The server's state and last words are the first thing to read when a run goes wrong.
    let measured = measured.map_err(|e| {
        let state = match server.ensure_running() {
            Ok(()) => String::new(),
            Err(exited) => format!("\n{exited:#}"),
        };
        anyhow!("{e:#}{state}{}", server.output_report())
    });
    let (output_lines, _) = server.output_tail();
    let output = server.output_report();
    if let Err(e) = server.kill().await {
        eprintln!("warning: {e:#}");
    }
    let measured = measured?;

    if output_lines > 0 {
        eprintln!("note: the server wrote {output_lines} lines at log level warn:{output}");
    }
    let report = Report {
        args: &args,
        bin: &bin,
        measured: &measured,
        closed,
        output_lines,
    };
    print!("{}", report.text());
    if json {
        println!("{}", report.json());
    }
    Ok(())
}

async fn measure(
    args: &Args,
    server: &mut ServerProcess,
    fleet: &mut Fleet<NativeDialer>,
) -> Result<Measured> {
    let pid = server.pid();
    let idle = Duration::from_secs(args.idle_secs);
    let start = procfs::sample(pid)?;

    eprintln!("warm-up: opening {} connections", args.warmup);
    fleet.open(0..args.warmup).await.context("warm-up")?;
    settle(idle, server, fleet).await?;
    let baseline = procfs::sample(pid)?;

    let more = args.connections - args.warmup;
    eprintln!(
        "opening {more} more connections, at most {} per second",
        args.rate
    );
    let opened = fleet.open(args.warmup..args.connections).await?;
    settle(idle, server, fleet).await?;
    let after = procfs::sample(pid)?;
    Ok(Measured {
        pid,
        start,
        baseline,
        after,
        opened,
    })
}

/// Lets the connections sit idle for `idle`, then checks that the server and all of them are
/// still there, so that a sample never counts a half-torn-down state.
async fn settle(
    idle: Duration,
    server: &mut ServerProcess,
    fleet: &Fleet<NativeDialer>,
) -> Result<()> {
    eprintln!("idle for {} s", idle.as_secs());
    tokio::time::sleep(idle).await;
    server.ensure_running()?;
    let (dropped, first) = fleet.drops();
    if dropped > 0 {
        bail!(
            "the server ended {dropped} idle connections; the first: {}",
            first.unwrap_or_default()
        );
    }
    Ok(())
}

/// `target/release/roomcast` in the workspace this crate was built from.
fn default_server_bin() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    workspace.join("target/release/roomcast")
}

/// A throwaway secret: 48 alphanumeric characters, about 285 bits.
fn random_text() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 48)
}

/// What a run prints.
struct Report<'a> {
    args: &'a Args,
    bin: &'a Path,
    measured: &'a Measured,
    closed: Closed,
    output_lines: usize,
}

impl Report<'_> {
    /// Bytes of RSS per connection opened after the baseline.
    fn per_connection(&self) -> f64 {
        let m = self.measured;
        let delta = m.after.rss_bytes as f64 - m.baseline.rss_bytes as f64;
        delta / (self.args.connections - self.args.warmup) as f64
    }

    fn text(&self) -> String {
        let (a, m, c) = (self.args, self.measured, self.closed);
        let per = self.per_connection();
        let open_secs = m.opened.elapsed.as_secs_f64();
        let cpu_open = m.after.cpu.saturating_sub(m.baseline.cpu);
        let verdict = if per / 1024.0 <= TARGET_KIB {
            "within"
        } else {
            "OVER"
        };
        let lines = [
            format!(
                "roomcast memory: {} connections ({} warm-up), {} tenants, 3 rooms each, idle {} s",
                a.connections, a.warmup, a.tenants, a.idle_secs
            ),
            format!("server           {} (pid {})", self.bin.display(), m.pid),
            format!(
                "opened           {} after the baseline in {open_secs:.2} s ({:.0}/s); \
                 handshake p50 {}, p99 {}, max {}",
                m.opened.count,
                m.opened.count as f64 / open_secs.max(f64::EPSILON),
                ms(percentile(&m.opened.latencies, 0.50)),
                ms(percentile(&m.opened.latencies, 0.99)),
                ms(percentile(&m.opened.latencies, 1.0)),
            ),
            format!("rss at start     {} (no connections)", mib(m.start.rss_bytes)),
            format!("rss baseline     {} ({} connections)", mib(m.baseline.rss_bytes), a.warmup),
            format!("rss after        {} ({} connections)", mib(m.after.rss_bytes), a.connections),
            format!("rss peak         {}", mib(m.after.peak_rss_bytes)),
            format!(
                "per connection   {per:.0} bytes = {:.2} KiB ({verdict} the {TARGET_KIB} KiB target)",
                per / 1024.0
            ),
            format!(
                "server cpu       {:.2} s in all; {:.2} s while opening {} connections ({:.0} us each)",
                m.after.cpu.as_secs_f64(),
                cpu_open.as_secs_f64(),
                m.opened.count,
                cpu_open.as_secs_f64() * 1e6 / m.opened.count.max(1) as f64,
            ),
            format!("server threads   {}", m.after.threads),
            format!(
                "closed           {} cleanly, {} failed, {} ended by the server; server log lines {}",
                c.clean, c.failed, c.dropped, self.output_lines
            ),
        ];
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    fn json(&self) -> serde_json::Value {
        let (a, m, c) = (self.args, self.measured, self.closed);
        let per = self.per_connection();
        let latencies = &m.opened.latencies;
        json!({
            "scenario": "memory",
            "connections": a.connections,
            "warmup": a.warmup,
            "tenants": a.tenants,
            "idle_secs": a.idle_secs,
            "rss_start_bytes": m.start.rss_bytes,
            "rss_baseline_bytes": m.baseline.rss_bytes,
            "rss_after_bytes": m.after.rss_bytes,
            "rss_peak_bytes": m.after.peak_rss_bytes,
            "per_connection_bytes": per.round(),
            "per_connection_kib": (per / 1024.0 * 100.0).round() / 100.0,
            "target_kib": TARGET_KIB,
            "within_target": per / 1024.0 <= TARGET_KIB,
            "server_cpu_secs": m.after.cpu.as_secs_f64(),
            "server_cpu_open_secs": m.after.cpu.saturating_sub(m.baseline.cpu).as_secs_f64(),
            "server_threads": m.after.threads,
            "opened": m.opened.count,
            "open_secs": m.opened.elapsed.as_secs_f64(),
            "handshake_ms": {
                "p50": millis(percentile(latencies, 0.50)),
                "p99": millis(percentile(latencies, 0.99)),
                "max": millis(percentile(latencies, 1.0)),
            },
            "closed": { "clean": c.clean, "failed": c.failed, "ended_by_server": c.dropped },
            "server_log_lines": self.output_lines,
        })
    }
}

/// The `q` quantile (0 to 1) of `sorted`, zero when it is empty.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Milliseconds to the microsecond.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", millis(d))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
