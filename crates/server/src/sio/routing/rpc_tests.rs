//! The `rpc` routes: how they compile, what they ask the runtime to do, and how the backend's
//! result is rendered into the reply or the ack.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{Action, Caller, Reply, Router};
use crate::config::Config;

const SEED_000: &str = r#"
[[socketio.namespaces]]
name = "/"
[[socketio.namespaces.events]]
event = "request_data_refresh"
action = "rpc"
backend = "odoo"
path = "/refresh"
reply = { event = "data_refreshed", data = { type = "{args.0.type}", data = "{result.data}", by = "{sub}" } }
[[socketio.namespaces.events]]
event = "request:current-state"
action = "rpc"
backend = "odoo"
reply = { event = "current-state" }
[[socketio.namespaces.events]]
event = "bare"
action = "rpc"
backend = "odoo"
"#;

fn router(toml: &str) -> Result<Router, String> {
    let config = Config::from_toml_str(toml).map_err(|e| e.to_string())?;
    Router::from_config(&config.socketio, &config.rooms.auto_join).map_err(|e| e.to_string())
}

fn with_caller<R>(f: impl FnOnce(&Caller<'_>) -> R) -> R {
    let claims: Map<String, Value> = [("sub".to_owned(), json!("7"))].into_iter().collect();
    f(&Caller {
        claims: &claims,
        socket_id: "sid-1",
        now: UNIX_EPOCH + Duration::from_secs(1),
    })
}

#[test]
fn an_rpc_route_asks_for_its_backend_and_path() {
    let r = router(SEED_000).unwrap();
    let actions = with_caller(|c| r.route("/", "request_data_refresh", &[json!({})], false, c));
    assert_eq!(
        actions,
        [Action::Rpc {
            backend: "odoo".into(),
            path: "/refresh".into()
        }]
    );
}

#[test]
fn the_result_renders_into_the_reply_or_answers_the_ack() {
    let r = router(SEED_000).unwrap();
    let args = [json!({"type": "tenants"})];
    let result = json!({"data": [1, 2], "extra": true});
    let answer =
        |event: &str, ack: bool| with_caller(|c| r.rpc_answer("/", event, &args, ack, &result, c));
    assert_eq!(
        answer("request_data_refresh", false),
        Reply::Event {
            event: "data_refreshed".into(),
            args: vec![json!({"type": "tenants", "data": [1, 2], "by": "7"})],
        }
    );
    // No data template: the result itself.
    assert_eq!(
        answer("request:current-state", false),
        Reply::Event {
            event: "current-state".into(),
            args: vec![result.clone()],
        }
    );
    assert_eq!(answer("bare", true), Reply::Ack(vec![result.clone()]));
    assert_eq!(answer("bare", false), Reply::None);
}

#[test]
fn rpc_settings_are_checked_by_key() {
    let route = |body: &str| {
        format!("[[socketio.namespaces]]\nname = \"/\"\n[[socketio.namespaces.events]]\n{body}")
    };
    for (toml, expected) in [
        (
            route("event = \"e\"\naction = \"rpc\""),
            "socketio.namespaces[0].events[0].backend: required for action = \"rpc\"",
        ),
        (
            route("event = \"e\"\naction = \"reply\"\nbackend = \"b\"\nreply = { event = \"x\" }"),
            "socketio.namespaces[0].events[0].backend: only for action = \"rpc\", not \"reply\"",
        ),
        (
            route("event = \"e\"\naction = \"rpc\"\nbackend = \"b\"\npath = \"x\""),
            "socketio.namespaces[0].events[0].path: must start with `/` and hold no spaces",
        ),
        (
            route("event = \"e\"\naction = \"rpc\"\nbackend = \"b\"\nroom = \"r\""),
            "socketio.namespaces[0].events[0].room: only join, leave and relay routes use a room",
        ),
    ] {
        assert_eq!(router(&toml).unwrap_err(), expected, "{toml}");
    }
    let e = router(&route(
        "event = \"e\"\naction = \"reply\"\nreply = { event = \"x\", data = \"{result}\" }",
    ))
    .unwrap_err();
    assert!(
        e.contains("only the replies of `rpc` routes may use `{result}`"),
        "{e}"
    );
}

#[test]
fn a_route_naming_an_unknown_backend_fails_validation() {
    let mut config = Config::from_toml_str(SEED_000).unwrap();
    config.auth.secret = "a-secret-for-the-tests".into();
    let e = config.validate().unwrap_err().to_string();
    assert_eq!(
        e,
        "socketio.namespaces[0].events[0].backend: `odoo` is not a backend of [rpc.backends]"
    );
}
