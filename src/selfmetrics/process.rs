//! The standard `process_*` metrics of the Prometheus clients, read for each
//! scrape with as few system calls as possible: `/proc/self/stat` through a
//! descriptor kept open (one `pread`), the descriptor count from
//! `/proc/self/fd`, limits from `getrlimit`. The prometheus crate's process
//! collector opens and parses `/proc/self/stat`, `/proc/self/limits` and
//! more on every scrape and builds protobuf messages; that was half of a
//! scrape's cost (docs/performance.md).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::catalogue::Kind;
use crate::metrics::exposition::Text;

/// How long the metrics read from the kernel are reused: reading them takes
/// about 15 µs (mostly `/proc/self/stat`, which sums over every thread), as
/// much as the rest of a scrape; Prometheus scrapes every few seconds at most,
/// so only a burst of scrapes sees a value up to this old.
const REUSE: Duration = Duration::from_secs(1);

pub(crate) struct ProcessMetrics {
    /// The last text written, and when it was read.
    last: Mutex<Option<(Instant, String)>>,
    stat: Option<File>,
    start_time: Option<f64>,
    ticks_per_second: f64,
    page_size: f64,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Fields of `/proc/self/stat` after the command name, 0-based from `state`.
struct Stat {
    utime: f64,
    stime: f64,
    threads: f64,
    start_ticks: f64,
    vsize: f64,
    rss_pages: f64,
}

fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_ascii_whitespace().collect();
    let field = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some(Stat {
        utime: field(11)?,
        stime: field(12)?,
        threads: field(17)?,
        start_ticks: field(19)?,
        vsize: field(20)?,
        rss_pages: field(21)?,
    })
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<f64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as f64)
}

impl ProcessMetrics {
    pub(crate) fn new() -> Self {
        // SAFETY: sysconf only reads a configuration value.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let ticks_per_second = if ticks > 0 { ticks as f64 } else { 100.0 };
        let stat = File::open("/proc/self/stat").ok();
        let mut metrics = Self {
            last: Mutex::new(None),
            stat,
            start_time: None,
            ticks_per_second,
            page_size: if page > 0 { page as f64 } else { 4096.0 },
        };
        metrics.start_time = metrics
            .read_stat()
            .zip(boot_time())
            .map(|(stat, boot)| boot + stat.start_ticks / ticks_per_second);
        metrics
    }

    fn read_stat(&self) -> Option<Stat> {
        let mut buf = [0u8; 1024];
        // Reading a procfs file from offset 0 regenerates it.
        let n = self.stat.as_ref()?.read_at(&mut buf, 0).ok()?;
        parse_stat(std::str::from_utf8(&buf[..n]).ok()?)
    }

    fn open_fds() -> Option<f64> {
        // Less the descriptor of the listing itself.
        let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
        Some(count.saturating_sub(1) as f64)
    }

    /// Writes the metrics that could be read, read again at most every [`REUSE`].
    pub(crate) fn write(&self, out: &mut Text) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let fresh = match &*last {
            Some((read, text)) if now.duration_since(*read) < REUSE => text,
            _ => {
                let mut text = Text::default();
                self.read(&mut text);
                &last.insert((now, text.finish())).1
            }
        };
        out.append(fresh);
    }

    fn read(&self, out: &mut Text) {
        if let Some(stat) = self.read_stat() {
            let cpu = (stat.utime + stat.stime) / self.ticks_per_second;
            out.unlabelled_family(
                "process_cpu_seconds_total",
                Kind::Counter,
                "Total user and system CPU time spent in seconds.",
                cpu,
            );
            out.unlabelled_family(
                "process_virtual_memory_bytes",
                Kind::Gauge,
                "Virtual memory size in bytes.",
                stat.vsize,
            );
            out.unlabelled_family(
                "process_resident_memory_bytes",
                Kind::Gauge,
                "Resident memory size in bytes.",
                stat.rss_pages * self.page_size,
            );
            out.unlabelled_family(
                "process_threads",
                Kind::Gauge,
                "Number of OS threads in the process.",
                stat.threads,
            );
        }
        if let Some(fds) = Self::open_fds() {
            out.unlabelled_family(
                "process_open_fds",
                Kind::Gauge,
                "Number of open file descriptors.",
                fds,
            );
        }
        if let Some(max) = soft_limit(libc::RLIMIT_NOFILE) {
            out.unlabelled_family(
                "process_max_fds",
                Kind::Gauge,
                "Maximum number of open file descriptors.",
                max,
            );
        }
        if let Some(max) = soft_limit(libc::RLIMIT_AS) {
            out.unlabelled_family(
                "process_virtual_memory_max_bytes",
                Kind::Gauge,
                "Maximum amount of virtual memory available in bytes.",
                max,
            );
        }
        if let Some(start) = self.start_time {
            out.unlabelled_family(
                "process_start_time_seconds",
                Kind::Gauge,
                "Start time of the process since unix epoch in seconds.",
                start,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let metrics = ProcessMetrics::new();
        let mut text = Text::default();
        metrics.write(&mut text);
        let text = text.finish();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
    }

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 1000000 300 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.utime, stat.stime, stat.threads), (250.0, 50.0, 7.0));
        assert_eq!(
            (stat.start_ticks, stat.vsize, stat.rss_pages),
            (12345.0, 1e6, 300.0)
        );
    }
}
