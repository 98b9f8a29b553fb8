//! The HTTP API besides publishing: connections, user status, disconnect, info, health and
//! metrics.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::harness::{Config, Server, ACME_KEY, GLOBEX_KEY, PLATFORM_KEY};
use crate::limits::wait_offline;

fn by_tenant(answer: &Value) -> HashMap<String, Value> {
    answer["tenants"]
        .as_array()
        .unwrap_or_else(|| panic!("no tenants in {answer}"))
        .iter()
        .map(|t| (t["tenant"].as_str().unwrap().to_owned(), t.clone()))
        .collect()
}

#[tokio::test]
async fn connections_are_counted_per_tenant() {
    let server = Server::start_default().await;
    let _a = server.connect_user("1", "acme").await;
    let _b = server.connect_user("2", "acme").await;
    let _c = server.connect_user("2", "acme").await;
    let _g = server.connect_user("1", "globex").await;

    let (status, answer) = server
        .api("GET", "/api/connections", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["connections"], 4, "{answer}");
    let tenants = by_tenant(&answer);
    assert_eq!(tenants.len(), 2, "{answer}");
    assert_eq!(tenants["acme"]["connections"], 3, "{answer}");
    assert_eq!(tenants["acme"]["users"], 2, "{answer}");
    assert_eq!(tenants["acme"]["user_ids"], json!(["1", "2"]), "{answer}");
    assert_eq!(tenants["globex"]["connections"], 1, "{answer}");

    // A platform key may narrow to one tenant.
    let (status, answer) = server
        .api(
            "GET",
            "/api/connections?tenant=globex",
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["connections"], 1, "{answer}");

    // A tenant key sees its own tenant only, and may not ask for another.
    let (status, answer) = server
        .api("GET", "/api/connections", Some(GLOBEX_KEY), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["connections"], 1, "{answer}");
    let tenants = by_tenant(&answer);
    assert_eq!(tenants.keys().collect::<Vec<_>>(), ["globex"], "{answer}");
    let (status, answer) = server
        .api(
            "GET",
            "/api/connections?tenant=acme",
            Some(GLOBEX_KEY),
            None,
        )
        .await;
    assert_eq!(status, 403, "{answer}");

    let (status, _) = server.api("GET", "/api/connections", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn user_status_lists_sessions() {
    let server = Server::start_default().await;
    let a = server.connect_user("7", "acme").await;
    let b = server.connect_user("7", "acme").await;

    let (status, answer) = server
        .api(
            "GET",
            "/api/users/7/status?tenant=acme",
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["online"], true, "{answer}");
    assert_eq!(answer["connections"], 2, "{answer}");
    let mut sessions: Vec<String> = answer["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    sessions.sort();
    let mut expected = vec![a.session(), b.session()];
    expected.sort();
    assert_eq!(sessions, expected, "{answer}");

    // The same user id in another tenant is another user.
    let (status, answer) = server
        .api(
            "GET",
            "/api/users/7/status?tenant=globex",
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["online"], false, "{answer}");
    assert_eq!(answer["connections"], 0, "{answer}");

    // A tenant key needs no tenant parameter; a platform key does.
    let (status, answer) = server
        .api("GET", "/api/users/7/status", Some(ACME_KEY), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["connections"], 2, "{answer}");
    let (status, _) = server
        .api("GET", "/api/users/7/status", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .api(
            "GET",
            "/api/users/7/status?tenant=acme",
            Some(GLOBEX_KEY),
            None,
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn disconnect_by_user_closes_every_session_with_4004() {
    let server = Server::start_default().await;
    let mut a = server.connect_user("7", "acme").await;
    let mut b = server.connect_user("7", "acme").await;
    let mut other = server.connect_user("8", "acme").await;
    let mut globex = server.connect_user("7", "globex").await;

    // A tenant key cannot disconnect another tenant's users.
    let (status, answer) = server
        .api(
            "POST",
            "/api/disconnect",
            Some(GLOBEX_KEY),
            Some(r#"{"tenant":"acme","user":"7"}"#),
        )
        .await;
    assert_eq!(status, 403, "{answer}");

    let (status, answer) = server
        .api(
            "POST",
            "/api/disconnect",
            Some(PLATFORM_KEY),
            Some(r#"{"tenant":"acme","user":"7","reason":"account suspended"}"#),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["disconnected"], 2, "{answer}");
    for client in [&mut a, &mut b] {
        let msg = client.expect_disconnect(4004).await;
        assert_eq!(msg["reason"], "account suspended", "{msg}");
        assert_eq!(msg["reconnect"], false, "{msg}");
    }
    other.sync().await;
    globex.sync().await;
    wait_offline(&server, "acme", "7").await;
}

#[tokio::test]
async fn disconnect_by_session_closes_that_session_only() {
    let server = Server::start_default().await;
    let mut a = server.connect_user("7", "acme").await;
    let mut b = server.connect_user("7", "acme").await;
    let body = json!({"session": a.session()}).to_string();

    // Another tenant's key cannot tell the session from an unknown one, nor end it.
    let (status, answer) = server
        .api("POST", "/api/disconnect", Some(GLOBEX_KEY), Some(&body))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["disconnected"], 0, "{answer}");
    let unknown = json!({"session": "ffffffff"}).to_string();
    let (_, unknown_answer) = server
        .api("POST", "/api/disconnect", Some(GLOBEX_KEY), Some(&unknown))
        .await;
    assert_eq!(answer, unknown_answer);

    let (status, answer) = server
        .api("POST", "/api/disconnect", Some(ACME_KEY), Some(&body))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["disconnected"], 1, "{answer}");
    a.expect_disconnect(4004).await;
    b.sync().await;

    let (status, answer) = server
        .api(
            "POST",
            "/api/disconnect",
            Some(PLATFORM_KEY),
            Some(r#"{"tenant":"acme"}"#),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn info_health_and_metrics() {
    let server = Server::start_default().await;
    let mut client = server.connect_user("7", "acme").await;
    client.sync().await;

    let (status, answer) = server
        .api("GET", "/api/info", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["name"], "roomcast", "{answer}");
    assert!(answer["version"].is_string(), "{answer}");
    assert_eq!(answer["connections"], 1, "{answer}");
    assert_eq!(answer["draining"], false, "{answer}");
    let (status, _) = server.api("GET", "/api/info", None, None).await;
    assert_eq!(status, 401);

    // Health needs no key.
    let (status, answer) = server.api("GET", "/health", None, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ok", "{answer}");

    let (status, text) = server.http("GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("# TYPE roomcast_connections gauge"), "{text}");
    assert!(
        text.lines().any(|l| l == "roomcast_connections 1"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "roomcast_tenant_connections{tenant=\"acme\"} 1"),
        "{text}"
    );
    assert_eq!(
        server.metric("roomcast_slow_consumer_closes_total").await,
        0
    );

    let (status, answer) = server.api("GET", "/nope", None, None).await;
    assert_eq!(status, 404, "{answer}");
}

#[tokio::test]
async fn metrics_key_protects_metrics() {
    let server = Server::start(Config::new().set("api.metrics_key", "\"scrape-me\"")).await;
    let (status, _) = server.http("GET", "/metrics", None, None).await;
    assert_eq!(status, 401);
    let (status, text) = server
        .http("GET", "/metrics", Some("scrape-me"), None)
        .await;
    assert_eq!(status, 200);
    assert!(text.contains("roomcast_connections"), "{text}");
}
