//! Samples of another process's memory and CPU time, read from Linux's `/proc/<pid>/status` and
//! `/proc/<pid>/stat`. The parsers take the files' text, so they are tested on fixed examples.

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
    fn stat_this_process_parses() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes && s.threads >= 1);
    }
}
