//! The RPC proxy and the connect proxy against real HTTP backends started by the tests
//! ([`Backend`]): a Socket.IO `rpc` route (seed 000's `request_data_refresh` answered by
//! `data_refreshed`) and the native `rpc` command, through success, refusal, timeout and a
//! backend that is down; a browser-like client connecting with its session cookie alone.

use serde_json::{json, Value};

use crate::harness::{
    down_url, error_code, token, Backend, Config, Server, SioIncoming, BACKEND_SECRET,
};

/// The harness defaults with backends `app` (the test backend), `down` (nothing listens) and
/// `slow` (the test backend with a short timeout), seed 000's route on `/` and a native method
/// for each backend path.
fn config(backend: &Backend) -> Config {
    let route = |event: &str, backend: &str, path: &str| {
        format!(
            "{{ event = \"{event}\", action = \"rpc\", backend = \"{backend}\", \
             path = \"{path}\", reply = {{ event = \"data_refreshed\" }} }}"
        )
    };
    let events = [
        route("request_data_refresh", "app", "/ok"),
        route("refuse", "app", "/refuse"),
        route("slow", "slow", "/slow"),
        route("down", "down", "/ok"),
        route("fail", "app", "/fail"),
    ]
    .join(", ");
    let backend_table = |url: &str, timeout: u64| {
        format!(
            "{{ url = \"{url}\", secret = \"{BACKEND_SECRET}\", timeout_ms = {timeout}, \
             claims = [\"company_id\"] }}"
        )
    };
    Config::new()
        .set("rpc.backends.app", &backend_table(&backend.url(), 5000))
        .set("rpc.backends.slow", &backend_table(&backend.url(), 300))
        .set("rpc.backends.down", &backend_table(&down_url(), 5000))
        .set(
            "rpc.methods",
            concat!(
                r#"{ "report" = { backend = "app", path = "/ok" }, "#,
                r#""missing" = { backend = "app", path = "/refuse" }, "#,
                r#""slow" = { backend = "slow", path = "/slow" }, "down" = { backend = "down" } }"#
            ),
        )
        .set(
            "socketio.namespaces",
            &format!(r#"[{{ name = "/", events = [{events}] }}]"#),
        )
}

/// A token whose claims carry `company_id`, which the backends forward.
fn company_token() -> String {
    let mut claims = crate::harness::claims("7", "acme");
    claims["company_id"] = json!(3);
    crate::harness::sign(&claims)
}

#[tokio::test]
async fn seed_000s_data_refresh_is_answered_through_the_rpc_proxy() {
    let backend = Backend::start().await;
    let server = Server::start(config(&backend)).await;
    let mut client = server.sio_connect("/", &company_token()).await;
    let args = json!([{"type": "tenants", "force_refresh": true}]);
    client.emit("/", "request_data_refresh", args.clone()).await;
    let (_, answer) = client.event("data_refreshed").await;
    let result = &answer[0];
    assert_eq!(result["signed"], true, "{result}");
    let body = &result["body"];
    assert_eq!(body["event"], "request_data_refresh");
    assert_eq!(
        (&body["user"], &body["tenant"]),
        (&json!("7"), &json!("acme"))
    );
    assert_eq!(body["claims"], json!({"company_id": 3}));
    assert_eq!(body["namespace"], "/");
    assert_eq!(body["args"], args);
    assert!(body["session"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn rpc_refusals_timeouts_and_dead_backends_are_told_as_errors() {
    let backend = Backend::start().await;
    let server = Server::start(config(&backend)).await;
    let mut client = server.sio_connect("/", &token("7", "acme")).await;
    for (event, message) in [
        ("refuse", "no such report"),
        ("down", "backend unavailable"),
        ("fail", "backend unavailable"),
    ] {
        client.emit("/", event, json!([])).await;
        let (_, args) = client.event("error").await;
        assert_eq!(args, [json!({"message": message})], "{event}");
    }
    // A slow backend holds no one else up: another client's call completes meanwhile.
    client.emit("/", "slow", json!([])).await;
    let mut other = server.sio_connect("/", &token("8", "acme")).await;
    other.emit("/", "request_data_refresh", json!([{}])).await;
    let (_, answer) = other.event("data_refreshed").await;
    assert_eq!(answer[0]["body"]["user"], "8");
    let (_, args) = client.event("error").await;
    assert_eq!(args, [json!({"message": "backend timed out"})]);
    let (status, metrics) = server.http("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    for line in [
        "roomcast_rpc_calls_total{backend=\"app\",outcome=\"refused\"} 1",
        "roomcast_rpc_calls_total{backend=\"down\",outcome=\"unavailable\"} 1",
        "roomcast_rpc_calls_total{backend=\"slow\",outcome=\"timeout\"} 1",
        "roomcast_rpc_calls_total{backend=\"app\",outcome=\"ok\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn an_ack_is_answered_with_the_result() {
    let backend = Backend::start().await;
    let server = Server::start(config(&backend)).await;
    let mut client = server.sio_connect("/", &token("7", "acme")).await;
    client
        .emit_with_ack(
            "/",
            "request_data_refresh",
            12,
            json!([{"type": "notifications"}]),
        )
        .await;
    match client.next_packet().await {
        SioIncoming::Ack(_, 12, args) => {
            assert_eq!(args[0]["body"]["args"], json!([{"type": "notifications"}]));
        }
        other => panic!("expected the ack, got {other:?}"),
    }
    client.emit_with_ack("/", "refuse", 13, json!([])).await;
    match client.next_packet().await {
        SioIncoming::Ack(_, 13, args) => assert_eq!(args, [json!({"message": "no such report"})]),
        other => panic!("expected the ack, got {other:?}"),
    }
}

#[tokio::test]
async fn native_rpc_answers_results_and_errors() {
    let backend = Backend::start().await;
    let server = Server::start(config(&backend)).await;
    let mut client = server.connect(&company_token()).await;
    let reply = client
        .request(json!({"type": "rpc", "method": "report", "data": {"period": "week"}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let body = &reply["result"]["body"];
    assert_eq!(body["method"], "report");
    assert_eq!(body["args"], json!([{"period": "week"}]));
    assert_eq!(body["claims"], json!({"company_id": 3}));
    assert_eq!(body["session"], Value::String(client.session()));
    let reply = client
        .request(json!({"type": "rpc", "method": "missing"}))
        .await;
    assert_eq!(error_code(&reply), "refused");
    assert_eq!(reply["error"]["reason"], "not_found");
    assert_eq!(reply["error"]["message"], "no such report");
    let reply = client
        .request(json!({"type": "rpc", "method": "down"}))
        .await;
    assert_eq!(error_code(&reply), "backend_unavailable");
    let reply = client
        .request(json!({"type": "rpc", "method": "slow"}))
        .await;
    assert_eq!(error_code(&reply), "backend_timeout");
    let reply = client
        .request(json!({"type": "rpc", "method": "nope"}))
        .await;
    assert_eq!(error_code(&reply), "unknown_method");
}

/// The harness defaults with the connect proxy at the test backend, forwarding `session_id`.
fn proxied(backend: &Backend, mode: &str) -> Config {
    Config::new().set(
        "auth.connect_proxy",
        &format!(
            "{{ url = \"{}/connect\", secret = \"{BACKEND_SECRET}\", mode = \"{mode}\", \
             cookies = [\"session_id\"], timeout_ms = 2000 }}",
            backend.url()
        ),
    )
}

#[tokio::test]
async fn a_session_cookie_connects_native_clients_through_the_connect_proxy() {
    let backend = Backend::start().await;
    let server = Server::start(proxied(&backend, "fallback")).await;
    let open_from = |cookie: &str, origin: Option<String>| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = server.ws_url("").into_client_request().unwrap();
        req.headers_mut()
            .insert(http::header::COOKIE, cookie.parse().unwrap());
        if let Some(origin) = origin {
            req.headers_mut()
                .insert(http::header::ORIGIN, origin.parse().unwrap());
        }
        crate::harness::Client::open(req)
    };
    let open = |cookie: &str| open_from(cookie, None);
    let mut client = open("theme=dark; session_id=good").await;
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(
        (&welcome["user"], &welcome["tenant"]),
        (&json!("7"), &json!("acme"))
    );
    assert_eq!(welcome["rooms"], json!(["user:7", "tenant:acme"]));
    let mut refused = open("session_id=stale").await;
    let disconnect = refused.expect_disconnect(4002).await;
    assert_eq!(disconnect["reason"], "session expired");
    // Another site's page, its visitor's cookie sent along by the browser: refused before the
    // backend is asked. A page of the server's own origin connects.
    let evil = Some("https://evil.example".to_owned());
    let mut cross_site = open_from("session_id=good", evil).await;
    let disconnect = cross_site.expect_disconnect(4002).await;
    assert_eq!(disconnect["reason"], "origin not allowed");
    let own = Some(format!("http://{}", server.addr));
    let mut same_site = open_from("session_id=good", own).await;
    assert_eq!(same_site.recv_json().await["user"], "7");
    // Fallback mode: without a cookie the proxy answers 401 and a token still works.
    let mut anonymous = server.connect_anonymous().await;
    anonymous
        .send_json(&json!({"type": "auth", "token": token("9", "acme")}))
        .await;
    assert_eq!(anonymous.recv_json().await["user"], "9");
}

#[tokio::test]
async fn a_session_cookie_connects_socketio_clients_through_the_connect_proxy() {
    let backend = Backend::start().await;
    let server = Server::start(proxied(&backend, "only")).await;
    let mut client = server.sio_open_with_cookie(Some("session_id=good")).await;
    client.connect_with("/", None).await;
    let mut refused = server.sio_open_with_cookie(Some("session_id=stale")).await;
    assert_eq!(refused.connect_refused("/", None).await, "session expired");
    let mut anonymous = server.sio_open_with_cookie(None).await;
    // `only`: a token is not looked at, and without a cookie the client is not known.
    let auth = json!({"token": token("9", "acme")});
    assert_eq!(
        anonymous.connect_refused("/", Some(auth)).await,
        "authentication required"
    );
    let (_, metrics) = server.http("GET", "/metrics", None, None).await;
    assert!(
        metrics.contains("roomcast_connect_proxy_calls_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
}
