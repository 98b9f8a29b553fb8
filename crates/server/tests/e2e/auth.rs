//! Authentication: the three ways to present a token, and every way of failing it.

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::harness::{
    claims, error_code, now_unix, sign, sign_with, token, unsigned, Client, Config, Server, SECRET,
};

/// The `welcome` of user 7 of acme with the default auto-join templates.
fn assert_welcome(welcome: &serde_json::Value, exp: u64) {
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user"], "7", "{welcome}");
    assert_eq!(welcome["tenant"], "acme", "{welcome}");
    assert_eq!(
        welcome["rooms"],
        json!(["user:7", "tenant:acme"]),
        "{welcome}"
    );
    assert!(
        welcome["session"].as_str().is_some_and(|s| !s.is_empty()),
        "{welcome}"
    );
    assert_eq!(welcome["heartbeat_ms"], 25000, "{welcome}");
    assert_eq!(welcome["expires_at"], exp, "{welcome}");
}

/// Checks that an authenticated connection works: a ping is answered.
async fn assert_usable(client: &mut Client) {
    client.sync().await;
}

#[tokio::test]
async fn token_in_query_is_welcomed() {
    let server = Server::start_default().await;
    let c = claims("7", "acme");
    let mut client = server.connect_query(&sign(&c)).await;
    let welcome = client.recv_json().await;
    assert_welcome(&welcome, c["exp"].as_u64().unwrap());
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn token_in_authorization_header_is_welcomed() {
    let server = Server::start_default().await;
    let c = claims("7", "acme");
    let mut client = server.connect_header(&sign(&c)).await;
    let welcome = client.recv_json().await;
    assert_welcome(&welcome, c["exp"].as_u64().unwrap());
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn token_in_first_auth_frame_is_welcomed() {
    let server = Server::start_default().await;
    let c = claims("7", "acme");
    let mut client = server.connect_anonymous().await;
    client
        .send_json(&json!({"type": "auth", "token": sign(&c)}))
        .await;
    let welcome = client.recv_json().await;
    assert_welcome(&welcome, c["exp"].as_u64().unwrap());
    assert_usable(&mut client).await;

    // A second `auth` changes nothing: `already_authenticated` with a null id.
    client
        .send_json(&json!({"type": "auth", "token": sign(&c)}))
        .await;
    let reply = client.recv_json().await;
    assert_eq!(error_code(&reply), "already_authenticated");
    assert!(reply["id"].is_null(), "{reply}");
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn auth_frame_after_upgrade_token_is_already_authenticated() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client
        .send_json(&json!({"type": "auth", "token": token("8", "acme")}))
        .await;
    let reply = client.recv_json().await;
    assert_eq!(error_code(&reply), "already_authenticated");
    assert!(reply["id"].is_null(), "{reply}");
    // Still user 7: events for user 7 arrive.
    server
        .publish(json!({"tenant": "acme", "users": ["7"], "event": "hi"}))
        .await;
    assert_eq!(client.recv_event().await["event"], "hi");
}

#[tokio::test]
async fn expired_token_closes_with_4003() {
    let server = Server::start_default().await;
    let expired = sign(&json!({"sub": "7", "tenant_id": "acme", "exp": now_unix() - 3600}));

    let mut client = server.connect_query(&expired).await;
    let msg = client.expect_disconnect(4003).await;
    assert_eq!(msg["reconnect"], false);

    let mut client = server.connect_anonymous().await;
    client
        .send_json(&json!({"type": "auth", "token": expired}))
        .await;
    client.expect_disconnect(4003).await;
}

#[tokio::test]
async fn bad_signature_closes_with_4002() {
    let server = Server::start_default().await;
    let forged = sign_with(
        Algorithm::HS256,
        "another-secret-of-sufficient-length-0123456789",
        &claims("7", "acme"),
    );
    let mut client = server.connect_query(&forged).await;
    let msg = client.expect_disconnect(4002).await;
    assert_eq!(msg["reconnect"], false);

    // The same through the header and the auth frame.
    let mut client = server.connect_header(&forged).await;
    client.expect_disconnect(4002).await;
    let mut client = server.connect_anonymous().await;
    client
        .send_json(&json!({"type": "auth", "token": forged}))
        .await;
    client.expect_disconnect(4002).await;
}

#[tokio::test]
async fn wrong_algorithm_closes_with_4002() {
    let server = Server::start_default().await;
    // The right secret, but HS512 where the server is configured for HS256.
    let hs512 = sign_with(Algorithm::HS512, SECRET, &claims("7", "acme"));
    let mut client = server.connect_query(&hs512).await;
    client.expect_disconnect(4002).await;
}

#[tokio::test]
async fn unsigned_alg_none_token_closes_with_4002() {
    let server = Server::start_default().await;
    let none = unsigned(&claims("7", "acme"));
    let mut client = server.connect_query(&none).await;
    client.expect_disconnect(4002).await;
    let mut client = server.connect_anonymous().await;
    client
        .send_json(&json!({"type": "auth", "token": none}))
        .await;
    client.expect_disconnect(4002).await;
}

#[tokio::test]
async fn token_without_tenant_or_garbage_closes_with_4002() {
    let server = Server::start_default().await;
    let no_tenant = sign(&json!({"sub": "7", "exp": now_unix() + 3600}));
    let mut client = server.connect_query(&no_tenant).await;
    client.expect_disconnect(4002).await;
    let mut client = server.connect_query("not-a-jwt").await;
    client.expect_disconnect(4002).await;
}

#[tokio::test]
async fn no_auth_frame_before_the_deadline_closes_with_4001() {
    let server = Server::start(Config::new().set("auth.auth_timeout_ms", "300")).await;
    let mut client = server.connect_anonymous().await;
    // Send nothing: the server gives up after auth.auth_timeout_ms.
    let msg = client.expect_disconnect(4001).await;
    assert_eq!(msg["reconnect"], false);
}

#[tokio::test]
async fn first_frame_other_than_auth_closes_with_4001() {
    let server = Server::start_default().await;

    // A request whose id can be read is answered `unauthenticated` first.
    let mut client = server.connect_anonymous().await;
    client
        .send_json(&json!({"type": "subscribe", "id": 1, "room": "order:1"}))
        .await;
    let reply = client.recv_json().await;
    assert_eq!(error_code(&reply), "unauthenticated", "{reply}");
    assert_eq!(reply["id"], 1, "{reply}");
    client.expect_disconnect(4001).await;

    // A frame that is not even a message gets no reply, only the close.
    let mut client = server.connect_anonymous().await;
    client.send_text("{not json").await;
    client.expect_disconnect(4001).await;
}
