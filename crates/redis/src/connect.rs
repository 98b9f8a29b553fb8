//! A node's pairs of Redis connections (the broker's, the registry's): a client for commands
//! and a subscriber, both reconnecting with backoff, and connected under a deadline.

use fred::clients::SubscriberClient;
use fred::prelude::{Builder, Client, ClientLike, Config, ReconnectPolicy};
use tokio::task::AbortHandle;

use crate::error::RedisError;
use crate::options::ClusterOptions;

/// First delay before reconnecting, in ms.
const RECONNECT_MIN_MS: u32 = 100;
/// Longest delay between two reconnection attempts, in ms: a restarted Redis is found again
/// within this time.
const RECONNECT_MAX_MS: u32 = 2_000;
/// How much a pair of connections holds while Redis is slow or away.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buffers {
    /// Commands a client queues for its connection; past that a command fails at once
    /// (`Backpressure`) instead of waiting.
    pub(crate) commands: usize,
    /// Messages the subscriber holds for its reader before the oldest are dropped.
    pub(crate) messages: usize,
}

/// A builder with the cluster's URL and deadlines: every command, connection and internal
/// command (`AUTH`, `CLUSTER SLOTS`) gives up after `opts.timeout`, the command queue and the
/// subscriber's messages are bounded, and reconnection retries forever, with a delay doubling
/// from 100 ms to 2 s.
fn builder(opts: &ClusterOptions, buffers: Buffers) -> Result<Builder, RedisError> {
    let config = Config::from_url(&opts.url).map_err(|e| RedisError::Invalid(e.to_string()))?;
    let mut builder = Builder::from_config(config);
    let timeout = opts.timeout;
    builder
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
            c.max_command_buffer_len = buffers.commands;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
            p.broadcast_channel_capacity = buffers.messages;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            RECONNECT_MIN_MS,
            RECONNECT_MAX_MS,
            2,
        ));
    Ok(builder)
}

/// Starts `client`'s connection task and waits until it is connected, at most
/// `opts.join_deadline()`. On failure the task is stopped.
async fn connect<C: ClientLike>(
    client: &C,
    opts: &ClusterOptions,
) -> Result<AbortHandle, RedisError> {
    let task = client.connect().abort_handle();
    let result = match tokio::time::timeout(opts.join_deadline(), client.wait_for_connect()).await {
        Ok(Ok(())) => Ok(task.clone()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(RedisError::Timeout),
    };
    if result.is_err() {
        task.abort();
    }
    result
}

/// The connected clients and the tasks that drive them.
#[derive(Debug)]
pub(crate) struct Connections {
    /// Commands.
    pub(crate) client: Client,
    /// Subscriptions, renewed after every reconnection (`crate::resubscribe`).
    pub(crate) subscriber: SubscriberClient,
    /// The connection tasks of both clients.
    pub(crate) tasks: Vec<AbortHandle>,
}

/// Connects both clients, each within `opts.join_deadline()`.
pub(crate) async fn connect_both(
    opts: &ClusterOptions,
    buffers: Buffers,
) -> Result<Connections, RedisError> {
    let builder = builder(opts, buffers)?;
    let client = builder.build()?;
    let subscriber = builder.build_subscriber_client()?;
    let client_task = connect(&client, opts).await?;
    let subscriber_task = match connect(&subscriber, opts).await {
        Ok(task) => task,
        Err(e) => {
            client_task.abort();
            return Err(e);
        }
    };
    Ok(Connections {
        client,
        subscriber,
        tasks: vec![client_task, subscriber_task],
    })
}
