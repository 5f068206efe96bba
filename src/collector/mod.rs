//! Collectors read one source each into a plain snapshot. Each runs on its own
//! OS thread, so a slow or hung NVML call never stalls the host collector, the
//! async runtime or a scrape: scrapes only read the latest published result.

pub mod gpu;
pub mod host;
pub mod pods;

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::snapshot::{Collected, GpuSnapshot, HostSnapshot, Outcome, PodAllocations, Published};

/// A source of metrics.
pub trait Collector: Send + 'static {
    type Output: Send + Sync + 'static;

    /// Names the collector: its thread and the `collector` label of its self-metrics.
    const NAME: &'static str;

    /// Reads the source once. The flag is false when the source could not be
    /// read at all; the output then still says why (e.g. `nvml_up = false`).
    fn collect(&mut self) -> (Self::Output, bool);
}

/// The latest result of every collector. Results are immutable and shared by
/// `Arc`; publishing swaps the pointer, so readers never wait on a collection.
#[derive(Default)]
pub struct Store {
    pub gpu: Latest<GpuSnapshot>,
    pub host: Latest<HostSnapshot>,
    pub pods: Latest<PodAllocations>,
}

/// The latest published result of one collector.
pub struct Latest<T>(Mutex<Option<Arc<Published<T>>>>);

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T> Latest<T> {
    pub fn get(&self) -> Option<Arc<Published<T>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, published: Published<T>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(published));
    }
}

/// A running collection loop.
pub struct Running {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Running {
    /// Asks the loop to stop and waits up to `grace` for it. A loop stuck in a
    /// hung driver call is left behind rather than blocking shutdown.
    pub fn stop(self, grace: Duration) -> bool {
        let _ = self.stop.send(());
        let deadline = Instant::now() + grace;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.thread.join().is_ok()
    }
}

/// Runs `collector` now and then every `interval` on a thread of its own,
/// handing each result to `publish`.
pub fn spawn<C: Collector>(
    mut collector: C,
    interval: Duration,
    publish: impl Fn(Collected<C::Output>) + Send + 'static,
) -> std::io::Result<Running> {
    let (stop, stopped) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("collect-{}", C::NAME))
        .spawn(move || {
            let mut last_success = None;
            loop {
                let started = Instant::now();
                let (data, success) = collector.collect();
                let finished_at = SystemTime::now();
                if success {
                    last_success = Some(finished_at);
                }
                publish(Collected {
                    data,
                    outcome: Outcome {
                        success,
                        duration: started.elapsed(),
                        finished_at,
                        last_success,
                    },
                });
                let wait = interval.saturating_sub(started.elapsed());
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })?;
    Ok(Running { stop, thread })
}
