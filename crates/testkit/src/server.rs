//! [`RedisServer`]: one `redis-server` process on a free port of 127.0.0.1, with no
//! persistence, its log in a temporary directory, killed on drop.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{self, Output};
use crate::resp;
use crate::tempdir::TempDir;

/// How long a server has to answer after it is spawned.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// Deadline of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between readiness probes.
const PROBE_PAUSE: Duration = Duration::from_millis(20);
/// How many fresh ports [`RedisServer::start`] tries before giving up.
const PORT_ATTEMPTS: usize = 5;
/// Deadline of one `redis-cli` command run by [`RedisServer::cli`].
const CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// Ports handed to servers of this process and not yet released, so that two tests running
/// at once never get the same one. A std mutex: it is held for a set lookup, never across a
/// wait.
static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port that the system just gave out and that no server of this process holds.
fn reserve_port() -> io::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let mut ports = PORTS.lock().unwrap_or_else(PoisonError::into_inner);
        if ports.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free port for redis-server",
    ))
}

fn release_port(port: u16) {
    let mut ports = PORTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(ports) = ports.as_mut() {
        ports.remove(&port);
    }
}

/// A private Redis server for one test.
///
/// Started with `--save "" --appendonly no`: a restart loses every key, as a Redis without
/// persistence does.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    cluster: bool,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits (at most 10 s) until it answers.
    pub fn start() -> io::Result<Self> {
        Self::start_inner(false)
    }

    /// Starts a server, with cluster mode on when `cluster` is true.
    pub(crate) fn start_inner(cluster: bool) -> io::Result<Self> {
        let mut last = io::Error::other("redis-server was not started");
        for _ in 0..PORT_ATTEMPTS {
            let port = reserve_port()?;
            let dir = match TempDir::new("redis") {
                Ok(dir) => dir,
                Err(e) => {
                    release_port(port);
                    return Err(e);
                }
            };
            let mut server = Self {
                port,
                cluster,
                dir,
                child: None,
            };
            // On failure `server` drops here: the child is killed and the port released.
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its URL, `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Whether the process runs (it may not answer yet).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL, as a crash would) and waits for it to exit. Does nothing
    /// if it is stopped.
    pub fn stop(&mut self) -> io::Result<()> {
        match self.child.take() {
            Some(mut child) => process::kill(&mut child),
            None => Ok(()),
        }
    }

    /// Stops the server, then starts it again on the same port and waits (at most 10 s)
    /// until it answers. Its keys are gone.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Runs `redis-cli -h 127.0.0.1 -p <port> args...` (deadline 10 s) and returns what it
    /// printed; a failing exit status is an error carrying its standard error.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        let port = self.port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", port.as_str()];
        all.extend_from_slice(args);
        let Output {
            success,
            stdout,
            stderr,
        } = process::run("redis-cli", &all, CLI_TIMEOUT)?;
        if success {
            Ok(stdout)
        } else {
            Err(io::Error::other(format!(
                "redis-cli {}: {}",
                args.join(" "),
                stderr.trim()
            )))
        }
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The end of the server's log, to explain a failed start.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Spawns the process on `self.port` and waits until it answers as itself: a server of
    /// another test that took the port would answer `PING` too, but with another process id.
    fn spawn(&mut self) -> io::Result<()> {
        let port = self.port.to_string();
        let dir = self.dir.path();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", port.as_str(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(self.log_path());
        if self.cluster {
            command
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(dir.join(format!("nodes-{port}.conf")))
                .args(["--cluster-node-timeout", "5000"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(io::Error::other(format!(
                        "redis-server on port {port} exited ({status}): {}",
                        self.log_tail()
                    )));
                }
            }
            if resp::process_id(self.addr(), PROBE_TIMEOUT) == Some(pid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop()?;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "redis-server on port {port} did not answer within {START_DEADLINE:?}: {}",
                        self.log_tail()
                    ),
                ));
            }
            thread::sleep(PROBE_PAUSE);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.stop();
        release_port(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::require_redis_binaries;

    #[test]
    fn starts_answers_and_stops() -> io::Result<()> {
        if !require_redis_binaries() {
            return Ok(());
        }
        let mut server = RedisServer::start()?;
        assert_eq!(
            server.url(),
            format!("redis://127.0.0.1:{}/0", server.port())
        );
        assert_eq!(server.cli(&["PING"])?.trim(), "PONG");
        assert!(server.is_running());
        server.stop()?;
        assert!(!server.is_running());
        assert!(!resp::ping(server.addr(), PROBE_TIMEOUT));
        Ok(())
    }

    #[test]
    fn restart_keeps_the_port_and_loses_the_keys() -> io::Result<()> {
        if !require_redis_binaries() {
            return Ok(());
        }
        let mut server = RedisServer::start()?;
        let port = server.port();
        assert_eq!(server.cli(&["SET", "k", "v"])?.trim(), "OK");
        server.restart()?;
        assert_eq!(server.port(), port);
        assert_eq!(server.cli(&["PING"])?.trim(), "PONG");
        assert_eq!(server.cli(&["EXISTS", "k"])?.trim(), "0");
        Ok(())
    }

    #[test]
    fn drop_kills_the_process_and_removes_its_directory() -> io::Result<()> {
        if !require_redis_binaries() {
            return Ok(());
        }
        let server = RedisServer::start()?;
        let addr = server.addr();
        let pid = server.child.as_ref().map(Child::id);
        let dir = server.dir.path().to_owned();
        assert!(dir.exists());
        drop(server);
        assert!(!dir.exists());
        // The port is free again and may already serve another test: check the process.
        assert_ne!(resp::process_id(addr, PROBE_TIMEOUT), pid);
        Ok(())
    }

    #[test]
    fn two_servers_get_two_ports() -> io::Result<()> {
        if !require_redis_binaries() {
            return Ok(());
        }
        let a = RedisServer::start()?;
        let b = RedisServer::start()?;
        assert_ne!(a.port(), b.port());
        Ok(())
    }
}
