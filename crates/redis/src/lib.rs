//! Roomcast's cluster over Redis.
//!
//! - [`RedisBroker`]: the [`Broker`](roomcast_broker::Broker) of a cluster node. A publish runs
//!   one script that gives every targeted room its next offset (one sequence per room across
//!   the cluster) and publishes the event on its tenant's channel; every node subscribed to
//!   that channel, the publishing one included, delivers it to its own members, so each room's
//!   events reach every node in offset order.
//! - [`Registry`]: the node registry (heartbeats with a TTL) and requests to every live node,
//!   which the HTTP API uses to see and reach the whole cluster.
//! - [`emitter`]: the messages that Socket.IO emitters publish through Redis
//!   (`@socket.io/redis-emitter`, python-socketio's Redis manager), decoded into publications
//!   and commands.
//!
//! It depends on `roomcast-broker` alone.

mod broker;
mod connect;
pub mod emitter;
mod error;
mod keys;
mod options;
mod presence;
mod registry;
mod resubscribe;

pub use broker::{ChannelListener, RedisBroker};
pub use error::RedisError;
pub use keys::Keys;
pub use options::{ChannelMode, ClusterOptions, OptionsError};
pub use presence::PresenceSets;
pub use registry::{NodeAnswer, NodeInfo, Registry, RequestHandler, TIMED_OUT};
