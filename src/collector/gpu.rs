//! NVIDIA GPUs through NVML.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::{Clock, PerformanceState, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use tracing::{debug, info, warn};

use super::Collector;
use crate::snapshot::{ClockReading, DriverInfo, GpuIdentity, GpuMemory, GpuSnapshot, GpuStats};
use crate::units::{
    cuda_version_string, megahertz_to_hertz, millijoules_to_joules, milliwatts_to_watts,
    percent_to_ratio,
};

const CLOCKS: [(&str, Clock); 4] = [
    ("graphics", Clock::Graphics),
    ("sm", Clock::SM),
    ("memory", Clock::Memory),
    ("video", Clock::Video),
];

/// Longest wait between two attempts to initialise NVML.
const MAX_INIT_BACKOFF: Duration = Duration::from_secs(60);

pub struct GpuCollector {
    library: Option<OsString>,
    session: Option<Session>,
    first_backoff: Duration,
    backoff: Duration,
    next_init_attempt: Instant,
    /// Last NVML error, so that a persistent one is logged once, not per interval.
    last_error: Option<String>,
}

/// One NVML initialisation and what never changes during it.
struct Session {
    nvml: Nvml,
    driver: DriverInfo,
    identities: Vec<Option<GpuIdentity>>,
    was_up: Vec<bool>,
}

impl GpuCollector {
    /// `library` overrides where `libnvidia-ml.so.1` is loaded from;
    /// `retry` is the first wait before initialisation is tried again.
    pub fn new(library: Option<OsString>, retry: Duration) -> Self {
        Self {
            library,
            session: None,
            first_backoff: retry,
            backoff: retry,
            next_init_attempt: Instant::now(),
            last_error: None,
        }
    }

    fn init(&self) -> Result<Session, NvmlError> {
        let mut builder = Nvml::builder();
        if let Some(path) = &self.library {
            builder.lib_path(path);
        }
        let nvml = builder.init()?;
        let driver = DriverInfo {
            driver_version: nvml.sys_driver_version().unwrap_or_default(),
            nvml_version: nvml.sys_nvml_version().unwrap_or_default(),
            cuda_driver_version: nvml
                .sys_cuda_driver_version()
                .map(cuda_version_string)
                .unwrap_or_default(),
        };
        Ok(Session {
            nvml,
            driver,
            identities: Vec::new(),
            was_up: Vec::new(),
        })
    }

    fn unavailable(&mut self, error: NvmlError) -> (GpuSnapshot, bool) {
        let message = error.to_string();
        if self.last_error.as_deref() != Some(&message) {
            warn!(error = %message, retry_in = ?self.backoff, "NVML is unavailable; serving host metrics only and retrying");
            self.last_error = Some(message.clone());
        } else {
            debug!(error = %message, "NVML is still unavailable");
        }
        self.next_init_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_INIT_BACKOFF.max(self.first_backoff));
        let snapshot = GpuSnapshot {
            nvml_up: false,
            nvml_error: Some(message),
            ..GpuSnapshot::default()
        };
        (snapshot, false)
    }
}

impl Collector for GpuCollector {
    type Output = GpuSnapshot;
    const NAME: &'static str = "gpu";

    fn collect(&mut self) -> (GpuSnapshot, bool) {
        if self.session.is_none() {
            if Instant::now() < self.next_init_attempt {
                let snapshot = GpuSnapshot {
                    nvml_error: self.last_error.clone(),
                    ..GpuSnapshot::default()
                };
                return (snapshot, false);
            }
            match self.init() {
                Ok(session) => {
                    info!(driver_version = %session.driver.driver_version, "NVML initialised");
                    self.session = Some(session);
                    self.last_error = None;
                    self.backoff = self.first_backoff;
                }
                Err(error) => return self.unavailable(error),
            }
        }
        let session = self.session.as_mut().expect("initialised above");
        match session.read() {
            Ok(snapshot) => (snapshot, true),
            Err(error) => {
                // Enumeration itself failed (driver unloaded, NVML torn down):
                // start over with a fresh initialisation.
                self.session = None;
                self.unavailable(error)
            }
        }
    }
}

impl Session {
    fn read(&mut self) -> Result<GpuSnapshot, NvmlError> {
        let count = self.nvml.device_count()?;
        let count_usize = count as usize;
        self.identities.resize(count_usize, None);
        self.was_up.resize(count_usize, true);
        let mut gpus = Vec::with_capacity(count_usize);
        for index in 0..count {
            let slot = index as usize;
            let gpu = match self.nvml.device_by_index(index) {
                Ok(device) => read_gpu(index, &device, &mut self.identities[slot]),
                Err(error) => down(index, self.identities[slot].clone(), &error),
            };
            if gpu.up != self.was_up[slot] {
                if gpu.up {
                    info!(gpu = index, "GPU is answering again");
                } else {
                    warn!(gpu = index, uuid = %gpu.identity.uuid, "GPU stopped answering; reporting nvidia_gpu_up 0");
                }
                self.was_up[slot] = gpu.up;
            }
            gpus.push(gpu);
        }
        Ok(GpuSnapshot {
            nvml_up: true,
            nvml_error: None,
            driver: Some(self.driver.clone()),
            gpus,
        })
    }
}

fn down(index: u32, identity: Option<GpuIdentity>, error: &NvmlError) -> GpuStats {
    debug!(gpu = index, %error, "GPU cannot be read");
    GpuStats {
        index,
        identity: identity.unwrap_or_default(),
        up: false,
        ..GpuStats::default()
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

/// Reads fields of one GPU, remembering the first failure that makes the
/// GPU count as down. Any other error (not supported, a symbol missing in an
/// older driver, no permission) only leaves that one field out.
struct FieldReader<'d, 'n> {
    index: u32,
    device: &'d Device<'n>,
    failure: Option<NvmlError>,
}

impl<'d, 'n> FieldReader<'d, 'n> {
    fn read<T>(
        &mut self,
        field: &str,
        read: impl FnOnce(&'d Device<'n>) -> Result<T, NvmlError>,
    ) -> Option<T> {
        if self.failure.is_some() {
            return None;
        }
        match read(self.device) {
            Ok(value) => Some(value),
            Err(error) if is_gpu_failure(&error) => {
                self.failure = Some(error);
                None
            }
            Err(error) => {
                debug!(gpu = self.index, field, %error, "field omitted");
                None
            }
        }
    }
}

fn read_identity(fields: &mut FieldReader<'_, '_>) -> Option<GpuIdentity> {
    Some(GpuIdentity {
        uuid: fields.read("uuid", Device::uuid)?,
        name: fields.read("name", Device::name).unwrap_or_default(),
        pci_bus_id: fields
            .read("pci_info", Device::pci_info)
            .map(|pci| pci.bus_id)
            .unwrap_or_default(),
        serial: fields.read("serial", Device::serial).unwrap_or_default(),
    })
}

fn read_gpu(index: u32, device: &Device, identity: &mut Option<GpuIdentity>) -> GpuStats {
    let mut fields = FieldReader {
        index,
        device,
        failure: None,
    };
    if identity.is_none() {
        *identity = read_identity(&mut fields);
    }
    let utilization = fields.read("utilization", Device::utilization_rates);
    let fan_count = fields.read("fans", Device::num_fans).unwrap_or(0);
    let mut gpu = GpuStats {
        index,
        identity: identity.clone().unwrap_or_default(),
        up: true,
        temperature_celsius: fields
            .read("temperature", |d| d.temperature(TemperatureSensor::Gpu))
            .map(f64::from),
        power_usage_watts: fields
            .read("power_usage", Device::power_usage)
            .map(milliwatts_to_watts),
        power_limit_watts: fields
            .read("power_limit", Device::enforced_power_limit)
            .map(milliwatts_to_watts),
        energy_joules: fields
            .read("energy", Device::total_energy_consumption)
            .map(millijoules_to_joules),
        memory: fields
            .read("memory", Device::memory_info)
            .map(|m| GpuMemory {
                total_bytes: m.total,
                used_bytes: m.used,
                free_bytes: m.free,
                reserved_bytes: m.reserved,
            }),
        utilization_ratio: utilization.as_ref().map(|u| percent_to_ratio(u.gpu)),
        memory_utilization_ratio: utilization.as_ref().map(|u| percent_to_ratio(u.memory)),
        encoder_utilization_ratio: fields
            .read("encoder_utilization", Device::encoder_utilization)
            .map(|u| percent_to_ratio(u.utilization)),
        decoder_utilization_ratio: fields
            .read("decoder_utilization", Device::decoder_utilization)
            .map(|u| percent_to_ratio(u.utilization)),
        clocks: CLOCKS
            .iter()
            .map(|(name, clock)| ClockReading {
                clock: name,
                hertz: fields
                    .read("clock", |d| d.clock_info(*clock))
                    .map(megahertz_to_hertz),
                max_hertz: fields
                    .read("max_clock", |d| d.max_clock_info(*clock))
                    .map(megahertz_to_hertz),
            })
            .filter(|reading| reading.hertz.is_some() || reading.max_hertz.is_some())
            .collect(),
        fan_speed_ratios: (0..fan_count)
            .filter_map(|fan| {
                Some((
                    fan,
                    percent_to_ratio(fields.read("fan_speed", |d| d.fan_speed(fan))?),
                ))
            })
            .collect(),
        performance_state: fields
            .read("performance_state", Device::performance_state)
            .filter(|state| *state != PerformanceState::Unknown)
            .map(|state| state.as_c()),
    };
    if let Some(error) = fields.failure {
        gpu = down(index, Some(gpu.identity), &error);
    }
    gpu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialisation_is_retried_with_a_doubling_backoff_capped_at_a_minute() {
        let mut gpu = GpuCollector::new(
            Some("/nonexistent/libnvidia-ml.so.1".into()),
            Duration::from_secs(5),
        );
        let mut waits = Vec::new();
        for _ in 0..6 {
            let before = Instant::now();
            let (snapshot, success) = gpu.collect();
            assert!(!success && !snapshot.nvml_up);
            assert!(
                snapshot
                    .nvml_error
                    .as_deref()
                    .unwrap()
                    .contains("libnvidia-ml.so.1")
            );
            waits.push((gpu.next_init_attempt - before).as_secs());
            // Before the next attempt is due, nothing is tried and the error stays.
            let (waiting, _) = gpu.collect();
            assert_eq!(waiting.nvml_error, snapshot.nvml_error);
            gpu.next_init_attempt = Instant::now();
        }
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    }
}
