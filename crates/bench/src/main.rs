//! `roomcast-bench`: the load generator and whole-system benchmarks, run against real server
//! binaries over loopback: Roomcast in both of its protocols and, for comparison, Node's
//! socket.io and socketioxide (`bench/peers/`), each also as a cluster of processes sharing a
//! Redis. One subcommand per scenario; each starts the servers one after the other, measures
//! them with the same generator, prints its figures and stops them. `bench/run.sh` runs the
//! standard set and writes `BENCHMARKS.md` with `report`.
//!
//! These are measurements, not tests: they print what they saw and fail only when the run itself
//! went wrong (a server did not start, a connection was refused, no welcome came).

mod capacity;
mod client;
mod fleet;
mod memory;
mod procfs;
mod publisher;
mod redis;
mod report;
mod scenario;
mod server;
mod stats;
mod sub;
mod swarm;
mod target;
mod wire;
mod worker;
mod wsconn;
mod wsframe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use scenario::ramp::Kind;

/// Benchmarks for the roomcast gateway, run against its release binary and its peers.
#[derive(Debug, Parser)]
#[command(name = "roomcast-bench", version, about)]
struct Cli {
    /// Also print the results as one JSON object, the last line on stdout (`memory`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Roomcast's memory per idle native connection (3 rooms each), in one process.
    Memory(memory::Args),
    /// Every target's memory per idle subscriber at 10,000 and 19,000 connections.
    Idle(scenario::idle::Args),
    /// Fan-out to one room of 10,000 subscribers, the publish rate stepped up.
    Fanout(scenario::ramp::Args),
    /// 10,000 subscribers in 1,000 rooms of 10, publishes to random rooms, stepped up.
    Rooms(scenario::ramp::Args),
    /// Fan-out to one room of 9,000 subscribers spread over three server processes sharing
    /// one Redis, publishes to one of them, the publish rate stepped up.
    Cluster(scenario::cluster::Args),
    /// Connection churn with authentication: connects and disconnects per second.
    Churn(scenario::churn::Args),
    /// 10,000 Socket.IO clients reconnecting at once after their node is killed: time until
    /// all have recovered, and Redis CPU.
    Recovery(scenario::recovery::Args),
    /// RabbitMQ ingestion: end-to-end latency at a steady rate, and messages per second.
    Ingest(scenario::ingest::Args),
    /// The latency the RPC proxy adds to a backend call, and calls per second.
    Rpc(scenario::rpc::Args),
    /// The notification inbox on SQLite and PostgreSQL: notifications created and delivered
    /// per second, and reads of a user with 100,000 notifications among 1,000,000.
    Inbox(scenario::inbox::Args),
    /// Writes BENCHMARKS.md from the results of the scenarios.
    Report(report::Args),
    /// A share of the subscribers in a child process (started by the scenarios).
    #[command(hide = true)]
    Fleet(worker::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("roomcast-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.scenario {
            Scenario::Memory(args) => memory::run(args, cli.json).await,
            Scenario::Idle(args) => scenario::idle::run(args).await,
            Scenario::Fanout(args) => scenario::ramp::run(Kind::Fanout, args).await,
            Scenario::Rooms(args) => scenario::ramp::run(Kind::Rooms, args).await,
            Scenario::Cluster(args) => scenario::cluster::run(args).await,
            Scenario::Churn(args) => scenario::churn::run(args).await,
            Scenario::Recovery(args) => scenario::recovery::run(args).await,
            Scenario::Ingest(args) => scenario::ingest::run(args).await,
            Scenario::Rpc(args) => scenario::rpc::run(args).await,
            Scenario::Inbox(args) => scenario::inbox::run(args).await,
            Scenario::Report(args) => report::run(args),
            Scenario::Fleet(args) => worker::run(args).await,
        }
    });
    // Fleet processes and servers are killed on drop; do not wait for stray tasks.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomcast-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
