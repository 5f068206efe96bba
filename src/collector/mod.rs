//! Collectors read one source each into samples of the catalogue. Each runs
//! on its own OS thread, so a slow or hung NVML call never stalls another
//! collector, the async runtime or a scrape: scrapes only read the latest
//! published text. Adding a collector is one module and one line in
//! [`COLLECTORS`]; the HTTP side and the renderer iterate over what runs.

pub mod containers;
pub mod gpu;
pub mod host;
pub mod pods;
pub mod processes;

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::Options;
use crate::dcgm;
use crate::exposition::Samples;
use crate::snapshot::{GpuStatus, Outcome, Published};

/// A source of metrics.
pub trait Collector: Send {
    /// Reads the source once, adding its samples to `out`. Returns false when
    /// the source could not be read at all (the samples then say why, e.g.
    /// `nvidia_nvml_up 0`).
    fn collect(&mut self, out: &mut Samples) -> bool;
}

/// A collector: its name (for `--collector.<name>`, the `collector` label and
/// `collect[]`), whether it runs unless told otherwise, and how it starts.
/// `start` returns `None` when its source is absent on this machine (e.g. no
/// kubelet socket), and an error that stops the exporter when it cannot start.
pub struct Registration {
    pub name: &'static str,
    pub enabled_by_default: bool,
    pub help: &'static str,
    pub start: fn(&Setup) -> Started,
}

pub type Started = Result<Option<Box<dyn Collector>>, String>;

/// Every collector, in the order of the exposition.
pub const COLLECTORS: &[Registration] = &[
    Registration {
        name: "gpu",
        enabled_by_default: true,
        help: "NVIDIA GPUs through NVML",
        start: gpu::start,
    },
    Registration {
        name: "host",
        enabled_by_default: true,
        help: "the host's CPU, memory, filesystems and network",
        start: host::start,
    },
    Registration {
        name: "processes",
        enabled_by_default: false,
        help: "each GPU process's memory and utilisation (many series: off by default)",
        start: processes::start,
    },
    Registration {
        name: "pods",
        enabled_by_default: true,
        help: "which pods hold which GPUs, from the kubelet (where its socket exists)",
        start: pods::start,
    },
];

/// What collectors are started with.
pub struct Setup<'a> {
    pub options: &'a Options,
    pub shared: &'a Arc<Shared>,
}

/// State collectors share with each other and with the HTTP handlers,
/// beyond their metrics.
#[derive(Default)]
pub struct Shared {
    /// Written by the GPU collector; `None` before its first collection or
    /// when it does not run.
    pub gpu: Latest<GpuStatus>,
    /// The GPU collector's NVML session while there is one, for collectors
    /// that read NVML too (processes): one initialisation, one backoff.
    pub nvml: Latest<Arc<nvml_wrapper::Nvml>>,
    /// Every NVML call of every collector, by phase.
    pub nvml_calls: gpu::NvmlCalls,
}

/// The latest published result of something, shared by `Arc`: publishing
/// swaps the pointer, so readers never wait on a collection.
pub struct Latest<T>(Mutex<Option<Arc<T>>>);

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T> Latest<T> {
    pub fn get(&self) -> Option<Arc<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, value: T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(value));
    }

    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A running collector's name and latest result.
pub struct Slot {
    pub name: &'static str,
    pub latest: Arc<Latest<Published>>,
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

/// Starts every collector whose source is present; each publishes into its slot.
pub fn start_all(setup: &Setup, interval: Duration) -> Result<(Vec<Slot>, Vec<Running>), String> {
    let mut slots = Vec::new();
    let mut running = Vec::new();
    // One view for all collectors: the GPU collections are joined with the pods'.
    let view = dcgm::View::for_options(setup.options).map(Arc::new);
    let enabled = COLLECTORS
        .iter()
        .filter(|r| setup.options.collectors.contains(&r.name));
    for registration in enabled {
        let Some(collector) = (registration.start)(setup)? else {
            continue;
        };
        let latest = Arc::new(Latest::default());
        running.push(
            spawn(
                registration.name,
                collector,
                interval,
                latest.clone(),
                view.clone(),
            )
            .map_err(|e| {
                format!(
                    "cannot start the {} collector's thread: {e}",
                    registration.name
                )
            })?,
        );
        slots.push(Slot {
            name: registration.name,
            latest,
        });
    }
    Ok((slots, running))
}

/// Runs `collector` now and then every `interval` on a thread of its own,
/// publishing each collection, encoded (natively or in `view`) and gzipped,
/// into `latest`.
pub fn spawn(
    name: &'static str,
    mut collector: Box<dyn Collector>,
    interval: Duration,
    latest: Arc<Latest<Published>>,
    view: Option<Arc<dcgm::View>>,
) -> std::io::Result<Running> {
    let (stop, stopped) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("collect-{name}"))
        .spawn(move || {
            let mut last_success = None;
            loop {
                let started = Instant::now();
                let mut samples = Samples::default();
                let success = collector.collect(&mut samples);
                let exposition = match &view {
                    Some(view) => view.render(name, &samples, started),
                    None => samples.encode(),
                };
                let finished_at = SystemTime::now();
                if success {
                    last_success = Some(finished_at);
                }
                let outcome = Outcome {
                    success,
                    duration: started.elapsed(),
                    finished_at,
                    last_success,
                };
                // A compressor is a few hundred KiB; made for each
                // collection, it is not resident between them.
                let mut compress = crate::compress::best();
                latest.set(Published::new(outcome, exposition, &mut compress));
                let wait = interval.saturating_sub(started.elapsed());
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })?;
    Ok(Running { stop, thread })
}
