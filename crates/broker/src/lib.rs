//! The publish seam of Roomcast, shared by the server and by any broker implementation.
//!
//! A producer (the HTTP API, a client publish, a Socket.IO relay, an ingestion path) builds a
//! [`Publication`] and hands it to the node, which hands it to a [`Broker`]. The broker gives
//! each targeted room its stream [`Position`] and calls a [`Deliver`] sink back on every node
//! that serves the rooms; on one node, [`MemoryBroker`] does both in process. The room index
//! tells the broker when this node's first member joins a room and its last member leaves
//! ([`Broker::subscribe`], [`Broker::unsubscribe`]), so a node only hears of rooms it serves.
//!
//! This crate depends on no other Roomcast crate, so a broker living in a crate of its own
//! (Redis, for example) needs only this one.

mod broker;
mod memory;
mod once;
mod publication;
mod recovery;

pub use broker::{
    BoxFuture, Broker, BrokerError, BrokerStatus, Claim, Deliver, History, Published, Recovering,
    Resuming,
};
pub use memory::{HistoryLimits, HistoryPolicy, MemoryBroker};
pub use once::OnceKeys;
pub use publication::{ConnId, Payload, Position, Publication, RoomKey, Target};
pub use recovery::{LogLimits, Missed, RecoveryLog, Sessions, SessionsFull};
