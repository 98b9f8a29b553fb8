//! Creating and delivering: `--clients` welcomed native clients (users `u0`, `u1`, ... of
//! tenant `bench`) read their `new_notification` events while `--posters` keep-alive
//! connections post `POST /api/inbox/notifications`, each waiting for its answer before the
//! next, for `--secs`. First one user per create, round robin; then every client's user in
//! each create. Every notification carries its request's send time in its `data`, so that its
//! user's client reads the latency from the request to the live event; every created one must
//! arrive, and those that do not are reported as missing.
//!
//! The server's CPU time is taken from the first request of a phase until the last delivery,
//! and so is, on PostgreSQL, the time of the backends serving the run's database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use hdrhistogram::Histogram;
use http::StatusCode;
use memchr::memmem;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::api::{excerpt, Api};
use super::database::{cpu_since, Fresh, Kind};
use super::{finish, start, Args, TENANT};
use crate::procfs;
use crate::scenario::{r3, welcomed};
use crate::server::ServerProcess;
use crate::stats::Latency;
use crate::target::random_text;
use crate::wire::{self, find_tick, tick_data, Tick};
use crate::wsconn::WsConn;

/// How long the deliveries of a phase may keep the generator waiting after the last one came.
const DRAIN: Duration = Duration::from_secs(10);
/// Creates each poster makes before the measurement, so that the server's pool of database
/// connections is open and warm when it starts.
const WARMUP_POSTS: u64 = 10;
/// The live event of a created notification (the server's default).
const EVENT: &[u8] = b"\"new_notification\"";

/// The phases, as the notifications' data carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup = 0,
    /// One user per create.
    Single = 1,
    /// Every client's user in each create.
    Batch = 2,
}

/// What the clients received, per phase.
struct Received {
    count: [AtomicU64; 3],
    /// A std mutex: each reader locks it once, at its end, to add its histograms.
    latency: Mutex<[Histogram<u64>; 3]>,
}

/// What the posters share.
struct Plan {
    clients: u64,
    /// Every client's user, as a JSON array.
    users: String,
    /// The sequence number of the next create, which also picks its user.
    next: AtomicU64,
}

/// What the posters of a phase did.
struct Tally {
    posts: u64,
    created: u64,
    errors: u64,
    first_error: Option<String>,
    /// From a request's send to its answer, in microseconds.
    answered: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            posts: 0,
            created: 0,
            errors: 0,
            first_error: None,
            answered: Latency::histogram(),
        }
    }

    fn error(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    fn merge(&mut self, other: Tally) {
        self.posts += other.posts;
        self.created += other.created;
        self.errors += other.errors;
        if let Some(e) = other.first_error {
            self.first_error.get_or_insert(e);
        }
        let _ = self.answered.add(&other.answered);
    }
}

/// How long a poster goes on.
#[derive(Debug, Clone, Copy)]
enum Until {
    Posts(u64),
    Time(Instant),
}

/// Both phases on a server started on the fresh database `db`: the result's `single` and
/// `batch`.
pub(super) async fn measure(args: &Args, db: &mut Fresh) -> Result<Value> {
    let (secret, key) = (random_text(), random_text());
    // Every poster's create is in flight at once; every client's user may be in one create.
    let settings = format!(
        "max_in_flight = {}\nmax_recipients = {}",
        (args.posters * 2).max(64),
        args.clients.max(1_000)
    );
    let server = start(&args.programs, &db.url, &settings, &secret, &key).await?;
    let outcome = phases(args, db, &server, &secret, &key).await;
    finish(server, outcome).await
}

async fn phases(
    args: &Args,
    db: &mut Fresh,
    server: &ServerProcess,
    secret: &str,
    key: &str,
) -> Result<Value> {
    let received = Arc::new(Received {
        count: Default::default(),
        latency: Mutex::new([
            Latency::histogram(),
            Latency::histogram(),
            Latency::histogram(),
        ]),
    });
    let (stop, stopped) = watch::channel(false);
    let mut readers = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let claims = json!({"sub": format!("u{i}"), "tenant_id": TENANT});
        let ws = welcomed(server.addr(), secret, claims).await?;
        readers.push(read(ws, received.clone(), stopped.clone()));
    }
    let mut posters = Vec::with_capacity(args.posters);
    for _ in 0..args.posters {
        posters.push(Api::connect(server.addr(), key).await?);
    }
    let users: Vec<String> = (0..args.clients).map(|i| format!("u{i}")).collect();
    let plan = Arc::new(Plan {
        clients: args.clients as u64,
        users: json!(users).to_string(),
        next: AtomicU64::new(0),
    });

    let (posters, warmup) = round(posters, &plan, Phase::Warmup, Until::Posts(WARMUP_POSTS)).await;
    if warmup.created == 0 {
        bail!(
            "no notification was created: {}",
            warmup.first_error.unwrap_or_default()
        );
    }
    wait_for(&received, Phase::Warmup, warmup.created).await;
    let (posters, mut single) =
        phase(args, db, server, posters, &plan, &received, Phase::Single).await?;
    let (_, mut batch) = phase(args, db, server, posters, &plan, &received, Phase::Batch).await?;

    let _ = stop.send(true);
    for reader in readers {
        let _ = tokio::time::timeout(DRAIN, reader).await;
    }
    let latency = received.latency.lock().map_err(|_| anyhow!("poisoned"))?;
    single["latency"] = Latency::of(&latency[Phase::Single as usize]).to_json();
    batch["latency"] = Latency::of(&latency[Phase::Batch as usize]).to_json();
    batch["users_per_post"] = json!(args.clients);
    Ok(json!({"single": single, "batch": batch}))
}

/// One measured phase: the posters for `--secs`, then the wait for the last delivery.
async fn phase(
    args: &Args,
    db: &mut Fresh,
    server: &ServerProcess,
    posters: Vec<Api>,
    plan: &Arc<Plan>,
    received: &Received,
    phase: Phase,
) -> Result<(Vec<Api>, Value)> {
    if posters.is_empty() {
        bail!("every poster's connection failed");
    }
    let cpu_before = procfs::sample(server.pid())?.cpu;
    let database_before = db.backends_cpu().await?;
    let started = Instant::now();
    let until = Until::Time(started + Duration::from_secs(args.secs));
    let (posters, tally) = round(posters, plan, phase, until).await;
    let posting = started.elapsed().as_secs_f64();
    let (complete, last) = wait_for(received, phase, tally.created).await;
    let cpu = procfs::sample(server.pid())?.cpu.saturating_sub(cpu_before);
    let database = cpu_since(&database_before, &db.backends_cpu().await?);
    let got = received.count[phase as usize].load(Ordering::Relaxed);
    let delivering = last.duration_since(started).as_secs_f64().max(1e-9);
    let per_notification =
        |cpu: Duration| r3(cpu.as_secs_f64() * 1e6 / tally.created.max(1) as f64);
    let mut result = json!({
        "posts": tally.posts,
        "created": tally.created,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "secs": r3(posting),
        "created_per_sec": r3(tally.created as f64 / posting),
        "answer_latency": Latency::of(&tally.answered).to_json(),
        "deliveries": got,
        "missing": tally.created.saturating_sub(got),
        "complete": complete,
        "deliveries_per_sec": r3(got as f64 / delivering),
        "server_cpu_secs": r3(cpu.as_secs_f64()),
        "cpu_us_per_notification": per_notification(cpu),
    });
    if db.kind() == Kind::Postgres {
        result["database_cpu_secs"] = json!(r3(database.as_secs_f64()));
        result["database_cpu_us_per_notification"] = json!(per_notification(database));
    }
    Ok((posters, result))
}

/// Every poster posting at once in `phase` until `until`; the posters whose connection still
/// works, and what they did together.
async fn round(
    posters: Vec<Api>,
    plan: &Arc<Plan>,
    phase: Phase,
    until: Until,
) -> (Vec<Api>, Tally) {
    let tasks: Vec<JoinHandle<(Option<Api>, Tally)>> = posters
        .into_iter()
        .enumerate()
        .map(|(lane, api)| tokio::spawn(post(api, lane as u32, plan.clone(), phase, until)))
        .collect();
    let mut all = Tally::new();
    let mut working = Vec::new();
    for task in tasks {
        match task.await {
            Ok((api, tally)) => {
                working.extend(api);
                all.merge(tally);
            }
            Err(e) => all.error(format!("a poster failed: {e}")),
        }
    }
    (working, all)
}

/// One poster: creates, each after the previous one's answer, until `until`. Gives its
/// connection back unless it failed.
async fn post(
    mut api: Api,
    lane: u32,
    plan: Arc<Plan>,
    phase: Phase,
    until: Until,
) -> (Option<Api>, Tally) {
    let mut tally = Tally::new();
    loop {
        let more = match until {
            Until::Posts(n) => tally.posts < n,
            Until::Time(t) => Instant::now() < t,
        };
        if !more {
            return (Some(api), tally);
        }
        let seq = plan.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let body = body(&plan, phase, seq, lane);
        tally.posts += 1;
        match api.post("/api/inbox/notifications", body).await {
            Ok((StatusCode::CREATED, answer)) => {
                let _ = tally
                    .answered
                    .record((started.elapsed().as_micros() as u64).max(1));
                let count = serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|v| v["count"].as_u64());
                match count {
                    Some(n) => tally.created += n,
                    None => tally.error(format!("201 without a count: {}", excerpt(&answer))),
                }
            }
            Ok((status, answer)) => tally.error(format!("HTTP {status}: {}", excerpt(&answer))),
            Err(e) => {
                tally.error(format!("{e:#}"));
                return (None, tally);
            }
        }
    }
}

/// A create's body: for user `u<seq % clients>`, or in the batch phase for every client's
/// user, its `data` the create's sequence number, poster, send time and phase.
fn body(plan: &Plan, phase: Phase, seq: u64, lane: u32) -> String {
    let tick = Tick {
        seq,
        lane,
        sent_ns: wire::unix_now().as_nanos() as u64,
        phase: phase as u32,
    };
    let data = tick_data(tick, 0);
    match phase {
        Phase::Batch => format!(
            r#"{{"tenant":"{TENANT}","users":{},"title":"Maintenance tonight","message":"The shop is closed from 2 to 3 am.","data":{data}}}"#,
            plan.users
        ),
        Phase::Warmup | Phase::Single => format!(
            r#"{{"tenant":"{TENANT}","user":"u{}","title":"Order shipped","message":"Your order {seq} has shipped.","data":{data}}}"#,
            seq % plan.clients
        ),
    }
}

/// A client's reader: counts its `new_notification` events by phase and records their
/// latency, until `stop`; then closes.
fn read(
    mut ws: WsConn,
    received: Arc<Received>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut local = [
            Latency::histogram(),
            Latency::histogram(),
            Latency::histogram(),
        ];
        loop {
            let mut on_text = |text: &[u8]| {
                if memmem::find(text, EVENT).is_none() {
                    return;
                }
                let Some(tick) = find_tick(text) else { return };
                let phase = (tick.phase as usize).min(2);
                let now = wire::unix_now().as_nanos() as u64;
                let _ = local[phase].record((now.saturating_sub(tick.sent_ns) / 1000).max(1));
                received.count[phase].fetch_add(1, Ordering::Relaxed);
            };
            // `read_some` is cancel-safe: a stop loses nothing read.
            let read = tokio::select! {
                read = ws.read_some(&mut on_text) => read,
                _ = stop.changed() => break,
            };
            if read.is_err() {
                break;
            }
        }
        if let Ok(mut all) = received.latency.lock() {
            for (all, local) in all.iter_mut().zip(&local) {
                let _ = all.add(local);
            }
        }
        let _ = ws.close().await;
    })
}

/// Waits until `phase` has `expected` deliveries, at most [`DRAIN`] after the last arrival:
/// whether all came, and when the last did.
async fn wait_for(received: &Received, phase: Phase, expected: u64) -> (bool, Instant) {
    let count = &received.count[phase as usize];
    let mut last = count.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        let now = count.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        }
        if now >= expected {
            return (true, since);
        }
        if since.elapsed() > DRAIN {
            return (false, since);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_carries_its_tick_back() {
        let plan = Plan {
            clients: 3,
            users: r#"["u0","u1","u2"]"#.into(),
            next: AtomicU64::new(0),
        };
        let single: Value = serde_json::from_str(&body(&plan, Phase::Single, 7, 2)).unwrap();
        assert_eq!(single["user"], "u1");
        assert_eq!(single["tenant"], TENANT);
        // The server re-encodes the data with its keys sorted: still a tick.
        let tick = find_tick(single["data"].to_string().as_bytes()).unwrap();
        assert_eq!((tick.seq, tick.lane, tick.phase), (7, 2, 1));
        let batch: Value = serde_json::from_str(&body(&plan, Phase::Batch, 8, 0)).unwrap();
        assert_eq!(batch["users"], json!(["u0", "u1", "u2"]));
        assert_eq!(find_tick(batch.to_string().as_bytes()).unwrap().phase, 2);
    }
}
