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

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{failed, r3, save, unavailable};
use crate::capacity;
use crate::client::{Drops, HoldEnd, OpenError};
use crate::fleet::{Dialer, Fleet, Pace};
use crate::procfs;
use crate::publisher::OneByOne;
use crate::server::ServerProcess;
use crate::stats::Latency;
use crate::sub::{self, sio_handshake};
use crate::target::{loopback_sources, with_server_output, Bed, ClusterSpec, Programs, Target};
use crate::wire::{self, parse_sio, ConnectAnswer, Layout, SioEvent, SioFrame, Tokens};
use crate::worker::TOKEN_TTL;
use crate::wsconn::WsConn;

const SCENARIO: &str = "recovery";
/// The feature measured is Roomcast's, over Socket.IO.
const TARGET: Target = Target::RoomcastSocketIo;
/// Time allowed for every client to hold the first event's offset, and, after the kill, to see
/// its connection end.
const SETUP_WAIT: Duration = Duration::from_secs(10);
/// How often the counters are looked at while waiting for the clients.
const POLL: Duration = Duration::from_millis(2);
/// Time given to events that might still come after the last outcome (none should).
const DRAIN: Duration = Duration::from_millis(500);
/// Time allowed for the close handshakes at the end.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// The sessions' keys under the run's prefix: `<prefix>:sio:{<pid>}`.
const SESSION_KEYS: &str = "sio:";
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

/// What the scenario and its clients share.
struct Shared {
    /// Clients on the doomed node that hold an offset.
    with_offset: AtomicUsize,
    /// Clients whose connection to the doomed node has ended.
    lost: AtomicUsize,
    /// The storm's start, once it started: every client then reconnects.
    storm: watch::Sender<Option<Instant>>,
    /// One outcome per client, once the storm started.
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// Events received after a client's outcome: none is published then, so none should come.
    late_events: AtomicU64,
}

/// How a client's reconnection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Its socket id and `pid` back, and every missed event, in order and once.
    Recovered,
    /// A new socket id or `pid`: the server did not find or could not restore the session.
    NewSession,
    /// Its session back, but the missed events were not all there, in order and once.
    WrongEvents,
    /// No `CONNECT` answer: every attempt failed, or the time was up.
    Failed,
}

impl Verdict {
    const NOT_RECOVERED: [Verdict; 3] =
        [Verdict::NewSession, Verdict::WrongEvents, Verdict::Failed];

    fn name(self) -> &'static str {
        match self {
            Verdict::Recovered => "recovered",
            Verdict::NewSession => "new_session",
            Verdict::WrongEvents => "wrong_events",
            Verdict::Failed => "failed",
        }
    }
}

/// One client's reconnection.
#[derive(Debug, Clone)]
struct Outcome {
    verdict: Verdict,
    /// From the start of its reconnection until it had the answer and every missed event (or
    /// gave up).
    took: Duration,
    /// When it was done.
    done: Instant,
    attempts: u32,
    /// Whether it reconnected with an offset.
    had_offset: bool,
    /// Whether it saw its connection to the doomed node end before the storm.
    saw_close: bool,
    /// Why each failed attempt failed.
    errors: Vec<String>,
}

/// The clients: connected to the doomed node by the fleet, then, in [`Dialer::hold`], through
/// its death and their reconnection to the survivor.
struct Clients {
    tokens: Tokens,
    doomed: SocketAddr,
    survivor: SocketAddr,
    sources: Vec<IpAddr>,
    /// Events published while they are away.
    missed: u64,
    reconnect_rate: f64,
    retry: Duration,
    recover_within: Duration,
    shared: Arc<Shared>,
}

/// A client connected to the doomed node, with its session.
struct Connected {
    id: usize,
    ws: WsConn,
    sid: String,
    pid: String,
}

/// Why a client stopped reading from the doomed node.
enum Left {
    /// Its connection ended.
    Lost,
    /// The storm started first.
    Storm,
    /// The fleet is closing (the setup failed).
    Stop,
}

/// A reconnection that got its `CONNECT` answer.
struct Answered {
    ws: WsConn,
    answer: ConnectAnswer,
    /// The scenario's numbers of the events received so far (`None`: an event of another shape).
    events: Vec<Option<u64>>,
}

impl Dialer for Clients {
    type Conn = Connected;

    async fn dial(self: Arc<Self>, id: usize) -> Result<Connected, OpenError> {
        let token = self.tokens.token(id).map_err(OpenError::Token)?;
        let mut ws = sub::connect(self.doomed, self.source(id), wire::SOCKET_IO_PATH).await?;
        let answer = sio_handshake(&mut ws, &wire::sio_connect(&token), &mut |_| {}).await?;
        let answer = wire::sio_connect_answer(answer.as_bytes()).ok_or_else(|| {
            OpenError::SocketIo(format!("no socket id in the CONNECT answer `{answer}`"))
        })?;
        let pid = answer.pid.ok_or_else(|| {
            OpenError::SocketIo("no pid in the CONNECT answer: is [socketio.recovery] on?".into())
        })?;
        Ok(Connected {
            id,
            ws,
            sid: answer.sid,
            pid,
        })
    }

    async fn hold(
        self: Arc<Self>,
        conn: Connected,
        mut stop: watch::Receiver<bool>,
        drops: Arc<Drops>,
    ) -> HoldEnd {
        let Connected {
            id,
            mut ws,
            sid,
            pid,
        } = conn;
        let mut storm = self.shared.storm.subscribe();
        let mut offset = None;
        let saw_close = match self
            .on_doomed(&mut ws, &mut offset, &mut storm, &mut stop)
            .await
        {
            Left::Lost => {
                self.shared.lost.fetch_add(1, Ordering::Relaxed);
                true
            }
            Left::Storm => false,
            Left::Stop => return close(ws).await,
        };
        drop(ws);
        let start = tokio::select! {
            start = storm.wait_for(Option::is_some) => start.ok().and_then(|start| *start),
            _ = stop.wait_for(|stop| *stop) => None,
        };
        let Some(start) = start else {
            return HoldEnd::Dropped;
        };
        if self.reconnect_rate > 0.0 {
            let after = Duration::from_secs_f64(id as f64 / self.reconnect_rate);
            tokio::time::sleep_until(start + after).await;
        }
        let began = Instant::now();
        let (verdict, attempts, errors, answered) = self
            .recover(
                id,
                &sid,
                &pid,
                offset.as_deref(),
                began + self.recover_within,
            )
            .await;
        let done = Instant::now();
        let _ = self.shared.outcomes.send(Outcome {
            verdict,
            took: done - began,
            done,
            attempts,
            had_offset: offset.is_some(),
            saw_close,
            errors,
        });
        match answered {
            Some(ws) => self.hold_survivor(ws, &mut stop, &drops).await,
            None => HoldEnd::Dropped,
        }
    }
}

impl Clients {
    fn source(&self, id: usize) -> IpAddr {
        self.sources[id % self.sources.len().max(1)]
    }

    /// Reads from the doomed node, answering pings and keeping the last offset, until the
    /// connection ends, the storm starts or the fleet closes.
    async fn on_doomed(
        &self,
        ws: &mut WsConn,
        offset: &mut Option<String>,
        storm: &mut watch::Receiver<Option<Instant>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Left {
        let stormed = storm.wait_for(Option::is_some);
        let stopped = stop.wait_for(|stop| *stop);
        tokio::pin!(stormed, stopped);
        loop {
            let had_offset = offset.is_some();
            let (mut pings, mut ended) = (0, false);
            let mut on_text = |text: &[u8]| match parse_sio(text) {
                SioFrame::Event(payload) => {
                    if let Some(event) = SioEvent::parse(payload) {
                        if let Some(last) = event.offset() {
                            *offset = Some(last.to_owned());
                        }
                    }
                }
                SioFrame::Ping => pings += 1,
                SioFrame::Close | SioFrame::Disconnect => ended = true,
                _ => {}
            };
            let read = tokio::select! {
                biased;
                read = ws.read_some(&mut on_text) => read,
                _ = &mut stormed => return Left::Storm,
                _ = &mut stopped => return Left::Stop,
            };
            if !had_offset && offset.is_some() {
                self.shared.with_offset.fetch_add(1, Ordering::Relaxed);
            }
            if read.is_err() || ended {
                return Left::Lost;
            }
            for _ in 0..pings {
                if sub::send(ws, wire::PONG).await.is_err() {
                    return Left::Lost;
                }
            }
        }
    }

    /// Reconnects to the survivor with the session's `pid` and `offset` until it is answered
    /// or `deadline` passes, then waits for the missed events the answer did not bring.
    async fn recover(
        &self,
        id: usize,
        sid: &str,
        pid: &str,
        offset: Option<&str>,
        deadline: Instant,
    ) -> (Verdict, u32, Vec<String>, Option<WsConn>) {
        let token = match self.tokens.token(id) {
            Ok(token) => token,
            Err(e) => return (Verdict::Failed, 0, vec![format!("token: {e}")], None),
        };
        let connect = wire::sio_reconnect(&token, pid, offset);
        let mut attempts = 0;
        let mut errors = Vec::new();
        let mut answered = loop {
            attempts += 1;
            match tokio::time::timeout_at(deadline, self.attempt(id, &connect)).await {
                Ok(Ok(answered)) => break answered,
                Ok(Err(e)) => errors.push(e.kind()),
                Err(_) => {
                    errors.push("no answer in time".into());
                    return (Verdict::Failed, attempts, errors, None);
                }
            }
            if Instant::now() + self.retry >= deadline {
                return (Verdict::Failed, attempts, errors, None);
            }
            tokio::time::sleep(self.retry).await;
        };
        let same = answered.answer.sid == sid && answered.answer.pid.as_deref() == Some(pid);
        if !same {
            return (Verdict::NewSession, attempts, errors, Some(answered.ws));
        }
        // Missed events come ahead of the answer; should any come after it, they are waited
        // for, as long as the client's time lasts.
        while (answered.events.len() as u64) < self.missed {
            let (mut pings, mut ended) = (0, false);
            let events = &mut answered.events;
            let mut on_text = |text: &[u8]| match parse_sio(text) {
                SioFrame::Event(payload) => events.push(event_number(payload)),
                SioFrame::Ping => pings += 1,
                SioFrame::Close | SioFrame::Disconnect => ended = true,
                _ => {}
            };
            let read = tokio::time::timeout_at(deadline, answered.ws.read_some(&mut on_text)).await;
            let broken = !matches!(read, Ok(Ok(())));
            if broken || ended {
                break;
            }
            for _ in 0..pings {
                let _ = sub::send(&mut answered.ws, wire::PONG).await;
            }
        }
        let verdict = if in_order(&answered.events, self.missed) {
            Verdict::Recovered
        } else {
            Verdict::WrongEvents
        };
        (verdict, attempts, errors, Some(answered.ws))
    }

    /// One reconnection to the survivor, up to its `CONNECT` answer.
    async fn attempt(&self, id: usize, connect: &str) -> Result<Answered, OpenError> {
        let mut ws = sub::connect(self.survivor, self.source(id), wire::SOCKET_IO_PATH).await?;
        let mut events = Vec::new();
        let answer = sio_handshake(&mut ws, connect, &mut |payload| {
            events.push(event_number(payload));
        })
        .await?;
        let answer = wire::sio_connect_answer(answer.as_bytes()).ok_or_else(|| {
            OpenError::SocketIo(format!("no socket id in the CONNECT answer `{answer}`"))
        })?;
        Ok(Answered { ws, answer, events })
    }

    /// Holds the connection to the survivor until the fleet closes, answering pings and
    /// counting events, which should not come.
    async fn hold_survivor(
        &self,
        mut ws: WsConn,
        stop: &mut watch::Receiver<bool>,
        drops: &Drops,
    ) -> HoldEnd {
        let stopped = stop.wait_for(|stop| *stop);
        tokio::pin!(stopped);
        loop {
            let (mut pings, mut events, mut ended) = (0, 0, None);
            let mut on_text = |text: &[u8]| match parse_sio(text) {
                SioFrame::Event(_) => events += 1,
                SioFrame::Ping => pings += 1,
                SioFrame::Close => ended = Some("the server closed the Engine.IO session"),
                SioFrame::Disconnect => ended = Some("the server sent a Socket.IO disconnect"),
                _ => {}
            };
            let read = tokio::select! {
                biased;
                read = ws.read_some(&mut on_text) => Some(read),
                _ = &mut stopped => None,
            };
            let Some(read) = read else {
                return close(ws).await;
            };
            self.shared.late_events.fetch_add(events, Ordering::Relaxed);
            if let Err(e) = read {
                drops.record(e.to_string());
                return HoldEnd::Dropped;
            }
            if let Some(ended) = ended {
                drops.record(ended.into());
                return HoldEnd::Dropped;
            }
            for _ in 0..pings {
                if let Err(e) = sub::send(&mut ws, wire::PONG).await {
                    drops.record(e.to_string());
                    return HoldEnd::Dropped;
                }
            }
        }
    }
}

/// Closes a held connection with a close handshake.
async fn close(mut ws: WsConn) -> HoldEnd {
    match tokio::time::timeout(Duration::from_secs(3), ws.close()).await {
        Ok(Ok(())) => HoldEnd::Closed,
        Ok(Err(_)) | Err(_) => HoldEnd::CloseFailed,
    }
}

/// The data of event `n`: 0 is published before the kill, 1 to M while the clients are away.
fn event_data(n: u64) -> String {
    format!(r#"{{"n":{n}}}"#)
}

/// The `n` of a received event's data (the payload after `42`).
fn event_number(payload: &[u8]) -> Option<u64> {
    SioEvent::parse(payload)?.args.first()?.get("n")?.as_u64()
}

/// Whether `events` are the missed ones, 1 to `missed`, in order and once.
fn in_order(events: &[Option<u64>], missed: u64) -> bool {
    events.len() as u64 == missed && events.iter().zip(1..).all(|(n, k)| *n == Some(k))
}

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

async fn measure(
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

/// The loopback source addresses the clients connect from.
fn fleet_sources(args: &Args) -> usize {
    args.sources
        .unwrap_or_else(|| args.clients.div_ceil(CLIENTS_PER_SOURCE).max(4))
        .clamp(1, 254)
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
    fn event_numbers_are_read_from_the_data() {
        let payload = format!(r#"["tick",{},"1700000000000-4"]"#, event_data(3));
        assert_eq!(event_number(payload.as_bytes()), Some(3));
        assert_eq!(event_number(br#"["tick",{"m":3},"1-0"]"#), None);
        assert_eq!(event_number(br#"["tick"]"#), None);
    }

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

    #[test]
    fn missed_events_must_come_in_order_and_once() {
        assert!(in_order(&[Some(1), Some(2), Some(3)], 3));
        assert!(in_order(&[], 0));
        assert!(!in_order(&[Some(1), Some(3), Some(2)], 3));
        assert!(!in_order(&[Some(1), Some(2)], 3));
        assert!(!in_order(&[Some(1), Some(1), Some(2), Some(3)], 3));
        // The event from before the disconnection is not among the missed.
        assert!(!in_order(&[Some(0), Some(1), Some(2), Some(3)], 3));
        assert!(!in_order(&[Some(1), None, Some(3)], 3));
    }
}
