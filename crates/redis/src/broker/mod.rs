//! [`RedisBroker`]: the broker of a cluster node.
//!
//! A publication to rooms runs one script on the tenant's slot: it takes the next offset of
//! every targeted room (one counter per room for the whole cluster, with its epoch) and
//! publishes the event, its positions in front, on the tenant's shard channel. Every node that
//! has connections of the tenant subscribes to that channel, the publishing node included, and
//! delivers each message to its own members from one task, so a room's events reach every node
//! in offset order, once.
//!
//! The publishing side (the script's client) is `publish`; recoveries, resumes, history and
//! idempotency keys have files of their own.
//!
//! When Redis cannot be reached the node keeps serving its own members: a publication is
//! delivered here without positions and counted as local only; the subscriber reconnects with
//! backoff and resubscribes every channel.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::Message;
use roomcast_broker::{
    BoxFuture, Broker, BrokerError, BrokerStatus, Claim, Deliver, History, Position, Publication,
    Published, Recovering, Resuming, RoomKey,
};
use tokio::sync::{broadcast, watch, Notify};

mod history;
mod once;
mod publish;
mod recovery;
mod script;

use script::{decode, hex_sha1, stream_key, PUBLISH_SCRIPT};

use crate::connect;
use crate::keys::Keys;
use crate::options::{ChannelMode, ClusterOptions};

/// Messages the subscriber may hold before the delivering task reads them; past it, the
/// oldest are lost and counted.
const RECEIVE_BUFFER: usize = 65_536;

/// Reads the messages of channels other than the broker's own (the emitter bindings).
pub trait ChannelListener: Send + Sync + fmt::Debug {
    /// One message from `channel`.
    fn message(&self, channel: &str, payload: &[u8]);
}

/// A listener and what it listens to: a channel name, or (`true`) a prefix of a pattern's
/// channels.
type Listening = (String, bool, Arc<dyn ChannelListener>);

/// Counters of one broker, for `/health` and metrics.
#[derive(Debug, Default)]
struct Counters {
    /// Publications delivered on this node only, because Redis could not be reached.
    local_only: AtomicU64,
    /// Publications refused because Redis failed while taking them.
    failed: AtomicU64,
    /// Messages from the channels that were lost because delivery fell behind.
    lagged: AtomicU64,
    /// Messages on the broker's channels that could not be decoded.
    undecodable: AtomicU64,
    /// Messages received on the broker's channels.
    received: AtomicU64,
}

/// The broker of one cluster node.
pub struct RedisBroker {
    /// Itself, for what outlives a call (a recovery's hold of a tenant's channel).
    me: std::sync::Weak<RedisBroker>,
    keys: Keys,
    opts: ClusterOptions,
    client: Client,
    subscriber: SubscriberClient,
    script_sha: String,
    sink: Arc<dyn Deliver>,
    /// The shard channels this node needs (its tenants', and in room mode its rooms'); the
    /// subscription task follows it.
    wanted: Mutex<HashMap<String, bool>>,
    changed: Arc<Notify>,
    /// Changes made to `wanted` so far (counted under its lock) ...
    requested: AtomicU64,
    /// ... and how many of them the subscription task has put in effect.
    applied: watch::Sender<u64>,
    /// Exact channel names (`false`) or prefixes of a pattern's channels (`true`).
    listeners: Mutex<Vec<Listening>>,
    counters: Counters,
    /// Recoveries under way, and the order they finish in.
    restorers: Arc<recovery::Restorers>,
    /// Holders of each tenant's channel ([`tenant_held`](Self::tenant_held)).
    tenant_holders: Mutex<HashMap<String, usize>>,
    epochs: AtomicU64,
    closed: AtomicBool,
    /// The connection tasks and the one renewing the subscriptions after reconnections.
    tasks: Vec<tokio::task::AbortHandle>,
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.keys.prefix())
            .field("node", &self.opts.node_id)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl RedisBroker {
    /// Connects to Redis (within `opts.timeout`) and starts delivering to `sink` what this
    /// node's subscriptions bring.
    pub async fn connect(
        opts: ClusterOptions,
        sink: Arc<dyn Deliver>,
    ) -> Result<Arc<RedisBroker>, BrokerError> {
        let connect::Connections {
            client,
            subscriber,
            tasks,
        } = connect::connect_both(
            &opts,
            connect::Buffers {
                // Publishes wait for a reconnection at most this many: past it, the caller
                // hears.
                commands: 100_000,
                messages: RECEIVE_BUFFER,
            },
        )
        .await
        .map_err(unavailable)?;
        let mut tasks: Vec<tokio::task::AbortHandle> = tasks;
        tasks.push(crate::resubscribe::renew_after_reconnects(&subscriber).abort_handle());
        let keys = Keys::new(&opts.prefix);
        let broker = Arc::new_cyclic(|me| RedisBroker {
            me: me.clone(),
            keys,
            script_sha: hex_sha1(PUBLISH_SCRIPT),
            client,
            subscriber,
            sink,
            wanted: Mutex::new(HashMap::new()),
            changed: Arc::new(Notify::new()),
            requested: AtomicU64::new(0),
            applied: watch::Sender::new(0),
            listeners: Mutex::new(Vec::new()),
            counters: Counters::default(),
            restorers: Arc::default(),
            tenant_holders: Mutex::new(HashMap::new()),
            epochs: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            tasks,
            opts,
        });
        let rx = broker.subscriber.message_rx();
        tokio::spawn(receive(Arc::downgrade(&broker), rx));
        tokio::spawn(follow_subscriptions(Arc::downgrade(&broker)));
        tokio::time::timeout(
            broker.opts.join_deadline(),
            broker.subscriber.ssubscribe(broker.keys.platform_channel()),
        )
        .await
        .map_err(|_| unavailable("subscribing timed out"))?
        .map_err(unavailable)?;
        Ok(broker)
    }

    /// The key and channel names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The command client, shared with the other parts of the node that talk to Redis.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Subscribes (plain `SUBSCRIBE`) to `channel` and hands its messages to `listener`.
    pub async fn listen(
        &self,
        channel: String,
        listener: Arc<dyn ChannelListener>,
    ) -> Result<(), BrokerError> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((channel.clone(), false, listener));
        tokio::time::timeout(self.opts.timeout, self.subscriber.subscribe(channel))
            .await
            .map_err(|_| unavailable("subscribing timed out"))?
            .map_err(unavailable)
    }

    /// Subscribes to `pattern` (`PSUBSCRIBE`) and hands the messages of its channels that
    /// start with `prefix` to `listener`.
    pub async fn listen_pattern(
        &self,
        prefix: String,
        pattern: String,
        listener: Arc<dyn ChannelListener>,
    ) -> Result<(), BrokerError> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((prefix, true, listener));
        tokio::time::timeout(self.opts.timeout, self.subscriber.psubscribe(pattern))
            .await
            .map_err(|_| unavailable("subscribing timed out"))?
            .map_err(unavailable)
    }

    /// Whether both connections to Redis are up.
    pub fn connected(&self) -> bool {
        self.client.is_connected() && self.subscriber.is_connected()
    }

    /// Publications delivered on this node only because Redis could not be reached.
    pub fn local_only(&self) -> u64 {
        self.counters.local_only.load(Ordering::Relaxed)
    }

    /// Stops the subscriptions and closes the connections.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.changed.notify_one();
        let _ = tokio::time::timeout(self.opts.timeout, self.subscriber.quit()).await;
        let _ = tokio::time::timeout(self.opts.timeout, self.client.quit()).await;
        for task in &self.tasks {
            task.abort();
        }
    }

    /// One more (`true`) or one fewer holder of `tenant`'s channel: the node's connections
    /// of the tenant (one holder for all) and recoveries reading its log. Subscribed while
    /// it has any.
    pub(super) fn tenant_held(&self, tenant: &str, more: bool) {
        let mut holders = self
            .tenant_holders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = holders.entry(tenant.to_owned()).or_default();
        let change = if more {
            *count += 1;
            (*count == 1).then_some(true)
        } else {
            *count = count.saturating_sub(1);
            (*count == 0).then_some(false)
        };
        if *count == 0 {
            holders.remove(tenant);
        }
        // Under the holders' lock, so that the wants follow the counts in order.
        if let Some(on) = change {
            if !on {
                self.restorers.forget(tenant);
            }
            self.want(self.keys.tenant_channel(tenant), on);
        }
    }

    fn want(&self, channel: String, on: bool) {
        let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        if wanted.insert(channel, on) != Some(on) {
            self.requested.fetch_add(1, Ordering::Release);
        }
        drop(wanted);
        self.changed.notify_one();
    }

    /// A marker on a tenant's channel: this node's own are waited for.
    fn marker(&self, payload: &[u8]) {
        let Some((node, n)) = std::str::from_utf8(&payload[1..])
            .ok()
            .and_then(|text| text.rsplit_once(':'))
        else {
            return;
        };
        if node == self.opts.node_id {
            if let Ok(n) = n.parse() {
                self.restorers.marker(n);
            }
        }
    }

    /// Delivers one message of a broker channel.
    fn deliver_message(&self, payload: &[u8]) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let Some((positions, publication)) = decode(payload) else {
            self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("undecodable message on a cluster channel, dropped");
            return;
        };
        // Recoveries and resumes finishing on this node see it on one side of their read or
        // the other.
        let publication = Arc::new(publication);
        let _delivering = self.restorers.delivering();
        self.restorers.delivered(&publication, &positions);
        self.sink
            .deliver(&publication, &mut |i| positions.get(i).cloned().flatten());
    }
}

/// The delivering task: one per broker, so the messages of a channel are delivered in the
/// order Redis sent them.
async fn receive(broker: std::sync::Weak<RedisBroker>, mut rx: broadcast::Receiver<Message>) {
    loop {
        let message = match rx.recv().await {
            Ok(message) => message,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                if let Some(b) = broker.upgrade() {
                    b.counters.lagged.fetch_add(n, Ordering::Relaxed);
                }
                tracing::error!(lost = n, "cluster delivery fell behind: messages lost");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(broker) = broker.upgrade() else {
            return;
        };
        let channel: &str = &message.channel;
        let payload = message.value.as_bytes().unwrap_or_default();
        if broker.keys.is_platform_channel(channel) || broker.keys.is_broker_channel(channel) {
            if payload.first() == Some(&recovery::MARKER) {
                broker.marker(payload);
            } else {
                broker.deliver_message(payload);
            }
            continue;
        }
        let listener = broker
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(c, prefix, _)| {
                if *prefix {
                    channel.starts_with(c.as_str())
                } else {
                    c == channel
                }
            })
            .map(|(_, _, l)| l.clone());
        if let Some(listener) = listener {
            listener.message(channel, payload);
        }
    }
}

/// Keeps the shard channel subscriptions in line with what this node serves; a failed
/// change is retried after a pause (subscriptions are renewed after a reconnection apart).
async fn follow_subscriptions(broker: std::sync::Weak<RedisBroker>) {
    let mut subscribed: HashMap<String, ()> = HashMap::new();
    loop {
        let Some(b) = broker.upgrade() else { return };
        if b.closed.load(Ordering::Relaxed) {
            return;
        }
        let (generation, changes): (u64, Vec<(String, bool)>) = {
            let mut wanted = b.wanted.lock().unwrap_or_else(PoisonError::into_inner);
            let generation = b.requested.load(Ordering::Acquire);
            // Channels let go of before they were ever subscribed need nothing more.
            wanted.retain(|c, on| *on || subscribed.contains_key(c));
            let changes = wanted
                .iter()
                .filter(|(c, on)| **on != subscribed.contains_key(*c))
                .map(|(c, on)| (c.clone(), *on))
                .collect();
            (generation, changes)
        };
        let mut failed = false;
        for (channel, on) in changes {
            let done = if on {
                b.subscriber.ssubscribe(channel.clone()).await
            } else {
                b.subscriber.sunsubscribe(channel.clone()).await
            };
            match done {
                Ok(()) if on => {
                    subscribed.insert(channel, ());
                }
                Ok(()) => {
                    subscribed.remove(&channel);
                    let mut wanted = b.wanted.lock().unwrap_or_else(PoisonError::into_inner);
                    if wanted.get(&channel) == Some(&false) {
                        wanted.remove(&channel);
                    }
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "cluster subscription change failed; retrying");
                    failed = true;
                }
            }
        }
        if !failed {
            b.applied.send_if_modified(|applied| {
                let newer = generation > *applied;
                *applied = (*applied).max(generation);
                newer
            });
        }
        let changed = b.changed.clone();
        drop(b);
        if failed {
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else {
            changed.notified().await;
        }
    }
}

impl Broker for RedisBroker {
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<Published, BrokerError>> {
        Box::pin(async move {
            let rooms = publication.target.rooms().len();
            if self.connected() {
                match self.publish_remote(&publication).await {
                    Ok(positions) => {
                        return Ok(Published {
                            positions,
                            delivered: 0,
                        })
                    }
                    // This node's subscription is gone too: no copy of it can arrive here,
                    // so this node's members get it from here (below).
                    Err(e) if !self.subscriber.is_connected() => {
                        tracing::warn!(error = %e, "cluster publish failed: Redis is gone");
                    }
                    Err(e) => {
                        // Redis is there but did not answer: it may still carry the publish
                        // out (a reply lost in a timeout, one room of several sent), and a
                        // copy delivered here could be a second one. The caller hears.
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "cluster publish failed; refused");
                        return Err(e);
                    }
                }
            }
            if publication.whole_cluster {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                return Err(BrokerError::Unavailable(
                    "Redis is out of reach: kept for the whole cluster".into(),
                ));
            }
            // Redis is out of reach: this node's members still get it, without positions.
            self.counters.local_only.fetch_add(1, Ordering::Relaxed);
            let delivered = self.sink.deliver(&publication, &mut |_| None);
            Ok(Published {
                positions: vec![None; rooms],
                delivered,
            })
        })
    }

    fn subscribe(&self, room: &RoomKey) {
        // With channels per tenant, rooms share their tenant's.
        if self.opts.channels == ChannelMode::Room {
            self.want(self.keys.room_channel(room), true);
        }
    }

    fn unsubscribe(&self, room: &RoomKey) {
        if self.opts.channels == ChannelMode::Room {
            self.want(self.keys.room_channel(room), false);
        }
    }

    fn tenant_joined(&self, tenant: &str) {
        self.tenant_held(tenant, true);
    }

    fn tenant_left(&self, tenant: &str) {
        self.tenant_held(tenant, false);
    }

    fn history(
        &self,
        room: &RoomKey,
        since: Option<Position>,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, BrokerError>> {
        let room = room.clone();
        Box::pin(async move { self.read_history(&room, since, limit).await })
    }

    fn claim(&self, key: &str, window: Duration) -> BoxFuture<'_, Result<Claim, BrokerError>> {
        let key = self.keys.once_key(key);
        Box::pin(async move { self.claim_once(&key, window).await })
    }

    fn settle(
        &self,
        key: &str,
        result: &str,
        window: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        let (key, result) = (self.keys.once_key(key), result.to_owned());
        Box::pin(async move { self.settle_once(&key, &result, window).await })
    }

    fn release(&self, key: &str) -> BoxFuture<'_, Result<(), BrokerError>> {
        let key = self.keys.once_key(key);
        Box::pin(async move { self.release_once(&key).await })
    }

    fn history_at_hand(&self) -> bool {
        false
    }

    fn current(&self, room: &RoomKey) -> BoxFuture<'_, Option<Position>> {
        let room = room.clone();
        Box::pin(async move { self.counter(&room).await.ok().flatten() })
    }

    fn resume(
        &self,
        room: &RoomKey,
        since: &Position,
        limit: usize,
    ) -> Option<BoxFuture<'_, Result<Box<dyn Resuming>, BrokerError>>> {
        // With channels per room, this node hears of the room only once it is subscribed to
        // it: the read and the subscription could not meet exactly.
        if self.opts.channels == ChannelMode::Room {
            return None;
        }
        let (room, since) = (room.clone(), since.clone());
        Some(Box::pin(async move {
            self.start_resume(&room, &since, limit).await
        }))
    }

    fn log_position(&self, tenant: &str, ns: &str) -> BoxFuture<'_, Result<Arc<str>, BrokerError>> {
        let (tenant, ns) = (tenant.to_owned(), ns.to_owned());
        Box::pin(async move { self.log_position_now(&tenant, &ns).await })
    }

    fn recover(
        &self,
        tenant: &str,
        ns: &str,
        after: &str,
        limit: usize,
    ) -> BoxFuture<'_, Result<Box<dyn Recovering>, BrokerError>> {
        let (tenant, ns, after) = (tenant.to_owned(), ns.to_owned(), after.to_owned());
        Box::pin(async move { self.start_recovery(&tenant, &ns, &after, limit).await })
    }

    fn put_session(
        &self,
        pid: &str,
        session: String,
        owner: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        let pid = pid.to_owned();
        Box::pin(async move { self.write_session(&pid, Some(session), owner, ttl).await })
    }

    fn end_session(&self, pid: &str, owner: u64) -> BoxFuture<'_, Result<(), BrokerError>> {
        let pid = pid.to_owned();
        Box::pin(async move { self.write_session(&pid, None, owner, Duration::ZERO).await })
    }

    fn take_session(&self, pid: &str) -> BoxFuture<'_, Result<Option<String>, BrokerError>> {
        let pid = pid.to_owned();
        Box::pin(async move { self.take_session_now(&pid).await })
    }

    fn touch_sessions(
        &self,
        pids: Vec<String>,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(self.touch_sessions_now(pids, ttl))
    }

    fn subscribed(&self) -> Option<BoxFuture<'static, ()>> {
        // Without Redis nothing arrives from other nodes anyway; the subscriptions are
        // renewed once it is back.
        if !self.connected() {
            return None;
        }
        let asked = self.requested.load(Ordering::Acquire);
        let mut applied = self.applied.subscribe();
        if *applied.borrow() >= asked {
            return None;
        }
        let timeout = self.opts.timeout;
        Some(Box::pin(async move {
            let done = tokio::time::timeout(timeout, applied.wait_for(|a| *a >= asked)).await;
            if !matches!(done, Ok(Ok(_))) {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "cluster subscription not confirmed in time; going on without it"
                );
            }
        }))
    }

    fn status(&self) -> BrokerStatus {
        BrokerStatus {
            kind: "redis",
            degraded: (!self.connected()).then(|| "Redis cannot be reached".to_owned()),
            local_only: self.counters.local_only.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            lost: self.counters.lagged.load(Ordering::Relaxed),
            undecodable: self.counters.undecodable.load(Ordering::Relaxed),
            received: self.counters.received.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_broker::Target;

    #[test]
    fn messages_decode_with_their_positions() {
        let p = Publication::new(
            "/",
            Target::Tenant {
                tenant: "t".into(),
                rooms: vec!["a".into(), "b".into()],
                users: vec![],
            },
            "e",
            roomcast_broker::Payload::Json(
                serde_json::value::RawValue::from_string("1".into()).unwrap(),
            ),
        );
        let text = format!("3:n-1,1:n-2\n{}", serde_json::to_string(&p).unwrap());
        let (positions, back) = decode(text.as_bytes()).unwrap();
        assert_eq!(positions.len(), 2);
        assert_eq!(positions[0].as_ref().unwrap().offset, 3);
        assert_eq!(&*positions[1].as_ref().unwrap().epoch, "n-2");
        assert_eq!(back.positions, positions);
        assert!(decode(b"no newline").is_none());
        assert!(decode(b"x:y\n{}").is_none());
    }

    #[test]
    fn the_script_hash_is_sha1_hex() {
        assert_eq!(hex_sha1("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
