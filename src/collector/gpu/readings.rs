//! What is read from a GPU every interval. Each reading is omitted where the
//! GPU or driver does not offer it, never zeroed. Counters and error counts
//! come in one batched field-value call, NVLink's fields with them (see
//! [`super::nvlink`]).

use nvml_wrapper::Device;
use nvml_wrapper::enum_wrappers::device::{PerformanceState, TemperatureSensor};
use nvml_wrapper::sys_exports::field_id::*;

use super::discovery::Discovered;
use super::nvlink::Links;
use super::nvml_values;
use super::reader::Reader;
use super::samples::GpuSamples;
use super::sys::{self, Field};
use crate::metrics::catalogue::*;
use crate::metrics::exposition::bool_value;
use crate::metrics::labels::{
    ClockDomain, ClockEventReason, EccErrorType, RecoveryAction, RemapType, RetirementCause,
    ThrottleReason,
};
use crate::units::{megahertz_to_hertz, milliwatts_to_watts, percent_to_ratio};

/// `NVML_FI_DEV_GET_GPU_RECOVERY_ACTION` (drivers from R570), newer than the
/// header nvml-wrapper-sys binds.
const NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: u32 = 230;

/// GPU-wide readings batched into the field-value call: field, metric, the
/// label after `gpu` and `uuid` if it has one, divisor to base units.
const GPU_FIELDS: &[(u32, &Metric, Option<&str>, f64)] = &[
    (NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, &ENERGY, None, 1e3),
    (NVML_FI_DEV_MEMORY_TEMP, &MEMORY_TEMPERATURE, None, 1.0),
    (
        NVML_FI_DEV_ECC_SBE_VOL_TOTAL,
        &ECC_ERRORS,
        Some(EccErrorType::Corrected.name()),
        1.0,
    ),
    (
        NVML_FI_DEV_ECC_DBE_VOL_TOTAL,
        &ECC_ERRORS,
        Some(EccErrorType::Uncorrected.name()),
        1.0,
    ),
    (
        NVML_FI_DEV_ECC_SBE_AGG_TOTAL,
        &ECC_ERRORS_AGGREGATE,
        Some(EccErrorType::Corrected.name()),
        1.0,
    ),
    (
        NVML_FI_DEV_ECC_DBE_AGG_TOTAL,
        &ECC_ERRORS_AGGREGATE,
        Some(EccErrorType::Uncorrected.name()),
        1.0,
    ),
    (
        NVML_FI_DEV_RETIRED_SBE,
        &RETIRED_PAGES,
        Some(RetirementCause::SingleBitEcc.name()),
        1.0,
    ),
    (
        NVML_FI_DEV_RETIRED_DBE,
        &RETIRED_PAGES,
        Some(RetirementCause::DoubleBitEcc.name()),
        1.0,
    ),
    (
        NVML_FI_DEV_RETIRED_PENDING,
        &RETIRED_PAGES_PENDING,
        None,
        1.0,
    ),
    (
        NVML_FI_DEV_REMAPPED_COR,
        &REMAPPED_ROWS,
        Some(RemapType::Correctable.name()),
        1.0,
    ),
    (
        NVML_FI_DEV_REMAPPED_UNC,
        &REMAPPED_ROWS,
        Some(RemapType::Uncorrectable.name()),
        1.0,
    ),
    (NVML_FI_DEV_REMAPPED_PENDING, &ROW_REMAP_PENDING, None, 1.0),
    (NVML_FI_DEV_REMAPPED_FAILURE, &ROW_REMAP_FAILED, None, 1.0),
    (
        NVML_FI_DEV_PCIE_REPLAY_COUNTER,
        &PCIE_REPLAY_ERRORS,
        None,
        1.0,
    ),
    (
        NVML_FI_DEV_PERF_POLICY_POWER,
        &THROTTLED,
        Some(ThrottleReason::Power.name()),
        1e9,
    ),
    (
        NVML_FI_DEV_PERF_POLICY_THERMAL,
        &THROTTLED,
        Some(ThrottleReason::Thermal.name()),
        1e9,
    ),
    (
        NVML_FI_DEV_PERF_POLICY_SYNC_BOOST,
        &THROTTLED,
        Some(ThrottleReason::SyncBoost.name()),
        1e9,
    ),
    (
        NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT,
        &THROTTLED,
        Some(ThrottleReason::BoardLimit.name()),
        1e9,
    ),
    (
        NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION,
        &THROTTLED,
        Some(ThrottleReason::LowUtilization.name()),
        1e9,
    ),
    (
        NVML_FI_DEV_PERF_POLICY_RELIABILITY,
        &THROTTLED,
        Some(ThrottleReason::Reliability.name()),
        1e9,
    ),
    (
        NVML_FI_DEV_PERF_POLICY_TOTAL_APP_CLOCKS,
        &THROTTLED,
        Some(ThrottleReason::ApplicationClocks.name()),
        1e9,
    ),
    (
        NVML_FI_DEV_PERF_POLICY_TOTAL_BASE_CLOCKS,
        &THROTTLED,
        Some(ThrottleReason::BaseClocks.name()),
        1e9,
    ),
];

/// Reads the GPU's readings of one interval; `links` are its NVLink links.
pub(super) fn read(
    reader: &mut Reader,
    discovered: &Discovered,
    links: &mut Links,
    gpu: &mut GpuSamples,
) {
    let temperature = reader.read_for(&[&TEMPERATURE], "temperature", |d| {
        d.temperature(TemperatureSensor::Gpu)
    });
    gpu.add(&TEMPERATURE, &[], temperature.map(f64::from));
    let power = reader.read_for(&[&POWER_USAGE], "power_usage", Device::power_usage);
    gpu.add(&POWER_USAGE, &[], power.map(milliwatts_to_watts));
    let limit = reader.read_for(&[&POWER_LIMIT], "power_limit", Device::enforced_power_limit);
    gpu.add(&POWER_LIMIT, &[], limit.map(milliwatts_to_watts));

    if let Some(memory) = reader.read_for(MEMORY_INFO, "memory", Device::memory_info) {
        gpu.add(&MEMORY_TOTAL, &[], Some(memory.total as f64));
        gpu.add(&MEMORY_USED, &[], Some(memory.used as f64));
        gpu.add(&MEMORY_FREE, &[], Some(memory.free as f64));
        gpu.add(&MEMORY_RESERVED, &[], Some(memory.reserved as f64));
    }
    if let Some(utilization) =
        reader.read_for(UTILIZATION_RATES, "utilization", Device::utilization_rates)
    {
        gpu.add(&UTILIZATION, &[], Some(percent_to_ratio(utilization.gpu)));
        gpu.add(
            &MEMORY_UTILIZATION,
            &[],
            Some(percent_to_ratio(utilization.memory)),
        );
    }
    let encoder = reader.read_for(
        &[&ENCODER_UTILIZATION],
        "encoder_utilization",
        Device::encoder_utilization,
    );
    gpu.add(
        &ENCODER_UTILIZATION,
        &[],
        encoder.map(|u| percent_to_ratio(u.utilization)),
    );
    let decoder = reader.read_for(
        &[&DECODER_UTILIZATION],
        "decoder_utilization",
        Device::decoder_utilization,
    );
    gpu.add(
        &DECODER_UTILIZATION,
        &[],
        decoder.map(|u| percent_to_ratio(u.utilization)),
    );

    for &domain in ClockDomain::ALL {
        let clock = nvml_values::clock(domain);
        let hertz = reader.read_for(&[&CLOCK], "clock", |d| d.clock_info(clock));
        gpu.add(&CLOCK, &[domain.name()], hertz.map(megahertz_to_hertz));
    }
    for fan in 0..discovered.fans {
        let speed = reader.read_for(&[&FAN_SPEED], "fan_speed", |d| d.fan_speed(fan));
        gpu.add(&FAN_SPEED, &[&fan.to_string()], speed.map(percent_to_ratio));
    }
    let state = reader
        .read_for(
            &[&PERFORMANCE_STATE],
            "performance_state",
            Device::performance_state,
        )
        .filter(|state| *state != PerformanceState::Unknown);
    gpu.add(&PERFORMANCE_STATE, &[], state.map(|s| f64::from(s.as_c())));

    if let Some(active) = reader.read_for(
        &[&CLOCK_EVENT_ACTIVE],
        "clock_event_reasons",
        Device::current_throttle_reasons,
    ) {
        for &reason in ClockEventReason::ALL {
            let bit = nvml_values::clock_event(reason);
            if discovered.clock_event_reasons.contains(bit) {
                let value = bool_value(active.contains(bit));
                gpu.add(&CLOCK_EVENT_ACTIVE, &[reason.name()], Some(value));
            }
        }
    }
    let generation = reader.read_for(
        &[&PCIE_LINK_GENERATION],
        "pcie_generation",
        Device::current_pcie_link_gen,
    );
    gpu.add(&PCIE_LINK_GENERATION, &[], generation.map(f64::from));
    let width = reader.read_for(
        &[&PCIE_LINK_WIDTH],
        "pcie_width",
        Device::current_pcie_link_width,
    );
    gpu.add(&PCIE_LINK_WIDTH, &[], width.map(f64::from));

    read_fields(reader, links, gpu);
}

/// What one call of `nvmlDeviceGetMemoryInfo_v2` and of
/// `nvmlDeviceGetUtilizationRates` yield.
const MEMORY_INFO: &[&Metric] = &[&MEMORY_TOTAL, &MEMORY_USED, &MEMORY_FREE, &MEMORY_RESERVED];
const UTILIZATION_RATES: &[&Metric] = &[&UTILIZATION, &MEMORY_UTILIZATION];

/// Counters, memory repair, throttle time, recovery action and NVLink, in
/// one call of the fields the output serves.
fn read_fields(reader: &mut Reader, links: &mut Links, gpu: &mut GpuSamples) {
    let gpu_fields: Vec<_> = GPU_FIELDS
        .iter()
        .filter(|(_, metric, ..)| reader.wants(&[metric]))
        .collect();
    let recovery_action = reader.wants(&[&RECOVERY_ACTION]);
    let mut requests: Vec<Field> = gpu_fields
        .iter()
        .map(|(id, ..)| Field { id: *id, scope: 0 })
        .collect();
    if recovery_action {
        requests.push(Field {
            id: NVML_FI_DEV_GET_GPU_RECOVERY_ACTION,
            scope: 0,
        });
    }
    links.request(&mut requests);
    if requests.is_empty() {
        return;
    }
    let Some(values) = reader.read("field_values", |d| sys::field_values(d, &requests)) else {
        return;
    };
    let (gpu_values, mut rest) = values.split_at(gpu_fields.len());
    for ((_, metric, label, divisor), value) in gpu_fields.iter().zip(gpu_values) {
        let labels: &[&str] = match label {
            Some(label) => &[label],
            None => &[],
        };
        gpu.add(metric, labels, value.map(|v| v / divisor));
    }
    if recovery_action {
        if let Some(action) = rest[0] {
            for &candidate in RecoveryAction::ALL {
                let active = action == candidate as u8 as f64;
                let value = Some(bool_value(active));
                gpu.add(&RECOVERY_ACTION, &[candidate.name()], value);
            }
        }
        rest = &rest[1..];
    }
    links.add_samples(rest, gpu);
}
