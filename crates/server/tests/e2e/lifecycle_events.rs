//! Lifecycle events (`[lifecycle]`): sessions' connects and disconnects, users online and
//! offline, rooms occupied and vacated, posted to a real HTTP receiver that checks every
//! signature, and published to rooms; across two nodes, a user goes online once, and offline
//! with a node that dies.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::{node_config, Prefix};
use crate::harness::{down_url, Backend, Config, Server, BACKEND_SECRET};

/// The harness defaults with the lifecycle webhook at `url`.
fn hooked(url: &str, extra: &str) -> Config {
    Config::new().set(
        "lifecycle",
        &format!(
            "{{ webhook = {{ url = \"{url}\", secret = \"{BACKEND_SECRET}\", flush_ms = 20, \
             retry_min_ms = 20 {extra} }} }}"
        ),
    )
}

/// The kinds of `events`, in order, with the user or room each is about.
fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let about = e["user"].as_str().or(e["room"].as_str()).unwrap_or("");
            format!("{} {about}", e["kind"].as_str().unwrap_or("?"))
        })
        .collect()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

#[tokio::test]
async fn sessions_users_and_rooms_reach_the_webhook_in_order() {
    let backend = Backend::start().await;
    let server = Server::start(hooked(&format!("{}/hooks", backend.url()), "")).await;
    let mut first = server.connect_user("7", "acme").await;
    first.join("order:1").await;
    let mut second = server.connect_user("7", "acme").await;
    // A marker made after both: whatever they caused has come by the time it has.
    let mut marker = server.connect_user("marker", "acme").await;
    let events = backend
        .hooks_until(|e| {
            e.iter()
                .any(|e| e["kind"] == "connect" && e["user"] == "marker")
        })
        .await;
    let events: Vec<Value> = events
        .into_iter()
        .filter(|e| e["user"] != "marker" && e["room"] != "user:marker")
        .collect();
    let session = first.session();
    // The session's auto-joined rooms may come first: it was placed in them before it began.
    let connect = events.iter().find(|e| e["kind"] == "connect").unwrap();
    assert_eq!(
        (&connect["tenant"], &connect["user"], &connect["session"]),
        (&json!("acme"), &json!("7"), &json!(session))
    );
    assert_eq!(connect["transport"], "websocket");
    assert_eq!(connect["node"], "standalone");
    assert!(connect["at"].as_str().unwrap().ends_with('Z'), "{connect}");
    // One user_online for two sessions; the auto-joined rooms and order:1 occupied once.
    assert_eq!(count(&events, "user_online"), 1, "{events:?}");
    let occupied: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "room_occupied")
        .map(|e| e["room"].as_str().unwrap())
        .collect();
    assert_eq!(occupied, ["user:7", "tenant:acme", "order:1"], "{events:?}");

    first.close(1000).await;
    marker.close(1000).await;
    let events = backend
        .hooks_until(|e| {
            e.iter()
                .any(|e| e["kind"] == "disconnect" && e["user"] == "marker")
        })
        .await;
    let gone = events
        .iter()
        .find(|e| e["kind"] == "disconnect" && e["user"] == "7")
        .unwrap();
    assert_eq!(gone["session"], session, "{gone}");
    assert_eq!(gone["reason"], "normal closure", "{gone}");
    // The other session holds the user and its rooms: only order:1 and the marker's rooms
    // were vacated, and only the marker went offline.
    let offline: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "user_offline")
        .collect();
    assert_eq!(offline.len(), 1, "{events:?}");
    assert_eq!(offline[0]["user"], "marker");
    let mut vacated: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "room_vacated")
        .map(|e| e["room"].as_str().unwrap())
        .collect();
    vacated.sort_unstable();
    assert_eq!(vacated, ["order:1", "user:marker"], "{events:?}");
    second.close(1000).await;
    let events = backend
        .hooks_until(|e| count(e, "user_offline") == 2 && count(e, "room_vacated") == 4)
        .await;
    // In order: the user's last disconnect comes before it goes offline.
    let order = kinds(&events);
    let last_disconnect = order
        .iter()
        .rposition(|k| k.starts_with("disconnect"))
        .unwrap();
    let offline = order.iter().rposition(|k| k == "user_offline 7").unwrap();
    assert!(last_disconnect < offline, "{order:?}");
    // Counted once the receiver's answer is back.
    for _ in 0..100 {
        if server.metric("roomcast_webhook_delivered_total").await == events.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.metric("roomcast_webhook_delivered_total").await,
        events.len() as u64
    );
}

#[tokio::test]
async fn a_failing_receiver_gets_the_batch_again_and_a_dead_one_costs_counted_drops() {
    let backend = Backend::start().await;
    let server = Server::start(hooked(&format!("{}/hooks-flaky", backend.url()), "")).await;
    let client = server.connect_user("7", "acme").await;
    // Two posts answered 503, then the same events delivered.
    let events = backend.hooks_until(|e| count(e, "connect") == 1).await;
    assert_eq!(count(&events, "user_online"), 1, "{events:?}");
    assert!(server.metric("roomcast_webhook_failed_posts_total").await >= 2);
    drop(client);

    // Nothing listens: every batch is given up after its attempts, or dropped once the queue
    // is full, and both are counted.
    let server = Server::start(hooked(
        &format!("{}/hooks", down_url()),
        ", queue_max = 1, batch_max = 1, max_attempts = 2",
    ))
    .await;
    let mut clients = Vec::new();
    for n in 0..10 {
        clients.push(server.connect_user(&n.to_string(), "acme").await);
    }
    let full = "roomcast_webhook_dropped_total{reason=\"queue_full\"}";
    let given_up = "roomcast_webhook_dropped_total{reason=\"given_up\"}";
    for _ in 0..300 {
        if server.metric(full).await > 0 && server.metric(given_up).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.metric(full).await > 0);
    assert!(server.metric(given_up).await > 0);
    assert_eq!(server.metric("roomcast_webhook_delivered_total").await, 0);
}

#[tokio::test]
async fn presence_is_published_to_the_tenant() {
    let server = Server::start(Config::new().with(
        r#"
[[lifecycle.publish]]
kind = "user_online"
event = "user:online"
rooms = ["tenant:{tenant}"]
data = { userId = "{user}", online = true }
[[lifecycle.publish]]
kind = "user_offline"
event = "user:offline"
rooms = ["tenant:{tenant}"]
"#,
    ))
    .await;
    let mut watcher = server.connect_user("1", "acme").await;
    let mut other_tenant = server.connect_user("1", "globex").await;
    // The watcher's own arrival first.
    let own = watcher.recv_event().await;
    assert_eq!(own["data"], json!({"userId": "1", "online": true}));
    let mut user = server.connect_user("8", "acme").await;
    let online = watcher.recv_event().await;
    assert_eq!(
        (&online["event"], &online["room"], &online["data"]),
        (
            &json!("user:online"),
            &json!("tenant:acme"),
            &json!({"userId": "8", "online": true})
        )
    );
    user.close(1000).await;
    let offline = watcher.recv_event().await;
    assert_eq!(offline["event"], "user:offline");
    assert_eq!(offline["data"]["user"], "8", "{offline}");
    assert_eq!(offline["data"]["kind"], "user_offline", "{offline}");
    // globex's connection heard only its own user's arrival.
    let own = other_tenant.recv_event().await;
    assert_eq!(own["room"], "tenant:globex");
    other_tenant
        .expect_no_message(Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn a_user_goes_online_once_across_nodes_and_offline_with_a_node_that_dies() {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let backend = Backend::start().await;
    let prefix = Prefix::new("lifecycle");
    let hook = format!(
        "{{ webhook = {{ url = \"{}/hooks\", secret = \"{BACKEND_SECRET}\", flush_ms = 20, \
         kinds = [\"user_online\", \"user_offline\"] }} }}",
        backend.url()
    );
    let a = Server::start(node_config(&redis, &prefix, "a").set("lifecycle", &hook)).await;
    let b = Server::start(node_config(&redis, &prefix, "b").set("lifecycle", &hook)).await;
    let mut on_a = a.connect_user("7", "acme").await;
    let events = backend.hooks_until(|e| count(e, "user_online") == 1).await;
    assert_eq!(events[0]["node"], "a", "{events:?}");
    // The same user on node b: already online in the cluster.
    let _on_b = b.connect_user("7", "acme").await;
    on_a.sync().await;
    on_a.close(1000).await;
    // Its session on b holds it online. (A later marker, a user of its own, comes after.)
    let _marker = a.connect_user("marker", "acme").await;
    let events = backend.hooks_until(|e| count(e, "user_online") == 2).await;
    assert_eq!(
        kinds(&events),
        ["user_online 7", "user_online marker"],
        "{events:?}"
    );

    // b dies: a reaps it, and the user goes offline with it.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &b.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let events = backend.hooks_until(|e| count(e, "user_offline") == 1).await;
    let offline = events.iter().find(|e| e["kind"] == "user_offline").unwrap();
    assert_eq!(
        (&offline["user"], &offline["node"], &offline["reason"]),
        (&json!("7"), &json!("a"), &json!("node gone"))
    );
}
