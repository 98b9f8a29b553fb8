//! The Redis broker against a private Redis: subscriptions are in place when the calls that
//! make them return, and publications reach every broker's sink with one sequence per room.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use roomcast_broker::{Broker, Deliver, Payload, Position, Publication, Target};
use roomcast_redis::{ChannelListener, ChannelMode, ClusterOptions, RedisBroker};
use roomcast_testkit::{require_redis_binaries, RedisServer};
use serde_json::value::RawValue;

fn options(url: &str, node: &str) -> ClusterOptions {
    ClusterOptions {
        url: url.to_owned(),
        node_id: node.to_owned(),
        prefix: "t".to_owned(),
        heartbeat: Duration::from_millis(200),
        node_ttl: Duration::from_secs(3),
        stream_ttl: Duration::from_secs(60),
        timeout: Duration::from_secs(2),
        channels: ChannelMode::Tenant,
        history: None,
        recovery: None,
    }
}

/// Records the offsets it is handed.
#[derive(Debug, Default)]
struct Sink(Mutex<Vec<Option<u64>>>);

impl Deliver for Sink {
    fn deliver(
        &self,
        p: &Publication,
        position: &mut dyn FnMut(usize) -> Option<Position>,
    ) -> usize {
        for i in 0..p.target.rooms().len() {
            self.0.lock().unwrap().push(position(i).map(|p| p.offset));
        }
        1
    }
}

#[derive(Debug)]
struct Quiet;

impl ChannelListener for Quiet {
    fn message(&self, _channel: &str, _payload: &[u8]) {}
}

fn numsub(redis: &RedisServer, channel: &str) -> String {
    redis.cli(&["PUBSUB", "NUMSUB", channel]).unwrap()
}

#[tokio::test]
async fn a_listen_is_in_place_when_it_returns() {
    if !require_redis_binaries() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let broker = RedisBroker::connect(options(&redis.url(), "a"), Arc::new(Sink::default()))
        .await
        .unwrap();
    for i in 0..20 {
        let channel = format!("k-request#/{i}#");
        broker
            .listen(channel.clone(), Arc::new(Quiet))
            .await
            .unwrap();
        let answer = numsub(&redis, &channel);
        assert!(answer.trim_end().ends_with('1'), "{channel}: {answer:?}");
    }
}

#[tokio::test]
async fn two_brokers_share_one_sequence_per_room() {
    if !require_redis_binaries() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let (sa, sb) = (Arc::new(Sink::default()), Arc::new(Sink::default()));
    let a = RedisBroker::connect(options(&redis.url(), "a"), sa.clone())
        .await
        .unwrap();
    let b = RedisBroker::connect(options(&redis.url(), "b"), sb.clone())
        .await
        .unwrap();
    a.tenant_joined("acme");
    b.tenant_joined("acme");
    // Wait until both subscriptions are in place (the tenant channel has two subscribers).
    let channel = a.keys().tenant_channel("acme");
    for _ in 0..100 {
        let answer = redis.cli(&["PUBSUB", "SHARDNUMSUB", &channel]).unwrap();
        if answer.trim_end().ends_with('2') {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let publication = || {
        Publication::new(
            "/",
            Target::Tenant {
                tenant: "acme".into(),
                rooms: vec!["r".into()],
                users: vec![],
            },
            "e",
            Payload::Json(RawValue::from_string("1".into()).unwrap()),
        )
    };
    for i in 0..10 {
        let via = if i % 2 == 0 { &a } else { &b };
        via.publish(publication()).await.unwrap();
    }
    for _ in 0..100 {
        if sa.0.lock().unwrap().len() == 10 && sb.0.lock().unwrap().len() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected: Vec<Option<u64>> = (1..=10).map(Some).collect();
    assert_eq!(*sa.0.lock().unwrap(), expected);
    assert_eq!(*sb.0.lock().unwrap(), expected);
}

fn acme(room: &str) -> Publication {
    Publication::new(
        "/",
        Target::Tenant {
            tenant: "acme".into(),
            rooms: vec![room.into()],
            users: vec![],
        },
        "e",
        Payload::Json(RawValue::from_string("1".into()).unwrap()),
    )
}

#[tokio::test]
async fn subscribed_resolves_once_a_new_channel_is_in_place() {
    if !require_redis_binaries() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let a = RedisBroker::connect(options(&redis.url(), "a"), Arc::new(Sink::default()))
        .await
        .unwrap();
    assert!(a.subscribed().is_none(), "nothing asked for yet");
    let channel = a.keys().tenant_channel("acme");
    a.tenant_joined("acme");
    let wait = a
        .subscribed()
        .expect("a new channel is not in place at once");
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap();
    let answer = redis.cli(&["PUBSUB", "SHARDNUMSUB", &channel]).unwrap();
    assert!(answer.trim_end().ends_with('1'), "{answer:?}");
    assert!(a.subscribed().is_none(), "in place: nothing to wait for");
}

/// A publish Redis does not answer in time may still be carried out later: it is refused, not
/// delivered on the publishing node as well, so that nobody gets it twice.
#[tokio::test]
async fn a_publish_redis_fails_to_take_is_refused_and_never_doubled() {
    if !require_redis_binaries() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let sink = Arc::new(Sink::default());
    let mut opts = options(&redis.url(), "a");
    opts.timeout = Duration::from_millis(300);
    let a = RedisBroker::connect(opts, sink.clone()).await.unwrap();
    a.tenant_joined("acme");
    if let Some(wait) = a.subscribed() {
        wait.await;
    }
    // A first publish loads the script, so that the refused one is a single command.
    a.publish(acme("r")).await.unwrap();
    redis.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]).unwrap();
    let refused = a.publish(acme("r")).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(a.status().failed, 1);
    assert_eq!(a.status().local_only, 0);
    assert_eq!(*sink.0.lock().unwrap(), [Some(1)], "not delivered here");
    // Once the pause ends Redis carries the publish out: it arrives once, from Redis.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(*sink.0.lock().unwrap(), [Some(1), Some(2)]);
}

/// Records the recovery log id of every logged delivery, in delivery order.
#[derive(Debug, Default)]
struct LogSink(Mutex<Vec<String>>);

impl Deliver for LogSink {
    fn deliver(
        &self,
        p: &Publication,
        _position: &mut dyn FnMut(usize) -> Option<Position>,
    ) -> usize {
        if let Some(id) = &p.log_offset {
            self.0.lock().unwrap().push(id.to_string());
        }
        1
    }
}

#[tokio::test]
async fn a_recovery_meets_live_deliveries_with_no_gap_and_no_duplicate() {
    if !require_redis_binaries() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let sink = Arc::new(LogSink::default());
    let mut opts = options(&redis.url(), "a");
    opts.recovery = Some(roomcast_broker::LogLimits {
        max_events: 10_000,
        max_age: Duration::from_secs(60),
        max_total: 10_000,
    });
    let broker = RedisBroker::connect(opts, sink.clone()).await.unwrap();
    broker.tenant_joined("acme");
    if let Some(subscribed) = broker.subscribed() {
        subscribed.await;
    }
    let logged = |room: &str| {
        let mut p = acme(room);
        p.logged = true;
        p
    };
    for _ in 0..3 {
        broker.publish(logged("a")).await.unwrap();
    }
    // Where a client stopped: the second of them, once delivered.
    let mut delivered = Vec::new();
    for _ in 0..100 {
        delivered = sink.0.lock().unwrap().clone();
        if delivered.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(delivered.len(), 3);
    assert_eq!(
        broker.log_position("acme", "/").await.unwrap().to_string(),
        delivered[2]
    );
    let after = delivered[1].clone();
    // Publishes go on while the recovery reads and finishes.
    let publisher = {
        let broker = broker.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                let room = if i % 2 == 0 { "a" } else { "b" };
                broker.publish(logged(room)).await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let recovering = broker.recover("acme", "/", &after, 1_000).await.unwrap();
    let mut checked = false;
    recovering.finish(&mut |missed| {
        // Deliveries are held while this runs: everything delivered so far after the offset
        // is what was missed, and nothing delivered from here on is among it.
        let so_far = sink.0.lock().unwrap().clone();
        let from = so_far.iter().position(|id| *id == after).unwrap() + 1;
        let ids: Vec<String> = missed.events.iter().map(|(id, _)| id.to_string()).collect();
        assert!(missed.complete);
        assert_eq!(ids, so_far[from..].to_vec());
        checked = true;
    });
    assert!(checked);
    publisher.await.unwrap();
    // An offset the log no longer holds, its oldest entry younger than the age bound (so
    // trimmed by count), does not continue.
    let mut seen = None;
    broker
        .recover("acme", "/", "1-0", 1_000)
        .await
        .unwrap()
        .finish(&mut |missed| seen = Some(missed.complete));
    assert_eq!(seen, Some(false));
    // Sessions: kept, taken once.
    broker
        .put_session("p1", r#"{"conns":[1]}"#.into(), 1, Duration::from_secs(5))
        .await
        .unwrap();
    broker
        .touch_sessions(vec!["p1".into(), "gone".into()], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        broker.take_session("p1").await.unwrap().as_deref(),
        Some(r#"{"conns":[1]}"#)
    );
    assert_eq!(broker.take_session("p1").await.unwrap(), None);
    // A newer connection of the session wrote it: the older one's late writes leave it.
    for (record, owner) in [(r#"{"conns":[1,2]}"#, 2), (r#"{"conns":[1]}"#, 1)] {
        broker
            .put_session("p2", record.into(), owner, Duration::from_secs(5))
            .await
            .unwrap();
    }
    broker.end_session("p2", 1).await.unwrap();
    assert_eq!(
        broker.take_session("p2").await.unwrap().as_deref(),
        Some(r#"{"conns":[1,2]}"#)
    );
    // Its own connection ends it.
    broker
        .put_session("p3", r#"{"conns":[4]}"#.into(), 4, Duration::from_secs(5))
        .await
        .unwrap();
    broker.end_session("p3", 4).await.unwrap();
    assert_eq!(broker.take_session("p3").await.unwrap(), None);
}
