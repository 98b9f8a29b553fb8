//! The `roomcast` binary: parse the command line, load the configuration and build its plan
//! (which validates it), serve until SIGTERM or SIGINT, then drain. Two subcommands help
//! operators: `token` mints a test token with the configured secret, `check-config` validates
//! the configuration and prints it with its secrets hidden.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use roomcast_server::token::{self, TokenRequest};
use roomcast_server::{auth, config, startup, Config, Plan, PlanError, Server};

/// The secrets `--dev` made up, printed with a ready token.
struct DevSecrets {
    /// A token for user 7 of tenant acme, valid 24 h.
    token: String,
    api_key: String,
    /// The secret came from the configuration, not from `--dev`.
    configured: bool,
}

/// A real-time gateway: authenticated WebSocket and Socket.IO fan-out for multi-tenant apps.
///
/// Without a subcommand, runs the server.
#[derive(Debug, Parser)]
#[command(name = "roomcast", version)]
struct Cli {
    /// TOML configuration file; `ROOMCAST_*` environment variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Development mode: a random JWT secret and API key (unless configured), and a ready token
    /// printed at start.
    #[arg(long)]
    dev: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints a token signed with the configured secret (HS256, HS384 or HS512), for tests.
    Token {
        /// The user id (the `auth.user_claim` claim).
        #[arg(long)]
        sub: String,
        /// The tenant (the `auth.tenant_claim` claim); required unless `auth.default_tenant`
        /// is set.
        #[arg(long)]
        tenant: Option<String>,
        /// A further claim, `name=value`; a value that parses as JSON is that JSON
        /// (`roles='["admin"]'`), else a string. Repeatable; replaces a claim of the same name.
        #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = token::parse_claim)]
        claims: Vec<(String, serde_json::Value)>,
        /// How long the token is valid: seconds, or a number with a unit (90m, 24h, 7d).
        #[arg(long, default_value = "1h", value_parser = token::parse_ttl)]
        ttl: Duration,
    },
    /// Validates the configuration (as the server does, without binding or connecting) and
    /// prints it as TOML, defaults included, with every secret hidden.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run_server(cli.config.as_deref(), cli.dev),
        Some(_) if cli.dev => Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--dev runs the server: it takes no subcommand",
            )
            .exit(),
        Some(Command::Token {
            sub,
            tenant,
            claims,
            ttl,
        }) => print_token(
            cli.config.as_deref(),
            &TokenRequest {
                user: sub,
                tenant,
                ttl,
                claims,
            },
        ),
        Some(Command::CheckConfig) => check_config(cli.config.as_deref()),
    }
}

fn run_server(path: Option<&Path>, dev: bool) -> ExitCode {
    let loaded = Config::load(path, config::process_env())
        .map_err(PlanError::from)
        .and_then(|config| {
            let (config, dev) = if dev {
                let auth = &config.auth;
                let had_key = !auth.secret.is_empty() || !auth.public_key_file.is_empty();
                let (config, secret) = config.into_dev();
                let configured = had_key && config.auth.secret == secret;
                if had_key && !configured {
                    eprintln!(
                        "roomcast: --dev verifies tokens with a random HS256 secret instead of \
                         the configured key (auth.algorithm, auth.secret, auth.public_key_file): \
                         tokens made for this configuration are refused until you run without \
                         --dev"
                    );
                }
                let api_key = config.api.keys.first().cloned().unwrap_or_default();
                // With the configured claim names, issuer and audience, so that it is accepted.
                let request = roomcast_server::token::TokenRequest {
                    user: "7".into(),
                    tenant: Some("acme".into()),
                    ttl: std::time::Duration::from_secs(24 * 3600),
                    claims: Vec::new(),
                };
                let now = auth::now_unix();
                let token =
                    roomcast_server::token::mint(&config.auth, &request, now).unwrap_or_default();
                (
                    config,
                    Some(DevSecrets {
                        token,
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
    startup::init_logging(&plan.config().log);
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

/// `roomcast token`: the token alone on stdout, or the reason on stderr and exit 2.
fn print_token(path: Option<&Path>, request: &TokenRequest) -> ExitCode {
    let minted = Config::load(path, config::process_env())
        .map_err(|e| e.to_string())
        .and_then(|config| {
            token::mint(&config.auth, request, auth::now_unix()).map_err(|e| e.to_string())
        });
    match minted {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roomcast token: {e}");
            ExitCode::from(2)
        }
    }
}

/// `roomcast check-config`: the effective configuration on stdout, or the first problem on
/// stderr and exit 2.
fn check_config(path: Option<&Path>) -> ExitCode {
    let checked = Config::load(path, config::process_env())
        .map_err(PlanError::from)
        .and_then(|config| {
            // Warnings of the checks (a short secret) reach stderr as the server would log them.
            startup::init_logging(&config.log);
            Plan::build(&config).map(|_| config)
        })
        .and_then(|config| config.to_masked_toml().map_err(PlanError::from));
    match checked {
        Ok(text) => {
            let file = path.map_or(String::new(), |p| format!("{}, then ", p.display()));
            println!(
                "# roomcast {}: the configuration is valid. The defaults, then {file}the\n\
                 # ROOMCAST_* environment; secrets read \"{}\" and URLs show no credentials.\n",
                env!("CARGO_PKG_VERSION"),
                config::HIDDEN
            );
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roomcast check-config: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(plan: Plan, dev: Option<DevSecrets>) -> anyhow::Result<()> {
    let server = Server::bind_plan(plan).await?;
    let addr = server.local_addr()?;
    server.log_startup()?;
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
    let token = &dev.token;
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
