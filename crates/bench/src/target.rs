//! The servers measured: Roomcast over its native protocol and over Socket.IO, the two peers
//! in `bench/peers/` (Node's socket.io, socketioxide), and the ceiling (`bench/peers/ceiling`,
//! the least any server must do to deliver the fan-out, to read the others against). Each is
//! started fresh for each scenario on 127.0.0.1 with a throwaway token secret, and takes
//! publishes at `POST /api/publish` in Roomcast's shape. In a cluster run each is started as
//! several processes sharing one Redis (Roomcast's `[cluster]`, the peers' Redis adapters),
//! under a key prefix of the run's own that is cleared at the end.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rand::distr::{Alphanumeric, SampleString};

use crate::publisher::PublishApi;
use crate::redis::{Redis, RedisInfo, RedisUrl};
use crate::server::{Launch, ServerProcess};
use crate::stats::Recorder;
use crate::sub::SubDialer;
use crate::wire::{Layout, Protocol, Tokens};
use crate::worker::TOKEN_TTL;

/// Time allowed for a server to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The environment variable carrying the token secret to the peers.
const PEER_SECRET_ENV: &str = "BENCH_JWT_SECRET";
/// The environment variables turning on a peer's Redis adapter, and naming its channels.
const PEER_REDIS_URL_ENV: &str = "BENCH_REDIS_URL";
const PEER_REDIS_KEY_ENV: &str = "BENCH_REDIS_KEY";

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    RoomcastNative,
    /// Roomcast's native protocol with every room keeping its last 100 events in memory
    /// (`[history]`): what keeping history costs. Measured in the fan-out.
    RoomcastNativeHistory,
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
    const KNOWN: [Target; 6] = [
        Target::RoomcastNative,
        Target::RoomcastNativeHistory,
        Target::RoomcastSocketIo,
        Target::Socketioxide,
        Target::NodeSocketIo,
        Target::Ceiling,
    ];

    /// The command-line and results name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::RoomcastNative => "roomcast-native",
            Target::RoomcastNativeHistory => "roomcast-native-history",
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
            Target::RoomcastNative | Target::RoomcastNativeHistory | Target::Ceiling => {
                Protocol::Native
            }
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

/// A cluster to start: how many processes, and the Redis they share.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSpec {
    pub(crate) nodes: usize,
    /// `redis://[host][:port][/db]`.
    pub(crate) redis: String,
    /// Settings every node gets on top of the target's own, as environment variables
    /// (Roomcast's `ROOMCAST_<SECTION>__<KEY>`): what a scenario measures beyond the plain
    /// cluster.
    pub(crate) settings: Vec<(String, String)>,
}

/// The Redis a running cluster shares, and the run's own prefix of keys and channels in it.
#[derive(Debug, Clone)]
pub(crate) struct SharedRedis {
    url: RedisUrl,
    pub(crate) prefix: String,
    pub(crate) info: RedisInfo,
}

/// A started server under test: one process, or the nodes of a cluster.
pub(crate) struct Bed {
    pub(crate) target: Target,
    /// The process publishes are posted to: the only one, or a cluster's first node.
    pub(crate) server: ServerProcess,
    /// A cluster's other nodes.
    pub(crate) nodes: Vec<ServerProcess>,
    /// The Redis a cluster shares.
    pub(crate) redis: Option<SharedRedis>,
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
        Bed::start_with(target, programs, sources, None).await
    }

    /// Starts `target` as `cluster.nodes` processes sharing `cluster.redis`, under a key
    /// prefix of this run's own. `Ok(Err(_))` also when the Redis does not answer.
    pub(crate) async fn start_cluster(
        target: Target,
        programs: &Programs,
        sources: &[IpAddr],
        cluster: &ClusterSpec,
    ) -> Result<Result<Bed, Unavailable>> {
        Bed::start_with(target, programs, sources, Some(cluster)).await
    }

    async fn start_with(
        target: Target,
        programs: &Programs,
        sources: &[IpAddr],
        cluster: Option<&ClusterSpec>,
    ) -> Result<Result<Bed, Unavailable>> {
        let secret = random_text();
        let api_key = random_text();
        let launch = match launch(target, programs, &secret, &api_key) {
            Ok(launch) => launch,
            Err(unavailable) => return Ok(Err(unavailable)),
        };
        let (launches, redis) = match cluster {
            None => (vec![launch], None),
            Some(cluster) => {
                let redis = match shared_redis(&cluster.redis).await {
                    Ok(redis) => redis,
                    Err(unavailable) => return Ok(Err(unavailable)),
                };
                let mut launches = Vec::with_capacity(cluster.nodes);
                for node in 0..cluster.nodes.max(1) {
                    let mut launch = launch.clone();
                    match cluster_env(target, &cluster.redis, &redis.prefix, node) {
                        Ok(env) => launch.env.extend(env),
                        Err(unavailable) => return Ok(Err(unavailable)),
                    }
                    launch.env.extend(cluster.settings.iter().cloned());
                    launches.push(launch);
                }
                (launches, Some(redis))
            }
        };
        let mut started = Vec::with_capacity(launches.len());
        for (i, launch) in launches.iter().enumerate() {
            eprintln!(
                "starting {}{} ({})",
                target.name(),
                if launches.len() > 1 {
                    format!(" node {}", i + 1)
                } else {
                    String::new()
                },
                launch.program.display()
            );
            match ServerProcess::launch(launch, START_TIMEOUT).await {
                Ok(server) => started.push(server),
                Err(e) => {
                    for server in started {
                        let _ = server.kill().await;
                    }
                    if let Some(redis) = &redis {
                        clear(redis).await;
                    }
                    return Err(e);
                }
            }
        }
        let mut started = started.into_iter();
        let server = started
            .next()
            .ok_or_else(|| anyhow!("no server process was started"))?;
        let bed = Bed {
            target,
            server,
            nodes: started.collect(),
            redis,
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

    /// Every process of the server, the one publishes go to first.
    pub(crate) fn processes(&self) -> impl Iterator<Item = &ServerProcess> {
        std::iter::once(&self.server).chain(&self.nodes)
    }

    /// The addresses subscribers connect to (every node of a cluster).
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.processes().map(ServerProcess::addr).collect()
    }

    /// Fails when any process of the server is no longer running.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        self.server.ensure_running()?;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.ensure_running()
                .with_context(|| format!("node {}", i + 2))?;
        }
        Ok(())
    }

    /// Roomcast's Socket.IO layer may not be mounted yet: one connection tells.
    async fn probe_socket_io(&self, sources: &[IpAddr]) -> Result<(), Unavailable> {
        let dialer = SubDialer {
            protocol: Protocol::SocketIo,
            servers: vec![self.server.addr()],
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

    /// Kills the server (every node), then removes a cluster's keys from the shared Redis.
    pub(crate) async fn stop(self) -> Result<()> {
        let mut result = self.server.kill().await;
        for node in self.nodes {
            let killed = node.kill().await;
            if result.is_ok() {
                result = killed;
            }
        }
        if let Some(redis) = &self.redis {
            clear(redis).await;
        }
        result
    }
}

impl SharedRedis {
    /// How many of the run's keys start with `<prefix>:<under>`.
    pub(crate) async fn count_keys(&self, under: &str) -> Result<u64> {
        Redis::connect(&self.url)
            .await?
            .count_prefixed(&format!("{}:{under}", self.prefix))
            .await
    }
}

/// The shared Redis, if it answers, with a key prefix for this run alone.
async fn shared_redis(url: &str) -> Result<SharedRedis, Unavailable> {
    let unavailable = |e: anyhow::Error| Unavailable(format!("no Redis at {url}: {e:#}"));
    let parsed = RedisUrl::parse(url).map_err(unavailable)?;
    let mut redis = Redis::connect(&parsed).await.map_err(unavailable)?;
    let mut info = redis.info().await.map_err(unavailable)?;
    // The process id is of use only when it is a redis-server on this machine, in `/proc`.
    info.pid = info.pid.filter(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.starts_with("redis-server"))
    });
    let prefix = format!(
        "rc-bench-{}-{}",
        crate::wire::unix_now().as_secs(),
        Alphanumeric
            .sample_string(&mut rand::rng(), 8)
            .to_lowercase()
    );
    Ok(SharedRedis {
        url: parsed,
        prefix,
        info,
    })
}

/// Removes the run's keys; a failure is reported, not fatal: the figures are taken.
async fn clear(redis: &SharedRedis) {
    let deleted = async {
        Redis::connect(&redis.url)
            .await?
            .delete_prefixed(&format!("{}:", redis.prefix))
            .await
    };
    match deleted.await {
        Ok(0) => {}
        Ok(n) => eprintln!("removed the run's {n} keys `{}:*`", redis.prefix),
        Err(e) => eprintln!(
            "warning: cannot remove the run's keys `{}:*`: {e:#}",
            redis.prefix
        ),
    }
}

/// The environment that makes process `node` of `target` one node of a cluster over `redis`
/// under `prefix`.
fn cluster_env(
    target: Target,
    redis: &str,
    prefix: &str,
    node: usize,
) -> Result<Vec<(String, String)>, Unavailable> {
    let pairs = match target {
        Target::RoomcastNative | Target::RoomcastNativeHistory | Target::RoomcastSocketIo => vec![
            ("ROOMCAST_CLUSTER__REDIS", redis.to_string()),
            ("ROOMCAST_CLUSTER__PREFIX", prefix.to_string()),
            ("ROOMCAST_CLUSTER__NODE_ID", format!("n{}", node + 1)),
        ],
        Target::Socketioxide | Target::NodeSocketIo => vec![
            (PEER_REDIS_URL_ENV, redis.to_string()),
            (PEER_REDIS_KEY_ENV, prefix.to_string()),
        ],
        Target::Ceiling => {
            return Err(Unavailable(
                "the ceiling is one process: it has no cluster mode".into(),
            ))
        }
    };
    Ok(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn launch(
    target: Target,
    programs: &Programs,
    secret: &str,
    api_key: &str,
) -> Result<Launch, Unavailable> {
    match target {
        Target::RoomcastNative | Target::RoomcastNativeHistory | Target::RoomcastSocketIo => {
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
            let mut env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if target == Target::RoomcastNativeHistory {
                env.push((
                    "ROOMCAST_HISTORY__ROOMS".into(),
                    r#"[{ pattern = "*", max_events = 100, max_age_ms = 300000 }]"#.into(),
                ));
            }
            Ok(Launch {
                program,
                args: Vec::new(),
                env,
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

/// An error for a target that failed mid-run, with the server's last words (every node's).
pub(crate) fn with_server_output(e: anyhow::Error, bed: &mut Bed) -> anyhow::Error {
    let state = match bed.ensure_running() {
        Ok(()) => String::new(),
        Err(exited) => format!("\n{exited:#}"),
    };
    let mut output = bed.server.output_report();
    for (i, node) in bed.nodes.iter().enumerate() {
        let report = node.output_report();
        if !report.is_empty() {
            output.push_str(&format!("\nnode {}:{report}", i + 2));
        }
    }
    anyhow!("{e:#}{state}{output}")
}
