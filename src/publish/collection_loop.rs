//! The collection loop: each collector on an OS thread of its own, now and
//! then every interval, publishing each collection into its slot. This is
//! the one place that logs collection errors, once per distinct error with
//! the collector's name, and counts them.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use super::{Format, Outcome, Published, STALE_AFTER_INTERVALS, Slot, publish, watchdog};
use crate::collector::{CollectError, Collection, Collector, Failures, Latest, Named};

/// A running collection loop.
pub(crate) struct Running {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Running {
    /// Asks the loop to stop and waits up to `grace` for it. A loop stuck in a
    /// hung driver call is left behind rather than blocking shutdown.
    pub(crate) fn stop(self, grace: Duration) -> bool {
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

/// Starts a loop for each collector, each publishing into its slot, and
/// the watchdog that logs when one stops finishing collections.
pub(crate) fn start(
    collectors: Vec<Named>,
    interval: Duration,
    format: Arc<dyn Format>,
) -> Result<(Vec<Slot>, Vec<Running>), String> {
    let mut slots = Vec::new();
    let mut running = Vec::new();
    for (name, collector) in collectors {
        let latest = Arc::new(Latest::default());
        let state = Loop {
            name,
            collector,
            format: format.clone(),
            latest: latest.clone(),
            interval,
            last_success: None,
            errors_total: 0,
            failures: Failures::default(),
            overrunning: false,
        };
        running.push(
            state
                .spawn()
                .map_err(|e| format!("cannot start the {name} collector's thread: {e}"))?,
        );
        slots.push(Slot { name, latest });
    }
    let (stop, thread) = watchdog::spawn(slots.clone(), interval)
        .map_err(|e| format!("cannot start the collectors' watchdog thread: {e}"))?;
    running.push(Running { stop, thread });
    Ok((slots, running))
}

/// One collector's loop and what it remembers between collections.
struct Loop {
    name: &'static str,
    collector: Box<dyn Collector>,
    format: Arc<dyn Format>,
    latest: Arc<Latest<Published>>,
    interval: Duration,
    last_success: Option<SystemTime>,
    errors_total: u64,
    /// Failed collections, to log each distinct error once.
    failures: Failures,
    /// Whether the last collection took longer than the interval.
    overrunning: bool,
}

impl Loop {
    /// Runs the collector now and then every interval on a thread of its own.
    fn spawn(mut self) -> std::io::Result<Running> {
        let interval = self.interval;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("collect-{}", self.name))
            .spawn(move || {
                loop {
                    let started = Instant::now();
                    self.collect_once(started);
                    let wait = interval.saturating_sub(started.elapsed());
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        Ok(Running { stop, thread })
    }

    fn collect_once(&mut self, started: Instant) {
        let mut collection = Collection::default();
        let result = self.collector.collect(&mut collection);
        let success = self.note(result);
        let finished_at = SystemTime::now();
        if success {
            self.last_success = Some(finished_at);
        }
        let duration = started.elapsed();
        self.note_duration(duration);
        let outcome = Outcome {
            success,
            duration,
            finished_at,
            last_success: self.last_success,
            errors_total: self.errors_total,
        };
        let published = publish(self.format.as_ref(), &collection, started, outcome);
        debug!(
            collector = self.name,
            success,
            seconds = duration.as_secs_f64(),
            samples = collection.samples.iter().count(),
            bytes = published.exposition.len(),
            "collection published"
        );
        self.latest.set(published);
    }

    /// Logs once when collections start to take longer than the interval,
    /// and once when they fit again.
    fn note_duration(&mut self, duration: Duration) {
        let name = self.name;
        let interval = self.interval;
        let overrunning = duration > interval;
        if overrunning && !self.overrunning {
            warn!(
                collector = name,
                "a collection of the {name} collector took {duration:.1?}, longer than the interval of {interval:?} (--collect.interval); collections run back to back, and /health turns stale after {STALE_AFTER_INTERVALS} intervals without one finishing"
            );
        } else if !overrunning && self.overrunning {
            info!(
                collector = name,
                "collections of the {name} collector fit in the interval again"
            );
        }
        self.overrunning = overrunning;
    }

    /// Counts and logs how a collection went: an error once per distinct
    /// message, and once when collections succeed again. Returns whether it
    /// succeeded.
    fn note(&mut self, result: Result<(), CollectError>) -> bool {
        let name = self.name;
        match result {
            Ok(()) => {
                if self.failures.succeeded() {
                    info!(
                        collector = name,
                        "the {name} collector reads its source again"
                    );
                }
                true
            }
            Err(CollectError::Failed(error)) => {
                self.errors_total += 1;
                if self.failures.failed(&error) {
                    warn!(collector = name, "{error}");
                }
                false
            }
            Err(CollectError::Waiting) => false,
        }
    }
}
