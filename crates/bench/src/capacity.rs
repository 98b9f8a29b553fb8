//! Whether this one process can hold the client side of N loopback connections: it raises its
//! own open-file soft limit to the hard limit, then checks that limit and the ephemeral port
//! range against N, so that a run too big for the machine fails up front with a clear reason
//! instead of half-way through with `EMFILE`.

use anyhow::{bail, Context, Result};
use rlimit::Resource;

/// Descriptors this process needs besides its sockets: stdio, the runtime's epoll and wakers,
/// the pipes to the server and the files read under /proc, with room to spare.
const RESERVED_FDS: u64 = 64;

/// This process's open-file limit after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FdLimit {
    /// The soft limit now in force.
    pub(crate) soft: u64,
    /// The hard limit, the most an unprivileged process may raise the soft limit to.
    pub(crate) hard: u64,
    /// The soft limit before it was raised, when it was.
    pub(crate) raised_from: Option<u64>,
}

/// Raises the open-file soft limit to the hard limit when it can; a failure to raise leaves
/// the old limit, which [`check_connections_fit`] then judges.
pub(crate) fn raise_nofile_limit() -> Result<FdLimit> {
    let (soft, hard) = Resource::NOFILE
        .get()
        .context("cannot read RLIMIT_NOFILE")?;
    // Linux refuses a soft limit above fs.nr_open even when the hard limit is "unlimited".
    let ceiling = match read_u64("/proc/sys/fs/nr_open") {
        Some(nr_open) => hard.min(nr_open),
        None => hard,
    };
    if soft >= ceiling {
        return Ok(FdLimit {
            soft,
            hard,
            raised_from: None,
        });
    }
    match Resource::NOFILE.set(ceiling, hard) {
        Ok(()) => Ok(FdLimit {
            soft: ceiling,
            hard,
            raised_from: Some(soft),
        }),
        Err(e) => {
            eprintln!("warning: cannot raise the open-file limit from {soft} to {ceiling}: {e}");
            Ok(FdLimit {
                soft,
                hard,
                raised_from: None,
            })
        }
    }
}

/// Fails with a sentence saying what to change when `connections` sockets do not fit in this
/// process's open-file limit or in the ephemeral port range.
pub(crate) fn check_connections_fit(connections: usize, limit: FdLimit) -> Result<()> {
    check_fit("--connections", connections, limit)
}

/// [`check_connections_fit`] for a count given by the command-line option `option`.
pub(crate) fn check_fit(option: &str, connections: usize, limit: FdLimit) -> Result<()> {
    let needed = connections as u64 + RESERVED_FDS;
    if needed > limit.soft {
        bail!(
            "{option} {connections} needs about {needed} open files in this process, but its \
             limit is {soft} (hard limit {hard}); use {option} {max} or fewer, or raise the \
             hard limit (`ulimit -Hn`, as root) before running",
            soft = limit.soft,
            hard = limit.hard,
            max = limit.soft.saturating_sub(RESERVED_FDS),
        );
    }
    // Every client socket takes one local port from this range: all of them go to one server
    // address, so a port cannot be shared between two of them.
    if let Some((low, high)) = local_port_range() {
        let ports = high.saturating_sub(low) + 1;
        if connections as u64 > ports {
            bail!(
                "{option} {connections} needs as many local ports, but \
                 net.ipv4.ip_local_port_range ({low}-{high}) has {ports}"
            );
        }
    }
    Ok(())
}

fn local_port_range() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_connections_name_the_limit_and_the_fix() {
        let limit = FdLimit {
            soft: 1024,
            hard: 1024,
            raised_from: None,
        };
        let message = check_connections_fit(5000, limit).unwrap_err().to_string();
        assert!(message.contains("limit is 1024"), "{message}");
        assert!(message.contains("--connections 960 or fewer"), "{message}");
    }

    #[test]
    fn a_fitting_count_passes() {
        let limit = FdLimit {
            soft: 20_000,
            hard: 20_000,
            raised_from: None,
        };
        check_connections_fit(100, limit).unwrap();
    }
}
