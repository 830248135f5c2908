//! The process's own figures, in the names every Prometheus client library
//! uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...),
//! read from `/proc/self` when `/metrics` is scraped: nothing runs between
//! scrapes. Appended to the recorder's text as a block of its own, so the
//! CPU counter keeps its fractional seconds (the `metrics` crate's counters
//! are integers). On a system without `/proc` the block is empty.

use std::fmt::Write;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, which
/// Linux fixes at 100 on every architecture it reports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/self` says of the process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Figures {
    pub cpu_seconds: Option<f64>,
    pub threads: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Reads them now.
pub fn read() -> Figures {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut f = parse(&stat, &status, &limits, &boot);
    f.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    f
}

/// The figures in `/proc/self/stat`, `/proc/self/status`, `/proc/self/limits`
/// and `/proc/stat` (boot time), as text.
pub fn parse(stat: &str, status: &str, limits: &str, proc_stat: &str) -> Figures {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: fields are counted after its last ')'.
    let after_name: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // Field n (1-based, as in proc(5)) is after_name[n - 3].
    let field = |n: usize| after_name.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let cpu_seconds = field(14).zip(field(15)).map(|(u, s)| (u + s) as f64 / TICKS_PER_SECOND);
    let boot_time = proc_stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<u64>().ok());
    let start_time_seconds =
        field(22).zip(boot_time).map(|(ticks, boot)| boot as f64 + ticks as f64 / TICKS_PER_SECOND);
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l["Max open files".len()..].split_whitespace().next())
        .and_then(|soft| soft.parse::<u64>().ok());
    Figures {
        cpu_seconds,
        threads: field(20),
        start_time_seconds,
        resident_bytes: kib("VmRSS:"),
        virtual_bytes: kib("VmSize:"),
        open_fds: None,
        max_fds,
    }
}

/// The Prometheus text block of `f`; a figure that could not be read is left out.
pub fn render(f: &Figures, out: &mut String) {
    let mut one = |name: &str, kind: &str, help: &str, value: Option<String>| {
        if let Some(v) = value {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n\n");
        }
    };
    let int = |v: Option<u64>| v.map(|v| v.to_string());
    let float = |v: Option<f64>| v.map(|v| format!("{v:.2}"));
    one(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        float(f.cpu_seconds),
    );
    one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", int(f.resident_bytes));
    one("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", int(f.virtual_bytes));
    one("process_open_fds", "gauge", "Number of open file descriptors.", int(f.open_fds));
    one("process_max_fds", "gauge", "Maximum number of open file descriptors.", int(f.max_fds));
    one("process_threads", "gauge", "Number of OS threads in the process.", int(f.threads));
    one(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        float(f.start_time_seconds),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (order gate) way) S 1 4242 4242 0 -1 4194560 2365 0 0 0 1234 567 0 0 20 0 \
                        9 0 98765 1585152000 24000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    const STATUS: &str = "Name:\torder-gateway\nVmSize:\t 1548000 kB\nVmRSS:\t   96000 kB\nThreads:\t9\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
                          Max cpu time              unlimited            unlimited            seconds   \n\
                          Max open files            1048576              1048576              files     \n";
    const PROC_STAT: &str = "cpu  1 2 3 4\nbtime 1764460800\nprocesses 100\n";

    #[test]
    fn figures_are_read_from_proc_text() {
        let f = parse(STAT, STATUS, LIMITS, PROC_STAT);
        assert_eq!(f.cpu_seconds, Some(18.01), "utime 1234 + stime 567 ticks");
        assert_eq!(f.threads, Some(9));
        assert_eq!(f.start_time_seconds, Some(1_764_460_800.0 + 987.65));
        assert_eq!(f.resident_bytes, Some(96_000 * 1024));
        assert_eq!(f.virtual_bytes, Some(1_548_000 * 1024));
        assert_eq!(f.max_fds, Some(1_048_576));
    }

    #[test]
    fn unreadable_figures_are_left_out() {
        let f = parse("garbage", "", "", "");
        assert_eq!(f, Figures::default());
        let mut out = String::new();
        render(&f, &mut out);
        assert_eq!(out, "");
    }

    #[test]
    fn the_block_is_prometheus_text() {
        let mut out = String::new();
        render(&Figures { cpu_seconds: Some(1.5), open_fds: Some(12), ..Default::default() }, &mut out);
        assert_eq!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.50\n\n\
             # HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds 12\n\n"
        );
    }

    #[test]
    fn this_process_has_figures() {
        let f = read();
        assert!(
            f.resident_bytes.unwrap_or(0) > 0 && f.threads.unwrap_or(0) >= 1 && f.open_fds.unwrap_or(0) >= 3,
            "{f:?}"
        );
        assert!(f.cpu_seconds.is_some() && f.start_time_seconds.is_some() && f.max_fds.is_some(), "{f:?}");
    }
}
