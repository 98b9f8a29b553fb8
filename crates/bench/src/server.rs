//! The server under test as a child process: started with the scenario's environment on an
//! ephemeral port, its address read from its `<name> listening on <addr>` line on stdout (the
//! peers print the same kind of line), its output kept for the report, and killed on drop so
//! that no error path leaves it running.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The line prefix the server prints once it is bound.
const LISTENING: &str = "roomcast listening on ";
/// Lines of server output kept for error reports.
const TAIL_LINES: usize = 40;

/// The last lines the server wrote, and how many there were in all.
#[derive(Debug, Default)]
struct OutputLog {
    tail: VecDeque<String>,
    total: usize,
}

/// A std mutex: it is held only to push or copy a few lines, never across an `.await`.
type SharedLog = Arc<Mutex<OutputLog>>;

/// How to start a server: the program, its arguments, its environment besides the inherited one
/// (less every `ROOMCAST_*` variable), and the prefix of its ready line.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) program: std::path::PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    /// The line prefix the server prints once it is bound, before its address.
    pub(crate) ready: String,
}

/// A running server.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    log: SharedLog,
}

impl ServerProcess {
    /// Starts `bin` with exactly the `ROOMCAST_*` variables in `env` and waits up to `timeout`
    /// for its listening line.
    pub(crate) async fn start(
        bin: &Path,
        env: &[(&str, String)],
        timeout: Duration,
    ) -> Result<ServerProcess> {
        if !bin.is_file() {
            bail!(
                "server binary {} not found: build it first with \
                 `cargo build --release -p roomcast-server`, or pass --server-bin PATH",
                bin.display()
            );
        }
        let launch = Launch {
            program: bin.to_path_buf(),
            args: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ready: LISTENING.to_string(),
        };
        ServerProcess::launch(&launch, timeout).await
    }

    /// Starts a server as `launch` says and waits up to `timeout` for its ready line.
    pub(crate) async fn launch(launch: &Launch, timeout: Duration) -> Result<ServerProcess> {
        let bin = &launch.program;
        let env = &launch.env;
        let mut command = Command::new(bin);
        // Variables from the caller's shell would silently change the configuration measured.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ROOMCAST_") {
                command.env_remove(key);
            }
        }
        command
            .args(&launch.args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the server exited at once"))?;
        let log = SharedLog::default();
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(collect(stderr, log.clone(), ""));
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no pipe to the server's stdout"))?;
        let mut server = ServerProcess {
            child,
            pid,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
        };
        let ready = read_address(stdout, server.log.clone(), launch.ready.clone());
        match tokio::time::timeout(timeout, ready).await {
            Ok(Ok(addr)) => {
                server.addr = addr;
                Ok(server)
            }
            Ok(Err(e)) => {
                // The stdout pipe closed: the process is exiting. Give it and the stderr
                // collector a moment so that the report has its status and last words.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let e = e.context(server.describe_exit());
                Err(anyhow!("{e:#}{}", server.output_report()))
            }
            Err(_) => Err(anyhow!(
                "the server printed no `{} <addr>` line within {} s{}",
                launch.ready.trim_end(),
                timeout.as_secs(),
                server.output_report()
            )),
        }
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails when the server is no longer running.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("the server exited ({})", describe(status)),
            Err(e) => Err(anyhow!(e).context("cannot check on the server")),
        }
    }

    /// "still running" or how it exited, for error messages.
    fn describe_exit(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!("the server exited ({})", describe(status)),
            Ok(None) => "the server closed its stdout".to_string(),
            Err(e) => format!("cannot check on the server: {e}"),
        }
    }

    /// How many lines the server wrote (stderr, and stdout besides its listening line), and the
    /// last of them.
    pub(crate) fn output_tail(&self) -> (usize, Vec<String>) {
        match self.log.lock() {
            Ok(log) => (log.total, log.tail.iter().cloned().collect()),
            Err(_) => (0, Vec::new()),
        }
    }

    /// The server's last lines as an indented block for an error message, or nothing if it
    /// wrote none.
    pub(crate) fn output_report(&self) -> String {
        let (total, tail) = self.output_tail();
        if total == 0 {
            return String::new();
        }
        let mut text = format!("\nserver output (last {} of {total} lines):", tail.len());
        for line in tail {
            text.push_str("\n  ");
            text.push_str(&line);
        }
        text
    }

    /// Kills the server, unless it has already exited. SIGKILL: the measurement is over and
    /// nothing is left to drain.
    pub(crate) async fn kill(mut self) -> Result<()> {
        if self.child.try_wait().ok().flatten().is_none() {
            self.child.kill().await.context("cannot kill the server")?;
        }
        Ok(())
    }
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    status.to_string()
}

/// Reads stdout up to the line starting with `ready`, then hands the rest to [`collect`].
async fn read_address(stdout: ChildStdout, log: SharedLog, ready: String) -> Result<SocketAddr> {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .await
            .context("reading the server's stdout")?
            == 0
        {
            bail!("the server's stdout ended before its listening line");
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if let Some(addr) = text.strip_prefix(ready.as_str()) {
            let addr = addr
                .trim()
                .parse()
                .with_context(|| format!("cannot parse the address in `{text}`"))?;
            tokio::spawn(collect(reader.into_inner(), log, "stdout: "));
            return Ok(addr);
        }
        push(&log, format!("stdout: {text}"));
    }
}

/// Keeps the last lines of one of the server's outputs; draining the pipe also keeps a chatty
/// server from blocking on a full one.
async fn collect(output: impl AsyncRead + Unpin, log: SharedLog, prefix: &'static str) {
    let mut reader = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                push(&log, format!("{prefix}{}", text.trim_end()));
            }
        }
    }
}

fn push(log: &SharedLog, line: String) {
    if let Ok(mut log) = log.lock() {
        if log.tail.len() == TAIL_LINES {
            log.tail.pop_front();
        }
        log.tail.push_back(line);
        log.total += 1;
    }
}
