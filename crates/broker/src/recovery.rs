//! What Socket.IO connection state recovery keeps on a single node: [`RecoveryLog`], the
//! logged publications of every tenant namespace in one order, and [`Sessions`], the sessions
//! waiting for their client to come back.
//!
//! A recovering client names the last log offset it received; what it missed is every logged
//! publication after it that reached (or would have reached) its rooms. One order per tenant
//! namespace, not per room, because a client keeps one offset for all its rooms.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::publication::Publication;

/// How much of each tenant namespace's log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// The most publications one tenant namespace keeps (the oldest go first).
    pub max_events: usize,
    /// How long a publication is kept: the longest a client may stay away and recover.
    pub max_age: Duration,
    /// The most publications kept for all tenant namespaces together.
    pub max_total: usize,
}

/// The logged publications after a client's offset, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Missed {
    /// Each publication with its log offset.
    pub events: Vec<(Arc<str>, Arc<Publication>)>,
    /// Whether `events` are all that followed the offset: nothing in between was dropped
    /// (by the count bounds) and no more than the limit asked for followed.
    pub complete: bool,
}

/// Stripes of the log's order locks: tenants rarely share one.
const STRIPES: usize = 16;

/// One tenant namespace's log.
#[derive(Debug, Default)]
struct Log {
    events: VecDeque<(Instant, u64, Arc<Publication>)>,
    /// The highest offset dropped by a count bound (age drops lose nothing a recoverable
    /// client has not received): offsets below it cannot be continued.
    floor: u64,
}

#[derive(Debug, Default)]
struct Table {
    logs: HashMap<(Arc<str>, Arc<str>), Log>,
    total: usize,
}

/// The recovery log of a single node. Offsets are one counter for the whole process, so
/// that an offset from one tenant namespace never continues another's.
#[derive(Debug)]
pub struct RecoveryLog {
    limits: LogLimits,
    /// Written before every offset (`<epoch>:<n>`): an offset of another process, or a
    /// string that is no offset at all (socket.io-client keeps the last string argument of
    /// any event), continues nothing.
    epoch: String,
    // Publish order: held from a publication's offset to its last delivery, so that every
    // connection receives a tenant's logged publications in offset order (a client keeps
    // only the last offset). Taken before any lock of the broker's rooms.
    order: Box<[Mutex<()>]>,
    hasher: RandomState,
    // A leaf: held to read or update the table only.
    table: Mutex<Table>,
    next: AtomicU64,
}

impl RecoveryLog {
    /// An empty log within `limits`, its offsets marked with `epoch`.
    pub fn new(limits: LogLimits, epoch: &str) -> Self {
        Self {
            limits,
            epoch: epoch.to_owned(),
            order: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
            table: Mutex::new(Table::default()),
            next: AtomicU64::new(1),
        }
    }

    /// The order lock of `tenant`: held by a publisher from [`next`](Self::next) to its last
    /// delivery, and by a recovery from reading the log to joining its rooms.
    pub fn order(&self, tenant: &str) -> MutexGuard<'_, ()> {
        let stripe = (self.hasher.hash_one(tenant) % STRIPES as u64) as usize;
        // Guards `()`: a poisoned stripe is as good as a healthy one.
        self.order[stripe]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Single updates: a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next offset, under the tenant's order lock.
    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The last offset given: a connection's position when it connects.
    pub fn position(&self) -> Arc<str> {
        self.text(self.next.load(Ordering::Relaxed) - 1)
    }

    /// Offset `n` as clients see it.
    pub fn text(&self, n: u64) -> Arc<str> {
        format!("{}:{n}", self.epoch).into()
    }

    /// Keeps `publication` at `offset` in the log of its tenant namespace.
    pub fn append(&self, tenant: &Arc<str>, offset: u64, publication: Arc<Publication>) {
        let now = Instant::now();
        let mut table = self.table();
        let Table { logs, total } = &mut *table;
        let log = logs
            .entry((tenant.clone(), publication.ns.clone()))
            .or_default();
        *total -= trim_age(log, now, self.limits.max_age);
        while !log.events.is_empty()
            && (log.events.len() >= self.limits.max_events || *total >= self.limits.max_total)
        {
            if let Some((_, dropped, _)) = log.events.pop_front() {
                log.floor = log.floor.max(dropped);
                *total -= 1;
            }
        }
        if self.limits.max_events > 0 && *total < self.limits.max_total {
            log.events.push_back((now, offset, publication));
            *total += 1;
        } else {
            log.floor = log.floor.max(offset);
        }
    }

    /// The logged publications of `tenant`'s namespace `ns` after offset `after`, at most
    /// `limit`. Call it under the tenant's order lock for a result that later deliveries
    /// continue.
    pub fn after(&self, tenant: &str, ns: &str, after: &str, limit: usize) -> Missed {
        let Some(Ok(after)) = after
            .strip_prefix(self.epoch.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::parse::<u64>)
        else {
            return Missed::default();
        };
        if after >= self.next.load(Ordering::Relaxed) {
            // An offset this process never gave.
            return Missed::default();
        }
        let mut table = self.table();
        let Table { logs, total } = &mut *table;
        let key: (Arc<str>, Arc<str>) = (tenant.into(), ns.into());
        let Some(log) = logs.get_mut(&key) else {
            // Nothing kept: nothing was logged within the age bound.
            return Missed {
                events: Vec::new(),
                complete: true,
            };
        };
        *total -= trim_age(log, Instant::now(), self.limits.max_age);
        let mut events: Vec<(Arc<str>, Arc<Publication>)> = log
            .events
            .iter()
            .filter(|(_, offset, _)| *offset > after)
            .take(limit.saturating_add(1))
            .map(|(_, offset, p)| (self.text(*offset), p.clone()))
            .collect();
        let complete = log.floor <= after && events.len() <= limit;
        events.truncate(limit);
        Missed { events, complete }
    }

    /// Whether the log continues offset `after` of `tenant`'s namespace `ns` with at most
    /// `limit` publications after it, now.
    pub fn continues(&self, tenant: &str, ns: &str, after: &str, limit: usize) -> bool {
        self.after(tenant, ns, after, limit).complete
    }

    /// Drops what is past the age bound, and logs left empty.
    pub fn sweep(&self, now: Instant) {
        let mut table = self.table();
        let Table { logs, total } = &mut *table;
        let max_age = self.limits.max_age;
        logs.retain(|_, log| {
            *total -= trim_age(log, now, max_age);
            !log.events.is_empty()
        });
    }
}

/// Drops the events of `log` older than `max_age`; returns how many.
fn trim_age(log: &mut Log, now: Instant, max_age: Duration) -> usize {
    let mut dropped = 0;
    while let Some((at, _, _)) = log.events.front() {
        if now.saturating_duration_since(*at) <= max_age {
            break;
        }
        log.events.pop_front();
        dropped += 1;
    }
    dropped
}

/// Recoverable sessions of a single node, each until its expiry; bounded in number.
#[derive(Debug)]
pub struct Sessions {
    max: usize,
    inner: Mutex<SessionTable>,
}

#[derive(Debug, Default)]
struct SessionTable {
    sessions: HashMap<String, (Instant, String)>,
    /// Expiries in the order they were set, for sweeping (a session set again has a later
    /// entry; the earlier one is skipped).
    order: VecDeque<(Instant, String)>,
}

impl SessionTable {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            let Some((_, pid)) = self.order.pop_front() else {
                break;
            };
            // A session set or touched again has a later expiry: kept.
            if self
                .sessions
                .get(&pid)
                .is_some_and(|(expiry, _)| *expiry <= now)
            {
                self.sessions.remove(&pid);
            }
        }
    }
}

/// Why a session was not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} recoverable sessions are kept already")]
pub struct SessionsFull(pub usize);

impl Sessions {
    /// At most `max` sessions at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            inner: Mutex::new(SessionTable::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SessionTable> {
        // Single inserts and removes: a poisoned table is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `session` under `pid` for `ttl`.
    pub fn put(&self, pid: &str, session: String, ttl: Duration) -> Result<(), SessionsFull> {
        let now = Instant::now();
        let expiry = now + ttl;
        let mut table = self.lock();
        table.expire(now);
        if !table.sessions.contains_key(pid) && table.sessions.len() >= self.max {
            // Expiries differ (touches extend them): a full sweep before refusing.
            table.sessions.retain(|_, (expiry, _)| *expiry > now);
            let SessionTable { sessions, order } = &mut *table;
            order.retain(|(_, pid)| sessions.contains_key(pid));
            if table.sessions.len() >= self.max {
                return Err(SessionsFull(self.max));
            }
        }
        table.sessions.insert(pid.to_owned(), (expiry, session));
        table.order.push_back((expiry, pid.to_owned()));
        Ok(())
    }

    /// Takes the session kept under `pid`, if it has not expired.
    pub fn take(&self, pid: &str) -> Option<String> {
        let now = Instant::now();
        let mut table = self.lock();
        let (expiry, session) = table.sessions.remove(pid)?;
        (expiry > now).then_some(session)
    }

    /// Extends the sessions of `pids` that are kept to `ttl` from now.
    pub fn touch(&self, pids: &[String], ttl: Duration) {
        let now = Instant::now();
        let expiry = now + ttl;
        let mut table = self.lock();
        table.expire(now);
        for pid in pids {
            if let Some(entry) = table.sessions.get_mut(pid) {
                entry.0 = expiry;
                table.order.push_back((expiry, pid.clone()));
            }
        }
    }

    /// Sessions kept now.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publication::{Payload, Target};
    use serde_json::value::RawValue;

    fn publication(ns: &str) -> Arc<Publication> {
        Arc::new(Publication::new(
            ns,
            Target::TenantWide { tenant: "t".into() },
            "e",
            Payload::Json(RawValue::from_string("1".into()).unwrap()),
        ))
    }

    fn limits(max_events: usize, max_total: usize) -> LogLimits {
        LogLimits {
            max_events,
            max_age: Duration::from_secs(60),
            max_total,
        }
    }

    #[test]
    fn a_log_continues_an_offset_until_its_count_bound_drops_past_it() {
        let log = RecoveryLog::new(limits(3, 100), "e");
        let t: Arc<str> = "t".into();
        let start = log.position();
        for _ in 0..3 {
            let offset = log.next();
            log.append(&t, offset, publication("/"));
        }
        let missed = log.after("t", "/", &start, 10);
        assert!(missed.complete);
        assert_eq!(missed.events.len(), 3);
        assert_eq!(&*missed.events[0].0, "e:1");
        // Another namespace shares the counter, not the log.
        assert_eq!(log.after("t", "/other", &start, 10).events.len(), 0);
        // Past the limit: not complete.
        assert!(!log.after("t", "/", &start, 2).complete);
        // A fourth drops the first: offset 0 cannot be continued, offset 1 can.
        let offset = log.next();
        log.append(&t, offset, publication("/"));
        assert!(!log.after("t", "/", &start, 10).complete);
        let from_one = log.after("t", "/", "e:1", 10);
        assert!(from_one.complete);
        assert_eq!(from_one.events.len(), 3);
        // Offsets never given, or not numbers, continue nothing.
        assert!(!log.after("t", "/", "e:99", 10).complete);
        assert!(!log.after("t", "/", "x", 10).complete);
        // A number alone (the last string argument of some other event) is no offset.
        assert!(!log.after("t", "/", "1", 10).complete);
    }

    #[test]
    fn the_total_bound_holds_across_tenants() {
        let log = RecoveryLog::new(limits(10, 4), "e");
        for tenant in ["a", "b", "c"] {
            let t: Arc<str> = tenant.into();
            for _ in 0..2 {
                let offset = log.next();
                log.append(&t, offset, publication("/"));
            }
        }
        assert!(log.table().total <= 4);
    }

    #[test]
    fn sessions_expire_and_are_taken_once() {
        let sessions = Sessions::new(2);
        sessions
            .put("a", "1".into(), Duration::from_secs(60))
            .unwrap();
        sessions.put("b", "2".into(), Duration::ZERO).unwrap();
        // "b" has expired: room for "c", not for "d".
        sessions
            .put("c", "3".into(), Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            sessions.put("d", "4".into(), Duration::from_secs(60)),
            Err(SessionsFull(2))
        );
        assert_eq!(sessions.take("b"), None);
        assert_eq!(sessions.take("a").as_deref(), Some("1"));
        assert_eq!(sessions.take("a"), None);
    }
}
