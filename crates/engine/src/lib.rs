//! The Roomcast engine: everything below the application protocols.
//!
//! - [`ws`]: a sans-IO RFC 6455 server implementation (handshake check, frame codec,
//!   connection state machine with heartbeat and close handshake);
//! - [`queue`]: the bounded per-connection outbound queue;
//! - [`rooms`]: the room index keyed by (tenant, namespace, room): pure membership, which
//!   reports the first member in and the last out of each room;
//! - [`driver`]: the thin tokio glue that runs one WebSocket connection against a
//!   [`driver::Handler`] (its future, deadlines and write path in files of their own);
//! - [`lane`]: the async command lane, where a handler's commands that must wait run,
//!   bounded per connection and per node, with a timeout;
//! - [`upgrade`]: the HTTP/1.1 upgrade over hyper that hands the socket to the driver;
//! - [`body`]: HTTP request bodies read whole, under a size limit, a deadline and a memory
//!   budget shared by every body being read.

pub mod body;
pub mod driver;
pub mod lane;
pub mod queue;
pub mod rooms;
pub mod upgrade;
pub mod ws;

pub use lane::{Lane, LaneError, LaneLimits, Submitted};
pub use queue::{CloseRequest, OutQueue, Outbound, PushError, QueueHold, QueueLimits};
pub use rooms::{Closing, ConnId, Control, Member, RoomIndex, RoomKey, Tracked, WireFormat};
