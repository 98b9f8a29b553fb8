//! `cluster`: the fan-out of `fanout` with each server run as three processes on this machine
//! sharing one Redis: Roomcast's `[cluster]`, Node's socket.io with `@socket.io/redis-adapter`,
//! socketioxide with `socketioxide-redis`. 9,000 subscribers in one room, spread evenly over
//! the nodes (subscriber `id` on node `id` modulo 3); every publish is posted to the first node
//! only, so the others hear of it through Redis. The same steps as `fanout`; the server's CPU
//! is the sum over its nodes, and the Redis server's own CPU (read from `/proc` when it runs
//! on this machine) is reported beside it.
//!
//! The Redis is shared with whatever else uses it: it is never flushed. Each server gets a key
//! and channel prefix of its own, unique to the run, and Roomcast's keys under it are removed
//! when its nodes stop.

use anyhow::Result;

use super::ramp::{self, Kind};
use crate::target::ClusterSpec;

/// Options of `roomcast-bench cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    ramp: ramp::Args,
    /// Server processes; subscribers are spread over them in turn, publishes go to the first.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// The Redis the nodes share: `redis://[host][:port][/db]`. Never flushed.
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis: String,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let cluster = ClusterSpec {
        nodes: args.nodes.max(1),
        redis: args.redis,
        settings: Vec::new(),
    };
    ramp::run_with(Kind::Cluster, args.ramp, Some(cluster)).await
}
