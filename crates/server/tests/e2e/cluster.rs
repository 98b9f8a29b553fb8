//! Cluster mode over Redis: several `roomcast` processes sharing the machine's Redis under a
//! key prefix of their own. A publish made on any node reaches every matching connection on
//! every node once, in one sequence per room, and never another tenant's connections.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::harness::{Client, Config, Server, ACME_KEY, PLATFORM_KEY};

/// A key prefix no other test uses; its keys are deleted when dropped.
pub(crate) struct Prefix(pub(crate) String);

impl Prefix {
    pub(crate) fn new(test: &str) -> Prefix {
        Prefix(roomcast_testkit::unique_prefix(&format!("rc-test-{test}")))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let keys = std::process::Command::new("redis-cli")
            .args(["--scan", "--pattern", &format!("{}:*", self.0)])
            .output();
        if let Ok(out) = keys {
            let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            for chunk in keys.chunks(100) {
                let _ = std::process::Command::new("redis-cli")
                    .arg("DEL")
                    .args(chunk)
                    .output();
            }
        }
    }
}

/// The configuration of one node of the cluster under `prefix`.
pub(crate) fn node_config(redis: &str, prefix: &Prefix, node: &str) -> Config {
    Config::new()
        .set("cluster.redis", &format!("{redis:?}"))
        .set("cluster.prefix", &format!("{:?}", prefix.0))
        .set("cluster.node_id", &format!("{node:?}"))
        .set("cluster.heartbeat_ms", "200")
        .set("cluster.node_ttl_ms", "1000")
        .set("cluster.stream_ttl_ms", "60000")
}

/// Publishes `sync` events to `room` of `tenant` through `via` until every client has one
/// (the first does, since a client hears it joined only once its node subscribed), and reads
/// them all, so that the test's own events start on empty connections.
pub(crate) async fn settle(via: &Server, tenant: &str, room: &str, clients: &mut [&mut Client]) {
    let mut seen = vec![false; clients.len()];
    for _ in 0..50 {
        via.publish(json!({"tenant": tenant, "rooms": [room], "event": "sync", "data": 0}))
            .await;
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(event) = c.next_event_within(Duration::from_millis(100)).await {
                seen[i] |= event["event"] == "sync";
            }
        }
        if seen.iter().all(|s| *s) {
            return;
        }
    }
    panic!("the nodes never all subscribed to {tenant}'s channel");
}

#[tokio::test]
async fn a_publish_on_either_node_reaches_both_once_in_one_sequence() {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new("two-nodes");
    let a = Server::start(node_config(&redis, &prefix, "a")).await;
    let b = Server::start(node_config(&redis, &prefix, "b")).await;
    let mut on_a = a.connect_user("1", "acme").await;
    let mut on_b = b.connect_user("2", "acme").await;
    let mut other_tenant = b.connect_user("3", "globex").await;
    for c in [&mut on_a, &mut on_b, &mut other_tenant] {
        c.join("order:1").await;
    }
    settle(&a, "acme", "order:1", &mut [&mut on_a, &mut on_b]).await;
    settle(&b, "globex", "order:1", &mut [&mut other_tenant]).await;

    let mut answered = Vec::new();
    for n in 0..10 {
        let via = if n % 2 == 0 { &a } else { &b };
        let answer = via
            .publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "step", "data": n}))
            .await;
        assert_eq!(answer["rooms"][0]["room"], "order:1", "{answer}");
        answered.push(answer["rooms"][0]["offset"].as_u64().expect("an offset"));
    }
    let mut offsets = Vec::new();
    for c in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for _ in 0..10 {
            let event = c.recv_event().await;
            assert_eq!(event["event"], "step", "{event}");
            got.push((
                event["data"].as_u64().unwrap(),
                event["offset"].as_u64().unwrap(),
            ));
        }
        c.expect_no_message(Duration::from_millis(300)).await;
        let data: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            data,
            (0..10).collect::<Vec<_>>(),
            "every event once, in publish order"
        );
        let offs: Vec<u64> = got.iter().map(|g| g.1).collect();
        assert!(
            offs.windows(2).all(|w| w[1] == w[0] + 1),
            "offsets {offs:?}"
        );
        offsets.push(offs);
    }
    assert_eq!(
        offsets[0], offsets[1],
        "one sequence for the room across the nodes"
    );
    assert_eq!(
        offsets[0], answered,
        "each publish answered with its offset"
    );
    other_tenant
        .expect_no_message(Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn randomized_publishes_from_every_node_reach_each_member_once() {
    randomized("tenant").await;
}

#[tokio::test]
async fn with_channels_per_room_too() {
    randomized("room").await;
}

/// Three nodes, three tenants, clients in random rooms on random nodes, publishes from every
/// node: each member gets each event of its rooms once, in order per room, and nothing else.
async fn randomized(channels: &str) {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new(&format!("random-{channels}"));
    let config = |node: &str| {
        node_config(&redis, &prefix, node).set("cluster.channels", &format!("{channels:?}"))
    };
    let nodes = [
        Server::start(config("n1")).await,
        Server::start(config("n2")).await,
        Server::start(config("n3")).await,
    ];
    let tenants = ["acme", "globex", "initech"];
    let rooms = ["order:1", "order:2", "order:3"];
    let mut rng = StdRng::seed_from_u64(0x5eed);
    // (tenant, rooms) of every client, and the client.
    let mut clients: Vec<(usize, Vec<usize>, Client)> = Vec::new();
    for i in 0..18 {
        let tenant = i % tenants.len();
        let node = &nodes[rng.random_range(0..nodes.len())];
        let mut c = node.connect_user(&format!("u{i}"), tenants[tenant]).await;
        let mut mine = Vec::new();
        for (r, room) in rooms.iter().enumerate() {
            if rng.random_bool(0.6) {
                c.join(room).await;
                mine.push(r);
            }
        }
        // Everyone is in a room of their tenant for the settling events.
        c.join("order:sync").await;
        clients.push((tenant, mine, c));
    }
    for (t, tenant) in tenants.iter().enumerate() {
        for node in &nodes {
            let mut members: Vec<&mut Client> = clients
                .iter_mut()
                .filter(|(ct, _, _)| *ct == t)
                .map(|(_, _, c)| c)
                .collect();
            settle(node, tenant, "order:sync", &mut members).await;
        }
    }
    // Publishes from every node; each names its tenant, room and number.
    let mut sent: Vec<(usize, usize)> = Vec::new();
    for n in 0..90 {
        let (t, r) = (
            rng.random_range(0..tenants.len()),
            rng.random_range(0..rooms.len()),
        );
        let node = &nodes[rng.random_range(0..nodes.len())];
        node.publish(json!({
            "tenant": tenants[t], "rooms": [rooms[r]], "event": "e",
            "data": {"n": n, "tenant": tenants[t]}
        }))
        .await;
        sent.push((t, r));
    }
    for (t, mine, c) in &mut clients {
        let expected: Vec<u64> = (0..sent.len() as u64)
            .filter(|&n| {
                let (st, sr) = sent[n as usize];
                st == *t && mine.contains(&sr)
            })
            .collect();
        let mut got: Vec<u64> = Vec::new();
        let mut last_offset: HashMap<String, u64> = HashMap::new();
        while got.len() < expected.len() {
            let event = c.recv_event().await;
            assert_eq!(
                event["data"]["tenant"], tenants[*t],
                "another tenant's event: {event}"
            );
            let room = event["room"].as_str().unwrap().to_owned();
            let offset = event["offset"].as_u64().unwrap();
            if let Some(prev) = last_offset.insert(room.clone(), offset) {
                assert!(offset > prev, "{room}: offset {offset} after {prev}");
            }
            got.push(event["data"]["n"].as_u64().unwrap());
        }
        c.expect_no_message(Duration::from_millis(200)).await;
        // Per room, the order of publishing; across rooms, any interleaving.
        let by_room = |list: &[u64]| -> BTreeMap<usize, Vec<u64>> {
            let mut map: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
            for &n in list {
                map.entry(sent[n as usize].1).or_default().push(n);
            }
            map
        };
        assert_eq!(by_room(&got), by_room(&expected));
    }
}

/// A client hears that it connected (welcome, `CONNECT`) or joined (a reply) only once its
/// node's subscription is in effect: the very first publish made after that, on another node,
/// reaches it. Many fresh tenants at once, so that the node has many subscriptions to make.
#[tokio::test]
async fn the_first_publish_after_a_join_reaches_the_client() {
    first_publish_after_join("tenant").await;
}

#[tokio::test]
async fn the_first_publish_after_a_join_reaches_the_client_with_channels_per_room() {
    first_publish_after_join("room").await;
}

async fn first_publish_after_join(channels: &str) {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new(&format!("first-publish-{channels}"));
    let config = |node: &str| {
        node_config(&redis, &prefix, node).set("cluster.channels", &format!("{channels:?}"))
    };
    let a = Server::start(config("a")).await;
    let b = Server::start(config("b")).await;
    let one = |i: usize| {
        let (a, b) = (&a, &b);
        async move {
            let tenant = format!("fresh{i}");
            // Told by a welcome (the tenant's first connection on the node), ...
            let mut welcomed = b.connect_user("w", &tenant).await;
            a.publish(json!({"tenant": tenant, "users": ["w"], "event": "first", "data": i}))
                .await;
            let event = welcomed.recv_event().await;
            assert_eq!(
                (&event["event"], &event["data"]),
                (&json!("first"), &json!(i))
            );
            // ... by a reply to a join, and by a `CONNECT` answer.
            let mut joined = b.connect_user("j", &tenant).await;
            joined.join("order:1").await;
            let mut sio = b
                .sio_connect("/", &crate::harness::token("s", &tenant))
                .await;
            a.publish(json!({
                "tenant": tenant, "rooms": ["order:1"], "users": ["s"],
                "event": "first", "data": i,
            }))
            .await;
            let event = joined.recv_event().await;
            assert_eq!(
                (&event["event"], &event["data"]),
                (&json!("first"), &json!(i))
            );
            let (_, args) = sio.event("first").await;
            assert_eq!(args, [json!(i)], "{tenant}");
        }
    };
    futures_util::future::join_all((0..60).map(one)).await;
}

/// Retries with one idempotency key, sent at once to both nodes, publish once: every answer is
/// the first one, and each client gets the event once.
#[tokio::test]
async fn concurrent_retries_to_two_nodes_publish_once() {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new("idempotency");
    let a = Server::start(node_config(&redis, &prefix, "a")).await;
    let b = Server::start(node_config(&redis, &prefix, "b")).await;
    let mut on_a = a.connect_user("1", "acme").await;
    let mut on_b = b.connect_user("2", "acme").await;
    for c in [&mut on_a, &mut on_b] {
        c.join("order:7").await;
    }
    for round in 0..3 {
        let body = json!({"tenant": "acme", "rooms": ["order:7"], "event": "paid",
                          "data": round, "idempotency_key": format!("pay-{round}")});
        let retries = (0..8).map(|i| {
            let (via, body) = (if i % 2 == 0 { &a } else { &b }, body.clone());
            async move { via.publish(body).await }
        });
        let answers = futures_util::future::join_all(retries).await;
        assert!(answers.iter().all(|x| *x == answers[0]), "{answers:?}");
        for c in [&mut on_a, &mut on_b] {
            assert_eq!(c.recv_event().await["data"], round);
        }
    }
    for c in [&mut on_a, &mut on_b] {
        c.expect_no_message(Duration::from_millis(300)).await;
    }
}

/// A cluster keeps history in Redis: what is published on one node is read back on another,
/// with the room's cluster-wide offsets.
#[tokio::test]
async fn history_is_kept_in_redis_and_read_on_any_node() {
    cluster_history("tenant").await;
}

#[tokio::test]
async fn history_is_kept_in_redis_with_channels_per_room_too() {
    cluster_history("room").await;
}

async fn cluster_history(channels: &str) {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new(&format!("history-{channels}"));
    let config = |node: &str| {
        node_config(&redis, &prefix, node)
            .set("cluster.channels", &format!("{channels:?}"))
            .set(
                "history.rooms",
                r#"[{ pattern = "order:*", max_events = 3, max_age_ms = 60000 }]"#,
            )
    };
    let a = Server::start(config("a")).await;
    let b = Server::start(config("b")).await;
    for n in 1..=4 {
        let answer = a
            .publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "step", "data": n}))
            .await;
        assert_eq!(answer["rooms"][0]["offset"], n, "{answer}");
    }
    let (status, all) = b
        .api(
            "GET",
            "/api/history?tenant=acme&room=order:1",
            Some(ACME_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{all}");
    let data = |v: &Value| -> Vec<u64> {
        v["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events in {v}"))
            .iter()
            .map(|e| e["data"].as_u64().unwrap())
            .collect()
    };
    // About the last 3 (Redis trims streams approximately: it may keep more).
    let kept = data(&all);
    assert!(kept.ends_with(&[2, 3, 4]), "{all}");
    assert_eq!(all["current"]["offset"], 4, "{all}");
    assert_eq!(all["events"][0]["room"], "order:1");
    let epoch = all["current"]["epoch"].as_str().unwrap().to_owned();
    let mut client = b.connect_user("7", "acme").await;
    let after = client
        .request(json!({"type": "history", "room": "order:1",
                        "since": {"offset": 2, "epoch": epoch}}))
        .await;
    assert_eq!(
        (data(&after), &after["complete"]),
        (vec![3, 4], &json!(true)),
        "{after}"
    );
    // A room no rule names keeps nothing.
    let none = client
        .request(json!({"type": "history", "room": "chat:1"}))
        .await;
    assert_eq!(crate::harness::error_code(&none), "not_kept", "{none}");
}

#[tokio::test]
async fn health_and_metrics_show_the_redis_broker() {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new("health");
    let a = Server::start(node_config(&redis, &prefix, "a")).await;
    let (status, body) = a.http("GET", "/health", None, None).await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["broker"]["kind"], "redis", "{health}");
    assert_eq!(health["broker"]["state"], "up", "{health}");
    assert_eq!(
        a.metric("roomcast_broker_local_only_publishes_total").await,
        0
    );
}

/// `GET /api/connections` on `server` with the platform key.
async fn connections(server: &Server) -> Value {
    let (status, body) = server
        .api("GET", "/api/connections", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn node_ids(answer: &Value) -> Vec<String> {
    let mut ids: Vec<String> = answer["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["ok"] == true)
        .map(|n| n["node"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn presence_and_disconnect_reach_every_node() {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new("presence");
    let a = Server::start(node_config(&redis, &prefix, "a")).await;
    let b = Server::start(node_config(&redis, &prefix, "b")).await;
    let mut on_a = a.connect_user("7", "acme").await;
    let mut on_b = b.connect_user("7", "acme").await;
    let _other = b.connect_user("8", "globex").await;

    let all = connections(&a).await;
    assert_eq!(node_ids(&all), ["a", "b"], "{all}");
    assert_eq!(all["connections"], 3, "{all}");
    assert_eq!(all["tenants"][0]["tenant"], "acme", "{all}");
    assert_eq!(all["tenants"][0]["connections"], 2, "{all}");
    assert_eq!(
        all["tenants"][0]["users"], 1,
        "one user on two nodes: {all}"
    );

    // A tenant key sees its own tenant only, on every node.
    let (status, body) = b.api("GET", "/api/connections", Some(ACME_KEY), None).await;
    assert_eq!(status, 200);
    let acme = body;
    assert_eq!(acme["connections"], 2, "{acme}");

    let (_, body) = b
        .api(
            "GET",
            "/api/users/7/status?tenant=acme",
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    let status = body;
    assert_eq!(status["online"], true, "{status}");
    assert_eq!(status["connections"], 2, "{status}");
    let sessions: Vec<String> = status["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert!(sessions.contains(&on_a.session()) && sessions.contains(&on_b.session()));

    // One session on the other node, by its id.
    let (status, body) = b
        .api(
            "POST",
            "/api/disconnect",
            Some(PLATFORM_KEY),
            Some(&json!({"session": on_a.session(), "reason": "moved"}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disconnected"], 1);
    let bye = on_a.expect_disconnect(4004).await;
    assert_eq!(bye["reason"], "moved", "{bye}");

    // The user's remaining connection, from the node it is not on.
    let (_, body) = a
        .api(
            "POST",
            "/api/disconnect",
            Some(ACME_KEY),
            Some(&json!({"user": "7"}).to_string()),
        )
        .await;
    assert_eq!(body["disconnected"], 1, "{body}");
    on_b.expect_disconnect(4004).await;
}

#[tokio::test]
async fn a_killed_node_leaves_within_the_ttl_and_a_stopped_one_at_once() {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new("registry");
    // node_ttl_ms 1000: a killed node is gone from the registry within 1000 ms of its last
    // heartbeat, so within 1200 ms of the kill.
    let config = |node: &str| node_config(&redis, &prefix, node).set("cluster.timeout_ms", "1000");
    let a = Server::start(config("a")).await;
    let mut b = Server::start(config("b")).await;
    let c = Server::start(config("c")).await;
    assert_eq!(node_ids(&connections(&a).await), ["a", "b", "c"]);

    let killed = std::process::Command::new("kill")
        .args(["-KILL", &c.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let since = std::time::Instant::now();
    loop {
        let answer = connections(&a).await;
        let listed: Vec<&str> = answer["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["node"].as_str())
            .collect();
        if !listed.contains(&"c") {
            break;
        }
        // Twice the TTL is the documented bound; far past it is a failure.
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the killed node is still listed: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    b.terminate();
    b.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(
        node_ids(&connections(&a).await),
        ["a"],
        "a stopped node leaves at once"
    );
}

/// `/health` of `server` once its broker's state is `state`, within 20 s.
pub(crate) async fn health_when(server: &Server, state: &str) -> Value {
    for _ in 0..200 {
        let (_, body) = server.api("GET", "/health", None, None).await;
        if body["broker"]["state"] == state {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the broker never became {state}");
}

#[tokio::test]
async fn a_redis_restart_degrades_the_nodes_then_they_recover() {
    if !roomcast_testkit::require_redis_binaries() {
        return;
    }
    let mut redis = roomcast_testkit::RedisServer::start().unwrap();
    let prefix = Prefix::new("restart");
    let a = Server::start(node_config(&redis.url(), &prefix, "a")).await;
    let b = Server::start(node_config(&redis.url(), &prefix, "b")).await;
    let mut on_a = a.connect_user("1", "acme").await;
    let mut on_b = b.connect_user("2", "acme").await;
    on_a.join("order:1").await;
    on_b.join("order:1").await;
    settle(&a, "acme", "order:1", &mut [&mut on_a, &mut on_b]).await;

    redis.stop().unwrap();
    let health = health_when(&a, "degraded").await;
    assert_eq!(health["status"], "degraded", "{health}");
    // Redis is gone: a's own members still get a's publishes, counted as local only.
    let answer = a
        .publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "alone", "data": 1}))
        .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let event = on_a.recv_event().await;
    assert_eq!(event["event"], "alone", "{event}");
    on_b.expect_no_message(Duration::from_millis(300)).await;
    assert!(a.metric("roomcast_broker_local_only_publishes_total").await >= 1);

    redis.restart().unwrap();
    health_when(&a, "up").await;
    health_when(&b, "up").await;
    // Resubscribed: publishes cross the nodes again.
    settle(&b, "acme", "order:1", &mut [&mut on_a, &mut on_b]).await;
    b.publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "again", "data": 2}))
        .await;
    for c in [&mut on_a, &mut on_b] {
        let event = c.recv_event().await;
        assert_eq!(event["event"], "again", "{event}");
    }
}

#[tokio::test]
async fn a_redis_cluster_carries_every_tenant_between_the_nodes() {
    if !roomcast_testkit::require_redis_binaries() {
        return;
    }
    let redis = roomcast_testkit::RedisCluster::start(3).unwrap();
    let prefix = Prefix::new("redis-cluster");
    let a = Server::start(node_config(&redis.url(), &prefix, "a")).await;
    let b = Server::start(node_config(&redis.url(), &prefix, "b")).await;
    // Tenants whose channels and counters hash to different shards.
    let tenants = ["acme", "globex", "initech", "umbrella", "hooli"];
    let mut clients = Vec::new();
    for tenant in tenants {
        let mut on_a = a.connect_user("1", tenant).await;
        let mut on_b = b.connect_user("2", tenant).await;
        on_a.join("order:1").await;
        on_b.join("order:1").await;
        settle(&a, tenant, "order:1", &mut [&mut on_a, &mut on_b]).await;
        clients.push((tenant, on_a, on_b));
    }
    for (n, tenant) in tenants.iter().enumerate() {
        let via = if n % 2 == 0 { &a } else { &b };
        for i in 0..3 {
            via.publish(json!({"tenant": tenant, "rooms": ["order:1"], "event": "e", "data": {"t": tenant, "i": i}}))
                .await;
        }
    }
    for (tenant, on_a, on_b) in &mut clients {
        let mut offsets = Vec::new();
        for c in [on_a, on_b] {
            let mut seen = Vec::new();
            for i in 0..3 {
                let event = c.recv_event().await;
                assert_eq!(event["data"], json!({"t": tenant, "i": i}), "{event}");
                seen.push(event["offset"].as_u64().unwrap());
            }
            c.expect_no_message(Duration::from_millis(200)).await;
            offsets.push(seen);
        }
        assert_eq!(offsets[0], offsets[1], "{tenant}: one sequence");
    }
    let all = connections(&a).await;
    assert_eq!(node_ids(&all), ["a", "b"], "{all}");
    assert_eq!(all["connections"], 10, "{all}");
}
