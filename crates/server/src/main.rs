//! The `roomcast` binary: parse the command line, load the configuration and build its plan
//! (which validates it), serve until SIGTERM or SIGINT, then drain.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use roomcast_server::{auth, config, Config, Plan, PlanError, Server};

/// The secrets `--dev` made up, printed with a ready token.
struct DevSecrets {
    secret: String,
    api_key: String,
    /// The secret came from the configuration, not from `--dev`.
    configured: bool,
}

/// A real-time gateway: authenticated WebSocket and Socket.IO fan-out for multi-tenant apps.
#[derive(Debug, Parser)]
#[command(name = "roomcast", version)]
struct Cli {
    /// TOML configuration file; `ROOMCAST_*` environment variables override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Development mode: a random JWT secret and API key (unless configured), and a ready token
    /// printed at start.
    #[arg(long)]
    dev: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = Config::load(cli.config.as_deref(), config::process_env())
        .map_err(PlanError::from)
        .and_then(|config| {
            let (config, dev) = if cli.dev {
                let configured = !config.auth.secret.is_empty();
                let (config, secret) = config.into_dev();
                let configured = configured && config.auth.secret == secret;
                let api_key = config.api.keys.first().cloned().unwrap_or_default();
                (
                    config,
                    Some(DevSecrets {
                        secret,
                        api_key,
                        configured,
                    }),
                )
            } else {
                (config, None)
            };
            // Validating is building the plan the server then starts from.
            Plan::build(&config).map(|plan| (plan, dev))
        });
    let (plan, dev) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("roomcast: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROOMCAST_LOG_FILTER")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&plan.config().log.level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("roomcast: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(plan, dev)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomcast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(plan: Plan, dev: Option<DevSecrets>) -> anyhow::Result<()> {
    let server = Server::bind_plan(plan).await?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, "listening");
    // A machine-readable line for scripts and tests that bind port 0.
    println!("roomcast listening on {addr}");
    if let Some(dev) = dev {
        let inbox = server.app().config.inbox.as_ref();
        let inbox = inbox.map(|i| roomcast_server::config::redacted_url(&i.database));
        print_dev_help(&addr.to_string(), &dev, inbox.as_deref());
    }
    server.run(shutdown_signal()).await
}

fn print_dev_help(addr: &str, dev: &DevSecrets, inbox: Option<&str>) {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 24 * 3600;
    let token = auth::mint_hs256(
        dev.secret.as_bytes(),
        &serde_json::json!({"sub": "7", "tenant_id": "acme", "exp": exp}),
    );
    println!(
        "\ndevelopment mode: {origin}\n\
         \n  token (user 7, tenant acme, 24 h):\n    {token}\n\
         \n  connect (or point any WebSocket client at ws://{addr}/ws?token=<token>):\n    \
         cargo run -p roomcast-examples --bin native-client -- ws://{addr}/ws {token}\n\
         \n  publish:\n    curl -s -X POST http://{addr}/api/publish \\\n      \
         -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n      \
         -d '{{\"tenant\":\"acme\",\"rooms\":[\"tenant:acme\"],\"event\":\"hello\",\"data\":{{\"msg\":\"hi\"}}}}'\n",
        key = dev.api_key,
        origin = if dev.configured {
            "the configured JWT secret"
        } else {
            "secrets are random and last until exit"
        }
    );
    if let Some(database) = inbox {
        println!(
            "  notify user 7 (the inbox, kept in {database}):\n    \
             curl -s -X POST http://{addr}/api/inbox/notifications \\\n      \
             -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n      \
             -d '{{\"tenant\":\"acme\",\"user\":\"7\",\"title\":\"Hello\",\"priority\":\"high\"}}'\n",
            key = dev.api_key,
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
