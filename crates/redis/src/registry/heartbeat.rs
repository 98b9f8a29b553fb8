//! The node's registry entry and the reading of everyone's.
//!
//! A node writes two things every heartbeat: `SET <prefix>:node:<id> <NodeInfo json> PX ttl`,
//! and `ZADD <prefix>:nodes <now + ttl> <id>`. A reader counts a node as live while its score
//! is in the future *and* its entry exists, and removes the members whose score has passed.
//! The entry's TTL runs on Redis's clock, so a node that stops renewing it disappears within
//! `node_ttl` of its last heartbeat even when node clocks disagree; the score, on the nodes'
//! clocks, only lets readers find and collect the members of nodes that are gone.

use std::time::Duration;

use fred::interfaces::{KeysInterface, SortedSetsInterface};
use fred::prelude::Expiration;
use fred::types::sorted_sets::{ZRange, ZRangeBound, ZRangeKind};
use tokio::time::MissedTickBehavior;

use super::types::{now_ms, NodeInfo};
use super::Shared;
use crate::error::RedisError;

/// The most live nodes one read returns.
const MAX_NODES: i64 = 10_000;

/// `d` in ms, for Redis.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Writes this node's entry and its member of the set of nodes, both good for `node_ttl`.
pub(super) async fn beat(shared: &Shared) -> Result<(), RedisError> {
    let ttl = millis(shared.node_ttl);
    let id = shared.info.id.as_str();
    let () = shared
        .client
        .set(
            shared.keys.node(id),
            shared.info_json.as_str(),
            Some(Expiration::PX(ttl)),
            None,
            false,
        )
        .await?;
    // Scores are ms since the epoch, below 2^53: exact in an f64.
    let expires = now_ms().saturating_add(ttl.unsigned_abs()) as f64;
    let () = shared
        .client
        .zadd(shared.keys.nodes(), None, None, false, false, (expires, id))
        .await?;
    Ok(())
}

/// Removes this node's entry and member at once.
pub(super) async fn remove(shared: &Shared) -> Result<(), RedisError> {
    let id = shared.info.id.as_str();
    let () = shared.client.del(shared.keys.node(id)).await?;
    let () = shared.client.zrem(shared.keys.nodes(), id).await?;
    Ok(())
}

/// Renews the entry every `every`, forever; a failed beat is logged and the next one tries
/// again (the client reconnects in between).
pub(super) async fn run(shared: std::sync::Arc<Shared>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate, and the registry beat once before starting this task.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(e) = beat(&shared).await {
            tracing::warn!(node = %shared.info.id, error = %e, "registry heartbeat failed");
        }
    }
}

/// The live nodes, this one included, ordered by id.
pub(super) async fn live(shared: &Shared) -> Result<Vec<NodeInfo>, RedisError> {
    let client = &shared.client;
    let nodes = shared.keys.nodes();
    let now = now_ms() as f64;
    let () = client.zremrangebyscore(&nodes, "-inf", now).await?;
    let after_now = ZRange {
        kind: ZRangeKind::Exclusive,
        range: ZRangeBound::Score(now),
    };
    let ids: Vec<String> = client
        .zrangebyscore(&nodes, after_now, "+inf", false, Some((0, MAX_NODES)))
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // One round trip for every entry; each key may sit on another node of a Redis Cluster,
    // so this is a pipeline of GETs rather than one MGET.
    let pipeline = client.pipeline();
    for id in &ids {
        let () = pipeline.get(shared.keys.node(id)).await?;
    }
    let entries = pipeline.try_all::<Option<String>>().await;
    let mut live = Vec::with_capacity(ids.len());
    for (id, entry) in ids.iter().zip(entries) {
        // No entry: its TTL ran out before the score did (a clock ahead of Redis's).
        let Some(json) = entry? else { continue };
        match serde_json::from_str::<NodeInfo>(&json) {
            Ok(info) if info.id == *id => live.push(info),
            Ok(_) | Err(_) => {
                tracing::warn!(node = %id, "registry entry is not this node's description; skipped");
            }
        }
    }
    live.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(live)
}
