//! [`NodeRelay`]: the Socket.IO endpoint's [`Relay`], so that a Socket.IO client's relay is a
//! publication like any other: through [`Node::publish`], to native and Socket.IO members of
//! the room, counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use roomcast_broker::Publication;
use roomcast_socketio::Relay;

use super::Node;

/// Socket.IO relays go through the node's publish path: they reach native and Socket.IO
/// members alike, on every node, and are counted as publishes.
pub(crate) struct NodeRelay(pub(crate) Weak<Node>);

impl Relay for NodeRelay {
    fn relay(&self, publication: Publication) -> usize {
        let Some(node) = self.0.upgrade() else {
            return 0;
        };
        let delivered = Arc::new(AtomicUsize::new(0));
        let count = delivered.clone();
        let started = node.publish_detached(publication, move |result| match result {
            Ok(published) => count.store(published.delivered, Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "relay refused"),
        });
        if let Err(e) = started {
            tracing::debug!(error = %e, "relay refused");
        }
        delivered.load(Ordering::Relaxed)
    }
}
