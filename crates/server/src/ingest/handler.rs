//! What a source does with each message: by its rules, publish through the node (every
//! producer's one path), or, for python-socketio's managers, act on this node's connections as
//! the Redis emitter bindings do.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use roomcast_amqp::{Handler, Message, Verdict};
use roomcast_broker::Claim;
use roomcast_redis::ChannelListener;

use super::rules::Rules;
use super::IngestCounters;
use crate::app::App;
use crate::node::PublishError;

/// How long a publish the broker could not take is waited for before it is tried again.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);
/// How long a message id stays claimed while its message is published: should the node die
/// meanwhile, its redelivery waits this long at most (the id is kept for the whole window
/// once published).
const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// Publishes each message's events by the source's rules.
pub(super) struct RulesHandler {
    pub(super) name: String,
    pub(super) rules: Arc<Rules>,
    pub(super) app: Weak<App>,
    pub(super) counters: Arc<IngestCounters>,
    /// How long a message id is remembered, `None`: ids are not looked at.
    pub(super) dedupe: Option<Duration>,
}

impl Handler for RulesHandler {
    fn handle<'a>(
        &'a self,
        message: Message<'a>,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        Box::pin(self.publish(message))
    }
}

impl RulesHandler {
    async fn publish(&self, message: Message<'_>) -> Verdict {
        let Some(app) = self.app.upgrade() else {
            return Verdict::Retry;
        };
        let publications =
            match self
                .rules
                .map(message.routing_key, message.body, SystemTime::now())
            {
                Ok(publications) => publications,
                Err(malformed) => {
                    self.counters.reject(malformed.reason());
                    return Verdict::Reject(malformed.to_string());
                }
            };
        let broker = app.node.broker().clone();
        // A message the broker delivers again (its acknowledgement was lost with a connection)
        // is published once, when its publisher gave it an id.
        let claimed = match (message.message_id, self.dedupe) {
            (Some(id), Some(window)) if !id.is_empty() => {
                // Keys of the HTTP API start with `http`: theirs and these never meet.
                let key = format!("amqp\u{1f}{}\u{1f}{id}", self.name);
                match broker.claim(&key, window.min(CLAIM_LEASE)).await {
                    Ok(Claim::First) => Some((key, window)),
                    Ok(Claim::Done(_)) => {
                        self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        return Verdict::Done;
                    }
                    // Another consumer holds it now: its outcome decides.
                    Ok(Claim::Pending) | Err(_) => return Verdict::Retry,
                }
            }
            _ => None,
        };
        let mut published = 0;
        for publication in publications {
            let mut wait = FIRST_RETRY;
            loop {
                match app.node.publish(publication.clone()).await {
                    Ok(_) => break,
                    // What was published already stays published: the rest is waited for
                    // here rather than the whole message tried again.
                    Err(PublishError::Broker(e)) => {
                        // Given back to the queue (the channel closed), another consumer
                        // may have it now: this one stops.
                        if app.shutting_down() || !message.still_held() {
                            self.let_go(&broker, claimed.as_ref()).await;
                            return Verdict::Retry;
                        }
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(source = %self.name, error = %e, "ingested publish not taken, retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(LONGEST_RETRY);
                    }
                    Err(refused) => {
                        self.let_go(&broker, claimed.as_ref()).await;
                        self.counters.reject("refused");
                        return Verdict::Reject(refused.to_string());
                    }
                }
            }
            published += 1;
        }
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        self.counters.events.fetch_add(published, Ordering::Relaxed);
        if let Some((key, window)) = &claimed {
            if let Err(e) = broker.settle(key, "published", *window).await {
                tracing::warn!(source = %self.name, error = %e, "message id not recorded");
            }
        }
        Verdict::Done
    }

    async fn let_go(
        &self,
        broker: &Arc<dyn roomcast_broker::Broker>,
        claimed: Option<&(String, Duration)>,
    ) {
        if let Some((key, _)) = claimed {
            let _ = broker.release(key).await;
        }
    }
}

/// Hands each message of python-socketio's AMQP managers to the emitter reader, which acts
/// on this node's connections; every node has a queue of its own.
pub(super) struct PresetHandler {
    pub(super) exchange: String,
    pub(super) listener: Arc<dyn ChannelListener>,
}

impl Handler for PresetHandler {
    fn handle<'a>(
        &'a self,
        message: Message<'a>,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        // What it cannot read is dropped and counted by the reader, as from Redis.
        self.listener.message(&self.exchange, message.body);
        Box::pin(std::future::ready(Verdict::Done))
    }
}
