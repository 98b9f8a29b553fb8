//! Native and Socket.IO clients go through one client core: each test holds one client of each
//! protocol to the same rule (message rate, publish size, token expiry, the ACL's publish
//! permission, the platform admin's view of other tenants, refusal messages), plus namespace
//! aliases and a relay flood.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{error_code, now_unix, sign, token, Config, Server, SioIncoming};

/// Socket.IO routes of the main namespace: `ping` -> `pong`, `join` a room named by the first
/// argument, `watch` a room of the tenant the argument names, `relay` to `{room}`.
fn with_routes(config: Config) -> Config {
    let events = [
        r#"{ event = "ping", action = "reply", reply = { event = "pong" } }"#,
        r#"{ event = "join", action = "join", room = "{args.0}", reply = { event = "joined" } }"#,
        r#"{ event = "watch", action = "join", room = "{args.0.room}", tenant = "{args.0.tenant}", reply = { event = "watching" } }"#,
        r#"{ event = "relay", action = "relay", room = "{args.0.room}", reply = { event = "relayed" } }"#,
    ];
    config.set(
        "socketio.namespaces",
        &format!(r#"[{{ name = "/", events = [{}] }}]"#, events.join(", ")),
    )
}

/// The `message` of an `error` event.
fn error_message(args: &[Value]) -> &str {
    args.first()
        .and_then(|a| a["message"].as_str())
        .unwrap_or_else(|| panic!("an error event with a message: {args:?}"))
}

#[tokio::test]
async fn both_protocols_are_rate_limited_then_closed_with_4009() {
    let config = Config::new()
        .set("limits.messages_per_second", "5")
        .set("limits.messages_burst", "5")
        .set("limits.max_violations", "3");
    let server = Server::start(with_routes(config)).await;

    // Native: 300 pings at once.
    let mut native = server.connect_user("1", "acme").await;
    for id in 0..300 {
        native
            .feed_text(&json!({"type": "ping", "id": id}).to_string())
            .await;
    }
    native.flush().await;
    let mut pongs = 0;
    loop {
        let msg = native.recv_json().await;
        match msg["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("reply") => assert_eq!(error_code(&msg), "rate_limited", "{msg}"),
            Some("disconnect") => {
                assert_eq!(msg["code"], 4009, "{msg}");
                native.expect_close(4009).await;
                break;
            }
            _ => panic!("unexpected {msg}"),
        }
    }
    assert!((5..300).contains(&pongs), "native: {pongs} pongs of 300");

    // Socket.IO: the same 300 pings, as events.
    let mut sio = server.sio_connect("/", &token("2", "acme")).await;
    for _ in 0..300 {
        assert!(sio.feed_emit("/", "ping", json!([])).await);
    }
    assert!(sio.flush().await);
    let (mut pongs, mut limited) = (0, 0);
    let close = loop {
        match sio.next_packet().await {
            SioIncoming::Event(_, name, _) if name == "pong" => pongs += 1,
            SioIncoming::Event(_, name, args) if name == "error" => match error_message(&args) {
                "too many messages" => limited += 1,
                "rate limit exceeded" => {}
                other => panic!("unexpected error {other}"),
            },
            SioIncoming::Disconnect(ns) => assert_eq!(ns, "/"),
            SioIncoming::Close(frame) => break frame.map(|(code, _)| code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close, Some(4009));
    assert!((5..300).contains(&pongs), "Socket.IO: {pongs} pongs of 300");
    assert!(
        (3..=4).contains(&limited),
        "{limited} refusals before the close"
    );
}

#[tokio::test]
async fn both_protocols_refuse_publishes_over_the_size_limit() {
    let config = Config::new().set("limits.max_publish_bytes", "100");
    let server = Server::start(with_routes(config)).await;
    let big = "x".repeat(200);

    let mut native = server.connect_user("1", "acme").await;
    let reply = native
        .request(json!({"type": "publish", "room": "chat:1", "event": "e", "data": {"text": big}}))
        .await;
    assert_eq!(error_code(&reply), "payload_too_large", "{reply}");

    let mut receiver = server.sio_connect("/", &token("3", "acme")).await;
    receiver.emit("/", "join", json!(["chat:1"])).await;
    receiver.event("joined").await;
    let mut sender = server.sio_connect("/", &token("2", "acme")).await;
    sender
        .emit("/", "relay", json!([{"room": "chat:1", "text": big}]))
        .await;
    let (_, args) = sender.event("error").await;
    assert_eq!(
        error_message(&args),
        "data larger than limits.max_publish_bytes"
    );
    // A small one goes through: the refusal was the size.
    sender
        .emit("/", "relay", json!([{"room": "chat:1", "text": "hi"}]))
        .await;
    sender.event("relayed").await;
    let (_, args) = receiver.event("relay").await;
    assert_eq!(args, [json!({"room": "chat:1", "text": "hi"})]);
}

#[tokio::test]
async fn both_protocols_end_sessions_whose_token_expires() {
    let server = Server::start(with_routes(Config::new().set("auth.leeway_secs", "0"))).await;
    let soon = sign(&json!({"sub": "1", "tenant_id": "acme", "exp": now_unix() + 2}));

    let mut native = server.connect(&soon).await;
    let mut sio = server.sio_connect("/", &soon).await;
    let msg = native.expect_disconnect(4003).await;
    assert_eq!(msg["reason"], "token expired", "{msg}");

    let (_, args) = sio.event("error").await;
    assert_eq!(error_message(&args), "token expired");
    assert_eq!(sio.next_packet().await, SioIncoming::Disconnect("/".into()));
    // The socket is gone: its events are not answered.
    sio.emit("/", "ping", json!([])).await;
    sio.expect_nothing(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn relays_need_the_acl_publish_permission_as_native_publishes_do() {
    // `order:*` may be subscribed to, not published to; `chat:*` both (the harness ACL).
    let server = Server::start(with_routes(Config::new())).await;

    let mut native = server.connect_user("1", "acme").await;
    assert_eq!(native.subscribe("order:1").await["ok"], true);
    let reply = native
        .request(json!({"type": "publish", "room": "order:1", "event": "e", "data": 1}))
        .await;
    assert_eq!(error_code(&reply), "forbidden", "{reply}");

    let mut member = server.sio_connect("/", &token("2", "acme")).await;
    let mut sender = server.sio_connect("/", &token("3", "acme")).await;
    for client in [&mut member, &mut sender] {
        client.emit("/", "join", json!(["order:1"])).await;
        client.event("joined").await;
    }
    // Being in the room is not enough.
    sender
        .emit("/", "relay", json!([{"room": "order:1"}]))
        .await;
    let (_, args) = sender.event("error").await;
    assert_eq!(error_message(&args), "publish not allowed");
    member.expect_nothing(Duration::from_millis(300)).await;

    // Where the ACL allows publishing, the relay goes through.
    for client in [&mut member, &mut sender] {
        client.emit("/", "join", json!(["chat:1"])).await;
        client.event("joined").await;
    }
    sender.emit("/", "relay", json!([{"room": "chat:1"}])).await;
    sender.event("relayed").await;
    assert_eq!(member.event("relay").await.1, [json!({"room": "chat:1"})]);
}

#[tokio::test]
async fn the_platform_admin_observes_other_tenants_over_both_protocols() {
    let config = Config::new().set("auth.admin_role", "\"super_admin\"");
    let server = Server::start(with_routes(config)).await;
    let admin_token = sign(&json!({
        "sub": "root", "tenant_id": "platform", "roles": ["super_admin"], "exp": now_unix() + 3600
    }));

    let mut native = server.connect(&admin_token).await;
    let reply = native
        .request(json!({"type": "subscribe", "room": "order:1", "tenant": "acme"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");

    let mut admin = server.sio_connect("/", &admin_token).await;
    admin
        .emit("/", "watch", json!([{"room": "order:1", "tenant": "acme"}]))
        .await;
    admin.event("watching").await;
    let mut user = server.sio_connect("/", &token("7", "globex")).await;
    user.emit("/", "watch", json!([{"room": "order:1", "tenant": "acme"}]))
        .await;
    let (_, args) = user.event("error").await;
    assert_eq!(error_message(&args), "tenant not allowed");

    server
        .publish(
            json!({"tenant": "acme", "rooms": ["order:1"], "event": "observed", "data": {"id": 1}}),
        )
        .await;
    let event = native.recv_event().await;
    assert_eq!(event["event"], "observed", "{event}");
    let (_, args) = admin.event("observed").await;
    assert_eq!(args, [json!({"id": 1})]);
    user.expect_nothing(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn refusals_of_a_connect_carry_the_configured_messages() {
    let config = Config::new()
        .set(
            "socketio.errors.token_missing",
            "\"Authentication required\"",
        )
        .set(
            "socketio.errors.token_invalid",
            "\"Invalid or expired token\"",
        )
        .set(
            "socketio.errors.token_expired",
            "\"Invalid or expired token\"",
        );
    let server = Server::start(config).await;
    let expired = sign(&json!({"sub": "1", "tenant_id": "acme", "exp": now_unix() - 3600}));

    let mut sio = server.sio_open().await;
    assert_eq!(
        sio.connect_refused("/", None).await,
        "Authentication required"
    );
    for bad in ["not.a.jwt", expired.as_str()] {
        assert_eq!(
            sio.connect_refused("/", Some(json!({ "token": bad })))
                .await,
            "Invalid or expired token"
        );
    }
    // The native protocol tells the same refusals with its close codes.
    let mut native = server.connect_query("not.a.jwt").await;
    native.expect_disconnect(4002).await;
    let mut native = server.connect_query(&expired).await;
    native.expect_disconnect(4003).await;
}

#[tokio::test]
async fn publishes_to_a_namespace_reach_sockets_connected_through_its_alias() {
    // Seed 002: clients connect to "/ws/provisioning", the backend publishes to
    // "/provisioning".
    let config = Config::new().set(
        "socketio.namespaces",
        r#"[{ name = "/" }, { name = "/provisioning", aliases = ["/ws/provisioning"] }]"#,
    );
    let server = Server::start(config).await;
    let mut aliased = server
        .sio_connect("/ws/provisioning", &token("7", "acme"))
        .await;
    let mut direct = server
        .sio_connect("/provisioning", &token("7", "acme"))
        .await;
    let mut native = server.connect_user("7", "acme").await;
    let reply = native
        .request(json!({"type": "subscribe", "room": "tenant:acme", "ns": "/provisioning"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");

    for target in [json!({"users": ["7"]}), json!({"rooms": ["tenant:acme"]})] {
        let mut body = json!({
            "tenant": "acme", "namespace": "/provisioning",
            "event": "status:update", "data": {"progress": 60}
        });
        body.as_object_mut()
            .unwrap()
            .extend(target.as_object().unwrap().clone());
        server.publish(body).await;
        let (ns, args) = aliased.event("status:update").await;
        assert_eq!(
            ns, "/ws/provisioning",
            "read under the alias it connected with"
        );
        assert_eq!(args, [json!({"progress": 60})]);
        let (ns, _) = direct.event("status:update").await;
        assert_eq!(ns, "/provisioning");
        let event = native.recv_event().await;
        assert_eq!(event["ns"], "/provisioning", "{event}");
    }
}

#[tokio::test]
async fn a_relay_flood_closes_the_flooder_not_the_rest_of_its_room() {
    let config = Config::new()
        .set("limits.messages_per_second", "50")
        .set("limits.messages_burst", "100")
        .set("limits.max_violations", "10")
        .set("limits.queue_messages", "256");
    let server = Server::start(with_routes(config)).await;
    let mut victims = Vec::new();
    for i in 0..30 {
        let mut victim = server
            .sio_connect("/", &token(&format!("v{i}"), "acme"))
            .await;
        victim.emit("/", "join", json!(["chat:flood"])).await;
        victim.event("joined").await;
        victims.push(victim);
    }
    let mut native = server.connect_user("n", "acme").await;
    assert_eq!(native.subscribe("chat:flood").await["ok"], true);

    // The flooder sends far more relays than the room's queues hold; the victims do not read
    // meanwhile.
    let mut flooder = server.sio_connect("/", &token("f", "acme")).await;
    flooder.emit("/", "join", json!(["chat:flood"])).await;
    flooder.event("joined").await;
    // The server may close the connection before everything is written.
    'flood: for round in 0..20 {
        for _ in 0..250 {
            let relay = json!([{"room": "chat:flood", "round": round}]);
            if !flooder.feed_emit("/", "relay", relay).await {
                break 'flood;
            }
        }
        let flushed = tokio::time::timeout(Duration::from_secs(5), flooder.flush()).await;
        if flushed != Ok(true) {
            break;
        }
    }
    assert_eq!(
        flooder.expect_close().await,
        Some(4009),
        "the flooder is closed"
    );

    // Every victim is still connected: it gets what the room is sent next, and no more of
    // the flood than the flooder's burst and refill.
    server
        .publish(json!({"tenant": "acme", "rooms": ["chat:flood"], "event": "after", "data": 1}))
        .await;
    for victim in &mut victims {
        let mut relays = 0;
        loop {
            match victim.next_packet().await {
                SioIncoming::Event(_, name, _) if name == "relay" => relays += 1,
                SioIncoming::Event(_, name, _) if name == "after" => break,
                other => panic!("a victim got {other:?}"),
            }
        }
        assert!(relays < 256, "{relays} relays reached a victim");
    }
    // Relays reach the room's native member too (one publish path), within the same bound.
    let mut relays = 0;
    loop {
        let event = native.recv_event().await;
        match event["event"].as_str() {
            Some("relay") => relays += 1,
            Some("after") => break,
            _ => panic!("the native member got {event}"),
        }
    }
    assert!(relays < 256, "{relays} relays reached the native member");
}

#[tokio::test]
async fn a_relay_the_node_refuses_is_answered_with_the_refusal_not_the_route_answer() {
    let server = Server::start(with_routes(Config::new())).await;
    let mut member = server.sio_connect("/", &token("2", "acme")).await;
    let mut sender = server.sio_connect("/", &token("3", "acme")).await;
    for client in [&mut member, &mut sender] {
        client.emit("/", "join", json!(["chat:1"])).await;
        client.event("joined").await;
    }
    // Data nested deeper than subscribers accept: refused by the node, as a native publish is.
    let mut deep = json!(1);
    for _ in 0..70 {
        deep = json!([deep]);
    }
    sender
        .emit("/", "relay", json!([{"room": "chat:1", "deep": deep}]))
        .await;
    let (_, args) = sender.event("error").await;
    assert_eq!(error_message(&args), "data nests deeper than 64 levels");
    member.expect_nothing(Duration::from_millis(300)).await;

    let mut native = server.connect_user("1", "acme").await;
    assert_eq!(native.subscribe("chat:1").await["ok"], true);
    let reply = native
        .request(json!({"type": "publish", "room": "chat:1", "event": "e", "data": deep}))
        .await;
    assert_eq!(error_code(&reply), "bad_request", "{reply}");
}
