//! Socket.IO connection state recovery in cluster mode: each tenant namespace's recovery log
//! is a Redis stream in the tenant's slot (the publish script appends to it, trimmed by count
//! and age); the ids Redis gives are the offsets clients keep. Sessions are keys of their own,
//! so a client recovers through any node, after the death of the one it was on.
//!
//! A recovery reads the log after the client's offset, then finishes on this node between
//! two deliveries: what was delivered here meanwhile is added (each node delivers a tenant's
//! publications in log order, from one task), so the replay and the live events meet with no
//! gap and no duplicate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::interfaces::{KeysInterface, StreamsInterface};
use fred::types::Expiration;
use roomcast_broker::{BrokerError, Missed, Publication, Recovering};

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
    count: AtomicUsize,
    /// The last log id delivered per tenant namespace: where a new connection starts.
    last: Mutex<HashMap<TenantNs, Arc<str>>>,
}

/// A tenant and a namespace.
type TenantNs = (Arc<str>, Arc<str>);

/// Tenant namespaces whose last delivered id is remembered; past it the memory restarts.
const MAX_LAST: usize = 100_000;

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

    /// A logged publication about to be delivered here (with the delivery lock held).
    pub(super) fn delivered(&self, p: &Arc<Publication>) {
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

impl RedisBroker {
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
