//! The node: the one publish path of the server. Every producer (the HTTP API, native client
//! publishes, Socket.IO relays, and ingestion paths) builds a [`Publication`] and calls
//! [`Node::publish`], which checks it, hands it to the [`Broker`], and counts it. The broker
//! assigns stream positions and calls the [`Hub`] back to deliver on this node.
//!
//! ```text
//! producer -> Node::publish -> Broker::publish -> (positions) -> Hub::deliver -> queues -> writer
//! ```

mod hub;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, Weak};

use std::task::{Context, Poll, Waker};

use roomcast_broker::{
    BoxFuture, Broker, BrokerError, MemoryBroker, Payload, Published, RoomKey, Target,
};
use roomcast_engine::rooms::{RoomIndex, Transitions};
use roomcast_engine::{LaneLimits, QueueHold, QueueLimits};

pub(crate) use hub::native_event;
pub use hub::Hub;
pub use roomcast_broker::Publication;

use crate::metrics::Metrics;
use crate::proto::{self, MAX_DATA_DEPTH};

/// Why a publication was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// More rooms and users than `limits.max_publish_targets`.
    #[error("more than {0} rooms and users in one publish")]
    TooManyTargets(usize),
    /// The data nests deeper than subscribers accept.
    #[error("data nests deeper than {MAX_DATA_DEPTH} levels")]
    TooDeep,
    /// The broker failed; the publication may have reached this node only.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What [`Node::attempt`] did.
#[must_use]
pub enum Attempt {
    /// The publish completed.
    Done(Result<Published, PublishError>),
    /// The broker has to be waited for: await this (on the async lane).
    Waiting(BoxFuture<'static, Result<Published, PublishError>>),
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Done(result) => f.debug_tuple("Done").field(result).finish(),
            Attempt::Waiting(_) => f.write_str("Waiting"),
        }
    }
}

/// Bounds every publication is checked against.
#[derive(Debug, Clone)]
pub struct PublishLimits {
    /// Most rooms plus users in one publication.
    pub max_targets: usize,
    /// The async lane's bounds.
    pub lane: Arc<LaneLimits>,
    /// Whether publications go in their tenant namespace's recovery log (Socket.IO
    /// connection state recovery is on): those that are not volatile and not platform-wide.
    pub logged: bool,
}

/// One server's publish path and local delivery.
#[derive(Debug)]
pub struct Node {
    hub: Arc<Hub>,
    broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
    limits: PublishLimits,
    // Kept alive here: the room index only holds it weakly.
    subscriptions: Arc<Subscriptions>,
}

/// Tells the broker which rooms this node serves, from the index's transitions, and another
/// observer of rooms' first and last members, once one is set (lifecycle events).
struct Subscriptions(Arc<dyn Broker>, OnceLock<Arc<dyn Transitions>>);

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Subscriptions")
            .field(&self.0)
            .finish_non_exhaustive()
    }
}

impl Transitions for Subscriptions {
    fn first_in(&self, room: &RoomKey) {
        self.0.subscribe(room);
        if let Some(also) = self.1.get() {
            also.first_in(room);
        }
    }

    fn last_out(&self, room: &RoomKey) {
        self.0.unsubscribe(room);
        if let Some(also) = self.1.get() {
            also.last_out(room);
        }
    }

    fn tenant_first(&self, tenant: &str) {
        self.0.tenant_joined(tenant);
    }

    fn tenant_last(&self, tenant: &str) {
        self.0.tenant_left(tenant);
    }
}

impl Node {
    /// A single node over `index`, with the in-memory broker (the embedded default).
    pub fn in_memory(
        index: Arc<RoomIndex>,
        queue_limits: QueueLimits,
        epoch_prefix: String,
        metrics: Arc<Metrics>,
        limits: PublishLimits,
    ) -> Arc<Node> {
        let hub = Arc::new(Hub::new(index, queue_limits, metrics.clone()));
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new(hub.clone(), epoch_prefix));
        Self::with_broker(hub, broker, metrics, limits)
    }

    /// A node delivering through `hub`, publishing through `broker` (which must deliver to
    /// `hub`).
    pub fn with_broker(
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
        metrics: Arc<Metrics>,
        limits: PublishLimits,
    ) -> Arc<Node> {
        let subscriptions = Arc::new(Subscriptions(broker.clone(), OnceLock::new()));
        let weak: Weak<dyn Transitions> = Arc::downgrade(&subscriptions) as Weak<dyn Transitions>;
        hub.index().observe(weak);
        Arc::new(Node {
            hub,
            broker,
            metrics,
            limits,
            subscriptions,
        })
    }

    /// Tells `observer` too of rooms' first and last members on this node (once).
    pub fn also_observe(&self, observer: Arc<dyn Transitions>) {
        let _ = self.subscriptions.1.set(observer);
    }

    /// Local delivery.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The broker publications go through.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Ends `hold` once the broker's subscriptions are in effect: at once on one node, when
    /// a cluster node's subscriptions are too, or later from a task of its own. A connection
    /// holds its output from before a join until then, so that the client hears of the join
    /// (welcome, `CONNECT`, a reply or an ack) only once what is published to it reaches it.
    pub fn release_when_subscribed(&self, hold: QueueHold) {
        if let Some(subscribed) = self.broker.subscribed() {
            tokio::spawn(async move {
                subscribed.await;
                drop(hold);
            });
        }
    }

    /// Checks a publication, removes repeated targets, and publishes it through the broker.
    pub async fn publish(&self, mut publication: Publication) -> Result<Published, PublishError> {
        self.check(&mut publication)?;
        publication.logged = self.limits.logged
            && !publication.volatile
            && !matches!(publication.target, Target::Platform);
        // Platform-wide publishes are labelled with the empty string, which no tenant name
        // (1 to 256 bytes) can be.
        self.metrics
            .published(publication.target.tenant().unwrap_or_default());
        Ok(self.broker.publish(publication).await?)
    }

    /// Publishes from a handler, which cannot wait: the publish is polled once, and what it
    /// did is returned when the broker completed at once (the memory broker always does);
    /// otherwise the rest of it, for the caller's async lane to await.
    pub fn attempt(self: &Arc<Self>, publication: Publication) -> Attempt {
        let node = self.clone();
        let mut fut: BoxFuture<'static, Result<Published, PublishError>> =
            Box::pin(async move { node.publish(publication).await });
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => Attempt::Done(result),
            Poll::Pending => Attempt::Waiting(fut),
        }
    }

    /// Target count, de-duplication (linear) and data depth.
    fn check(&self, publication: &mut Publication) -> Result<(), PublishError> {
        if let Target::Tenant { rooms, users, .. } = &mut publication.target {
            if rooms.len() + users.len() > self.limits.max_targets {
                return Err(PublishError::TooManyTargets(self.limits.max_targets));
            }
            dedup(rooms);
            dedup(users);
        }
        let json = match &publication.payload {
            Payload::Json(raw) => raw.get(),
            Payload::Args { array, .. } => array.get(),
        };
        // An argument array adds one level of its own.
        let extra = usize::from(matches!(publication.payload, Payload::Args { .. }));
        if proto::depth(json) > MAX_DATA_DEPTH + extra {
            return Err(PublishError::TooDeep);
        }
        Ok(())
    }
}

/// Removes repeated names, keeping the first of each, in linear time.
fn dedup(names: &mut Vec<Arc<str>>) {
    if names.len() < 2 {
        return;
    }
    let mut seen: HashSet<Arc<str>> = HashSet::with_capacity(names.len());
    names.retain(|n| seen.insert(n.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    /// Polls a future once: the memory broker completes at once.
    fn now_or_never<F: Future>(fut: F) -> Option<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(fut).poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    fn node() -> Arc<Node> {
        Node::in_memory(
            Arc::new(RoomIndex::new(8)),
            QueueLimits::default(),
            "e".into(),
            Arc::new(Metrics::default()),
            PublishLimits {
                max_targets: 3,
                lane: LaneLimits::new(4, 4, Duration::from_secs(1)),
                logged: false,
            },
        )
    }

    fn to(rooms: &[&str], data: &str) -> Publication {
        Publication::new(
            "/",
            Target::Tenant {
                tenant: "t".into(),
                rooms: rooms.iter().map(|r| (*r).into()).collect(),
                users: Vec::new(),
            },
            "e",
            Payload::Json(RawValue::from_string(data.to_owned()).unwrap()),
        )
    }

    #[test]
    fn repeated_rooms_count_once_and_bounds_hold() {
        let node = node();
        let published = now_or_never(node.publish(to(&["a", "b", "a"], "1")))
            .unwrap()
            .unwrap();
        assert_eq!(published.positions.len(), 2);
        let err = now_or_never(node.publish(to(&["a", "b", "c", "d"], "1"))).unwrap();
        assert_eq!(err, Err(PublishError::TooManyTargets(3)));
    }

    #[test]
    fn data_depth_is_checked() {
        let node = node();
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let err = now_or_never(node.publish(to(&["a"], &deep))).unwrap();
        assert_eq!(err, Err(PublishError::TooDeep));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(now_or_never(node.publish(to(&["a"], &ok))).unwrap().is_ok());
    }

    #[test]
    fn dedup_is_linear_and_keeps_order() {
        let mut names: Vec<Arc<str>> = (0..60_000)
            .map(|i| format!("r{}", i % 30_000).into())
            .collect();
        dedup(&mut names);
        assert_eq!(names.len(), 30_000);
        assert_eq!(&*names[1], "r1");
    }
}
