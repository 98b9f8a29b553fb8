//! Publishing: `POST /api/publish` to rooms, users, a tenant and the whole platform, its
//! errors, and client publishes under the ACL.

use serde_json::{json, Value};

use crate::harness::{error_code, Config, Server, ACME_KEY, GLOBEX_KEY, PLATFORM_KEY};

/// The fields of an event, sorted, to check that nothing else is sent.
fn keys(event: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = event
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn room_events_carry_increasing_offsets_and_one_epoch() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.join("order:42").await;

    let mut epoch = None;
    for n in 1..=3u64 {
        let answer = server
            .publish(json!({
                "tenant": "acme", "rooms": ["order:42"], "event": "order:status_updated",
                "data": {"order_id": 42, "n": n, "text": "ünïcödé \"quoted\""}
            }))
            .await;
        assert_eq!(answer["ok"], true, "{answer}");
        assert_eq!(answer["delivered"], 1, "{answer}");
        let event = client.recv_event().await;
        assert_eq!(
            keys(&event),
            ["data", "epoch", "event", "offset", "room", "type"],
            "{event}"
        );
        assert_eq!(event["room"], "order:42");
        assert_eq!(event["event"], "order:status_updated");
        assert_eq!(
            event["data"],
            json!({"order_id": 42, "n": n, "text": "ünïcödé \"quoted\""})
        );
        assert_eq!(event["offset"], n, "{event}");
        let this_epoch = event["epoch"].as_str().unwrap().to_owned();
        assert!(!this_epoch.is_empty(), "{event}");
        assert_eq!(*epoch.get_or_insert(this_epoch.clone()), this_epoch);
        // The publish answered the position the event carries.
        assert_eq!(
            answer["rooms"],
            json!([{"room": "order:42", "offset": n, "epoch": this_epoch}]),
            "{answer}"
        );
    }
    // A room nobody is in has no stream on a single node.
    let answer = server
        .publish(json!({"tenant": "acme", "rooms": ["order:42", "order:0"], "event": "e"}))
        .await;
    assert_eq!(answer["rooms"][0]["offset"], 4, "{answer}");
    assert_eq!(
        answer["rooms"][1],
        json!({"room": "order:0", "offset": null, "epoch": null}),
        "{answer}"
    );
    assert_eq!(client.recv_event().await["offset"], 4);

    // Without data, the event carries `null`.
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:42"], "event": "empty"}))
        .await;
    let event = client.recv_event().await;
    assert!(event.get("data").is_some_and(Value::is_null), "{event}");
    assert_eq!(event["offset"], 5, "{event}");
}

#[tokio::test]
async fn user_events_reach_every_connection_of_that_user_only() {
    let server = Server::start_default().await;
    let mut a1 = server.connect_user("7", "acme").await;
    let mut a2 = server.connect_user("7", "acme").await;
    let mut other = server.connect_user("8", "acme").await;
    let mut globex7 = server.connect_user("7", "globex").await;

    let answer = server
        .publish(
            json!({"tenant": "acme", "users": ["7"], "event": "notification", "data": {"id": 1}}),
        )
        .await;
    assert_eq!(answer["delivered"], 2, "{answer}");
    for client in [&mut a1, &mut a2] {
        let event = client.recv_event().await;
        assert_eq!(event["event"], "notification", "{event}");
        assert_eq!(event["room"], "user:7", "{event}");
        assert_eq!(event["data"], json!({"id": 1}), "{event}");
        assert_eq!(event["offset"], 0, "{event}");
        assert_eq!(event["epoch"], "", "{event}");
    }
    for client in [&mut other, &mut globex7] {
        client.sync().await;
        assert!(client.take_buffered().is_empty());
    }
}

#[tokio::test]
async fn each_targeted_room_is_a_stream_and_users_add_no_copy() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.join("order:1").await;
    let answer = server
        .publish(json!({
            "tenant": "acme", "rooms": ["order:1", "user:7", "tenant:acme", "order:1"],
            "users": ["7"], "event": "once"
        }))
        .await;
    assert_eq!(answer["delivered"], 3, "{answer}");
    client.sync().await;
    let mut rooms: Vec<String> = client
        .take_buffered()
        .iter()
        .map(|e| e["room"].as_str().unwrap().to_owned())
        .collect();
    rooms.sort();
    assert_eq!(rooms, ["order:1", "tenant:acme", "user:7"]);
    // A user target alone still reaches the connection once.
    let answer = server
        .publish(json!({"tenant": "acme", "users": ["7", "7"], "event": "direct"}))
        .await;
    assert_eq!(answer["delivered"], 1, "{answer}");
}

#[tokio::test]
async fn tenant_broadcast_reaches_the_tenant_only() {
    let server = Server::start_default().await;
    let mut a7 = server.connect_user("7", "acme").await;
    let mut a8 = server.connect_user("8", "acme").await;
    let mut g7 = server.connect_user("7", "globex").await;

    let answer = server
        .publish(json!({"tenant": "acme", "broadcast": true, "event": "maintenance", "data": {"at": "22:00"}}))
        .await;
    assert_eq!(answer["delivered"], 2, "{answer}");
    for client in [&mut a7, &mut a8] {
        let event = client.recv_event().await;
        assert_eq!(
            keys(&event),
            ["data", "epoch", "event", "offset", "type"],
            "{event}"
        );
        assert_eq!(event["event"], "maintenance");
        assert_eq!(event["offset"], 0);
        assert_eq!(event["epoch"], "");
    }
    g7.sync().await;
    assert!(g7.take_buffered().is_empty());

    // A tenant key broadcasts to its own tenant without naming it.
    let (status, answer) = server
        .api(
            "POST",
            "/api/publish",
            Some(GLOBEX_KEY),
            Some(r#"{"broadcast":true,"event":"globex-only"}"#),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(g7.recv_event().await["event"], "globex-only");
    for client in [&mut a7, &mut a8] {
        client.sync().await;
        assert!(client.take_buffered().is_empty());
    }
}

#[tokio::test]
async fn platform_broadcast_reaches_every_tenant() {
    let server = Server::start_default().await;
    let mut acme = server.connect_user("7", "acme").await;
    let mut globex = server.connect_user("9", "globex").await;
    let answer = server
        .publish(json!({"broadcast": true, "event": "platform", "data": "hello"}))
        .await;
    assert_eq!(answer["delivered"], 2, "{answer}");
    for client in [&mut acme, &mut globex] {
        let event = client.recv_event().await;
        assert_eq!(event["event"], "platform", "{event}");
        assert_eq!(event["data"], "hello", "{event}");
        assert!(event.get("room").is_none(), "{event}");
    }
}

#[tokio::test]
async fn tenant_keys_reach_only_their_tenant() {
    let server = Server::start_default().await;
    let mut acme = server.connect_user("7", "acme").await;
    let mut globex = server.connect_user("7", "globex").await;

    // Another tenant: refused, and nothing is delivered.
    for body in [
        r#"{"tenant":"globex","users":["7"],"event":"x"}"#,
        r#"{"tenant":"globex","broadcast":true,"event":"x"}"#,
    ] {
        let (status, answer) = server
            .api("POST", "/api/publish", Some(ACME_KEY), Some(body))
            .await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    }
    globex.sync().await;
    assert!(globex.take_buffered().is_empty());

    // Its own tenant, named or not.
    for body in [
        r#"{"tenant":"acme","users":["7"],"event":"own"}"#,
        r#"{"users":["7"],"event":"own"}"#,
    ] {
        let (status, answer) = server
            .api("POST", "/api/publish", Some(ACME_KEY), Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["delivered"], 1, "{answer}");
        assert_eq!(acme.recv_event().await["event"], "own");
    }
    // A platform-wide broadcast needs a platform key: a tenant key's stays in its tenant.
    let (status, _) = server
        .api(
            "POST",
            "/api/publish",
            Some(ACME_KEY),
            Some(r#"{"broadcast":true,"event":"b"}"#),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(acme.recv_event().await["event"], "b");
    globex.sync().await;
    assert!(globex.take_buffered().is_empty());
}

#[tokio::test]
async fn bad_publish_requests_are_refused() {
    let server = Server::start(Config::new().set("api.max_body_bytes", "4096")).await;
    let good = r#"{"tenant":"acme","rooms":["order:1"],"event":"e"}"#;

    let (status, answer) = server.api("POST", "/api/publish", None, Some(good)).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = server
        .api("POST", "/api/publish", Some("not-a-key"), Some(good))
        .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized", "{answer}");

    let cases: &[(&str, u16)] = &[
        ("{not json", 400),
        (
            r#"{"tenant":"acme","rooms":["order:1"],"event":"e","colour":"red"}"#,
            400,
        ),
        (r#"{"tenant":"acme","rooms":["order:1"]}"#, 400),
        (r#"{"tenant":"acme","rooms":["order:1"],"event":""}"#, 400),
        (r#"{"tenant":"acme","event":"e"}"#, 400),
        (r#"{"rooms":["order:1"],"event":"e"}"#, 400),
        (r#"[1,2,3]"#, 400),
        ("", 400),
    ];
    for (body, expected) in cases {
        let (status, answer) = server
            .api("POST", "/api/publish", Some(PLATFORM_KEY), Some(body))
            .await;
        assert_eq!(status, *expected, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{body} -> {answer}");
    }

    let big =
        json!({"tenant": "acme", "rooms": ["order:1"], "event": "e", "data": "x".repeat(8000)});
    let (status, answer) = server
        .api(
            "POST",
            "/api/publish",
            Some(PLATFORM_KEY),
            Some(&big.to_string()),
        )
        .await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large", "{answer}");

    let (status, _) = server
        .api("GET", "/api/publish", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(status, 405);

    // The server is unharmed.
    let (status, answer) = server
        .api("POST", "/api/publish", Some(PLATFORM_KEY), Some(good))
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn client_publish_follows_the_acl_and_skips_the_sender() {
    let server = Server::start_default().await;
    let mut alice = server.connect_user("1", "acme").await;
    let mut bob = server.connect_user("2", "acme").await;
    let mut carol = server.connect_user("3", "acme").await;
    let mut globex = server.connect_user("2", "globex").await;
    alice.join("chat:lobby").await;
    bob.join("chat:lobby").await;
    carol.join("chat:lobby").await;
    globex.join("chat:lobby").await;

    let reply = alice
        .request(json!({"type": "publish", "room": "chat:lobby", "event": "typing", "data": {"isTyping": true}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    for client in [&mut bob, &mut carol] {
        let event = client.recv_event().await;
        assert_eq!(event["room"], "chat:lobby", "{event}");
        assert_eq!(event["event"], "typing", "{event}");
        assert_eq!(event["data"], json!({"isTyping": true}), "{event}");
        assert_eq!(event["offset"], 1, "{event}");
    }
    // Not the sender, and not the room of the same name in another tenant.
    for client in [&mut alice, &mut globex] {
        client.sync().await;
        assert!(client.take_buffered().is_empty());
    }

    // `order:*` allows subscribing but not publishing; `secret:*` allows nothing.
    alice.join("order:1").await;
    for room in ["order:1", "secret:1", "user:1"] {
        let reply = alice
            .request(json!({"type": "publish", "room": room, "event": "x"}))
            .await;
        assert_eq!(error_code(&reply), "forbidden", "{room}: {reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_publishers_keep_room_offsets_in_order() {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 250;
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.join("order:1").await;
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let mut http = server.http_conn().await;
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let body = json!({"tenant": "acme", "rooms": ["order:1"], "event": "race", "data": [p, n]});
                http.publish_with(PLATFORM_KEY, &body).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a publisher");
    }
    client.sync().await;
    let offsets: Vec<u64> = client
        .take_buffered()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    // Every offset once, in increasing order: 1, 2, ... as published.
    let expected: Vec<u64> = (1..=(PUBLISHERS * EACH) as u64).collect();
    assert_eq!(offsets, expected);
}

#[tokio::test]
async fn client_publish_data_over_the_limit_is_refused() {
    let server = Server::start(Config::new().set("limits.max_publish_bytes", "100")).await;
    let mut alice = server.connect_user("1", "acme").await;
    let mut bob = server.connect_user("2", "acme").await;
    alice.join("chat:1").await;
    bob.join("chat:1").await;

    let reply = alice
        .request(
            json!({"type": "publish", "room": "chat:1", "event": "big", "data": "x".repeat(200)}),
        )
        .await;
    assert_eq!(error_code(&reply), "payload_too_large", "{reply}");
    let reply = alice
        .request(
            json!({"type": "publish", "room": "chat:1", "event": "small", "data": "x".repeat(50)}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    // Only the accepted one was published.
    let event = bob.recv_event().await;
    assert_eq!(event["event"], "small", "{event}");
    assert_eq!(event["offset"], 1, "{event}");
}

#[tokio::test]
async fn a_room_created_again_starts_a_new_epoch() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.join("order:9").await;
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:9"], "event": "first"}))
        .await;
    let first = client.recv_event().await;
    assert_eq!(first["offset"], 1, "{first}");

    // The only member leaves: the room is gone. Joined again, its counter starts over.
    let reply = client
        .request(json!({"type": "unsubscribe", "room": "order:9"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    client.join("order:9").await;
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:9"], "event": "second"}))
        .await;
    let second = client.recv_event().await;
    assert_eq!(second["offset"], 1, "{second}");
    assert_ne!(second["epoch"], first["epoch"], "{first} then {second}");
}

#[tokio::test]
async fn publish_targets_are_bounded_and_repeated_rooms_count_once() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.join("order:1").await;

    // Past limits.max_publish_targets (default 1000): refused before any work.
    let rooms: Vec<String> = (0..1001).map(|i| format!("r{i}")).collect();
    let body = json!({"tenant": "acme", "rooms": rooms, "event": "e"}).to_string();
    let (status, answer) = server
        .api("POST", "/api/publish", Some(PLATFORM_KEY), Some(&body))
        .await;
    assert_eq!(status, 400, "{answer}");

    // The same room named many times is one target: one event, one offset.
    let rooms = vec!["order:1"; 1000];
    let answer = server
        .publish(json!({"tenant": "acme", "rooms": rooms, "event": "once", "data": 1}))
        .await;
    assert_eq!(answer["delivered"], 1, "{answer}");
    let event = client.recv_event().await;
    assert_eq!(
        (event["event"].as_str(), event["offset"].as_u64()),
        (Some("once"), Some(1))
    );
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "barrier"}))
        .await;
    assert_eq!(client.recv_event().await["event"], "barrier");
}

#[tokio::test]
async fn api_publish_refuses_data_nested_past_64_levels() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    for levels in [65, 100_000] {
        let deep = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let body = format!(r#"{{"tenant":"acme","users":["7"],"event":"deep","data":{deep}}}"#);
        let (status, answer) = server
            .api("POST", "/api/publish", Some(PLATFORM_KEY), Some(&body))
            .await;
        assert_eq!(status, 400, "{levels}: {answer}");
    }

    let ok = format!("{}1{}", "[".repeat(64), "]".repeat(64));
    let body = format!(r#"{{"tenant":"acme","users":["7"],"event":"deep","data":{ok}}}"#);
    let (status, answer) = server
        .api("POST", "/api/publish", Some(PLATFORM_KEY), Some(&body))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(client.recv_event().await["event"], "deep");
}

/// A retry with the same `idempotency_key` gets the first answer and publishes nothing; the
/// key is the tenant's own.
#[tokio::test]
async fn a_retried_publish_with_an_idempotency_key_is_published_once() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.join("order:42").await;
    let body = json!({"tenant": "acme", "rooms": ["order:42"], "event": "paid",
                      "data": 1, "idempotency_key": "pay-42"});
    let mut http = server.http_conn().await;
    let first = http.publish_with(PLATFORM_KEY, &body).await;
    assert_eq!(first["rooms"][0]["offset"], 1, "{first}");
    for _ in 0..3 {
        let (status, text) = http
            .request(
                "POST",
                "/api/publish",
                Some(PLATFORM_KEY),
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), first);
    }
    assert_eq!(client.recv_event().await["event"], "paid");
    // Another key publishes.
    let other = json!({"tenant": "acme", "rooms": ["order:42"], "event": "paid",
                       "data": 2, "idempotency_key": "pay-43"});
    assert_eq!(
        http.publish_with(PLATFORM_KEY, &other).await["rooms"][0]["offset"],
        2
    );
    assert_eq!(client.recv_event().await["data"], 2);
    client
        .expect_no_message(std::time::Duration::from_millis(300))
        .await;
    // The same key in another tenant is another key.
    let globex = json!({"tenant": "globex", "rooms": ["order:42"], "event": "paid",
                        "idempotency_key": "pay-42"});
    let answer = http.publish_with(PLATFORM_KEY, &globex).await;
    assert_eq!(answer["delivered"], 0, "{answer}");
    // A bad key is a bad request.
    let bad = json!({"tenant": "acme", "rooms": ["a"], "event": "e", "idempotency_key": ""});
    let (status, _) = http
        .request(
            "POST",
            "/api/publish",
            Some(PLATFORM_KEY),
            Some(&bad.to_string()),
        )
        .await;
    assert_eq!(status, 400);
}
