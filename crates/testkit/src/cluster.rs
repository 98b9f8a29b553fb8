//! [`RedisCluster`]: a Redis Cluster of masters without replicas, each a [`RedisServer`] in
//! cluster mode, joined with `redis-cli --cluster create`.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use crate::process;
use crate::server::RedisServer;

/// How long the cluster has to form, from the first server's start to `cluster_state:ok` on
/// every node.
const FORM_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two rounds of `CLUSTER INFO`.
const POLL: Duration = Duration::from_millis(50);
/// The fewest masters Redis accepts for a cluster.
const MIN_MASTERS: usize = 3;

/// A private Redis Cluster for one test; every node is stopped on drop.
#[derive(Debug)]
pub struct RedisCluster {
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` servers (at least 3), assigns them every slot and waits (at most
    /// 30 s in all) until each reports `cluster_state:ok`.
    pub fn start(masters: usize) -> io::Result<Self> {
        if masters < MIN_MASTERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a Redis Cluster needs at least {MIN_MASTERS} masters, not {masters}"),
            ));
        }
        let deadline = Instant::now() + FORM_DEADLINE;
        let servers = (0..masters)
            .map(|_| RedisServer::start_inner(true))
            .collect::<io::Result<Vec<_>>>()?;
        let cluster = Self { servers };
        cluster.create(deadline)?;
        cluster.wait_ok(deadline)?;
        Ok(cluster)
    }

    fn create(&self, deadline: Instant) -> io::Result<()> {
        let nodes: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(nodes.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let left = deadline.saturating_duration_since(Instant::now());
        let out = process::run("redis-cli", &args, left)?;
        if out.success {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}{}",
                out.stdout.trim(),
                out.stderr.trim()
            )))
        }
    }

    fn wait_ok(&self, deadline: Instant) -> io::Result<()> {
        loop {
            let mut all_ok = true;
            for server in &self.servers {
                all_ok &= server
                    .cli(&["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.lines().any(|l| l.trim() == "cluster_state:ok"));
            }
            if all_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the cluster did not reach cluster_state:ok within {FORM_DEADLINE:?}"),
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Its nodes.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Its nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.iter().map(RedisServer::port).collect()
    }

    /// Its URL in the form fred reads:
    /// `redis-cluster://127.0.0.1:<p1>?node=127.0.0.1:<p2>&node=127.0.0.1:<p3>`.
    pub fn url(&self) -> String {
        let mut url = String::from("redis-cluster://");
        for (i, server) in self.servers.iter().enumerate() {
            match i {
                0 => {}
                1 => url.push_str("?node="),
                _ => url.push_str("&node="),
            }
            url.push_str(&format!("127.0.0.1:{}", server.port()));
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::require_redis_binaries;

    #[test]
    fn three_masters_form_a_cluster() -> io::Result<()> {
        if !require_redis_binaries() {
            return Ok(());
        }
        let cluster = RedisCluster::start(3)?;
        let ports = cluster.ports();
        assert_eq!(ports.len(), 3);
        assert_eq!(
            cluster.url(),
            format!(
                "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
                ports[0], ports[1], ports[2]
            )
        );
        for server in cluster.servers() {
            let info = server.cli(&["CLUSTER", "INFO"])?;
            assert!(info.contains("cluster_state:ok"), "{info}");
            assert!(info.contains("cluster_known_nodes:3"), "{info}");
        }
        // A key lands on its slot's node: `-c` follows the redirection.
        let first = &cluster.servers()[0];
        for key in ["a", "b", "c", "d"] {
            assert_eq!(first.cli(&["-c", "SET", key, "1"])?.trim(), "OK");
        }
        Ok(())
    }

    #[test]
    fn fewer_than_three_masters_is_refused() {
        let err = RedisCluster::start(2).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidInput));
    }
}
