//! The process's own metrics, named as the Prometheus client libraries name them
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`), read from `/proc` at scrape time; where
//! `/proc` has no such file (other systems) the metric is left out. And
//! `roomcast_build_info`.

use std::fmt::Write;

use super::header;

/// Clock ticks per second of the times in `/proc/self/stat`. It is `sysconf(_SC_CLK_TCK)`,
/// which is 100 on every Linux build that matters (the Prometheus Go client assumes the same);
/// asking would take `libc` and `unsafe` for a constant.
const CLOCK_TICKS: f64 = 100.0;

/// Appends the process metrics and `roomcast_build_info`.
pub fn render(out: &mut String) {
    header(
        out,
        "roomcast_build_info",
        "gauge",
        "Always 1; the version of the running binary is its label.",
    );
    let _ = writeln!(
        out,
        "roomcast_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let stat = read("/proc/self/stat").and_then(|s| StatTimes::parse(&s));
    if let Some(times) = &stat {
        let cpu = (times.utime + times.stime) as f64 / CLOCK_TICKS;
        header(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
    }
    if let Some(rss) = read("/proc/self/status").and_then(|s| vm_rss_bytes(&s)) {
        value(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            rss,
        );
    }
    // One entry per descriptor: a scrape of a node holding 100k connections lists 100k names,
    // a few milliseconds, as every Prometheus client does.
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        value(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            fds.count() as u64,
        );
    }
    if let Some(max) = read("/proc/self/limits").and_then(|s| max_open_files(&s)) {
        value(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max,
        );
    }
    let boot = read("/proc/stat").and_then(|s| boot_time(&s));
    if let (Some(times), Some(boot)) = (&stat, boot) {
        let start = boot as f64 + times.starttime as f64 / CLOCK_TICKS;
        header(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        let _ = writeln!(out, "process_start_time_seconds {start}");
    }
}

fn value(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The times of `/proc/self/stat`, in clock ticks (`starttime` since boot).
#[derive(Debug, PartialEq, Eq)]
struct StatTimes {
    utime: u64,
    stime: u64,
    starttime: u64,
}

impl StatTimes {
    /// Fields 14, 15 and 22 of the line (proc(5)). The command name, field 2, is in
    /// parentheses and may itself hold spaces and parentheses: fields are counted from the
    /// last `)`.
    fn parse(stat: &str) -> Option<StatTimes> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3.
        let field = |n: usize| fields.get(n - 3)?.parse().ok();
        Some(StatTimes {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
        })
    }
}

/// `VmRSS` of `/proc/self/status`, in bytes (the file says kB, meaning KiB).
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then_some(kib * 1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `btime` of `/proc/stat`: when the system booted, in Unix seconds.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_command_name_s_end() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1523 0 0 0 \
                    250 37 0 0 20 0 9 0 123456 1068482560 2880 18446744073709551615 1 1 0 0 0 \
                    0 0 4096 17987 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            StatTimes::parse(stat),
            Some(StatTimes {
                utime: 250,
                stime: 37,
                starttime: 123456,
            })
        );
        assert_eq!(StatTimes::parse("4242 (x) S 1"), None);
    }

    #[test]
    fn status_limits_and_boot_time_parse() {
        let status = "Name:\troomcast\nVmPeak:\t  100 kB\nVmRSS:\t    2880 kB\nThreads:\t9\n";
        assert_eq!(vm_rss_bytes(status), Some(2880 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63455                63455                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
        assert_eq!(
            boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured() {
        let mut out = String::new();
        render(&mut out);
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from\n{out}"))
        };
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let started = value("process_start_time_seconds");
        let now = crate::auth::now_unix() as f64;
        assert!(started > 1.5e9 && started <= now + 1.0, "{started}");
        assert!(out.contains(&format!(
            "roomcast_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
