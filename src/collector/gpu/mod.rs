//! NVIDIA GPUs through NVML, split by concern:
//! - this file: the NVML session (initialisation with backoff, where the
//!   library is looked for, initialising again after a driver reload) and
//!   the collection of each interval;
//! - [`discovery`]: what is read once per initialisation (identity, limits);
//! - [`readings`]: what is read every interval;
//! - [`sys`]: the NVML calls nvml-wrapper lacks (field values with scope ids, MIG instance ids);
//! - [`events`]: the thread that waits for XID and ECC events;
//! - [`mig`], [`gpm`]: MIG devices and GPM profiling metrics.

mod discovery;
mod events;
mod gpm;
mod mig;
mod readings;
mod sys;

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use tracing::{debug, info, warn};

use super::{Collector, Setup, Shared, Started};
use crate::catalogue::{
    self, DRIVER_INFO, GPU_INFO, GPU_UP, GPUS, NVML_CALLS, NVML_UP, XID_FELL_OFF_THE_BUS,
};
use crate::exposition::{Samples, bool_value};
use crate::snapshot::{EventWatch, GpuState, GpuStatus};
use crate::units::cuda_version_string;
use discovery::{Discovered, Identity};

/// Longest wait between two attempts to initialise NVML.
const MAX_INIT_BACKOFF: Duration = Duration::from_secs(60);

/// The name the dynamic loader is asked for.
const LIBRARY: &str = "libnvidia-ml.so.1";

/// Where drivers install NVML, tried when the loader's path and cache do not
/// find it (e.g. a minimal image whose linker cache was not updated, or a
/// driver container mounted under /run/nvidia/driver).
const FALLBACK_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/nvidia/lib64",
    "/run/nvidia/driver/usr/lib/x86_64-linux-gnu",
    "/run/nvidia/driver/usr/lib/aarch64-linux-gnu",
    "/run/nvidia/driver/usr/lib64",
];

pub fn start(setup: &Setup) -> Started {
    let options = setup.options;
    Ok(Some(Box::new(GpuCollector::new(
        options.nvml_library.clone().map(Into::into),
        options.collect_interval,
        setup.shared.clone(),
    ))))
}

pub struct GpuCollector {
    library: Option<OsString>,
    session: Option<Session>,
    first_backoff: Duration,
    backoff: Duration,
    next_init_attempt: Instant,
    /// Last NVML error, so that a persistent one is logged once, not per interval.
    last_error: Option<String>,
    shared: Arc<Shared>,
    /// Event counts since the exporter started; they outlive sessions.
    events: Arc<events::Counts>,
    /// GPM traffic since the exporter started; it outlives sessions.
    traffic: gpm::Totals,
}

/// What NVML work is for, as the `phase` label of `system_info_exporter_nvml_calls_total`.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    Init,
    Discovery,
    Collection,
    Events,
    Processes,
}

/// NVML calls made since start, by phase (indexed like
/// `catalogue::NVML_CALL_PHASES`); clones count into the same counters.
#[derive(Default, Clone)]
pub struct NvmlCalls(Arc<[AtomicU64; 5]>);

impl NvmlCalls {
    pub fn count(&self, phase: Phase) -> &AtomicU64 {
        &self.0[phase as usize]
    }

    pub fn add_samples(&self, out: &mut Samples) {
        for (phase, calls) in catalogue::NVML_CALL_PHASES.iter().zip(self.0.iter()) {
            out.add(&NVML_CALLS, &[phase], calls.load(Ordering::Relaxed) as f64);
        }
    }
}

/// One NVML initialisation and what never changes during it.
struct Session {
    watcher: Option<events::Watcher>,
    nvml: Arc<Nvml>,
    driver: DriverInfo,
    identities: Vec<Option<Identity>>,
    discovered: Vec<Option<Discovered>>,
    was_up: Vec<bool>,
    migs: HashMap<String, mig::MigIdentity>,
    gpm: gpm::Previous,
}

impl Drop for Session {
    /// Stops the event thread and frees GPM samples before NVML shuts down.
    fn drop(&mut self) {
        self.watcher = None;
        self.gpm.free(&self.nvml);
    }
}

struct DriverInfo {
    driver_version: String,
    nvml_version: String,
    cuda_driver_version: String,
}

impl GpuCollector {
    /// `library` overrides where `libnvidia-ml.so.1` is loaded from;
    /// `retry` is the first wait before initialisation is tried again.
    pub fn new(library: Option<OsString>, retry: Duration, shared: Arc<Shared>) -> Self {
        Self {
            library,
            session: None,
            first_backoff: retry,
            backoff: retry,
            next_init_attempt: Instant::now(),
            last_error: None,
            shared,
            events: Arc::default(),
            traffic: gpm::Totals::new(),
        }
    }

    fn init(&self) -> Result<Session, String> {
        let init_calls = self.shared.nvml_calls.count(Phase::Init);
        let nvml = load(self.library.as_deref(), init_calls)?;
        init_calls.fetch_add(3, Ordering::Relaxed);
        let driver = DriverInfo {
            driver_version: nvml.sys_driver_version().unwrap_or_default(),
            nvml_version: nvml.sys_nvml_version().unwrap_or_default(),
            cuda_driver_version: nvml
                .sys_cuda_driver_version()
                .map(cuda_version_string)
                .unwrap_or_default(),
        };
        Ok(Session {
            watcher: None,
            nvml: Arc::new(nvml),
            driver,
            identities: Vec::new(),
            discovered: Vec::new(),
            was_up: Vec::new(),
            migs: HashMap::new(),
            gpm: gpm::Previous::default(),
        })
    }

    /// NVML cannot be used: reports `nvidia_nvml_up 0` and schedules the
    /// next initialisation with a doubling backoff.
    fn unavailable(&mut self, message: String, out: &mut Samples) -> bool {
        if self.last_error.as_deref() != Some(&message) {
            warn!(error = %message, retry_in = ?self.backoff, "NVML is unavailable; serving host metrics only and retrying");
        } else {
            debug!(error = %message, "NVML is still unavailable");
        }
        self.next_init_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_INIT_BACKOFF.max(self.first_backoff));
        self.last_error = Some(message);
        self.report_unavailable(out)
    }

    fn report_unavailable(&self, out: &mut Samples) -> bool {
        out.add(&NVML_UP, &[], 0.0);
        self.shared.nvml_calls.add_samples(out);
        self.shared.nvml.clear();
        self.shared.gpu.set(GpuStatus {
            nvml_error: self.last_error.clone(),
            ..GpuStatus::default()
        });
        false
    }
}

/// Loads and initialises NVML: from `library` when given, otherwise through
/// the dynamic loader and then from [`FALLBACK_DIRS`].
fn load(library: Option<&OsStr>, calls: &AtomicU64) -> Result<Nvml, String> {
    let open = |path: &OsStr| {
        calls.fetch_add(1, Ordering::Relaxed);
        Nvml::builder().lib_path(path).init()
    };
    if let Some(path) = library {
        return open(path).map_err(|e| e.to_string());
    }
    let error = match open(OsStr::new(LIBRARY)) {
        Err(NvmlError::LibloadingError(error)) => error,
        other => return other.map_err(|e| e.to_string()),
    };
    let Some(path) = fallback_path(FALLBACK_DIRS) else {
        return Err(format!(
            "{error}; also looked in {}. Install the NVIDIA driver, run the container with the NVIDIA runtime (--gpus all), or name the library with --nvml.library",
            FALLBACK_DIRS.join(", ")
        ));
    };
    info!(path = %path.display(), "the dynamic loader did not find {LIBRARY}; loading it from a well-known directory");
    open(path.as_os_str()).map_err(|e| e.to_string())
}

fn fallback_path(dirs: &[&str]) -> Option<std::path::PathBuf> {
    dirs.iter()
        .map(|dir| Path::new(dir).join(LIBRARY))
        .find(|path| path.exists())
}

impl Collector for GpuCollector {
    fn collect(&mut self, out: &mut Samples) -> bool {
        if self.session.is_none() {
            if Instant::now() < self.next_init_attempt {
                return self.report_unavailable(out);
            }
            match self.init() {
                Ok(session) => {
                    info!(driver_version = %session.driver.driver_version, "NVML initialised");
                    self.shared.nvml.set(session.nvml.clone());
                    self.session = Some(session);
                    self.last_error = None;
                    self.backoff = self.first_backoff;
                }
                Err(message) => return self.unavailable(message, out),
            }
        }
        let session = self.session.as_mut().expect("initialised above");
        let calls = &self.shared.nvml_calls;
        match session.read(calls, &self.events, &mut self.traffic) {
            Ok((samples, status)) => {
                out.extend(samples);
                calls.add_samples(out);
                self.shared.gpu.set(status);
                true
            }
            Err(error) => {
                // Enumeration failed, or every GPU fails as after a driver
                // reload: the handles are stale. Start over with a fresh
                // initialisation (dropping the session shuts NVML down).
                warn!(%error, "NVML stopped answering; shutting it down and initialising it again");
                self.shared.nvml.clear();
                self.session = None;
                self.unavailable(error, out)
            }
        }
    }
}

/// Errors after which nothing more is asked of a GPU in this collection.
fn is_gpu_failure(error: &NvmlError) -> bool {
    matches!(
        error,
        NvmlError::GpuLost
            | NvmlError::Unknown
            | NvmlError::Uninitialized
            | NvmlError::DriverNotLoaded
            | NvmlError::ResetRequired
    )
}

/// Errors that mean NVML itself no longer works, not one GPU.
fn is_driver_failure(error: &NvmlError) -> bool {
    matches!(
        error,
        NvmlError::Unknown | NvmlError::Uninitialized | NvmlError::DriverNotLoaded
    )
}

impl Session {
    /// Reads every GPU. Fails, saying why, when NVML as a whole no longer answers.
    fn read(
        &mut self,
        calls: &NvmlCalls,
        events: &Arc<events::Counts>,
        traffic: &mut gpm::Totals,
    ) -> Result<(Samples, GpuStatus), String> {
        let collection = calls.count(Phase::Collection);
        collection.fetch_add(1, Ordering::Relaxed);
        let count = self.nvml.device_count().map_err(|e| e.to_string())?;
        let slots = count as usize;
        self.identities.resize(slots, None);
        self.discovered.resize_with(slots, || None);
        self.was_up.resize(slots, true);

        let mut results = Vec::with_capacity(slots);
        let mut driver_failures = Vec::new();
        for index in 0..count {
            collection.fetch_add(1, Ordering::Relaxed);
            let nvml = self.nvml.clone();
            let result = match nvml.device_by_index(index) {
                Ok(device) => self.read_gpu(index, &device, calls, traffic),
                Err(error) => Err(error),
            };
            if let Err(error) = &result {
                debug!(gpu = index, %error, "GPU cannot be read");
                if is_driver_failure(error) {
                    driver_failures.push(error.to_string());
                }
            }
            results.push(result);
        }
        if count > 0 && driver_failures.len() == slots {
            return Err(format!(
                "every GPU fails ({}), as after a driver reload",
                driver_failures[0]
            ));
        }
        // Before the samples, so that the first collection already shows
        // which GPUs' events are watched.
        self.watch_events(calls, events);

        let mut out = Samples::default();
        out.add(&NVML_UP, &[], 1.0);
        let driver = &self.driver;
        out.add(
            &DRIVER_INFO,
            &[
                &driver.driver_version,
                &driver.nvml_version,
                &driver.cuda_driver_version,
            ],
            1.0,
        );
        out.add(&GPUS, &[], f64::from(count));

        let fell_off = self
            .watcher
            .as_ref()
            .map(|w| w.fell_off())
            .unwrap_or_default();
        let mut status = GpuStatus {
            nvml_up: true,
            nvml_error: None,
            driver_version: Some(driver.driver_version.clone()),
            gpus: Vec::with_capacity(slots),
        };
        for (index, result) in (0..count).zip(results) {
            let gpu = self.add_gpu(index, result, &fell_off, events, &mut out);
            status.gpus.push(gpu);
        }
        Ok((out, status))
    }

    /// Adds a GPU's identity, state, readings (when up) and event counters.
    fn add_gpu(
        &mut self,
        index: u32,
        result: Result<Samples, NvmlError>,
        fell_off: &HashSet<u32>,
        events: &events::Counts,
        out: &mut Samples,
    ) -> GpuState {
        let slot = index as usize;
        let (up, samples) = match result {
            Ok(samples) if !fell_off.contains(&index) => (true, samples),
            _ => (false, Samples::default()),
        };
        let identity = self.identities[slot].as_ref();
        let uuid = identity.map(|i| i.uuid.as_str()).unwrap_or_default();
        let index_label = index.to_string();
        if let Some(id) = identity {
            let labels = [&index_label, uuid, &id.name, &id.pci_bus_id, &id.serial];
            out.add(&GPU_INFO, &labels, 1.0);
        }
        out.add(&GPU_UP, &[&index_label, uuid], bool_value(up));
        out.extend(samples);
        let watch = self
            .watcher
            .as_ref()
            .and_then(|w| w.state(index))
            .unwrap_or(EventWatch::NotWatched);
        if !uuid.is_empty() {
            events.add_samples(&index_label, uuid, &watch, out);
        }
        if up != self.was_up[slot] {
            if up {
                info!(gpu = index, "GPU is answering again");
            } else if fell_off.contains(&index) {
                warn!(gpu = index, %uuid, "GPU fell off the bus (XID {XID_FELL_OFF_THE_BUS}); reporting nvidia_gpu_up 0 until NVML is initialised again");
            } else {
                warn!(gpu = index, %uuid, "GPU stopped answering; reporting nvidia_gpu_up 0");
            }
            self.was_up[slot] = up;
        }
        GpuState {
            index,
            uuid: uuid.to_owned(),
            up,
            events: watch,
        }
    }

    /// Discovers the GPU if needed, then reads it. On a GPU failure returns
    /// the error; the GPU then counts as down for this collection.
    fn read_gpu(
        &mut self,
        index: u32,
        device: &Device,
        calls: &NvmlCalls,
        traffic: &mut gpm::Totals,
    ) -> Result<Samples, NvmlError> {
        let slot = index as usize;
        let mut reader = Reader::new(index, device, calls.count(Phase::Discovery));
        if self.identities[slot].is_none() {
            self.identities[slot] = discovery::identity(&mut reader);
        }
        let Some(identity) = &self.identities[slot] else {
            return Err(reader.failure.unwrap_or(NvmlError::NotSupported));
        };
        if self.discovered[slot].is_none() {
            let discovered = discovery::discover(&mut reader);
            if reader.failure.is_none() {
                self.discovered[slot] = Some(discovered);
            }
        }
        if let Some(error) = reader.failure {
            return Err(error);
        }
        let discovered = self.discovered[slot].as_ref().expect("discovered above");
        let mut out = Samples::default();
        let mut gpu = readings::GpuSamples::new(&mut out, index, &identity.uuid);
        let mut reader = Reader::new(index, device, calls.count(Phase::Collection));
        discovered.add_samples(&mut gpu);
        readings::read(&mut reader, discovered, &mut gpu);
        let instances = match discovered.mig_slots {
            Some(slots) => mig::read(&mut reader, slots, &mut self.migs, &mut gpu),
            None => Vec::new(),
        };
        if discovered.gpm {
            let gpu_id = (index, identity.uuid.as_str());
            for instance in std::iter::once(None).chain(instances.into_iter().map(Some)) {
                let nvml = device.nvml();
                self.gpm
                    .read(nvml, &mut reader, gpu_id, instance, traffic, &mut gpu);
            }
        }
        match reader.failure {
            None => Ok(out),
            Some(error) => Err(error),
        }
    }

    /// Starts the event thread, or starts it again when GPUs were discovered
    /// that it does not watch yet.
    fn watch_events(&mut self, calls: &NvmlCalls, events: &Arc<events::Counts>) {
        let targets: Vec<events::Target> = self
            .discovered
            .iter()
            .zip(&self.identities)
            .enumerate()
            .filter_map(|(index, (discovered, identity))| {
                Some(events::Target {
                    index: index as u32,
                    uuid: identity.as_ref()?.uuid.clone(),
                    types: discovered.as_ref()?.event_types,
                })
            })
            .collect();
        if self.watcher.as_ref().is_some_and(|w| w.watches(&targets)) || targets.is_empty() {
            return;
        }
        self.watcher = None;
        self.watcher = Some(events::Watcher::start(
            self.nvml.clone(),
            targets,
            events.clone(),
            calls.clone(),
        ));
    }
}

/// Reads fields of one GPU, counting each NVML call and remembering the first
/// failure that makes the GPU count as down. Any other error (not supported,
/// a symbol missing in an older driver, no permission) only leaves that one
/// reading out.
pub struct Reader<'d, 'n> {
    index: u32,
    device: &'d Device<'n>,
    calls: &'d AtomicU64,
    failure: Option<NvmlError>,
}

impl<'d, 'n> Reader<'d, 'n> {
    fn new(index: u32, device: &'d Device<'n>, calls: &'d AtomicU64) -> Self {
        Self {
            index,
            device,
            calls,
            failure: None,
        }
    }

    pub fn read<T>(
        &mut self,
        what: &str,
        read: impl FnOnce(&'d Device<'n>) -> Result<T, NvmlError>,
    ) -> Option<T> {
        self.read_calls(what, 1, read)
    }

    /// As `read`, for a reading that takes `calls` NVML calls.
    pub fn read_calls<T>(
        &mut self,
        what: &str,
        calls: u64,
        read: impl FnOnce(&'d Device<'n>) -> Result<T, NvmlError>,
    ) -> Option<T> {
        if self.failure.is_some() {
            return None;
        }
        self.calls.fetch_add(calls, Ordering::Relaxed);
        match read(self.device) {
            Ok(value) => Some(value),
            Err(error) if is_gpu_failure(&error) => {
                self.failure = Some(error);
                None
            }
            Err(error) => {
                debug!(gpu = self.index, what, %error, "reading omitted");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialisation_is_retried_with_a_doubling_backoff_capped_at_a_minute() {
        let shared = Arc::new(Shared::default());
        let mut gpu = GpuCollector::new(
            Some("/nonexistent/libnvidia-ml.so.1".into()),
            Duration::from_secs(5),
            shared.clone(),
        );
        let mut waits = Vec::new();
        for _ in 0..6 {
            let before = Instant::now();
            let success = gpu.collect(&mut Samples::default());
            let status = shared.gpu.get().unwrap();
            assert!(!success && !status.nvml_up);
            let error = status.nvml_error.clone().unwrap();
            assert!(error.contains("libnvidia-ml.so.1"), "{error}");
            waits.push((gpu.next_init_attempt - before).as_secs());
            // Before the next attempt is due, nothing is tried and the error stays.
            assert!(!gpu.collect(&mut Samples::default()));
            assert_eq!(shared.gpu.get().unwrap().nvml_error, Some(error));
            gpu.next_init_attempt = Instant::now();
        }
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn phases_are_counted_under_their_catalogue_label() {
        let calls = NvmlCalls::default();
        let phases = [
            (Phase::Init, "init"),
            (Phase::Discovery, "discovery"),
            (Phase::Collection, "collection"),
            (Phase::Events, "events"),
            (Phase::Processes, "processes"),
        ];
        for (n, (phase, _)) in phases.iter().enumerate() {
            calls
                .count(*phase)
                .fetch_add(n as u64 + 1, Ordering::Relaxed);
        }
        let mut out = Samples::default();
        calls.add_samples(&mut out);
        let text = out.encode();
        for (n, (_, label)) in phases.iter().enumerate() {
            let line = format!(
                "system_info_exporter_nvml_calls_total{{phase=\"{label}\"}} {}",
                n + 1
            );
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn the_fallback_finds_the_library_in_the_first_directory_that_has_it() {
        let dir = std::env::temp_dir().join(format!("sie-fallback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(LIBRARY), b"").unwrap();
        let dir = dir.to_str().unwrap();
        assert_eq!(
            fallback_path(&["/nonexistent", dir]),
            Some(Path::new(dir).join(LIBRARY))
        );
        assert_eq!(fallback_path(&["/nonexistent"]), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
