//! `roomcast-bench fleet`: a child process holding one share of the subscribers. A process may
//! hold about 20,000 open files, so larger runs are split over several of these, started and
//! steered by [`crate::swarm`].
//!
//! It opens its connections, prints one JSON line (`opened`, or `error`), then answers one JSON
//! line per command read from stdin: `{"cmd":"count","phase":P}` (messages of phase P so far),
//! `{"cmd":"report","phase":P}` (the phase's stats, which it then forgets) and
//! `{"cmd":"close"}` (close every connection and exit). It also closes and exits when stdin
//! ends, so it never outlives its parent.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::capacity;
use crate::fleet::{Fleet, Pace};
use crate::stats::{Latency, PhaseStats, Recorder};
use crate::sub::SubDialer;
use crate::wire::{Layout, Protocol, Tokens};

/// The environment variable carrying the token secret to a fleet process.
pub(crate) const SECRET_ENV: &str = "ROOMCAST_BENCH_SECRET";
/// Lifetime of the subscribers' tokens: longer than any run.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Time allowed for the close handshakes at the end.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Options of `roomcast-bench fleet` (set by the parent process, not typed by hand).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's addresses, comma-separated; subscriber `id` connects to the one at `id`
    /// modulo their count.
    #[arg(long, value_delimiter = ',', required = true)]
    server: Vec<SocketAddr>,
    /// `native` or `socketio`.
    #[arg(long, value_parser = parse_protocol)]
    protocol: Protocol,
    /// The first subscriber id of this share.
    #[arg(long)]
    first: usize,
    /// Subscribers in this share.
    #[arg(long)]
    count: usize,
    /// Rooms the subscribers are spread over (subscriber id modulo rooms).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Connection attempts started per second.
    #[arg(long)]
    rate: f64,
    /// Most handshakes in flight at once.
    #[arg(long)]
    in_flight: usize,
    /// Seconds allowed for one handshake.
    #[arg(long)]
    timeout_secs: u64,
    /// Local addresses to connect from, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    sources: Vec<IpAddr>,
}

pub(crate) fn parse_protocol(name: &str) -> Result<Protocol, String> {
    Protocol::from_name(name).ok_or_else(|| format!("unknown protocol `{name}`"))
}

/// Runs a fleet process.
pub(crate) async fn run(args: Args) -> Result<()> {
    let secret = std::env::var(SECRET_ENV).with_context(|| {
        format!("{SECRET_ENV} is not set (fleet processes are started by the scenarios)")
    })?;
    let limit = capacity::raise_nofile_limit()?;
    capacity::check_connections_fit(args.count, limit)?;
    let recorder = Arc::new(Recorder::default());
    let dialer = SubDialer {
        protocol: args.protocol,
        servers: args.server.clone(),
        tokens: Tokens::new(&secret, Layout { rooms: args.rooms }, TOKEN_TTL),
        sources: args.sources.clone(),
        recorder: recorder.clone(),
    };
    let pace = Pace {
        rate: args.rate,
        in_flight: args.in_flight,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let mut fleet = Fleet::new(dialer, pace);
    let opened = match fleet.open(args.first..args.first + args.count).await {
        Ok(opened) => opened,
        Err(e) => {
            emit(&json!({"type": "error", "message": format!("{e:#}")}))?;
            fleet.close(CLOSE_WAIT).await;
            return Err(e);
        }
    };
    let mut handshakes = Latency::histogram();
    for latency in &opened.latencies {
        handshakes.saturating_record((latency.as_micros() as u64).max(1));
    }
    let handshakes = PhaseStats {
        hist: handshakes,
        received: opened.count as u64,
        ..PhaseStats::default()
    };
    emit(&json!({
        "type": "opened",
        "count": opened.count,
        "open_secs": opened.elapsed.as_secs_f64(),
        "handshakes": handshakes.to_json(),
    }))?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.context("reading commands")? {
        let command: Value =
            serde_json::from_str(&line).with_context(|| format!("bad command `{line}`"))?;
        let phase = command["phase"].as_u64().unwrap_or(0) as u32;
        let (dropped, first_drop) = fleet.drops();
        match command["cmd"].as_str() {
            Some("count") => emit(&json!({
                "type": "count",
                "received": recorder.received(phase),
                "dropped": dropped,
            }))?,
            Some("report") => {
                let mut report = recorder.take(phase).to_json();
                report["type"] = json!("report");
                report["dropped"] = json!(dropped);
                report["first_drop"] = json!(first_drop);
                emit(&report)?;
            }
            Some("close") => break,
            _ => return Err(anyhow!("unknown command `{line}`")),
        }
    }
    let closed = fleet.close(CLOSE_WAIT).await;
    emit(&json!({
        "type": "closed",
        "clean": closed.clean,
        "failed": closed.failed,
        "dropped": closed.dropped,
    }))
}

/// Writes one JSON line to stdout and flushes it: the parent waits for it.
fn emit(value: &Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}").context("writing to the parent")?;
    out.flush().context("writing to the parent")
}
