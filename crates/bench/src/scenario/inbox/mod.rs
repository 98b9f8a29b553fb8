//! `inbox`: the notification inbox on each of its databases in turn, SQLite (a file in a fresh
//! temporary directory) and PostgreSQL (a database of the run's own, dropped after). Two
//! measurements, each on a fresh database with the release `roomcast` started on it:
//!
//! - delivery ([`delivery`]): `--clients` welcomed native clients, users `u0`, `u1`, ... of
//!   tenant `bench`, and `--posters` keep-alive HTTP connections creating notifications for
//!   them round robin as fast as the answers come, for `--secs`: notifications created and
//!   delivered live per second, the latency from a create's request to its user's
//!   `new_notification`, every delivery accounted for, and the CPU per notification; then the
//!   same with every create naming all the clients' users;
//! - reads at scale ([`reads`]): `--rows` notifications bulk-loaded before the server starts,
//!   `--heavy` of them for user `heavy`, the rest `--per-user` each for other users; then the
//!   latency of a count, a first page, a deep page and an unread page of `heavy`, and of a
//!   light user's count, over one keep-alive connection.

mod api;
mod database;
mod delivery;
mod reads;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use super::save;
use crate::server::{Launch, ServerProcess};
use crate::target::{random_text, Programs};
use database::{Fresh, Kind};

const SCENARIO: &str = "inbox";
const TARGET: &str = "roomcast-native";
/// The tenant of every notification and client.
const TENANT: &str = "bench";

/// Options of `roomcast-bench inbox`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    programs: Programs,
    /// The databases to measure, in turn: `sqlite`, `postgres`, or both, comma-separated.
    #[arg(long, default_value = "sqlite,postgres")]
    databases: String,
    /// The PostgreSQL server, without a database: the run creates
    /// `roomcast_bench_inbox_<pid>` there and drops it after.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// Native clients, one user each.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Keep-alive HTTP connections creating notifications, each waiting for its answer.
    #[arg(long, default_value_t = 8)]
    posters: usize,
    /// Seconds of creating, one user per create, and as many with every user in each create.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Notifications bulk-loaded for the reads.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Of those, the heavy user's.
    #[arg(long, default_value_t = 100_000)]
    heavy: u64,
    /// Notifications of each other user.
    #[arg(long, default_value_t = 100)]
    per_user: u64,
    /// Calls of each kind of read, one after the other.
    #[arg(long, default_value_t = 200)]
    reads: u64,
    /// Append each database's result as one JSON line to this file.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let kinds = Kind::parse_list(&args.databases).map_err(anyhow::Error::msg)?;
    if args.clients == 0 || args.posters == 0 || args.per_user == 0 || args.heavy == 0 {
        anyhow::bail!("--clients, --posters, --heavy and --per-user must be at least 1");
    }
    for kind in kinds {
        let result = match measure(&args, kind).await {
            Ok(result) => result,
            Err(e) => {
                eprintln!("inbox / {}: {e:#}", kind.name());
                json!({"scenario": SCENARIO, "target": TARGET, "database": kind.name(),
                    "available": true, "error": format!("{e:#}")})
            }
        };
        save(args.results.as_deref(), &result)?;
    }
    Ok(())
}

async fn measure(args: &Args, kind: Kind) -> Result<Value> {
    if kind == Kind::Postgres {
        if let Err(reason) = database::reachable(&args.postgres).await {
            eprintln!("inbox / postgres: not available: {reason}");
            let result = json!({"scenario": SCENARIO, "target": TARGET,
                "database": kind.name(), "available": false, "reason": reason});
            return Ok(result);
        }
    }
    // A part that fails is reported as such; the other is still measured.
    let part = |outcome: Result<Value>| {
        outcome.unwrap_or_else(|e| {
            eprintln!("inbox / {}: {e:#}", kind.name());
            json!({"error": format!("{e:#}")})
        })
    };
    let mut db = Fresh::create(kind, &args.postgres).await?;
    let delivered = delivery::measure(args, &mut db).await;
    db.remove().await?;
    let delivery = part(delivered);

    let mut db = Fresh::create(kind, &args.postgres).await?;
    let read = reads::measure(args, &mut db).await;
    db.remove().await?;
    let (load, reads) = match read {
        Ok((load, reads)) => (load, reads),
        Err(e) => (json!(null), part(Err(e))),
    };
    let result = json!({
        "scenario": SCENARIO,
        "target": TARGET,
        "database": kind.name(),
        "available": true,
        "clients": args.clients,
        "posters": args.posters,
        "secs": args.secs,
        "delivery": delivery["single"],
        "batch": delivery["batch"],
        "delivery_error": delivery["error"],
        "load": load,
        "reads": reads,
    });
    eprintln!("inbox / {}: {result}", kind.name());
    Ok(result)
}

/// Starts roomcast with `[inbox]` on `url` and the settings `inbox` (TOML lines), the JWT
/// secret `secret` and the platform API key `key`.
async fn start(
    programs: &Programs,
    url: &str,
    inbox: &str,
    secret: &str,
    key: &str,
) -> Result<ServerProcess> {
    let config = std::env::temp_dir().join(format!(
        "rc-bench-inbox-{}.toml",
        &random_text()[..8].to_lowercase()
    ));
    std::fs::write(&config, format!("[inbox]\ndatabase = \"{url}\"\n{inbox}\n"))?;
    let launch = Launch {
        program: programs.roomcast(),
        args: vec!["--config".into(), config.display().to_string()],
        env: vec![
            ("ROOMCAST_LISTEN".into(), "127.0.0.1:0".into()),
            ("ROOMCAST_JWT_SECRET".into(), secret.to_owned()),
            ("ROOMCAST_API_KEY".into(), key.to_owned()),
            ("ROOMCAST_LOG__LEVEL".into(), "warn".into()),
        ],
        ready: "roomcast listening on ".into(),
    };
    let server = ServerProcess::launch(&launch, Duration::from_secs(60)).await;
    let _ = std::fs::remove_file(&config);
    server
}

/// Kills the server after its measurement, adding its last output to an error.
async fn finish<T>(server: ServerProcess, outcome: Result<T>) -> Result<T> {
    let report = server.output_report();
    let _ = server.kill().await;
    outcome.map_err(|e| anyhow!("{e:#}{report}"))
}
