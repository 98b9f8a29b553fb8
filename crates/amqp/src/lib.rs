//! Consuming a RabbitMQ queue for Roomcast's ingestion: [`consume`] connects to the broker
//! (AMQP 0.9.1, with `lapin`), declares the exchange, the queue, its bindings and its
//! dead-letter exchange and queue, and hands each message to a [`Handler`], in order, one at a
//! time. The handler's [`Verdict`] decides the message's fate:
//!
//! - [`Verdict::Done`]: acknowledged; the broker forgets it.
//! - [`Verdict::Reject`]: rejected without requeue; the broker moves it to the dead-letter
//!   queue, where an operator can read why (`x-death` header) and replay it. A malformed message
//!   never blocks the queue.
//! - [`Verdict::Retry`]: not acknowledged; handled again after a backoff, while the
//!   connection lives. What it could not reach (another part of the cluster, say) is waited
//!   for with the message kept in the queue, not given up on.
//!
//! When the connection or the channel fails, every message not yet acknowledged returns to the
//! queue (the broker redelivers it, to this consumer or to another one of the same queue); the
//! consumer reconnects with an exponential backoff, declares everything again and resumes.
//! Nothing acknowledged is lost; a message whose acknowledgement was in flight when the
//! connection failed is delivered again (`redelivered`), which the handler may detect with the
//! message id.
//!
//! Several consumers of one named queue compete: each message goes to one of them. A source
//! without a queue name gets an exclusive queue of its own, named by the broker, so every
//! consumer receives every message (a fanout).

mod consume;
mod source;
mod status;

pub use consume::{consume, Handler, Message, Verdict};
pub use source::{check_url, redact, ExchangeKind, Source, SourceError};
pub use status::{SourceStatus, StatusCounts};
