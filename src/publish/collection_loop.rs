//! The collection loop: each collector on an OS thread of its own, now and
//! then every interval, publishing each collection into its slot. This is
//! the one place that logs collection errors, once per distinct error with
//! the collector's name, and counts them.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::{Format, Outcome, Published, Slot, publish};
use crate::collector::{CollectError, Collection, Collector, Latest, Named};

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

/// Starts a loop for each collector; each publishes into its slot.
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
            last_success: None,
            errors_total: 0,
            last_error: None,
        };
        running.push(
            state
                .spawn(interval)
                .map_err(|e| format!("cannot start the {name} collector's thread: {e}"))?,
        );
        slots.push(Slot { name, latest });
    }
    Ok((slots, running))
}

/// One collector's loop and what it remembers between collections.
struct Loop {
    name: &'static str,
    collector: Box<dyn Collector>,
    format: Arc<dyn Format>,
    latest: Arc<Latest<Published>>,
    last_success: Option<SystemTime>,
    errors_total: u64,
    /// The error of the last failed collection, until one succeeds.
    last_error: Option<String>,
}

impl Loop {
    /// Runs the collector now and then every `interval` on a thread of its own.
    fn spawn(mut self, interval: Duration) -> std::io::Result<Running> {
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
        let outcome = Outcome {
            success,
            duration: started.elapsed(),
            finished_at,
            last_success: self.last_success,
            errors_total: self.errors_total,
        };
        let published = publish(self.format.as_ref(), &collection, started, outcome);
        self.latest.set(published);
    }

    /// Counts and logs how a collection went: an error once per distinct
    /// message, and once when collections succeed again. Returns whether it
    /// succeeded.
    fn note(&mut self, result: Result<(), CollectError>) -> bool {
        let name = self.name;
        match result {
            Ok(()) => {
                if self.last_error.take().is_some() {
                    info!(
                        collector = name,
                        "the {name} collector reads its source again"
                    );
                }
                true
            }
            Err(CollectError::Failed(error)) => {
                self.errors_total += 1;
                if self.last_error.as_ref() != Some(&error) {
                    warn!(collector = name, "{error}");
                    self.last_error = Some(error);
                }
                false
            }
            Err(CollectError::Waiting) => false,
        }
    }
}
