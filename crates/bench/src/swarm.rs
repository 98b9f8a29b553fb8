//! The parent's side of the fleet processes: it splits a range of subscriber ids into shares
//! small enough for one process's open files, starts one `roomcast-bench fleet` per share (all
//! opening at once, the connection rate divided among them), and then steers them with one
//! JSON command per line, merging their answers.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::future::try_join_all;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::fleet::Closed;
use crate::stats::{Latency, PhaseStats};
use crate::wire::Protocol;
use crate::worker::SECRET_ENV;

/// Time allowed for a fleet's answer to a command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What every fleet process of a swarm shares.
#[derive(Debug, Clone)]
pub(crate) struct SwarmSpec {
    pub(crate) protocol: Protocol,
    /// The server's addresses: one, or the nodes of a cluster, which subscriber `id` takes in
    /// turn (`id` modulo their count).
    pub(crate) servers: Vec<SocketAddr>,
    pub(crate) rooms: usize,
    pub(crate) secret: String,
    /// Connection attempts per second, for the whole swarm.
    pub(crate) rate: f64,
    /// Handshakes in flight, for the whole swarm.
    pub(crate) in_flight: usize,
    pub(crate) timeout: Duration,
    pub(crate) sources: Vec<IpAddr>,
    /// Most subscribers in one process.
    pub(crate) per_process: usize,
}

/// One fleet process.
struct Member {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    ids: Range<usize>,
}

impl Member {
    async fn send(&mut self, command: &Value) -> Result<()> {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .with_context(|| format!("fleet {:?} is gone", self.ids))
    }

    async fn answer(&mut self, timeout: Duration) -> Result<Value> {
        let ids = self.ids.clone();
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .map_err(|_| {
                anyhow!(
                    "fleet {ids:?} did not answer within {} s",
                    timeout.as_secs()
                )
            })?
            .with_context(|| format!("reading from fleet {ids:?}"))?
            .ok_or_else(|| anyhow!("fleet {ids:?} exited (its error is above)"))?;
        let value: Value =
            serde_json::from_str(&line).with_context(|| format!("fleet {ids:?} wrote `{line}`"))?;
        if value["type"] == "error" {
            bail!(
                "fleet {ids:?}: {}",
                value["message"].as_str().unwrap_or("?")
            );
        }
        Ok(value)
    }

    async fn ask(&mut self, command: Value) -> Result<Value> {
        self.send(&command).await?;
        self.answer(ANSWER_TIMEOUT).await
    }
}

/// How an [`Swarm::open`] went.
#[derive(Debug, Clone)]
pub(crate) struct SwarmOpened {
    pub(crate) count: usize,
    pub(crate) processes: usize,
    /// From the first start to the last process's last welcome.
    pub(crate) secs: f64,
    pub(crate) handshakes: Latency,
}

/// Arrivals of one phase, summed over the swarm.
#[derive(Debug, Clone)]
pub(crate) struct SwarmReport {
    pub(crate) stats: PhaseStats,
    /// Connections the server ended so far.
    pub(crate) dropped: usize,
    pub(crate) first_drop: Option<String>,
}

/// Fleet processes holding subscribers.
pub(crate) struct Swarm {
    spec: SwarmSpec,
    members: Vec<Member>,
}

impl Swarm {
    pub(crate) fn new(spec: SwarmSpec) -> Swarm {
        Swarm {
            spec,
            members: Vec::new(),
        }
    }

    /// Process ids of the fleets, for their CPU time.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|m| m.child.id()).collect()
    }

    /// Opens subscribers `ids` in new fleet processes.
    pub(crate) async fn open(&mut self, ids: Range<usize>) -> Result<SwarmOpened> {
        let started = tokio::time::Instant::now();
        let per = self.spec.per_process.max(1);
        let shares: Vec<Range<usize>> = (ids.start..ids.end)
            .step_by(per)
            .map(|start| start..(start + per).min(ids.end))
            .collect();
        let n = shares.len().max(1);
        let mut new = Vec::with_capacity(n);
        for share in shares {
            new.push(self.spawn(share, n)?);
        }
        // Generous: the rate bounds the time, and a slow server shows up in the handshake
        // latencies, not as a timeout here.
        let wait = Duration::from_secs_f64(ids.len() as f64 / self.spec.rate)
            + self.spec.timeout
            + Duration::from_secs(30);
        let answers = try_join_all(new.iter_mut().map(|m| m.answer(wait))).await?;
        let mut handshakes = PhaseStats::default();
        let mut count = 0;
        for answer in &answers {
            count += answer["count"].as_u64().unwrap_or(0) as usize;
            handshakes.merge(&PhaseStats::from_json(&answer["handshakes"])?);
        }
        self.members.extend(new);
        Ok(SwarmOpened {
            count,
            processes: n,
            secs: started.elapsed().as_secs_f64(),
            handshakes: handshakes.latency(),
        })
    }

    fn spawn(&self, ids: Range<usize>, shares: usize) -> Result<Member> {
        let spec = &self.spec;
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("roomcast-bench"));
        let sources: Vec<String> = spec.sources.iter().map(IpAddr::to_string).collect();
        let servers: Vec<String> = spec.servers.iter().map(SocketAddr::to_string).collect();
        let mut child = Command::new(&exe)
            .arg("fleet")
            .args(["--server", &servers.join(",")])
            .args(["--protocol", spec.protocol.name()])
            .args(["--first", &ids.start.to_string()])
            .args(["--count", &ids.len().to_string()])
            .args(["--rooms", &spec.rooms.to_string()])
            .args(["--rate", &(spec.rate / shares as f64).to_string()])
            .args(["--in-flight", &(spec.in_flight / shares).max(1).to_string()])
            .args(["--timeout-secs", &spec.timeout.as_secs().max(1).to_string()])
            .args(["--sources", &sources.join(",")])
            .env(SECRET_ENV, &spec.secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} fleet", exe.display()))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        Ok(Member {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            ids,
        })
    }

    /// Messages of `phase` received so far, and connections dropped.
    pub(crate) async fn count(&mut self, phase: u32) -> Result<(u64, usize)> {
        let command = json!({"cmd": "count", "phase": phase});
        let answers = try_join_all(self.members.iter_mut().map(|m| m.ask(command.clone()))).await?;
        let received = answers
            .iter()
            .map(|a| a["received"].as_u64().unwrap_or(0))
            .sum();
        let dropped = answers
            .iter()
            .map(|a| a["dropped"].as_u64().unwrap_or(0) as usize)
            .sum();
        Ok((received, dropped))
    }

    /// The merged stats of `phase`; the fleets forget them.
    pub(crate) async fn report(&mut self, phase: u32) -> Result<SwarmReport> {
        let command = json!({"cmd": "report", "phase": phase});
        let answers = try_join_all(self.members.iter_mut().map(|m| m.ask(command.clone()))).await?;
        let mut report = SwarmReport {
            stats: PhaseStats::default(),
            dropped: 0,
            first_drop: None,
        };
        for answer in &answers {
            report.stats.merge(&PhaseStats::from_json(answer)?);
            report.dropped += answer["dropped"].as_u64().unwrap_or(0) as usize;
            if report.first_drop.is_none() {
                report.first_drop = answer["first_drop"].as_str().map(str::to_string);
            }
        }
        Ok(report)
    }

    /// Closes every connection and waits for the fleet processes to exit.
    pub(crate) async fn close(mut self) -> Closed {
        let command = json!({"cmd": "close"});
        let answers = futures_util::future::join_all(self.members.iter_mut().map(|m| async {
            m.send(&command).await.ok()?;
            m.answer(ANSWER_TIMEOUT).await.ok()
        }))
        .await;
        let mut closed = Closed::default();
        for answer in answers.into_iter().flatten() {
            closed.clean += answer["clean"].as_u64().unwrap_or(0) as usize;
            closed.failed += answer["failed"].as_u64().unwrap_or(0) as usize;
            closed.dropped += answer["dropped"].as_u64().unwrap_or(0) as usize;
        }
        for member in &mut self.members {
            let _ = tokio::time::timeout(Duration::from_secs(5), member.child.wait()).await;
        }
        closed
    }
}
