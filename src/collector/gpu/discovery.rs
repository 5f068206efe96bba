//! What is read once per NVML initialisation: a GPU's identity and the values
//! that do not change while the driver stays loaded (maximum clocks and PCIe
//! link, temperature thresholds, ECC mode, fans, NVLink links, event support,
//! whether the GPU has an NVLink fabric).

use nvml_wrapper::Device;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_NVLINK_LINK_COUNT;

use super::events::WATCHED_EVENTS;
use super::nvml_values;
use super::reader::Reader;
use super::samples::GpuSamples;
use super::sys::{self, Field};
use super::{fabric, gpm, nvlink};
use crate::metrics::catalogue::{
    CLOCK_EVENT_ACTIVE, CLOCK_MAX, ECC_ENABLED, FAN_SPEED, Metric, PCIE_LINK_MAX_GENERATION,
    PCIE_LINK_MAX_WIDTH, TEMPERATURE_THRESHOLD,
};
use crate::metrics::exposition::bool_value;
use crate::metrics::labels::{ClockDomain, Threshold};
use crate::units::megahertz_to_hertz;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Identity {
    pub(super) uuid: String,
    pub(super) name: String,
    pub(super) pci_bus_id: String,
    pub(super) serial: String,
}

#[derive(Debug)]
pub(super) struct Discovered {
    /// Samples that stay the same until NVML is initialised again: metric,
    /// the label after `gpu` and `uuid` if it has one, value.
    fixed: Vec<(&'static Metric, Option<&'static str>, f64)>,
    pub(super) fans: u32,
    pub(super) nvlinks: u32,
    pub(super) clock_event_reasons: ThrottleReasons,
    /// Supported event types among those the exporter watches.
    pub(super) event_types: EventTypes,
    /// MIG device slots, when the GPU supports MIG (its mode is read every
    /// collection: it can change with a GPU reset).
    pub(super) mig_slots: Option<u32>,
    /// Whether GPM profiling metrics are supported.
    pub(super) gpm: bool,
    /// The GPU's NVLink fabric, read every collection where there is one.
    pub(super) fabric: Option<fabric::Fabric>,
}

impl Discovered {
    pub(super) fn add_samples(&self, gpu: &mut GpuSamples) {
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
pub(super) fn identity(reader: &mut Reader) -> Option<Identity> {
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

pub(super) fn discover(reader: &mut Reader) -> Discovered {
    let mut fixed = Vec::new();
    for &domain in ClockDomain::ALL {
        let clock = nvml_values::clock(domain);
        if let Some(mhz) = reader.read_for(&[&CLOCK_MAX], "max_clock", |d| d.max_clock_info(clock))
        {
            fixed.push((&CLOCK_MAX, Some(domain.name()), megahertz_to_hertz(mhz)));
        }
    }
    for &threshold in Threshold::ALL {
        let nvml_threshold = nvml_values::threshold(threshold);
        if let Some(celsius) =
            reader.read_for(&[&TEMPERATURE_THRESHOLD], "temperature_threshold", |d| {
                d.temperature_threshold(nvml_threshold)
            })
        {
            let name = threshold.name();
            fixed.push((&TEMPERATURE_THRESHOLD, Some(name), f64::from(celsius)));
        }
    }
    if let Some(generation) = reader.read_for(
        &[&PCIE_LINK_MAX_GENERATION],
        "pcie_max_generation",
        Device::max_pcie_link_gen,
    ) {
        fixed.push((&PCIE_LINK_MAX_GENERATION, None, f64::from(generation)));
    }
    if let Some(width) = reader.read_for(
        &[&PCIE_LINK_MAX_WIDTH],
        "pcie_max_width",
        Device::max_pcie_link_width,
    ) {
        fixed.push((&PCIE_LINK_MAX_WIDTH, None, f64::from(width)));
    }
    if let Some(mode) = reader.read_for(&[&ECC_ENABLED], "ecc_mode", Device::is_ecc_enabled) {
        fixed.push((&ECC_ENABLED, None, bool_value(mode.currently_enabled)));
    }
    let link_count = Field {
        id: NVML_FI_DEV_NVLINK_LINK_COUNT,
        scope: 0,
    };
    let nvlinks = reader
        .read_for(nvlink::METRICS, "nvlink_count", |d| {
            sys::field_values(d, &[link_count])
        })
        .and_then(|values| values[0])
        .map_or(0, |links| links as u32);
    Discovered {
        fixed,
        fans: reader
            .read_for(&[&FAN_SPEED], "fans", Device::num_fans)
            .unwrap_or(0),
        nvlinks,
        clock_event_reasons: reader
            .read_for(
                &[&CLOCK_EVENT_ACTIVE],
                "clock_event_reasons",
                Device::supported_throttle_reasons,
            )
            .unwrap_or(ThrottleReasons::empty()),
        event_types: reader
            .read("event_types", Device::supported_event_types)
            .map_or(EventTypes::empty(), |types| types & WATCHED_EVENTS),
        mig_slots: reader.read("mig_slots", Device::mig_device_count),
        gpm: gpm::served(reader)
            && reader
                .read("gpm_support", Device::gpm_support)
                .unwrap_or(false),
        // Whatever the output serves: `/health` and `/ready` use it.
        fabric: fabric::probe(reader),
    }
}
