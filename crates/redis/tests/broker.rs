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
