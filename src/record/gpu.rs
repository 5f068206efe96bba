//! One GPU: its identity, then every query the exporter makes of it.

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::placeholders::Placeholders;
use super::profile::{GpuProfile, Profile};
use super::{fabric, fields, mig_gpm, processes, queries};
use crate::collector::gpu::WATCHED_EVENTS;

/// What the profile's header says of a GPU.
pub(super) struct Recorded {
    pub(super) name: Option<String>,
    /// The fabric struct version the driver took, where the probe answered.
    pub(super) fabric_version: Option<u32>,
}

/// Records GPU `index` into `profile`.
pub(super) fn record(
    nvml: &Nvml,
    index: u32,
    placeholders: &mut Placeholders,
    profile: &mut Profile,
) -> Recorded {
    let mut gpu = GpuProfile::new(index);
    let device = match nvml.device_by_index(index) {
        Ok(device) => device,
        Err(error) => {
            gpu.fail_whole(error.into());
            profile.gpus.push(gpu);
            return Recorded {
                name: None,
                fabric_version: None,
            };
        }
    };
    let name = identity(&device, index, placeholders, &mut gpu);
    let answered = queries::record(&device, &mut gpu);
    if let Some(&supported) = answered.get("supported_events") {
        register_events(nvml, &device, supported, &mut gpu);
    }
    fields::record(&device, &mut gpu);
    let fabric_version = fabric::record(&device, placeholders, &mut gpu);
    let mut instances = Vec::new();
    if let (Some(1), Some(&slots)) = (answered.get("mig"), answered.get("mig_slots")) {
        instances = mig_gpm::record_mig(&device, index, slots as u32, placeholders, &mut gpu);
    }
    if answered.get("gpm") == Some(&1) {
        mig_gpm::record_gpm(nvml, &device, instances.first().copied(), &mut gpu);
    }
    processes::record(&device, &mut gpu, profile);
    profile.gpus.push(gpu);
    Recorded {
        name,
        fabric_version,
    }
}

/// UUID, name, serial number and PCI location (identifiers as placeholders
/// unless kept); returns the name.
fn identity(
    device: &Device,
    index: u32,
    placeholders: &Placeholders,
    gpu: &mut GpuProfile,
) -> Option<String> {
    if let Some(uuid) = gpu.answer("uuid", None, device.uuid()) {
        gpu.set("uuid", placeholders.gpu_uuid(index, &uuid));
    }
    let name = gpu.answer("name", None, device.name());
    if let Some(name) = &name {
        gpu.set("name", name);
    }
    if let Some(serial) = gpu.answer("serial", None, device.serial()) {
        gpu.set("serial", placeholders.serial(index, &serial));
    }
    if let Some(pci) = gpu.answer("pci_info", None, device.pci_info()) {
        let (domain, bus, device) = placeholders.pci(index, (pci.domain, pci.bus, pci.device));
        gpu.set("pci_domain", format!("{domain:#x}"));
        gpu.set("pci_bus", format!("{bus:#x}"));
        gpu.set("pci_device", format!("{device:#x}"));
        gpu.set("pci_device_id", format!("{:#x}", pci.pci_device_id));
        if let Some(subsystem) = pci.pci_sub_system_id {
            gpu.set("pci_subsystem_id", format!("{subsystem:#x}"));
        }
    }
    name
}

/// Registers the GPU for the events the exporter watches among those it
/// supports, as the event thread does: a driver may refuse a set it reports.
fn register_events(nvml: &Nvml, device: &Device, supported: u64, gpu: &mut GpuProfile) {
    let types = EventTypes::from_bits_truncate(supported) & WATCHED_EVENTS;
    if types.is_empty() {
        return;
    }
    let registered = nvml.create_event_set().and_then(|set| {
        device
            .register_events(types, set)
            .map_err(|failed| failed.error)
    });
    match registered {
        Ok(set) => drop(set),
        Err(NvmlError::SetReleaseFailed) => {
            gpu.note("registering for events failed, and freeing the event set too")
        }
        Err(error) => gpu.fail("register_events", None, error.into()),
    }
}
