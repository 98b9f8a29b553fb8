//! Micro-benchmark of the publish path over in-memory recipients: the server's real
//! `Node::publish` (the memory broker gives the room its position, the hub collects the
//! room's members under the index's read lock, encodes the event and its frame once, and
//! pushes the same bytes to every queue) with 10,000 connections in one
//! room, and with 10,000 connections in 1,000 rooms of 10. The queues are drained between
//! iterations, outside the measured time. Throughput is in deliveries.
//! Run with `cargo bench -p roomcast-bench --bench fanout`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomcast_broker::{Payload, Publication, Target};
use roomcast_engine::rooms::{ConnId, Member, RoomKey, WireFormat};
use roomcast_engine::OutQueue;
use roomcast_server::{App, Config, Plan};
use serde_json::value::RawValue;

const TENANT: &str = "bench-0";
const RECIPIENTS: usize = 10_000;
const DATA: &str = r#"{"seq":123456,"t":1760000000123456789,"p":3,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

/// An app whose index holds `RECIPIENTS` native connections spread over `rooms` rooms.
fn app_with(rooms: usize) -> (Arc<App>, Vec<Arc<OutQueue>>) {
    let (config, _secret) = Config::dev();
    let app = Plan::build(&config)
        .map(Plan::into_app)
        .unwrap_or_else(|e| panic!("app: {e:#}"));
    let mut queues = Vec::with_capacity(RECIPIENTS);
    for i in 0..RECIPIENTS {
        let queue = Arc::new(OutQueue::new(app.queue_limits));
        let member = Member {
            id: ConnId::next(),
            format: WireFormat::Native,
            queue: queue.clone(),
        };
        app.index.register(TENANT, &i.to_string(), member.clone());
        let room = format!("r{}", i % rooms);
        app.index
            .join(member.id, &RoomKey::new(TENANT, "/", &room))
            .unwrap_or_else(|e| panic!("join: {e}"));
        queues.push(queue);
    }
    (app, queues)
}

fn drain(queues: &[Arc<OutQueue>], scratch: &mut VecDeque<roomcast_engine::Outbound>) {
    for queue in queues {
        queue.drain(scratch);
        scratch.clear();
    }
}

fn fanout(c: &mut Criterion) {
    let data = RawValue::from_string(DATA.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let to_room = |room: &str| {
        Publication::new(
            "/",
            Target::Tenant {
                tenant: TENANT.into(),
                rooms: vec![room.into()],
                users: Vec::new(),
            },
            "tick",
            Payload::Json(data.clone()),
        )
    };
    // The memory broker completes at once: the runtime only drives the future.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(RECIPIENTS as u64));
    group.measurement_time(Duration::from_secs(5));

    let (app, queues) = app_with(1);
    let mut scratch = VecDeque::new();
    group.bench_function("one_room_10000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let publication = to_room("r0");
                let start = Instant::now();
                black_box(rt.block_on(app.node.publish(publication)).ok());
                total += start.elapsed();
                drain(&queues, &mut scratch);
            }
            total
        })
    });
    drop((app, queues));

    // The same 10,000 deliveries as 1,000 publishes to rooms of 10.
    let (app, queues) = app_with(1_000);
    let rooms: Vec<String> = (0..1_000).map(|r| format!("r{r}")).collect();
    group.bench_function("rooms_of_10_x1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                for room in &rooms {
                    black_box(rt.block_on(app.node.publish(to_room(room))).ok());
                }
                total += start.elapsed();
                drain(&queues, &mut scratch);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
