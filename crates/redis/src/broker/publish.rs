//! The publishing side of [`RedisBroker`]: a publication sent to its shard channel, through
//! the publish script when it takes positions (offset counters, the streams that keep history,
//! the tenant namespace's recovery log), and each room's epoch made when its counter starts.

use std::sync::atomic::Ordering;

use fred::interfaces::{LuaInterface, PubsubInterface};
use roomcast_broker::{BrokerError, HistoryLimits, Position, Publication, RoomKey, Target};

use super::script::{header_parts, stream_key, PUBLISH_SCRIPT};
use super::{unavailable, RedisBroker};
use crate::options::ChannelMode;

impl RedisBroker {
    pub(super) fn next_epoch(&self) -> String {
        let n = self.epochs.fetch_add(1, Ordering::Relaxed);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{}-{millis:x}-{n:x}", self.opts.node_id)
    }

    /// Publishes through Redis; `Err` when Redis could not take it. With channels per tenant
    /// a publication is one message; with channels per room, one per room (each on its room's
    /// channel, with its own offset) and one for its users.
    pub(super) async fn publish_remote(
        &self,
        p: &Publication,
    ) -> Result<Vec<Option<Position>>, BrokerError> {
        let rooms = p.target.rooms().len();
        let work = async {
            match (&p.target, self.opts.channels) {
                (Target::Platform, _) => {
                    self.send(self.keys.platform_channel(), Vec::new(), p).await
                }
                (Target::TenantWide { tenant }, _) => {
                    self.send(self.keys.tenant_channel(tenant), Vec::new(), p)
                        .await
                }
                (Target::Tenant { tenant, rooms, .. }, ChannelMode::Tenant) => {
                    let keys = if p.volatile {
                        Vec::new()
                    } else {
                        (0..rooms.len())
                            .filter_map(|i| p.room_key(i))
                            .map(|k| (self.keys.offset_key(&k), self.kept(&k)))
                            .collect()
                    };
                    self.send(self.keys.tenant_channel(tenant), keys, p).await
                }
                (
                    Target::Tenant {
                        tenant,
                        rooms,
                        users,
                    },
                    ChannelMode::Room,
                ) => {
                    let mut positions = vec![None; rooms.len()];
                    for (i, slot) in positions.iter_mut().enumerate() {
                        let Some(key) = p.room_key(i) else { continue };
                        let mut one = p.clone();
                        one.target = Target::Tenant {
                            tenant: tenant.clone(),
                            rooms: vec![key.room.clone()],
                            users: Vec::new(),
                        };
                        let keys = if p.volatile {
                            Vec::new()
                        } else {
                            vec![(self.keys.room_offset_key(&key), self.kept(&key))]
                        };
                        let mut given = self.send(self.keys.room_channel(&key), keys, &one).await?;
                        *slot = given.pop().flatten();
                    }
                    if !users.is_empty() {
                        let mut to_users = p.clone();
                        to_users.target = Target::Tenant {
                            tenant: tenant.clone(),
                            rooms: Vec::new(),
                            users: users.clone(),
                        };
                        self.send(self.keys.tenant_channel(tenant), Vec::new(), &to_users)
                            .await?;
                    }
                    Ok(positions)
                }
            }
        };
        let mut positions = tokio::time::timeout(self.opts.timeout, work)
            .await
            .map_err(|_| unavailable("publish timed out"))?
            .map_err(unavailable)?;
        positions.resize(rooms, None);
        Ok(positions)
    }

    /// How much of `room`'s stream is kept, `None` when nothing is.
    pub(super) fn kept(&self, room: &RoomKey) -> Option<HistoryLimits> {
        self.opts.history.as_ref()?.limits(room)
    }

    /// The offset counter of `room`, as publishes to it use it.
    pub(super) fn counter_key(&self, room: &RoomKey) -> String {
        match self.opts.channels {
            ChannelMode::Tenant => self.keys.offset_key(room),
            ChannelMode::Room => self.keys.room_offset_key(room),
        }
    }

    /// One message on `channel`: through the script when `keys` (offset counters, with the
    /// history each room keeps) are given, else as it is. The positions the script gave, one
    /// per key.
    pub(super) async fn send(
        &self,
        channel: String,
        keys: Vec<(String, Option<HistoryLimits>)>,
        p: &Publication,
    ) -> Result<Vec<Option<Position>>, fred::error::Error> {
        let body = serde_json::to_string(p)
            .map_err(|e| fred::error::Error::new(fred::error::ErrorKind::Parse, e.to_string()))?;
        // The tenant namespace's recovery log, for a logged publication.
        let log = match (&self.opts.recovery, p.logged, p.target.tenant()) {
            (Some(limits), true, Some(tenant)) => Some((self.keys.log_key(tenant, &p.ns), *limits)),
            _ => None,
        };
        if keys.is_empty() && log.is_none() {
            let message = format!("\n{body}");
            return self
                .client
                .spublish::<i64, _, _>(channel, message)
                .await
                .map(|_| Vec::new());
        }
        let ttl = self.opts.stream_ttl.as_millis().to_string();
        let (log_count, log_age) = log
            .as_ref()
            .map_or((0, 0), |(_, l)| (l.max_events, l.max_age.as_millis()));
        let mut args = vec![
            channel,
            ttl,
            self.next_epoch(),
            body,
            log_count.to_string(),
            log_age.to_string(),
        ];
        for (_, kept) in &keys {
            let (count, age) = kept.map_or((0, 0), |k| (k.max_events, k.max_age.as_millis()));
            args.push(count.to_string());
            args.push(age.to_string());
        }
        // The counters, the streams beside them, then the log (all in the tenant's slot).
        let keys: Vec<String> = keys
            .iter()
            .map(|(k, _)| k.clone())
            .chain(keys.iter().map(|(k, _)| stream_key(k)))
            .chain(log.map(|(k, _)| k))
            .collect();
        let sha = self.script_sha.clone();
        let header = match self
            .client
            .evalsha::<String, _, _, _>(sha, keys.clone(), args.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                self.client
                    .eval::<String, _, _, _>(PUBLISH_SCRIPT, keys, args)
                    .await?
            }
            other => other?,
        };
        Ok(header_parts(&header).0)
    }
}
