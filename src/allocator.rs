//! glibc allocator tuning, so that the exporter's resident memory returns
//! to its idle level after a burst of connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::debug;

/// Gives memory back to the system after a burst of connections. Each
/// connection's buffers and task come from the allocator; glibc keeps what
/// was freed in its arenas, so after 2,000 clients the resident size would
/// stay tens of MiB above its idle level for good. When the connections fall
/// back from a burst to a few, `malloc_trim` returns the free pages (about a
/// millisecond each time), now and again over the next seconds: snapshots
/// the collectors published during the burst sit among the freed memory
/// until the next collections replace them.
#[derive(Default)]
pub(crate) struct MemoryRelease {
    peak: AtomicU64,
    trimming: Arc<AtomicBool>,
}

impl MemoryRelease {
    /// A burst: this many connections open at once.
    const BURST: u64 = 64;
    /// Back to normal: a Prometheus or two with kept-alive connections.
    const CALM: i64 = 4;
    /// When to trim, after the burst.
    const TRIMS: [Duration; 4] = [
        Duration::ZERO,
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(15),
    ];

    pub(crate) fn opened(&self, open: i64) {
        self.peak.fetch_max(open.max(0) as u64, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, open: i64) {
        if open > Self::CALM || self.peak.load(Ordering::Relaxed) < Self::BURST {
            return;
        }
        if self.peak.swap(0, Ordering::Relaxed) < Self::BURST
            || self.trimming.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let trimming = self.trimming.clone();
        let spawned = std::thread::Builder::new()
            .name("memory-release".to_owned())
            .spawn(move || {
                let start = Instant::now();
                for at in Self::TRIMS {
                    std::thread::sleep(at.saturating_sub(start.elapsed()));
                    trim();
                }
                trimming.store(false, Ordering::Relaxed);
            });
        if spawned.is_err() {
            self.trimming.store(false, Ordering::Relaxed);
        }
    }
}

/// Fewer glibc arenas: by default glibc makes up to 8 per core as threads
/// contend, and each keeps its own free memory, so a burst handled on several
/// threads leaves more behind. The exporter's few threads need two.
#[cfg(target_env = "gnu")]
pub(crate) fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets a tunable of glibc's allocator; called at
    // start, before the threads.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

#[cfg(not(target_env = "gnu"))]
pub(crate) fn limit_malloc_arenas() {}

#[cfg(target_env = "gnu")]
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own free lists.
    let released = unsafe { libc::malloc_trim(0) };
    debug!(
        released,
        "returned free memory to the system after a burst of connections"
    );
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}
