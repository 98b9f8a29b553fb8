//! [`PresenceSets`]: which nodes hold something (a user's sessions, a room's members) of a tenant,
//! so that a node learns whether its own first or last is the cluster's, and a user goes online
//! or offline once however many nodes it is connected to.
//!
//! Keys, under the cluster's prefix:
//! - `<prefix>:{<tenant>}:presence:<name>`: the set of node ids holding `name` (`u\x1f<user>`,
//!   `r\x1f<namespace>\x1f<room>`); a node enters with `SADD` and leaves with `SREM`, each in a
//!   script that answers the set's size after it, so that "first" and "last" are decided by
//!   Redis, one change at a time;
//! - `<prefix>:presence-node:<id>`: what node `id` holds, `<tenant>\x1f<name>`, for its reaping;
//! - `<prefix>:presence-nodes`: the nodes that hold something.
//!
//! A node is named here by its process, `<id>#<start in ms>`: a node restarted under the same
//! id is another holder, and its former process's entries are reaped like a dead node's.
//!
//! A node that dies holds its entries until a live node reaps it ([`PresenceSets::reap`]): any node
//! that finds a node of `presence-nodes` missing from the registry takes a lock on it and
//! removes it from every set it held, reporting the sets it left empty (the users that went
//! offline with it, the rooms it vacated). Each change is one key's: the sets work on a Redis
//! Cluster (a tenant's sets share its slot).

use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{KeysInterface, LuaInterface, SetsInterface};
use fred::prelude::Expiration;
use fred::types::SetOptions;

use crate::error::RedisError;

/// Adds ARGV[1] to the set KEYS[1]; answers {added, size}.
const ENTER: &str = r"
local added = redis.call('SADD', KEYS[1], ARGV[1])
return {added, redis.call('SCARD', KEYS[1])}
";

/// Removes ARGV[1] from the set KEYS[1]; answers {removed, size}.
const LEAVE: &str = r"
local removed = redis.call('SREM', KEYS[1], ARGV[1])
return {removed, redis.call('SCARD', KEYS[1])}
";

/// How long a node's reaping is held by the node doing it.
const REAP_LOCK: Duration = Duration::from_secs(30);

/// The presence sets of one node.
#[derive(Debug)]
pub struct PresenceSets {
    client: Client,
    prefix: String,
    node: String,
    timeout: Duration,
}

impl PresenceSets {
    /// The sets of node `node` under `prefix`, through `client`; every call within `timeout`.
    pub fn new(client: Client, prefix: &str, node: &str, timeout: Duration) -> PresenceSets {
        PresenceSets {
            client,
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            timeout,
        }
    }

    fn set_key(&self, tenant: &str, name: &str) -> String {
        format!("{}:{{{tenant}}}:presence:{name}", self.prefix)
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}:presence-node:{node}", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:presence-nodes", self.prefix)
    }

    /// This node now holds `name` of `tenant`: whether no node held it before (the cluster's
    /// first).
    pub async fn enter(&self, tenant: &str, name: &str) -> Result<bool, RedisError> {
        tokio::time::timeout(self.timeout, async {
            // Listed every time: a node reaped by mistake (its registry entry expired while it
            // lived) is listed again, and reaped once it really dies.
            let _: i64 = self
                .client
                .sadd(self.nodes_key(), self.node.as_str())
                .await?;
            let _: i64 = self
                .client
                .sadd(self.node_key(&self.node), format!("{tenant}\u{1f}{name}"))
                .await?;
            let [added, size] = self.change(ENTER, tenant, name, &self.node).await?;
            Ok(added == 1 && size == 1)
        })
        .await?
    }

    /// This node no longer holds `name` of `tenant`: whether no node holds it now (the
    /// cluster's last).
    pub async fn leave(&self, tenant: &str, name: &str) -> Result<bool, RedisError> {
        let [removed, size] =
            tokio::time::timeout(self.timeout, self.change(LEAVE, tenant, name, &self.node))
                .await??;
        // The set decided; a stale line in the node's own list is harmless (its reaping
        // finds the node gone from the set).
        let unlisted = tokio::time::timeout(
            self.timeout,
            self.client
                .srem::<i64, _, _>(self.node_key(&self.node), format!("{tenant}\u{1f}{name}")),
        )
        .await;
        if !matches!(unlisted, Ok(Ok(_))) {
            tracing::debug!(tenant, "presence entry not unlisted");
        }
        Ok(removed == 1 && size == 0)
    }

    async fn change(
        &self,
        script: &str,
        tenant: &str,
        name: &str,
        node: &str,
    ) -> Result<[i64; 2], RedisError> {
        let answer: Vec<i64> = self
            .client
            .eval(script, vec![self.set_key(tenant, name)], vec![node])
            .await?;
        match answer.as_slice() {
            [a, b] => Ok([*a, *b]),
            _ => Err(RedisError::Redis(
                "unexpected presence script answer".into(),
            )),
        }
    }

    /// Removes the node processes that hold something but are not in `live` (the registry's
    /// live nodes, by presence name) from every set they held, and hands `emptied` each
    /// `(tenant, name)` set left empty as it is. A node being reaped by another is left to
    /// it; one whose reaping fails is left for the next call, and the others go on.
    pub async fn reap(&self, live: &[String], emptied: &mut Vec<(String, String)>) {
        let listed: Vec<String> = match tokio::time::timeout(
            self.timeout,
            self.client.smembers(self.nodes_key()),
        )
        .await
        {
            Ok(Ok(listed)) => listed,
            _ => return,
        };
        for dead in listed
            .iter()
            .filter(|n| **n != self.node && !live.contains(n))
        {
            let lock = format!("{}:presence-reap:{dead}", self.prefix);
            let taken: Result<Option<String>, RedisError> = tokio::time::timeout(
                self.timeout,
                self.client.set(
                    lock.as_str(),
                    self.node.as_str(),
                    Some(Expiration::PX(REAP_LOCK.as_millis() as i64)),
                    Some(SetOptions::NX),
                    false,
                ),
            )
            .await
            .map_err(RedisError::from)
            .and_then(|r| r.map_err(RedisError::from));
            if !matches!(taken, Ok(Some(_))) {
                continue;
            }
            if let Err(e) = self.reap_one(dead, emptied).await {
                tracing::warn!(node = %dead, error = %e, "presence of a dead node not reaped; next time");
            }
            // Done or not, the next reaping need not wait for the lock to expire.
            let _ =
                tokio::time::timeout(self.timeout, self.client.del::<i64, _>(lock.as_str())).await;
        }
    }

    async fn reap_one(
        &self,
        dead: &str,
        emptied: &mut Vec<(String, String)>,
    ) -> Result<(), RedisError> {
        let held: Vec<String> =
            tokio::time::timeout(self.timeout, self.client.smembers(self.node_key(dead))).await??;
        for entry in held {
            let Some((tenant, name)) = entry.split_once('\u{1f}') else {
                continue;
            };
            let [removed, size] =
                tokio::time::timeout(self.timeout, self.change(LEAVE, tenant, name, dead))
                    .await??;
            if removed == 1 && size == 0 {
                emptied.push((tenant.to_owned(), name.to_owned()));
            }
        }
        tokio::time::timeout(self.timeout, async {
            let _: i64 = self.client.del(self.node_key(dead)).await?;
            let _: i64 = self.client.srem(self.nodes_key(), dead).await?;
            Ok::<_, RedisError>(())
        })
        .await?
    }
}
