//! Socket.IO over long-polling against the real binary, with raw HTTP requests: the bounds on
//! request bodies and on sessions that never connect to a namespace, slow-consumer closes in
//! the metrics, and what a shutdown does to polling sessions.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{token, Config, Server, PLATFORM_KEY, RECV_TIMEOUT};

const ENGINE: &str = "/socket.io/?EIO=4&transport=polling";

/// Opens an Engine.IO session over polling; its sid.
async fn handshake(server: &Server) -> String {
    let (status, body) = server.http("GET", ENGINE, None, None).await;
    assert_eq!(status, 200, "{body}");
    let open: Value = serde_json::from_str(body.strip_prefix('0').expect("an open packet"))
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    open["sid"].as_str().expect("a sid").to_owned()
}

fn session(sid: &str) -> String {
    format!("{ENGINE}&sid={sid}")
}

/// A polling session connected to `/` as user `sub` of `acme`; its sid.
async fn connected(server: &Server, sub: &str) -> String {
    let sid = handshake(server).await;
    let connect = format!(r#"40{{"token":"{}"}}"#, token(sub, "acme"));
    let (status, body) = server
        .http("POST", &session(&sid), None, Some(&connect))
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = server.http("GET", &session(&sid), None, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with(r#"40{"sid":"#), "{body}");
    sid
}

/// Sends a request head announcing `length` bytes of body and `sent` of them; the socket,
/// still open, for the answer.
async fn partial_post(server: &Server, path: &str, length: usize, sent: usize) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {PLATFORM_KEY}\r\n\
         Content-Type: text/plain\r\nContent-Length: {length}\r\n\r\n",
        server.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&vec![b'x'; sent]).await.unwrap();
    tcp
}

/// The status line and body of the answer on `tcp`.
async fn answer(tcp: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0usize);
                if body.len() >= length {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(RECV_TIMEOUT, read)
        .await
        .expect("an answer in time");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, body.to_owned())
}

/// The server's log without colour codes.
fn plain_log(server: &Server) -> String {
    let log = server.stderr_text();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn a_polling_body_that_stalls_is_cut_at_its_deadline() {
    let server = Server::start(Config::new().set("limits.body_timeout_ms", "300")).await;
    let sid = handshake(&server).await;
    let mut tcp = partial_post(&server, &session(&sid), 100_000, 90_000).await;
    let (status, body) = answer(&mut tcp).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body, r#"{"code":3,"message":"Request body timeout"}"#);
    // The session is closed.
    let (status, _) = server.http("GET", &session(&sid), None, None).await;
    assert_eq!(status, 400);

    // The API's bodies have the same deadline.
    let mut tcp = partial_post(&server, "/api/publish", 1000, 10).await;
    let (status, body) = answer(&mut tcp).await;
    assert_eq!(status, 408, "{body}");
}

#[tokio::test]
async fn bodies_in_flight_share_one_memory_bound() {
    let config = Config::new()
        .set("socketio.max_payload", "100000")
        .set("api.max_body_bytes", "100000")
        .set("limits.max_body_buffer_bytes", "250000");
    let server = Server::start(config).await;
    // Two bodies of 100 000 bytes, announced and not sent whole, hold 200 000 bytes.
    let mut held = Vec::new();
    for _ in 0..2 {
        let sid = handshake(&server).await;
        held.push(partial_post(&server, &session(&sid), 100_000, 10).await);
    }
    // Give the server the time to read both heads (a refusal would fail the next assertions
    // the other way round, not this wait).
    let sid = handshake(&server).await;
    let mut third = None;
    for _ in 0..200 {
        let mut tcp = partial_post(&server, &session(&sid), 100_000, 10).await;
        let (status, body) = answer(&mut tcp).await;
        if status == 503 {
            third = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = third.expect("a body over the bound is refused with 503");
    assert_eq!(body, r#"{"code":3,"message":"Server busy"}"#);
    // The API shares the bound.
    let mut tcp = partial_post(&server, "/api/publish", 100_000, 10).await;
    let (status, body) = answer(&mut tcp).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""code":"busy""#), "{body}");
    // Once those bodies end, there is room again.
    drop(held);
    let mut publish_ok = false;
    for _ in 0..200 {
        let (status, _) = server
            .api(
                "POST",
                "/api/publish",
                Some(PLATFORM_KEY),
                Some(r#"{"tenant":"acme","broadcast":true,"event":"e"}"#),
            )
            .await;
        if status == 200 {
            publish_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(publish_ok, "the bound is given back when the bodies end");
}

#[tokio::test]
async fn sessions_that_never_connect_are_bounded() {
    let config = Config::new()
        .set("socketio.max_pending_sessions", "3")
        .set("socketio.max_pending_sessions_per_ip", "2");
    let server = Server::start(config).await;
    let first = handshake(&server).await;
    handshake(&server).await;
    let (status, body) = server.http("GET", ENGINE, None, None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body,
        r#"{"code":3,"message":"Too many pending sessions from this address"}"#
    );
    // A session that connects to a namespace leaves the count.
    let connect = format!(r#"40{{"token":"{}"}}"#, token("7", "acme"));
    let (status, _) = server
        .http("POST", &session(&first), None, Some(&connect))
        .await;
    assert_eq!(status, 200);
    let (_, body) = server.http("GET", &session(&first), None, None).await;
    assert!(body.starts_with(r#"40{"sid":"#), "{body}");
    connected(&server, "8").await;
    handshake(&server).await;
    // Two pending again (the second handshake and the last); the next is refused.
    let (status, _) = server.http("GET", ENGINE, None, None).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn socketio_slow_consumers_are_counted() {
    let config = Config::new()
        .set("limits.queue_messages", "4")
        .set("heartbeat.interval_ms", "200");
    let server = Server::start(config).await;
    let sid = connected(&server, "7").await;
    for i in 0..10 {
        server
            .publish(
                serde_json::json!({"tenant": "acme", "users": ["7"], "event": format!("e{i}")}),
            )
            .await;
    }
    let mut closes = 0;
    for _ in 0..500 {
        closes = server.metric("roomcast_slow_consumer_closes_total").await;
        if closes > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(closes, 1);
    let (status, _) = server.http("GET", &session(&sid), None, None).await;
    assert_eq!(status, 400, "the session is gone");
}

#[tokio::test]
async fn sigterm_does_not_wait_for_a_session_that_never_connected() {
    let config = Config::new()
        .set("shutdown.grace_ms", "600000")
        .set("log.level", "\"info\"");
    let mut server = Server::start(config).await;
    handshake(&server).await;
    server.terminate();
    // The session is closed, not waited for: the exit comes as any answer does, far within
    // the grace period (and within the 30 s a closed polling session would wait for a GET).
    let status = server.wait_exit(RECV_TIMEOUT).await;
    assert!(status.success(), "exit status {status}");
    let log = plain_log(&server);
    let line = log
        .lines()
        .find(|l| l.contains("shutting down"))
        .unwrap_or_else(|| panic!("no shutdown line in {log}"));
    assert!(line.contains("connections=1"), "{line}");
    assert!(log.contains("all connections drained"), "{log}");
}

#[tokio::test]
async fn sigterm_ends_polling_sessions_with_or_without_a_pending_get() {
    let config = Config::new()
        .set("shutdown.grace_ms", "600000")
        .set("log.level", "\"info\"");
    let mut server = Server::start(config).await;
    let waiting = connected(&server, "7").await;
    connected(&server, "8").await;
    let mut http = server.http_conn().await;
    let pending =
        tokio::spawn(async move { http.request("GET", &session(&waiting), None, None).await });
    // The GET is pending once the server saw it: a duplicate is refused then.
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.terminate();
    // Neither session is waited for: the one without a GET is dropped at once, rather than
    // kept 30 s for a GET that cannot reach a server no longer accepting connections.
    let status = server.wait_exit(RECV_TIMEOUT).await;
    assert!(status.success(), "exit status {status}");
    let log = plain_log(&server);
    assert!(log.contains("all connections drained"), "{log}");
    // The pending GET was answered with the close packet, unless the process ended first.
    if let Ok((status, body)) = pending.await {
        assert_eq!((status, body.as_str()), (200, "1"));
    }
}
