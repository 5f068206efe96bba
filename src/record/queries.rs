//! The device queries the exporter makes outside field values, one row per
//! query: the test double's name for the query (what its `unsupported` and
//! `error.` keys take), the keys its answer sets, and the call, made as the
//! collector makes it (through nvml-wrapper). A key added to the double is
//! one row here.

use std::collections::HashMap;

use nvml_wrapper::Device;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor, TemperatureThreshold};
use nvml_wrapper::error::NvmlError;

use super::profile::GpuProfile;

type Read = fn(&Device) -> Result<Vec<u64>, NvmlError>;

/// Queries without an argument: query, keys (in the order the call's values
/// come), call.
const SCALARS: &[(&str, &[&str], Read)] = &[
    ("temperature", &["temperature"], |d| {
        one(d.temperature(TemperatureSensor::Gpu))
    }),
    ("power_usage", &["power_usage"], |d| one(d.power_usage())),
    ("power_limit", &["power_limit"], |d| {
        one(d.enforced_power_limit())
    }),
    (
        "memory",
        &["memory_total", "memory_reserved", "memory_used"],
        |d| d.memory_info().map(|m| vec![m.total, m.reserved, m.used]),
    ),
    (
        "utilization",
        &["utilization_gpu", "utilization_memory"],
        |d| {
            let u = d.utilization_rates()?;
            Ok(vec![u.gpu.into(), u.memory.into()])
        },
    ),
    ("encoder", &["encoder"], |d| {
        one(d.encoder_utilization().map(|u| u.utilization))
    }),
    ("decoder", &["decoder"], |d| {
        one(d.decoder_utilization().map(|u| u.utilization))
    }),
    ("fans", &["fans"], |d| one(d.num_fans())),
    ("pstate", &["pstate"], |d| {
        one(d.performance_state().map(|s| s.as_c()))
    }),
    ("pcie_generation", &["pcie_generation"], |d| {
        one(d.current_pcie_link_gen())
    }),
    ("pcie_max_generation", &["pcie_max_generation"], |d| {
        one(d.max_pcie_link_gen())
    }),
    ("pcie_width", &["pcie_width"], |d| {
        one(d.current_pcie_link_width())
    }),
    ("pcie_max_width", &["pcie_max_width"], |d| {
        one(d.max_pcie_link_width())
    }),
    ("ecc_mode", &["ecc_enabled"], |d| {
        one(d.is_ecc_enabled().map(|m| u32::from(m.currently_enabled)))
    }),
    ("clock_event_reasons", &["clock_event_reasons"], |d| {
        Ok(vec![d.current_throttle_reasons()?.bits()])
    }),
    (
        "supported_clock_event_reasons",
        &["supported_clock_event_reasons"],
        |d| Ok(vec![d.supported_throttle_reasons()?.bits()]),
    ),
    ("events", &["supported_events"], |d| {
        Ok(vec![d.supported_event_types()?.bits()])
    }),
    ("mig_mode", &["mig"], |d| {
        one(d.mig_mode().map(|m| m.current))
    }),
    ("mig_device_count", &["mig_slots"], |d| {
        one(d.mig_device_count())
    }),
    ("gpm", &["gpm"], |d| one(d.gpm_support().map(u32::from))),
];

/// Keys whose values are bit masks, written in hex.
const MASKS: &[&str] = &[
    "clock_event_reasons",
    "supported_clock_event_reasons",
    "supported_events",
];

/// How many elements an indexed query has.
#[derive(Clone, Copy)]
enum Elements {
    Fixed(u32),
    /// As many as the `fans` query answered.
    Fans,
}

type ReadAt = fn(&Device, u32) -> Result<u64, NvmlError>;

/// Queries of one element (key `KEY.K`): query, key, elements, call.
const INDEXED: &[(&str, &str, Elements, ReadAt)] = &[
    ("clock", "clock", Elements::Fixed(4), |d, k| {
        d.clock_info(CLOCKS[k as usize]).map(u64::from)
    }),
    ("max_clock", "max_clock", Elements::Fixed(4), |d, k| {
        d.max_clock_info(CLOCKS[k as usize]).map(u64::from)
    }),
    (
        "temperature_threshold",
        "threshold",
        Elements::Fixed(4),
        |d, k| {
            d.temperature_threshold(THRESHOLDS[k as usize])
                .map(u64::from)
        },
    ),
    ("fan_speed", "fan_speed", Elements::Fans, |d, k| {
        d.fan_speed(k).map(u64::from)
    }),
];

/// nvmlClockType_t in order: the double's `clock.K` is NVML's clock type K.
const CLOCKS: [Clock; 4] = [Clock::Graphics, Clock::SM, Clock::Memory, Clock::Video];

/// nvmlTemperatureThresholds_t in order (`threshold.K`).
const THRESHOLDS: [TemperatureThreshold; 4] = [
    TemperatureThreshold::Shutdown,
    TemperatureThreshold::Slowdown,
    TemperatureThreshold::MemoryMax,
    TemperatureThreshold::GpuMax,
];

fn one<T: Into<u64>>(value: Result<T, NvmlError>) -> Result<Vec<u64>, NvmlError> {
    value.map(|v| vec![v.into()])
}

/// Makes every query of [`SCALARS`] and [`INDEXED`]; returns the values
/// answered, by key.
pub(super) fn record(device: &Device, gpu: &mut GpuProfile) -> HashMap<&'static str, u64> {
    let mut answered = HashMap::new();
    for (query, keys, read) in SCALARS {
        let Some(values) = gpu.answer(query, None, read(device)) else {
            continue;
        };
        for (key, value) in keys.iter().zip(values) {
            if MASKS.contains(key) {
                gpu.set(*key, format!("{value:#x}"));
            } else {
                gpu.set(*key, value);
            }
            answered.insert(*key, value);
        }
    }
    for (query, key, elements, read) in INDEXED {
        let count = match elements {
            Elements::Fixed(count) => *count,
            Elements::Fans => answered.get("fans").copied().unwrap_or(0) as u32,
        };
        for k in 0..count {
            if let Some(value) = gpu.answer(query, Some(k), read(device, k)) {
                gpu.set(format!("{key}.{k}"), value);
            }
        }
    }
    answered
}
