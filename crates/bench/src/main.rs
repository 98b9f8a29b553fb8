//! `roomcast-bench`: whole-system benchmarks run against the real `roomcast` binary, one
//! subcommand per scenario. Each scenario starts the server as a child process, drives it over
//! loopback with real WebSocket clients, prints its numbers and stops the server.
//!
//! These are measurements, not tests: they print what they saw and fail only when the run itself
//! went wrong (the server did not start, a connection was refused, no `welcome` came).

mod capacity;
mod client;
mod fleet;
mod memory;
mod procfs;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks for the roomcast gateway, run against its release binary.
#[derive(Debug, Parser)]
#[command(name = "roomcast-bench", version, about)]
struct Cli {
    /// Also print the results as one JSON object, the last line on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Server memory per idle connection: RSS after a warm-up versus after N connections.
    Memory(memory::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Memory(args) => memory::run(args, cli.json).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomcast-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
