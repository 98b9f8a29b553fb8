//! Recovery and resume in cluster mode. Socket.IO connection state recovery: each tenant namespace's recovery log
//! is a Redis stream in the tenant's slot (the publish script appends to it, trimmed by count
//! and age); the ids Redis gives are the offsets clients keep. Sessions are keys of their own,
//! so a client recovers through any node, after the death of the one it was on.
//!
//! A native client resuming a room reads the room's stream (or only its counter, for a room
//! without history) instead.
//!
//! Either reads the log or stream after the client's position, then finishes on this node
//! between two deliveries: what was delivered here meanwhile is added (each node delivers a
//! tenant's publications in order, from one task), so the replay and the live events meet
//! with no gap and no duplicate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::interfaces::HashesInterface;
use fred::interfaces::{KeysInterface, StreamsInterface};
use fred::types::Expiration;
use roomcast_broker::{
    Broker, BrokerError, History, Missed, Position, Publication, Recovering, Resuming, RoomKey,
};

use super::{unavailable, RedisBroker};

/// A stream id (`<ms>-<seq>`) as numbers, for ordering.
fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Recoveries under way on this node, and the lock deliveries take.
#[derive(Debug, Default)]
pub(super) struct Restorers {
    // Held by the delivering task around each delivery, and by a recovery while it
    // finishes: a recovery finishes between two deliveries.
    delivering: Mutex<()>,
    waiting: Mutex<Vec<Arc<Restorer>>>,
    /// Resumes under way, one room each.
    resuming: Mutex<Vec<Arc<RoomRestorer>>>,
    /// Recoveries and resumes under way.
    count: AtomicUsize,
    /// The last log id delivered per tenant namespace: where a new connection starts.
    last: Mutex<HashMap<TenantNs, Arc<str>>>,
}

/// A tenant and a namespace.
type TenantNs = (Arc<str>, Arc<str>);

/// Tenant namespaces whose last delivered id is remembered; past it the memory restarts.
const MAX_LAST: usize = 100_000;

/// One resume's publications of its room delivered here since it read the stream, each with
/// its position in the room.
#[derive(Debug)]
struct RoomRestorer {
    room: RoomKey,
    limit: usize,
    /// `None` once more than `limit` arrived.
    seen: Mutex<Option<Vec<Positioned>>>,
}

/// A publication with its position in one room.
type Positioned = (Position, Arc<Publication>);

/// One recovery's publications delivered here since it read the log.
#[derive(Debug)]
struct Restorer {
    tenant: Arc<str>,
    ns: Arc<str>,
    limit: usize,
    /// `None` once more than `limit` arrived.
    seen: Mutex<Option<Vec<Arc<Publication>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Single pushes and takes: a poisoned lock is consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Restorers {
    /// Taken by the delivering task around each delivery.
    pub(super) fn delivering(&self) -> MutexGuard<'_, ()> {
        lock(&self.delivering)
    }

    /// A publication about to be delivered here, with its rooms' positions (with the
    /// delivery lock held).
    pub(super) fn delivered(&self, p: &Arc<Publication>, positions: &[Option<Position>]) {
        if self.count.load(Ordering::Acquire) > 0 {
            for r in lock(&self.resuming).iter() {
                let at =
                    (0..p.target.rooms().len()).find(|&i| p.room_key(i).as_ref() == Some(&r.room));
                let Some(Some(position)) = at.map(|i| positions.get(i).cloned().flatten()) else {
                    continue;
                };
                let mut seen = lock(&r.seen);
                let full = seen.as_ref().is_some_and(|s| s.len() >= r.limit);
                if full {
                    *seen = None;
                } else if let Some(seen) = seen.as_mut() {
                    seen.push((position, p.clone()));
                }
            }
        }
        let (Some(id), Some(tenant)) = (&p.log_offset, p.target.tenant_name()) else {
            return;
        };
        {
            let mut last = lock(&self.last);
            if last.len() >= MAX_LAST {
                last.clear();
            }
            last.insert((tenant.clone(), p.ns.clone()), id.clone());
        }
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        for r in lock(&self.waiting).iter() {
            if r.tenant == *tenant && r.ns == p.ns {
                let mut seen = lock(&r.seen);
                let full = seen.as_ref().is_some_and(|s| s.len() >= r.limit);
                if full {
                    *seen = None;
                } else if let Some(seen) = seen.as_mut() {
                    seen.push(p.clone());
                }
            }
        }
    }

    /// The last log id delivered here for `tenant`'s namespace `ns`, if one was.
    pub(super) fn last(&self, tenant: &str, ns: &str) -> Option<Arc<str>> {
        lock(&self.last).get(&(tenant.into(), ns.into())).cloned()
    }

    fn start(&self, tenant: &str, ns: &str, limit: usize) -> Arc<Restorer> {
        let r = Arc::new(Restorer {
            tenant: tenant.into(),
            ns: ns.into(),
            limit,
            seen: Mutex::new(Some(Vec::new())),
        });
        let _delivering = self.delivering();
        lock(&self.waiting).push(r.clone());
        self.count.fetch_add(1, Ordering::Release);
        r
    }

    fn start_room(&self, room: &RoomKey, limit: usize) -> Arc<RoomRestorer> {
        let r = Arc::new(RoomRestorer {
            room: room.clone(),
            limit,
            seen: Mutex::new(Some(Vec::new())),
        });
        let _delivering = self.delivering();
        lock(&self.resuming).push(r.clone());
        self.count.fetch_add(1, Ordering::Release);
        r
    }

    fn stop_room(&self, r: &Arc<RoomRestorer>) {
        let mut resuming = lock(&self.resuming);
        if let Some(i) = resuming.iter().position(|w| Arc::ptr_eq(w, r)) {
            resuming.swap_remove(i);
            self.count.fetch_sub(1, Ordering::Release);
        }
    }

    fn stop(&self, r: &Arc<Restorer>) {
        let mut waiting = lock(&self.waiting);
        if let Some(i) = waiting.iter().position(|w| Arc::ptr_eq(w, r)) {
            waiting.swap_remove(i);
            self.count.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A recovery that has read the log.
struct Reading {
    /// Keeps the tenant's channel subscribed until the recovering socket is registered.
    _held: TenantHold,
    restorers: Arc<Restorers>,
    restorer: Arc<Restorer>,
    /// What the log held after the offset, and whether it continues the offset.
    read: Missed,
    after: (u64, u64),
    limit: usize,
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.restorers.stop(&self.restorer);
    }
}

impl Recovering for Reading {
    fn finish(mut self: Box<Self>, rejoin: &mut dyn FnMut(Missed)) {
        let restorers = self.restorers.clone();
        let _delivering = restorers.delivering();
        self.restorers.stop(&self.restorer);
        let seen = lock(&self.restorer.seen).take();
        let mut missed = std::mem::take(&mut self.read);
        let last = missed
            .events
            .last()
            .and_then(|(id, _)| stream_id(id))
            .unwrap_or(self.after);
        match seen {
            Some(seen) => {
                for p in seen {
                    let Some(id) = p.log_offset.clone() else {
                        continue;
                    };
                    if stream_id(&id).is_some_and(|n| n > last) {
                        missed.events.push((id, p));
                    }
                }
            }
            None => missed.complete = false,
        }
        if missed.events.len() > self.limit {
            missed.complete = false;
            missed.events.truncate(self.limit);
        }
        rejoin(missed);
    }
}

/// A resume that has read its room's stream.
struct RoomReading {
    restorers: Arc<Restorers>,
    restorer: Arc<RoomRestorer>,
    history: History,
    since: Position,
    limit: usize,
}

impl Drop for RoomReading {
    fn drop(&mut self) {
        self.restorers.stop_room(&self.restorer);
    }
}

impl Resuming for RoomReading {
    fn finish(mut self: Box<Self>, join: &mut dyn FnMut(Result<History, BrokerError>)) {
        let restorers = self.restorers.clone();
        let _delivering = restorers.delivering();
        self.restorers.stop_room(&self.restorer);
        let seen = lock(&self.restorer.seen).take();
        let mut history = std::mem::take(&mut self.history);
        if history.events.len() >= self.limit {
            // Read only in part (the limit): what follows would not continue it.
            history.complete = false;
        }
        let mut last = history
            .events
            .last()
            .map_or(self.since.offset, |(p, _)| p.offset);
        match seen {
            Some(seen) => {
                for (position, p) in seen {
                    let same_epoch = history
                        .current
                        .as_ref()
                        .is_none_or(|c| c.epoch == position.epoch);
                    if !same_epoch {
                        // The room's counter restarted meanwhile.
                        history.complete = false;
                    }
                    if position.offset > last {
                        last = position.offset;
                        history.events.push((position, p));
                    }
                }
            }
            None => history.complete = false,
        }
        if history.events.len() > self.limit {
            history.complete = false;
        }
        // The room's position as of the join: what was read and delivered so far. Events
        // published since (counted by the counter already) arrive live.
        if let Some(current) = history.current.as_mut() {
            current.offset = if history.complete {
                last
            } else {
                current.offset.max(last)
            };
        }
        join(Ok(history));
    }
}

/// A hold of a tenant's channel ([`RedisBroker::tenant_held`]), let go of when dropped.
struct TenantHold {
    broker: std::sync::Weak<RedisBroker>,
    tenant: String,
}

impl Drop for TenantHold {
    fn drop(&mut self) {
        if let Some(broker) = self.broker.upgrade() {
            broker.tenant_held(&self.tenant, false);
        }
    }
}

impl RedisBroker {
    /// [`Broker::resume`](roomcast_broker::Broker::resume) in cluster mode: the room's kept
    /// events after `since`, or, for a room that keeps none, its counter (nothing missed
    /// when the client is at the current position).
    pub(super) async fn start_resume(
        &self,
        room: &RoomKey,
        since: &Position,
        limit: usize,
    ) -> Result<Box<dyn Resuming>, BrokerError> {
        let restorer = self.restorers.start_room(room, limit);
        let history = match self.read_history(room, Some(since.clone()), limit).await {
            Ok(history) => Ok(history),
            Err(BrokerError::HistoryUnsupported) => self.counter_only(room, since).await,
            Err(e) => Err(e),
        };
        match history {
            Ok(history) => Ok(Box::new(RoomReading {
                restorers: self.restorers.clone(),
                restorer,
                history,
                since: since.clone(),
                limit,
            })),
            Err(e) => {
                self.restorers.stop_room(&restorer);
                Err(e)
            }
        }
    }

    /// The position of a room that keeps no history.
    async fn counter_only(&self, room: &RoomKey, since: &Position) -> Result<History, BrokerError> {
        let current = self.counter(room).await?;
        Ok(History {
            events: Vec::new(),
            complete: current
                .as_ref()
                .is_some_and(|c| History::continues(since, c, None)),
            current,
        })
    }

    /// A room's position from its counter, `None` when it has none.
    pub(super) async fn counter(&self, room: &RoomKey) -> Result<Option<Position>, BrokerError> {
        let counter = self.counter_key(room);
        let (offset, epoch): (Option<u64>, Option<String>) = tokio::time::timeout(
            self.opts.timeout,
            self.client.hmget(&counter, vec!["o", "e"]),
        )
        .await
        .map_err(|_| unavailable("resume timed out"))?
        .map_err(unavailable)?;
        Ok(match (offset, epoch) {
            (Some(offset), Some(epoch)) => Some(Position {
                offset,
                epoch: epoch.into(),
            }),
            _ => None,
        })
    }

    /// [`Broker::recover`](roomcast_broker::Broker::recover) in cluster mode.
    pub(super) async fn start_recovery(
        &self,
        tenant: &str,
        ns: &str,
        after: &str,
        limit: usize,
    ) -> Result<Box<dyn Recovering>, BrokerError> {
        let Some(limits) = self.opts.recovery else {
            return Err(BrokerError::HistoryUnsupported);
        };
        let Some(after_id) = stream_id(after) else {
            return Ok(Box::new(Unrecoverable));
        };
        // What is published from the read on must reach this node: its subscription to the
        // tenant's channel first (the socket is not registered yet).
        self.tenant_held(tenant, true);
        let held = TenantHold {
            broker: self.me.clone(),
            tenant: tenant.to_owned(),
        };
        if let Some(subscribed) = self.subscribed() {
            subscribed.await;
        }
        let restorer = self.restorers.start(tenant, ns, limit);
        let key = self.keys.log_key(tenant, ns);
        let work = async {
            // From the offset itself: its entry still there means nothing after it was
            // trimmed; and the oldest entry, to tell a trim by age from one by count.
            let entries: Vec<(String, HashMap<String, String>)> = self
                .client
                .xrange_values(&key, after, "+", Some(limit as u64 + 2))
                .await?;
            let oldest: Vec<(String, HashMap<String, String>)> =
                self.client.xrange_values(&key, "-", "+", Some(1)).await?;
            Ok::<_, fred::error::Error>((entries, oldest))
        };
        let reading = tokio::time::timeout(self.opts.timeout, work).await;
        let (entries, oldest) = match reading {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                self.restorers.stop(&restorer);
                return Err(unavailable(e));
            }
            Err(_) => {
                self.restorers.stop(&restorer);
                return Err(unavailable("recovery read timed out"));
            }
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let cutoff = now_ms.saturating_sub(limits.max_age.as_millis() as u64);
        let found = entries.first().is_some_and(|(id, _)| id == after);
        // Entries older than the age bound were published while a recoverable client was
        // still connected: trimming those loses nothing it missed. A trim by count may have.
        let only_aged = oldest
            .first()
            .and_then(|(id, _)| stream_id(id))
            .is_none_or(|(ms, _)| ms <= cutoff);
        let mut events = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            if stream_id(&id).is_none_or(|n| n <= after_id) {
                continue;
            }
            let Some(publication) = fields
                .get("p")
                .and_then(|body| serde_json::from_str::<Publication>(body).ok())
            else {
                continue;
            };
            let mut publication = publication;
            let id: Arc<str> = id.into();
            publication.log_offset = Some(id.clone());
            events.push((id, Arc::new(publication)));
        }
        let complete = (found || only_aged || after_id == (0, 0)) && events.len() <= limit;
        events.truncate(limit);
        Ok(Box::new(Reading {
            _held: held,
            restorers: self.restorers.clone(),
            restorer,
            read: Missed { events, complete },
            after: after_id,
            limit,
        }))
    }

    /// [`Broker::log_position`](roomcast_broker::Broker::log_position) in cluster mode: the
    /// last id delivered here, else the log's last entry (`0-0` for an empty log).
    pub(super) async fn log_position_now(
        &self,
        tenant: &str,
        ns: &str,
    ) -> Result<Arc<str>, BrokerError> {
        if self.opts.recovery.is_none() {
            return Err(BrokerError::HistoryUnsupported);
        }
        if let Some(last) = self.restorers.last(tenant, ns) {
            return Ok(last);
        }
        let key = self.keys.log_key(tenant, ns);
        let last: Vec<(String, HashMap<String, String>)> = tokio::time::timeout(
            self.opts.timeout,
            self.client.xrevrange_values(&key, "+", "-", Some(1)),
        )
        .await
        .map_err(|_| unavailable("log position timed out"))?
        .map_err(unavailable)?;
        Ok(last
            .first()
            .map_or_else(|| "0-0".into(), |(id, _)| id.as_str().into()))
    }

    pub(super) async fn put_session_now(
        &self,
        pid: &str,
        session: String,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let key = self.keys.session_key(pid);
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        tokio::time::timeout(
            self.opts.timeout,
            self.client
                .set::<(), _, _>(key, session, Some(Expiration::PX(ms)), None, false),
        )
        .await
        .map_err(|_| unavailable("session write timed out"))?
        .map_err(unavailable)
    }

    pub(super) async fn take_session_now(&self, pid: &str) -> Result<Option<String>, BrokerError> {
        let key = self.keys.session_key(pid);
        tokio::time::timeout(
            self.opts.timeout,
            self.client.getdel::<Option<String>, _>(key),
        )
        .await
        .map_err(|_| unavailable("session read timed out"))?
        .map_err(unavailable)
    }

    pub(super) async fn touch_sessions_now(
        &self,
        pids: Vec<String>,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        // In batches, each sent as one pipeline.
        for batch in pids.chunks(1024) {
            let pipeline = self.client.pipeline();
            for pid in batch {
                pipeline
                    .pexpire::<(), _>(self.keys.session_key(pid), ms, None)
                    .await
                    .map_err(unavailable)?;
            }
            tokio::time::timeout(self.opts.timeout, pipeline.all::<Vec<i64>>())
                .await
                .map_err(|_| unavailable("session touch timed out"))?
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

/// An offset that is no stream id: nothing continues it.
struct Unrecoverable;

impl Recovering for Unrecoverable {
    fn finish(self: Box<Self>, rejoin: &mut dyn FnMut(Missed)) {
        rejoin(Missed::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically() {
        assert!(stream_id("10-0") > stream_id("9-5"));
        assert!(stream_id("9-10") > stream_id("9-9"));
        assert_eq!(stream_id("x"), None);
    }
}
