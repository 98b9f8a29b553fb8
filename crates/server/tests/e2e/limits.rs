//! Limits: message size, binary frames, malformed requests, the request rate, connection
//! limits, and a slow consumer next to a fast one.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{error_code, token, Config, Incoming, Server, PLATFORM_KEY};

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let config = Config::new()
        .set("limits.max_message_bytes", "1024")
        .set("limits.max_frame_bytes", "1024")
        .set("limits.max_publish_bytes", "512");
    let server = Server::start(config).await;
    let mut client = server.connect_user("7", "acme").await;
    // Just under the limit is fine.
    let fits = json!({"type": "ping", "id": 1, "pad": "x".repeat(900)}).to_string();
    assert!(fits.len() <= 1024);
    client.send_text(&fits).await;
    assert_eq!(client.recv_json().await["type"], "pong");
    // 2 KiB: the WebSocket layer closes with 1009, without a `disconnect` message.
    let big = json!({"type": "ping", "id": 2, "pad": "x".repeat(2048)}).to_string();
    client.send_text(&big).await;
    client.expect_close(1009).await;
}

#[tokio::test]
async fn binary_frame_closes_with_1003() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.send_binary(b"\x00\x01binary").await;
    let msg = client.expect_disconnect(1003).await;
    assert_eq!(msg["reconnect"], false);
}

#[tokio::test]
async fn malformed_requests_are_answered_then_close_with_4006() {
    let server = Server::start(Config::new().set("limits.max_violations", "3")).await;
    let mut client = server.connect_user("7", "acme").await;

    // An id that can be read is echoed, otherwise it is null.
    client
        .send_json(&json!({"type": "subscribe", "id": 5}))
        .await;
    let reply = client.recv_json().await;
    assert_eq!(error_code(&reply), "bad_request", "{reply}");
    assert_eq!(reply["id"], 5, "{reply}");

    for bad in ["{not json", "[1,2]"] {
        client.send_text(bad).await;
        let reply = client.recv_json().await;
        assert_eq!(error_code(&reply), "bad_request", "{bad}: {reply}");
        assert!(
            reply.get("id").is_some_and(Value::is_null),
            "{bad}: {reply}"
        );
    }
    // Three violations so far, as many as allowed; a good request still works.
    client.sync().await;

    // The fourth is answered, then the connection closes.
    client.send_text("\"just a string\"").await;
    let reply = client.recv_json().await;
    assert_eq!(error_code(&reply), "bad_request", "{reply}");
    let msg = client.expect_disconnect(4006).await;
    assert_eq!(msg["reconnect"], false);
}

#[tokio::test]
async fn request_rate_is_limited_then_closes_with_4009() {
    let config = Config::new()
        .set("limits.messages_per_second", "5")
        .set("limits.messages_burst", "5")
        .set("limits.max_violations", "3");
    let server = Server::start(config).await;
    let mut client = server.connect_user("7", "acme").await;
    // 30 pings at once: the burst is answered, then `rate_limited`, then the close.
    for id in 0..30 {
        client
            .feed_text(&json!({"type": "ping", "id": id}).to_string())
            .await;
    }
    client.flush().await;
    let (mut pongs, mut limited) = (0, 0);
    loop {
        let msg = client.recv_json().await;
        match msg["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("reply") => {
                assert_eq!(error_code(&msg), "rate_limited", "{msg}");
                assert!(msg["id"].is_u64(), "the ping's id is echoed: {msg}");
                limited += 1;
            }
            Some("disconnect") => {
                assert_eq!(msg["code"], 4009, "{msg}");
                assert_eq!(msg["reconnect"], false, "{msg}");
                client.expect_close(4009).await;
                break;
            }
            _ => panic!("unexpected {msg}"),
        }
    }
    assert!(pongs >= 5, "the burst is served: {pongs} pongs");
    assert!(
        (3..=4).contains(&limited),
        "about max_violations rate_limited replies before the close: {limited}"
    );
}

#[tokio::test]
async fn per_user_connection_limit_closes_with_4005() {
    let server = Server::start(Config::new().set("limits.max_connections_per_user", "1")).await;
    let mut first = server.connect_user("7", "acme").await;

    let mut second = server.connect_query(&token("7", "acme")).await;
    let msg = second.expect_disconnect(4005).await;
    assert_eq!(msg["reconnect"], true, "{msg}");

    // Other users, and the same user id in another tenant, are not affected.
    let _other = server.connect_user("8", "acme").await;
    let _globex = server.connect_user("7", "globex").await;
    first.sync().await;

    // Once the first connection is gone, the user may connect again.
    first.close(1000).await;
    first.expect_close(1000).await;
    wait_offline(&server, "acme", "7").await;
    let mut again = server.connect_user("7", "acme").await;
    again.sync().await;
}

#[tokio::test]
async fn per_tenant_connection_limit_closes_with_4005() {
    let server = Server::start(Config::new().set("limits.max_connections_per_tenant", "2")).await;
    let _a = server.connect_user("1", "acme").await;
    let _b = server.connect_user("2", "acme").await;
    let mut c = server.connect_query(&token("3", "acme")).await;
    c.expect_disconnect(4005).await;
    let mut g = server.connect_user("1", "globex").await;
    g.sync().await;
}

/// Polls the user status API until the user has no connection.
pub(crate) async fn wait_offline(server: &Server, tenant: &str, user: &str) {
    let path = format!("/api/users/{user}/status?tenant={tenant}");
    for _ in 0..500 {
        let (status, answer) = server.api("GET", &path, Some(PLATFORM_KEY), None).await;
        assert_eq!(status, 200, "{answer}");
        if answer["online"] == false {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("user {user} of {tenant} is still online");
}

/// The third (largest) value of a `/proc/sys/net/ipv4/tcp_*mem` triple, or the middle one.
fn tcp_buffer(name: &str, index: usize, fallback: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()
        .and_then(|text| text.split_whitespace().nth(index)?.parse().ok())
        .unwrap_or(fallback)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_and_others_get_everything() {
    const PAYLOAD: u64 = 4096;
    // The kernel buffers a client that does not read: the server's send buffer (autotuned up to
    // tcp_wmem's maximum) and the client's receive buffer (which does not grow without reads).
    // Publish clearly more than both can hold, so the queue has to overflow.
    let buffered = tcp_buffer("tcp_wmem", 2, 8 << 20) + 4 * tcp_buffer("tcp_rmem", 1, 1 << 20);
    let events: u64 = 2000.max((buffered + (1 << 20)) / PAYLOAD + 1);
    let config = Config::new()
        .set("limits.queue_messages", "16")
        // A blocked socket is dropped once the close handshake times out, checked on the shared
        // tick (a fifth of the interval): a finer tick ends the wait for it sooner.
        .set("heartbeat.interval_ms", "1000")
        .set("heartbeat.timeout_ms", "120000");
    let server = Server::start(config).await;
    let mut fast = server.connect_user("1", "acme").await;
    let mut slow = server.connect_user("2", "acme").await;
    fast.join("order:1").await;
    slow.join("order:1").await;

    // The fast client reads concurrently; the slow one is not read at all meanwhile.
    let reader = tokio::spawn(async move {
        let mut offsets = Vec::with_capacity(events as usize);
        for n in 1..=events {
            let event = fast.recv_event().await;
            assert_eq!(event["data"]["n"], n, "events arrive in order, none lost");
            offsets.push(event["offset"].as_u64().unwrap());
        }
        (fast, offsets)
    });

    let pad = "p".repeat(PAYLOAD as usize);
    let mut http = server.http_conn().await;
    for n in 1..=events {
        let body = json!({"tenant": "acme", "rooms": ["order:1"], "event": "tick", "data": {"n": n, "pad": pad}});
        // publish_with asserts 200 on every call.
        http.publish_with(PLATFORM_KEY, &body).await;
    }
    let (mut fast, offsets) = reader.await.expect("the fast reader");
    assert_eq!(offsets, (1..=events).collect::<Vec<_>>());
    fast.sync().await;

    // The slow consumer was disconnected and counted.
    let mut closes = 0;
    for _ in 0..1000 {
        closes = server.metric("roomcast_slow_consumer_closes_total").await;
        if closes > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(closes, 1, "exactly one slow consumer close");

    // What the slow client can still read: a gapless prefix of the events, then the close
    // (4008), or the end of the stream when the close frame could not be written.
    let mut next = 1;
    let ending = loop {
        match slow.next_incoming().await {
            Incoming::Json(event) => {
                assert_eq!(event["type"], "event", "{event}");
                assert_eq!(event["data"]["n"], next, "a gapless prefix");
                next += 1;
            }
            other => break other,
        }
    };
    assert!(
        next <= events,
        "the slow client cannot have received everything"
    );
    match ending {
        Incoming::Close(Some((code, _))) => assert_eq!(code, 4008),
        Incoming::Gone(_) => {}
        other => panic!("unexpected end of the slow client: {other:?}"),
    }
    // The fast client is still served.
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "after"}))
        .await;
    let event = fast.recv_event().await;
    assert_eq!(event["event"], "after");
    assert_eq!(event["offset"], events + 1);
}
