//! `ingest`: RabbitMQ ingestion. Roomcast (one node, native clients) consumes a queue of its
//! own on the RabbitMQ at `--amqp`, with one rule that publishes every message to one room,
//! which `--clients` subscribers are in. Messages are published with lapin, as a backend
//! would, each carrying its send time; every subscriber reads them back.
//!
//! Two phases: a steady rate (`--rate` messages per second for `--secs`), for the end-to-end
//! latency from the publish to RabbitMQ to the delivery, p50 and p99; then a burst of
//! `--burst` messages published as fast as the publisher's confirmations allow, for the
//! sustained rate: messages per second from the first publish until the last subscriber has
//! the last message. The server's CPU time per message is taken over the burst. The exchange
//! and queues are the run's own, deleted at the end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use hdrhistogram::Histogram;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{r3, save, welcomed_native};
use crate::procfs;
use crate::server::{Launch, ServerProcess};
use crate::stats::Latency;
use crate::target::{random_text, Programs};
use crate::wire::{self, find_tick, tick_data, Tick, TENANT};

const SCENARIO: &str = "ingest";
const TARGET: &str = "roomcast-native";
/// The room every subscriber is in.
const ROOM: &str = "feed";
/// Time allowed for the last messages of a phase to arrive.
const DRAIN: Duration = Duration::from_secs(30);

/// Options of `roomcast-bench ingest`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    programs: Programs,
    /// The RabbitMQ: `amqp://user:password@host:port/vhost`.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// Subscribers of the one room.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Messages per second of the steady phase.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of the steady phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Messages of the burst.
    #[arg(long, default_value_t = 50_000)]
    burst: u64,
    /// Bytes of each message's data.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Append the result as one JSON line to this file.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
}

/// What the subscribers received, per phase.
#[derive(Default)]
struct Received {
    count: [AtomicU64; 3],
    latency: Mutex<Option<[Histogram<u64>; 3]>>,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let result = match measure(&args).await {
        Ok(result) => result,
        Err(e) => {
            eprintln!("ingest: {e:#}");
            json!({"scenario": SCENARIO, "target": TARGET, "error": format!("{e:#}")})
        }
    };
    save(args.results.as_deref(), &result)
}

async fn measure(args: &Args) -> Result<Value> {
    let amqp = match tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&args.amqp, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return Ok(unavailable(&format!("no RabbitMQ at {}: {e}", args.amqp))),
        Err(_) => return Ok(unavailable(&format!("no RabbitMQ at {}", args.amqp))),
    };
    let channel = amqp.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let name = format!("rc-bench-ingest-{}", &random_text()[..8].to_lowercase());
    let outcome = with_server(args, &channel, &name).await;
    for queue in [format!("{name}.q"), format!("{name}.q.dead")] {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in [name.clone(), format!("{name}.q.dead")] {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = amqp.close(200, "bye".into()).await;
    outcome
}

fn unavailable(reason: &str) -> Value {
    eprintln!("ingest: not available: {reason}");
    json!({"scenario": SCENARIO, "target": TARGET, "available": false, "reason": reason})
}

async fn with_server(args: &Args, channel: &Channel, name: &str) -> Result<Value> {
    let secret = random_text();
    let config = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[[ingest.amqp]]
name = "bench"
url = "{url}"
exchange = {{ name = "{name}", type = "topic", durable = false }}
queue = {{ name = "{name}.q", durable = false, prefetch = 256 }}
bindings = ["bench.#"]
tenant = "{TENANT}"
dedupe_window_ms = 0
[[ingest.amqp.rules]]
[[ingest.amqp.rules.emit]]
event = "{event}"
rooms = ["{ROOM}"]
"#,
            url = args.amqp,
            event = wire::EVENT,
        ),
    )?;
    let launch = Launch {
        program: args.programs.roomcast(),
        args: vec!["--config".into(), config.display().to_string()],
        env: vec![
            ("ROOMCAST_LISTEN".into(), "127.0.0.1:0".into()),
            ("ROOMCAST_JWT_SECRET".into(), secret.clone()),
            ("ROOMCAST_API_KEY".into(), random_text()),
            ("ROOMCAST_ROOMS__AUTO_JOIN".into(), r#"["{room}"]"#.into()),
            ("ROOMCAST_LOG__LEVEL".into(), "warn".into()),
        ],
        ready: "roomcast listening on ".into(),
    };
    let server = ServerProcess::launch(&launch, Duration::from_secs(20)).await;
    let _ = std::fs::remove_file(&config);
    let server = server?;
    let outcome = phases(args, channel, name, &server, &secret).await;
    let report = server.output_report();
    let _ = server.kill().await;
    outcome.map_err(|e| anyhow!("{e:#}{report}"))
}

async fn phases(
    args: &Args,
    channel: &Channel,
    name: &str,
    server: &ServerProcess,
    secret: &str,
) -> Result<Value> {
    consuming(server).await?;
    let received = Arc::new(Received::default());
    *received.latency.lock().map_err(|_| anyhow!("poisoned"))? = Some([
        Latency::histogram(),
        Latency::histogram(),
        Latency::histogram(),
    ]);
    let mut readers = Vec::new();
    for id in 0..args.clients {
        let mut ws = welcomed_native(server.addr(), secret, id, ROOM).await?;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut local = [
                Latency::histogram(),
                Latency::histogram(),
                Latency::histogram(),
            ];
            let mut counts = [0u64; 3];
            loop {
                let read = ws
                    .read_some(&mut |text| {
                        let Some(tick) = find_tick(text) else { return };
                        let phase = (tick.phase as usize).min(2);
                        let now = wire::unix_now().as_nanos() as u64;
                        let _ = local[phase].record(now.saturating_sub(tick.sent_ns).max(1) / 1000);
                        counts[phase] += 1;
                        received.count[phase].fetch_add(1, Ordering::Relaxed);
                    })
                    .await;
                // A message of phase 0 ends the run.
                if read.is_err() || counts[0] > 0 {
                    break;
                }
            }
            if let Ok(mut all) = received.latency.lock() {
                if let Some(all) = all.as_mut() {
                    for (a, l) in all.iter_mut().zip(&local) {
                        let _ = a.add(l);
                    }
                }
            }
        }));
    }
    let clients = args.clients as u64;

    // The steady phase.
    let steady = (args.rate * args.secs as f64).round() as u64;
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut confirms = Vec::with_capacity(steady as usize);
    for seq in 0..steady {
        tokio::time::sleep_until(started + period * seq as u32).await;
        confirms.push(publish(channel, name, seq, 1, args.size).await?);
    }
    for confirm in confirms {
        confirm.await?;
    }
    let steady_done = wait_for(&received, 1, steady * clients).await;

    // The burst.
    let cpu_before = procfs::sample(server.pid())?.cpu;
    let started = Instant::now();
    let mut confirms = Vec::with_capacity(args.burst as usize);
    for seq in 0..args.burst {
        confirms.push(publish(channel, name, seq, 2, args.size).await?);
    }
    for confirm in confirms {
        confirm.await?;
    }
    let burst_done = wait_for(&received, 2, args.burst * clients).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = procfs::sample(server.pid())?.cpu.saturating_sub(cpu_before);

    // The end: a message of phase 0 stops every reader.
    publish(channel, name, 0, 0, args.size).await?.await?;
    for reader in readers {
        let _ = tokio::time::timeout(DRAIN, reader).await;
    }
    let hists = received
        .latency
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .take()
        .ok_or_else(|| anyhow!("no histograms"))?;
    let got = |phase: usize| received.count[phase].load(Ordering::Relaxed);
    let result = json!({
        "scenario": SCENARIO,
        "target": TARGET,
        "available": true,
        "clients": args.clients,
        "size": args.size,
        "steady": {
            "rate": args.rate,
            "messages": steady,
            "deliveries": got(1),
            "complete": steady_done,
            "latency": Latency::of(&hists[1]).to_json(),
        },
        "burst": {
            "messages": args.burst,
            "deliveries": got(2),
            "complete": burst_done,
            "secs": r3(elapsed),
            "messages_per_sec": r3(args.burst as f64 / elapsed),
            "deliveries_per_sec": r3(got(2) as f64 / elapsed),
            "latency": Latency::of(&hists[2]).to_json(),
            "server_cpu_secs": r3(cpu.as_secs_f64()),
            "cpu_us_per_message": r3(cpu.as_secs_f64() * 1e6 / args.burst.max(1) as f64),
        },
    });
    eprintln!("ingest: {result}");
    Ok(result)
}

/// Publishes message `seq` of `phase`, persistent, and gives its confirmation to await.
async fn publish(
    channel: &Channel,
    exchange: &str,
    seq: u64,
    phase: u32,
    size: usize,
) -> Result<lapin::PublisherConfirm> {
    let tick = Tick {
        seq,
        lane: 0,
        sent_ns: wire::unix_now().as_nanos() as u64,
        phase,
    };
    let body = tick_data(tick, size);
    Ok(channel
        .basic_publish(
            exchange.into(),
            "bench.tick".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await?)
}

/// Waits until `phase` has `expected` deliveries, at most [`DRAIN`] after the last arrival;
/// whether all came.
async fn wait_for(received: &Received, phase: usize, expected: u64) -> bool {
    let mut last = received.count[phase].load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        let now = received.count[phase].load(Ordering::Relaxed);
        if now >= expected {
            return true;
        }
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > DRAIN {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the server's source is consuming (`GET /health`).
async fn consuming(server: &ServerProcess) -> Result<()> {
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        if text.contains(r#""state":"up","source":"bench""#)
            || text.contains(r#""source":"bench","state":"up""#)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server's ingest source never connected")
}
