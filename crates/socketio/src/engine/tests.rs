//! The Engine.IO runtime over in-memory requests: the polling rules of the protocol test
//! suite, CORS, queue bounds, server closes and packet groups.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::http::{Method, StatusCode};
use bytes::Bytes;
use roomcast_engine::driver::IoStats;
use roomcast_engine::{Outbound, QueueLimits};

use super::*;
use crate::config::Cors;
use crate::testkit::{clock, get, handshake, post, request, settle};

/// Echoes messages and keeps every session's handle and close reason.
#[derive(Debug, Default)]
struct Echo {
    conns: Mutex<Vec<EngineConn>>,
    closed: Mutex<Vec<CloseReason>>,
}

impl EngineHandler for Echo {
    type State = ();

    fn on_open(&self, conn: &EngineConn, req: ::http::request::Parts) {
        assert_eq!(req.uri.path(), "/engine.io/");
        self.conns.lock().unwrap().push(conn.clone());
    }

    fn on_message(&self, _: &mut (), conn: &EngineConn, message: Message) {
        let _ = match message {
            Message::Text(text) => conn.send_text(&text),
            Message::Binary(data) => conn.send_binary(data),
        };
    }

    fn on_close(&self, _: &mut (), _: &EngineConn, reason: CloseReason) {
        self.closed.lock().unwrap().push(reason);
    }
}

fn config() -> Config {
    Config {
        path: "/engine.io/".to_owned(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..Config::default()
    }
}

fn endpoint(config: Config) -> (Arc<EngineIo<Echo>>, watch::Sender<Instant>) {
    let (tick, ticks) = clock();
    let eio = EngineIo::new(config, Echo::default(), ticks, Arc::new(IoStats::default()));
    (eio, tick)
}

#[tokio::test]
async fn polling_round_trip() {
    let (eio, _tick) = endpoint(config());
    let (sid, open) = handshake(&eio).await;
    assert!(open.contains(r#""upgrades":["websocket"],"pingInterval":300,"pingTimeout":200"#));
    assert_eq!(eio.session_count(), 1);

    let pushed = post(&eio, &sid, "4hello\x1ebAQIDBA==").await;
    assert_eq!(
        (pushed.status, pushed.body.as_str()),
        (StatusCode::OK, "ok")
    );
    assert_eq!(pushed.headers[::http::header::CONTENT_TYPE], "text/html");
    let polled = get(&eio, &sid).await;
    assert_eq!(polled.body, "4hello\x1ebAQIDBA==");
    assert_eq!(
        polled.headers[::http::header::CONTENT_TYPE],
        "text/plain; charset=UTF-8"
    );
}

#[tokio::test]
async fn refusals_are_engineio_errors() {
    let (eio, _tick) = endpoint(config());
    let cases = [
        (Method::GET, "transport=polling", 400, 5),
        (Method::GET, "EIO=4&transport=abc", 400, 0),
        (Method::POST, "EIO=4&transport=polling", 400, 2),
        (
            Method::GET,
            "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            400,
            1,
        ),
        (Method::GET, "EIO=4&transport=websocket", 400, 3),
    ];
    for (method, query, status, code) in cases {
        let answer = request(&eio, method, query, "", None).await;
        assert_eq!(answer.status.as_u16(), status, "{query}");
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["code"], code, "{query}");
    }
}

#[tokio::test]
async fn duplicate_get_closes_the_session() {
    let (eio, _tick) = endpoint(config());
    let (sid, _) = handshake(&eio).await;
    let first = tokio::spawn({
        let (eio, sid) = (eio.clone(), sid.clone());
        async move { get(&eio, &sid).await }
    });
    settle().await;
    assert_eq!(get(&eio, &sid).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(first.await.unwrap().body, "1");
    assert_eq!(get(&eio, &sid).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        eio.handler().closed.lock().unwrap().as_slice(),
        [CloseReason::Error(crate::engineio::Error::DuplicateGet)]
    );
    assert_eq!(eio.session_count(), 0);
}

#[tokio::test]
async fn aborted_get_closes_the_session() {
    let (eio, _tick) = endpoint(config());
    let (sid, _) = handshake(&eio).await;
    // Dropped while pending, as hyper drops it when the client goes away.
    let pending = tokio::time::timeout(Duration::from_millis(5), get(&eio, &sid)).await;
    assert!(pending.is_err());
    assert_eq!(get(&eio, &sid).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        eio.handler().closed.lock().unwrap().as_slice(),
        [CloseReason::TransportClose]
    );
}

#[tokio::test]
async fn client_close_ends_the_pending_get_with_a_noop() {
    let (eio, _tick) = endpoint(config());
    let (sid, _) = handshake(&eio).await;
    let pending = tokio::spawn({
        let (eio, sid) = (eio.clone(), sid.clone());
        async move { get(&eio, &sid).await }
    });
    settle().await;
    assert_eq!(post(&eio, &sid, "1").await.body, "ok");
    assert_eq!(pending.await.unwrap().body, "6");
    assert_eq!(get(&eio, &sid).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(eio.session_count(), 0);
}

#[tokio::test]
async fn bad_and_oversized_bodies_close_the_session() {
    let (eio, _tick) = endpoint(config());
    let (sid, _) = handshake(&eio).await;
    assert_eq!(
        post(&eio, &sid, "abc").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(get(&eio, &sid).await.status, StatusCode::BAD_REQUEST);

    let (eio, _tick) = endpoint(Config {
        max_payload: 10,
        ..config()
    });
    let (sid, _) = handshake(&eio).await;
    let answer = post(&eio, &sid, "4 more than ten bytes").await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(get(&eio, &sid).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn batches_respect_max_payload() {
    let (eio, _tick) = endpoint(Config {
        max_payload: 12,
        ..config()
    });
    let (sid, _) = handshake(&eio).await;
    let conn = eio.handler().conns.lock().unwrap()[0].clone();
    for _ in 0..3 {
        conn.send_text(b"aaaa").unwrap();
    }
    assert_eq!(get(&eio, &sid).await.body, "4aaaa\x1e4aaaa");
    assert_eq!(get(&eio, &sid).await.body, "4aaaa");
}

#[tokio::test]
async fn heartbeat_runs_on_the_shared_tick() {
    let (eio, tick) = endpoint(Config {
        ping_interval: Duration::from_millis(1),
        ping_timeout: Duration::from_secs(60),
        ..config()
    });
    let (sid, _) = handshake(&eio).await;
    let pending = tokio::spawn({
        let (eio, sid) = (eio.clone(), sid.clone());
        async move { get(&eio, &sid).await }
    });
    settle().await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    tick.send(Instant::now()).unwrap();
    assert_eq!(pending.await.unwrap().body, "2");
    assert_eq!(post(&eio, &sid, "3").await.body, "ok");
}

#[tokio::test]
async fn server_close_delivers_the_queue_then_closes() {
    let (eio, _tick) = endpoint(config());
    let (sid, _) = handshake(&eio).await;
    let conn = eio.handler().conns.lock().unwrap()[0].clone();
    conn.send_text(b"bye").unwrap();
    conn.close();
    assert!(conn.send_text(b"late").is_err());
    // The last packets and the close in one answer: no further GET is needed.
    assert_eq!(get(&eio, &sid).await.body, "4bye\x1e1");
    assert_eq!(get(&eio, &sid).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        eio.handler().closed.lock().unwrap().as_slice(),
        [CloseReason::ServerClose]
    );
}

#[tokio::test]
async fn close_all_reaches_every_session() {
    let (eio, _tick) = endpoint(config());
    let (a, _) = handshake(&eio).await;
    let (b, _) = handshake(&eio).await;
    assert_eq!(eio.session_count(), 2);
    eio.close_all();
    assert_eq!(get(&eio, &a).await.body, "1");
    assert_eq!(get(&eio, &b).await.body, "1");
    assert_eq!(eio.session_count(), 0);
}

#[tokio::test]
async fn server_close_with_more_than_a_payload_ends_with_the_last_one() {
    let (eio, _tick) = endpoint(Config {
        max_payload: 12,
        ..config()
    });
    let (sid, _) = handshake(&eio).await;
    let conn = eio.handler().conns.lock().unwrap()[0].clone();
    conn.send_text(b"aaaa").unwrap();
    conn.send_text(b"bbbb").unwrap();
    conn.send_text(b"cccc").unwrap();
    conn.close();
    assert_eq!(get(&eio, &sid).await.body, "4aaaa\x1e4bbbb");
    assert_eq!(get(&eio, &sid).await.body, "4cccc\x1e1");
    assert_eq!(eio.session_count(), 0);
}

#[tokio::test]
async fn shutdown_drops_polling_sessions_without_a_pending_get() {
    let (eio, _tick) = endpoint(config());
    let (waiting, _) = handshake(&eio).await;
    let (idle, _) = handshake(&eio).await;
    let pending = tokio::spawn({
        let (eio, sid) = (eio.clone(), waiting.clone());
        async move { get(&eio, &sid).await }
    });
    settle().await;
    let conns = eio.handler().conns.lock().unwrap().clone();
    conns[0].send_text(b"last").unwrap();
    settle().await;
    let first = pending.await.unwrap();
    assert_eq!(first.body, "4last");
    let pending = tokio::spawn({
        let (eio, sid) = (eio.clone(), waiting.clone());
        async move { get(&eio, &sid).await }
    });
    settle().await;

    eio.shutdown();
    // The idle session is gone at once; its next request finds it unknown.
    assert_eq!(eio.session_count(), 1);
    let late = get(&eio, &idle).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
    assert!(late.body.contains("Session ID unknown"), "{}", late.body);
    // The pending GET gets the close.
    assert_eq!(pending.await.unwrap().body, "1");
    assert_eq!(eio.session_count(), 0);
    assert_eq!(
        eio.handler().closed.lock().unwrap().as_slice(),
        [CloseReason::ServerClose, CloseReason::ServerClose]
    );
}

#[tokio::test]
async fn pending_sessions_are_bounded_until_admitted() {
    let (eio, _tick) = endpoint(Config {
        max_pending_sessions: 2,
        ..config()
    });
    let (a, _) = handshake(&eio).await;
    let (b, _) = handshake(&eio).await;
    let refused = request(&eio, Method::GET, "EIO=4&transport=polling", "", None).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.body,
        r#"{"code":3,"message":"Too many pending sessions"}"#
    );
    // An admitted session leaves room for another handshake; so does a closed one.
    eio.handler().conns.lock().unwrap()[0].admit();
    assert_eq!(eio.pending_count(), 1);
    let (_c, _) = handshake(&eio).await;
    assert_eq!(post(&eio, &a, "1").await.body, "ok");
    let conn = eio.handler().conns.lock().unwrap()[1].clone();
    conn.close();
    assert_eq!(get(&eio, &b).await.body, "1");
    assert_eq!(eio.pending_count(), 1);
    handshake(&eio).await;
    assert_eq!((eio.session_count(), eio.pending_count()), (3, 2));
}

#[tokio::test]
async fn a_post_over_the_body_budget_is_refused_at_once() {
    let (eio, _tick) = endpoint(Config {
        body_budget: roomcast_engine::body::BodyBudget::new(4),
        ..config()
    });
    let (sid, _) = handshake(&eio).await;
    let refused = post(&eio, &sid, "4hello").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.body, r#"{"code":3,"message":"Server busy"}"#);
    assert_eq!(
        eio.handler().closed.lock().unwrap().as_slice(),
        [CloseReason::Error(crate::engineio::Error::BodiesBusy)]
    );
    assert_eq!(eio.config().body_budget.in_use(), 0);
}

#[tokio::test]
async fn slow_consumer_is_closed() {
    let (eio, _tick) = endpoint(Config {
        queue: QueueLimits {
            max_messages: 2,
            max_bytes: 1 << 20,
        },
        ..config()
    });
    let (sid, _) = handshake(&eio).await;
    let conn = eio.handler().conns.lock().unwrap()[0].clone();
    conn.send_text(b"1").unwrap();
    conn.send_text(b"2").unwrap();
    assert!(matches!(
        conn.send_text(b"3"),
        Err(roomcast_engine::PushError::Full(_))
    ));
    assert_eq!(get(&eio, &sid).await.body, "1", "nothing more is delivered");
    assert_eq!(
        eio.handler().closed.lock().unwrap().as_slice(),
        [CloseReason::SlowConsumer]
    );
    assert_eq!(eio.stats.slow_consumers.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn groups_stay_together_over_polling() {
    let (eio, _tick) = endpoint(config());
    let (sid, _) = handshake(&eio).await;
    let conn = eio.handler().conns.lock().unwrap()[0].clone();
    conn.push_group(&[
        Outbound::Text(Bytes::from_static(
            b"451-[\"a\",{\"_placeholder\":true,\"num\":0}]",
        )),
        Outbound::Binary(Bytes::from_static(&[1, 2, 3, 4])),
    ])
    .unwrap();
    conn.send_text(b"after").unwrap();
    assert_eq!(
        get(&eio, &sid).await.body,
        "451-[\"a\",{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA==\x1e4after"
    );
}

#[tokio::test]
async fn cors_headers_for_allowed_origins() {
    let (eio, _tick) = endpoint(Config {
        cors: Cors {
            allowed_origins: vec!["https://app.example".to_owned()],
            credentials: true,
        },
        ..config()
    });
    let answer = request(
        &eio,
        Method::GET,
        "EIO=4&transport=polling",
        "",
        Some("https://app.example"),
    )
    .await;
    assert_eq!(
        answer.headers[::http::header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    assert_eq!(
        answer.headers[::http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );
    let other = request(
        &eio,
        Method::GET,
        "EIO=abc&transport=polling",
        "",
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert!(!other
        .headers
        .contains_key(::http::header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let preflight = request(
        &eio,
        Method::OPTIONS,
        "EIO=4&transport=polling",
        "",
        Some("https://app.example"),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.headers[::http::header::ACCESS_CONTROL_ALLOW_METHODS],
        "GET, POST, OPTIONS"
    );
}

#[test]
fn close_codes() {
    assert_eq!(close_code(CloseReason::PingTimeout), 4000);
    assert_eq!(
        close_code(CloseReason::Error(crate::engineio::Error::PayloadTooLarge)),
        1009
    );
    assert_eq!(
        close_code(CloseReason::Error(crate::engineio::Error::BadQuery)),
        1002
    );
    assert_eq!(close_code(CloseReason::ServerClose), 1000);
}
