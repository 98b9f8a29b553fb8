use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map};

use super::*;
use crate::config::Config;

const NOW_MS: u64 = 1_705_761_000_000; // 2024-01-20T14:30:00.000Z

fn claims(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn caller<'a>(claims: &'a Map<String, Value>) -> Caller<'a> {
    Caller {
        claims,
        socket_id: "sid-1",
        now: UNIX_EPOCH + Duration::from_millis(NOW_MS),
    }
}

fn router(toml: &str) -> Router {
    let config = Config::from_toml_str(toml).unwrap();
    Router::from_config(&config.socketio, &config.rooms.auto_join).unwrap()
}

fn error(toml: &str) -> String {
    let config = match Config::from_toml_str(toml) {
        Ok(config) => config,
        Err(e) => return e.to_string(),
    };
    Router::from_config(&config.socketio, &config.rooms.auto_join)
        .unwrap_err()
        .to_string()
}

const CHAT: &str = r#"
[rooms]
auto_join = ["user:{sub}"]
[[socketio.namespaces]]
name = "/"
aliases = ["/ws"]
greeting = { event = "connected", data = { user_id = "{sub}", socketId = "{socket.id}", at = "{now}" } }
[[socketio.namespaces.events]]
event = "subscribe"
action = "join"
room = "tenant:{args.0.tenant_id}"
reply = { event = "subscribed", data = { tenant_id = "{args.0.tenant_id}", message = "Subscribed to {args.0.tenant_id}" } }
[[socketio.namespaces.events]]
event = "unsubscribe"
action = "leave"
room = "tenant:{args.0.tenant_id}"
[[socketio.namespaces.events]]
event = "typing"
action = "relay"
room = "chat:{args.0.roomId}"
volatile = true
[[socketio.namespaces.events]]
event = "typed"
action = "relay"
room = "chat:{args.0.roomId}"
relay = { event = "user_typing", data = { userId = "{sub}", on = "{args.0.isTyping}" } }
reply = { data = { sent = true } }
error = { event = "typing_error", data = { reason = "{error}", who = "{sub}" } }
[[socketio.namespaces.events]]
event = "ping"
action = "reply"
reply = { event = "pong" }
[[socketio.namespaces]]
name = "/provisioning"
auto_join = ["tenant:{tenant_id}", "user:{sub}", "tenant:{tenant_id}"]
error = { event = "oops", data = "{error}" }
"#;

#[test]
fn namespaces_and_aliases_resolve() {
    let r = router(CHAT);
    assert_eq!(r.namespaces().collect::<Vec<_>>(), ["/", "/provisioning"]);
    assert_eq!(r.resolve("/"), Some("/"));
    assert_eq!(r.resolve("/ws"), Some("/"));
    assert_eq!(r.resolve("/provisioning"), Some("/provisioning"));
    assert_eq!(r.resolve("/ws/provisioning"), None);
    assert_eq!(r.resolve("/admin"), None);
}

#[test]
fn without_namespaces_the_main_one_is_served_with_rooms_auto_join() {
    let r = router("");
    assert_eq!(r.namespaces().collect::<Vec<_>>(), ["/"]);
    let c = claims(json!({"sub": 7, "tenant_id": "acme"}));
    assert_eq!(r.auto_join("/", &c), ["user:7", "tenant:acme"]);
    assert!(r.greeting("/", &caller(&c)).is_none());
    assert_eq!(
        r.route("/", "anything", &[], true, &caller(&c)),
        [Action::Unhandled]
    );
}

#[test]
fn auto_join_per_namespace_defaults_to_rooms_auto_join() {
    let r = router(CHAT);
    let c = claims(json!({"sub": "7", "tenant_id": 3}));
    assert_eq!(r.auto_join("/", &c), ["user:7"]);
    assert_eq!(r.auto_join("/ws", &c), ["user:7"]);
    assert_eq!(r.auto_join("/provisioning", &c), ["tenant:3", "user:7"]);
    assert!(r.auto_join("/nope", &c).is_empty());
}

#[test]
fn greeting_renders_claims_socket_and_time() {
    let r = router(CHAT);
    let c = claims(json!({"sub": 7}));
    let (event, args) = r.greeting("/ws", &caller(&c)).unwrap();
    assert_eq!(event, "connected");
    assert_eq!(
        args,
        [json!({"user_id": 7, "socketId": "sid-1", "at": "2024-01-20T14:30:00.000Z"})]
    );
    assert!(r.greeting("/provisioning", &caller(&c)).is_none());
}

#[test]
fn join_renders_room_and_reply_or_ack() {
    let r = router(CHAT);
    let c = claims(json!({"sub": 7}));
    let args = [json!({"tenant_id": 1})];
    let data = json!({"tenant_id": 1, "message": "Subscribed to 1"});
    assert_eq!(
        r.route("/", "subscribe", &args, false, &caller(&c)),
        [Action::Join {
            room: "tenant:1".into(),
            then: Reply::Event {
                event: "subscribed".into(),
                args: vec![data.clone()],
            },
        }]
    );
    assert_eq!(
        r.route("/ws", "subscribe", &args, true, &caller(&c)),
        [Action::Join {
            room: "tenant:1".into(),
            then: Reply::Ack(vec![data]),
        }]
    );
}

#[test]
fn leave_without_reply_answers_an_ack_with_nothing() {
    let r = router(CHAT);
    let c = claims(json!({}));
    let args = [json!({"tenant_id": "a"})];
    assert_eq!(
        r.route("/", "unsubscribe", &args, false, &caller(&c)),
        [Action::Leave {
            room: "tenant:a".into(),
            then: Reply::None,
        }]
    );
    assert_eq!(
        r.route("/", "unsubscribe", &args, true, &caller(&c)),
        [Action::Leave {
            room: "tenant:a".into(),
            then: Reply::Ack(vec![]),
        }]
    );
}

#[test]
fn relay_forwards_the_arguments_or_its_own_data() {
    let r = router(CHAT);
    let c = claims(json!({"sub": "7"}));
    let args = [json!({"roomId": "lobby", "isTyping": true}), json!(2)];
    assert_eq!(
        r.route("/", "typing", &args, false, &caller(&c)),
        [Action::Relay {
            room: "chat:lobby".into(),
            event: "typing".into(),
            args: args.to_vec(),
            volatile: true,
            then: Reply::None,
        }]
    );
    assert_eq!(
        r.route("/", "typed", &args, false, &caller(&c)),
        [Action::Relay {
            room: "chat:lobby".into(),
            event: "user_typing".into(),
            args: vec![json!({"userId": "7", "on": true})],
            volatile: false,
            // The reply has no event: only an ack is answered.
            then: Reply::None,
        }]
    );
    let actions = r.route("/", "typed", &args, true, &caller(&c));
    assert!(
        matches!(&actions[..], [Action::Relay { then: Reply::Ack(a), .. }] if a == &[json!({"sent": true})])
    );
}

#[test]
fn reply_routes_answer_with_or_without_data() {
    let r = router(CHAT);
    let c = claims(json!({}));
    assert_eq!(
        r.route("/", "ping", &[], false, &caller(&c)),
        [Action::Reply(Reply::Event {
            event: "pong".into(),
            args: vec![],
        })]
    );
    assert_eq!(
        r.route("/", "ping", &[], true, &caller(&c)),
        [Action::Reply(Reply::Ack(vec![]))]
    );
}

#[test]
fn unknown_events_and_namespaces_are_unhandled() {
    let r = router(CHAT);
    let c = claims(json!({}));
    assert_eq!(
        r.route("/", "request_data_refresh", &[], true, &caller(&c)),
        [Action::Unhandled]
    );
    assert_eq!(
        r.route("/provisioning", "ping", &[], false, &caller(&c)),
        [Action::Unhandled]
    );
    assert_eq!(
        r.route("/nope", "ping", &[], false, &caller(&c)),
        [Action::Unhandled]
    );
}

#[test]
fn a_room_that_cannot_be_named_is_refused_by_the_router() {
    let r = router(CHAT);
    let c = claims(json!({"sub": 7}));
    for args in [
        vec![],
        vec![json!({})],
        vec![json!({"tenant_id": ""})],
        vec![json!({"tenant_id": {"x": 1}})],
        vec![json!("tenant")],
        vec![json!({"tenant_id": "x".repeat(300)})],
        vec![json!({"tenant_id": "a\nb"})],
    ] {
        let actions = r.route("/", "subscribe", &args, false, &caller(&c));
        let [Action::Reply(Reply::Event { event, args })] = &actions[..] else {
            panic!("{actions:?}");
        };
        assert_eq!(event, "error");
        let message = args[0]["message"].as_str().unwrap();
        assert!(
            message.starts_with("cannot name the room") || message.starts_with("room name"),
            "{message}"
        );
    }
    // Through the ack when one was asked for; with the route's own error template.
    let actions = r.route("/", "typed", &[json!(1)], true, &caller(&c));
    let [Action::Reply(Reply::Ack(args))] = &actions[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(args[0]["who"], json!(7));
}

#[test]
fn refusals_use_the_route_then_namespace_then_builtin_template() {
    let r = router(CHAT);
    let c = claims(json!({"sub": 7}));
    let who = caller(&c);
    assert_eq!(
        r.refusal("/", "subscribe", false, "room not allowed", &who),
        Reply::Event {
            event: "error".into(),
            args: vec![json!({"message": "room not allowed"})],
        }
    );
    assert_eq!(
        r.refusal("/ws", "typed", true, "room not allowed", &who),
        Reply::Ack(vec![json!({"reason": "room not allowed", "who": 7})])
    );
    assert_eq!(
        r.refusal("/provisioning", "whatever", false, "too many rooms", &who),
        Reply::Event {
            event: "oops".into(),
            args: vec![json!("too many rooms")],
        }
    );
    assert_eq!(
        r.refusal("/nope", "x", true, "m", &who),
        Reply::Ack(vec![json!({"message": "m"})])
    );
}

#[test]
fn configuration_errors_name_their_key() {
    let ns = "[[socketio.namespaces]]\nname = \"/\"\n";
    let route = |body: &str| format!("{ns}[[socketio.namespaces.events]]\n{body}");
    for (toml, expected) in [
        (
            format!("{ns}{ns}"),
            "socketio.namespaces[1].name: `/` is already served by socketio.namespaces[0]",
        ),
        (
            format!("{ns}aliases = [\"/ws\"]\n[[socketio.namespaces]]\nname = \"/a\"\naliases = [\"/ws\"]"),
            "socketio.namespaces[1].aliases[0]: `/ws` is already served by socketio.namespaces[0]",
        ),
        (
            "[[socketio.namespaces]]\nname = \"chat\"".to_string(),
            "socketio.namespaces[0].name: must start with `/`, e.g. \"/\" or \"/notifications\"",
        ),
        (
            "[[socketio.namespaces]]\nname = \"/a,b\"".to_string(),
            "socketio.namespaces[0].name: must not contain spaces, control characters, `,`, `?` or `#`",
        ),
        (
            route("event = \"e\""),
            "socketio.namespaces[0].events[0].action: missing: one of \"join\", \"leave\", \"relay\", \"reply\", \"rpc\", \"inbox\"",
        ),
        (
            route("event = \"e\"\naction = \"join\""),
            "socketio.namespaces[0].events[0].room: required for action = \"join\"",
        ),
        (
            route("event = \"e\"\naction = \"reply\"\nroom = \"r\"\nreply = { event = \"x\" }"),
            "socketio.namespaces[0].events[0].room: only join, leave and relay routes use a room",
        ),
        (
            route("event = \"e\"\naction = \"reply\""),
            "socketio.namespaces[0].events[0].reply: required for action = \"reply\"",
        ),
        (
            route("event = \"e\"\naction = \"join\"\nroom = \"r\"\nvolatile = true"),
            "socketio.namespaces[0].events[0].volatile: only for action = \"relay\", not \"join\"",
        ),
        (
            route("event = \"e\"\naction = \"leave\"\nroom = \"r\"\nrelay = { event = \"x\" }"),
            "socketio.namespaces[0].events[0].relay: only for action = \"relay\", not \"leave\"",
        ),
        (
            route("event = \"disconnect\"\naction = \"reply\"\nreply = { event = \"x\" }"),
            "socketio.namespaces[0].events[0].event: `disconnect` is reserved by Socket.IO and cannot be emitted",
        ),
        (
            route("event = \"\"\naction = \"reply\"\nreply = { event = \"x\" }"),
            "socketio.namespaces[0].events[0].event: must not be empty",
        ),
        (
            format!("{}\n[[socketio.namespaces.events]]\nevent = \"e\"\naction = \"leave\"\nroom = \"r\"", route("event = \"e\"\naction = \"join\"\nroom = \"r\"")),
            "socketio.namespaces[0].events[1].event: duplicate event `e` (also socketio.namespaces[0].events[0])",
        ),
        (
            format!("{ns}greeting = {{ data = 1 }}"),
            "socketio.namespaces[0].greeting.event: must not be empty",
        ),
        (
            format!("{ns}error = {{ event = \"connect\" }}"),
            "socketio.namespaces[0].error.event: `connect` is reserved by Socket.IO and cannot be emitted",
        ),
        (
            format!("{ns}auto_join = [\"\"]"),
            "socketio.namespaces[0].auto_join[0]: must not be empty",
        ),
        (
            "[rooms]\nauto_join = [\"\"]".to_string(),
            "rooms.auto_join[0]: must not be empty",
        ),
    ] {
        assert_eq!(error(&toml), expected, "{toml}");
    }
}

#[test]
fn template_errors_name_the_string_they_are_in() {
    let ns = "[[socketio.namespaces]]\nname = \"/\"\n";
    let route = |body: &str| format!("{ns}[[socketio.namespaces.events]]\n{body}");
    for (toml, key, problem) in [
        (
            route("event = \"e\"\naction = \"join\"\nroom = \"t:{args.0.id\""),
            "socketio.namespaces[0].events[0].room: ",
            "unclosed `{`",
        ),
        (
            route("event = \"e\"\naction = \"join\"\nroom = \"t:{error}\""),
            "socketio.namespaces[0].events[0].room: ",
            "only error templates may use `{error}`",
        ),
        (
            format!("{ns}greeting = {{ event = \"hi\", data = {{ list = [\"ok\", \"{{args.0}}\"] }} }}"),
            "socketio.namespaces[0].greeting.data.list[1]: ",
            "no event arguments at connect",
        ),
        (
            format!("{ns}error = {{ event = \"e\", data = {{ m = \"{{args.0}}\" }} }}"),
            "socketio.namespaces[0].error.data.m: ",
            "error templates cannot use the event's arguments",
        ),
        (
            route("event = \"e\"\naction = \"reply\"\nreply = { event = \"x\", data = \"{socket.ip}\" }"),
            "socketio.namespaces[0].events[0].reply.data: ",
            "only `{socket.id}`",
        ),
    ] {
        let e = error(&toml);
        assert!(e.starts_with(key) && e.contains(problem), "{e}");
    }
}

#[test]
fn toml_dates_in_data_are_sent_as_their_text() {
    let r = router(
        "[[socketio.namespaces]]\nname = \"/\"\n[[socketio.namespaces.events]]\n\
         event = \"e\"\naction = \"reply\"\nreply = { event = \"x\", data = { at = 1979-05-27 } }",
    );
    let c = claims(json!({}));
    assert_eq!(
        r.route("/", "e", &[], false, &caller(&c)),
        [Action::Reply(Reply::Event {
            event: "x".into(),
            args: vec![json!({"at": "1979-05-27"})],
        })]
    );
}

#[test]
fn a_tenant_template_names_the_tenant_of_a_join_or_leave() {
    let r = router(
        r#"
[[socketio.namespaces]]
name = "/"
[[socketio.namespaces.events]]
event = "watch"
action = "join"
room = "company:{args.0.company}"
tenant = "{args.0.tenant}"
[[socketio.namespaces.events]]
event = "unwatch"
action = "leave"
room = "company:{args.0.company}"
tenant = "{args.0.tenant}"
"#,
    );
    let c = claims(json!({"sub": 1}));
    assert_eq!(
        r.route(
            "/",
            "watch",
            &[json!({"company": 9, "tenant": "globex"})],
            false,
            &caller(&c)
        ),
        [Action::JoinIn {
            tenant: "globex".into(),
            room: "company:9".into(),
            then: Reply::None,
        }]
    );
    // Without the argument: the socket's own tenant.
    assert_eq!(
        r.route("/", "watch", &[json!({"company": 9})], false, &caller(&c)),
        [Action::Join {
            room: "company:9".into(),
            then: Reply::None,
        }]
    );
    assert_eq!(
        r.route(
            "/",
            "unwatch",
            &[json!({"company": 9, "tenant": "globex"})],
            false,
            &caller(&c)
        ),
        [Action::LeaveIn {
            tenant: "globex".into(),
            room: "company:9".into(),
            then: Reply::None,
        }]
    );
    assert_eq!(
        error(
            "[[socketio.namespaces]]\nname = \"/\"\n[[socketio.namespaces.events]]\n\
             event = \"t\"\naction = \"relay\"\nroom = \"r\"\ntenant = \"{args.0}\""
        ),
        "socketio.namespaces[0].events[0].tenant: only for action = \"join\" or \"leave\", not \"relay\""
    );
}
