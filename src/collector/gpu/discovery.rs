//! What is read once per NVML initialisation: a GPU's identity and the values
//! that do not change while the driver stays loaded (maximum clocks and PCIe
//! link, temperature thresholds, ECC mode, fans, NVLink links, event support).

use nvml_wrapper::Device;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureThreshold};
use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_NVLINK_LINK_COUNT;

use super::Reader;
use super::events::WATCHED_EVENTS;
use super::readings::GpuSamples;
use super::sys::{self, Field};
use crate::catalogue::{
    CLOCK_MAX, ECC_ENABLED, Metric, PCIE_LINK_MAX_GENERATION, PCIE_LINK_MAX_WIDTH,
    TEMPERATURE_THRESHOLD,
};
use crate::exposition::bool_value;
use crate::units::megahertz_to_hertz;

pub const CLOCK_DOMAINS: [(&str, Clock); 4] = [
    ("graphics", Clock::Graphics),
    ("sm", Clock::SM),
    ("memory", Clock::Memory),
    ("video", Clock::Video),
];

const THRESHOLDS: [(&str, TemperatureThreshold); 4] = [
    ("shutdown", TemperatureThreshold::Shutdown),
    ("slowdown", TemperatureThreshold::Slowdown),
    ("gpu_max", TemperatureThreshold::GpuMax),
    ("memory_max", TemperatureThreshold::MemoryMax),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub serial: String,
}

#[derive(Debug)]
pub struct Discovered {
    /// Samples that stay the same until NVML is initialised again: metric,
    /// the label after `gpu` and `uuid` if it has one, value.
    fixed: Vec<(&'static Metric, Option<&'static str>, f64)>,
    pub fans: u32,
    pub nvlinks: u32,
    pub clock_event_reasons: ThrottleReasons,
    /// Supported event types among those the exporter watches.
    pub event_types: EventTypes,
    /// MIG device slots, when the GPU supports MIG (its mode is read every
    /// collection: it can change with a GPU reset).
    pub mig_slots: Option<u32>,
    /// Whether GPM profiling metrics are supported.
    pub gpm: bool,
}

impl Discovered {
    pub fn add_samples(&self, gpu: &mut GpuSamples) {
        for (metric, label, value) in &self.fixed {
            let labels: &[&str] = match label {
                Some(label) => &[label],
                None => &[],
            };
            gpu.add(metric, labels, Some(*value));
        }
    }
}

/// The GPU's identity; `None` when its UUID cannot be read.
pub fn identity(reader: &mut Reader) -> Option<Identity> {
    Some(Identity {
        uuid: reader.read("uuid", Device::uuid)?,
        name: reader.read("name", Device::name).unwrap_or_default(),
        pci_bus_id: reader
            .read("pci_info", Device::pci_info)
            .map(|pci| pci.bus_id)
            .unwrap_or_default(),
        serial: reader.read("serial", Device::serial).unwrap_or_default(),
    })
}

pub fn discover(reader: &mut Reader) -> Discovered {
    let mut fixed = Vec::new();
    for (name, clock) in CLOCK_DOMAINS {
        if let Some(mhz) = reader.read("max_clock", |d| d.max_clock_info(clock)) {
            fixed.push((&CLOCK_MAX, Some(name), megahertz_to_hertz(mhz)));
        }
    }
    for (name, threshold) in THRESHOLDS {
        if let Some(celsius) = reader.read("temperature_threshold", |d| {
            d.temperature_threshold(threshold)
        }) {
            fixed.push((&TEMPERATURE_THRESHOLD, Some(name), f64::from(celsius)));
        }
    }
    if let Some(generation) = reader.read("pcie_max_generation", Device::max_pcie_link_gen) {
        fixed.push((&PCIE_LINK_MAX_GENERATION, None, f64::from(generation)));
    }
    if let Some(width) = reader.read("pcie_max_width", Device::max_pcie_link_width) {
        fixed.push((&PCIE_LINK_MAX_WIDTH, None, f64::from(width)));
    }
    if let Some(mode) = reader.read("ecc_mode", Device::is_ecc_enabled) {
        fixed.push((&ECC_ENABLED, None, bool_value(mode.currently_enabled)));
    }
    let link_count = Field {
        id: NVML_FI_DEV_NVLINK_LINK_COUNT,
        scope: 0,
    };
    let nvlinks = reader
        .read("nvlink_count", |d| sys::field_values(d, &[link_count]))
        .and_then(|values| values[0])
        .map_or(0, |links| links as u32);
    Discovered {
        fixed,
        fans: reader.read("fans", Device::num_fans).unwrap_or(0),
        nvlinks,
        clock_event_reasons: reader
            .read("clock_event_reasons", Device::supported_throttle_reasons)
            .unwrap_or(ThrottleReasons::empty()),
        event_types: reader
            .read("event_types", Device::supported_event_types)
            .map_or(EventTypes::empty(), |types| types & WATCHED_EVENTS),
        mig_slots: reader.read("mig_slots", Device::mig_device_count),
        gpm: reader
            .read("gpm_support", Device::gpm_support)
            .unwrap_or(false),
    }
}
