//! One NVML initialisation: what never changes during it, and the reading
//! of every GPU each interval.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use tracing::{debug, info, warn};

use super::discovery::{self, Discovered, Identity};
use super::nvlink::{Links, NvlinkDetail};
use super::reader::Reader;
use super::samples::GpuSamples;
use super::{NvmlCalls, events, fabric, gpm, mig, readings};
use crate::collector::Wanted;
use crate::collector::facts::{GpuIdentity, GpuInventory, MigDevice};
use crate::collector::status::{EventWatch, FabricHealth, GpuState, GpuStatus};
use crate::metrics::catalogue::{
    DRIVER_INFO, GPU_INFO, GPU_UP, GPUS, NVML_UP, XID_FELL_OFF_THE_BUS,
};
use crate::metrics::exposition::{Samples, bool_value};
use crate::metrics::labels::NvmlPhase;

pub(super) struct DriverInfo {
    pub(super) driver_version: String,
    pub(super) nvml_version: String,
    pub(super) cuda_driver_version: String,
}

/// One NVML initialisation and what never changes during it.
pub(super) struct Session {
    watcher: Option<events::Watcher>,
    pub(super) nvml: Arc<Nvml>,
    pub(super) driver: DriverInfo,
    identities: Vec<Option<Identity>>,
    discovered: Vec<Option<Discovered>>,
    /// Each GPU's NVLink links, set with `discovered`.
    links: Vec<Option<Links>>,
    nvlink: NvlinkDetail,
    /// What the output serves: readings of nothing served are not made.
    wanted: Wanted,
    was_up: Vec<bool>,
    /// Each GPU's fabric at the last collection, to log its changes.
    fabrics: Vec<Option<FabricHealth>>,
    migs: HashMap<String, mig::MigIdentity>,
    gpm: gpm::Previous,
    /// How many GPUs NVML reported last, to log when that changes.
    gpu_count: Option<u32>,
}

impl Drop for Session {
    /// Stops the event thread and frees GPM samples before NVML shuts down.
    fn drop(&mut self) {
        self.watcher = None;
        self.gpm.free(&self.nvml);
    }
}

/// What one reading of every GPU gave.
pub(super) struct Read {
    pub(super) samples: Samples,
    pub(super) inventory: GpuInventory,
    pub(super) status: GpuStatus,
}

/// What one reading of one GPU gave.
struct GpuRead {
    samples: Samples,
    mig_devices: Vec<MigDevice>,
    fabric: Option<FabricHealth>,
}

/// Errors that mean NVML itself no longer works, not one GPU.
fn is_driver_failure(error: &NvmlError) -> bool {
    matches!(
        error,
        NvmlError::Unknown | NvmlError::Uninitialized | NvmlError::DriverNotLoaded
    )
}

impl Session {
    pub(super) fn new(
        nvml: Arc<Nvml>,
        driver: DriverInfo,
        nvlink: NvlinkDetail,
        wanted: Wanted,
    ) -> Self {
        Self {
            watcher: None,
            nvml,
            driver,
            identities: Vec::new(),
            discovered: Vec::new(),
            links: Vec::new(),
            nvlink,
            wanted,
            was_up: Vec::new(),
            fabrics: Vec::new(),
            migs: HashMap::new(),
            gpm: gpm::Previous::default(),
            gpu_count: None,
        }
    }

    /// Reads every GPU. Fails, saying why, when NVML as a whole no longer answers.
    pub(super) fn read(
        &mut self,
        calls: &NvmlCalls,
        events: &Arc<events::Counts>,
        traffic: &mut gpm::Totals,
    ) -> Result<Read, String> {
        let collection = calls.count(NvmlPhase::Collection);
        collection.fetch_add(1, Ordering::Relaxed);
        let count = self.nvml.device_count().map_err(|e| e.to_string())?;
        let slots = count as usize;
        self.identities.resize(slots, None);
        self.discovered.resize_with(slots, || None);
        self.links.resize_with(slots, || None);
        self.was_up.resize(slots, true);
        self.fabrics.resize_with(slots, || None);

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
        let read = self.report(results, events);
        self.log_gpu_count(&read.inventory);
        Ok(read)
    }

    /// One line when the number of GPUs changes, the first time included.
    fn log_gpu_count(&mut self, inventory: &GpuInventory) {
        let count = inventory.gpus.len() as u32;
        if self.gpu_count == Some(count) {
            return;
        }
        self.gpu_count = Some(count);
        if count == 0 {
            warn!(
                "NVML reports no GPU; check that the driver sees them (nvidia-smi) and, in a container, that it runs with the NVIDIA runtime (--gpus all)"
            );
            return;
        }
        let mut models: Vec<&str> = inventory.gpus.iter().map(|g| g.name.as_str()).collect();
        models.sort_unstable();
        models.dedup();
        info!(gpus = count, models = ?models, "found {count} GPU(s)");
    }

    /// The samples, inventory and status of a reading of every GPU.
    fn report(
        &mut self,
        results: Vec<Result<GpuRead, NvmlError>>,
        events: &events::Counts,
    ) -> Read {
        let driver = &self.driver;
        let mut read = Read {
            samples: Samples::default(),
            inventory: GpuInventory {
                driver_version: driver.driver_version.clone(),
                ..GpuInventory::default()
            },
            status: GpuStatus {
                nvml_up: true,
                nvml_error: None,
                driver_version: Some(driver.driver_version.clone()),
                gpus: Vec::with_capacity(results.len()),
                mig_uuids: Vec::new(),
            },
        };
        let out = &mut read.samples;
        out.add(&NVML_UP, &[], 1.0);
        out.add(
            &DRIVER_INFO,
            &[
                &driver.driver_version,
                &driver.nvml_version,
                &driver.cuda_driver_version,
            ],
            1.0,
        );
        out.add(&GPUS, &[], results.len() as f64);
        let fell_off = self
            .watcher
            .as_ref()
            .map(|w| w.fell_off())
            .unwrap_or_default();
        for (index, result) in (0..).zip(results) {
            let gpu = self.add_gpu(index, result, &fell_off, events, &mut read);
            read.status.gpus.push(gpu);
        }
        read
    }

    /// Adds a GPU's identity, state, readings (when up) and event counters.
    fn add_gpu(
        &mut self,
        index: u32,
        result: Result<GpuRead, NvmlError>,
        fell_off: &HashSet<u32>,
        events: &events::Counts,
        read: &mut Read,
    ) -> GpuState {
        let slot = index as usize;
        let (gpu_read, down_reason) = match result {
            Ok(_) if fell_off.contains(&index) => (
                None,
                Some(format!("fell off the bus (XID {XID_FELL_OFF_THE_BUS})")),
            ),
            Ok(gpu_read) => (Some(gpu_read), None),
            Err(error) => (None, Some(error.to_string())),
        };
        let up = gpu_read.is_some();
        let out = &mut read.samples;
        let identity = self.identities[slot].as_ref();
        let uuid = identity.map(|i| i.uuid.as_str()).unwrap_or_default();
        let index_label = index.to_string();
        if let Some(id) = identity {
            let labels = [&index_label, uuid, &id.name, &id.pci_bus_id, &id.serial];
            out.add(&GPU_INFO, &labels, 1.0);
            read.inventory.gpus.push(GpuIdentity {
                index,
                uuid: id.uuid.clone(),
                name: id.name.clone(),
                pci_bus_id: id.pci_bus_id.clone(),
            });
        }
        out.add(&GPU_UP, &[&index_label, uuid], bool_value(up));
        let mut fabric = None;
        if let Some(gpu_read) = gpu_read {
            out.extend(gpu_read.samples);
            let mig_uuids = gpu_read.mig_devices.iter().map(|m| m.uuid.clone());
            read.status.mig_uuids.extend(mig_uuids);
            read.inventory.mig_devices.extend(gpu_read.mig_devices);
            fabric = gpu_read.fabric;
        }
        if let Some(now) = &fabric {
            fabric::log_change(index, self.fabrics[slot].as_ref(), now);
        }
        self.fabrics[slot].clone_from(&fabric);
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
            down_reason,
            events: watch,
            fabric,
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
    ) -> Result<GpuRead, NvmlError> {
        let slot = index as usize;
        let wanted = &self.wanted;
        let mut reader = Reader::new(index, device, calls.count(NvmlPhase::Discovery), wanted);
        if self.identities[slot].is_none() {
            self.identities[slot] = discovery::identity(&mut reader);
        }
        let Some(identity) = &self.identities[slot] else {
            return Err(reader.failure.unwrap_or(NvmlError::NotSupported));
        };
        if self.discovered[slot].is_none() {
            let discovered = discovery::discover(&mut reader);
            if reader.failure.is_none() {
                self.links[slot] = Some(Links::new(self.nvlink, discovered.nvlinks));
                self.discovered[slot] = Some(discovered);
            }
        }
        if let Some(error) = reader.failure {
            return Err(error);
        }
        let discovered = self.discovered[slot].as_ref().expect("discovered above");
        let links = self.links[slot].as_mut().expect("set with discovered");
        let mut samples = Samples::default();
        let mut gpu = GpuSamples::new(&mut samples, index, &identity.uuid);
        let mut reader = Reader::new(index, device, calls.count(NvmlPhase::Collection), wanted);
        discovered.add_samples(&mut gpu);
        readings::read(&mut reader, discovered, links, &mut gpu);
        let fabric = discovered
            .fabric
            .and_then(|fabric| fabric::read(&mut reader, fabric, &mut gpu));
        let mig_devices = match discovered.mig_slots {
            Some(slots) => mig::read(&mut reader, slots, &mut self.migs, &mut gpu),
            None => Vec::new(),
        };
        if discovered.gpm {
            let gpu_id = (index, identity.uuid.as_str());
            // Each GPU instance once, in the order of the MIG devices.
            let mut instances: Vec<u32> = Vec::new();
            for device in &mig_devices {
                if !instances.contains(&device.gpu_instance) {
                    instances.push(device.gpu_instance);
                }
            }
            for instance in std::iter::once(None).chain(instances.into_iter().map(Some)) {
                let nvml = device.nvml();
                self.gpm
                    .read(nvml, &mut reader, gpu_id, instance, traffic, &mut gpu);
            }
        }
        match reader.failure {
            None => Ok(GpuRead {
                samples,
                mig_devices,
                fabric,
            }),
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
