//! RabbitMQ ingestion against the machine's RabbitMQ: each test declares exchanges and queues
//! of its own (through the server, named with a unique prefix) and deletes them after.
//! Messages are published with lapin, as a backend would, and read by native clients.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::json;

use crate::cluster::{node_config, Prefix};
use crate::harness::{Client, Config, Server};

/// A publisher on the shared RabbitMQ, and the names of one test's exchange and queues.
struct Broker {
    url: String,
    name: String,
    channel: Channel,
    _connection: Connection,
}

impl Broker {
    async fn connect(test: &str) -> Option<Broker> {
        let url = roomcast_testkit::shared_rabbitmq()?;
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Some(Broker {
            url,
            name: roomcast_testkit::unique_prefix(&format!("rc-{test}")),
            channel,
            _connection: connection,
        })
    }

    fn queue(&self) -> String {
        format!("{}.q", self.name)
    }

    fn dead(&self) -> String {
        format!("{}.q.dead", self.name)
    }

    /// Publishes `body` with `key` on the test's exchange and waits for the broker's
    /// confirmation; persistent, with `id` as its message id when given.
    async fn publish(&self, key: &str, body: &str, id: Option<&str>) {
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = id {
            properties = properties.with_message_id(id.into());
        }
        self.channel
            .basic_publish(
                self.name.as_str().into(),
                key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body.as_bytes(),
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// The bodies in the dead-letter queue, read within `timeout`.
    async fn dead_letters(&self, count: usize) -> Vec<String> {
        let mut consumer = self
            .channel
            .basic_consume(
                self.dead().as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut bodies = Vec::new();
        while bodies.len() < count {
            let next = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await;
            let Ok(Some(Ok(delivery))) = next else { break };
            bodies.push(String::from_utf8_lossy(&delivery.data).into_owned());
        }
        bodies
    }

    /// The source's configuration: seed 004's order rule, with `extra` keys.
    fn source(&self, extra: &str) -> String {
        format!(
            r#"
[[ingest.amqp]]
name = "{name}"
url = "{url}"
exchange = {{ name = "{name}" }}
queue = {{ name = "{queue}" }}
bindings = ["order.*", "payment.*"]
tenant = "{{companyId}}"
{extra}
[[ingest.amqp.rules]]
routing_key = "order.*"
has = ["orderId"]
[[ingest.amqp.rules.emit]]
event = "order:status_updated"
rooms = ["user:{{customerId}}"]
data = {{ orderId = "{{orderId}}", status = "{{status}}", message = "Your order #{{orderNumber}} is now {{status}}" }}
[[ingest.amqp.rules.emit]]
event = "order:new_order"
rooms = ["company:{{companyId}}"]
[[ingest.amqp.rules.emit]]
event = "order:shop_order"
rooms = ["shop:{{shopId}}"]
[[ingest.amqp.rules.emit]]
event = "order:update"
rooms = ["order:{{orderId}}"]
"#,
            name = self.name,
            url = self.url,
            queue = self.queue(),
        )
    }
}

impl Drop for Broker {
    // The test's queues and exchanges go, passed or failed: on a runtime of their own, as
    // the test's may be gone.
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let (queue, dead) = (self.queue(), self.dead());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(c) = Connection::connect(&url, ConnectionProperties::default()).await else {
                    return;
                };
                let Ok(ch) = c.create_channel().await else {
                    return;
                };
                for q in [&queue, &dead] {
                    let _ = ch
                        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                for x in [&name, &dead] {
                    let _ = ch
                        .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = c.close(200, "bye".into()).await;
            });
        })
        .join();
    }
}

/// The seed's rooms open to subscribers.
fn config() -> Config {
    Config::new().set(
        "rooms.acl",
        r#"[{ pattern = "user:*" }, { pattern = "company:*" }, { pattern = "shop:*" }, { pattern = "order:*" }]"#,
    )
}

/// Waits until every ingest source of `server` is consuming.
async fn consuming(server: &Server) {
    for _ in 0..200 {
        let (_, health) = server.api("GET", "/health", None, None).await;
        let sources = health["ingest"].as_array().cloned().unwrap_or_default();
        if !sources.is_empty() && sources.iter().all(|s| s["state"] == "up") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the ingest sources never connected: {}",
        server.stderr_text()
    );
}

fn order(n: u64) -> String {
    json!({"orderId": format!("o{n}"), "orderNumber": format!("ORD-{n}"), "status": "shipped",
        "customerId": "u7", "companyId": "acme", "shopId": "s1"})
    .to_string()
}

/// A client of `acme` in `rooms`: user `u7` (the customer) in `user:u7`, staff elsewhere.
async fn subscribed(server: &Server, rooms: &[&str]) -> Client {
    let user = if rooms == ["user:u7"] { "u7" } else { "staff" };
    let mut client = server.connect_user(user, "acme").await;
    for room in rooms {
        client.join(room).await;
    }
    client
}

#[tokio::test]
async fn an_order_shipped_message_reaches_the_customer_company_shop_and_order_rooms() {
    let Some(broker) = Broker::connect("seed-004").await else {
        return;
    };
    let server = Server::start(config().with(&broker.source(""))).await;
    consuming(&server).await;
    let mut customer = subscribed(&server, &["user:u7"]).await;
    let mut company = subscribed(&server, &["company:acme"]).await;
    let mut shop = subscribed(&server, &["shop:s1"]).await;
    let mut watcher = subscribed(&server, &["order:o1"]).await;
    // Another tenant's customer with the same user id hears nothing.
    let mut other = server.connect_user("u7", "globex").await;
    other.join("user:u7").await;

    broker.publish("order.shipped", &order(1), None).await;

    let event = customer.recv_event().await;
    assert_eq!(
        (&event["event"], &event["room"]),
        (&json!("order:status_updated"), &json!("user:u7"))
    );
    assert_eq!(
        event["data"],
        json!({"orderId": "o1", "status": "shipped", "message": "Your order #ORD-1 is now shipped"})
    );
    for (client, event, room) in [
        (&mut company, "order:new_order", "company:acme"),
        (&mut shop, "order:shop_order", "shop:s1"),
        (&mut watcher, "order:update", "order:o1"),
    ] {
        let got = client.recv_event().await;
        assert_eq!((&got["event"], &got["room"]), (&json!(event), &json!(room)));
        assert_eq!(got["data"]["orderId"], "o1", "{got}");
    }
    other.expect_no_message(Duration::from_millis(300)).await;
    let source = format!("{{source=\"{}\"}}", broker.name);
    assert_eq!(
        server
            .metric(&format!("roomcast_ingest_messages_total{source}"))
            .await,
        1
    );
    assert_eq!(
        server
            .metric(&format!("roomcast_ingest_publishes_total{source}"))
            .await,
        4
    );
}

#[tokio::test]
async fn malformed_messages_go_to_the_dead_letter_queue_and_the_queue_goes_on() {
    let Some(broker) = Broker::connect("dead-letter").await else {
        return;
    };
    let server = Server::start(config().with(&broker.source(""))).await;
    consuming(&server).await;
    let mut customer = subscribed(&server, &["user:u7"]).await;

    let no_shop = r#"{"orderId":"o2","companyId":"acme","customerId":"u7"}"#;
    let no_tenant = r#"{"orderId":"o3","customerId":"u7","shopId":"s1"}"#;
    broker.publish("order.shipped", "{not json", None).await;
    broker
        .publish("payment.success", r#"{"paymentId":"p"}"#, None)
        .await;
    broker.publish("order.shipped", no_shop, None).await;
    broker.publish("order.shipped", no_tenant, None).await;
    broker.publish("order.shipped", &order(4), None).await;

    // The good message after the bad ones arrives.
    let event = customer.recv_event().await;
    assert_eq!(event["data"]["orderId"], "o4", "{event}");
    let mut dead = broker.dead_letters(4).await;
    dead.sort();
    let mut expected = vec![
        "{not json".to_owned(),
        r#"{"paymentId":"p"}"#.to_owned(),
        no_shop.to_owned(),
        no_tenant.to_owned(),
    ];
    expected.sort();
    assert_eq!(dead, expected);
    let (_, text) = server.http("GET", "/metrics", None, None).await;
    for reason in ["not_json", "no_rule", "missing_field", "no_tenant"] {
        let line = format!(
            "roomcast_ingest_rejected_total{{source=\"{}\",reason=\"{reason}\"}} 1",
            broker.name
        );
        assert!(text.contains(&line), "{line} not in:\n{text}");
    }
}

/// Every `order:update` event `client` gets within a quiet second, counted by order id.
async fn updates(client: &mut Client, until: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let mut total = 0;
    while let Some(event) = client.next_event_within(Duration::from_secs(5)).await {
        *seen
            .entry(event["data"]["orderId"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        total += 1;
        if total >= until {
            // Anything more (a duplicate) arrives within the second.
            while let Some(event) = client.next_event_within(Duration::from_secs(1)).await {
                *seen
                    .entry(event["data"]["orderId"].as_str().unwrap().to_owned())
                    .or_insert(0) += 1;
            }
            break;
        }
    }
    seen
}

/// The broker's pid of the connection whose name is `name`.
fn connection_pids(name: &str) -> Vec<String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("run rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(&format!("\"{name}\"")))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_dropped_connection_loses_nothing_and_repeats_nothing_with_message_ids() {
    let Some(broker) = Broker::connect("drop").await else {
        return;
    };
    let extra = "queue = { name = \"QUEUE\", prefetch = 4 }\nreconnect_min_ms = 50\n"
        .replace("QUEUE", &broker.queue());
    let source = broker.source("").replace(
        &format!("queue = {{ name = \"{}\" }}\n", broker.queue()),
        &extra,
    );
    let server = Server::start(config().with(&source)).await;
    consuming(&server).await;
    let mut client = subscribed(&server, &["company:acme"]).await;
    let pids = connection_pids(&broker.name);
    assert_eq!(pids.len(), 1, "the consumer's connection by its name");

    const N: u64 = 200;
    for n in 0..N / 2 {
        broker
            .publish("order.created", &order(n), Some(&format!("m{n}")))
            .await;
    }
    // The connection goes while messages are in flight; the rest is published meanwhile.
    let closed = std::process::Command::new("rabbitmqctl")
        .args(["-q", "close_connection", &pids[0], "test drop"])
        .status()
        .expect("run rabbitmqctl");
    assert!(closed.success());
    for n in N / 2..N {
        broker
            .publish("order.created", &order(n), Some(&format!("m{n}")))
            .await;
    }
    // A publisher's retry of a message it had sent already (its confirmation lost, say): the
    // same id, published once.
    broker.publish("order.created", &order(7), Some("m7")).await;
    let seen = updates(&mut client, N as usize).await;
    // Each message gives company:acme one `order:new_order`.
    assert_eq!(seen.len(), N as usize, "every message arrived");
    assert!(seen.values().all(|n| *n == 1), "none twice: {seen:?}");
    consuming(&server).await;
    let source = format!("{{source=\"{}\"}}", broker.name);
    assert!(
        server
            .metric(&format!("roomcast_ingest_reconnects_total{source}"))
            .await
            >= 1
    );
}

#[tokio::test]
async fn two_nodes_compete_for_one_queue_and_publish_each_message_once() {
    let (Some(broker), Some(redis)) = (
        Broker::connect("compete").await,
        roomcast_testkit::shared_redis(),
    ) else {
        return;
    };
    let prefix = Prefix::new("ingest-compete");
    let source = broker.source("").replace(
        &format!("queue = {{ name = \"{}\" }}\n", broker.queue()),
        &format!(
            "queue = {{ name = \"{}\", prefetch = 1 }}\n",
            broker.queue()
        ),
    );
    let a = Server::start(
        node_config(&redis, &prefix, "a")
            .with(&source)
            .set("rooms.acl", r#"[{ pattern = "company:*" }]"#),
    )
    .await;
    let b = Server::start(
        node_config(&redis, &prefix, "b")
            .with(&source)
            .set("rooms.acl", r#"[{ pattern = "company:*" }]"#),
    )
    .await;
    consuming(&a).await;
    consuming(&b).await;
    let mut on_a = subscribed(&a, &["company:acme"]).await;
    let mut on_b = subscribed(&b, &["company:acme"]).await;
    crate::cluster::settle(&a, "acme", "company:acme", &mut [&mut on_a, &mut on_b]).await;

    const N: u64 = 100;
    for n in 0..N {
        broker.publish("order.created", &order(n), None).await;
    }
    for client in [&mut on_a, &mut on_b] {
        let seen = updates(client, N as usize).await;
        assert_eq!(seen.len(), N as usize, "every message reached both nodes");
        assert!(seen.values().all(|n| *n == 1), "once: {seen:?}");
    }
    let source = format!("{{source=\"{}\"}}", broker.name);
    let name = format!("roomcast_ingest_messages_total{source}");
    let (by_a, by_b) = (a.metric(&name).await, b.metric(&name).await);
    assert_eq!(by_a + by_b, N, "each message handled by one node");
    assert!(
        by_a > 0 && by_b > 0,
        "both nodes consumed: {by_a} and {by_b}"
    );
}

#[tokio::test]
async fn a_message_waits_in_its_queue_while_redis_is_away() {
    if !roomcast_testkit::require_redis_binaries() {
        return;
    }
    let Some(broker) = Broker::connect("redis-away").await else {
        return;
    };
    let mut redis = roomcast_testkit::RedisServer::start().unwrap();
    let prefix = Prefix::new("ingest-redis-away");
    let extra = "reconnect_min_ms = 50\n";
    let node = Server::start(
        node_config(&redis.url(), &prefix, "a")
            .with(&broker.source(extra))
            .set("rooms.acl", r#"[{ pattern = "company:*" }]"#),
    )
    .await;
    consuming(&node).await;
    let mut client = subscribed(&node, &["company:acme"]).await;
    crate::cluster::settle(&node, "acme", "company:acme", &mut [&mut client]).await;

    redis.stop().unwrap();
    crate::cluster::health_when(&node, "degraded").await;
    broker.publish("order.created", &order(1), None).await;
    // Not delivered to this node's members alone, not acknowledged: kept, and tried again.
    client.expect_no_message(Duration::from_millis(500)).await;
    let source = format!("{{source=\"{}\"}}", broker.name);
    let messages = format!("roomcast_ingest_messages_total{source}");
    assert_eq!(node.metric(&messages).await, 0);
    assert!(
        node.metric(&format!("roomcast_ingest_retries_total{source}"))
            .await
            >= 1
    );

    redis.restart().unwrap();
    let event = client.recv_event().await;
    assert_eq!(
        (&event["event"], &event["data"]["orderId"]),
        (&json!("order:new_order"), &json!("o1"))
    );
    client.expect_no_message(Duration::from_millis(300)).await;
    assert_eq!(node.metric(&messages).await, 1);
}
