//! The servers measured: Roomcast over its native protocol and over Socket.IO, the two peers
//! in `bench/peers/` (Node's socket.io, socketioxide), and the ceiling (`bench/peers/ceiling`,
//! the least any server must do to deliver the fan-out, to read the others against). Each is
//! started fresh for each scenario on 127.0.0.1 with a throwaway token secret, and takes
//! publishes at `POST /api/publish` in Roomcast's shape.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use rand::distr::{Alphanumeric, SampleString};

use crate::publisher::PublishApi;
use crate::server::{Launch, ServerProcess};
use crate::stats::Recorder;
use crate::sub::SubDialer;
use crate::wire::{Layout, Protocol, Tokens};
use crate::worker::TOKEN_TTL;

/// Time allowed for a server to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The environment variable carrying the token secret to the peers.
const PEER_SECRET_ENV: &str = "BENCH_JWT_SECRET";

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    RoomcastNative,
    RoomcastSocketIo,
    Socketioxide,
    NodeSocketIo,
    /// No rooms, no authentication: every publish to every native subscriber, the frame built
    /// once and written with ideal batching. Measured where every subscriber is in one room.
    Ceiling,
}

impl Target {
    /// The servers under test: what `all` means.
    pub(crate) const ALL: [Target; 4] = [
        Target::RoomcastNative,
        Target::RoomcastSocketIo,
        Target::Socketioxide,
        Target::NodeSocketIo,
    ];
    /// Every name `--targets` takes.
    const KNOWN: [Target; 5] = [
        Target::RoomcastNative,
        Target::RoomcastSocketIo,
        Target::Socketioxide,
        Target::NodeSocketIo,
        Target::Ceiling,
    ];

    /// The command-line and results name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::RoomcastNative => "roomcast-native",
            Target::RoomcastSocketIo => "roomcast-socketio",
            Target::Socketioxide => "socketioxide",
            Target::NodeSocketIo => "node-socketio",
            Target::Ceiling => "ceiling",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Target> {
        Target::KNOWN.into_iter().find(|t| t.name() == name)
    }

    pub(crate) fn protocol(self) -> Protocol {
        match self {
            Target::RoomcastNative | Target::Ceiling => Protocol::Native,
            Target::RoomcastSocketIo | Target::Socketioxide | Target::NodeSocketIo => {
                Protocol::SocketIo
            }
        }
    }
}

/// Parses `all` or a comma-separated list of target names.
pub(crate) fn parse_targets(text: &str) -> Result<Vec<Target>, String> {
    if text == "all" {
        return Ok(Target::ALL.to_vec());
    }
    text.split(',')
        .map(|name| {
            Target::from_name(name.trim()).ok_or_else(|| {
                let names: Vec<&str> = Target::KNOWN.iter().map(|t| t.name()).collect();
                format!("unknown target `{name}` (known: all, {})", names.join(", "))
            })
        })
        .collect()
}

/// Where the servers' programs are; defaults are this workspace's build outputs.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Programs {
    /// The roomcast binary.
    #[arg(long, value_name = "PATH")]
    pub(crate) roomcast_bin: Option<PathBuf>,
    /// The socketioxide peer binary (`bench/peers/socketioxide`).
    #[arg(long, value_name = "PATH")]
    pub(crate) socketioxide_bin: Option<PathBuf>,
    /// The ceiling binary (`bench/peers/ceiling`).
    #[arg(long, value_name = "PATH")]
    pub(crate) ceiling_bin: Option<PathBuf>,
    /// The Node peer's directory (`bench/peers/node-socketio`, with `npm ci` done).
    #[arg(long, value_name = "DIR")]
    pub(crate) node_peer_dir: Option<PathBuf>,
    /// The node binary.
    #[arg(long, value_name = "PATH", default_value = "node")]
    pub(crate) node: PathBuf,
}

impl Programs {
    fn workspace() -> PathBuf {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest
            .ancestors()
            .nth(2)
            .unwrap_or(manifest)
            .to_path_buf()
    }

    pub(crate) fn roomcast(&self) -> PathBuf {
        self.roomcast_bin
            .clone()
            .unwrap_or_else(|| Self::workspace().join("target/release/roomcast"))
    }

    pub(crate) fn socketioxide(&self) -> PathBuf {
        self.socketioxide_bin
            .clone()
            .unwrap_or_else(|| Self::workspace().join("target/peers/release/socketioxide-peer"))
    }

    pub(crate) fn ceiling(&self) -> PathBuf {
        self.ceiling_bin
            .clone()
            .unwrap_or_else(|| Self::workspace().join("target/peers/release/ceiling-peer"))
    }

    pub(crate) fn node_dir(&self) -> PathBuf {
        self.node_peer_dir
            .clone()
            .unwrap_or_else(|| Self::workspace().join("bench/peers/node-socketio"))
    }
}

/// A server that could not be measured, and why: reported, not an error of the run.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable(pub(crate) String);

/// A started server under test.
pub(crate) struct Bed {
    pub(crate) target: Target,
    pub(crate) server: ServerProcess,
    pub(crate) secret: String,
    api_key: String,
}

impl Bed {
    /// Starts `target`. `Ok(Err(_))` when the target cannot be measured on this machine (a
    /// peer not built, Roomcast without Socket.IO): the scenario reports it and goes on.
    pub(crate) async fn start(
        target: Target,
        programs: &Programs,
        sources: &[IpAddr],
    ) -> Result<Result<Bed, Unavailable>> {
        let secret = random_text();
        let api_key = random_text();
        let launch = match launch(target, programs, &secret, &api_key) {
            Ok(launch) => launch,
            Err(unavailable) => return Ok(Err(unavailable)),
        };
        eprintln!("starting {} ({})", target.name(), launch.program.display());
        let server = ServerProcess::launch(&launch, START_TIMEOUT).await?;
        let bed = Bed {
            target,
            server,
            secret,
            api_key,
        };
        if target == Target::RoomcastSocketIo {
            if let Err(reason) = bed.probe_socket_io(sources).await {
                let _ = bed.stop().await;
                return Ok(Err(reason));
            }
        }
        Ok(Ok(bed))
    }

    /// Roomcast's Socket.IO layer may not be mounted yet: one connection tells.
    async fn probe_socket_io(&self, sources: &[IpAddr]) -> Result<(), Unavailable> {
        let dialer = SubDialer {
            protocol: Protocol::SocketIo,
            server: self.server.addr(),
            tokens: Tokens::new(&self.secret, Layout { rooms: 1 }, TOKEN_TTL),
            sources: sources.to_vec(),
            recorder: Arc::new(Recorder::default()),
        };
        let probe = tokio::time::timeout(Duration::from_secs(3), dialer.open(0));
        match probe.await {
            Ok(Ok(mut ws)) => {
                let _ = ws.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(Unavailable(format!(
                "Roomcast does not speak Socket.IO at /socket.io/ yet ({e})"
            ))),
            Err(_) => Err(Unavailable(
                "Roomcast does not speak Socket.IO at /socket.io/ yet (no handshake within 3 s)"
                    .into(),
            )),
        }
    }

    /// The publish trigger.
    pub(crate) fn publish_api(&self) -> PublishApi {
        PublishApi {
            addr: self.server.addr(),
            path: "/api/publish".into(),
            bearer: Some(self.api_key.clone()),
        }
    }

    /// Kills the server.
    pub(crate) async fn stop(self) -> Result<()> {
        self.server.kill().await
    }
}

fn launch(
    target: Target,
    programs: &Programs,
    secret: &str,
    api_key: &str,
) -> Result<Launch, Unavailable> {
    match target {
        Target::RoomcastNative | Target::RoomcastSocketIo => {
            let program = programs.roomcast();
            if !program.is_file() {
                return Err(Unavailable(format!(
                    "{} not found: `cargo build --release -p roomcast-server`",
                    program.display()
                )));
            }
            let env = [
                ("ROOMCAST_LISTEN", "127.0.0.1:0"),
                ("ROOMCAST_JWT_SECRET", secret),
                ("ROOMCAST_API_KEY", api_key),
                ("ROOMCAST_LIMITS__MAX_CONNECTIONS", "200000"),
                ("ROOMCAST_ROOMS__AUTO_JOIN", r#"["{room}"]"#),
                ("ROOMCAST_LOG__LEVEL", "warn"),
            ];
            Ok(Launch {
                program,
                args: Vec::new(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ready: "roomcast listening on ".into(),
            })
        }
        Target::Socketioxide => {
            let program = programs.socketioxide();
            if !program.is_file() {
                return Err(Unavailable(format!(
                    "{} not found: `cargo build --release --manifest-path \
                     bench/peers/socketioxide/Cargo.toml --target-dir target/peers`",
                    program.display()
                )));
            }
            Ok(Launch {
                program,
                args: vec!["0".into()],
                env: vec![(PEER_SECRET_ENV.into(), secret.into())],
                ready: "socketioxide listening on ".into(),
            })
        }
        Target::Ceiling => {
            let program = programs.ceiling();
            if !program.is_file() {
                return Err(Unavailable(format!(
                    "{} not found: `cargo build --release --manifest-path \
                     bench/peers/ceiling/Cargo.toml --target-dir target/peers`",
                    program.display()
                )));
            }
            Ok(Launch {
                program,
                args: vec!["0".into()],
                env: Vec::new(),
                ready: "ceiling listening on ".into(),
            })
        }
        Target::NodeSocketIo => {
            let dir = programs.node_dir();
            let script = dir.join("server.js");
            if !dir.join("node_modules/socket.io").is_dir() {
                return Err(Unavailable(format!(
                    "{} has no node_modules/socket.io: run `npm ci` there",
                    dir.display()
                )));
            }
            Ok(Launch {
                program: programs.node.clone(),
                args: vec![script.display().to_string(), "0".into()],
                env: vec![(PEER_SECRET_ENV.into(), secret.into())],
                ready: "node-socketio listening on ".into(),
            })
        }
    }
}

/// A throwaway secret: 48 alphanumeric characters, about 285 bits.
pub(crate) fn random_text() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 48)
}

/// `127.0.0.1` to `127.0.0.n`: the loopback source addresses connections are spread over.
pub(crate) fn loopback_sources(n: usize) -> Vec<IpAddr> {
    (1..=n.clamp(1, 254))
        .map(|i| IpAddr::from([127, 0, 0, i as u8]))
        .collect()
}

/// An error for a target that failed mid-run, with the server's last words.
pub(crate) fn with_server_output(e: anyhow::Error, bed: &mut Bed) -> anyhow::Error {
    let state = match bed.server.ensure_running() {
        Ok(()) => String::new(),
        Err(exited) => format!("\n{exited:#}"),
    };
    anyhow!("{e:#}{state}{}", bed.server.output_report())
}
