//! The node registry against real Redis servers started for each test: membership,
//! expiry, requests between nodes, reconnection after a restart, and a Redis Cluster.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roomcast_broker::BoxFuture;
use roomcast_redis::{
    ChannelMode, ClusterOptions, NodeAnswer, NodeInfo, RedisError, Registry, RequestHandler,
    TIMED_OUT,
};
use roomcast_testkit::{require_redis_binaries, unique_prefix, RedisCluster, RedisServer};
use serde_json::{json, Value};
use tokio::time::{sleep, Instant};

/// How long a test waits for something that should happen within a TTL or a reconnection.
const PATIENCE: Duration = Duration::from_secs(10);

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The heartbeat of every test.
const HEARTBEAT: Duration = Duration::from_millis(200);
/// The TTL of the expiry test: short, so that it runs fast.
const SHORT_TTL: Duration = Duration::from_millis(600);
/// The TTL of the other tests: long enough that a heartbeat delayed on a busy machine does
/// not let a live node expire.
const TTL: Duration = Duration::from_secs(3);

fn options(url: &str, prefix: &str, node: &str) -> ClusterOptions {
    ClusterOptions {
        url: url.to_owned(),
        node_id: node.to_owned(),
        prefix: prefix.to_owned(),
        heartbeat: HEARTBEAT,
        node_ttl: TTL,
        stream_ttl: Duration::from_secs(60),
        timeout: Duration::from_millis(1000),
        channels: ChannelMode::Tenant,
        history: None,
        recovery: None,
    }
}

/// Answers `{"node": <id>, "body": <body>}`, after `delay`, and counts its calls.
#[derive(Debug)]
struct Echo {
    node: String,
    delay: Duration,
    calls: AtomicUsize,
}

impl Echo {
    fn new(node: &str, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            node: node.to_owned(),
            delay,
            calls: AtomicUsize::new(0),
        })
    }
}

impl RequestHandler for Echo {
    fn handle(&self, body: Value) -> BoxFuture<'static, Value> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let node = self.node.clone();
        let delay = self.delay;
        Box::pin(async move {
            sleep(delay).await;
            json!({"node": node, "body": body})
        })
    }
}

async fn join(
    url: &str,
    prefix: &str,
    node: &str,
    handler: Arc<Echo>,
) -> Result<Arc<Registry>, RedisError> {
    join_with_ttl(url, prefix, node, handler, TTL).await
}

async fn join_with_ttl(
    url: &str,
    prefix: &str,
    node: &str,
    handler: Arc<Echo>,
    ttl: Duration,
) -> Result<Arc<Registry>, RedisError> {
    let info = NodeInfo::new(node, format!("{node}.local:8080"), "test");
    let mut opts = options(url, prefix, node);
    opts.node_ttl = ttl;
    Registry::start(&opts, info, handler).await
}

async fn ids(registry: &Registry) -> Result<Vec<String>, RedisError> {
    Ok(registry.nodes().await?.into_iter().map(|n| n.id).collect())
}

/// Polls `check` every 50 ms until it returns true, for at most [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {PATIENCE:?}").into());
        }
        sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn answer_of(node: &str, body: Value) -> NodeAnswer {
    NodeAnswer {
        node: node.to_owned(),
        answer: Ok(json!({"node": node, "body": body})),
    }
}

#[tokio::test]
async fn start_refuses_settings_that_cannot_work() {
    let handler = Echo::new("a", Duration::ZERO);
    let mut opts = options("redis://127.0.0.1:1/0", "p", "a");
    let other = NodeInfo::new("b", "b:1", "test");
    let err = Registry::start(&opts, other, handler.clone()).await.err();
    assert!(matches!(err, Some(RedisError::Invalid(_))), "{err:?}");
    opts.heartbeat = opts.node_ttl;
    let info = NodeInfo::new("a", "a:1", "test");
    let err = Registry::start(&opts, info, handler).await.err();
    assert!(matches!(err, Some(RedisError::Invalid(_))), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_within_the_timeout_when_redis_is_absent() -> TestResult {
    if !require_redis_binaries() {
        return Ok(());
    }
    // A port that was just free, and has no server.
    let url = {
        let server = RedisServer::start()?;
        server.url()
    };
    let handler = Echo::new("a", Duration::ZERO);
    let started = join(&url, &unique_prefix("absent"), "a", handler).await;
    assert!(started.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registries_see_each_other() -> TestResult {
    if !require_redis_binaries() {
        return Ok(());
    }
    let server = RedisServer::start()?;
    let prefix = unique_prefix("see");
    let a = join(&server.url(), &prefix, "a", Echo::new("a", Duration::ZERO)).await?;
    let b = join(&server.url(), &prefix, "b", Echo::new("b", Duration::ZERO)).await?;
    assert_eq!(ids(&a).await?, ["a", "b"]);
    assert_eq!(ids(&b).await?, ["a", "b"]);
    let nodes = a.nodes().await?;
    assert_eq!(nodes[1], *b.info());
    assert_eq!(nodes[1].address, "b.local:8080");
    assert!(a.healthy() && b.healthy());
    // Heartbeats keep them there past the TTL.
    sleep(TTL + Duration::from_millis(500)).await;
    assert_eq!(ids(&a).await?, ["a", "b"]);
    a.leave().await?;
    b.leave().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_removes_the_node_at_once() -> TestResult {
    if !require_redis_binaries() {
        return Ok(());
    }
    let server = RedisServer::start()?;
    let prefix = unique_prefix("leave");
    let a = join(&server.url(), &prefix, "a", Echo::new("a", Duration::ZERO)).await?;
    let b = join(&server.url(), &prefix, "b", Echo::new("b", Duration::ZERO)).await?;
    b.leave().await?;
    assert!(!b.healthy());
    assert_eq!(ids(&a).await?, ["a"]);
    // No heartbeat brings it back.
    sleep(Duration::from_millis(500)).await;
    assert_eq!(ids(&a).await?, ["a"]);
    assert_eq!(
        server.cli(&["EXISTS", &format!("{prefix}:node:b")])?.trim(),
        "0"
    );
    b.leave().await?;
    a.leave().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_without_leaving_expires_after_the_ttl() -> TestResult {
    if !require_redis_binaries() {
        return Ok(());
    }
    let server = RedisServer::start()?;
    let prefix = unique_prefix("expire");
    let a = join(&server.url(), &prefix, "a", Echo::new("a", Duration::ZERO)).await?;
    let b = join_with_ttl(
        &server.url(),
        &prefix,
        "b",
        Echo::new("b", Duration::ZERO),
        SHORT_TTL,
    )
    .await?;
    // Listed while it beats (a read under load may fall between a short TTL and its renewal).
    eventually("b is listed", || async {
        ids(&a).await.is_ok_and(|ids| ids == ["a", "b"])
    })
    .await?;
    // Dropped without leave: its heartbeat and connections stop, as if it were killed.
    drop(b);
    eventually("b expires", || async {
        ids(&a).await.is_ok_and(|ids| ids == ["a"])
    })
    .await?;
    // Its member is collected too, not only skipped.
    eventually("b's member is removed", || async {
        server
            .cli(&["ZRANGE", &format!("{prefix}:nodes"), "0", "-1"])
            .is_ok_and(|members| members.trim() == "a")
    })
    .await?;
    a.leave().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_all_reaches_the_other_nodes_and_not_itself() -> TestResult {
    if !require_redis_binaries() {
        return Ok(());
    }
    let server = RedisServer::start()?;
    let prefix = unique_prefix("ask");
    let (ha, hb, hc) = (
        Echo::new("a", Duration::ZERO),
        Echo::new("b", Duration::ZERO),
        Echo::new("c", Duration::ZERO),
    );
    let a = join(&server.url(), &prefix, "a", ha.clone()).await?;
    let b = join(&server.url(), &prefix, "b", hb.clone()).await?;
    let c = join(&server.url(), &prefix, "c", hc.clone()).await?;
    let request = json!({"op": "count", "room": "r1"});
    let answers = a.ask_all(request.clone()).await?;
    assert_eq!(
        answers,
        [
            answer_of("b", request.clone()),
            answer_of("c", request.clone())
        ]
    );
    assert_eq!(ha.calls.load(Ordering::SeqCst), 0);
    assert_eq!(hb.calls.load(Ordering::SeqCst), 1);
    assert_eq!(hc.calls.load(Ordering::SeqCst), 1);
    assert_eq!(a.requests_in_flight(), 0);
    // And the other way round.
    assert_eq!(
        b.ask_all(json!(null)).await?,
        [answer_of("a", json!(null)), answer_of("c", json!(null))]
    );
    for r in [a, b, c] {
        r.leave().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_all_alone_asks_nobody() -> TestResult {
    if !require_redis_binaries() {
        return Ok(());
    }
    let server = RedisServer::start()?;
    let handler = Echo::new("a", Duration::ZERO);
    let a = join(&server.url(), &unique_prefix("alone"), "a", handler.clone()).await?;
    assert_eq!(a.ask_all(json!({})).await?, []);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
    a.leave().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_answer_in_time_times_out() -> TestResult {
    if !require_redis_binaries() {
        return Ok(());
    }
    let server = RedisServer::start()?;
    let prefix = unique_prefix("slow");
    let a = join(&server.url(), &prefix, "a", Echo::new("a", Duration::ZERO)).await?;
    let slow = join(
        &server.url(),
        &prefix,
        "b",
        Echo::new("b", Duration::from_secs(3)),
    )
    .await?;
    let fast = join(&server.url(), &prefix, "c", Echo::new("c", Duration::ZERO)).await?;
    let answers = a.ask_all(json!(1)).await?;
    assert_eq!(
        answers,
        [
            NodeAnswer {
                node: "b".into(),
                answer: Err(TIMED_OUT.into()),
            },
            answer_of("c", json!(1)),
        ]
    );
    assert_eq!(a.requests_in_flight(), 0);
    for r in [a, slow, fast] {
        r.leave().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_recover_after_redis_restarts() -> TestResult {
    if !require_redis_binaries() {
        return Ok(());
    }
    let mut server = RedisServer::start()?;
    let prefix = unique_prefix("restart");
    let a = join(&server.url(), &prefix, "a", Echo::new("a", Duration::ZERO)).await?;
    let b = join(&server.url(), &prefix, "b", Echo::new("b", Duration::ZERO)).await?;
    assert_eq!(
        a.ask_all(json!("before")).await?,
        [answer_of("b", json!("before"))]
    );

    // Every key is lost: the entries come back with the next heartbeats.
    tokio::task::block_in_place(|| server.restart())?;
    eventually("both reconnect", || async { a.healthy() && b.healthy() }).await?;
    eventually("both are listed again", || async {
        ids(&a).await.is_ok_and(|ids| ids == ["a", "b"])
    })
    .await?;
    // The subscriptions were renewed: requests reach b and replies reach a.
    eventually("b answers again", || async {
        a.ask_all(json!("after"))
            .await
            .is_ok_and(|answers| answers == [answer_of("b", json!("after"))])
    })
    .await?;
    eventually("a answers again", || async {
        b.ask_all(json!("after"))
            .await
            .is_ok_and(|answers| answers == [answer_of("a", json!("after"))])
    })
    .await?;
    a.leave().await?;
    b.leave().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_on_a_redis_cluster() -> TestResult {
    if !require_redis_binaries() {
        return Ok(());
    }
    let cluster = tokio::task::block_in_place(|| RedisCluster::start(3))?;
    let prefix = unique_prefix("cluster");
    let url = cluster.url();
    let a = join(&url, &prefix, "a", Echo::new("a", Duration::ZERO)).await?;
    let b = join(&url, &prefix, "b", Echo::new("b", Duration::ZERO)).await?;
    let c = join(&url, &prefix, "c", Echo::new("c", Duration::ZERO)).await?;
    assert_eq!(ids(&a).await?, ["a", "b", "c"]);
    assert_eq!(ids(&c).await?, ["a", "b", "c"]);
    assert_eq!(
        c.ask_all(json!({"op": "ping"})).await?,
        [
            answer_of("a", json!({"op": "ping"})),
            answer_of("b", json!({"op": "ping"}))
        ]
    );
    b.leave().await?;
    assert_eq!(ids(&a).await?, ["a", "c"]);
    assert_eq!(a.ask_all(json!(2)).await?, [answer_of("c", json!(2))]);
    a.leave().await?;
    c.leave().await?;
    Ok(())
}
