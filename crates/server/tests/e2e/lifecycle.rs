//! A session's life: token refresh and expiry, the client's close, and the
//! server's graceful shutdown.

use std::time::Duration;

use serde_json::json;

use crate::harness::{error_code, now_unix, sign, token, Config, Server};

#[tokio::test]
async fn refresh_extends_the_session_for_the_same_user_only() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;

    let exp = now_unix() + 7200;
    let fresh = sign(&json!({"sub": "7", "tenant_id": "acme", "exp": exp}));
    let reply = client
        .request(json!({"type": "refresh", "token": fresh}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["expires_at"], exp, "{reply}");

    let refused = [
        ("another user", token("8", "acme")),
        ("another tenant", token("7", "globex")),
        (
            "an expired token",
            sign(&json!({"sub": "7", "tenant_id": "acme", "exp": now_unix() - 3600})),
        ),
        ("garbage", "x.y.z".to_owned()),
    ];
    for (what, bad) in refused {
        let reply = client
            .request(json!({"type": "refresh", "token": bad}))
            .await;
        assert_eq!(error_code(&reply), "invalid_token", "{what}: {reply}");
    }
    // The session is still user 7 of acme and still open.
    server
        .publish(json!({"tenant": "acme", "users": ["7"], "event": "still-here"}))
        .await;
    assert_eq!(client.recv_event().await["event"], "still-here");
}

#[tokio::test]
async fn live_connection_is_closed_when_its_token_expires() {
    let config = Config::new()
        .set("auth.leeway_secs", "0")
        // A finer shared tick, so the test does not wait long past the expiry.
        .set("heartbeat.interval_ms", "500");
    let server = Server::start(config).await;
    // Short, but long enough to connect and refresh a second connection first.
    let exp = now_unix() + 3;
    let short = sign(&json!({"sub": "7", "tenant_id": "acme", "exp": exp}));
    let mut expiring = server.connect(&short).await;
    assert_eq!(expiring.welcome["expires_at"], exp);
    let mut refreshed = server.connect(&short).await;
    let later = sign(&json!({"sub": "7", "tenant_id": "acme", "exp": now_unix() + 3600}));
    let reply = refreshed
        .request(json!({"type": "refresh", "token": later}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");

    let msg = expiring
        .expect_disconnect_within(4003, Duration::from_secs(30))
        .await;
    assert_eq!(msg["reconnect"], false, "{msg}");

    // The refreshed session outlives the first token.
    refreshed.sync().await;
    refreshed
        .expect_no_message(Duration::from_millis(600))
        .await;
    refreshed.sync().await;
}

#[tokio::test]
async fn client_close_is_answered_with_1000() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.close(1000).await;
    client.expect_close(1000).await;
    crate::limits::wait_offline(&server, "acme", "7").await;
}

#[tokio::test]
async fn sigterm_tells_clients_to_reconnect_and_exits_cleanly() {
    let mut server = Server::start(Config::new().set("shutdown.grace_ms", "10000")).await;
    let mut a = server.connect_user("7", "acme").await;
    let mut b = server.connect_user("8", "globex").await;
    a.sync().await;
    b.sync().await;

    server.terminate();
    for client in [&mut a, &mut b] {
        let msg = client.expect_disconnect(1001).await;
        assert_eq!(msg["reconnect"], true, "{msg}");
        assert_eq!(msg["reason"], "server shutting down", "{msg}");
    }
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
}
