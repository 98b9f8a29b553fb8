use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use roomcast_broker::{Payload, Target};
use serde_json::json;

use super::publish::Publishes;
use super::{Event, Lifecycle, Transport};
use crate::config::{Config, LifecycleKind};

fn config(text: &str) -> Config {
    let mut config = Config::from_toml_str(text).unwrap();
    config.auth.secret = "s".repeat(32);
    config
}

fn online(user: &str) -> Event {
    Event {
        kind: LifecycleKind::UserOnline,
        at: UNIX_EPOCH + Duration::from_secs(86_400),
        tenant: "acme".into(),
        user: Some(user.into()),
        session: None,
        transport: None,
        namespace: None,
        room: None,
        reason: None,
    }
}

/// The event's fields, as the lifecycle task hands them to the templates.
fn fields(event: &Event) -> serde_json::Map<String, serde_json::Value> {
    match event.to_json("n1") {
        serde_json::Value::Object(map) => map,
        other => panic!("{other}"),
    }
}

#[test]
fn events_carry_what_they_are_about_and_nothing_else() {
    let mut event = online("7");
    assert_eq!(
        event.to_json("n1"),
        json!({"kind": "user_online", "at": "1970-01-02T00:00:00.000Z", "node": "n1",
            "tenant": "acme", "user": "7"})
    );
    event.kind = LifecycleKind::Disconnect;
    event.session = Some("1f".into());
    event.transport = Some(Transport::SocketIo);
    event.namespace = Some("/chat".into());
    event.reason = Some("transport close".into());
    let json = event.to_json("n1");
    assert_eq!(json["transport"], "socketio");
    assert_eq!(json["reason"], "transport close");
    assert_eq!(json["namespace"], "/chat");
}

#[test]
fn publish_rules_render_rooms_and_data_from_the_event() {
    let c = config(
        r#"
        [[lifecycle.publish]]
        kind = "user_online"
        event = "user:online"
        rooms = ["tenant:{tenant}", "watch:{user}"]
        data = { userId = "{user}", online = true }
        [[lifecycle.publish]]
        kind = "user_offline"
        event = "user:offline"
        broadcast = true
        "#,
    );
    let rules = Publishes::compile(&c.lifecycle.publish).unwrap();
    let published = rules.publications(&online("7"), &fields(&online("7")));
    assert_eq!(published.len(), 1);
    let p = &published[0];
    assert_eq!(&*p.event, "user:online");
    assert_eq!(
        p.target,
        Target::Tenant {
            tenant: "acme".into(),
            rooms: vec![Arc::from("tenant:acme"), Arc::from("watch:7")],
            users: vec![]
        }
    );
    let Payload::Json(data) = &p.payload else {
        panic!("{:?}", p.payload)
    };
    assert_eq!(data.get(), r#"{"online":true,"userId":"7"}"#);
    let mut offline = online("7");
    offline.kind = LifecycleKind::UserOffline;
    let published = rules.publications(&offline, &fields(&offline));
    assert_eq!(
        published[0].target,
        Target::TenantWide {
            tenant: "acme".into()
        }
    );
}

#[test]
fn bad_settings_are_named() {
    let error = |text: &str| Lifecycle::compile(&config(text)).unwrap_err().to_string();
    let hook =
        "[lifecycle.webhook]\nurl = \"http://127.0.0.1:1/h\"\nsecret = \"0123456789abcdef\"\n";
    assert!(Lifecycle::compile(&config(hook)).is_ok());
    assert!(
        error("[lifecycle.webhook]\nurl = \"https://h/x\"\nsecret = \"0123456789abcdef\"")
            .starts_with("lifecycle.webhook.url: must be an http:// URL")
    );
    assert!(
        error("[lifecycle.webhook]\nurl = \"http://h/x\"\nsecret = \"short\"")
            .starts_with("lifecycle.webhook.secret: must be at least 16 bytes")
    );
    assert!(error(&format!("{hook}queue_max = 0"))
        .starts_with("lifecycle.webhook.queue_max: must be 1 to"));
    let e = error("[[lifecycle.publish]]\nkind = \"user_online\"\nevent = \"e\"");
    assert!(
        e.starts_with("lifecycle.publish[0].rooms: give rooms"),
        "{e}"
    );
    let e = Config::from_toml_str("[[lifecycle.publish]]\nkind = \"online\"\nevent = \"e\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("lifecycle.publish[0].kind: unknown variant `online`"),
        "{e}"
    );
    // Nothing configured: nothing wanted, nothing started.
    assert!(!Lifecycle::compile(&config("")).unwrap().enabled());
}
