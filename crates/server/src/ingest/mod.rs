//! Ingestion: events taken from message brokers (`[ingest]`). Each `[[ingest.amqp]]` source
//! consumes a RabbitMQ queue (`roomcast_amqp`) and, by its rules ([`rules`]), turns each
//! message into publishes through the node, the one path every producer takes; in a cluster
//! the nodes consuming one queue compete, so each message is published once, by one of them.
//!
//! Guarantees: a message is acknowledged once all its publishes were taken (by Redis, in a
//! cluster); while they cannot be, it is kept and tried again, so the queue waits rather than
//! loses it. A malformed message (not JSON, no rule, a field a template needs missing, no
//! tenant) is rejected to the source's dead-letter queue, logged and counted, and the queue goes
//! on. When the connection fails, whatever is not acknowledged is redelivered: at least once,
//! and exactly once for messages with a `message_id` within `dedupe_window_ms`.
//!
//! The `python-socketio` preset reads python-socketio's AMQP managers instead: each node gets
//! every message, in a queue of its own, and acts on its own connections.

mod handler;
pub mod rules;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roomcast_amqp::{ExchangeKind, Handler, Source, SourceStatus};
use tokio::sync::watch;

use crate::app::App;
use crate::cluster::EmitterCounters;
use crate::config::{
    AmqpPreset, AmqpSourceConfig, Config, ConfigError, EmitterBinding, EmitterKind,
};
use crate::metrics::ByReason;
use handler::{PresetHandler, RulesHandler};
use rules::Rules;

/// What one source did, beyond its connection's counts.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Messages whose publishes were all taken.
    pub messages: AtomicU64,
    /// Publishes made.
    pub events: AtomicU64,
    /// Messages delivered again whose id was published already: acknowledged, not published.
    pub duplicates: AtomicU64,
    /// Publishes the broker could not take, tried again.
    pub retries: AtomicU64,
    rejected: ByReason,
    /// The `python-socketio` preset's reader.
    emitter: Arc<EmitterCounters>,
}

impl IngestCounters {
    fn reject(&self, reason: &'static str) {
        self.rejected.add(reason);
    }

    /// Messages rejected to the dead-letter queue (or, with the preset, dropped), by reason.
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        let mut list = self.rejected.list();
        list.extend(self.emitter.dropped());
        list
    }
}

#[derive(Debug)]
enum Kind {
    Rules(Arc<Rules>),
    Preset(EmitterBinding),
}

/// One configured source.
#[derive(Debug)]
struct IngestSource {
    source: Source,
    kind: Kind,
    dedupe: Option<Duration>,
    status: Arc<SourceStatus>,
    counters: Arc<IngestCounters>,
}

/// The node's sources.
#[derive(Debug)]
pub struct Ingest {
    sources: Vec<IngestSource>,
    stop: watch::Sender<bool>,
}

impl Ingest {
    /// Compiles `config.ingest`; the error names the key at fault.
    pub fn compile(config: &Config) -> Result<Ingest, ConfigError> {
        let mut names = HashSet::new();
        let sources = config
            .ingest
            .amqp
            .iter()
            .enumerate()
            .map(|(i, source)| {
                let key = format!("ingest.amqp[{i}]");
                if !names.insert(source.name.as_str()) {
                    return Err(ConfigError::invalid(
                        format!("{key}.name"),
                        format!("`{}` names another source too", source.name),
                    ));
                }
                compile_source(source, &key)
            })
            .collect::<Result<_, _>>()?;
        Ok(Ingest {
            sources,
            stop: watch::Sender::new(false),
        })
    }

    /// Starts consuming every source, for `app`.
    pub(crate) fn start(&self, app: &Arc<App>) {
        for s in &self.sources {
            let handler: Arc<dyn Handler> = match &s.kind {
                Kind::Rules(rules) => Arc::new(RulesHandler {
                    name: s.source.name.clone(),
                    rules: rules.clone(),
                    app: Arc::downgrade(app),
                    counters: s.counters.clone(),
                    dedupe: s.dedupe,
                }),
                Kind::Preset(binding) => {
                    // The binding's rule compiled when the plan was built.
                    let listener = match crate::cluster::emitter_listener(
                        binding,
                        &app.config,
                        app,
                        &s.counters.emitter,
                    ) {
                        Ok(listener) => listener,
                        Err(e) => {
                            // Compiled when the plan was built: not expected.
                            tracing::error!(source = %s.source.name, error = %e, "ingest source not started");
                            continue;
                        }
                    };
                    Arc::new(PresetHandler {
                        exchange: s.source.exchange.clone(),
                        listener,
                    })
                }
            };
            tokio::spawn(roomcast_amqp::consume(
                s.source.clone(),
                handler,
                s.status.clone(),
                self.stop.subscribe(),
            ));
        }
    }

    /// Stops consuming: every source closes its connection, and what it has not acknowledged
    /// returns to its queue.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether every source is connected, and each one's state, for `GET /health`.
    pub fn health(&self) -> (bool, Vec<serde_json::Value>) {
        let mut up = true;
        let list = self
            .sources
            .iter()
            .map(|s| {
                let counts = s.status.counts();
                up &= counts.connected;
                serde_json::json!({
                    "source": s.source.name,
                    "state": if counts.connected { "up" } else { "down" },
                    "reason": counts.last_error,
                })
            })
            .collect();
        (up, list)
    }

    /// The sources' metrics, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        if self.sources.is_empty() {
            return;
        }
        let families: [(&str, &str, &str); 7] = [
            (
                "roomcast_ingest_connected",
                "gauge",
                "Whether the source is connected to its broker (1) or not (0).",
            ),
            (
                "roomcast_ingest_messages_total",
                "counter",
                "Messages whose publishes were all taken, then acknowledged.",
            ),
            (
                "roomcast_ingest_publishes_total",
                "counter",
                "Publishes made from ingested messages.",
            ),
            (
                "roomcast_ingest_rejected_total",
                "counter",
                "Messages rejected to the dead-letter queue (preset: dropped), by reason.",
            ),
            (
                "roomcast_ingest_duplicates_total",
                "counter",
                "Redelivered messages whose id was published already.",
            ),
            (
                "roomcast_ingest_retries_total",
                "counter",
                "Publishes the broker could not take, tried again.",
            ),
            (
                "roomcast_ingest_reconnects_total",
                "counter",
                "Connections to the source's broker lost and made again.",
            ),
        ];
        for (name, kind, help) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &self.sources {
                let source = &s.source.name;
                let counts = s.status.counts();
                let c = &s.counters;
                let value = match name {
                    "roomcast_ingest_connected" => u64::from(counts.connected),
                    "roomcast_ingest_messages_total" => c.messages.load(Ordering::Relaxed),
                    "roomcast_ingest_publishes_total" => c.events.load(Ordering::Relaxed),
                    "roomcast_ingest_duplicates_total" => c.duplicates.load(Ordering::Relaxed),
                    "roomcast_ingest_retries_total" => c.retries.load(Ordering::Relaxed),
                    "roomcast_ingest_reconnects_total" => counts.reconnects,
                    _ => {
                        for (reason, n) in c.rejected() {
                            let _ = writeln!(
                                out,
                                "{name}{{source=\"{source}\",reason=\"{reason}\"}} {n}"
                            );
                        }
                        continue;
                    }
                };
                let _ = writeln!(out, "{name}{{source=\"{source}\"}} {value}");
            }
        }
    }
}

fn compile_source(config: &AmqpSourceConfig, key: &str) -> Result<IngestSource, ConfigError> {
    let invalid =
        |field: &str, message: String| ConfigError::invalid(format!("{key}.{field}"), message);
    if config.name.is_empty()
        || !config
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "name",
            "is required: letters, digits, `-`, `_` and `.` (it labels metrics)".into(),
        ));
    }
    roomcast_amqp::check_url(&config.url).map_err(|e| invalid("url", e))?;
    for (field, value, min, max) in [
        ("timeout_ms", config.timeout_ms, 1, 600_000),
        ("reconnect_min_ms", config.reconnect_min_ms, 1, 600_000),
        (
            "reconnect_max_ms",
            config.reconnect_max_ms,
            config.reconnect_min_ms,
            3_600_000,
        ),
        ("dedupe_window_ms", config.dedupe_window_ms, 0, 86_400_000),
    ] {
        if !(min..=max).contains(&value) {
            return Err(invalid(field, format!("must be {min} to {max}")));
        }
    }
    if config.queue.prefetch == 0 {
        return Err(invalid("queue.prefetch", "must be > 0".into()));
    }
    let preset = config.preset == AmqpPreset::PythonSocketio;
    let (exchange, kind, durable) = match preset {
        true => ("socketio", "fanout", false),
        false => ("", "topic", true),
    };
    let exchange = Some(config.exchange.name.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(exchange);
    if exchange.is_empty() {
        return Err(invalid("exchange.name", "is required".into()));
    }
    let kind_name = Some(config.exchange.kind.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(kind);
    let exchange_kind = ExchangeKind::parse(kind_name).ok_or_else(|| {
        invalid(
            "exchange.type",
            format!("`{kind_name}`: use topic, direct, fanout or headers"),
        )
    })?;
    let ms = Duration::from_millis;
    let mut source = Source {
        name: config.name.clone(),
        url: config.url.clone(),
        exchange: exchange.to_owned(),
        exchange_kind,
        exchange_durable: config.exchange.durable.unwrap_or(durable),
        queue: None,
        queue_durable: config.queue.durable,
        prefetch: config.queue.prefetch,
        bindings: config.bindings.clone(),
        dead_letter: None,
        timeout: ms(config.timeout_ms),
        backoff: (ms(config.reconnect_min_ms), ms(config.reconnect_max_ms)),
    };
    let kind = if preset {
        if !config.rules.is_empty() || !config.queue.name.is_empty() {
            return Err(invalid(
                "preset",
                "python-socketio reads the library's own messages: give no rules nor queue name"
                    .into(),
            ));
        }
        let binding = EmitterBinding {
            kind: EmitterKind::PythonSocketio,
            channel: exchange.to_owned(),
            tenant: config.tenant.clone(),
            tenant_from_room: config.tenant_from_room.clone(),
        };
        if binding.tenant.is_empty() == binding.tenant_from_room.is_empty() {
            return Err(invalid(
                "tenant",
                "python-socketio: set `tenant` or `tenant_from_room`, one of them".into(),
            ));
        }
        crate::cluster::emitter_rule(&binding)
            .map_err(|e| invalid("tenant_from_room", e.to_string()))?;
        Kind::Preset(binding)
    } else {
        if config.queue.name.is_empty() {
            return Err(invalid(
                "queue.name",
                "is required: the nodes of a cluster share the queue".into(),
            ));
        }
        if !config.tenant_from_room.is_empty() {
            return Err(invalid(
                "tenant_from_room",
                "is for the python-socketio preset; rules render `tenant`".into(),
            ));
        }
        source.queue = Some(config.queue.name.clone());
        source.dead_letter = Some(config.dead_letter());
        Kind::Rules(Arc::new(Rules::compile(config, key)?))
    };
    Ok(IngestSource {
        source,
        kind,
        dedupe: (config.dedupe_window_ms > 0).then(|| ms(config.dedupe_window_ms)),
        status: Arc::default(),
        counters: Arc::default(),
    })
}
