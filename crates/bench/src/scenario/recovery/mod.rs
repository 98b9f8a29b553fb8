//! `recovery`: Socket.IO connection state recovery after a node's death. Roomcast over
//! Socket.IO runs as two nodes sharing the Redis, with `[socketio.recovery]` on. The clients
//! (10,000, all in this process) connect to the second node over WebSocket at a bounded rate:
//! nine in ten before one tenant-wide event, whose offset they keep, the others after it, so
//! that they reconnect with no offset, as a client that has received nothing yet. Once their
//! sessions have had time to reach Redis (the nodes write them within 200 ms of a change), the
//! node is killed with SIGKILL; when every client has seen its connection end, a few (5)
//! tenant-wide events are published through the first node, and every client reconnects to it
//! at once, with its `pid` and last offset, as socket.io-client does.
//!
//! A client has recovered when the `CONNECT` answer gives back its socket id and `pid` and it
//! has received the missed events, in order and once. Its recovery time runs from the start of
//! its reconnection until it has both; the storm's, from the start of the first reconnection
//! until the last client's outcome. The Redis server's CPU time (from `/proc`, as in `cluster`)
//! and the surviving node's are taken over the storm.
//!
//! A client that does not recover is counted, with the reason; only a failed setup (a node that
//! does not start, a client that cannot connect before the kill) fails the run. A reconnection
//! that fails before its answer (refused, closed, broken) is tried again after `--retry-ms`,
//! as socket.io-client would, until the client's time is up. The Redis is shared and never
//! flushed: the run's keys are removed when its nodes stop.

mod clients;
mod measure;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{failed, save, unavailable};
use crate::capacity;
use crate::fleet::{Fleet, Pace};
use crate::server::ServerProcess;
use crate::target::{loopback_sources, with_server_output, Bed, ClusterSpec, Programs, Target};
use crate::wire::{Layout, Tokens};
use crate::worker::TOKEN_TTL;
use clients::{Clients, Shared};
use measure::measure;

const SCENARIO: &str = "recovery";
/// The feature measured is Roomcast's, over Socket.IO.
const TARGET: Target = Target::RoomcastSocketIo;
/// Time allowed for the close handshakes at the end.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Clients per loopback source address, unless `--sources` says otherwise.
const CLIENTS_PER_SOURCE: usize = 250;

/// Options of `roomcast-bench recovery`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    programs: Programs,
    /// The Redis the two nodes share: `redis://[host][:port][/db]`. Never flushed.
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis: String,
    /// Clients, all held by this process (a process may hold about 20,000 open files).
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Tenant-wide events published while the clients are away: what each must recover.
    #[arg(long, default_value_t = 5)]
    missed: u64,
    /// Percent of the clients that connect after the first event, and so reconnect with no
    /// offset.
    #[arg(long, default_value_t = 10.0)]
    no_offset_percent: f64,
    /// Loopback source addresses to connect from: 127.0.0.1 to 127.0.0.N. Default: one per
    /// 250 clients, at least 4, as if they came from many machines: the server answers 429 to
    /// an address with more than `socketio.max_pending_sessions_per_ip` (256) Engine.IO
    /// sessions waiting for their `CONNECT` at once.
    #[arg(long)]
    sources: Option<usize>,
    /// Client connections started per second before the kill.
    #[arg(long, default_value_t = 2500.0)]
    connect_rate: f64,
    /// Most handshakes in flight at once before the kill.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Seconds allowed for one client's handshake before the kill.
    #[arg(long, default_value_t = 15)]
    timeout_secs: u64,
    /// Milliseconds from the last client's connect to the kill.
    #[arg(long, default_value_t = 500)]
    settle_ms: u64,
    /// Reconnections started per second after the kill; 0 starts them all at once.
    #[arg(long, default_value_t = 0.0)]
    reconnect_rate: f64,
    /// Milliseconds a client waits before trying again when a reconnection failed before its
    /// answer.
    #[arg(long, default_value_t = 500)]
    retry_ms: u64,
    /// Seconds a client has to recover, from the start of its reconnection; a client that has
    /// not by then is counted as not recovered.
    #[arg(long, default_value_t = 60)]
    recover_secs: u64,
    /// The nodes' `[socketio.recovery] max_disconnection_ms`.
    #[arg(long, default_value_t = 120_000)]
    max_disconnection_ms: u64,
    /// Append the result as one JSON line to this file.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let limit = super::prepare()?;
    capacity::check_fit("--clients", args.clients, limit)?;
    let sources = loopback_sources(fleet_sources(&args));
    let cluster = ClusterSpec {
        nodes: 2,
        redis: args.redis.clone(),
        settings: [
            ("ROOMCAST_SOCKETIO__RECOVERY__ENABLED", "true".to_string()),
            (
                "ROOMCAST_SOCKETIO__RECOVERY__MAX_DISCONNECTION_MS",
                args.max_disconnection_ms.to_string(),
            ),
            // One offset per client needs one order for all the rooms of a tenant.
            ("ROOMCAST_CLUSTER__CHANNELS", "tenant".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    };
    let mut bed = match Bed::start_cluster(TARGET, &args.programs, &sources, &cluster).await? {
        Ok(bed) => bed,
        Err(reason) => {
            return save(
                args.results.as_deref(),
                &unavailable(SCENARIO, TARGET, &reason.0),
            )
        }
    };
    let doomed = bed
        .nodes
        .first()
        .map(ServerProcess::addr)
        .ok_or_else(|| anyhow!("the cluster has one node"))?;
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        with_offset: AtomicUsize::new(0),
        lost: AtomicUsize::new(0),
        storm: watch::Sender::new(None),
        outcomes: outcomes_tx,
        late_events: AtomicU64::new(0),
    });
    let clients = Clients {
        tokens: Tokens::new(&bed.secret, Layout { rooms: 1 }, TOKEN_TTL),
        doomed,
        survivor: bed.server.addr(),
        sources,
        missed: args.missed,
        reconnect_rate: args.reconnect_rate,
        retry: Duration::from_millis(args.retry_ms),
        recover_within: Duration::from_secs(args.recover_secs),
        shared: shared.clone(),
    };
    let mut fleet = Fleet::new(
        clients,
        Pace {
            rate: args.connect_rate,
            in_flight: args.in_flight,
            timeout: Duration::from_secs(args.timeout_secs),
        },
    );
    let measured = measure(&args, &mut bed, &mut fleet, &shared, &mut outcomes).await;
    let measured = measured.map_err(|e| with_server_output(e, &mut bed));
    let closed = fleet.close(CLOSE_WAIT).await;
    bed.stop().await?;
    let result = match measured {
        Ok(mut result) => {
            result["closed"] = json!({"clean": closed.clean, "failed": closed.failed,
                "ended_by_server": closed.dropped});
            result
        }
        Err(e) => failed(SCENARIO, TARGET, &e),
    };
    save(args.results.as_deref(), &result)
}

/// The loopback source addresses the clients connect from.
fn fleet_sources(args: &Args) -> usize {
    args.sources
        .unwrap_or_else(|| args.clients.div_ceil(CLIENTS_PER_SOURCE).max(4))
        .clamp(1, 254)
}
