//! [`Registry`]: the live nodes of a cluster, and requests from one node to all the others.
//!
//! Every node renews an entry with a TTL (see `heartbeat`) and takes requests on its own
//! channel (see `requests`); the HTTP API uses both to see and reach the whole cluster.

mod heartbeat;
mod requests;
mod types;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::connect;
use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::prelude::Client;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinHandle};

use crate::error::RedisError;
use crate::keys::Keys;
use crate::options::ClusterOptions;

pub use types::{NodeAnswer, NodeInfo, RequestHandler, TIMED_OUT};

/// What the registry's tasks share.
#[derive(Debug)]
struct Shared {
    keys: Keys,
    info: NodeInfo,
    /// `info` as stored in the entry, encoded once.
    info_json: String,
    /// This node's channel.
    channel: String,
    client: Client,
    subscriber: SubscriberClient,
    handler: Arc<dyn RequestHandler>,
    /// Deadline of every command, of a whole `ask_all`, and of each handled request.
    timeout: Duration,
    node_ttl: Duration,
    pending: requests::Pending,
    /// Permits for requests from other nodes handled at once.
    handling: Arc<Semaphore>,
    next_id: AtomicU64,
}

/// A node's membership in the cluster: its registry entry, kept alive by a heartbeat, and its
/// channel, on which other nodes ask it things.
///
/// A node that stops without [`leave`](Self::leave) (killed, or the registry dropped) leaves
/// the list of live nodes at most `node_ttl` after its last heartbeat, that is at most
/// `node_ttl + heartbeat` after it stopped.
#[derive(Debug)]
pub struct Registry {
    shared: Arc<Shared>,
    /// The heartbeat, taken and awaited by `leave` so that no beat follows the removal. A std
    /// mutex: held only to take the handle.
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    /// The channel reader, the resubscription task and both connection tasks.
    tasks: Vec<AbortHandle>,
    left: AtomicBool,
}

impl Registry {
    /// Connects to Redis (each connection within `opts.timeout`), subscribes to this node's
    /// channel, writes the node's entry, and starts the heartbeat and the channel reader.
    ///
    /// `info.id` must be `opts.node_id`, and `opts.heartbeat` must be non-zero and less than
    /// `opts.node_ttl`. Once this returns, the node is in [`nodes`](Self::nodes) and takes
    /// requests. Both connections reconnect after a failure (delays doubling from 100 ms up
    /// to 2 s), and the subscription is renewed after each reconnection.
    pub async fn start(
        opts: &ClusterOptions,
        info: NodeInfo,
        handler: Arc<dyn RequestHandler>,
    ) -> Result<Arc<Registry>, RedisError> {
        if info.id != opts.node_id {
            return Err(RedisError::Invalid(format!(
                "the node's id {:?} is not cluster.node_id {:?}",
                info.id, opts.node_id
            )));
        }
        if opts.heartbeat.is_zero() || opts.heartbeat >= opts.node_ttl {
            return Err(RedisError::Invalid(
                "cluster.heartbeat_ms must be above 0 and less than cluster.node_ttl_ms".into(),
            ));
        }
        let info_json =
            serde_json::to_string(&info).map_err(|e| RedisError::Invalid(e.to_string()))?;
        let connections = connect::connect_both(
            opts,
            connect::Buffers {
                // Far above what heartbeats, reads and the publishes of MAX_IN_FLIGHT requests
                // need at once in a cluster of ten nodes.
                commands: 16_384,
                messages: 1024,
            },
        )
        .await?;
        let mut tasks = connections.tasks;
        let keys = Keys::new(&opts.prefix);
        let shared = Arc::new(Shared {
            channel: keys.node_channel(&info.id),
            keys,
            info,
            info_json,
            client: connections.client,
            subscriber: connections.subscriber,
            handler,
            timeout: opts.timeout,
            node_ttl: opts.node_ttl,
            pending: requests::Pending::default(),
            handling: Arc::new(Semaphore::new(requests::MAX_HANDLING)),
            // Ids start at random, below 2^53, so that late replies to an earlier run of
            // this node (same channel) are unlikely to match a new request.
            next_id: AtomicU64::new(rand::random::<u64>() >> 12),
        });

        // Whatever fails from here stops the tasks started so far.
        let mut registry = Registry {
            shared: Arc::clone(&shared),
            heartbeat: Mutex::new(None),
            tasks: Vec::new(),
            left: AtomicBool::new(false),
        };
        registry.tasks.append(&mut tasks);
        // Taken before subscribing, so that no message is missed.
        let messages = shared.subscriber.message_rx();
        registry
            .tasks
            .push(tokio::spawn(requests::listen(Arc::clone(&shared), messages)).abort_handle());
        registry
            .tasks
            .push(crate::resubscribe::renew_after_reconnects(&shared.subscriber).abort_handle());
        let () = shared.subscriber.subscribe(shared.channel.as_str()).await?;
        heartbeat::beat(&shared).await?;
        let beats = tokio::spawn(heartbeat::run(Arc::clone(&shared), opts.heartbeat));
        *registry.heartbeat_slot() = Some(beats);
        Ok(Arc::new(registry))
    }

    fn heartbeat_slot(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.heartbeat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// This node's description.
    pub fn info(&self) -> &NodeInfo {
        &self.shared.info
    }

    /// The live nodes, this one included, ordered by id; within `cluster.timeout_ms`.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, RedisError> {
        tokio::time::timeout(self.shared.timeout, heartbeat::live(&self.shared)).await?
    }

    /// Sends `request` to every other live node and returns their answers, one per node, in
    /// the order of their ids, within `cluster.timeout_ms` of the call.
    ///
    /// This node's own handler is not called: the caller does the local part. A node that
    /// does not answer in time gets [`TIMED_OUT`]; when too many requests of this node already
    /// wait, every node gets an error at once. The error is for when the live nodes could not
    /// be listed, or the request is too large to send.
    pub async fn ask_all(&self, request: Value) -> Result<Vec<NodeAnswer>, RedisError> {
        requests::ask_all(&self.shared, request).await
    }

    /// Whether both connections to Redis are up and the node has not left; for `/health`.
    pub fn healthy(&self) -> bool {
        !self.left.load(Ordering::Relaxed)
            && self.shared.client.is_connected()
            && self.shared.subscriber.is_connected()
    }

    /// Leaves the cluster gracefully: stops the heartbeat, removes the node's entry at once
    /// (other nodes stop listing it immediately), then stops taking requests and closes both
    /// connections. The removal and the close each have the `cluster.timeout_ms` deadline;
    /// the tasks stop even when they fail. Calling it again does nothing.
    pub async fn leave(&self) -> Result<(), RedisError> {
        if self.left.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let beats = self.heartbeat_slot().take();
        if let Some(beats) = beats {
            beats.abort();
            // Resolves once the task is gone, so no beat can land after the removal.
            let _ = beats.await;
        }
        let timeout = self.shared.timeout;
        let removed = tokio::time::timeout(timeout, heartbeat::remove(&self.shared)).await;
        let _ = tokio::time::timeout(timeout, self.shared.subscriber.unsubscribe_all()).await;
        let _ = tokio::time::timeout(timeout, self.shared.subscriber.quit()).await;
        let _ = tokio::time::timeout(timeout, self.shared.client.quit()).await;
        self.stop_tasks();
        removed?
    }

    fn stop_tasks(&self) {
        if let Some(beats) = self.heartbeat_slot().take() {
            beats.abort();
        }
        for task in &self.tasks {
            task.abort();
        }
    }

    /// How many of this node's requests wait for answers.
    pub fn requests_in_flight(&self) -> usize {
        self.shared.pending.len()
    }
}

impl Drop for Registry {
    /// Stops every task and drops both connections, without removing the entry: to Redis
    /// this is a node that died, and its entry expires after `node_ttl`.
    fn drop(&mut self) {
        self.stop_tasks();
    }
}
