//! Renewing a subscriber's subscriptions after each reconnection.
//!
//! fred's own `manage_subscriptions` sends `SUBSCRIBE` and `PSUBSCRIBE` even when it tracks
//! no channel or no pattern; Redis refuses an empty `SUBSCRIBE`, and the shard channels,
//! renewed last, are then never renewed. This renews only what is tracked.

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use tokio::task::JoinHandle;

/// Starts the task that renews `subscriber`'s channels, patterns and shard channels after
/// every reconnection.
pub(crate) fn renew_after_reconnects(subscriber: &SubscriberClient) -> JoinHandle<()> {
    let subscriber = subscriber.clone();
    tokio::spawn(async move {
        let mut reconnects = subscriber.reconnect_rx();
        while reconnects.recv().await.is_ok() {
            if let Err(e) = renew(&subscriber).await {
                tracing::error!(client = %subscriber.id(), error = %e, "renewing subscriptions failed");
            }
        }
    })
}

async fn renew(subscriber: &SubscriberClient) -> Result<(), fred::error::Error> {
    let channels: Vec<String> = subscriber
        .tracked_channels()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    if !channels.is_empty() {
        subscriber.subscribe(channels).await?;
    }
    let patterns: Vec<String> = subscriber
        .tracked_patterns()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    if !patterns.is_empty() {
        subscriber.psubscribe(patterns).await?;
    }
    // One at a time: on a Redis Cluster the shard channels of one command must share a slot.
    for channel in subscriber.tracked_shard_channels() {
        subscriber.ssubscribe(channel.to_string()).await?;
    }
    Ok(())
}
