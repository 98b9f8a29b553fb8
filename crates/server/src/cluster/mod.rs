//! Cluster mode (`[cluster]`): the node's [`RedisBroker`], joined at start, and its entry in
//! the node [`Registry`], through which the HTTP API asks every node about its connections.

mod emitters;

use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use roomcast_broker::{BoxFuture, Broker, ConnId};
use roomcast_engine::rooms::RoomIndex;
use roomcast_redis::{
    ChannelMode, ClusterOptions, NodeInfo, PresenceSets, RedisBroker, Registry, RequestHandler,
};
use serde_json::{json, Value};

use crate::app::App;
use crate::config::{redacted_url, ChannelsConfig, ClusterConfig, Config};
use crate::node::Hub;
use crate::presence::{self, Ask};
pub(crate) use emitters::listener as emitter_listener;
pub use emitters::{rule as emitter_rule, EmitterCounters};

/// This node's membership in a cluster.
#[derive(Debug)]
pub struct Cluster {
    node_id: String,
    /// What the emitter bindings did.
    pub emitters: Arc<EmitterCounters>,
    opts: ClusterOptions,
    broker: Arc<RedisBroker>,
    registry: OnceLock<Arc<Registry>>,
    /// Which nodes hold which users and rooms, for presence events.
    presence: PresenceSets,
    /// This node's registry entry.
    info: NodeInfo,
}

/// A node process's name in the presence sets: its id and its start.
fn presence_id(info: &NodeInfo) -> String {
    format!("{}#{}", info.id, info.started_at_ms)
}

/// Answers the other nodes' questions about this node's connections.
#[derive(Debug)]
struct Presence(Arc<RoomIndex>);

impl RequestHandler for Presence {
    fn handle(&self, body: Value) -> BoxFuture<'static, Value> {
        let answer = match serde_json::from_value::<Ask>(body) {
            Ok(ask) => presence::answer(&self.0, &ask),
            Err(e) => json!({"error": format!("unknown request: {e}")}),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// The options of the Redis parts, from `[cluster]`; the node id generated when unset.
pub fn options(settings: &ClusterConfig, config: &Config) -> ClusterOptions {
    let node_id = if settings.node_id.is_empty() {
        format!("n{:012x}", rand::random::<u64>() >> 16)
    } else {
        settings.node_id.clone()
    };
    ClusterOptions {
        url: settings.redis.clone(),
        node_id,
        prefix: settings.prefix.clone(),
        heartbeat: settings.heartbeat(),
        node_ttl: settings.node_ttl(),
        stream_ttl: settings.stream_ttl(),
        timeout: settings.timeout(),
        channels: match settings.channels {
            ChannelsConfig::Tenant => ChannelMode::Tenant,
            ChannelsConfig::Room => ChannelMode::Room,
        },
        history: None,
        recovery: crate::sio::recovery::log_limits(config),
    }
}

impl Cluster {
    /// Connects this node's broker to Redis; it delivers to `hub`.
    pub async fn join(
        settings: &ClusterConfig,
        config: &Config,
        hub: Arc<Hub>,
        history: Option<Arc<dyn roomcast_broker::HistoryPolicy>>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let mut opts = options(settings, config);
        opts.history = history;
        let node_id = opts.node_id.clone();
        // Session ids (connection ids in hex) must not repeat across the nodes: this node's
        // start at random.
        ConnId::start_at(rand::random::<u64>() >> 16);
        let broker = RedisBroker::connect(opts.clone(), hub)
            .await
            .with_context(|| {
                format!(
                    "joining the cluster through {}",
                    redacted_url(&settings.redis)
                )
            })?;
        let info = NodeInfo::new(
            node_id.clone(),
            config.listen.to_string(),
            env!("CARGO_PKG_VERSION"),
        );
        // This process's presence: a node restarted under the same id is another holder, and
        // the old one's entries are reaped like a dead node's.
        let presence = PresenceSets::new(
            broker.client().clone(),
            &opts.prefix,
            &presence_id(&info),
            opts.timeout,
        );
        Ok(Arc::new(Cluster {
            info,
            node_id,
            emitters: Arc::default(),
            opts,
            broker,
            registry: OnceLock::new(),
            presence,
        }))
    }

    /// Starts what needs the whole server: the node's registry entry (its heartbeat, and the
    /// answers to the other nodes' questions).
    pub async fn serve(self: &Arc<Self>, app: &Arc<App>) -> anyhow::Result<()> {
        let info = self.info.clone();
        let registry = Registry::start(&self.opts, info, Arc::new(Presence(app.index.clone())))
            .await
            .context("joining the node registry")?;
        let _ = self.registry.set(registry);
        emitters::bind(&self.broker, &app.config, app, &self.emitters)
            .await
            .context("subscribing to the emitters' channels")?;
        tracing::info!(node = %self.node_id, "joined the cluster");
        Ok(())
    }

    /// Asks every other live node `ask`: their answers, and one entry per node asked
    /// (`{"node", "ok"}`, with `"error"` when it did not answer). This node comes first in
    /// the list, always ok.
    pub async fn ask_all(&self, ask: &Ask) -> (Vec<Value>, Vec<Value>) {
        let mut nodes = vec![json!({"node": self.node_id, "ok": true})];
        let Some(registry) = self.registry.get() else {
            return (Vec::new(), nodes);
        };
        let body = match serde_json::to_value(ask) {
            Ok(body) => body,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![json!({"ok": false, "error": e.to_string()})],
                )
            }
        };
        let mut answers = Vec::new();
        match registry.ask_all(body).await {
            Ok(list) => {
                for a in list {
                    match a.answer {
                        Ok(answer) if answer.get("error").is_none() => {
                            nodes.push(json!({"node": a.node, "ok": true}));
                            answers.push(answer);
                        }
                        Ok(answer) => nodes
                            .push(json!({"node": a.node, "ok": false, "error": answer["error"]})),
                        Err(e) => nodes.push(json!({"node": a.node, "ok": false, "error": e})),
                    }
                }
            }
            Err(e) => nodes.push(json!({"node": null, "ok": false, "error": e.to_string()})),
        }
        (answers, nodes)
    }

    /// The broker, as the node publishes through it.
    pub fn broker(&self) -> Arc<dyn Broker> {
        self.broker.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The presence sets: whether a user's or a room's first or last here is the cluster's.
    pub fn presence(&self) -> &PresenceSets {
        &self.presence
    }

    /// The presence names of the live node processes, this one included; `None` when the
    /// registry could not say.
    pub async fn live_nodes(&self) -> Option<Vec<String>> {
        let registry = self.registry.get()?;
        let nodes = registry.nodes().await.ok()?;
        Some(nodes.iter().map(presence_id).collect())
    }

    /// How often nodes beat: the pace of reaping dead nodes' presence.
    pub fn heartbeat(&self) -> std::time::Duration {
        self.opts.heartbeat
    }

    /// Leaves the cluster (graceful shutdown): the registry entry goes at once, then the
    /// connections to Redis close.
    pub async fn leave(&self) {
        if let Some(registry) = self.registry.get() {
            if let Err(e) = registry.leave().await {
                tracing::warn!(error = %e, "leaving the node registry failed; the entry expires");
            }
        }
        self.broker.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_is_generated_when_unset() {
        let a = options(&ClusterConfig::default(), &Config::default());
        let b = options(&ClusterConfig::default(), &Config::default());
        assert!(!a.node_id.is_empty());
        assert_ne!(a.node_id, b.node_id);
    }
}
