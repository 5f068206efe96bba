//! NVIDIA GPUs through NVML, split by concern:
//! - this file: the NVML session's life (initialisation with backoff,
//!   initialising again after a driver reload);
//! - [`library`]: where NVML is loaded from;
//! - [`session`]: one initialisation and the collection of each interval;
//! - [`discovery`]: what is read once per initialisation (identity, limits);
//! - [`readings`]: what is read every interval, [`nvlink`] the NVLink part;
//! - [`sys`]: the NVML calls nvml-wrapper lacks (field values with scope ids,
//!   MIG instance ids, the fabric probe);
//! - [`events`]: the thread that waits for XID and ECC events;
//! - [`mig`], [`gpm`]: MIG devices and GPM profiling metrics;
//! - [`fabric`]: the NVLink fabric's registration and health;
//! - [`reader`], [`samples`], [`calls`]: reading one GPU, its samples, and
//!   the count of NVML calls.

mod calls;
mod discovery;
mod events;
mod fabric;
mod gpm;
mod library;
mod mig;
mod nvlink;
mod nvml_values;
mod reader;
mod readings;
mod samples;
mod session;
mod sys;

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::status::GpuStatus;
use super::{CollectError, Collection, Collector, Config, Shared, Started, Wanted};
use crate::metrics::catalogue::NVML_UP;
use crate::metrics::labels::NvmlPhase;
use crate::units::cuda_version_string;
pub(crate) use calls::NvmlCalls;
pub(crate) use nvlink::NvlinkDetail;
// What `record-nvml` asks of NVML the way this collector does.
pub(crate) use events::WATCHED_EVENTS;
pub(crate) use gpm::metric_ids as gpm_metric_ids;
pub(crate) use library::{LoadFailure, load_nvml};
use session::{DriverInfo, Session};
pub(crate) use sys::{
    ARGUMENT_VERSION_MISMATCH, FabricVersion, Field, compute_instance_id, field_results,
    gpu_fabric_info, gpu_instance_id,
};

/// Longest wait between two attempts to initialise NVML.
const MAX_INIT_BACKOFF: Duration = Duration::from_secs(60);

pub(super) fn start(config: &Config, shared: &Arc<Shared>) -> Started {
    Ok(Some(Box::new(GpuCollector::new(
        config.nvml_library.clone().map(Into::into),
        config.interval,
        config.nvlink,
        config.wanted.clone(),
        shared.clone(),
    ))))
}

pub(crate) struct GpuCollector {
    library: Option<OsString>,
    session: Option<Session>,
    first_backoff: Duration,
    backoff: Duration,
    next_init_attempt: Instant,
    /// Why NVML is unavailable, while it is.
    error: Option<String>,
    shared: Arc<Shared>,
    /// Event counts since the exporter started; they outlive sessions.
    events: Arc<events::Counts>,
    /// GPM traffic since the exporter started; it outlives sessions.
    traffic: gpm::Totals,
    nvlink: NvlinkDetail,
    /// What the output serves: readings of nothing served are not made.
    wanted: Wanted,
}

impl GpuCollector {
    /// `library` overrides where `libnvidia-ml.so.1` is loaded from;
    /// `retry` is the first wait before initialisation is tried again;
    /// `nvlink` how much of NVLink to read, `wanted` what the output serves.
    pub(crate) fn new(
        library: Option<OsString>,
        retry: Duration,
        nvlink: NvlinkDetail,
        wanted: Wanted,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            library,
            session: None,
            first_backoff: retry,
            backoff: retry,
            next_init_attempt: Instant::now(),
            error: None,
            shared,
            events: Arc::default(),
            traffic: gpm::Totals::new(),
            nvlink,
            wanted,
        }
    }

    fn init(&self) -> Result<Session, String> {
        let init_calls = self.shared.nvml_calls.count(NvmlPhase::Init);
        let nvml = library::load(self.library.as_deref(), init_calls)?;
        init_calls.fetch_add(3, Ordering::Relaxed);
        let driver = DriverInfo {
            driver_version: nvml.sys_driver_version().unwrap_or_default(),
            nvml_version: nvml.sys_nvml_version().unwrap_or_default(),
            cuda_driver_version: nvml
                .sys_cuda_driver_version()
                .map(cuda_version_string)
                .unwrap_or_default(),
        };
        Ok(Session::new(
            Arc::new(nvml),
            driver,
            self.nvlink,
            self.wanted.clone(),
        ))
    }

    /// NVML cannot be used: schedules the next initialisation with a
    /// doubling backoff, then reports it.
    fn unavailable(&mut self, error: String, out: &mut Collection) -> CollectError {
        debug!(%error, retry_in = ?self.backoff, "NVML initialisation failed");
        self.next_init_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_INIT_BACKOFF.max(self.first_backoff));
        self.error = Some(error);
        self.report_unavailable(out)
    }

    /// Reports `nvidia_nvml_up 0` and why.
    fn report_unavailable(&self, out: &mut Collection) -> CollectError {
        out.samples.add(&NVML_UP, &[], 0.0);
        self.shared.nvml_calls.add_samples(&mut out.samples);
        self.shared.nvml.clear();
        self.shared.gpu.set(GpuStatus {
            nvml_error: self.error.clone(),
            ..GpuStatus::default()
        });
        let error = self.error.as_deref().unwrap_or("not initialised yet");
        CollectError::Failed(format!(
            "NVML is unavailable: {error}; serving host metrics only and initialising NVML again with a backoff of up to {}s",
            MAX_INIT_BACKOFF.max(self.first_backoff).as_secs()
        ))
    }
}

impl Collector for GpuCollector {
    fn collect(&mut self, out: &mut Collection) -> Result<(), CollectError> {
        if self.session.is_none() {
            if Instant::now() < self.next_init_attempt {
                return Err(self.report_unavailable(out));
            }
            match self.init() {
                Ok(session) => {
                    info!(driver_version = %session.driver.driver_version, "NVML initialised");
                    self.shared.nvml.set(session.nvml.clone());
                    self.session = Some(session);
                    self.error = None;
                    self.backoff = self.first_backoff;
                }
                Err(error) => return Err(self.unavailable(error, out)),
            }
        }
        let session = self.session.as_mut().expect("initialised above");
        let calls = &self.shared.nvml_calls;
        match session.read(calls, &self.events, &mut self.traffic) {
            Ok(read) => {
                out.samples.extend(read.samples);
                calls.add_samples(&mut out.samples);
                out.gpus = Some(read.inventory);
                self.shared.gpu.set(read.status);
                Ok(())
            }
            Err(error) => {
                // Enumeration failed, or every GPU fails as after a driver
                // reload: the handles are stale. Start over with a fresh
                // initialisation (dropping the session shuts NVML down).
                warn!(%error, "NVML stopped answering; shutting it down and initialising it again");
                self.shared.nvml.clear();
                self.session = None;
                Err(self.unavailable(error, out))
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
            NvlinkDetail::default(),
            Wanted::all(),
            shared.clone(),
        );
        let mut waits = Vec::new();
        for _ in 0..6 {
            let before = Instant::now();
            let result = gpu.collect(&mut Collection::default());
            let status = shared.gpu.get().unwrap();
            assert!(matches!(result, Err(CollectError::Failed(_))) && !status.nvml_up);
            let error = status.nvml_error.clone().unwrap();
            assert!(error.contains("libnvidia-ml.so.1"), "{error}");
            waits.push((gpu.next_init_attempt - before).as_secs());
            // Before the next attempt is due, nothing is tried and the error stays.
            assert_eq!(gpu.collect(&mut Collection::default()), result);
            assert_eq!(shared.gpu.get().unwrap().nvml_error, Some(error));
            gpu.next_init_attempt = Instant::now();
        }
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    }
}
