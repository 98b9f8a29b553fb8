//! `churn`: connections opened, authenticated and closed as fast as a fixed number of workers
//! can, for a few seconds. Each cycle connects (from the loopback source addresses in turn),
//! presents a fresh HS256 token (in the URL for the native protocol, in the Socket.IO connect
//! for the others, where the peers check it too), waits until the subscriber is in its room,
//! then closes with a close handshake. It reports connects and disconnects per second, the
//! handshake latency and the server's CPU time per connection.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{failed, mib, r3, sample_json, unavailable, Common};
use crate::procfs;
use crate::stats::{Latency, Recorder};
use crate::sub::SubDialer;
use crate::target::{with_server_output, Bed};
use crate::wire::{Layout, Tokens};
use crate::worker::TOKEN_TTL;

const SCENARIO: &str = "churn";
/// Time allowed for one handshake or one close.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of `roomcast-bench churn`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// Seconds of churn.
    #[arg(long, default_value_t = 8.0)]
    secs: f64,
    /// Workers, each opening and closing one connection after the other.
    #[arg(long, default_value_t = 32)]
    workers: usize,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    super::prepare()?;
    let common = &args.common;
    for target in common.targets()? {
        let result = match Bed::start(target, &common.programs, &common.source_addrs()).await? {
            Err(reason) => unavailable(SCENARIO, target, &reason.0),
            Ok(mut bed) => {
                let measured = measure(&args, &bed).await;
                let measured = measured.map_err(|e| with_server_output(e, &mut bed));
                bed.stop().await?;
                match measured {
                    Ok(result) => result,
                    Err(e) => failed(SCENARIO, target, &e),
                }
            }
        };
        common.save(&result)?;
    }
    Ok(())
}

/// Counts shared by the workers.
#[derive(Default)]
struct Counts {
    connects: AtomicU64,
    disconnects: AtomicU64,
    failures: AtomicU64,
    /// std mutexes: held for one record, never across an `.await`.
    first_failure: Mutex<Option<String>>,
    handshakes: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl Counts {
    fn fail(&self, message: String) {
        if self.failures.fetch_add(1, Ordering::Relaxed) == 0 {
            if let Ok(mut first) = self.first_failure.lock() {
                *first = Some(message);
            }
        }
    }
}

async fn measure(args: &Args, bed: &Bed) -> Result<Value> {
    let target = bed.target;
    let pid = bed.server.pid();
    let dialer = Arc::new(SubDialer {
        protocol: target.protocol(),
        servers: vec![bed.server.addr()],
        tokens: Tokens::new(&bed.secret, Layout { rooms: 1 }, TOKEN_TTL),
        sources: args.common.source_addrs(),
        recorder: Arc::new(Recorder::default()),
    });
    let counts = Arc::new(Counts {
        handshakes: Mutex::new(Some(Latency::histogram())),
        ..Counts::default()
    });
    let next_id = Arc::new(AtomicUsize::new(0));
    let before = procfs::sample(pid)?;
    let machine_before = procfs::machine_cpu()?;
    let own_before = procfs::sample(std::process::id())?.cpu;
    let began = Instant::now();
    let deadline = began + Duration::from_secs_f64(args.secs);
    let mut workers = JoinSet::new();
    for _ in 0..args.workers.max(1) {
        let (dialer, counts, next_id) = (dialer.clone(), counts.clone(), next_id.clone());
        workers.spawn(async move {
            while Instant::now() < deadline {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let mut ws = match tokio::time::timeout(STEP_TIMEOUT, dialer.open(id)).await {
                    Ok(Ok(ws)) => ws,
                    Ok(Err(e)) => {
                        counts.fail(e.to_string());
                        // A refused connect is not retried at full speed.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    Err(_) => {
                        counts.fail("handshake timeout".into());
                        continue;
                    }
                };
                let micros = (started.elapsed().as_micros() as u64).max(1);
                if let Ok(mut hist) = counts.handshakes.lock() {
                    if let Some(hist) = hist.as_mut() {
                        hist.saturating_record(micros);
                    }
                }
                counts.connects.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout(STEP_TIMEOUT, ws.close()).await {
                    Ok(Ok(())) => {
                        counts.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => counts.fail(format!("close: {e}")),
                    Err(_) => counts.fail("close timeout".into()),
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = began.elapsed().as_secs_f64();
    let after = procfs::sample(pid)?;
    let own = procfs::sample(std::process::id())?
        .cpu
        .saturating_sub(own_before);
    let machine = procfs::machine_cpu()?
        .busy
        .saturating_sub(machine_before.busy);
    let others = machine
        .saturating_sub(after.cpu.saturating_sub(before.cpu) + own)
        .as_secs_f64();
    let connects = counts.connects.load(Ordering::Relaxed);
    let disconnects = counts.disconnects.load(Ordering::Relaxed);
    let failures = counts.failures.load(Ordering::Relaxed);
    let first_failure = counts.first_failure.lock().ok().and_then(|f| f.clone());
    let handshakes = counts
        .handshakes
        .lock()
        .ok()
        .and_then(|h| h.as_ref().map(Latency::of))
        .unwrap_or_default();
    let cpu = after.cpu.saturating_sub(before.cpu).as_secs_f64();
    println!(
        "{SCENARIO} / {}: {:.0} connects/s, {:.0} disconnects/s ({connects} cycles in {elapsed:.1} \
         s, {} workers), handshake {}; {failures} failures; server {:.2} cores, {:.0} us CPU per \
         connection, rss {} -> {}",
        target.name(),
        connects as f64 / elapsed,
        disconnects as f64 / elapsed,
        args.workers,
        handshakes.text(),
        cpu / elapsed,
        cpu * 1e6 / connects.max(1) as f64,
        mib(before.rss_bytes),
        mib(after.rss_bytes),
    );
    Ok(json!({
        "scenario": SCENARIO,
        "target": target.name(),
        "protocol": target.protocol().name(),
        "available": true,
        "secs": r3(elapsed),
        "workers": args.workers,
        "connects": connects,
        "disconnects": disconnects,
        "connects_per_sec": (connects as f64 / elapsed).round(),
        "disconnects_per_sec": (disconnects as f64 / elapsed).round(),
        "failures": failures,
        "first_failure": first_failure,
        "handshake": handshakes.to_json(),
        "server_cpu_secs": r3(cpu),
        "server_cores": r3(cpu / elapsed),
        "generator_cores": r3(own.as_secs_f64() / elapsed),
        "other_cores": r3(others / elapsed),
        "server_cpu_us_per_connection": r3(cpu * 1e6 / connects.max(1) as f64),
        "server_before": sample_json(&before),
        "server_after": sample_json(&after),
    }))
}
