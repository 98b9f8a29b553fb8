//! Resuming rooms through another node of a cluster: a native client's `since` (and
//! `auth.since`) read from the room's stream in Redis and joined with no gap and no
//! duplicate, while publishes keep coming.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::{node_config, Prefix};
use crate::harness::{Server, PLATFORM_KEY};

/// Publishes `step` `n` to `room` of acme through `via`; the room's position in the answer.
async fn publish(via: &Server, room: &str, n: u64) -> Value {
    let body = json!({"tenant": "acme", "rooms": [room], "event": "step", "data": n});
    via.publish(body).await["rooms"][0].clone()
}

/// A native client resumes a room on another node of the cluster, while publishes keep coming
/// through the first: every offset after its own once, in order; past the kept events, under
/// another epoch, or behind a room that keeps none, `recovered: false`.
#[tokio::test]
async fn a_native_client_resumes_on_another_node_with_no_gap_and_no_duplicate() {
    let Some(redis) = roomcast_testkit::shared_redis() else {
        return;
    };
    let prefix = Prefix::new("resume");
    let config = |node: &str| {
        node_config(&redis, &prefix, node).set(
            "history.rooms",
            r#"[{ pattern = "order:short:*", max_events = 2, max_age_ms = 60000 },
                { pattern = "order:*", max_events = 1000, max_age_ms = 60000 },
                { pattern = "user:*", max_events = 50, max_age_ms = 60000 }]"#,
        )
    };
    let a = Server::start(config("a")).await;
    let b = Server::start(config("b")).await;
    let mut first = a.connect_user("7", "acme").await;
    first.join("order:9").await;
    let mut epoch = String::new();
    for n in 1..=3 {
        epoch = publish(&b, "order:9", n).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    for offset in 1..=3 {
        assert_eq!(first.recv_event().await["offset"], offset);
    }
    drop(first);
    for n in 4..=5 {
        publish(&a, "order:9", n).await;
    }
    let publisher = async {
        let mut http = a.http_conn().await;
        for n in 6..=200u64 {
            let body = json!({"tenant": "acme", "rooms": ["order:9"], "event": "step", "data": n});
            http.publish_with(PLATFORM_KEY, &body).await;
        }
    };
    let resumer = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut client = b.connect_user("7", "acme").await;
        let reply = client
            .request(json!({"type": "subscribe", "room": "order:9",
                            "since": {"offset": 3, "epoch": epoch}}))
            .await;
        assert_eq!(reply["recovered"], true, "{reply}");
        client
    };
    let ((), mut client) = tokio::join!(publisher, resumer);
    for offset in 4..=200u64 {
        let event = client.recv_event().await;
        assert_eq!(
            (&event["offset"], &event["data"]),
            (&json!(offset), &json!(offset)),
            "{event}"
        );
    }
    client.expect_no_message(Duration::from_millis(300)).await;

    // Trimmed: a room keeping 2 (about: Redis trims approximately) cannot fill 20 missed.
    let mut short_epoch = Value::Null;
    for n in 1..=40 {
        short_epoch = publish(&a, "order:short:1", n).await["epoch"].clone();
    }
    let reply = client
        .request(json!({"type": "subscribe", "room": "order:short:1",
                        "since": {"offset": 1, "epoch": short_epoch}}))
        .await;
    assert_eq!(
        (&reply["recovered"], &reply["offset"]),
        (&json!(false), &json!(40)),
        "{reply}"
    );
    // Another epoch continues nothing.
    let reply = client
        .request(json!({"type": "subscribe", "room": "order:9",
                        "since": {"offset": 200, "epoch": "an-old-epoch"}}))
        .await;
    assert_eq!(reply["recovered"], true, "already in the room: {reply}");
    let mut other = b.connect_user("8", "acme").await;
    let reply = other
        .request(json!({"type": "subscribe", "room": "order:9",
                        "since": {"offset": 199, "epoch": "an-old-epoch"}}))
        .await;
    assert_eq!(
        (&reply["recovered"], &reply["offset"]),
        (&json!(false), &json!(200)),
        "{reply}"
    );
    // A room without history resumes at its current position only.
    let at = publish(&a, "chat:1", 1).await;
    let chat_epoch = at["epoch"].as_str().unwrap().to_owned();
    let reply = other
        .request(json!({"type": "subscribe", "room": "chat:1",
                        "since": {"offset": 1, "epoch": chat_epoch}}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let mut third = b.connect_user("9", "acme").await;
    let reply = third
        .request(json!({"type": "subscribe", "room": "chat:1",
                        "since": {"offset": 0, "epoch": chat_epoch}}))
        .await;
    assert_eq!(reply["recovered"], false, "{reply}");

    // An auto-joined room resumes from the auth message on another node; the welcome gives
    // the position of every auto-joined room that has one.
    let mut first = a.connect_user("12", "acme").await;
    let at = publish(&b, "user:12", 1).await;
    let user_epoch = at["epoch"].as_str().unwrap().to_owned();
    assert_eq!(first.recv_event().await["offset"], 1);
    drop(first);
    publish(&a, "user:12", 2).await;
    publish(&a, "user:12", 3).await;
    let mut again = b.connect_anonymous().await;
    again
        .send_json(
            &json!({"type": "auth", "token": crate::harness::token("12", "acme"),
                           "since": {"user:12": {"offset": 1, "epoch": user_epoch}}}),
        )
        .await;
    let welcome = again.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(
        welcome["positions"]["user:12"],
        json!({"offset": 3, "epoch": user_epoch, "recovered": true}),
        "{welcome}"
    );
    for offset in 2..=3 {
        assert_eq!(again.recv_event().await["offset"], offset);
    }
    publish(&b, "user:12", 4).await;
    assert_eq!(again.recv_event().await["offset"], 4);
    let fresh = b.connect_user("12", "acme").await;
    assert_eq!(
        fresh.welcome["positions"]["user:12"],
        json!({"offset": 4, "epoch": user_epoch}),
        "{}",
        fresh.welcome
    );
}
