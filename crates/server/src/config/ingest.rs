//! `[ingest]`: events taken from message brokers. `[[ingest.amqp]]` consumes a RabbitMQ queue
//! and turns each message, by its rules, into publishes (the ingestion module,
//! `crate::ingest`, compiles the rules and their templates).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `[ingest]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// The RabbitMQ queues consumed. Default `[]`.
    pub amqp: Vec<AmqpSourceConfig>,
}

/// What an AMQP source's messages are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AmqpPreset {
    /// JSON messages mapped to publishes by `rules`.
    #[default]
    Rules,
    /// python-socketio's AMQP managers (`AsyncAioPikaManager`, `KombuManager`): the JSON
    /// messages of its Redis manager on a fanout exchange (`socketio`), which every node reads
    /// into a queue of its own, as python-socketio's servers do.
    PythonSocketio,
}

/// One entry of `ingest.amqp`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSourceConfig {
    /// A name for logs and metrics (the `source` label), unique. Required.
    pub name: String,
    /// The broker, `amqp://user:password@host:port/vhost` (vhost `/` is `%2f`). Default
    /// `"amqp://guest:guest@127.0.0.1:5672/%2f"`.
    pub url: String,
    /// `"rules"` (the default) or `"python-socketio"`.
    pub preset: AmqpPreset,
    /// The exchange the queue is bound to, declared at start.
    pub exchange: ExchangeConfig,
    /// The queue consumed, declared at start.
    pub queue: QueueConfig,
    /// Binding keys, routing key patterns on a topic exchange (`"order.*"`, `"payment.#"`).
    /// Default `[]`: everything (`"#"`).
    pub bindings: Vec<String>,
    /// The dead-letter exchange and queue (both of this name) that rejected messages go to.
    /// Default: `"<queue>.dead"`.
    pub dead_letter: String,
    /// Template of the tenant of every emit that names none, e.g. `"{companyId}"` or a fixed
    /// `"acme"`. Default `""`: each emit names its own.
    pub tenant: String,
    /// `python-socketio` preset: the tenant of every message. Set this or `tenant_from_room`.
    /// (With `rules`, `tenant` is a template instead.)
    pub tenant_from_room: String,
    /// The namespace of every emit that names none. Default `"/"`.
    pub namespace: String,
    /// A message with a `message_id` property is published once within this window, in
    /// milliseconds, even when the broker delivers it again. `0`: no check. Default `60000`.
    pub dedupe_window_ms: u64,
    /// Deadline of the connection and of each declaration, in milliseconds. Default `10000`.
    pub timeout_ms: u64,
    /// First wait before a reconnection, in milliseconds, doubled up to `reconnect_max_ms`.
    /// Default `500`.
    pub reconnect_min_ms: u64,
    /// Longest wait between reconnections, in milliseconds. Default `30000`.
    pub reconnect_max_ms: u64,
    /// How messages become publishes: the first rule that matches a message applies.
    pub rules: Vec<IngestRule>,
}

impl Default for AmqpSourceConfig {
    fn default() -> Self {
        AmqpSourceConfig {
            name: String::new(),
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            preset: AmqpPreset::Rules,
            exchange: ExchangeConfig::default(),
            queue: QueueConfig::default(),
            bindings: Vec::new(),
            dead_letter: String::new(),
            tenant: String::new(),
            tenant_from_room: String::new(),
            namespace: "/".into(),
            dedupe_window_ms: 60_000,
            timeout_ms: 10_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            rules: Vec::new(),
        }
    }
}

impl std::fmt::Debug for AmqpSourceConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSourceConfig")
            .field("name", &self.name)
            .field("url", &roomcast_amqp::redact(&self.url))
            .field("preset", &self.preset)
            .field("exchange", &self.exchange)
            .field("queue", &self.queue)
            .field("bindings", &self.bindings)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl AmqpSourceConfig {
    /// The dead-letter exchange and queue: `dead_letter`, or `<queue>.dead`.
    pub fn dead_letter(&self) -> String {
        if self.dead_letter.is_empty() {
            format!("{}.dead", self.queue.name)
        } else {
            self.dead_letter.clone()
        }
    }
}

/// `exchange` of an AMQP source.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    /// Its name. Required (`python-socketio`: default `"socketio"`).
    pub name: String,
    /// `"topic"`, `"direct"`, `"fanout"` or `"headers"`. Default `"topic"`
    /// (`python-socketio`: `"fanout"`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it survives a broker restart. Default `true` (`python-socketio`: `false`, as
    /// the library declares it). A declaration that differs from the broker's is refused.
    pub durable: Option<bool>,
}

/// `queue` of an AMQP source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Its name; the nodes of a cluster consuming one queue compete, each message going to
    /// one of them. Required with `rules` (`python-socketio`: each node has a queue of its
    /// own, named by the broker).
    pub name: String,
    /// Whether it survives a broker restart (and, with persistent messages, keeps them).
    /// Default `true`.
    pub durable: bool,
    /// Messages taken ahead of their acknowledgement. Default `32`.
    pub prefetch: u16,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            name: String::new(),
            durable: true,
            prefetch: 32,
        }
    }
}

/// One entry of `ingest.amqp[].rules`: which messages, and what they become.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestRule {
    /// Routing key pattern, as AMQP topic bindings: words split by `.`, `*` one word, `#` zero
    /// or more. Default `"#"`: any.
    pub routing_key: String,
    /// Payload fields that must be present and not null (`["orderId"]`; `"order.id"` a field of
    /// an object). Default `[]`.
    pub has: Vec<String>,
    /// Payload fields that must have these values (`{ status = "shipped" }`). Default `{}`.
    pub equals: Map<String, Value>,
    /// The publishes the message becomes. At least one.
    pub emit: Vec<IngestEmit>,
}

impl Default for IngestRule {
    fn default() -> Self {
        IngestRule {
            routing_key: "#".into(),
            has: Vec::new(),
            equals: Map::new(),
            emit: Vec::new(),
        }
    }
}

/// One entry of `ingest.amqp[].rules[].emit`: one publish. Templates read the payload's fields
/// (`{customerId}`, `{order.id}`), `{routing_key}` and `{now}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestEmit {
    /// The event name, e.g. `"order:status_updated"`. Required.
    pub event: String,
    /// Template of the tenant. Default: the source's `tenant`.
    pub tenant: Option<String>,
    /// The namespace. Default: the source's `namespace`.
    pub namespace: Option<String>,
    /// Room templates, e.g. `["user:{customerId}"]`.
    pub rooms: Vec<String>,
    /// User id templates, e.g. `["{customerId}"]`.
    pub users: Vec<String>,
    /// Every connection of the tenant in the namespace. Default `false`.
    pub broadcast: bool,
    /// The event's data, a JSON template (`{ order = "{orderId}", status = "{status}" }`).
    /// Default: the payload as it came.
    pub data: Option<Value>,
}
