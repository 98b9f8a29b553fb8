use std::time::{Duration, UNIX_EPOCH};

use roomcast_broker::{Payload, Publication, Target};

use super::rules::{Malformed, Rules};
use super::Ingest;
use crate::config::Config;

/// Seed 004's order handler: one `order.*` message, four events to four rooms.
const SEED_004: &str = r#"
[[ingest.amqp]]
name = "events"
exchange = { name = "events" }
queue = { name = "websocket.events" }
bindings = ["order.*", "payment.*", "inventory.*"]
tenant = "{companyId}"

[[ingest.amqp.rules]]
routing_key = "order.*"
has = ["orderId"]
[[ingest.amqp.rules.emit]]
event = "order:status_updated"
rooms = ["user:{customerId}"]
data = { orderId = "{orderId}", status = "{status}", message = "Your order #{orderNumber} is now {status}", timestamp = "{now}" }
[[ingest.amqp.rules.emit]]
event = "order:new_order"
rooms = ["company:{companyId}"]
[[ingest.amqp.rules.emit]]
event = "order:shop_order"
rooms = ["shop:{shopId}"]
[[ingest.amqp.rules.emit]]
event = "order:update"
rooms = ["order:{orderId}"]

[[ingest.amqp.rules]]
routing_key = "inventory.#"
has = ["productId", "quantity"]
equals = { severity = "critical" }
[[ingest.amqp.rules.emit]]
event = "inventory:alert"
broadcast = true

[[ingest.amqp.rules]]
routing_key = "payment.success"
[[ingest.amqp.rules.emit]]
event = "payment:status_updated"
tenant = "{tenant}"
namespace = "/payments"
users = ["{customerId}"]
"#;

fn config(text: &str) -> Config {
    let mut config = Config::from_toml_str(text).unwrap();
    config.auth.secret = "s".repeat(32);
    config
}

fn rules(text: &str) -> Rules {
    let config = config(text);
    Rules::compile(&config.ingest.amqp[0], "ingest.amqp[0]").unwrap()
}

fn map(rules: &Rules, key: &str, body: &str) -> Result<Vec<Publication>, Malformed> {
    rules.map(
        key,
        body.as_bytes(),
        UNIX_EPOCH + Duration::from_secs(86_400),
    )
}

fn rooms(p: &Publication) -> (String, Vec<String>) {
    match &p.target {
        Target::Tenant { tenant, rooms, .. } => (
            tenant.to_string(),
            rooms.iter().map(|r| r.to_string()).collect(),
        ),
        other => panic!("{other:?}"),
    }
}

fn data(p: &Publication) -> serde_json::Value {
    match &p.payload {
        Payload::Json(raw) => serde_json::from_str(raw.get()).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_order_shipped_message_becomes_seed_004s_four_events() {
    let rules = rules(SEED_004);
    let body = r#"{"orderId":"order_123","orderNumber":"ORD-12345","status":"shipped",
        "customerId":"u7","companyId":"acme","shopId":"s1"}"#;
    let published = map(&rules, "order.shipped", body).unwrap();
    let got: Vec<_> = published
        .iter()
        .map(|p| (p.event.to_string(), rooms(p)))
        .collect();
    let t = |room: &str| ("acme".to_string(), vec![room.to_string()]);
    assert_eq!(
        got,
        vec![
            ("order:status_updated".into(), t("user:u7")),
            ("order:new_order".into(), t("company:acme")),
            ("order:shop_order".into(), t("shop:s1")),
            ("order:update".into(), t("order:order_123")),
        ]
    );
    assert_eq!(
        data(&published[0]),
        serde_json::json!({"orderId": "order_123", "status": "shipped",
            "message": "Your order #ORD-12345 is now shipped",
            "timestamp": "1970-01-02T00:00:00.000Z"})
    );
    // Without a data template, the payload as it came.
    assert_eq!(
        data(&published[1]),
        serde_json::from_str::<serde_json::Value>(body).unwrap()
    );
    assert!(published.iter().all(|p| &*p.ns == "/"));
}

#[test]
fn fields_and_routing_keys_choose_the_rule() {
    let rules = rules(SEED_004);
    // `order.*` is one word after `order`: `order.a.b` matches no rule.
    let order = r#"{"orderId":"1","customerId":"u","companyId":"c","shopId":"s"}"#;
    assert_eq!(
        map(&rules, "order.a.b", order).unwrap_err(),
        Malformed::NoRule("order.a.b".into())
    );
    // The first rule needs `orderId`.
    assert!(matches!(
        map(&rules, "order.created", r#"{"companyId":"c"}"#),
        Err(Malformed::NoRule(_))
    ));
    // `inventory.#` matches any depth, but only critical alerts with both fields.
    let alert = r#"{"productId":"p","quantity":3,"severity":"critical","companyId":"c"}"#;
    let published = map(&rules, "inventory.stock.low", alert).unwrap();
    assert_eq!(
        published[0].target,
        Target::TenantWide { tenant: "c".into() }
    );
    let warning = r#"{"productId":"p","quantity":3,"severity":"warning","companyId":"c"}"#;
    assert!(matches!(
        map(&rules, "inventory.low_stock", warning),
        Err(Malformed::NoRule(_))
    ));
    let no_quantity = r#"{"productId":"p","quantity":null,"severity":"critical","companyId":"c"}"#;
    assert!(matches!(
        map(&rules, "inventory", no_quantity),
        Err(Malformed::NoRule(_))
    ));
    // An emit's own tenant and namespace, and users.
    let paid = map(
        &rules,
        "payment.success",
        r#"{"tenant":"t9","customerId":42}"#,
    )
    .unwrap();
    assert_eq!(&*paid[0].ns, "/payments");
    assert_eq!(
        paid[0].target,
        Target::Tenant {
            tenant: "t9".into(),
            rooms: vec![],
            users: vec!["42".into()]
        }
    );
}

#[test]
fn malformed_messages_say_why() {
    let rules = rules(SEED_004);
    let e = map(&rules, "order.shipped", "not json").unwrap_err();
    assert_eq!(e.reason(), "not_json");
    // No tenant field: the tenant template cannot be rendered.
    let e = map(
        &rules,
        "order.shipped",
        r#"{"orderId":"1","customerId":"u"}"#,
    )
    .unwrap_err();
    assert_eq!(e.reason(), "no_tenant");
    // A room's field missing.
    let e = map(
        &rules,
        "order.shipped",
        r#"{"orderId":"1","companyId":"c","customerId":"u"}"#,
    )
    .unwrap_err();
    assert_eq!(e.reason(), "missing_field");
    assert!(e.to_string().contains("{shopId}"), "{e}");
    // A tenant name too long for a room key.
    let long = "x".repeat(200);
    let body = format!(r#"{{"orderId":"1","companyId":"{long}","customerId":"u","shopId":"s"}}"#);
    assert_eq!(
        map(&rules, "order.shipped", &body).unwrap_err().reason(),
        "no_tenant"
    );
}

#[test]
fn routing_key_is_a_field_too() {
    let rules = rules(
        r#"
        [[ingest.amqp]]
        name = "a"
        exchange = { name = "x" }
        queue = { name = "q" }
        tenant = "acme"
        [[ingest.amqp.rules]]
        [[ingest.amqp.rules.emit]]
        event = "changed"
        rooms = ["feed:{routing_key}"]
        data = { key = "{routing_key}", all = "{items}" }
        "#,
    );
    let published = map(&rules, "stock.moved", r#"{"items":[1,2]}"#).unwrap();
    assert_eq!(rooms(&published[0]).1, vec!["feed:stock.moved"]);
    assert_eq!(
        data(&published[0]),
        serde_json::json!({"key": "stock.moved", "all": [1, 2]})
    );
}

#[test]
fn bad_sources_are_named() {
    let error = |text: &str| Ingest::compile(&config(text)).unwrap_err().to_string();
    let base = "[[ingest.amqp]]\nname = \"a\"\nexchange = { name = \"x\" }\nqueue = { name = \"q\" }\ntenant = \"t\"\n";
    let emit =
        "[[ingest.amqp.rules]]\n[[ingest.amqp.rules.emit]]\nevent = \"e\"\nrooms = [\"r\"]\n";
    assert!(Ingest::compile(&config(&format!("{base}{emit}"))).is_ok());
    assert_eq!(
        error(base),
        "ingest.amqp[0].rules: give at least one rule: a message no rule matches is rejected"
    );
    let e = error(&format!(
        "{}{emit}",
        base.replace("queue = { name = \"q\" }\n", "")
    ));
    assert!(
        e.starts_with("ingest.amqp[0].queue.name: is required"),
        "{e}"
    );
    let e = error(&format!(
        "{}{emit}",
        base.replace("amqp[0]", "")
            .replace("name = \"a\"", "name = \"a b\"")
    ));
    assert!(e.starts_with("ingest.amqp[0].name: is required"), "{e}");
    let e = error(&format!("{base}url = \"http://x\"\n{emit}"));
    assert!(e.starts_with("ingest.amqp[0].url:"), "{e}");
    let e = error(&format!("{base}{emit}").replace("name = \"x\"", "name = \"x\", type = \"fan\""));
    assert!(e.starts_with("ingest.amqp[0].exchange.type: `fan`"), "{e}");
    let e = error(&format!("{base}[[ingest.amqp.rules]]\nrouting_key = \"a..b\"\n[[ingest.amqp.rules.emit]]\nevent = \"e\"\nrooms = [\"r\"]\n"));
    assert!(e.starts_with("ingest.amqp[0].rules[0].routing_key:"), "{e}");
    let e = error(&format!("{}{emit}", base.replace("tenant = \"t\"\n", "")));
    assert!(
        e.starts_with("ingest.amqp[0].rules[0].emit[0].tenant: is required"),
        "{e}"
    );
    let e = error(&format!(
        "{base}[[ingest.amqp.rules]]\n[[ingest.amqp.rules.emit]]\nevent = \"e\"\n"
    ));
    assert!(
        e.starts_with("ingest.amqp[0].rules[0].emit[0].rooms: give rooms"),
        "{e}"
    );
    let e = error(&format!("{base}[[ingest.amqp.rules]]\n[[ingest.amqp.rules.emit]]\nevent = \"e\"\nrooms = [\"{{args.0}}\"]\n"));
    assert!(
        e.starts_with("ingest.amqp[0].rules[0].emit[0].rooms[0]:"),
        "{e}"
    );
    let e = error(&format!("{base}{emit}{base}{emit}"));
    assert!(
        e.starts_with("ingest.amqp[1].name: `a` names another source"),
        "{e}"
    );
    // Unknown keys, at every level.
    let e = Config::from_toml_str(&format!("{base}{emit}colour = 1\n"))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "ingest.amqp[0].rules[0].emit[0].colour: unknown key");
    // The preset reads the library's own messages.
    let preset =
        "[[ingest.amqp]]\nname = \"py\"\npreset = \"python-socketio\"\ntenant = \"acme\"\n";
    assert!(Ingest::compile(&config(preset)).is_ok());
    let e = error(&preset.replace("tenant = \"acme\"", "tenant_from_room = \"t:{x}\""));
    assert!(e.starts_with("ingest.amqp[0].tenant_from_room:"), "{e}");
    let e = error(&preset.replace("tenant = \"acme\"\n", ""));
    assert!(
        e.starts_with("ingest.amqp[0].tenant: python-socketio"),
        "{e}"
    );
}

#[test]
fn the_examples_ingest_sources_compile_once_uncommented() {
    let example = include_str!("../../../../roomcast.example.toml");
    let start = example.find("# [[ingest.amqp]]").unwrap();
    let end = example[start..]
        .find("# [lifecycle")
        .map_or(example.len(), |e| start + e);
    let text: String = example[start..end]
        .lines()
        .filter(|line| line.starts_with("# ") && !line.starts_with("# #"))
        .map(|line| format!("{}\n", &line[2..]))
        .filter(|line| {
            let first = line.trim_start();
            first.starts_with('[') || first.contains(" = ")
        })
        .collect();
    let ingest = Ingest::compile(&config(&text)).unwrap();
    assert_eq!(ingest.sources.len(), 2);
}
