//! Channels per tenant against channels per room, on this machine: three brokers (three
//! nodes, in one process) over a private Redis, each the only member of a third of a tenant's
//! rooms, and publications to every room from one of them. Prints, per mode, what each
//! publication cost Redis and the nodes, and how many messages the nodes received for it.
//!
//! `cargo run --release -p roomcast-redis --example channels [publications] [rooms]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomcast_broker::{Broker, Deliver, Payload, Position, Publication, RoomKey, Target};
use roomcast_redis::{ChannelMode, ClusterOptions, RedisBroker};
use roomcast_testkit::RedisServer;
use serde_json::value::RawValue;

/// Counts deliveries (a real hub would look the room up and find members or none).
#[derive(Debug, Default)]
struct Count(AtomicUsize);

impl Deliver for Count {
    fn deliver(&self, _p: &Publication, _pos: &mut dyn FnMut(usize) -> Option<Position>) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed);
        1
    }
}

/// user + system CPU seconds of a process, from /proc.
fn cpu(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn redis_pid(port: u16) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("redis-server 127.0.0.1:{port}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

async fn run(mode: ChannelMode, redis: &RedisServer, publications: usize, rooms: usize) {
    let prefix = format!("ch-{mode:?}-{}", std::process::id());
    let mut nodes = Vec::new();
    for n in 0..3 {
        let opts = ClusterOptions {
            url: redis.url(),
            node_id: format!("n{n}"),
            prefix: prefix.clone(),
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(3),
            stream_ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            channels: mode,
            history: None,
            recovery: None,
        };
        let sink = Arc::new(Count::default());
        let broker = RedisBroker::connect(opts, sink.clone()).await.unwrap();
        broker.tenant_joined("acme");
        nodes.push((broker, sink));
    }
    let names: Vec<Arc<str>> = (0..rooms).map(|r| format!("room:{r}").into()).collect();
    for (r, name) in names.iter().enumerate() {
        nodes[r % 3].0.subscribe(&RoomKey::new("acme", "/", name));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (redis_pid, me) = (redis_pid(redis.port()), std::process::id().to_string());
    let (redis_before, me_before, start) = (cpu(&redis_pid), cpu(&me), Instant::now());
    let publisher = nodes[0].0.clone();
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..publications {
        let (publisher, permits, room) =
            (publisher.clone(), permits.clone(), names[i % rooms].clone());
        let permit = permits.acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let p = Publication::new(
                "/",
                Target::Tenant { tenant: "acme".into(), rooms: vec![room], users: vec![] },
                "e",
                Payload::Json(RawValue::from_string(r#"{"n":1,"text":"a hundred bytes of payload, more or less, like the benchmark's events"}"#.into()).unwrap()),
            );
            publisher.publish(p).await.unwrap();
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let received = || {
        nodes
            .iter()
            .map(|(_, s)| s.0.load(Ordering::Relaxed))
            .sum::<usize>()
    };
    let expected = match mode {
        ChannelMode::Tenant => publications * 3,
        ChannelMode::Room => publications,
    };
    while received() < expected && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let (redis_cpu, me_cpu) = (cpu(&redis_pid) - redis_before, cpu(&me) - me_before);
    let per = |s: f64| s * 1e6 / publications as f64;
    println!(
        "{mode:?}: {publications} publications to {rooms} rooms in {secs:.2} s ({:.0}/s); \
         messages received by the nodes per publication {:.2}; Redis CPU {:.1} us and \
         nodes' CPU {:.1} us per publication",
        publications as f64 / secs,
        received() as f64 / publications as f64,
        per(redis_cpu),
        per(me_cpu),
    );
    for (broker, _) in &nodes {
        broker.close().await;
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let publications = args.next().and_then(|a| a.parse().ok()).unwrap_or(30_000);
    let rooms = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let redis = RedisServer::start().unwrap();
    run(ChannelMode::Tenant, &redis, publications, rooms).await;
    run(ChannelMode::Room, &redis, publications, rooms).await;
    run(ChannelMode::Tenant, &redis, publications, rooms).await;
    run(ChannelMode::Room, &redis, publications, rooms).await;
}
