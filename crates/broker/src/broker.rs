//! The [`Broker`] trait between deciding a publish and delivering it, and the [`Deliver`] sink
//! a broker calls back on each node.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::publication::{Position, Publication, RoomKey};
use crate::recovery::Missed;

/// A resume of one room under way ([`Broker::resume`]): the room's history after the
/// client's position has been read; what is delivered meanwhile is added when it finishes.
pub trait Resuming: Send {
    /// Calls `join` with the room's history after the position, at a moment when nothing
    /// published to the room can be delivered on this node: what `join` queues and what is
    /// delivered after it (once it has joined the room) meet with no gap and no duplicate.
    fn finish(self: Box<Self>, join: &mut dyn FnMut(Result<History, BrokerError>));
}

/// A recovery under way ([`Broker::recover`]): what was missed has been read; what is
/// delivered meanwhile is added when it finishes.
pub trait Recovering: Send {
    /// Whether what was read continues the client's offset (within the limit): the session
    /// can be recovered, unless what arrives before [`finish`](Self::finish) breaks it.
    fn complete(&self) -> bool;

    /// Calls `rejoin` with everything logged after the client's offset, at a moment when
    /// nothing logged later can be delivered on this node: what `rejoin` queues and what is
    /// delivered after it (once it has joined the rooms) meet with no gap and no duplicate.
    fn finish(self: Box<Self>, rejoin: &mut dyn FnMut(Missed));
}

/// A boxed future, `Send`, as the trait's asynchronous methods return (dyn-compatible).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a publish did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// The position of each targeted room, in the publication's order (`None`: no stream).
    pub positions: Vec<Option<Position>>,
    /// Frames queued on this node by the local delivery the publish made (0 when delivery
    /// happens later, from a broker's subscription).
    pub delivered: usize,
}

/// A room's kept events after a position, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The events, each with its position in the room.
    pub events: Vec<(Position, Arc<Publication>)>,
    /// The room's current position (the last offset given, and the epoch); `None` when the
    /// room has no stream.
    pub current: Option<Position>,
    /// Whether `events` continue the position asked for with nothing missing before them:
    /// the same epoch, and nothing trimmed in between. (At most `limit` were returned: the
    /// rest, up to `current`, follow the last one.)
    pub complete: bool,
}

/// Who holds an idempotency key ([`Broker::claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller: the first with this key in its window; it publishes, then
    /// [`settle`](Broker::settle)s (or [`release`](Broker::release)s on failure).
    First,
    /// A publish with this key is under way elsewhere (another request, another node).
    Pending,
    /// A publish with this key was made within the window: its result.
    Done(String),
}

impl History {
    /// Whether kept events whose oldest has offset `first_kept` (`None`: none kept) continue
    /// `since` with nothing missing before them, the room being at `current`: the same epoch,
    /// a position the room had, and nothing trimmed in between.
    pub fn continues(since: &Position, current: &Position, first_kept: Option<u64>) -> bool {
        since.epoch == current.epoch
            && since.offset <= current.offset
            && first_kept.unwrap_or(current.offset + 1) <= since.offset + 1
    }
}

/// How a broker is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStatus {
    /// `memory` or `redis`.
    pub kind: &'static str,
    /// Why it is degraded (publications reach this node only), `None` when it is not.
    pub degraded: Option<String>,
    /// Publications delivered on this node only because the other nodes could not be reached.
    pub local_only: u64,
    /// Publications refused because the broker failed while taking them (they may have
    /// reached some nodes: a retry is the caller's to decide).
    pub failed: u64,
    /// Publications from other nodes lost because delivery here fell behind.
    pub lost: u64,
    /// Messages on the broker's channels that could not be decoded.
    pub undecodable: u64,
    /// Messages received from the broker's channels.
    pub received: u64,
}

/// Why a broker call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker does not keep history.
    #[error("history is not kept by this broker")]
    HistoryUnsupported,
    /// The broker cannot be reached; the publish reached this node's members only.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Local delivery, called by a broker on each node for every publication that reaches it.
/// Implemented by the node's hub.
pub trait Deliver: Send + Sync + Debug {
    /// Queues the publication to this node's matching connections; returns the frames queued.
    /// `position(i)` gives the stream position of its `i`th room: the hub calls it while it
    /// collects that room's members, under the room index's lock, and only when the room has
    /// members here, so that a position and the members it reaches belong to one moment.
    fn deliver(
        &self,
        publication: &Publication,
        position: &mut dyn FnMut(usize) -> Option<Position>,
    ) -> usize;
}

/// Between deciding a publish and delivering it: assigns stream positions, reaches every node
/// that serves the targets (each calls its [`Deliver`] sink), and keeps history where it can.
///
/// A broker delivers the publications of one room in offset order on every node.
pub trait Broker: Send + Sync + Debug {
    /// Publishes: gives each targeted room its position and has every node deliver it.
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<Published, BrokerError>>;

    /// This node now has a member in `room` (its first). Called under the room index's lock,
    /// so calls for one room arrive in the order of the transitions: it must not block.
    fn subscribe(&self, room: &RoomKey);

    /// This node's last member left `room`. Same rules as [`subscribe`](Self::subscribe).
    fn unsubscribe(&self, room: &RoomKey);

    /// This node now has a connection (or a room) of `tenant`, its first. Same rules as
    /// [`subscribe`](Self::subscribe). Tenant-wide and user publications need it.
    fn tenant_joined(&self, _tenant: &str) {}

    /// This node no longer has any connection or room of `tenant`.
    fn tenant_left(&self, _tenant: &str) {}

    /// The current position of `room`'s stream on this node, when the broker can tell at once
    /// (the memory broker; others answer `None`).
    fn position(&self, _room: &RoomKey) -> Option<Position> {
        None
    }

    /// The current position of `room`'s stream, asking the broker's store when it is not at
    /// hand (a cluster's counter in Redis); `None` when the room has no stream.
    fn current(&self, room: &RoomKey) -> BoxFuture<'_, Option<Position>> {
        Box::pin(std::future::ready(self.position(room)))
    }

    /// Claims idempotency `key` for `window`: the first caller in the window gets
    /// [`Claim::First`]; later ones see it pending, then its settled result. Across the
    /// cluster for a cluster's broker.
    fn claim(&self, key: &str, window: Duration) -> BoxFuture<'_, Result<Claim, BrokerError>>;

    /// Records the result of the publish `key` was claimed for, for the rest of its window.
    fn settle(
        &self,
        key: &str,
        result: &str,
        window: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Lets go of a claimed `key` whose publish failed, so that a retry publishes.
    fn release(&self, key: &str) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Waits until every subscription asked for so far ([`subscribe`](Self::subscribe),
    /// [`tenant_joined`](Self::tenant_joined)) is in effect, within the broker's own
    /// deadline; `None` when they already are (always, for a broker that delivers in
    /// process). A connection's answer to a join waits for it, so that whatever is published
    /// once the client knows it joined reaches it.
    fn subscribed(&self) -> Option<BoxFuture<'static, ()>> {
        None
    }

    /// How the broker is doing, for health checks and metrics.
    fn status(&self) -> BrokerStatus {
        BrokerStatus {
            kind: "memory",
            ..BrokerStatus::default()
        }
    }

    /// The publications of `room` after `since` (all kept ones when `None`), at most `limit`.
    /// Brokers that keep none answer [`BrokerError::HistoryUnsupported`].
    fn history(
        &self,
        _room: &RoomKey,
        _since: Option<Position>,
        _limit: usize,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        Box::pin(std::future::ready(Err(BrokerError::HistoryUnsupported)))
    }

    /// The offset of the last publication logged for `tenant`'s namespace `ns` (its recovery
    /// log): a connection's position when it connects, before it has received anything.
    fn log_position(
        &self,
        _tenant: &str,
        _ns: &str,
    ) -> BoxFuture<'_, Result<Arc<str>, BrokerError>> {
        Box::pin(std::future::ready(Err(BrokerError::HistoryUnsupported)))
    }

    /// Starts recovering what was logged for `tenant`'s namespace `ns` after offset `after`
    /// (at most `limit` publications); [`Recovering::finish`] hands them over.
    fn recover(
        &self,
        _tenant: &str,
        _ns: &str,
        _after: &str,
        _limit: usize,
    ) -> BoxFuture<'_, Result<Box<dyn Recovering>, BrokerError>> {
        Box::pin(std::future::ready(Err(BrokerError::HistoryUnsupported)))
    }

    /// Keeps a recoverable session (opaque text) under `pid` for `ttl`, across the cluster
    /// for a cluster's broker, written by the session's connection `owner` (a [`ConnId`]): a
    /// cluster's broker leaves alone a session a newer connection of it wrote meanwhile.
    ///
    /// [`ConnId`]: crate::ConnId
    fn put_session(
        &self,
        _pid: &str,
        _session: String,
        _owner: u64,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Err(BrokerError::HistoryUnsupported)))
    }

    /// Ends the session under `pid` for good, as its connection `owner` ended it (same rule
    /// as [`put_session`](Self::put_session)).
    fn end_session(&self, pid: &str, _owner: u64) -> BoxFuture<'_, Result<(), BrokerError>> {
        let taken = self.take_session(pid);
        Box::pin(async move { taken.await.map(drop) })
    }

    /// Takes the session kept under `pid`: `None` when there is none (never kept, expired,
    /// or taken already).
    fn take_session(&self, _pid: &str) -> BoxFuture<'_, Result<Option<String>, BrokerError>> {
        Box::pin(std::future::ready(Err(BrokerError::HistoryUnsupported)))
    }

    /// Extends the sessions of `pids` (those of connected clients) to `ttl` from now.
    fn touch_sessions(
        &self,
        _pids: Vec<String>,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Whether [`join_since`](Self::join_since) has the history at hand (in process); when
    /// it has not (a cluster's broker), a resume goes through [`resume`](Self::resume).
    fn history_at_hand(&self) -> bool {
        true
    }

    /// Starts resuming `room` after `since` (at most `limit` events) for a broker whose
    /// history is not at hand; [`Resuming::finish`] hands the history over. `None`: the
    /// broker resumes with [`join_since`](Self::join_since).
    fn resume(
        &self,
        _room: &RoomKey,
        _since: &Position,
        _limit: usize,
    ) -> Option<BoxFuture<'_, Result<Box<dyn Resuming>, BrokerError>>> {
        None
    }

    /// Calls `join` with the history of `room` after `since` (at most `limit` events) while
    /// nothing published to the room can be delivered on this node: what `join` queues (the
    /// missed events) and what is delivered after it (once `join` has made the connection a
    /// member) meet with no gap and no duplicate. Brokers that keep no history call it with
    /// [`BrokerError::HistoryUnsupported`].
    fn join_since(
        &self,
        _room: &RoomKey,
        _since: &Position,
        _limit: usize,
        join: &mut dyn FnMut(Result<History, BrokerError>),
    ) {
        join(Err(BrokerError::HistoryUnsupported));
    }
}
