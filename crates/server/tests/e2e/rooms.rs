//! Rooms: auto-join from claim templates, subscribe and unsubscribe under the ACL.

use serde_json::json;

use crate::harness::{error_code, now_unix, sign, Config, Server};

#[tokio::test]
async fn auto_join_expands_array_claims() {
    let config = Config::new().set(
        "rooms.auto_join",
        r#"["user:{sub}", "tenant:{tenant_id}", "shop:{shop_ids}"]"#,
    );
    let server = Server::start(config).await;
    let token = sign(&json!({
        "sub": "7", "tenant_id": "acme", "shop_ids": [1, 2], "exp": now_unix() + 3600
    }));
    let mut client = server.connect(&token).await;
    assert_eq!(
        client.welcome["rooms"],
        json!(["user:7", "tenant:acme", "shop:1", "shop:2"]),
        "{}",
        client.welcome
    );
    // The auto-joined rooms are real memberships.
    for room in ["shop:1", "shop:2"] {
        server
            .publish(json!({"tenant": "acme", "rooms": [room], "event": "stock", "data": {"room": room}}))
            .await;
        let event = client.recv_event().await;
        assert_eq!(event["room"], room, "{event}");
        assert_eq!(event["data"]["room"], room, "{event}");
    }
    // A room of the same template not in the claim is not joined.
    server
        .publish(json!({"tenant": "acme", "rooms": ["shop:3"], "event": "stock"}))
        .await;
    client.sync().await;
    assert!(client.take_buffered().is_empty());
}

#[tokio::test]
async fn subscribe_unsubscribe_under_the_acl() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;

    // Allowed by `order:*`.
    let reply = client.subscribe("order:42").await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");
    // Subscribing again is fine.
    client.join("order:42").await;
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:42"], "event": "order:status_updated", "data": {"order_id": 42}}))
        .await;
    let event = client.recv_event().await;
    assert_eq!(event["room"], "order:42");
    assert_eq!(event["data"], json!({"order_id": 42}));

    // Not allowed by any rule.
    let reply = client.subscribe("secret:1").await;
    assert_eq!(error_code(&reply), "forbidden", "{reply}");
    assert!(reply["error"]["message"].is_string(), "{reply}");
    // Another user's room is not allowed either, whatever its name looks like.
    let reply = client.subscribe("user:8").await;
    assert_eq!(error_code(&reply), "forbidden", "{reply}");

    // Unsubscribe, then events of the room no longer arrive; the next event is the marker.
    let reply = client
        .request(json!({"type": "unsubscribe", "room": "order:42"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:42"], "event": "after_leave"}))
        .await;
    server
        .publish(json!({"tenant": "acme", "rooms": ["user:7"], "event": "marker"}))
        .await;
    assert_eq!(client.recv_event().await["event"], "marker");

    let reply = client
        .request(json!({"type": "unsubscribe", "room": "order:42"}))
        .await;
    assert_eq!(error_code(&reply), "not_subscribed", "{reply}");
    let reply = client
        .request(json!({"type": "unsubscribe", "room": "never:joined"}))
        .await;
    assert_eq!(error_code(&reply), "not_subscribed", "{reply}");
}

#[tokio::test]
async fn auto_joined_rooms_can_be_left_and_joined_again() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    let reply = client
        .request(json!({"type": "unsubscribe", "room": "tenant:acme"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    server
        .publish(json!({"tenant": "acme", "rooms": ["tenant:acme"], "event": "gone"}))
        .await;
    client.sync().await;
    assert!(client.take_buffered().is_empty());
    client.join("tenant:acme").await;
    server
        .publish(json!({"tenant": "acme", "rooms": ["tenant:acme"], "event": "back"}))
        .await;
    assert_eq!(client.recv_event().await["event"], "back");
}

#[tokio::test]
async fn namespaces_are_separate_rooms() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    let reply = client
        .request(json!({"type": "subscribe", "room": "order:1", "ns": "/dashboard"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");

    // `order:1` in `/` is another room.
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "root"}))
        .await;
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:1"], "namespace": "/dashboard", "event": "dash", "data": 1}))
        .await;
    let event = client.recv_event().await;
    assert_eq!(event["event"], "dash", "{event}");
    assert_eq!(event["ns"], "/dashboard", "{event}");
    assert_eq!(event["room"], "order:1", "{event}");
    assert_eq!(event["offset"], 1, "{event}");
}

#[tokio::test]
async fn room_limit_counts_auto_joined_rooms() {
    let server = Server::start(Config::new().set("rooms.max_per_connection", "3")).await;
    let mut client = server.connect_user("7", "acme").await;
    client.join("order:1").await;
    let reply = client.subscribe("order:2").await;
    assert_eq!(error_code(&reply), "too_many_rooms", "{reply}");
    // Leaving one makes room again.
    let reply = client
        .request(json!({"type": "unsubscribe", "room": "order:1"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    client.join("order:2").await;
}

#[tokio::test]
async fn unknown_types_are_answered_and_not_violations() {
    let server = Server::start(Config::new().set("limits.max_violations", "2")).await;
    let mut client = server.connect_user("7", "acme").await;
    for id in 0..6 {
        client
            .send_json(&json!({"type": "from_the_future", "id": id}))
            .await;
        let reply = client.recv_json().await;
        assert_eq!(error_code(&reply), "unknown_type", "{reply}");
        assert_eq!(reply["id"], id, "{reply}");
    }
    // More unknown types than max_violations, and the connection is still open.
    let pong = client.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
}

#[tokio::test]
async fn ping_is_answered_with_or_without_id() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.send_json(&json!({"type": "ping"})).await;
    let pong = client.recv_json().await;
    assert_eq!(pong, json!({"type": "pong"}));
    client.send_json(&json!({"type": "ping", "id": 5})).await;
    let pong = client.recv_json().await;
    assert_eq!(pong, json!({"type": "pong", "id": 5}));
}
