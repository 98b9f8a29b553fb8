//! [`MemoryBroker`]: the single-node broker, the embedded default. It keeps a stream counter
//! for every room this node has members in, gives each publication its positions, and
//! delivers it at once through the node's [`Deliver`] sink, in publish order per room. Rooms
//! a [`HistoryPolicy`] names also keep their last events, members or not.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::broker::{
    BoxFuture, Broker, BrokerError, Claim, Deliver, History, Published, Recovering,
};
use crate::once::OnceKeys;
use crate::publication::{Position, Publication, RoomKey};
use crate::recovery::{LogLimits, RecoveryLog, Sessions};

/// How much of a room's stream is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// The most events kept (the oldest go first).
    pub max_events: usize,
    /// How long an event is kept.
    pub max_age: Duration,
}

/// Which rooms keep history, and how much.
pub trait HistoryPolicy: Send + Sync + std::fmt::Debug {
    /// The limits of `room`'s history, `None` when it keeps none.
    fn limits(&self, room: &RoomKey) -> Option<HistoryLimits>;
}

/// A room's kept events, oldest first.
#[derive(Debug)]
struct Kept {
    limits: HistoryLimits,
    events: VecDeque<(Instant, u64, Arc<Publication>)>,
}

impl Kept {
    /// Drops what is past the age bound at `now`.
    fn trim(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.events.front() {
            if now.saturating_duration_since(*at) <= self.limits.max_age {
                break;
            }
            self.events.pop_front();
        }
    }
}

/// Idempotency keys a single node holds within their window at once.
const MAX_ONCE_KEYS: usize = 100_000;

/// Stripes of the broker's locks: rooms rarely share one.
const STRIPES: usize = 64;

/// A room's stream: the next offset and the epoch its offsets belong to (a number; its
/// text made on the first publish, so that rooms nobody publishes to cost no string).
#[derive(Debug)]
struct Stream {
    next: u64,
    epoch: u64,
    epoch_text: Option<Arc<str>>,
    /// This node has members in the room.
    members: bool,
    /// Its kept events, for a room with history.
    kept: Option<Box<Kept>>,
}

impl Stream {
    fn new(epoch: u64, members: bool) -> Self {
        Stream {
            next: 1,
            epoch,
            epoch_text: None,
            members,
            kept: None,
        }
    }

    /// The room's current position (offset 0 before the first publish).
    fn current(&mut self, epoch_prefix: &str) -> Position {
        Position {
            offset: self.next - 1,
            epoch: self.epoch_text(epoch_prefix),
        }
    }

    fn epoch_text(&mut self, epoch_prefix: &str) -> Arc<str> {
        let epoch = self.epoch;
        self.epoch_text
            .get_or_insert_with(|| format!("{epoch_prefix}-{epoch:x}").into())
            .clone()
    }
}

/// The locks and streams of the rooms whose key hashes to one stripe.
#[derive(Debug, Default)]
struct Stripe {
    // Publish order: held from a position's assignment to the last queue push, so that racing
    // publishers reach every queue of a room in offset order. A std mutex: the delivery it
    // covers is synchronous.
    order: Mutex<()>,
    // A std mutex, and a leaf: held to read or update one entry, never while another lock is
    // taken after it or across an `.await`. `subscribe` runs under the room index's write
    // lock and publishers take it while holding an order lock and the index's read lock, so
    // nothing may be locked after it. Striped like the order, so that publishers to different
    // rooms do not meet on one lock.
    streams: Mutex<HashMap<RoomKey, Stream>>,
}

/// The in-process broker of one node.
///
/// A room has a stream while this node has members in it: created when the first member
/// joins, dropped when the last one leaves, so offsets restart at 1 under a new epoch, as a
/// client resuming after an empty room must learn. A room without members gets no position
/// (the publication's other targets are still served).
#[derive(Debug)]
pub struct MemoryBroker {
    sink: Arc<dyn Deliver>,
    stripes: Box<[Stripe]>,
    hasher: RandomState,
    epoch_prefix: String,
    epochs: AtomicU64,
    history: Option<Arc<dyn HistoryPolicy>>,
    /// Rooms keeping history, and the most there may be.
    kept_rooms: AtomicUsize,
    max_kept_rooms: usize,
    /// Events not kept because `max_kept_rooms` rooms already were.
    not_kept: AtomicU64,
    once: OnceKeys,
    /// The recovery log and sessions, when Socket.IO recovery is on.
    recovery: Option<(Arc<RecoveryLog>, Sessions)>,
}

/// A recovery on a single node: the log is read when it finishes, under the tenant's order.
struct LogRead {
    log: Arc<RecoveryLog>,
    tenant: String,
    ns: String,
    after: String,
    limit: usize,
    /// Whether the log continued the offset when the recovery began.
    complete: bool,
}

impl Recovering for LogRead {
    fn complete(&self) -> bool {
        self.complete
    }

    fn finish(self: Box<Self>, rejoin: &mut dyn FnMut(crate::recovery::Missed)) {
        // Publishers of the tenant hold this lock from its offset to its last delivery.
        let _order = self.log.order(&self.tenant);
        rejoin(
            self.log
                .after(&self.tenant, &self.ns, &self.after, self.limit),
        );
    }
}

impl MemoryBroker {
    /// A broker delivering to `sink`; `epoch_prefix` tells this process's epochs from
    /// earlier ones.
    pub fn new(sink: Arc<dyn Deliver>, epoch_prefix: impl Into<String>) -> Self {
        Self {
            sink,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            hasher: RandomState::new(),
            epoch_prefix: epoch_prefix.into(),
            epochs: AtomicU64::new(0),
            history: None,
            kept_rooms: AtomicUsize::new(0),
            max_kept_rooms: 0,
            not_kept: AtomicU64::new(0),
            once: OnceKeys::new(MAX_ONCE_KEYS),
            recovery: None,
        }
    }

    /// Logs the publications marked [`Publication::logged`] within `limits`, and keeps up
    /// to `max_sessions` recoverable sessions.
    pub fn with_recovery(mut self, limits: LogLimits, max_sessions: usize) -> Self {
        self.recovery = Some((
            Arc::new(RecoveryLog::new(limits, &self.epoch_prefix)),
            Sessions::new(max_sessions),
        ));
        self
    }

    /// Keeps the history `policy` asks for, in at most `max_rooms` rooms at once (events of
    /// further rooms are not kept, and counted). Rooms with history keep their stream, and
    /// their epoch, while nobody is in them, until their last event is past its age.
    pub fn with_history(mut self, policy: Arc<dyn HistoryPolicy>, max_rooms: usize) -> Self {
        self.history = Some(policy);
        self.max_kept_rooms = max_rooms;
        self
    }

    /// Rooms keeping history now, and events not kept because too many rooms were.
    pub fn history_counts(&self) -> (usize, u64) {
        (
            self.kept_rooms.load(Ordering::Relaxed),
            self.not_kept.load(Ordering::Relaxed),
        )
    }

    fn next_epoch(&self) -> u64 {
        self.epochs.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Drops kept events past their age, and the streams of rooms with nobody in them and
    /// nothing kept. Called now and then; reads trim as they go too.
    pub fn sweep(&self, now: Instant) {
        for stripe in 0..STRIPES {
            let mut streams = self.streams(stripe);
            let before = streams.len();
            streams.retain(|_, stream| {
                let Some(kept) = stream.kept.as_mut() else {
                    return true;
                };
                kept.trim(now);
                stream.members || !kept.events.is_empty()
            });
            let dropped = before - streams.len();
            if dropped > 0 {
                self.kept_rooms.fetch_sub(dropped, Ordering::Relaxed);
            }
        }
        if let Some((log, _)) = &self.recovery {
            log.sweep(now);
        }
    }

    fn streams(&self, stripe: usize) -> MutexGuard<'_, HashMap<RoomKey, Stream>> {
        // Single inserts, removes and increments: a poisoned lock is still consistent.
        self.stripes[stripe]
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn order(&self, stripe: usize) -> MutexGuard<'_, ()> {
        // The guarded value is `()`: a poisoned stripe is as good as a healthy one.
        self.stripes[stripe]
            .order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn stripe(&self, key: &RoomKey) -> usize {
        (self.hasher.hash_one(key) % STRIPES as u64) as usize
    }

    /// Rooms with a stream (this node has members in them).
    pub fn stream_count(&self) -> usize {
        (0..STRIPES).map(|s| self.streams(s).len()).sum()
    }

    /// Publishes synchronously: the whole work of [`Broker::publish`].
    pub fn publish_now(&self, mut publication: Publication) -> Published {
        let log = self.recovery.as_ref().map(|(log, _)| log);
        let tenant = publication.target.tenant_name().cloned();
        let (Some(log), Some(tenant), true) = (log, tenant, publication.logged) else {
            return self.publish_in_order(&publication);
        };
        // Offset and deliveries under the tenant's log order; rooms' orders after it.
        let _order = log.order(&tenant);
        let offset = log.next();
        publication.log_offset = Some(log.text(offset));
        let published = self.publish_in_order(&publication);
        publication.positions = Vec::new();
        log.append(&tenant, offset, Arc::new(publication));
        published
    }

    /// Publishes with the rooms' order locks held.
    fn publish_in_order(&self, publication: &Publication) -> Published {
        let rooms = publication.target.rooms().len();
        let mut positions: Vec<Option<Position>> = vec![None; rooms];
        // Volatile publications and those without rooms take no position.
        let first = if publication.volatile {
            None
        } else {
            publication.room_key(0)
        };
        let delivered = match first {
            None => self.sink.deliver(publication, &mut |_| None),
            // The common case, without the lists of the general one.
            Some(key) if rooms == 1 => {
                let stripe = self.stripe(&key);
                let _order = self.order(stripe);
                let keys = [(key, stripe)];
                let delivered = self.deliver(publication, &keys, &mut positions);
                self.keep(publication, &keys, &mut positions);
                delivered
            }
            Some(_) => {
                let keys: Vec<(RoomKey, usize)> = (0..rooms)
                    .filter_map(|i| publication.room_key(i))
                    .map(|key| {
                        let stripe = self.stripe(&key);
                        (key, stripe)
                    })
                    .collect();
                // Every stripe the rooms fall in, locked in ascending order (no two
                // publishers can wait on each other).
                let mut stripes: Vec<usize> = keys.iter().map(|(_, s)| *s).collect();
                stripes.sort_unstable();
                stripes.dedup();
                let _order: Vec<MutexGuard<'_, ()>> =
                    stripes.iter().map(|&s| self.order(s)).collect();
                let delivered = self.deliver(publication, &keys, &mut positions);
                self.keep(publication, &keys, &mut positions);
                delivered
            }
        };
        Published {
            positions,
            delivered,
        }
    }

    /// Delivers with the order locks of `keys` (each room's key and stripe) held, recording
    /// in `positions` the position each room is given.
    fn deliver(
        &self,
        publication: &Publication,
        keys: &[(RoomKey, usize)],
        positions: &mut [Option<Position>],
    ) -> usize {
        // Asked by the hub under the room index's lock, for rooms with members: their
        // streams exist (created and dropped under the index's write lock).
        let mut next = |i: usize| -> Option<Position> {
            let (key, stripe) = keys.get(i)?;
            let position = self.next_position(key, *stripe);
            if let Some(slot) = positions.get_mut(i) {
                slot.clone_from(&position);
            }
            position
        };
        self.sink.deliver(publication, &mut next)
    }

    /// The next position of a room's stream, `None` when it has none.
    fn next_position(&self, key: &RoomKey, stripe: usize) -> Option<Position> {
        let mut streams = self.streams(stripe);
        let s = streams.get_mut(key)?;
        let offset = s.next;
        s.next += 1;
        let epoch = s.epoch_text(&self.epoch_prefix);
        Some(Position { offset, epoch })
    }

    /// Keeps the publication in the history of its rooms that have one, with the order locks
    /// of `keys` held: rooms nobody is in get their position here.
    fn keep(
        &self,
        publication: &Publication,
        keys: &[(RoomKey, usize)],
        positions: &mut [Option<Position>],
    ) {
        let Some(policy) = &self.history else { return };
        let mut shared: Option<Arc<Publication>> = None;
        let now = Instant::now();
        for (i, (key, stripe)) in keys.iter().enumerate() {
            let Some(limits) = policy.limits(key) else {
                continue;
            };
            let full = self.kept_rooms.load(Ordering::Relaxed) >= self.max_kept_rooms;
            let mut streams = self.streams(*stripe);
            let stream = match streams.get_mut(key) {
                Some(stream) if stream.kept.is_some() || !full => stream,
                None if !full => {
                    // The room's history starts with this event.
                    streams
                        .entry(key.clone())
                        .or_insert(Stream::new(self.next_epoch(), false))
                }
                _ => {
                    self.not_kept.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let Some(slot) = positions.get_mut(i) else {
                continue;
            };
            let offset = match slot {
                Some(position) => position.offset,
                None => {
                    let offset = stream.next;
                    stream.next += 1;
                    *slot = Some(Position {
                        offset,
                        epoch: stream.epoch_text(&self.epoch_prefix),
                    });
                    offset
                }
            };
            let kept = stream.kept.get_or_insert_with(|| {
                self.kept_rooms.fetch_add(1, Ordering::Relaxed);
                Box::new(Kept {
                    limits,
                    events: VecDeque::new(),
                })
            });
            kept.limits = limits;
            kept.trim(now);
            while kept.events.len() >= limits.max_events.max(1) {
                kept.events.pop_front();
            }
            if limits.max_events > 0 {
                let publication = shared
                    .get_or_insert_with(|| {
                        let mut p = publication.clone();
                        p.positions = Vec::new();
                        Arc::new(p)
                    })
                    .clone();
                kept.events.push_back((now, offset, publication));
            }
        }
    }

    /// The history of `room` after `since`, as [`Broker::history`] answers it.
    fn read_history(&self, room: &RoomKey, since: Option<&Position>, limit: usize) -> History {
        let mut streams = self.streams(self.stripe(room));
        let Some(stream) = streams.get_mut(room) else {
            return History {
                events: Vec::new(),
                current: None,
                complete: false,
            };
        };
        let current = stream.current(&self.epoch_prefix);
        let Some(kept) = stream.kept.as_mut() else {
            return History {
                events: Vec::new(),
                complete: since.is_some_and(|s| History::continues(s, &current, None)),
                current: Some(current),
            };
        };
        kept.trim(Instant::now());
        let after = match since {
            Some(s) if s.epoch == current.epoch && s.offset <= current.offset => s.offset,
            // Another epoch, or a position the room never had: nothing continues it.
            Some(_) => {
                return History {
                    events: Vec::new(),
                    current: Some(current),
                    complete: false,
                }
            }
            None => 0,
        };
        let first_kept = kept.events.front().map(|e| e.1);
        let complete = since.is_some_and(|s| History::continues(s, &current, first_kept));
        let events = kept
            .events
            .iter()
            .filter(|(_, offset, _)| *offset > after)
            .take(limit)
            .map(|(_, offset, p)| {
                (
                    Position {
                        offset: *offset,
                        epoch: current.epoch.clone(),
                    },
                    p.clone(),
                )
            })
            .collect();
        History {
            events,
            current: Some(current),
            complete,
        }
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<Published, BrokerError>> {
        let published = self.publish_now(publication);
        Box::pin(std::future::ready(Ok(published)))
    }

    fn position(&self, room: &RoomKey) -> Option<Position> {
        let mut streams = self.streams(self.stripe(room));
        streams
            .get_mut(room)
            .map(|stream| stream.current(&self.epoch_prefix))
    }

    fn claim(&self, key: &str, window: Duration) -> BoxFuture<'_, Result<Claim, BrokerError>> {
        Box::pin(std::future::ready(self.once.claim(key, window)))
    }

    fn settle(
        &self,
        key: &str,
        result: &str,
        _window: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.once.settle(key, result);
        Box::pin(std::future::ready(Ok(())))
    }

    fn release(&self, key: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.once.release(key);
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe(&self, room: &RoomKey) {
        let mut streams = self.streams(self.stripe(room));
        match streams.get_mut(room) {
            // A room that kept its history while nobody was in it keeps its stream.
            Some(stream) => stream.members = true,
            None => {
                streams.insert(room.clone(), Stream::new(self.next_epoch(), true));
            }
        }
    }

    fn unsubscribe(&self, room: &RoomKey) {
        let mut streams = self.streams(self.stripe(room));
        let Some(stream) = streams.get_mut(room) else {
            return;
        };
        if stream.kept.as_ref().is_some_and(|k| !k.events.is_empty()) {
            stream.members = false;
        } else {
            if stream.kept.is_some() {
                self.kept_rooms.fetch_sub(1, Ordering::Relaxed);
            }
            streams.remove(room);
        }
    }

    fn history(
        &self,
        room: &RoomKey,
        since: Option<Position>,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        let answer = match self.history {
            Some(_) => Ok(self.read_history(room, since.as_ref(), limit)),
            None => Err(BrokerError::HistoryUnsupported),
        };
        Box::pin(std::future::ready(answer))
    }

    fn join_since(
        &self,
        room: &RoomKey,
        since: &Position,
        limit: usize,
        join: &mut dyn FnMut(Result<History, BrokerError>),
    ) {
        // Without kept events a room still resumes at its current position (nothing missed).
        // Publishers of the room hold this lock from its position to its last delivery.
        let _order = self.order(self.stripe(room));
        join(Ok(self.read_history(room, Some(since), limit)));
    }

    fn log_position(
        &self,
        _tenant: &str,
        _ns: &str,
    ) -> BoxFuture<'_, Result<Arc<str>, BrokerError>> {
        let answer = match &self.recovery {
            Some((log, _)) => Ok(log.position()),
            None => Err(BrokerError::HistoryUnsupported),
        };
        Box::pin(std::future::ready(answer))
    }

    fn recover(
        &self,
        tenant: &str,
        ns: &str,
        after: &str,
        limit: usize,
    ) -> BoxFuture<'_, Result<Box<dyn Recovering>, BrokerError>> {
        let answer = match &self.recovery {
            Some((log, _)) => Ok(Box::new(LogRead {
                log: log.clone(),
                tenant: tenant.to_owned(),
                ns: ns.to_owned(),
                after: after.to_owned(),
                limit,
                complete: log.continues(tenant, ns, after, limit),
            }) as Box<dyn Recovering>),
            None => Err(BrokerError::HistoryUnsupported),
        };
        Box::pin(std::future::ready(answer))
    }

    fn put_session(
        &self,
        pid: &str,
        session: String,
        _owner: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        let answer = match &self.recovery {
            Some((_, sessions)) => sessions
                .put(pid, session, ttl)
                .map_err(|e| BrokerError::Unavailable(e.to_string())),
            None => Err(BrokerError::HistoryUnsupported),
        };
        Box::pin(std::future::ready(answer))
    }

    fn take_session(&self, pid: &str) -> BoxFuture<'_, Result<Option<String>, BrokerError>> {
        let answer = match &self.recovery {
            Some((_, sessions)) => Ok(sessions.take(pid)),
            None => Err(BrokerError::HistoryUnsupported),
        };
        Box::pin(std::future::ready(answer))
    }

    fn touch_sessions(
        &self,
        pids: Vec<String>,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        if let Some((_, sessions)) = &self.recovery {
            sessions.touch(&pids, ttl);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests;
