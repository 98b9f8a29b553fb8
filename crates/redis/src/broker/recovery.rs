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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::interfaces::HashesInterface;
use fred::interfaces::{KeysInterface, LuaInterface, PubsubInterface, StreamsInterface};
use roomcast_broker::{
    Broker, BrokerError, History, Missed, Position, Publication, Recovering, Resuming, RoomKey,
};

use super::script::stream_id;
use super::{unavailable, RedisBroker};

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
    /// Markers this node published on a tenant's channel, each waited for by a read.
    markers: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>,
    next_marker: AtomicU64,
}

/// A tenant and a namespace.
type TenantNs = (Arc<str>, Arc<str>);

/// Tenant namespaces whose last delivered id is remembered; past it the memory restarts.
const MAX_LAST: usize = 100_000;

/// The first byte of a marker message on a tenant's channel (a publication's starts with its
/// positions or a newline): `!<node id>:<n>`.
pub(super) const MARKER: u8 = b'!';

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

/// Keeps `seen` as long as it stays within `limit` (`None` past it).
fn record<T>(seen: &Mutex<Option<Vec<T>>>, limit: usize, item: T) {
    let mut seen = lock(seen);
    let full = seen.as_ref().is_some_and(|s| s.len() >= limit);
    if full {
        *seen = None;
    } else if let Some(seen) = seen.as_mut() {
        seen.push(item);
    }
}

impl Restorers {
    /// Taken by the delivering task around each delivery.
    pub(super) fn delivering(&self) -> MutexGuard<'_, ()> {
        lock(&self.delivering)
    }

    /// A publication about to be delivered here, with its rooms' positions (with the
    /// delivery lock held).
    pub(super) fn delivered(&self, p: &Arc<Publication>, positions: &[Option<Position>]) {
        let resuming = self.count.load(Ordering::Acquire) > 0;
        if resuming {
            for r in lock(&self.resuming).iter() {
                let at =
                    (0..p.target.rooms().len()).find(|&i| p.room_key(i).as_ref() == Some(&r.room));
                if let Some(Some(position)) = at.map(|i| positions.get(i).cloned().flatten()) {
                    record(&r.seen, r.limit, (position, p.clone()));
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
        if resuming {
            for r in lock(&self.waiting).iter() {
                if r.tenant == *tenant && r.ns == p.ns {
                    record(&r.seen, r.limit, p.clone());
                }
            }
        }
    }

    /// The last log id delivered here for `tenant`'s namespace `ns`, if one was.
    pub(super) fn last(&self, tenant: &str, ns: &str) -> Option<Arc<str>> {
        lock(&self.last).get(&(tenant.into(), ns.into())).cloned()
    }

    /// This node no longer hears `tenant`'s channel: what it delivered of it is no longer
    /// where the tenant's log is.
    pub(super) fn forget(&self, tenant: &str) {
        lock(&self.last).retain(|(t, _), _| **t != *tenant);
    }

    /// A marker of this node's, `n`, arrived: everything published on its channel before it
    /// has been delivered here.
    pub(super) fn marker(&self, n: u64) {
        if let Some(arrived) = lock(&self.markers).remove(&n) {
            let _ = arrived.send(());
        }
    }

    fn start(self: &Arc<Self>, tenant: &str, ns: &str, limit: usize) -> Watch<Restorer> {
        let _delivering = self.delivering();
        let r = Arc::new(Restorer {
            tenant: tenant.into(),
            ns: ns.into(),
            limit,
            seen: Mutex::new(Some(Vec::new())),
        });
        lock(&self.waiting).push(r.clone());
        self.count.fetch_add(1, Ordering::Release);
        Watch {
            restorers: self.clone(),
            r,
        }
    }

    fn start_room(self: &Arc<Self>, room: &RoomKey, limit: usize) -> Watch<RoomRestorer> {
        let _delivering = self.delivering();
        let r = Arc::new(RoomRestorer {
            room: room.clone(),
            limit,
            seen: Mutex::new(Some(Vec::new())),
        });
        lock(&self.resuming).push(r.clone());
        self.count.fetch_add(1, Ordering::Release);
        Watch {
            restorers: self.clone(),
            r,
        }
    }
}

/// A recovery's or resume's watch over the deliveries of this node, from its start until it
/// is dropped (finished, failed or abandoned).
struct Watch<R: Watched> {
    restorers: Arc<Restorers>,
    r: Arc<R>,
}

/// What a [`Watch`] watches: where it is listed.
trait Watched {
    fn list(restorers: &Restorers) -> &Mutex<Vec<Arc<Self>>>;
}

impl Watched for Restorer {
    fn list(restorers: &Restorers) -> &Mutex<Vec<Arc<Self>>> {
        &restorers.waiting
    }
}

impl Watched for RoomRestorer {
    fn list(restorers: &Restorers) -> &Mutex<Vec<Arc<Self>>> {
        &restorers.resuming
    }
}

impl<R: Watched> Watch<R> {
    fn stop(&self) {
        let mut list = lock(R::list(&self.restorers));
        if let Some(i) = list.iter().position(|w| Arc::ptr_eq(w, &self.r)) {
            list.swap_remove(i);
            self.restorers.count.fetch_sub(1, Ordering::Release);
        }
    }
}

impl<R: Watched> Drop for Watch<R> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A recovery that has read the log.
struct Reading {
    /// Keeps the tenant's channel subscribed until the recovering socket is registered.
    _held: TenantHold,
    watch: Watch<Restorer>,
    /// What the log held after the offset, and whether it continues the offset.
    read: Missed,
    after: (u64, u64),
    limit: usize,
}

impl Recovering for Reading {
    fn complete(&self) -> bool {
        self.read.complete
    }

    fn finish(mut self: Box<Self>, rejoin: &mut dyn FnMut(Missed)) {
        let restorers = self.watch.restorers.clone();
        let _delivering = restorers.delivering();
        self.watch.stop();
        let seen = lock(&self.watch.r.seen).take();
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
    watch: Watch<RoomRestorer>,
    history: History,
    since: Position,
    limit: usize,
}

impl Resuming for RoomReading {
    fn finish(mut self: Box<Self>, join: &mut dyn FnMut(Result<History, BrokerError>)) {
        let restorers = self.watch.restorers.clone();
        let _delivering = restorers.delivering();
        self.watch.stop();
        let seen = lock(&self.watch.r.seen).take();
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
        let watch = self.restorers.start_room(room, limit);
        let mut history = match self.read_history(room, Some(since.clone()), limit).await {
            Ok(history) => history,
            Err(BrokerError::HistoryUnsupported) => self.counter_only(room, since).await?,
            Err(e) => return Err(e),
        };
        // What was read must have been delivered here before the client joins.
        if !history.events.is_empty() && !self.caught_up(&room.tenant).await {
            history.complete = false;
        }
        Ok(Box::new(RoomReading {
            watch,
            history,
            since: since.clone(),
            limit,
        }))
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
        let watch = self.restorers.start(tenant, ns, limit);
        let key = self.keys.log_key(tenant, ns);
        let work = async {
            // From the offset itself: its entry still there means nothing after it was
            // trimmed; the oldest entry, to tell a trim by age from one by count; and how
            // many entries the log ever had against how many it has, for a client that
            // started at an empty log.
            let entries: Vec<(String, HashMap<String, String>)> = self
                .client
                .xrange_values(&key, after, "+", Some(limit as u64 + 2))
                .await?;
            let oldest: Vec<(String, HashMap<String, String>)> =
                self.client.xrange_values(&key, "-", "+", Some(1)).await?;
            let untrimmed = if after_id == (0, 0) {
                self.never_trimmed(&key).await?
            } else {
                false
            };
            Ok::<_, fred::error::Error>((entries, oldest, untrimmed))
        };
        let (entries, oldest, untrimmed) = tokio::time::timeout(self.opts.timeout, work)
            .await
            .map_err(|_| unavailable("recovery read timed out"))?
            .map_err(unavailable)?;
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
        let mut undecodable = false;
        for (id, fields) in entries {
            if stream_id(&id).is_none_or(|n| n <= after_id) {
                continue;
            }
            let Some(mut publication) = fields
                .get("p")
                .and_then(|body| serde_json::from_str::<Publication>(body).ok())
            else {
                undecodable = true;
                continue;
            };
            let id: Arc<str> = id.into();
            publication.log_offset = Some(id.clone());
            events.push((id, Arc::new(publication)));
        }
        let complete = (found || only_aged || untrimmed) && !undecodable && events.len() <= limit;
        events.truncate(limit);
        // What was read must have been delivered here before the socket joins.
        let mut read = Missed { events, complete };
        if !read.events.is_empty() && !self.caught_up(tenant).await {
            read.complete = false;
        }
        Ok(Box::new(Reading {
            _held: held,
            watch,
            read,
            after: after_id,
            limit,
        }))
    }

    /// Waits until everything published on `tenant`'s channel so far has been delivered on
    /// this node (a read's events may still be on their way to it, and would come again
    /// after the reader joined): a marker published on the channel now comes back after
    /// them. `false` when it did not within the broker's timeout.
    pub(super) async fn caught_up(&self, tenant: &str) -> bool {
        let n = self.restorers.next_marker.fetch_add(1, Ordering::Relaxed);
        let (arrived, wait) = tokio::sync::oneshot::channel();
        lock(&self.restorers.markers).insert(n, arrived);
        let marker = format!("{}{}:{n}", MARKER as char, self.opts.node_id);
        let work = async {
            self.client
                .spublish::<i64, _, _>(self.keys.tenant_channel(tenant), marker)
                .await
                .map_err(unavailable)?;
            wait.await.map_err(|_| unavailable("marker lost"))
        };
        let done = matches!(
            tokio::time::timeout(self.opts.timeout, work).await,
            Ok(Ok(()))
        );
        lock(&self.restorers.markers).remove(&n);
        done
    }

    /// Whether the log at `key` holds every entry it was ever given (none trimmed), or is
    /// gone (nothing within the age bound).
    async fn never_trimmed(&self, key: &str) -> Result<bool, fred::error::Error> {
        let info: Result<HashMap<String, fred::types::Value>, _> =
            self.client.xinfo_stream(key, false, None).await;
        let Ok(info) = info else {
            // No such key.
            return Ok(true);
        };
        let number = |name: &str| info.get(name).and_then(fred::types::Value::as_u64);
        Ok(matches!((number("entries-added"), number("length")), (Some(a), Some(l)) if a == l))
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

    /// Writes (`Some`) or deletes (`None`) the session under `pid` for its connection
    /// `owner`, unless a newer connection of the session wrote it since (the stored record
    /// names `owner` among its connections, but not last): a late close on another node
    /// must not undo a recovery.
    pub(super) async fn write_session(
        &self,
        pid: &str,
        session: Option<String>,
        owner: u64,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let key = self.keys.session_key(pid);
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let (op, body) = match session {
            Some(body) => ("put", body),
            None => ("end", String::new()),
        };
        let args = vec![body, ms.to_string(), owner.to_string(), op.to_owned()];
        tokio::time::timeout(
            self.opts.timeout,
            self.client
                .eval::<i64, _, _, _>(SESSION_SCRIPT, vec![key], args),
        )
        .await
        .map_err(|_| unavailable("session write timed out"))?
        .map(drop)
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

/// Writes or ends a session unless a newer connection of it wrote it: `KEYS[1]` the session,
/// `ARGV`: the record, its TTL in ms, the writing connection, `put` or `end`. Connection ids
/// stay below 2^53, so Lua's numbers hold them exactly.
const SESSION_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, record = pcall(cjson.decode, current)
  if ok and type(record) == 'table' and type(record.conns) == 'table' then
    local conns = record.conns
    local owner = tonumber(ARGV[3])
    if conns[#conns] ~= owner then
      for i = 1, #conns do
        if conns[i] == owner then
          return 0
        end
      end
    end
  end
end
if ARGV[4] == 'end' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"#;

/// An offset that is no stream id: nothing continues it.
struct Unrecoverable;

impl Recovering for Unrecoverable {
    fn complete(&self) -> bool {
        false
    }

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
