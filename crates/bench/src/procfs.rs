//! Samples of another process's memory and CPU time, read from Linux's `/proc/<pid>/status` and
//! `/proc/<pid>/stat`, of the whole machine's CPU time from `/proc/stat` (to tell how much of
//! it went to processes other than the ones measured), and of its TCP counters from
//! `/proc/net/netstat` (to tell when a burst of connections overflowed a listener). The parsers
//! take the files' text, so they are tested on fixed examples.

use std::time::Duration;

use anyhow::{Context, Result};

/// Clock ticks per second of the `utime` and `stime` fields of `/proc/<pid>/stat`. This is the
/// kernel's USER_HZ, which is 100 on every architecture Linux exports to user space; asking
/// `sysconf(_SC_CLK_TCK)` would need `unsafe`, which the workspace forbids.
const USER_HZ: u64 = 100;

/// One look at a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Resident set size (`VmRSS`), in bytes.
    pub(crate) rss_bytes: u64,
    /// Peak resident set size so far (`VmHWM`), in bytes.
    pub(crate) peak_rss_bytes: u64,
    /// Threads (`Threads`).
    pub(crate) threads: u64,
    /// CPU time used, user plus system (`utime + stime`).
    pub(crate) cpu: Duration,
}

/// Reads a sample of process `pid`.
pub(crate) fn sample(pid: u32) -> Result<Sample> {
    let status_path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&status_path)
        .with_context(|| format!("cannot read {status_path}"))?;
    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&stat_path).with_context(|| format!("cannot read {stat_path}"))?;
    let (rss_bytes, peak_rss_bytes, threads) = parse_status(&status)
        .with_context(|| format!("{status_path}: no VmRSS, VmHWM or Threads line"))?;
    let cpu = parse_stat_cpu(&stat)
        .with_context(|| format!("{stat_path}: cannot find utime and stime"))?;
    Ok(Sample {
        rss_bytes,
        peak_rss_bytes,
        threads,
        cpu,
    })
}

/// CPU time of the whole machine, all cores together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MachineCpu {
    /// Time not idle: user, nice, system, irq and softirq.
    pub(crate) busy: Duration,
    /// Time the hypervisor gave to someone else.
    pub(crate) steal: Duration,
}

/// Reads the machine's CPU time so far.
pub(crate) fn machine_cpu() -> Result<MachineCpu> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    parse_machine_cpu(&text).context("/proc/stat: no `cpu` line")
}

/// The first (`cpu`) line of `/proc/stat`: user nice system idle iowait irq softirq steal ...
fn parse_machine_cpu(text: &str) -> Option<MachineCpu> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    Some(MachineCpu {
        busy: Duration::from_millis(busy * 1000 / USER_HZ),
        steal: Duration::from_millis(at(7) * 1000 / USER_HZ),
    })
}

/// The machine's TCP counters that tell a burst of connections was more than a listening
/// socket could take: its accept queue full, and the SYNs sent again for want of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TcpCounters {
    /// Connections a listener dropped with its accept queue full (`ListenOverflows`).
    pub(crate) listen_overflows: u64,
    /// SYNs sent again (`TCPSynRetrans`): connect attempts that got no answer in time.
    pub(crate) syn_retransmits: u64,
}

impl TcpCounters {
    /// What happened from `before` to `self`.
    pub(crate) fn since(self, before: TcpCounters) -> TcpCounters {
        TcpCounters {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(before.listen_overflows),
            syn_retransmits: self.syn_retransmits.saturating_sub(before.syn_retransmits),
        }
    }
}

/// Reads the machine's TCP counters so far (of this network namespace).
pub(crate) fn tcp_counters() -> Result<TcpCounters> {
    let text =
        std::fs::read_to_string("/proc/net/netstat").context("cannot read /proc/net/netstat")?;
    parse_tcp_counters(&text).context("/proc/net/netstat: no TcpExt ListenOverflows")
}

/// `ListenOverflows` and `TCPSynRetrans` from the `TcpExt:` lines of `/proc/net/netstat`: a
/// line of names, then a line of values.
fn parse_tcp_counters(text: &str) -> Option<TcpCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_whitespace().skip(1);
    let values = lines.next()?.split_whitespace().skip(1);
    let mut counters = TcpCounters::default();
    let mut found = false;
    for (name, value) in names.zip(values) {
        match name {
            "ListenOverflows" => {
                counters.listen_overflows = value.parse().ok()?;
                found = true;
            }
            "TCPSynRetrans" => counters.syn_retransmits = value.parse().ok()?,
            _ => {}
        }
    }
    found.then_some(counters)
}

/// `(VmRSS, VmHWM, Threads)` from the text of `/proc/<pid>/status`, sizes in bytes.
fn parse_status(text: &str) -> Option<(u64, u64, u64)> {
    let mut rss = None;
    let mut peak = None;
    let mut threads = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "VmRSS" => rss = kib_value(value),
            "VmHWM" => peak = kib_value(value),
            "Threads" => threads = value.trim().parse().ok(),
            _ => {}
        }
    }
    Some((rss?, peak?, threads?))
}

/// `"   12345 kB"` as bytes; the kernel's "kB" is 1024 bytes.
fn kib_value(value: &str) -> Option<u64> {
    let number = value.trim().strip_suffix("kB")?.trim();
    number.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// `utime + stime` from the text of `/proc/<pid>/stat`.
fn parse_stat_cpu(text: &str) -> Option<Duration> {
    // The second field is the command name in parentheses and may itself hold spaces and
    // parentheses, so the fields are counted from the last `)`. After it come field 3 (state)
    // onwards; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\troomcast\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  612340 kB\nVmHWM:\t   61440 kB\nVmRSS:\t   59392 kB\nRssAnon:\t   52000 kB\n\
        Threads:\t3\nSigQ:\t0/95574\n";

    #[test]
    fn status_sizes_are_kib() {
        assert_eq!(parse_status(STATUS), Some((59392 * 1024, 61440 * 1024, 3)));
    }

    #[test]
    fn status_without_rss_is_none() {
        assert_eq!(parse_status("Name:\tzombie\nThreads:\t1\n"), None);
    }

    #[test]
    fn stat_counts_fields_after_the_command_name() {
        // A command name with a space and a parenthesis; utime 250, stime 125 ticks.
        let stat = "4242 (odd) name) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 125 0 0 20 0 3 0 \
                    100 6000000 1500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_millis(3750)));
    }

    #[test]
    fn machine_cpu_adds_the_busy_columns() {
        let stat = "cpu  100 5 50 9000 20 3 2 7 0 0\ncpu0 50 2 25 4500 10 1 1 3 0 0\n";
        assert_eq!(
            parse_machine_cpu(stat),
            Some(MachineCpu {
                busy: Duration::from_millis(1600),
                steal: Duration::from_millis(70),
            })
        );
        assert!(machine_cpu().is_ok());
    }

    #[test]
    fn tcp_counters_are_read_by_name() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                       TcpExt: 3 135 140 132\n\
                       IpExt: InNoRoutes ListenOverflows\nIpExt: 0 9\n";
        assert_eq!(
            parse_tcp_counters(netstat),
            Some(TcpCounters {
                listen_overflows: 135,
                syn_retransmits: 132,
            })
        );
        assert_eq!(parse_tcp_counters("IpExt: A\nIpExt: 1\n"), None);
        let later = TcpCounters {
            listen_overflows: 200,
            syn_retransmits: 132,
        };
        assert_eq!(
            later.since(parse_tcp_counters(netstat).unwrap()),
            TcpCounters {
                listen_overflows: 65,
                syn_retransmits: 0,
            }
        );
        assert!(tcp_counters().is_ok());
    }

    #[test]
    fn stat_this_process_parses() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes && s.threads >= 1);
    }
}
