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
    let config = Config::new().set("auth.leeway_secs", "0");
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

#[tokio::test]
async fn silent_client_is_closed_with_heartbeat_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let config = Config::new()
        .set("heartbeat.interval_ms", "100")
        .set("heartbeat.timeout_ms", "300");
    let server = Server::start(config).await;
    // A raw socket: a WebSocket client library would answer the server's pings as soon as
    // it reads, and this client must stay silent.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        token("7", "acme"),
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut bytes))
        .await
        .expect("the server ends the connection")
        .unwrap();
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    assert!(bytes.starts_with(b"HTTP/1.1 101"));
    // Unmasked server frames, none longer than 64 KiB here.
    let mut frames = Vec::new();
    let mut rest = &bytes[head_end + 4..];
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let (len, header) = match rest[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            n => (usize::from(n), 2),
        };
        frames.push((opcode, rest[header..header + len].to_vec()));
        rest = &rest[header + len..];
    }
    let texts: Vec<serde_json::Value> = frames
        .iter()
        .filter(|(op, _)| *op == 1)
        .map(|(_, p)| serde_json::from_slice(p).unwrap())
        .collect();
    assert_eq!(texts[0]["type"], "welcome");
    let last = texts.last().unwrap();
    assert_eq!(last["type"], "disconnect", "{texts:?}");
    assert_eq!(last["code"], 4000);
    assert_eq!(last["reconnect"], true);
    let close = frames
        .iter()
        .find(|(op, _)| *op == 8)
        .expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 4000);
    // The server pinged before giving up.
    assert!(frames.iter().any(|(op, _)| *op == 9), "a ping");
}
