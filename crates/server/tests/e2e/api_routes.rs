//! `[[api.routes]]`: another server's endpoints answered by the API's operations, with the
//! request read into the operation and the answer shaped by the route's template.

use serde_json::{json, Value};

use crate::harness::{Config, Server, ACME_KEY, GLOBEX_KEY};

const ROUTES: &str = r#"
[[api.routes]]
path = "/health"
operation = "health"
auth = "none"
response = { status = "OK", service = "websocket-service", timestamp = "{now}", roomcast = "{result}" }

[[api.routes]]
path = "/connected-users"
operation = "connections"
auth = "none"
tenant = "acme"
response = { success = true, data = { count = "{result.users}", users = "{result.user_ids}" } }

[[api.routes]]
path = "/user-status/{userId}"
operation = "user_status"
tenant = "acme"
user = "{params.userId}"
response = { success = true, data = { userId = "{params.userId}", isConnected = "{result.online}" } }

[[api.routes]]
path = "/api/websocket/info"
operation = "connections"
rooms = ["org:{query.organizationId}", "tenant:{query.tenantId}"]
response = { success = true, data = { connections = "{result.connections}", users = "{result.users}", rooms = "{result.rooms}" } }

[[api.routes]]
method = "POST"
path = "/api/websocket/broadcast"
operation = "publish"
event = "{body.type}"
events = ["service-update", "incident-update", "status-update"]
rooms = ["org:{body.organizationId}", "tenant:{body.tenantId}"]
broadcast = "when_no_target"
data = { type = "{body.type}", data = "{body.data}", timestamp = "{now}" }
response = { success = true, message = "Broadcast sent", delivered = "{result.delivered}" }
"#;

async fn server() -> Server {
    let config = Config::new()
        .set(
            "rooms.acl",
            r#"[{ pattern = "org:*" }, { pattern = "tenant:*" }]"#,
        )
        .with(&format!("[api]\n{}{ROUTES}", api_table()));
    Server::start(config).await
}

/// The harness's `[api]` keys, written again: `with` replaces whole top-level tables.
fn api_table() -> String {
    format!(
        "keys = [\"{}\"]\ntenant_keys = [{{ tenant = \"acme\", key = \"{ACME_KEY}\" }}, \
         {{ tenant = \"globex\", key = \"{GLOBEX_KEY}\" }}]\n",
        crate::harness::PLATFORM_KEY
    )
}

#[tokio::test]
async fn a_health_route_answers_in_its_own_shape_without_a_key() {
    let server = server().await;
    let (status, body) = server.api("GET", "/health", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "OK", "{body}");
    assert_eq!(body["service"], "websocket-service", "{body}");
    assert!(
        body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    // The server's own report stays readable under the route's `{result}`.
    assert_eq!(body["roomcast"]["status"], "ok", "{body}");
    assert_eq!(body["roomcast"]["broker"]["state"], "up", "{body}");
}

#[tokio::test]
async fn connected_users_and_user_status_read_the_routes_tenant_only() {
    let server = server().await;
    let _a = server.connect_user("1", "acme").await;
    let _b = server.connect_user("2", "acme").await;
    let _b2 = server.connect_user("2", "acme").await;
    let _g = server.connect_user("3", "globex").await;

    let (status, body) = server.api("GET", "/connected-users", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "data": {"count": 2, "users": ["1", "2"]}})
    );

    // This route keeps the API's key: none is refused, another tenant's key too.
    let (status, body) = server.api("GET", "/user-status/1", None, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server
        .api("GET", "/user-status/1", Some(GLOBEX_KEY), None)
        .await;
    assert_eq!(status, 403, "{body}");
    for (user, online) in [("1", true), ("3", false), ("a%20b", false)] {
        let (status, body) = server
            .api("GET", &format!("/user-status/{user}"), Some(ACME_KEY), None)
            .await;
        assert_eq!(status, 200, "{body}");
        let id = user.replace("%20", " ");
        assert_eq!(
            body,
            json!({"success": true, "data": {"userId": id, "isConnected": online}})
        );
    }
    // Other paths and methods are not the route's.
    let (status, _) = server
        .api("GET", "/user-status/1/more", Some(ACME_KEY), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .api("POST", "/connected-users", Some(ACME_KEY), Some("{}"))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn info_counts_the_rooms_the_query_names() {
    let server = server().await;
    let mut a = server.connect_user("1", "acme").await;
    a.join("org:o1").await;
    let mut b = server.connect_user("2", "acme").await;
    b.join("org:o1").await;
    b.join("tenant:t1").await;
    let mut g = server.connect_user("3", "globex").await;
    g.join("org:o1").await;

    let (status, body) = server
        .api(
            "GET",
            "/api/websocket/info?organizationId=o1&tenantId=t1",
            Some(ACME_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"connections": 2, "users": 2, "rooms": {"org:o1": 2, "tenant:t1": 1}})
    );
    // A room whose query parameter is absent is not counted.
    let (_, body) = server
        .api("GET", "/api/websocket/info", Some(GLOBEX_KEY), None)
        .await;
    assert_eq!(
        body["data"],
        json!({"connections": 1, "users": 1, "rooms": {}})
    );
}

#[tokio::test]
async fn broadcast_publishes_to_the_rooms_the_body_names_or_to_everyone() {
    let server = server().await;
    let mut member = server.connect_user("1", "acme").await;
    member.join("org:o1").await;
    let mut other = server.connect_user("2", "acme").await;
    let mut foreign = server.connect_user("3", "globex").await;
    foreign.join("org:o1").await;

    let post = |body: Value| {
        let server = &server;
        async move {
            server
                .api(
                    "POST",
                    "/api/websocket/broadcast",
                    Some(ACME_KEY),
                    Some(&body.to_string()),
                )
                .await
        }
    };
    let (status, body) = post(json!({
        "type": "service-update", "data": {"id": "s1", "status": "degraded"}, "organizationId": "o1"
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["message"], "Broadcast sent", "{body}");
    let event = member.recv_event().await;
    assert_eq!(event["event"], "service-update", "{event}");
    assert_eq!(event["room"], "org:o1", "{event}");
    assert_eq!(event["data"]["type"], "service-update", "{event}");
    assert_eq!(
        event["data"]["data"],
        json!({"id": "s1", "status": "degraded"})
    );
    assert!(event["data"]["timestamp"].is_string(), "{event}");

    // No room named: the whole tenant, and only it.
    let (status, body) = post(json!({"type": "status-update", "data": {"overall": "ok"}})).await;
    assert_eq!(status, 200, "{body}");
    for client in [&mut member, &mut other] {
        let event = client.recv_event().await;
        assert_eq!(event["event"], "status-update", "{event}");
    }
    // `other` was not in org:o1 and the other tenant in neither publish.
    other.sync().await;
    assert!(other.take_buffered().is_empty());
    foreign.sync().await;
    assert!(foreign.take_buffered().is_empty());

    // Only the listed events.
    let (status, body) = post(json!({"type": "admin-reset", "data": {}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin-reset"),
        "{body}"
    );
    let (status, body) = post(json!({"data": {}})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = server
        .api(
            "POST",
            "/api/websocket/broadcast",
            Some(ACME_KEY),
            Some("not json"),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .api("POST", "/api/websocket/broadcast", None, Some("{}"))
        .await;
    assert_eq!(status, 401);
}
