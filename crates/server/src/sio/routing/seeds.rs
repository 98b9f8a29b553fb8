//! The seed configurations in `examples/seeds/` load, validate and route their clients'
//! vocabulary: each seed's events give the joins, relays and reply payloads its clients expect.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{Action, Caller, Reply, Router};
use crate::acl::RoomPolicy;
use crate::config::{Config, InboxOp};

const SEEDS: [(&str, &str); 5] = [
    (
        "seed-000.toml",
        include_str!("../../../../../examples/seeds/seed-000.toml"),
    ),
    (
        "seed-001.toml",
        include_str!("../../../../../examples/seeds/seed-001.toml"),
    ),
    (
        "seed-002.toml",
        include_str!("../../../../../examples/seeds/seed-002.toml"),
    ),
    (
        "seed-003.toml",
        include_str!("../../../../../examples/seeds/seed-003.toml"),
    ),
    (
        "seed-004.toml",
        include_str!("../../../../../examples/seeds/seed-004.toml"),
    ),
];

const NOW: &str = "2024-01-20T14:30:00.000Z";

struct Seed {
    config: Config,
    router: Router,
    policy: RoomPolicy,
}

fn seed(name: &str) -> Seed {
    let (_, text) = SEEDS
        .iter()
        .find(|(file, _)| *file == name)
        .unwrap_or_else(|| panic!("no seed {name}"));
    let config = Config::from_toml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    let router = Router::from_config(&config.socketio, &config.rooms.auto_join).unwrap();
    let policy = RoomPolicy::from_config(&config.rooms).unwrap();
    Seed {
        config,
        router,
        policy,
    }
}

fn claims(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn caller(claims: &Map<String, Value>) -> Caller<'_> {
    Caller {
        claims,
        socket_id: "sid-1",
        now: UNIX_EPOCH + Duration::from_millis(1_705_761_000_000),
    }
}

fn event(name: &str, data: Value) -> Reply {
    Reply::Event {
        event: name.into(),
        args: vec![data],
    }
}

#[test]
fn every_seed_file_is_listed_and_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seeds");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = SEEDS.iter().map(|(name, _)| *name).collect();
    assert_eq!(on_disk, listed, "examples/seeds/ and SEEDS differ");
    for (name, text) in SEEDS {
        assert!(text.starts_with("# Seed "), "{name}: header comment");
        let s = seed(name);
        assert_eq!(s.config.auth.secret, "change-me", "{name}");
        assert!(s.config.socketio.enabled, "{name}");
    }
}

#[test]
fn seed_000_tenant_subscriptions() {
    let s = seed("seed-000.toml");
    let c = claims(json!({"sub": 123, "tenant_ids": [1, 2]}));
    let who = caller(&c);
    assert_eq!(s.router.auto_join("/", &c), ["user:123"]);
    assert_eq!(
        s.router.greeting("/", &who),
        Some((
            "connected".into(),
            vec![json!({"user_id": 123, "timestamp": NOW, "message": "Connected successfully"})]
        ))
    );
    let args = [json!({"tenant_id": 1})];
    assert_eq!(
        s.router
            .route("/", "subscribe_tenant_updates", &args, false, &who),
        [Action::Join {
            room: "tenant:1".into(),
            then: event(
                "subscribed",
                json!({"tenant_id": 1, "message": "Subscribed to tenant 1 updates"})
            ),
        }]
    );
    assert!(s.policy.may_subscribe("/", "tenant:1", &c));
    assert!(!s.policy.may_subscribe("/", "tenant:3", &c));
    assert_eq!(
        s.router
            .route("/", "request_data_refresh", &args, false, &who),
        [Action::Rpc {
            backend: "odoo".into(),
            path: "/data-refresh".into(),
        }]
    );
    assert_eq!(
        s.router
            .route("/", "unsubscribe_tenant_updates", &args, false, &who),
        [Action::Leave {
            room: "tenant:1".into(),
            then: event(
                "unsubscribed",
                json!({"tenant_id": 1, "message": "Unsubscribed from tenant 1 updates"})
            ),
        }]
    );
    assert_eq!(
        s.router.refusal(
            "/",
            "subscribe_tenant_updates",
            false,
            "room not allowed",
            &who
        ),
        event(
            "error",
            json!({"message": "Request refused", "error": "room not allowed"})
        )
    );
    // The inbox answers the notification calls.
    assert_eq!(
        s.router
            .route("/", "get_notification_counts", &[], false, &who),
        [Action::Inbox {
            op: InboxOp::Counts,
            notification: None,
            options: Value::Null,
        }]
    );
    let args = [json!({"notification_id": 123})];
    for (event, op) in [
        ("mark_notification_read", InboxOp::Read),
        ("dismiss_notification", InboxOp::Dismiss),
    ] {
        assert_eq!(
            s.router.route("/", event, &args, false, &who),
            [Action::Inbox {
                op,
                notification: Some(123),
                options: args[0].clone(),
            }]
        );
    }
    let result = json!({"notification_id": 123, "success": true, "changed": true});
    assert_eq!(
        s.router
            .rpc_answer("/", "mark_notification_read", &args, false, &result, &who),
        event(
            "notification_action_completed",
            json!({"action": "read", "notification_id": 123, "success": true})
        )
    );
    // A bad id is refused with the route's error event.
    let bad = [json!({"notification_id": "abc"})];
    let refused = s
        .router
        .route("/", "dismiss_notification", &bad, false, &who);
    assert_eq!(
        refused,
        [Action::Reply(event(
            "notification_action_completed",
            json!({"action": "dismiss", "success": false,
                   "error": "the notification id must be an integer"})
        ))]
    );
}

#[test]
fn seed_001_dashboard_users_and_current_state() {
    let s = seed("seed-001.toml");
    let c = claims(json!({"userId": 42}));
    let who = caller(&c);
    assert_eq!(s.router.resolve("/dashboard"), Some("/dashboard"));
    assert_eq!(s.router.resolve("/"), None);
    assert_eq!(s.router.auto_join("/dashboard", &c), ["user:42"]);
    assert_eq!(
        s.router
            .route("/dashboard", "request:current-state", &[], false, &who),
        [Action::Reply(event(
            "reconnected",
            json!({"timestamp": NOW})
        ))]
    );
    assert_eq!(s.config.auth.default_tenant, "tenantlist");
}

#[test]
fn seed_002_namespaces_under_their_ws_aliases() {
    let s = seed("seed-002.toml");
    assert_eq!(s.config.socketio.engine_path(), "/socket.io/");
    assert_eq!(s.config.socketio.extra_engine_paths(), ["/ws/socket.io/"]);
    for (alias, name) in [
        ("/ws", "/"),
        ("/ws/provisioning", "/provisioning"),
        ("/ws/notifications", "/notifications"),
        ("/ws/billing", "/billing"),
        ("/provisioning", "/provisioning"),
    ] {
        assert_eq!(s.router.resolve(alias), Some(name), "{alias}");
    }
    let c = claims(json!({"user_id": "u1", "tenant_id": "t1"}));
    let who = caller(&c);
    assert_eq!(
        s.router.auto_join("/ws/provisioning", &c),
        ["user:u1", "tenant:t1"]
    );
    assert_eq!(
        s.router.greeting("/ws", &who),
        Some((
            "connected".into(),
            vec![json!({"message": "Connected", "user_id": "u1", "tenant_id": "t1"})]
        ))
    );
    assert_eq!(
        s.router.route("/ws", "ping", &[], false, &who),
        [Action::Reply(Reply::Event {
            event: "pong".into(),
            args: vec![],
        })]
    );
    let args = [json!({"notification_id": "42"})];
    assert_eq!(
        s.router
            .route("/ws/notifications", "notification_read", &args, false, &who),
        [Action::Inbox {
            op: InboxOp::Read,
            notification: Some(42),
            options: args[0].clone(),
        }]
    );
    let result = json!({"notification_id": 42, "success": true, "changed": true});
    assert_eq!(
        s.router.rpc_answer(
            "/notifications",
            "notification_read",
            &args,
            false,
            &result,
            &who
        ),
        event(
            "notification_read_confirmed",
            json!({"notification_id": 42})
        )
    );
}

#[test]
fn seed_003_organizations_ping_and_authenticate() {
    let s = seed("seed-003.toml");
    let c = claims(json!({
        "sub": "user-123", "organization_id": "org-456", "organization_ids": ["org-456", "org-9"],
        "tenant_id": "tenant-789", "roles": "admin"
    }));
    let who = caller(&c);
    assert_eq!(
        s.router.auto_join("/", &c),
        ["user:user-123", "org:org-456", "tenant:tenant-789"]
    );
    let args = [json!({"organizationId": "org-9"})];
    assert_eq!(
        s.router.route("/", "join-organization", &args, false, &who),
        [Action::Join {
            room: "org:org-9".into(),
            then: event(
                "joined-organization",
                json!({"organizationId": "org-9", "timestamp": NOW})
            ),
        }]
    );
    assert!(s.policy.may_subscribe("/", "org:org-9", &c));
    assert!(!s.policy.may_subscribe("/", "org:org-10", &c));
    assert_eq!(
        s.router
            .route("/", "leave-organization", &args, false, &who),
        [Action::Leave {
            room: "org:org-9".into(),
            then: event(
                "left-organization",
                json!({"organizationId": "org-9", "timestamp": NOW})
            ),
        }]
    );
    assert_eq!(
        s.router.route("/", "ping", &[json!({})], false, &who),
        [Action::Reply(event("pong", json!({"timestamp": NOW})))]
    );
    let declared = [json!({"userId": "someone-else", "organizationId": "org-1"})];
    assert_eq!(
        s.router.route("/", "authenticate", &declared, false, &who),
        [Action::Reply(event(
            "authenticated",
            json!({"success": true, "clientId": "sid-1", "timestamp": NOW})
        ))]
    );
    // A join without its argument is refused with the seed's `error` event.
    let refused = s
        .router
        .route("/", "join-organization", &[json!({})], false, &who);
    assert!(
        matches!(&refused[..], [Action::Reply(Reply::Event { event, .. })] if event == "error"),
        "{refused:?}"
    );
}

#[test]
fn seed_004_rooms_subscriptions_and_typing() {
    let s = seed("seed-004.toml");
    let c = claims(json!({
        "sub": "u1", "company_id": "c1", "shop_ids": ["s1", "s2"], "roles": ["manager"]
    }));
    let who = caller(&c);
    assert_eq!(
        s.router.auto_join("/", &c),
        ["user:u1", "company:c1", "shop:s1", "shop:s2", "manager"]
    );
    // A platform admin is in the seed's bare "super_admin" room; a customer in no company's.
    let admin = claims(json!({"sub": "a1", "roles": ["super_admin"]}));
    assert_eq!(s.router.auto_join("/", &admin), ["user:a1", "super_admin"]);
    let customer = claims(json!({"sub": "k1"}));
    assert_eq!(s.router.auto_join("/", &customer), ["user:k1"]);
    assert_eq!(
        s.router.greeting("/", &who),
        Some((
            "connected".into(),
            vec![json!({
                "message": "Connected to WebSocket service", "socketId": "sid-1", "userId": "u1"
            })]
        ))
    );
    for (event_name, arg, room) in [
        ("join_room", "custom-room-id", "custom:custom-room-id"),
        ("subscribe_order", "order-123", "order:order-123"),
        ("subscribe_inventory", "product-456", "product:product-456"),
    ] {
        assert_eq!(
            s.router.route("/", event_name, &[json!(arg)], false, &who),
            [Action::Join {
                room: room.into(),
                then: Reply::None,
            }],
            "{event_name}"
        );
        assert!(s.policy.may_subscribe("/", room, &c), "{room}");
    }
    assert_eq!(
        s.router
            .route("/", "leave_room", &[json!("custom-room-id")], true, &who),
        [Action::Leave {
            room: "custom:custom-room-id".into(),
            then: Reply::Ack(vec![]),
        }]
    );
    let typing = [json!({"roomId": "chat-room", "isTyping": true})];
    assert_eq!(
        s.router.route("/", "typing", &typing, false, &who),
        [Action::Relay {
            room: "custom:chat-room".into(),
            event: "typing".into(),
            args: vec![json!({"userId": "u1", "roomId": "chat-room", "isTyping": true})],
            volatile: true,
            then: Reply::None,
        }]
    );
    assert!(s.policy.may_publish("/", "custom:chat-room", &c));
    assert!(!s.policy.may_publish("/", "order:order-123", &c));
    assert!(!s.policy.may_subscribe("/", "user:u2", &c));
    assert!(!s.policy.may_subscribe("/", "super_admin", &c));
    assert!(!s.policy.may_subscribe("/", "company:c2", &c));
}
